//! `cargo xtask scaling`: time per step and memory against the hidden
//! size, one child process per configuration so that each peak resident
//! size (`VmHWM`) is its own.

use std::path::Path;
use std::process::Command;

use indicatif::ProgressBar;
use rtrl_bench::RunConfig;
use rtrl_cells::CellKind;
use serde::{Deserialize, Serialize};

use crate::harness::Harness;
use crate::methods::{Method, CELLS, METHODS};
use crate::output::{markdown_table, thousands, write_atomic, write_csv};
use crate::plot::{self, Series};
use crate::XtaskError;

/// Settings of a scaling sweep.
#[derive(Debug, Clone)]
pub struct ScalingSettings {
    /// Hidden sizes, ascending.
    pub sizes: Vec<usize>,
    /// Untimed epochs (of one sequence) per configuration.
    pub warmup: usize,
    /// Timed epochs per configuration; the median is kept.
    pub repeats: usize,
    /// A configuration whose predicted time (from the smaller sizes)
    /// exceeds this many seconds is skipped.
    pub budget_seconds: f64,
}

/// What one child process measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// Median seconds of one step of one sequence (forward, readout,
    /// backward and the online optimizer step).
    pub seconds_per_step: f64,
    /// Entries of `J^h`.
    pub jacobian_entries: usize,
    /// Bytes of influence storage the estimator reports.
    pub jacobian_bytes: usize,
    /// Peak resident size of the process (`VmHWM`), in bytes.
    pub peak_bytes: u64,
}

/// One configuration: a row of `scaling.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingRow {
    /// `lstm` or `gru`.
    pub cell: String,
    /// The method's slug.
    pub method: String,
    /// Hidden units.
    pub hidden: usize,
    /// `ok`, `skipped: …`, or the error.
    pub status: String,
    /// Median seconds per step of one sequence.
    pub seconds_per_step: f64,
    /// Entries of `J^h`.
    pub jacobian_entries: usize,
    /// Bytes of influence storage the estimator reports.
    pub jacobian_bytes: usize,
    /// Peak resident size of the child process, in bytes.
    pub peak_bytes: u64,
}

/// Measures one configuration in this process (the child's side).
pub fn probe(
    cell: CellKind,
    method: Method,
    hidden: usize,
    warmup: usize,
    repeats: usize,
) -> Result<Probe, XtaskError> {
    let base = RunConfig { model: cell, hidden, batch: 1, ..RunConfig::default() };
    let mut harness = Harness::build(method, &base, None)?;
    let epoch = harness.median_epoch(warmup, repeats)?;
    Ok(Probe {
        seconds_per_step: epoch / harness.steps() as f64,
        jacobian_entries: harness.jacobian_entries,
        jacobian_bytes: harness.jacobian_bytes,
        peak_bytes: peak_resident_bytes().unwrap_or(0),
    })
}

