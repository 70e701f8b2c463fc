//! `cargo xtask table`: the Jacobian sizes of SPEC section 5.
//!
//! Counts are computed here from the cells' parameter layouts, without
//! the estimators, so they are an independent check of what the
//! estimator crates report:
//!
//! - RTRL keeps `J^h` whole: `n · P` entries.
//! - SnAp-n keeps, for each parameter, the rows of the units reachable
//!   from its target unit in at most `n − 1` edges of the unit graph.
//! - LoRA-RTRL keeps `n · Σ r (rows + cols)` over the input and recurrent
//!   matrices.
//!
//! Stored bytes are `f32` entries of every state row the estimator keeps:
//! an LSTM keeps `J^c` beside `J^h`, twice the entries.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use rtrl_cells::{CellConfig, CellKind};
use rtrl_core::{BlockKind, Cell, Estimator, ParamLayout, Rtrl, Sparsity};
use rtrl_lora::{LoraConfig, LoraLayout, LoraRtrl};
use rtrl_snap::Snap;
use serde::Serialize;

use crate::methods::{
    Method, CELLS, LORA_RANK_INPUT, LORA_RANK_RECURRENT, SNAP2_DENSITY,
};
use crate::output::{markdown_table, thousands, write_atomic, write_csv};
use crate::XtaskError;

/// The thesis network: input width of the 1-bit copy task.
pub const INPUT: usize = 3;
/// The thesis network: hidden units.
pub const HIDDEN: usize = 32;
/// The thesis network: readout width.
pub const OUTPUTS: usize = 1;
/// Mask seeds the SnAp-2 column is averaged over.
pub const MASK_SEEDS: u64 = 20;

/// The thesis's table (SPEC section 5): RTRL, SnAp-1, SnAp-2 (d = 0.6),
/// LoRA-RTRL (r = 2, 8).
pub fn thesis_entries(cell: CellKind, method: Method) -> Option<usize> {
    let row = match cell {
        CellKind::Lstm => [143_360, 4_480, 83_927, 74_496],
        CellKind::Gru => [107_520, 3_360, 63_881, 55_872],
        CellKind::Rnn => return None,
    };
    match method {
        Method::Rtrl => Some(row[0]),
        Method::Snap1 => Some(row[1]),
        Method::Snap2 => Some(row[2]),
        Method::LoraRtrl => Some(row[3]),
        Method::Bptt => None,
    }
}

/// One row of the table: one method on one cell.
#[derive(Debug, Clone, Serialize)]
pub struct TableRow {
    /// `lstm` or `gru`.
    pub cell: String,
    /// The method's legend name.
    pub method: String,
    /// Entries of `J^h` (the mean over mask seeds for SnAp-2).
    pub entries: f64,
    /// Standard deviation over mask seeds (0 for exact counts).
    pub entries_std: f64,
    /// Smallest count over mask seeds.
    pub entries_min: usize,
    /// Largest count over mask seeds.
    pub entries_max: usize,
    /// The expected count over random masks (the count itself when exact).
    pub expected: f64,
    /// The thesis's count.
    pub thesis: Option<usize>,
    /// RTRL's count divided by this one.
    pub reduction: f64,
    /// Bytes stored by one sequence's estimator (`f32`, `J^c` included),
    /// as the estimator reports it (the mean over mask seeds for SnAp-2).
    pub bytes: f64,
    /// Entries of `J^h` as the estimator crates count them (the mean
    /// over mask seeds for SnAp-2); equal to `entries`.
    pub estimator_entries: f64,
}

/// A cell of the thesis network, dense or with recurrent density
/// `density` and masks from `seed`.
pub fn thesis_cell(
    kind: CellKind,
    density: f64,
    seed: u64,
) -> Result<Arc<dyn Cell<f32>>, XtaskError> {
    let config = CellConfig {
        sparsity: Sparsity { recurrent_density: density, inout_density: 1.0, seed },
        ..CellConfig::new(kind, INPUT, HIDDEN, OUTPUTS)
    };
    let cell: Arc<dyn Cell<f32>> = rtrl_cells::build(&config)
        .map_err(|e| XtaskError::Output(format!("cannot build the {kind} cell: {e}")))?;
    Ok(cell)
}

