//! No heap allocation inside a training step once buffers are sized.
//!
//! A counting global allocator wraps the system one; every estimator
//! runs one sequence to size its buffers, then a second one is counted.
//! The trainer is checked the same way over whole batches, on pools of
//! one and two threads. Only the test's own threads count: the test
//! harness's threads allocate for their own bookkeeping.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use rtrl_bench::experiment::{build_estimators, Algo, RunConfig};
use rtrl_core::{Adam, Batch, Cell, Readout, Trainer, TrainerConfig};
use rtrl_tasks::{CopyStream, CopyTask};

struct Counting;

thread_local! {
    /// Whether allocations on this thread count.
    static COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether an allocation happening now, on this thread, counts.
fn counts() -> bool {
    COUNTING.load(Ordering::Relaxed) && COUNTED.with(|c| c.get())
}

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Tests in this file run one at a time: the counter is global.
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counts() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counts() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while `f` runs.
fn count<R>(f: impl FnOnce() -> R) -> (usize, R) {
    COUNTED.with(|c| c.set(true));
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let result = f();
    COUNTING.store(false, Ordering::SeqCst);
    (ALLOCATIONS.load(Ordering::SeqCst), result)
}

/// A small run of every algorithm on both gated cells.
fn configs() -> Vec<RunConfig> {
    let mut configs = Vec::new();
    for &algo in Algo::value_variants() {
        for model in [rtrl_cells::CellKind::Gru, rtrl_cells::CellKind::Lstm] {
            let window = (algo == Algo::Tbptt).then_some(5);
            configs.push(RunConfig {
                algo,
                model,
                hidden: 8,
                batch: 4,
                window,
                recurrent_density: 0.6,
                ..RunConfig::default()
            });
        }
    }
    configs
}

fn setup(config: &RunConfig) -> (Arc<dyn Cell<f32>>, Vec<f32>, CopyTask) {
    let task = config.task().unwrap();
    let cell: Arc<dyn Cell<f32>> = rtrl_cells::build(&config.cell_config(&task)).unwrap();
    let params = cell.layout().init::<f32>(config.seed);
    (cell, params, task)
}

#[test]
fn estimator_steps_do_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    // The counter itself sees an allocation.
    let (seen, buffer) = count(|| vec![0u8; 16]);
    assert_eq!((seen, buffer.len()), (1, 16));

    for config in configs() {
        let (cell, params, task) = setup(&config);
        let mut setup = build_estimators(&config, &cell, &params).unwrap();
        let estimator = &mut setup.estimators[0];
        let theta = setup.core;
        let mut grad = vec![0.0f32; theta.len()];
        let batch: Batch<f32> =
            CopyStream::new(task, 1, rtrl_core::rng::Stream::Train).next_batch(1);
        let dl = vec![0.01f32; config.hidden];
        let mut sequence = |estimator: &mut Box<dyn rtrl_core::Estimator<f32>>| {
            estimator.reset();
            for t in 0..batch.steps {
                estimator.forward(&theta, batch.input(0, t));
                estimator.backward(&theta, &dl, &mut grad);
            }
            estimator.flush(&theta, &mut grad);
        };

        // The first sequence sizes the buffers (BPTT's tape grows here).
        sequence(estimator);
        let (allocations, ()) = count(|| sequence(estimator));
        assert_eq!(allocations, 0, "{} {} allocated", config.model, config.algo);
    }
}

#[test]
fn trainer_batches_do_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for threads in [1, 2] {
        // The pool's threads count too.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .start_handler(|_| COUNTED.with(|c| c.set(true)))
            .build()
            .unwrap();
        for config in configs() {
            let (cell, params, task) = setup(&config);
            let setup = build_estimators(&config, &cell, &params).unwrap();
            let block = cell.layout().readout().unwrap();
            let base = params[block.offset..block.offset + block.len()].to_vec();
            let readout =
                Readout::new(block.rows, block.cols, setup.readout_mode, base, None)
                    .unwrap();
            let values = readout.init(0);
            let mut trainer = Trainer::new(
                setup.estimators,
                setup.core,
                readout,
                values,
                Box::new(Adam::<f32>::new(1e-3).unwrap()),
                TrainerConfig::default(),
            )
            .unwrap();
            let mut stream = CopyStream::new(task, 2, rtrl_core::rng::Stream::Train);
            let first: Batch<f32> = stream.next_batch(config.batch);
            let second: Batch<f32> = stream.next_batch(config.batch);
            pool.install(|| {
                trainer.train_batch(&first).unwrap();
                let (allocations, loss) = count(|| trainer.train_batch(&second));
                loss.unwrap();
                assert_eq!(
                    allocations, 0,
                    "{} {} allocated {allocations} times on {threads} thread(s)",
                    config.model, config.algo
                );
            });
        }
    }
}