/// `VmHWM` of this process, in bytes.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `probe` in a child process of this executable.
fn probe_in_child(
    cell: CellKind,
    method: Method,
    hidden: usize,
    settings: &ScalingSettings,
) -> Result<Probe, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the xtask executable: {e}"))?;
    let output = Command::new(exe)
        .args(["probe", "--cell", cell.name(), "--method", method.slug()])
        .args(["--hidden", &hidden.to_string()])
        .args(["--warmup", &settings.warmup.to_string()])
        .args(["--repeats", &settings.repeats.to_string()])
        .output()
        .map_err(|e| format!("cannot start the probe: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message").to_string();
        return Err(format!("probe failed ({}): {last}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("unreadable probe output: {e}"))
}

/// Least-squares slope of `ln y` against `ln x`: the exponent `k` of
/// `y ∝ x^k`. `None` for fewer than two distinct `x`.
pub fn fitted_exponent(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && y.is_finite())
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let count = logs.len() as f64;
    if logs.len() < 2 {
        return None;
    }
    let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Measures every method on both cells at every size.
pub fn rows(settings: &ScalingSettings) -> Vec<ScalingRow> {
    let bar =
        ProgressBar::new((CELLS.len() * METHODS.len() * settings.sizes.len()) as u64);
    let mut rows = Vec::new();
    for cell in CELLS {
        for method in METHODS {
            let mut done: Vec<(f64, f64)> = Vec::new();
            for &hidden in &settings.sizes {
                bar.set_message(format!("{} {} {hidden}", cell.name(), method.label()));
                let mut row = ScalingRow {
                    cell: cell.name().to_string(),
                    method: method.slug().to_string(),
                    hidden,
                    status: "ok".to_string(),
                    seconds_per_step: f64::NAN,
                    jacobian_entries: 0,
                    jacobian_bytes: 0,
                    peak_bytes: 0,
                };

                // Predict this size's time from the trend of the smaller ones.
                let epochs = (settings.warmup + settings.repeats) as f64;
                let predicted = fitted_exponent(&done).and_then(|k| {
                    let &(n, t) = done.last()?;
                    Some(t * (hidden as f64 / n).powf(k.max(1.0)) * 22.0 * epochs)
                });
                match predicted {
                    Some(seconds) if seconds > settings.budget_seconds => {
                        row.status = format!("skipped: predicted {seconds:.0} s");
                    }
                    _ => match probe_in_child(cell, method, hidden, settings) {
                        Ok(probe) => {
                            row.seconds_per_step = probe.seconds_per_step;
                            row.jacobian_entries = probe.jacobian_entries;
                            row.jacobian_bytes = probe.jacobian_bytes;
                            row.peak_bytes = probe.peak_bytes;
                            done.push((hidden as f64, probe.seconds_per_step));
                        }
                        Err(reason) => row.status = reason,
                    },
                }
                bar.suspend(|| {
                    eprintln!(
                        "{} {} hidden {hidden}: {:.3} ms per step, {}",
                        cell.name(),
                        method.label(),
                        1e3 * row.seconds_per_step,
                        row.status
                    )
                });
                bar.inc(1);
                rows.push(row);
            }
        }
    }
    bar.finish_and_clear();
    rows
}

/// The fitted exponent of time per step for `cell` and `method`.
pub fn exponent(rows: &[ScalingRow], cell: CellKind, method: Method) -> Option<f64> {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| {
            r.cell == cell.name() && r.method == method.slug() && r.status == "ok"
        })
        .map(|r| (r.hidden as f64, r.seconds_per_step))
        .collect();
    fitted_exponent(&points)
}

/// The Markdown section.
pub fn markdown(rows: &[ScalingRow], settings: &ScalingSettings) -> String {
    let mut out = String::from(
        "![time per step](scaling.png)\n\nOne sequence (batch 1, 22 steps of the copy task), \
         online Adam; median of the timed epochs divided by the steps. Each configuration \
         runs in its own process: \"peak RSS\" is that process's `VmHWM` (the program and \
         its buffers, not only the Jacobian). Exponent: least-squares slope of log time \
         against log hidden over the measured sizes (expected about 4 for RTRL, 2 for \
         SnAp-1 and BPTT).\n\n",
    );
    let mut header = vec!["cell".to_string(), "method".to_string()];
    header.extend(settings.sizes.iter().map(|n| format!("n = {n} (ms/step)")));
    header.push("exponent".to_string());
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut times = Vec::new();
    let mut memory = Vec::new();
    for cell in CELLS {
        for method in METHODS {
            let mut line = vec![cell.name().to_string(), method.label().to_string()];
            let mut mem = line.clone();
            for &n in &settings.sizes {
                let row = rows.iter().find(|r| {
                    r.cell == cell.name() && r.method == method.slug() && r.hidden == n
                });
                match row {
                    Some(r) if r.status == "ok" => {
                        line.push(format!("{:.3}", 1e3 * r.seconds_per_step));
                        mem.push(format!(
                            "{} / {:.0}",
                            thousands(r.jacobian_bytes / 1024),
                            r.peak_bytes as f64 / (1024.0 * 1024.0)
                        ));
                    }
                    Some(r) => {
                        line.push(r.status.clone());
                        mem.push(String::new());
                    }
                    None => {
                        line.push(String::new());
                        mem.push(String::new());
                    }
                }
            }
            line.push(
                exponent(rows, cell, method).map_or("n/a".into(), |k| format!("{k:.2}")),
            );
            times.push(line);
            memory.push(mem);
        }
    }
    out.push_str(&markdown_table(&header, &times));
    out.push_str(
        "\nMemory: Jacobian KiB (as the estimator reports it) / peak RSS MiB.\n\n",
    );
    let mut header = vec!["cell".to_string(), "method".to_string()];
    header.extend(settings.sizes.iter().map(|n| format!("n = {n}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out.push_str(&markdown_table(&header, &memory));
    out
}

/// Measures and writes `scaling.csv`, `scaling.md`, `scaling.png` and
/// `scaling.svg` under `dir`.
pub fn write(
    dir: &Path,
    settings: &ScalingSettings,
) -> Result<Vec<ScalingRow>, XtaskError> {
    let rows = rows(settings);
    write_csv(&dir.join("scaling.csv"), &rows)?;
    let text = format!("# Scaling\n\n{}", markdown(&rows, settings));
    write_atomic(&dir.join("scaling.md"), text.as_bytes())?;
    let panels: Vec<plot::Panel> = CELLS
        .iter()
        .map(|cell| plot::Panel {
            title: format!("{}: seconds per step", cell.name().to_uppercase()),
            x_label: "hidden units".to_string(),
            y_label: "seconds per step".to_string(),
            series: METHODS
                .iter()
                .enumerate()
                .map(|(color, method)| Series {
                    label: match exponent(&rows, *cell, *method) {
                        Some(k) => format!("{} (n^{k:.2})", method.label()),
                        None => method.label().to_string(),
                    },
                    color,
                    points: rows
                        .iter()
                        .filter(|r| {
                            r.cell == cell.name()
                                && r.method == method.slug()
                                && r.status == "ok"
                        })
                        .map(|r| (r.hidden as f64, r.seconds_per_step))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect(),
        })
        .collect();
    plot::lines(&dir.join("scaling"), &panels, true)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponent_of_a_power_law_is_recovered() {
        let points: Vec<(f64, f64)> =
            [16.0, 32.0, 64.0].iter().map(|&n: &f64| (n, 3e-9 * n.powi(4))).collect();
        assert!((fitted_exponent(&points).unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(fitted_exponent(&points[..1]), None);
    }
}
