//! `cargo xtask timing`: seconds per epoch of every estimator, beside the
//! thesis's reference times and the bare matrix products of an RTRL
//! epoch.

use std::path::Path;
use std::time::Instant;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use indicatif::ProgressBar;
use rayon::prelude::*;
use rtrl_bench::RunConfig;
use rtrl_cells::CellKind;
use serde::Serialize;

use crate::harness::{median, Harness};
use crate::machine::Machine;
use crate::methods::{Method, CELLS, METHODS};
use crate::output::{markdown_table, write_atomic, write_csv};
use crate::XtaskError;

/// The thesis's claim: LoRA-RTRL takes 57.9 % less time than RTRL.
pub const THESIS_LORA_VS_RTRL: f64 = 0.579;

/// The thesis's claim: LoRA-RTRL takes up to 50 % less time than SnAp.
pub const THESIS_LORA_VS_SNAP: f64 = 0.50;

/// How many epochs to time.
#[derive(Debug, Clone, Copy)]
pub struct TimingSettings {
    /// Untimed epochs first.
    pub warmup: usize,
    /// Timed epochs; the median is reported (at least 5 for a result).
    pub repeats: usize,
}

/// One estimator on one cell: a row of `timing.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct TimingRow {
    /// `lstm` or `gru`.
    pub cell: String,
    /// The method's slug.
    pub method: String,
    /// `ok`, or why there is no time.
    pub status: String,
    /// Median seconds per epoch (16 sequences × 22 steps, hidden 32).
    pub seconds: f64,
    /// `seconds` divided by RTRL's.
    pub ratio_to_rtrl: f64,
    /// Seconds per epoch of the thesis's code (SPEC section 8).
    pub thesis_seconds: Option<f64>,
    /// The thesis code's time divided by its RTRL time.
    pub thesis_ratio_to_rtrl: Option<f64>,
    /// Median seconds of the bare products of one dense RTRL epoch on
    /// this cell (same for every method of the cell): `(P × n)·(n × |s|)`,
    /// the dense part of `D_t`.
    pub bare_products_seconds: f64,
    /// The same with all of `D_t` taken as dense, `(P × |s|)·(|s| × |s|)`:
    /// what RTRL would multiply without the LSTM's unit-wise cell-state
    /// columns (equal to the above for GRU).
    pub bare_dense_d_seconds: f64,
}

/// Seconds of the products dense RTRL does in one epoch on `cell`: for
/// each of 16 sequences (spread over the rayon pool, one task each) and
/// 22 steps, the `f32` product `(P × depth)·(depth × |s|)` with
/// `Par::Seq`, where `depth` is `n` (`dense_d` false: the dense part of
/// `D_t`) or `|s|` (`dense_d` true: all of `D_t`). Median of `repeats`
/// after `warmup`.
pub fn bare_products(
    cell: CellKind,
    settings: TimingSettings,
    dense_d: bool,
) -> Result<f64, XtaskError> {
    let config = RunConfig { model: cell, ..RunConfig::default() };
    let harness = Harness::build(Method::Rtrl, &config, None)?;
    let steps = harness.steps();
    let (hidden, state) = match cell {
        CellKind::Lstm => (config.hidden, 2 * config.hidden),
        _ => (config.hidden, config.hidden),
    };
    let params = harness.jacobian_entries / hidden;
    let depth = if dense_d { state } else { hidden };

    // One set of operands per sequence, filled with small values.
    let mut work: Vec<(Mat<f32>, Mat<f32>, Mat<f32>)> = (0..config.batch)
        .map(|b| {
            let j = Mat::from_fn(params, state, |i, k| ((i + k + b) % 7) as f32 * 0.01);
            let d = Mat::from_fn(depth, state, |i, k| ((i * 3 + k) % 5) as f32 * 0.01);
            (j, d, Mat::zeros(params, state))
        })
        .collect();
    let mut epoch = || {
        let start = Instant::now();
        work.par_iter_mut().for_each(|(j, d, out)| {
            for _ in 0..steps {
                matmul(
                    out.as_mut(),
                    Accum::Replace,
                    j.as_ref().subcols(0, depth),
                    d.as_ref(),
                    1.0f32,
                    Par::Seq,
                );
                std::hint::black_box(&out);
            }
        });
        start.elapsed().as_secs_f64()
    };
    for _ in 0..settings.warmup {
        epoch();
    }
    let mut times: Vec<f64> = (0..settings.repeats.max(1)).map(|_| epoch()).collect();
    Ok(median(&mut times))
}

