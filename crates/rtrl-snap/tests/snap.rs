//! SnAp-n against exact RTRL and BPTT, and its pattern against a
//! brute-force construction written independently of the crate's.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use rtrl_cells::{build, CellConfig, CellKind};
use rtrl_core::check::{relative_error, Probe};
use rtrl_core::{BlockKind, Bptt, Cell, Estimator, Rtrl, Scalar, Sparsity};
use rtrl_snap::{jacobian_entries, Snap, SnapPattern};

/// A random cell: kind, input 1..5, hidden 1..8, dense or sparse, with
/// and without biases; plus a seed and a sequence length 1..12.
fn cells() -> impl Strategy<Value = (CellConfig, u64, usize)> {
    (
        prop_oneof![Just(CellKind::Gru), Just(CellKind::Lstm), Just(CellKind::Rnn)],
        1usize..=5,
        1usize..=8,
        any::<bool>(),
        prop_oneof![Just(1.0), 0.1f64..1.0],
        prop_oneof![Just(1.0), 0.3f64..1.0],
        any::<u64>(),
        1usize..=12,
    )
        .prop_map(|(kind, input, hidden, bias, rec, io, seed, steps)| {
            let sparsity = Sparsity { recurrent_density: rec, inout_density: io, seed };
            let config = CellConfig { kind, input, hidden, outputs: 1, bias, sparsity };
            (config, seed, steps)
        })
}

/// Core parameters with non-zero biases, so that bias columns carry
/// influence too.
fn params<T: Scalar>(cell: &dyn Cell<T>, seed: u64) -> Vec<T> {
    let layout = cell.layout();
    let mut theta: Vec<T> = layout.init(seed);
    for block in layout.blocks().iter().filter(|b| b.kind == BlockKind::Bias) {
        for c in 0..block.cols {
            theta[block.offset + c] = T::from_f64(0.1 * ((c % 5) as f64 - 2.0));
        }
    }
    theta.truncate(layout.core_len());
    theta
}

/// The pattern by brute force: a `|s| × P` mask, from the block masks
/// alone. Unit `v` is kept for a parameter in column `c` when the
/// `(level − 1)`-th power of the graph's adjacency (with self loops)
/// links `c` to `v`.
fn brute_force_mask(cell: &dyn Cell<f64>, level: usize) -> Vec<Vec<bool>> {
    let shape = cell.shape();
    let n = shape.hidden;
    let layout = cell.layout();

    // Adjacency with self loops, from every recurrent block's kept entries.
    let mut step = vec![vec![false; n]; n];
    for (c, row) in step.iter_mut().enumerate() {
        row[c] = true;
    }
    for block in layout.blocks().iter().filter(|b| b.kind == BlockKind::Recurrent) {
        for k in 0..n {
            for c in 0..n {
                if block.is_kept(k, c) {
                    step[k][c] = true;
                }
            }
        }
    }

    // reach[c][v]: v within level − 1 edges of c, by repeated expansion.
    let mut reach: Vec<Vec<bool>> =
        (0..n).map(|c| (0..n).map(|v| v == c).collect()).collect();
    for _ in 1..level {
        reach = reach
            .iter()
            .map(|from| (0..n).map(|v| (0..n).any(|w| from[w] && step[w][v])).collect())
            .collect();
    }

    // One column per kept core entry, in flat order.
    let mut columns = Vec::new();
    for block in layout.blocks().iter().filter(|b| b.kind != BlockKind::Readout) {
        for k in 0..block.rows {
            for c in 0..block.cols {
                if block.is_kept(k, c) {
                    columns.push(c);
                }
            }
        }
    }
    (0..shape.state)
        .map(|row| columns.iter().map(|&c| reach[c][row % n]).collect())
        .collect()
}

