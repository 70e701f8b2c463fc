//! The loss curve as a CSV file that appears only when complete.
//!
//! [`CsvLog`] keeps its rows in memory (some tens of bytes per epoch) and
//! in [`CsvLog::finish`] writes them to a hidden temporary file in the
//! folder of the final path, which it then renames into place. A run that
//! fails, is interrupted or is dropped without finishing leaves no file
//! behind.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::experiment::{EpochRecord, RunError};

/// A CSV loss curve written atomically: one row per [`EpochRecord`].
#[derive(Debug)]
pub struct CsvLog {
    path: PathBuf,
    writer: csv::Writer<Vec<u8>>,
}

impl CsvLog {
    /// Checks that a log can be written at `path`: its folder exists and
    /// `path` is not itself a folder nor a device or other special file.
    /// Creates nothing.
    pub fn check_path(path: &Path) -> Result<(), RunError> {
        check_output_path(path)
            .map_err(|reason| RunError::Log { path: path.display().to_string(), reason })
    }

    /// Checks `path` (see [`check_path`](Self::check_path)) and starts a
    /// log with the CSV header; nothing is written to disk yet.
    pub fn create(path: &Path) -> Result<Self, RunError> {
        Self::check_path(path)?;
        let writer = csv::WriterBuilder::new().has_headers(true).from_writer(Vec::new());
        Ok(CsvLog { path: path.to_path_buf(), writer })
    }

    /// The final path of the log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one row.
    pub fn write(&mut self, record: &EpochRecord) -> Result<(), RunError> {
        self.writer.serialize(record).map_err(|e| io_error(&self.path, e.into()))
    }

    /// Writes the rows to a temporary file beside the final path, flushes
    /// it to disk and renames it to the final path, replacing any file
    /// there.
    pub fn finish(self) -> Result<(), RunError> {
        let path = self.path;
        let bytes =
            self.writer.into_inner().map_err(|e| io_error(&path, e.into_error()))?;
        let name = path.file_name().expect("checked in create").to_string_lossy();
        let temp = folder_of(&path).join(format!(".{name}.{}.tmp", std::process::id()));
        let result = File::create(&temp)
            .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()))
            .and_then(|()| fs::rename(&temp, &path));
        result.map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error(&path, e)
        })
    }
}

/// Checks that a file can be written at `path` by a temporary file and a
/// rename: its folder exists and `path` is not a folder, a device or
/// another special file. Creates nothing. The error says what is wrong
/// and what to do.
pub fn check_output_path(path: &Path) -> Result<(), String> {
    if path.file_name().is_none() {
        return Err("the path names no file; give a file name such as run.csv".into());
    }
    if path.is_dir() {
        return Err("it is a folder; give a file name inside it".into());
    }
    if path.exists() && !path.is_file() {
        return Err(
            "it is a device or other special file; give a regular file's path".into()
        );
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        return Err(format!(
            "the folder {} does not exist; create it first or choose another path",
            folder.display()
        ));
    }
    Ok(())
}

/// The folder a file path lives in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn io_error(path: &Path, error: io::Error) -> RunError {
    RunError::Log { path: path.display().to_string(), reason: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, val_loss: Option<f64>) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 0.5,
            val_loss,
            elapsed_s: 0.25,
            jacobian_entries: 10,
            jacobian_bytes: 40,
            updates: 3,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("rtrl-bench-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_finished_log_has_a_header_and_empty_missing_values() {
        let dir = scratch("finished");
        let path = dir.join("curve.csv");
        let mut log = CsvLog::create(&path).unwrap();
        log.write(&record(1, None)).unwrap();
        log.write(&record(2, Some(0.125))).unwrap();
        assert!(!path.exists(), "nothing at the final path before finish");
        log.finish().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "epoch,train_loss,val_loss,elapsed_s,jacobian_entries,jacobian_bytes,updates\n\
             1,0.5,,0.25,10,40,3\n2,0.5,0.125,0.25,10,40,3\n"
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dropped_log_leaves_nothing() {
        let dir = scratch("dropped");
        let mut log = CsvLog::create(&dir.join("curve.csv")).unwrap();
        log.write(&record(1, None)).unwrap();
        drop(log);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_reported() {
        let err = CsvLog::check_path(Path::new("/no/such/dir/x.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot write the log file /no/such/dir/x.csv: the folder /no/such/dir \
             does not exist; create it first or choose another path"
        );
    }
}
