//! Writing results: atomic files, CSV tables and Markdown tables.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::XtaskError;

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// folder, flushed, then renamed over `path`. A reader sees either the
/// old file or the whole new one, never a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), XtaskError> {
    let io = |source| XtaskError::Io { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temporary = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(io)
}

/// Serialises `rows` as CSV (a header from the field names) and writes
/// the file atomically.
pub fn write_csv<R: Serialize>(path: &Path, rows: &[R]) -> Result<(), XtaskError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| XtaskError::Output(format!("{}: {e}", path.display())))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| XtaskError::Output(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// A Markdown table with a header row and right-aligned numeric columns
/// (every column but the first).
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let rule: Vec<&str> =
        (0..header.len()).map(|i| if i == 0 { "---" } else { "---:" }).collect();
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// An integer with thousands separators, as the thesis prints them
/// (`143,360`).
pub fn thousands(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(143_360), "143,360");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("xtask-out-{}", std::process::id()));
        let path = dir.join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