/// Largest shortest-path distance between two units connected by a path.
fn diameter(graph: &[Vec<usize>]) -> usize {
    let n = graph.len();
    let mut worst = 0;
    for start in 0..n {
        let mut dist = vec![usize::MAX; n];
        dist[start] = 0;
        let mut frontier = vec![start];
        while let Some(u) = frontier.pop() {
            for &v in &graph[u] {
                if dist[v] > dist[u] + 1 {
                    dist[v] = dist[u] + 1;
                    frontier.push(v);
                }
            }
        }
        worst =
            worst.max(dist.iter().filter(|&&d| d != usize::MAX).copied().max().unwrap());
    }
    worst
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// SnAp-n with n − 1 at least the unit graph's diameter is exact: every
    /// entry within 1e-10 of BPTT's largest (f64), and RTRL's too.
    #[test]
    fn snap_at_the_diameter_is_exact((config, seed, steps) in cells()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let theta = params(&*cell, seed);
        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);
        let level = diameter(&cell.layout().unit_graph()) + 1;
        let snap = probe.gradient(&mut Snap::new(cell.clone(), level).unwrap(), &theta);
        let bptt = probe.gradient(&mut Bptt::new(cell.clone()), &theta);
        let rtrl = probe.gradient(&mut Rtrl::new(cell.clone()), &theta);
        let err = relative_error(&snap, &bptt);
        prop_assert!(err <= 1e-10, "SnAp-{level} vs BPTT: {err:e} for {config:?}");
        let err = relative_error(&snap, &rtrl);
        prop_assert!(err <= 1e-10, "SnAp-{level} vs RTRL: {err:e} for {config:?}");

        // A larger level changes nothing either.
        let far = probe.gradient(
            &mut Snap::new(cell.clone(), config.hidden + 1).unwrap(), &theta);
        prop_assert!(relative_error(&far, &bptt) <= 1e-10);
    }

    /// On a dense network SnAp-2 already is RTRL (1e-10 of the largest
    /// entry), and so is its influence matrix after the sequence.
    #[test]
    fn snap2_on_a_dense_network_is_rtrl((config, seed, steps) in cells()) {
        let config = CellConfig { sparsity: Sparsity::dense(), ..config };
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let theta = params(&*cell, seed);
        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);
        let mut snap = Snap::new(cell.clone(), 2).unwrap();
        let mut rtrl = Rtrl::new(cell.clone());
        let a = probe.gradient(&mut snap, &theta);
        let b = probe.gradient(&mut rtrl, &theta);
        let err = relative_error(&a, &b);
        prop_assert!(err <= 1e-10, "SnAp-2 vs RTRL: {err:e} for {config:?}");
        let (ja, jb) = (snap.influence(), rtrl.influence());
        let flat = |m: &faer::Mat<f64>| -> Vec<f64> {
            (0..m.ncols()).flat_map(|c| (0..m.nrows()).map(move |r| (r, c)))
                .map(|(r, c)| m[(r, c)]).collect()
        };
        prop_assert!(relative_error(&flat(&ja), &flat(&jb)) <= 1e-10);
    }

    /// SnAp-1 on a tanh RNN whose recurrent matrix is diagonal is RTRL:
    /// `D_t` is diagonal, so a parameter of column c only ever moves unit
    /// c. The same holds for a GRU or LSTM whose recurrent matrices are all
    /// diagonal (the GRU's reset gate then acts on its own unit too). The
    /// masks do not know the matrices are diagonal, so the pattern is the
    /// generic SnAp-1 one; equality holds on every entry (1e-10 of the
    /// largest).
    #[test]
    fn snap1_on_diagonal_recurrences_is_rtrl((config, seed, steps) in cells()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let mut theta = params(&*cell, seed);
        for r in cell.layout().blocks().iter().filter(|b| b.kind == BlockKind::Recurrent) {
            for k in 0..r.rows {
                for c in (0..r.cols).filter(|&c| c != k) {
                    theta[r.offset + k * r.cols + c] = 0.0;
                }
            }
        }
        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);
        let mut snap = Snap::new(cell.clone(), 1).unwrap();
        let mut rtrl = Rtrl::new(cell.clone());
        let a = probe.gradient(&mut snap, &theta);
        let b = probe.gradient(&mut rtrl, &theta);
        let err = relative_error(&a, &b);
        prop_assert!(err <= 1e-10, "SnAp-1 vs RTRL: {err:e} for {config:?}");
        let (ja, jb) = (snap.influence(), rtrl.influence());
        for row in 0..ja.nrows() {
            for col in 0..ja.ncols() {
                prop_assert!((ja[(row, col)] - jb[(row, col)]).abs() <= 1e-12);
            }
        }
    }

    /// The kept entries are exactly the brute-force pattern's; the stored
    /// influence is zero outside it at every step, and after one step
    /// (J_1 = I_1) equals RTRL's on it.
    #[test]
    fn kept_entries_follow_the_definition(
        (config, seed, steps) in cells(),
        level in 1usize..=4,
    ) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let shape = cell.shape();
        let pattern = SnapPattern::new(cell.layout(), shape, level).unwrap();
        let mask = brute_force_mask(&*cell, level);
        let p = cell.layout().num_core_params();
        let mut entries = 0;
        for (row, kept) in mask.iter().enumerate() {
            for (param, &want) in kept.iter().enumerate() {
                prop_assert_eq!(pattern.is_kept(param, row), want,
                    "row {} param {} level {} {:?}", row, param, level, config);
                entries += usize::from(want && row < shape.hidden);
            }
        }
        prop_assert_eq!(pattern.entries(), entries);
        prop_assert_eq!(pattern.stored_entries(), entries * shape.state / shape.hidden);
        prop_assert_eq!(jacobian_entries(cell.layout(), shape, level).unwrap(), entries);

        // Step 1: J_1 = I_1 on the pattern, zero off it.
        let theta = params(&*cell, seed);
        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);
        let mut snap = Snap::new(cell.clone(), level).unwrap();
        let mut rtrl = Rtrl::new(cell.clone());
        let mut grad = vec![0.0; theta.len()];
        for (t, (x, c)) in probe.inputs.iter().zip(&probe.weights).enumerate() {
            snap.forward(&theta, x);
            snap.backward(&theta, c, &mut grad);
            rtrl.forward(&theta, x);
            rtrl.backward(&theta, c, &mut grad);
            let (js, jr) = (snap.influence(), rtrl.influence());
            for row in 0..shape.state {
                for param in 0..p {
                    let kept = mask[row][param];
                    if !kept {
                        prop_assert_eq!(js[(row, param)], 0.0);
                    } else if t == 0 {
                        prop_assert!((js[(row, param)] - jr[(row, param)]).abs() <= 1e-14);
                    }
                }
            }
        }
    }
}

