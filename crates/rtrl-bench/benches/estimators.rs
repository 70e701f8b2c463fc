//! Criterion benches: one group per estimator, each timing one training
//! step of one estimator (`step`: forward and backward), one sequence
//! (`sequence`: reset, 22 × forward + backward, flush) and one epoch of
//! the trainer (`epoch`: a batch of 16 sequences of 22 steps, online
//! Adam), for GRU and LSTM at hidden 32 and 128.
//!
//! ```text
//! cargo bench -p rtrl-bench --bench estimators -- rtrl/epoch/gru-32
//! ```
//!
//! Skipped, because one epoch takes seconds and criterion's smallest
//! sample would take minutes: the epoch of dense RTRL and of SnAp-2
//! (whose pattern at density 0.6 and 128 units is nearly dense) on the
//! LSTM of 128 units. Their per-sequence benches still run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rtrl_bench::{build_estimators, Algo, RunConfig};
use rtrl_cells::CellKind;
use rtrl_core::rng::Stream;
use rtrl_core::{Adam, Batch, Cell, Readout, Trainer, TrainerConfig};
use rtrl_tasks::CopyStream;

/// Settings that select an estimator.
type Select = fn(RunConfig) -> RunConfig;

/// The estimators: group name and the settings that select it (on top
/// of the shape's), built by `rtrl_bench::build_estimators` as the
/// `rtrl` command line builds them.
const ESTIMATORS: [(&str, Select); 5] = [
    ("bptt", |c| RunConfig { algo: Algo::Bptt, ..c }),
    ("rtrl", |c| RunConfig { algo: Algo::Rtrl, ..c }),
    ("snap-1", |c| RunConfig { algo: Algo::Snap, level: Some(1), ..c }),
    ("snap-2", |c| RunConfig {
        algo: Algo::Snap,
        level: Some(2),
        recurrent_density: 0.6,
        ..c
    }),
    // Ranks 2 (W) and 8 (R), rank-1 readout: the defaults.
    ("lora-rtrl", |c| RunConfig { algo: Algo::LoraRtrl, ..c }),
];

/// Cells and hidden sizes.
const SHAPES: [(CellKind, usize); 4] = [
    (CellKind::Gru, 32),
    (CellKind::Lstm, 32),
    (CellKind::Gru, 128),
    (CellKind::Lstm, 128),
];

/// Whether the epoch bench of `group` on this shape is skipped (too slow).
fn epoch_skipped(group: &str, cell: CellKind, hidden: usize) -> bool {
    cell == CellKind::Lstm && hidden >= 128 && (group == "rtrl" || group == "snap-2")
}

/// The network of `config`: cell, initial parameters and the task's batch.
fn network(config: &RunConfig) -> (Arc<dyn Cell<f32>>, Vec<f32>, Batch<f32>) {
    let task = config.task().expect("valid task");
    let cell: Arc<dyn Cell<f32>> =
        rtrl_cells::build(&config.cell_config(&task)).expect("valid cell");
    let params = cell.layout().init::<f32>(config.seed);
    let batch =
        CopyStream::new(task, config.seed, Stream::Train).next_batch(config.batch);
    (cell, params, batch)
}

/// A trainer built as `rtrl_bench::run` builds it.
fn trainer(config: &RunConfig) -> (Trainer<f32>, Batch<f32>) {
    let (cell, params, batch) = network(config);
    let setup = build_estimators(config, &cell, &params).expect("estimators");
    let block = cell.layout().readout().expect("a readout").clone();
    let base = params[block.offset..block.offset + block.len()].to_vec();
    let readout = Readout::new(
        block.rows,
        block.cols,
        setup.readout_mode,
        base,
        block.mask.clone(),
    )
    .expect("readout");
    let values = readout.init(config.seed);
    let trainer = Trainer::new(
        setup.estimators,
        setup.core,
        readout,
        values,
        Box::new(Adam::<f32>::new(config.lr).expect("learning rate")),
        TrainerConfig::default(),
    )
    .expect("trainer");
    (trainer, batch)
}

fn estimators(c: &mut Criterion) {
    for (group_name, select) in ESTIMATORS {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10).warm_up_time(Duration::from_millis(500));
        for (cell, hidden) in SHAPES {
            let id = format!("{}-{hidden}", cell.name());
            let config = select(RunConfig {
                model: cell,
                hidden,
                batch: 16,
                ..RunConfig::default()
            });

            // One estimator on one sequence: a whole sequence, and one
            // training step (forward and backward) within sequences that
            // restart every 22 steps.
            let sequence = RunConfig { batch: 1, ..config.clone() };
            let (cell_arc, params, batch) = network(&sequence);
            let mut setup =
                build_estimators(&sequence, &cell_arc, &params).expect("estimator");
            let estimator = &mut setup.estimators[0];
            let theta = setup.core.clone();
            let mut grad = vec![0.0f32; theta.len()];
            let dl_dh = vec![0.01f32; hidden];
            group.bench_function(BenchmarkId::new("sequence", &id), |b| {
                b.iter(|| {
                    estimator.reset();
                    for t in 0..batch.steps {
                        estimator.forward(&theta, batch.input(0, t));
                        estimator.backward(&theta, &dl_dh, &mut grad);
                    }
                    estimator.flush(&theta, &mut grad);
                    black_box(&grad);
                })
            });
            let mut t = 0;
            group.bench_function(BenchmarkId::new("step", &id), |b| {
                b.iter(|| {
                    if t == 0 {
                        estimator.flush(&theta, &mut grad);
                        estimator.reset();
                    }
                    estimator.forward(&theta, batch.input(0, t));
                    estimator.backward(&theta, &dl_dh, &mut grad);
                    t = (t + 1) % batch.steps;
                    black_box(&grad);
                })
            });

            // One epoch of the trainer.
            if epoch_skipped(group_name, cell, hidden) {
                continue;
            }
            let (mut trainer, batch) = trainer(&config);
            group.bench_function(BenchmarkId::new("epoch", &id), |b| {
                b.iter(|| black_box(trainer.train_batch(&batch).expect("finite loss")))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, estimators);
criterion_main!(benches);
