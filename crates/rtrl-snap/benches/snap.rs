//! SnAp-n against dense RTRL and BPTT on the thesis setting: hidden 32,
//! input 3, one output, f32, sequences of 22 steps (an epoch is 16 such
//! sequences).
//!
//! One group per level and cell (`snap-1/gru`, …, `snap-3/lstm`). The
//! network is dense for level 1 and has recurrent density 0.6 (mask seed
//! 0) for levels 2 and 3; RTRL and BPTT run on the same network as SnAp in
//! each group. In every group:
//!
//! - `snap/step`, `rtrl/step`: one forward and backward step, in the
//!   middle of a long stream (the influence matrix is not fresh);
//! - `snap/sequence`, `rtrl/sequence`, `bptt/sequence`: one sequence of
//!   22 steps from a reset, gradient included.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rtrl_cells::{build, CellConfig, CellKind};
use rtrl_core::check::Probe;
use rtrl_core::{Bptt, Cell, Estimator, Rtrl, Sparsity};
use rtrl_snap::Snap;

/// Steps per sequence of the thesis's copy task (`2 · 10 + 2`).
const STEPS: usize = 22;

/// The thesis network, dense or with recurrent density 0.6.
fn cell(kind: CellKind, density: f64) -> Arc<dyn Cell<f32>> {
    let sparsity = Sparsity { recurrent_density: density, inout_density: 1.0, seed: 0 };
    let config = CellConfig { sparsity, ..CellConfig::new(kind, 3, 32, 1) };
    build(&config).expect("valid thesis network")
}

/// One step after another on the probe's inputs, never resetting.
fn stream_step(
    estimator: &mut dyn Estimator<f32>,
    theta: &[f32],
    probe: &Probe<f32>,
    grad: &mut [f32],
    t: &mut usize,
) {
    let i = *t % STEPS;
    estimator.forward(theta, &probe.inputs[i]);
    estimator.backward(theta, &probe.weights[i], grad);
    *t += 1;
}

/// One whole sequence from a reset, gradient included.
fn sequence(
    estimator: &mut dyn Estimator<f32>,
    theta: &[f32],
    probe: &Probe<f32>,
    grad: &mut [f32],
) {
    estimator.reset();
    grad.fill(0.0);
    for (x, c) in probe.inputs.iter().zip(&probe.weights) {
        estimator.forward(theta, x);
        estimator.backward(theta, c, grad);
    }
    estimator.flush(theta, grad);
}

fn bench_levels(c: &mut Criterion) {
    for kind in [CellKind::Gru, CellKind::Lstm] {
        for level in 1..=3 {
            let density = if level == 1 { 1.0 } else { 0.6 };
            let cell = cell(kind, density);
            let mut theta: Vec<f32> = cell.layout().init(0);
            theta.truncate(cell.layout().core_len());
            let probe = Probe::<f32>::random(0, STEPS, 3, 32);
            let mut grad = vec![0.0f32; theta.len()];

            let mut group = c.benchmark_group(format!("snap-{level}/{kind}"));
            let mut snap = Snap::new(cell.clone(), level).expect("valid level");
            let mut rtrl = Rtrl::new(cell.clone());
            let mut bptt = Bptt::new(cell.clone());

            let mut t = 0;
            group.bench_function("snap/step", |b| {
                b.iter(|| stream_step(&mut snap, &theta, &probe, &mut grad, &mut t))
            });
            let mut t = 0;
            group.bench_function("rtrl/step", |b| {
                b.iter(|| stream_step(&mut rtrl, &theta, &probe, &mut grad, &mut t))
            });
            group.bench_function("snap/sequence", |b| {
                b.iter(|| sequence(&mut snap, &theta, &probe, &mut grad))
            });
            group.bench_function("rtrl/sequence", |b| {
                b.iter(|| sequence(&mut rtrl, &theta, &probe, &mut grad))
            });
            group.bench_function("bptt/sequence", |b| {
                b.iter(|| sequence(&mut bptt, &theta, &probe, &mut grad))
            });
            group.finish();
            black_box(&grad);
        }
    }
}

criterion_group!(benches, bench_levels);
criterion_main!(benches);