/// Level 0 is refused with a typed error.
#[test]
fn level_zero_is_an_error() {
    let cell: Arc<dyn Cell<f64>> =
        build(&CellConfig::new(CellKind::Gru, 2, 3, 1)).unwrap();
    let err = Snap::new(cell.clone(), 0).err().unwrap();
    assert_eq!(err.to_string(), "SnAp level must be at least 1, got 0");
    assert!(jacobian_entries(cell.layout(), cell.shape(), 0).is_err());
}

/// Hidden 1, input 1, one step: every level agrees with BPTT.
#[test]
fn smallest_shapes_agree() {
    for kind in [CellKind::Gru, CellKind::Lstm, CellKind::Rnn] {
        let cell: Arc<dyn Cell<f64>> = build(&CellConfig::new(kind, 1, 1, 1)).unwrap();
        let theta = params(&*cell, 3);
        let probe = Probe::<f64>::random(4, 1, 1, 1);
        let want = probe.gradient(&mut Bptt::new(cell.clone()), &theta);
        for level in 1..=3 {
            let got =
                probe.gradient(&mut Snap::new(cell.clone(), level).unwrap(), &theta);
            assert!(relative_error(&got, &want) <= 1e-12, "{kind} level {level}");
        }
    }
}

/// SnAp-1 is not exact on a dense GRU (the approximation does drop
/// something), but close on a short sequence.
#[test]
fn snap1_is_an_approximation() {
    let cell: Arc<dyn Cell<f64>> =
        build(&CellConfig::new(CellKind::Gru, 3, 8, 1)).unwrap();
    let theta = params(&*cell, 1);
    let probe = Probe::<f64>::random(2, 10, 3, 8);
    let exact = probe.gradient(&mut Rtrl::new(cell.clone()), &theta);
    let snap = probe.gradient(&mut Snap::new(cell.clone(), 1).unwrap(), &theta);
    let err = relative_error(&snap, &exact);
    assert!(err > 1e-6 && err < 1.0, "relative error {err:e}");
}

/// The thesis network (input 3, hidden 32, output 1, no bias, dense):
/// SnAp-1 keeps P entries of J^h, SnAp-2 all n·P, as RTRL.
#[test]
fn thesis_counts() {
    for (kind, snap1, snap2) in
        [(CellKind::Gru, 3_360, 107_520), (CellKind::Lstm, 4_480, 143_360)]
    {
        let cell: Arc<dyn Cell<f32>> = build(&CellConfig::new(kind, 3, 32, 1)).unwrap();
        let (layout, shape) = (cell.layout(), cell.shape());
        assert_eq!(jacobian_entries(layout, shape, 1).unwrap(), snap1, "{kind}");
        assert_eq!(jacobian_entries(layout, shape, 2).unwrap(), snap2, "{kind}");
        let one = Snap::new(cell.clone(), 1).unwrap();
        assert_eq!(one.jacobian_entries(), snap1);
        let k = shape.state / shape.hidden;
        assert_eq!(one.jacobian_bytes(), snap1 * k * 4);
        let rtrl = Rtrl::new(cell.clone());
        assert_eq!(
            Snap::new(cell, 2).unwrap().jacobian_entries(),
            rtrl.jacobian_entries()
        );
    }
}

/// Names carry the level.
#[test]
fn names() {
    let cell: Arc<dyn Cell<f64>> =
        build(&CellConfig::new(CellKind::Lstm, 2, 3, 1)).unwrap();
    assert_eq!(Snap::new(cell.clone(), 1).unwrap().name(), "SnAp-1");
    assert_eq!(Snap::new(cell, 3).unwrap().name(), "SnAp-3");
}