/// Entries of `J^h` that SnAp-`level` keeps on `layout` (`hidden` units):
/// for every kept core entry `M[k, c]`, the units within `level − 1`
/// edges of `c`.
pub fn snap_entries(layout: &ParamLayout, hidden: usize, level: usize) -> usize {
    let graph = layout.unit_graph();
    let graph = if graph.is_empty() { vec![Vec::new(); hidden] } else { graph };

    // Pattern size per target unit, by breadth-first search.
    let reach: Vec<usize> = (0..hidden)
        .map(|start| {
            let mut depth = vec![usize::MAX; hidden];
            depth[start] = 0;
            let mut queue = VecDeque::from([start]);
            let mut count = 1;
            while let Some(unit) = queue.pop_front() {
                if depth[unit] + 1 >= level {
                    continue;
                }
                for &next in &graph[unit] {
                    if depth[next] == usize::MAX {
                        depth[next] = depth[unit] + 1;
                        count += 1;
                        queue.push_back(next);
                    }
                }
            }
            count
        })
        .collect();

    // Each kept entry in column c targets unit c.
    layout
        .core_blocks()
        .map(|block| {
            (0..block.rows)
                .flat_map(|k| (0..block.cols).map(move |c| (k, c)))
                .filter(|&(k, c)| block.is_kept(k, c))
                .map(|(_, c)| reach[c])
                .sum::<usize>()
        })
        .sum()
}

/// Entries of `J^h` LoRA-RTRL keeps: `hidden · Σ r (rows + cols)`.
pub fn lora_entries(layout: &ParamLayout, hidden: usize) -> usize {
    let factors: usize = layout
        .core_blocks()
        .filter_map(|block| {
            let rank = match block.kind {
                BlockKind::Input => LORA_RANK_INPUT,
                BlockKind::Recurrent => LORA_RANK_RECURRENT,
                BlockKind::Bias | BlockKind::Readout => return None,
            };
            Some(rank * (block.rows + block.cols))
        })
        .sum();
    hidden * factors
}

/// The expected SnAp-2 count of `J^h` over random masks that keep
/// exactly `round(density · n²)` entries of each of the `gates`
/// recurrent matrices (chosen uniformly and independently), with dense
/// input matrices of `input` rows.
///
/// A parameter targeting unit `c` keeps the rows of `c` and of every
/// `c' ≠ c` with an edge `c → c'` in the union of the masks. With
/// `N = n²`, `K` kept entries per mask, `q = K/N`, the count is
/// `Σ_c A_c (1 + B_c)` where `A_c = G·m + Σ_g colkept_g(c)` counts the
/// parameters targeting `c` and `B_c` its out-edges. Then
///
/// ```text
/// E[A_c]     = G·m + G·n·q
/// E[B_c]     = (n − 1)(1 − (1 − q)^G)
/// E[col·B_c] = n (n − 1) (q − K(N − K)/(N(N − 1)) · (1 − q)^(G−1))   per matrix
/// ```
///
/// (the column entry and the out-edge are distinct entries of the same
/// mask, drawn without replacement), and the total is
/// `n (E[A_c] + G·m·E[B_c] + G·E[col·B_c])`.
pub fn expected_snap2_entries(
    gates: usize,
    input: usize,
    hidden: usize,
    density: f64,
) -> f64 {
    let (g, m, n) = (gates as f64, input as f64, hidden as f64);
    let total = n * n;
    let kept = (density * total).round().clamp(1.0, total);
    let q = kept / total;
    let both_missing = kept * (total - kept) / (total * (total - 1.0));

    let mean_params = g * m + g * n * q;
    let mean_edges = (n - 1.0) * (1.0 - (1.0 - q).powf(g));
    let column_and_edge = n * (n - 1.0) * (q - both_missing * (1.0 - q).powf(g - 1.0));
    n * (mean_params + g * m * mean_edges + g * column_and_edge)
}

/// What the estimator crates report for one network: entries of `J^h`
/// and bytes stored.
fn estimator_counts(
    method: Method,
    cell: &Arc<dyn Cell<f32>>,
) -> Result<(usize, usize), XtaskError> {
    let failed = |e: rtrl_core::Error| {
        XtaskError::Output(format!("cannot build {}: {e}", method.label()))
    };
    let estimator: Box<dyn Estimator<f32>> = match method {
        Method::Bptt | Method::Rtrl => Box::new(Rtrl::new(cell.clone())),
        Method::Snap1 => Box::new(Snap::new(cell.clone(), 1).map_err(failed)?),
        Method::Snap2 => Box::new(Snap::new(cell.clone(), 2).map_err(failed)?),
        Method::LoraRtrl => {
            let layout = cell.layout();
            let base = layout.init::<f32>(0)[..layout.core_len()].to_vec();
            let config = LoraConfig {
                rank_input: LORA_RANK_INPUT,
                rank_recurrent: LORA_RANK_RECURRENT,
                ..LoraConfig::default()
            };
            let lora = LoraLayout::new(layout, &config).map_err(failed)?;
            let estimator = LoraRtrl::new(cell.clone(), base, config).map_err(failed)?;
            assert_eq!(lora.jacobian_entries(HIDDEN), estimator.jacobian_entries());
            Box::new(estimator)
        }
    };
    Ok((estimator.jacobian_entries(), estimator.jacobian_bytes()))
}

