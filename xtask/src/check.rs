//! `cargo xtask check-results DIR`: the outputs of `reproduce` exist,
//! parse and hold what the report promises.

use std::path::Path;

use crate::XtaskError;

/// Sections `REPORT.md` must have.
pub const REPORT_SECTIONS: [&str; 5] =
    ["## Machine", "## Jacobian sizes", "## Loss curves", "## Timing", "## Scaling"];

/// The signature every PNG file starts with.
const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

fn problem(path: &Path, what: impl std::fmt::Display) -> XtaskError {
    XtaskError::Check(format!("{}: {what}", path.display()))
}

/// Reads a CSV file into its header and records; fails on an empty one.
fn read_csv(
    path: &Path,
) -> Result<(csv::StringRecord, Vec<csv::StringRecord>), XtaskError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| problem(path, e))?;
    let header = reader.headers().map_err(|e| problem(path, e))?.clone();
    let records: Vec<csv::StringRecord> =
        reader.records().collect::<Result<_, _>>().map_err(|e| problem(path, e))?;
    if records.is_empty() {
        return Err(problem(path, "no rows"));
    }
    Ok((header, records))
}

/// The value of `column` in `record`.
fn field<'a>(
    path: &Path,
    header: &csv::StringRecord,
    record: &'a csv::StringRecord,
    column: &str,
) -> Result<&'a str, XtaskError> {
    let index = header
        .iter()
        .position(|h| h == column)
        .ok_or_else(|| problem(path, format!("no column {column}")))?;
    record.get(index).ok_or_else(|| problem(path, format!("a row without {column}")))
}

/// `column` of `record` as a finite number.
fn number(
    path: &Path,
    header: &csv::StringRecord,
    record: &csv::StringRecord,
    column: &str,
) -> Result<f64, XtaskError> {
    let text = field(path, header, record, column)?;
    text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
        problem(path, format!("{column} is not a finite number: '{text}'"))
    })
}

/// Every run of a CSV with a `status` column succeeded (`skipped: …`
/// counts as success).
fn statuses_ok(
    path: &Path,
    header: &csv::StringRecord,
    records: &[csv::StringRecord],
) -> Result<(), XtaskError> {
    for record in records {
        let status = field(path, header, record, "status")?;
        if status != "ok" && !status.starts_with("skipped") {
            return Err(problem(path, format!("a run failed: {status}")));
        }
    }
    Ok(())
}

fn check_png(path: &Path) -> Result<(), XtaskError> {
    let bytes = std::fs::read(path).map_err(|e| problem(path, e))?;
    if !bytes.starts_with(&PNG_MAGIC) {
        return Err(problem(path, "not a PNG file"));
    }
    Ok(())
}

fn check_svg(path: &Path) -> Result<(), XtaskError> {
    let text = std::fs::read_to_string(path).map_err(|e| problem(path, e))?;
    if !text.contains("<svg") || !text.trim_end().ends_with("</svg>") {
        return Err(problem(path, "not a complete SVG file"));
    }
    Ok(())
}

/// Checks every output of `reproduce` in `dir`; returns a line per file.
pub fn check(dir: &Path) -> Result<Vec<String>, XtaskError> {
    let mut done = Vec::new();

    // The table: exact columns equal the thesis.
    let path = dir.join("jacobian.csv");
    let (header, records) = read_csv(&path)?;
    for record in &records {
        let entries = number(&path, &header, record, "entries")?;
        let std = number(&path, &header, record, "entries_std")?;
        let thesis = field(&path, &header, record, "thesis")?;
        if std == 0.0 && !thesis.is_empty() && thesis.parse::<f64>().ok() != Some(entries)
        {
            return Err(problem(
                &path,
                format!("{entries} differs from the thesis's {thesis}"),
            ));
        }
    }
    done.push(format!("{}: {} rows", path.display(), records.len()));

    // The curves: raw and smoothed points, and every run's status.
    let path = dir.join("curves.csv");
    let (header, records) = read_csv(&path)?;
    for record in &records {
        number(&path, &header, record, "val_loss")?;
        number(&path, &header, record, "smoothed")?;
    }
    done.push(format!("{}: {} points", path.display(), records.len()));
    let path = dir.join("curves-summary.csv");
    let (header, records) = read_csv(&path)?;
    statuses_ok(&path, &header, &records)?;
    done.push(format!("{}: {} runs", path.display(), records.len()));

    // Timing and scaling.
    let path = dir.join("timing.csv");
    let (header, records) = read_csv(&path)?;
    statuses_ok(&path, &header, &records)?;
    for record in &records {
        number(&path, &header, record, "seconds")?;
        number(&path, &header, record, "bare_products_seconds")?;
        number(&path, &header, record, "bare_dense_d_seconds")?;
    }
    done.push(format!("{}: {} rows", path.display(), records.len()));
    let path = dir.join("scaling.csv");
    let (header, records) = read_csv(&path)?;
    statuses_ok(&path, &header, &records)?;
    done.push(format!("{}: {} rows", path.display(), records.len()));

    // Figures.
    for stem in ["curves", "scaling"] {
        check_png(&dir.join(format!("{stem}.png")))?;
        check_svg(&dir.join(format!("{stem}.svg")))?;
        done.push(format!("{}: PNG and SVG", dir.join(stem).display()));
    }

    // The report names every section.
    let path = dir.join("REPORT.md");
    let report = std::fs::read_to_string(&path).map_err(|e| problem(&path, e))?;
    for section in REPORT_SECTIONS {
        if !report.contains(section) {
            return Err(problem(&path, format!("no section '{section}'")));
        }
    }
    done.push(format!("{}: every section", path.display()));
    Ok(done)
}