/// A seeded SnAp-2 gradient on a sparse LSTM, pinned to catch any
/// change in the arithmetic.
#[test]
fn value_stability() {
    let sparsity = Sparsity { recurrent_density: 0.5, inout_density: 1.0, seed: 11 };
    let config = CellConfig { sparsity, ..CellConfig::new(CellKind::Lstm, 2, 5, 1) };
    let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
    let theta = params(&*cell, 0);
    let probe = Probe::<f64>::random(0, 6, 2, 5);
    let grad = probe.gradient(&mut Snap::new(cell.clone(), 2).unwrap(), &theta);
    let kept: BTreeSet<usize> = cell.layout().kept().iter().copied().collect();
    let sum: f64 =
        grad.iter().enumerate().filter(|(i, _)| kept.contains(i)).map(|(_, g)| g).sum();
    let norm: f64 = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
    // Pinned values; 1e-12 relative leaves room for a change of product
    // kernel (summation order), not for a change of arithmetic.
    let (want_sum, want_norm) = (-0.38338853354930214, 0.6822834406535864);
    assert!((sum - want_sum).abs() <= 1e-12 * want_norm, "sum {sum}");
    assert!((norm - want_norm).abs() <= 1e-12 * want_norm, "norm {norm}");
}

/// Blocks large enough for the `faer` product (hidden 24): SnAp-2 on a
/// dense GRU and LSTM is RTRL, and SnAp-n at the diameter of a sparse one
/// is BPTT, both within 1e-10 of the largest entry.
#[test]
fn large_blocks_are_exact() {
    for kind in [CellKind::Gru, CellKind::Lstm, CellKind::Rnn] {
        let dense = CellConfig::new(kind, 3, 24, 1);
        let sparse = CellConfig {
            sparsity: Sparsity { recurrent_density: 0.15, inout_density: 0.8, seed: 5 },
            bias: true,
            ..dense
        };
        for config in [dense, sparse] {
            let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
            let theta = params(&*cell, 7);
            let probe = Probe::<f64>::random(8, 15, 3, 24);
            let level = diameter(&cell.layout().unit_graph()) + 1;
            let snap =
                probe.gradient(&mut Snap::new(cell.clone(), level).unwrap(), &theta);
            let bptt = probe.gradient(&mut Bptt::new(cell.clone()), &theta);
            let err = relative_error(&snap, &bptt);
            assert!(err <= 1e-10, "{kind} SnAp-{level}: {err:e}");
        }
    }
}

/// SnAp-2 counts on the thesis network at recurrent density 0.6, mask
/// seed 0, pinned (they move only if the masks or the pattern change).
#[test]
fn snap2_counts_at_density_six_tenths() {
    for (kind, want) in [(CellKind::Gru, 64_340), (CellKind::Lstm, 89_087)] {
        let sparsity = Sparsity { recurrent_density: 0.6, inout_density: 1.0, seed: 0 };
        let config = CellConfig { sparsity, ..CellConfig::new(kind, 3, 32, 1) };
        let cell: Arc<dyn Cell<f32>> = build(&config).unwrap();
        assert_eq!(
            jacobian_entries(cell.layout(), cell.shape(), 2).unwrap(),
            want,
            "{kind}"
        );
    }
}

/// The `f32` block products (the workspace's vector kernel, with the
/// LSTM's diagonal fused into it) against the exact gradient in `f64`:
/// SnAp-n at the diameter of sparse cells of hidden 24 is BPTT, every
/// entry within 1e-4 of the f64 gradient's largest (f32 rounding over 12
/// steps).
#[test]
fn large_blocks_in_f32_are_exact() {
    for kind in [CellKind::Gru, CellKind::Lstm, CellKind::Rnn] {
        for density in [1.0, 0.3] {
            let config = CellConfig {
                sparsity: Sparsity {
                    recurrent_density: density,
                    inout_density: 1.0,
                    seed: 2,
                },
                ..CellConfig::new(kind, 3, 24, 1)
            };
            let cell64: Arc<dyn Cell<f64>> = build(&config).unwrap();
            let cell32: Arc<dyn Cell<f32>> = build(&config).unwrap();
            let level = diameter(&cell64.layout().unit_graph()) + 1;
            let theta64 = params(&*cell64, 4);
            let theta32: Vec<f32> = rtrl_core::scalar::convert(&theta64);
            let probe = Probe::<f64>::random(6, 12, 3, 24);
            let bptt = probe.gradient(&mut Bptt::new(cell64), &theta64);
            let snap = probe
                .convert::<f32>()
                .gradient(&mut Snap::new(cell32, level).unwrap(), &theta32);
            let err = relative_error(&snap, &bptt);
            assert!(err <= 1e-4, "{kind} density {density} SnAp-{level}: {err:e}");
        }
    }
}