/// Computes every row of the table.
pub fn rows() -> Result<Vec<TableRow>, XtaskError> {
    let mut rows = Vec::new();
    for kind in CELLS {
        let dense = thesis_cell(kind, 1.0, 0)?;
        let rtrl = HIDDEN * dense.layout().num_core_params();
        let exact = |method: Method, entries: usize| -> Result<TableRow, XtaskError> {
            let (estimator_entries, bytes) = estimator_counts(method, &dense)?;
            Ok(TableRow {
                cell: kind.name().to_string(),
                method: method.label().to_string(),
                entries: entries as f64,
                entries_std: 0.0,
                entries_min: entries,
                entries_max: entries,
                expected: entries as f64,
                thesis: thesis_entries(kind, method),
                reduction: rtrl as f64 / entries as f64,
                bytes: bytes as f64,
                estimator_entries: estimator_entries as f64,
            })
        };
        rows.push(exact(Method::Rtrl, rtrl)?);
        rows.push(exact(Method::Snap1, snap_entries(dense.layout(), HIDDEN, 1))?);

        // SnAp-2 on sparse networks: one count per mask seed.
        let (mut counts, mut reported, mut bytes) = (Vec::new(), 0, 0);
        for seed in 0..MASK_SEEDS {
            let sparse = thesis_cell(kind, SNAP2_DENSITY, seed)?;
            counts.push(snap_entries(sparse.layout(), HIDDEN, 2));
            let (entries, stored) = estimator_counts(Method::Snap2, &sparse)?;
            reported += entries;
            bytes += stored;
        }
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        let var = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>()
            / (counts.len() as f64 - 1.0);
        rows.push(TableRow {
            cell: kind.name().to_string(),
            method: Method::Snap2.label().to_string(),
            entries: mean,
            entries_std: var.sqrt(),
            entries_min: *counts.iter().min().unwrap_or(&0),
            entries_max: *counts.iter().max().unwrap_or(&0),
            expected: expected_snap2_entries(kind.gates(), INPUT, HIDDEN, SNAP2_DENSITY),
            thesis: thesis_entries(kind, Method::Snap2),
            reduction: rtrl as f64 / mean,
            bytes: bytes as f64 / MASK_SEEDS as f64,
            estimator_entries: reported as f64 / MASK_SEEDS as f64,
        });
        rows.push(exact(Method::LoraRtrl, lora_entries(dense.layout(), HIDDEN))?);
    }
    Ok(rows)
}

/// The Markdown section: the thesis-shaped table, then the details.
pub fn markdown(rows: &[TableRow]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Entries of `J^h` for the thesis network (input {INPUT}, hidden {HIDDEN}, \
         output {OUTPUTS}, no bias). Ours, with the thesis's value in brackets. \
         SnAp-2 runs on a network of recurrent density {SNAP2_DENSITY}: mean over \
         {MASK_SEEDS} mask seeds.\n\n"
    ));
    let header = ["", "RTRL", "SnAp-1", "SnAp-2 (d = 0.6)", "LoRA-RTRL (r = 2, 8)"];
    let mut summary = Vec::new();
    for kind in CELLS {
        let mut line = vec![kind.name().to_uppercase()];
        for row in rows.iter().filter(|r| r.cell == kind.name()) {
            let ours = if row.entries_std > 0.0 {
                format!(
                    "{} ± {}",
                    thousands(row.entries.round() as usize),
                    thousands(row.entries_std.round() as usize)
                )
            } else {
                thousands(row.entries as usize)
            };
            let thesis = row.thesis.map(thousands).unwrap_or_default();
            line.push(format!("{ours} ({thesis})"));
        }
        summary.push(line);
    }
    out.push_str(&markdown_table(&header, &summary));
    out.push_str(
        "\nDetails: entries (mean over mask seeds for SnAp-2), their spread, \
         the expectation, the count the estimator itself reports, the \
         reduction against RTRL and the bytes one sequence's estimator stores \
         (`f32`; an LSTM keeps `J^c` too).\n\n",
    );
    let header = [
        "cell",
        "method",
        "entries",
        "std",
        "min",
        "max",
        "expected",
        "estimator",
        "thesis",
        "RTRL / this",
        "bytes stored",
    ];
    let details: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.cell.clone(),
                r.method.clone(),
                decimal(r.entries),
                decimal(r.entries_std),
                thousands(r.entries_min),
                thousands(r.entries_max),
                decimal(r.expected),
                decimal(r.estimator_entries),
                r.thesis.map(thousands).unwrap_or_default(),
                format!("{:.2}", r.reduction),
                thousands(r.bytes.round() as usize),
            ]
        })
        .collect();
    out.push_str(&markdown_table(&header, &details));
    out.push_str(
        "\nThe expected SnAp-2 count is exact arithmetic over masks that keep \
         `round(0.6 · n²)` entries of each recurrent matrix, independently, with \
         the union of the per-gate masks as the unit graph: a unit then reaches \
         itself and on average 31 · (1 − 0.4^g) of the 31 others, g the number of \
         recurrent matrices (3 for GRU, 4 for LSTM). The thesis's GRU count lies \
         within the spread over seeds; its LSTM count lies far below it, and this \
         definition does not reproduce it.\n",
    );
    out
}