/// Times every method on both cells.
pub fn rows(settings: TimingSettings) -> Result<Vec<TimingRow>, XtaskError> {
    let bar = ProgressBar::new((CELLS.len() * (METHODS.len() + 1)) as u64);
    let mut rows = Vec::new();
    for cell in CELLS {
        bar.set_message(format!("{} bare products", cell.name()));
        let bare = bare_products(cell, settings, false)?;
        let bare_dense_d = if cell == CellKind::Lstm {
            bare_products(cell, settings, true)?
        } else {
            bare
        };
        bar.inc(1);
        let mut cell_rows = Vec::new();
        for method in METHODS {
            bar.set_message(format!("{} {}", cell.name(), method.label()));
            let base = RunConfig { model: cell, ..RunConfig::default() };
            let timed = Harness::build(method, &base, None).and_then(|mut harness| {
                harness.median_epoch(settings.warmup, settings.repeats)
            });
            let (status, seconds) = match timed {
                Ok(seconds) => ("ok".to_string(), seconds),
                Err(error) => {
                    bar.suspend(|| eprintln!("error: {error}"));
                    (error.to_string(), f64::NAN)
                }
            };
            bar.suspend(|| {
                eprintln!(
                    "{} {}: {:.4} s per epoch",
                    cell.name(),
                    method.label(),
                    seconds
                )
            });
            bar.inc(1);
            cell_rows.push(TimingRow {
                cell: cell.name().to_string(),
                method: method.slug().to_string(),
                status,
                seconds,
                ratio_to_rtrl: f64::NAN,
                thesis_seconds: method.thesis_seconds(cell),
                thesis_ratio_to_rtrl: None,
                bare_products_seconds: bare,
                bare_dense_d_seconds: bare_dense_d,
            });
        }

        // Ratios to RTRL, ours and the thesis's.
        let rtrl =
            cell_rows.iter().find(|r| r.method == Method::Rtrl.slug()).map(|r| r.seconds);
        let thesis_rtrl = Method::Rtrl.thesis_seconds(cell);
        for row in &mut cell_rows {
            row.ratio_to_rtrl = rtrl.map_or(f64::NAN, |t| row.seconds / t);
            row.thesis_ratio_to_rtrl =
                row.thesis_seconds.zip(thesis_rtrl).map(|(a, b)| a / b);
        }
        rows.extend(cell_rows);
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// The time saved by LoRA-RTRL against `other` on `cell`, as a fraction
/// (`1 − t_LoRA / t_other`), from `seconds(cell, method)`.
fn saving(
    seconds: &dyn Fn(CellKind, Method) -> Option<f64>,
    cell: CellKind,
    other: Method,
) -> Option<f64> {
    let lora = seconds(cell, Method::LoraRtrl)?;
    let other = seconds(cell, other)?;
    Some(1.0 - lora / other).filter(|s| s.is_finite())
}

fn percent(value: Option<f64>) -> String {
    value.map_or("n/a".to_string(), |v| format!("{:.1} %", 100.0 * v))
}

/// The Markdown section: the timing table and the thesis's claims.
pub fn markdown(
    rows: &[TimingRow],
    machine: &Machine,
    settings: TimingSettings,
) -> String {
    let mut out = format!(
        "{}\n\nSeconds per epoch (16 sequences × 22 steps, hidden 32, online Adam): median \
         of at least {} epochs, and of at least {} s of them, after {} warm-up epochs. \"bare products\" is the time of the \
         `(P × n)·(n × |s|)` products dense RTRL needs in one epoch (16 × 22 of them, \
         `f32`, `Par::Seq`, one sequence per rayon task), measured in the same run: \
         the distance of RTRL to that bound is the cost of everything else. \
         \"bare, dense D\" is the same with all of `D_t` taken as dense, \
         `(P × |s|)·(|s| × |s|)`: what RTRL would multiply without the LSTM's \
         unit-wise cell-state columns (for GRU, `|s| = n` and both agree). Thesis: \
         the thesis's own JAX code on a 2-core CPU (SPEC section 8).\n\n",
        machine.line(),
        settings.repeats,
        crate::harness::MIN_TIMED_SECONDS,
        settings.warmup
    );
    let header = [
        "cell",
        "method",
        "seconds",
        "× RTRL",
        "thesis seconds",
        "thesis × RTRL",
        "thesis / ours",
        "bare products",
        "bare, dense D",
        "status",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let label =
                Method::from_slug(&r.method).map_or(r.method.as_str(), |m| m.label());
            vec![
                r.cell.clone(),
                label.to_string(),
                format!("{:.4}", r.seconds),
                format!("{:.2}", r.ratio_to_rtrl),
                r.thesis_seconds.map_or(String::new(), |t| format!("{t:.2}")),
                r.thesis_ratio_to_rtrl.map_or(String::new(), |t| format!("{t:.2}")),
                r.thesis_seconds
                    .map_or(String::new(), |t| format!("{:.0}×", t / r.seconds)),
                format!("{:.4}", r.bare_products_seconds),
                format!("{:.4}", r.bare_dense_d_seconds),
                r.status.clone(),
            ]
        })
        .collect();
    out.push_str(&markdown_table(&header, &table));

    // The claims, ours against the thesis code's own times.
    let ours = |cell: CellKind, method: Method| {
        rows.iter()
            .find(|r| r.cell == cell.name() && r.method == method.slug())
            .map(|r| r.seconds)
            .filter(|s| s.is_finite())
    };
    let thesis = |cell: CellKind, method: Method| method.thesis_seconds(cell);
    let mut claims = Vec::new();
    for cell in CELLS {
        claims.push(vec![
            format!("LoRA-RTRL vs RTRL, {}", cell.name()),
            format!("{:.1} %", 100.0 * THESIS_LORA_VS_RTRL),
            percent(saving(&thesis, cell, Method::Rtrl)),
            percent(saving(&ours, cell, Method::Rtrl)),
        ]);
        for snap in [Method::Snap1, Method::Snap2] {
            claims.push(vec![
                format!("LoRA-RTRL vs {}, {}", snap.label(), cell.name()),
                format!("up to {:.0} %", 100.0 * THESIS_LORA_VS_SNAP),
                percent(saving(&thesis, cell, snap)),
                percent(saving(&ours, cell, snap)),
            ]);
        }
    }
    out.push_str(
        "\nSpeed targets of this workspace (hidden 32, batch 16, 22 steps):\n\n",
    );
    out.push_str(&markdown_table(&["target", "measured", "met"], &targets(rows)));
    out.push_str(
        "\nTime saved by LoRA-RTRL (`1 − t_LoRA / t_other`; negative: slower):\n\n",
    );
    out.push_str(&markdown_table(
        &["comparison", "thesis claims", "thesis code (SPEC 8)", "ours"],
        &claims,
    ));
    out
}

/// The workspace's speed targets against `rows`: RTRL epochs of at most
/// 15 ms (GRU) and 30 ms (LSTM), LoRA-RTRL at most 0.6 × RTRL on the
/// LSTM, SnAp-1 within 2 × BPTT, RTRL within 1.3 × its bare products;
/// and, on the LSTM, RTRL below the products it would need without the
/// structure of `D_t`.
pub fn targets(rows: &[TimingRow]) -> Vec<Vec<String>> {
    let find = |cell: CellKind, method: Method| {
        rows.iter().find(|r| r.cell == cell.name() && r.method == method.slug())
    };
    let seconds = |cell, method| find(cell, method).map_or(f64::NAN, |r| r.seconds);
    let mut out = Vec::new();
    let mut push = |target: String, measured: String, met: bool| {
        out.push(vec![target, measured, if met { "yes" } else { "no" }.to_string()]);
    };
    for (cell, limit) in [(CellKind::Gru, 0.015), (CellKind::Lstm, 0.030)] {
        let t = seconds(cell, Method::Rtrl);
        push(
            format!("RTRL epoch, {} ≤ {:.0} ms", cell.name(), 1e3 * limit),
            format!("{:.1} ms", 1e3 * t),
            t <= limit,
        );
    }
    for cell in CELLS {
        let ratio = seconds(cell, Method::LoraRtrl) / seconds(cell, Method::Rtrl);
        let limit = if cell == CellKind::Lstm { "≤ 0.6" } else { "(reported)" };
        push(
            format!("LoRA-RTRL / RTRL, {} {limit}", cell.name()),
            format!("{ratio:.2}"),
            cell != CellKind::Lstm || ratio <= 0.6,
        );
    }
    for cell in CELLS {
        let ratio = seconds(cell, Method::Snap1) / seconds(cell, Method::Bptt);
        push(
            format!("SnAp-1 / BPTT, {} ≤ 2", cell.name()),
            format!("{ratio:.2}"),
            ratio <= 2.0,
        );
    }
    for cell in CELLS {
        let bare = find(cell, Method::Rtrl).map_or(f64::NAN, |r| r.bare_products_seconds);
        let ratio = seconds(cell, Method::Rtrl) / bare;
        push(
            format!("RTRL / bare products, {} ≤ 1.3", cell.name()),
            format!("{ratio:.2}"),
            ratio <= 1.3,
        );
    }
    let lstm = find(CellKind::Lstm, Method::Rtrl);
    let ratio = lstm.map_or(f64::NAN, |r| r.seconds / r.bare_dense_d_seconds);
    push(
        "RTRL / bare products with a dense D, lstm < 1 (the structure's gain)"
            .to_string(),
        format!("{ratio:.2}"),
        ratio < 1.0,
    );
    out
}

/// Times everything and writes `timing.csv` and `timing.md` under `dir`.
pub fn write(
    dir: &Path,
    settings: TimingSettings,
    machine: &Machine,
) -> Result<Vec<TimingRow>, XtaskError> {
    let rows = rows(settings)?;
    write_csv(&dir.join("timing.csv"), &rows)?;
    let text = format!("# Timing\n\n{}", markdown(&rows, machine, settings));
    write_atomic(&dir.join("timing.md"), text.as_bytes())?;
    Ok(rows)
}
