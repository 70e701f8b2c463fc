//! Jacobian entry counts of SnAp-1 and SnAp-2 on the thesis network
//! (input 3, hidden 32, output 1, no bias), SnAp-2 at recurrent density
//! 0.6 over the mask seeds 0..20, beside the thesis's values.
//!
//! ```text
//! cargo run --release -p rtrl-snap --example counts
//! ```

use std::sync::Arc;

use rtrl_cells::{build, CellConfig, CellKind};
use rtrl_core::{Cell, Result, Sparsity};
use rtrl_snap::jacobian_entries;

/// Mask seeds of the SnAp-2 column.
const SEEDS: std::ops::Range<u64> = 0..20;

fn main() -> Result<()> {
    println!(
        "cell  level  density  entries of J^h (mean, min, max, sd over seeds)  thesis"
    );
    for (kind, gates, thesis) in [(CellKind::Gru, 3, 63_881), (CellKind::Lstm, 4, 83_927)]
    {
        // SnAp-1 on the dense network: exact, one entry per parameter.
        let dense: Arc<dyn Cell<f32>> = build(&CellConfig::new(kind, 3, 32, 1))?;
        let snap1 = jacobian_entries(dense.layout(), dense.shape(), 1)?;
        println!("{:<5} 1      1.0      {snap1}", kind.name());

        // SnAp-2 at recurrent density 0.6, one mask per seed.
        let mut counts = Vec::new();
        for seed in SEEDS {
            let sparsity = Sparsity { recurrent_density: 0.6, inout_density: 1.0, seed };
            let config = CellConfig { sparsity, ..CellConfig::new(kind, 3, 32, 1) };
            let cell: Arc<dyn Cell<f32>> = build(&config)?;
            counts.push(jacobian_entries(cell.layout(), cell.shape(), 2)? as f64);
        }
        let mean = counts.iter().sum::<f64>() / counts.len() as f64;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>()
            / (counts.len() - 1) as f64;
        let min = counts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = counts.iter().copied().fold(0.0, f64::max);
        let states = if kind == CellKind::Lstm { 2.0 } else { 1.0 };
        println!(
            "{:<5} 2      0.6      {mean:.1} ({min}, {max}, sd {:.1}); expected {:.1}; \
             stored {:.0} bytes in f32  {thesis}",
            kind.name(),
            var.sqrt(),
            expected_snap2(3, 32, gates, 0.6),
            mean * states * 4.0,
        );
        println!("      seeds {SEEDS:?}: {counts:?}");
    }
    Ok(())
}

/// The expected SnAp-2 count over random masks that keep exactly
/// `round(d·n²)` entries of each of the `gates` recurrent matrices (input
/// matrices dense, no bias).
///
/// Unit `c` has `q_c = m·G + Σ_g X_g` parameters (`X_g` kept entries in
/// column `c` of `R_g`) and `|U_c| = 1 + #{v ≠ c : some R_g keeps (c, v)}`
/// pattern units; the count is `Σ_c q_c |U_c|`. `X_g` and the edge
/// indicators of the same matrix are slightly dependent (sampling without
/// replacement), which the second moment below accounts for.
fn expected_snap2(m: usize, n: usize, gates: i32, density: f64) -> f64 {
    let (m, n, g) = (m as f64, n as f64, gates as f64);
    let total = n * n;
    let kept = (density * total).round();
    let p = kept / total;

    // E[X_g], and E[X_g · e_g] for one off-column entry e_g of row c.
    let column = n * p;
    let column_and_entry = n * kept * (kept - 1.0) / (total * (total - 1.0));

    // E[q_c] and E[q_c · 1{c → v}] for v ≠ c.
    let q = m * g + g * column;
    let edge = 1.0 - (1.0 - p).powi(gates);
    let q_and_edge = m * g * edge
        + g * (column - (column - column_and_entry) * (1.0 - p).powi(gates - 1));
    n * (q + (n - 1.0) * q_and_edge)
}
