//! LoRA-RTRL against dense RTRL on the thesis network (input 3, hidden
//! 32, f32, ranks 2 and 8): one step, and one 22-step sequence (the copy
//! task's length for L_max = 10), for the GRU and the LSTM.
//!
//! One criterion group per estimator; run with `cargo bench -p rtrl-lora`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rtrl_cells::{build, CellConfig, CellKind};
use rtrl_core::check::Probe;
use rtrl_core::{Cell, Estimator, Rtrl};
use rtrl_lora::{init_factors, LoraConfig, LoraLayout, LoraRtrl};

const HIDDEN: usize = 32;
const INPUT: usize = 3;
const STEPS: usize = 22;

/// An estimator with its trainable vector, ready to run.
struct Setup {
    estimator: Box<dyn Estimator<f32>>,
    theta: Vec<f32>,
}

fn cell(kind: CellKind) -> Arc<dyn Cell<f32>> {
    build(&CellConfig::new(kind, INPUT, HIDDEN, 1)).expect("valid sizes")
}

fn lora(kind: CellKind) -> Setup {
    let cell = cell(kind);
    let base = cell.layout().init::<f32>(0)[..cell.layout().core_len()].to_vec();
    let config = LoraConfig::default();
    let layout = LoraLayout::new(cell.layout(), &config).expect("valid ranks");

    // Non-zero B, as after some training.
    let mut theta: Vec<f32> = init_factors(&layout, 1);
    for block in layout.blocks() {
        for (i, b) in
            theta[block.b_offset..][..block.rows * block.rank].iter_mut().enumerate()
        {
            *b = 0.01 * ((i % 7) as f32 - 3.0);
        }
    }
    let estimator = Box::new(LoraRtrl::new(cell, base, config).expect("valid base"));
    Setup { estimator, theta }
}

fn rtrl(kind: CellKind) -> Setup {
    let cell = cell(kind);
    let theta = cell.layout().init::<f32>(0)[..cell.layout().core_len()].to_vec();
    Setup { estimator: Box::new(Rtrl::new(cell)), theta }
}

/// Benches one step (after a first one, so the influence is non-zero and
/// propagated) and one whole sequence of `STEPS` steps.
fn bench_estimator(c: &mut Criterion, group: &str, make: fn(CellKind) -> Setup) {
    let mut group = c.benchmark_group(group);
    for kind in [CellKind::Gru, CellKind::Lstm] {
        let probe = Probe::<f32>::random(3, STEPS, INPUT, HIDDEN);
        let Setup { mut estimator, theta } = make(kind);
        let mut grad = vec![0.0f32; estimator.num_params()];

        estimator.reset();
        estimator.forward(&theta, &probe.inputs[0]);
        estimator.backward(&theta, &probe.weights[0], &mut grad);
        group.bench_function(format!("{kind}/step"), |b| {
            b.iter(|| {
                estimator.forward(&theta, black_box(&probe.inputs[1]));
                estimator.backward(&theta, black_box(&probe.weights[1]), &mut grad);
            })
        });

        group.bench_function(format!("{kind}/sequence-{STEPS}"), |b| {
            b.iter(|| {
                estimator.reset();
                for (x, w) in probe.inputs.iter().zip(&probe.weights) {
                    estimator.forward(&theta, black_box(x));
                    estimator.backward(&theta, black_box(w), &mut grad);
                }
            })
        });
    }
    group.finish();
}

fn lora_rtrl(c: &mut Criterion) {
    bench_estimator(c, "LoRA-RTRL", lora);
}

fn dense_rtrl(c: &mut Criterion) {
    bench_estimator(c, "RTRL", rtrl);
}

criterion_group!(benches, lora_rtrl, dense_rtrl);
criterion_main!(benches);