/// `value` with thousands separators and one decimal (`88,573.2`).
fn decimal(value: f64) -> String {
    let tenths = (value * 10.0).round() as usize;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

/// Writes `jacobian.csv` and `jacobian.md` under `dir`.
pub fn write(dir: &Path) -> Result<Vec<TableRow>, XtaskError> {
    let rows = rows()?;
    write_csv(&dir.join("jacobian.csv"), &rows)?;
    let text = format!("# Jacobian sizes\n\n{}", markdown(&rows));
    write_atomic(&dir.join("jacobian.md"), text.as_bytes())?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(rows: &[TableRow], cell: CellKind, method: Method) -> TableRow {
        rows.iter()
            .find(|r| r.cell == cell.name() && r.method == method.label())
            .cloned()
            .unwrap()
    }

    #[test]
    fn exact_columns_equal_the_thesis_digit_for_digit() {
        let rows = rows().unwrap();
        for cell in CELLS {
            for method in [Method::Rtrl, Method::Snap1, Method::LoraRtrl] {
                let row = find(&rows, cell, method);
                assert_eq!(
                    Some(row.entries as usize),
                    row.thesis,
                    "{cell} {}",
                    row.method
                );
                assert_eq!(row.entries_std, 0.0);
            }
        }
        assert_eq!(find(&rows, CellKind::Lstm, Method::Rtrl).entries, 143_360.0);
        assert_eq!(find(&rows, CellKind::Lstm, Method::Snap1).entries, 4_480.0);
        assert_eq!(find(&rows, CellKind::Lstm, Method::LoraRtrl).entries, 74_496.0);
        assert_eq!(find(&rows, CellKind::Gru, Method::Rtrl).entries, 107_520.0);
        assert_eq!(find(&rows, CellKind::Gru, Method::Snap1).entries, 3_360.0);
        assert_eq!(find(&rows, CellKind::Gru, Method::LoraRtrl).entries, 55_872.0);
    }

    #[test]
    fn our_counts_equal_the_estimator_crates() {
        for row in rows().unwrap() {
            assert_eq!(row.entries, row.estimator_entries, "{} {}", row.cell, row.method);
        }
        for kind in CELLS {
            for seed in 0..5 {
                let cell = thesis_cell(kind, SNAP2_DENSITY, seed).unwrap();
                for level in 1..=3 {
                    let theirs =
                        rtrl_snap::jacobian_entries(cell.layout(), cell.shape(), level)
                            .unwrap();
                    assert_eq!(snap_entries(cell.layout(), HIDDEN, level), theirs);
                }
            }
        }
    }

    #[test]
    fn lstm_stores_twice_its_entries() {
        let rows = rows().unwrap();
        let rtrl = find(&rows, CellKind::Lstm, Method::Rtrl);
        assert_eq!(rtrl.bytes, 143_360.0 * 2.0 * 4.0);
        let gru = find(&rows, CellKind::Gru, Method::Rtrl);
        assert_eq!(gru.bytes, 107_520.0 * 4.0);
    }

    #[test]
    fn snap_reaches_rtrl_on_a_dense_network_at_level_two() {
        let dense = thesis_cell(CellKind::Gru, 1.0, 0).unwrap();
        let layout = dense.layout();
        assert_eq!(snap_entries(layout, HIDDEN, 2), HIDDEN * layout.num_core_params());
    }

    #[test]
    fn analytic_expectation_matches_the_mean_over_many_masks() {
        // 400 masks; the spread of one count is about 200 entries, so the
        // mean's standard error is about 10: allow 60 (0.1 %).
        for kind in CELLS {
            let mean = (0..400)
                .map(|seed| {
                    let cell = thesis_cell(kind, SNAP2_DENSITY, 1000 + seed).unwrap();
                    snap_entries(cell.layout(), HIDDEN, 2) as f64
                })
                .sum::<f64>()
                / 400.0;
            let expected =
                expected_snap2_entries(kind.gates(), INPUT, HIDDEN, SNAP2_DENSITY);
            assert!(
                (mean - expected).abs() < 60.0,
                "{kind}: mean {mean}, expected {expected}"
            );
        }
    }

    #[test]
    fn expectation_of_a_dense_network_is_rtrl() {
        // Density 1: every unit reaches every other, so n · P.
        let p = 3 * (3 * 32 + 32 * 32);
        assert!((expected_snap2_entries(3, 3, 32, 1.0) - (32 * p) as f64).abs() < 1e-6);
    }
}
