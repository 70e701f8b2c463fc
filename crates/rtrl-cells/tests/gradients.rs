//! Every derivative the cells report, checked against an independent
//! computation, and exact RTRL checked against BPTT.

use std::sync::Arc;

use proptest::prelude::*;
use rtrl_cells::{build, CellConfig, CellKind};
use rtrl_core::check::{relative_error, Probe};
use rtrl_core::{Bptt, Cell, GateJacobian, Rtrl, Scalar, Sparsity, StateJacobian};

/// A random cell: kind, sizes up to the given bounds, dense or sparse.
fn cells() -> impl Strategy<Value = (CellConfig, u64, usize)> {
    (
        prop_oneof![Just(CellKind::Gru), Just(CellKind::Lstm), Just(CellKind::Rnn)],
        1usize..=5,
        1usize..=8,
        1usize..=3,
        any::<bool>(),
        prop_oneof![Just(1.0), 0.3f64..1.0],
        prop_oneof![Just(1.0), 0.5f64..1.0],
        any::<u64>(),
        1usize..=12,
    )
        .prop_map(|(kind, input, hidden, outputs, bias, rec, io, seed, steps)| {
            let sparsity = Sparsity { recurrent_density: rec, inout_density: io, seed };
            let config = CellConfig { kind, input, hidden, outputs, bias, sparsity };
            (config, seed, steps)
        })
}

/// Parameters with non-zero biases, so that bias gradients are exercised.
fn params<T: Scalar>(cell: &dyn Cell<T>, seed: u64) -> Vec<T> {
    let layout = cell.layout();
    let mut theta: Vec<T> = layout.init(seed);
    for block in layout.blocks().iter().filter(|b| b.kind == rtrl_core::BlockKind::Bias) {
        for c in 0..block.cols {
            theta[block.offset + c] = T::from_f64(0.1 * ((c % 5) as f64 - 2.0));
        }
    }
    theta.truncate(layout.core_len());
    theta
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// RTRL's accumulated gradient equals BPTT's (f64), every entry within
    /// 1e-9 of the largest.
    #[test]
    fn rtrl_equals_bptt((config, seed, steps) in cells()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let theta = params(&*cell, seed);
        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);
        let reference = probe.gradient(&mut Bptt::new(cell.clone()), &theta);
        let rtrl = probe.gradient(&mut Rtrl::new(cell.clone()), &theta);
        let err = relative_error(&rtrl, &reference);
        prop_assert!(err <= 1e-9, "relative error {err:e} for {config:?}");
        // Masked entries carry no gradient.
        for (i, g) in rtrl.iter().enumerate() {
            if !cell.layout().is_kept(i) {
                prop_assert_eq!(*g, 0.0);
            }
        }
    }

    /// BPTT agrees with central finite differences (f64, step 1e-6): the
    /// truncation and rounding error of the difference quotient stays
    /// below 1e-6 of the gradient's largest entry.
    #[test]
    fn bptt_matches_finite_differences((config, seed, steps) in cells()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let theta = params(&*cell, seed);
        let probe = Probe::<f64>::random(seed ^ 1, steps, config.input, config.hidden);
        let mut bptt = Bptt::new(cell.clone());
        let analytic = probe.gradient(&mut bptt, &theta);
        let kept = cell.layout().kept().to_vec();
        let numeric = probe.finite_differences(&mut bptt, &theta, &kept, 1e-6);
        let err = relative_error(&analytic, &numeric);
        prop_assert!(err <= 1e-6, "relative error {err:e} for {config:?}");
    }

    /// RTRL in f32 stays within 1e-4 of RTRL in f64, on the f64 gradient's
    /// scale.
    #[test]
    fn rtrl_f32_tracks_f64((config, seed, steps) in cells()) {
        let cell64: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let cell32: Arc<dyn Cell<f32>> = build(&config).unwrap();
        let theta64 = params(&*cell64, seed);
        let theta32: Vec<f32> = rtrl_core::scalar::convert(&theta64);
        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);
        let g64 = probe.gradient(&mut Rtrl::new(cell64), &theta64);
        let g32 = probe.convert::<f32>().gradient(&mut Rtrl::new(cell32), &theta32);
        let err = relative_error(&g32, &g64);
        prop_assert!(err <= 1e-4, "relative error {err:e} for {config:?}");
    }

    /// `D_t`, the gate Jacobian and the unit blocks agree with finite
    /// differences of one forward step (f64, step 1e-6, tolerance 1e-7
    /// absolute on values of order one).
    #[test]
    fn step_jacobians_match_finite_differences((config, seed, _steps) in cells()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let shape = cell.shape();
        let theta = params(&*cell, seed);
        let probe = Probe::<f64>::random(seed, 2, config.input, shape.state);
        let state: Vec<f64> = probe.weights[0].iter().map(|v| 0.8 * v).collect();
        let x = &probe.inputs[1];
        let mut cache = cell.new_cache();
        let mut next = vec![0.0; shape.state];
        cell.forward(&theta, &state, x, &mut cache, &mut next);
        let mut d = StateJacobian::new(shape);
        cell.state_jacobian(&theta, &cache, &mut d);
        let dense = d.to_dense();

        // D by finite differences of the state.
        let eps = 1e-6;
        let mut scratch = cell.new_cache();
        let mut up = vec![0.0; shape.state];
        let mut down = vec![0.0; shape.state];
        for col in 0..shape.state {
            let mut s = state.clone();
            s[col] += eps;
            cell.forward(&theta, &s, x, &mut scratch, &mut up);
            s[col] -= 2.0 * eps;
            cell.forward(&theta, &s, x, &mut scratch, &mut down);
            for row in 0..shape.state {
                let numeric = (up[row] - down[row]) / (2.0 * eps);
                prop_assert!((numeric - dense[(row, col)]).abs() < 1e-7,
                    "D[{row},{col}] = {} vs {numeric}", dense[(row, col)]);
            }
        }

        // The unit blocks are D's unit-wise entries.
        let k = shape.state / shape.hidden;
        let mut blocks = vec![0.0; shape.hidden * k * k];
        cell.unit_jacobian(&theta, &cache, &mut blocks);
        for c in 0..shape.hidden {
            for a in 0..k {
                for b in 0..k {
                    let want = dense[(a * shape.hidden + c, b * shape.hidden + c)];
                    prop_assert!((blocks[c * k * k + a * k + b] - want).abs() < 1e-12);
                }
            }
        }

        // backward is the transpose of D, and the gate Jacobian's
        // transpose, applied to a random vector.
        let mut gates = GateJacobian::new(shape, cell.dense_gates());
        cell.gate_jacobian(&theta, &cache, &mut gates);
        let v = &probe.weights[1];
        let mut d_gates = vec![0.0; shape.gates * shape.hidden];
        let mut d_state = vec![0.0; shape.state];
        cell.backward(&theta, &cache, v, &mut d_gates, &mut d_state);
        for col in 0..shape.state {
            let want: f64 = (0..shape.state).map(|r| v[r] * dense[(r, col)]).sum();
            prop_assert!((d_state[col] - want).abs() < 1e-12);
        }
        for g in 0..shape.gates {
            for c in 0..shape.hidden {
                let want: f64 = (0..shape.state).map(|r| v[r] * gates.entry(g, c, r)).sum();
                prop_assert!((d_gates[g * shape.hidden + c] - want).abs() < 1e-12);
            }
        }
    }
}

