//! `cargo xtask curves`: the thesis figure (SPEC section 7).
//!
//! Ten runs (five methods on LSTM 32 and GRU 32), each on the thesis
//! protocol, one after the other: every run is deterministic given its
//! seed, and sequential runs leave the whole rayon pool to the batch of
//! each. LoRA-RTRL fine-tunes a base trained first with BPTT on copy
//! patterns of length at most [`LORA_BASE_MAX_LEN`], saved as a
//! checkpoint beside the results.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rtrl_bench::RunConfig;
use rtrl_cells::CellKind;
use serde::Serialize;

use crate::harness::{Harness, Trained};
use crate::methods::{Method, CELLS, METHODS};
use crate::output::{markdown_table, write_csv};
use crate::plot::{self, Series};
use crate::XtaskError;

/// Smoothing factor of the exponential moving average of the figure.
pub const EMA_ALPHA: f64 = 0.05;

/// Longest copy pattern the LoRA-RTRL base is trained on.
pub const LORA_BASE_MAX_LEN: usize = 7;

/// The thesis's figure ends every curve between these losses.
pub const THESIS_FINAL_RANGE: (f64, f64) = (0.20, 0.27);

/// One validation point of one run: a row of `curves.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// `lstm` or `gru`.
    pub cell: String,
    /// The method's slug.
    pub method: String,
    /// Epoch after which the validation set was evaluated.
    pub epoch: usize,
    /// Validation loss (binary cross-entropy, nats).
    pub val_loss: f64,
    /// Exponential moving average of `val_loss` up to this point.
    pub smoothed: f64,
}

/// How one run of the figure ended.
#[derive(Debug, Clone, Serialize)]
pub struct CurveSummary {
    /// `lstm` or `gru`.
    pub cell: String,
    /// The method's slug.
    pub method: String,
    /// `ok`, or the error that stopped the run.
    pub status: String,
    /// Epochs trained.
    pub epochs: usize,
    /// Last raw validation loss.
    pub final_val_loss: f64,
    /// Last smoothed validation loss (the end of the figure's curve).
    pub final_smoothed: f64,
    /// Seconds the run took, validation included.
    pub wall_seconds: f64,
    /// Entries of `J^h` per sequence.
    pub jacobian_entries: usize,
}

/// Settings of the figure's runs.
#[derive(Debug, Clone, Copy)]
pub struct CurvesSettings {
    /// Epochs of every run (500 in the thesis).
    pub epochs: usize,
    /// Epochs of the LoRA-RTRL base (500 in the thesis).
    pub base_epochs: usize,
    /// Seed of every run.
    pub seed: u64,
}

/// The exponential moving average `s_0 = v_0`,
/// `s_k = α v_k + (1 − α) s_{k−1}`.
pub fn ema(values: &[f64], alpha: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    for &v in values {
        let next = match out.last() {
            None => v,
            Some(&last) => alpha * v + (1.0 - alpha) * last,
        };
        out.push(next);
    }
    out
}