/// Hidden 1, input 1, one step: the smallest shapes still agree.
#[test]
fn smallest_shapes_agree() {
    for kind in [CellKind::Gru, CellKind::Lstm, CellKind::Rnn] {
        let config = CellConfig::new(kind, 1, 1, 1);
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let theta = params(&*cell, 5);
        let probe = Probe::<f64>::random(9, 1, 1, 1);
        let a = probe.gradient(&mut Bptt::new(cell.clone()), &theta);
        let b = probe.gradient(&mut Rtrl::new(cell.clone()), &theta);
        assert!(relative_error(&b, &a) <= 1e-12, "{kind}");
    }
}

/// Truncated BPTT with a window as long as the sequence is full BPTT, and
/// with a window of one step it only sees the immediate Jacobian.
#[test]
fn truncated_bptt_windows() {
    let config = CellConfig::new(CellKind::Gru, 2, 4, 1);
    let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
    let theta = params(&*cell, 1);
    let probe = Probe::<f64>::random(2, 6, 2, 4);
    let full = probe.gradient(&mut Bptt::new(cell.clone()), &theta);
    let long = probe.gradient(&mut Bptt::with_window(cell.clone(), Some(6)), &theta);
    assert_eq!(full, long);
    let short = probe.gradient(&mut Bptt::with_window(cell.clone(), Some(1)), &theta);
    assert!(relative_error(&short, &full) > 1e-3);
}

/// Pins a seeded GRU step so that any change to the arithmetic shows.
#[test]
fn gru_value_stability() {
    let config = CellConfig::new(CellKind::Gru, 3, 4, 1);
    let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
    let theta: Vec<f64> = cell.layout().init(0);
    let probe = Probe::<f64>::random(0, 3, 3, 4);
    let loss = probe.loss(&mut Bptt::new(cell.clone()), &theta);
    assert_eq!(loss, 0.09769236430734891, "seeded GRU loss changed");
}