/// Trains `method` on `config` with a progress bar.
fn run_with_progress(
    label: &str,
    method: Method,
    config: &RunConfig,
    base: Option<&Path>,
) -> Result<(Harness, Trained), XtaskError> {
    let bar = ProgressBar::new(config.epochs as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let result = Harness::build(method, config, base).and_then(|mut harness| {
        let trained = harness.train(&mut |epoch, val| {
            bar.set_position(epoch as u64);
            if let Some(val) = val {
                bar.set_message(format!("val {val:.4}"));
            }
        })?;
        Ok((harness, trained))
    });
    bar.finish_and_clear();
    result.map_err(|e| match e {
        XtaskError::Run { reason, .. } => {
            XtaskError::Run { what: label.to_string(), reason }
        }
        other => other,
    })
}

/// Trains the LoRA-RTRL base of `cell` with BPTT and saves it to `path`.
fn train_lora_base(
    cell: CellKind,
    settings: &CurvesSettings,
    path: &Path,
) -> Result<(), XtaskError> {
    let config = RunConfig {
        model: cell,
        epochs: settings.base_epochs,
        seed: settings.seed,
        max_len: LORA_BASE_MAX_LEN,
        ..RunConfig::default()
    };
    let label = format!("{} base (BPTT, L<={LORA_BASE_MAX_LEN})", cell.name());
    let (harness, trained) = run_with_progress(&label, Method::Bptt, &config, None)?;
    harness.save(path)?;
    eprintln!(
        "{label}: {:.1} s, final validation loss {:.4}, saved {}",
        trained.wall_seconds,
        trained.points.last().map_or(f64::NAN, |p| p.1),
        path.display()
    );
    Ok(())
}

/// Every run of the figure; a failed run is reported and skipped.
pub fn run_all(
    dir: &Path,
    settings: &CurvesSettings,
) -> Result<Vec<(CurveSummary, Vec<CurvePoint>)>, XtaskError> {
    let mut results = Vec::new();
    for cell in CELLS {
        // The LoRA-RTRL base first: BPTT on shorter patterns.
        let base_path: PathBuf =
            dir.join(format!("lora-base-{}.safetensors", cell.name()));
        let base_error = train_lora_base(cell, settings, &base_path).err();
        if let Some(error) = &base_error {
            eprintln!("error: {error}");
        }

        for method in METHODS {
            let label = format!("{} {}", cell.name(), method.label());
            let outcome = match (&base_error, method) {
                (Some(error), Method::LoraRtrl) => Err(XtaskError::Run {
                    what: label.clone(),
                    reason: format!("no base: {error}"),
                }),
                _ => {
                    let config = RunConfig {
                        model: cell,
                        epochs: settings.epochs,
                        seed: settings.seed,
                        ..RunConfig::default()
                    };
                    let base =
                        (method == Method::LoraRtrl).then_some(base_path.as_path());
                    run_with_progress(&label, method, &config, base)
                }
            };
            let mut summary = CurveSummary {
                cell: cell.name().to_string(),
                method: method.slug().to_string(),
                status: "ok".to_string(),
                epochs: settings.epochs,
                final_val_loss: f64::NAN,
                final_smoothed: f64::NAN,
                wall_seconds: 0.0,
                jacobian_entries: 0,
            };
            let mut points = Vec::new();
            match outcome {
                Ok((harness, trained)) => {
                    let raw = &trained.points;
                    let values: Vec<f64> = raw.iter().map(|&(_, v)| v).collect();
                    let smoothed = ema(&values, EMA_ALPHA);
                    for (&(epoch, val_loss), &smooth) in raw.iter().zip(&smoothed) {
                        points.push(CurvePoint {
                            cell: summary.cell.clone(),
                            method: summary.method.clone(),
                            epoch,
                            val_loss,
                            smoothed: smooth,
                        });
                    }
                    summary.final_val_loss = values.last().copied().unwrap_or(f64::NAN);
                    summary.final_smoothed = smoothed.last().copied().unwrap_or(f64::NAN);
                    summary.wall_seconds = trained.wall_seconds;
                    summary.jacobian_entries = harness.jacobian_entries;
                    eprintln!(
                        "{label}: {:.1} s, final validation loss {:.4} (smoothed {:.4})",
                        summary.wall_seconds,
                        summary.final_val_loss,
                        summary.final_smoothed
                    );
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    summary.status = error.to_string();
                }
            }
            results.push((summary, points));
        }
    }
    Ok(results)
}

/// Runs the figure and writes `curves.csv`, `curves-summary.csv`,
/// `curves.png` and `curves.svg` under `dir`.
pub fn write(
    dir: &Path,
    settings: &CurvesSettings,
) -> Result<Vec<CurveSummary>, XtaskError> {
    let results = run_all(dir, settings)?;
    let points: Vec<CurvePoint> =
        results.iter().flat_map(|(_, p)| p.iter().cloned()).collect();
    let summaries: Vec<CurveSummary> = results.iter().map(|(s, _)| s.clone()).collect();
    write_csv(&dir.join("curves.csv"), &points)?;
    write_csv(&dir.join("curves-summary.csv"), &summaries)?;

    // One panel per cell, one smoothed curve per method.
    let panels: Vec<plot::Panel> = CELLS
        .iter()
        .map(|cell| plot::Panel {
            title: format!("{} 32", cell.name().to_uppercase()),
            x_label: "Validation epochs".to_string(),
            y_label: "Cross Entropy Loss".to_string(),
            series: METHODS
                .iter()
                .enumerate()
                .map(|(color, method)| Series {
                    label: method.label().to_string(),
                    color,
                    points: points
                        .iter()
                        .filter(|p| p.cell == cell.name() && p.method == method.slug())
                        .map(|p| (p.epoch as f64, p.smoothed))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect(),
        })
        .collect();
    plot::lines(&dir.join("curves"), &panels, false)?;
    Ok(summaries)
}

/// The Markdown section of the report for `summaries`.
pub fn markdown(summaries: &[CurveSummary], settings: &CurvesSettings) -> String {
    let mut out = format!(
        "![validation loss](curves.png)\n\n{} epochs per run, validation every 5 epochs, \
         smoothed by an exponential moving average (alpha {EMA_ALPHA}); seed {}. \
         Raw and smoothed points: [curves.csv](curves.csv). The thesis's curves all end \
         between about {:.2} and {:.2}.\n\n",
        settings.epochs, settings.seed, THESIS_FINAL_RANGE.0, THESIS_FINAL_RANGE.1
    );
    let header = ["cell", "method", "final smoothed", "final raw", "seconds", "status"];
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            let label =
                Method::from_slug(&s.method).map_or(s.method.as_str(), |m| m.label());
            vec![
                s.cell.clone(),
                label.to_string(),
                format!("{:.4}", s.final_smoothed),
                format!("{:.4}", s.final_val_loss),
                format!("{:.1}", s.wall_seconds),
                s.status.clone(),
            ]
        })
        .collect();
    out.push_str(&markdown_table(&header, &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_starts_at_the_first_value_and_lags() {
        let s = ema(&[1.0, 0.0, 0.0], 0.05);
        assert_eq!(s[0], 1.0);
        assert!((s[1] - 0.95).abs() < 1e-12);
        assert!((s[2] - 0.9025).abs() < 1e-12);
        assert!(ema(&[], 0.5).is_empty());
    }
}
