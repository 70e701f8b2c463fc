//! No heap allocation in a SnAp step once the estimator is built.
//!
//! A counting global allocator wraps the system one and counts only the
//! allocations of the thread that asked for counting (the test harness's
//! own threads allocate for their bookkeeping). Counting starts right
//! after `Snap::new`, on the thread that built the estimator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as StdCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rtrl_cells::{build, CellConfig, CellKind};
use rtrl_core::check::Probe;
use rtrl_core::{Cell, Estimator, Scalar, Sparsity};
use rtrl_snap::Snap;

struct Counting;

thread_local! {
    /// Whether allocations on this thread count.
    static COUNTED: StdCell<bool> = const { StdCell::new(false) };
}

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn note() {
    // `try_with`: the flag may already be gone while a thread shuts down.
    if COUNTED.try_with(|c| c.get()).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread makes while `f` runs.
fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTED.with(|c| c.set(true));
    f();
    COUNTED.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// Two sequences (the second after a reset) of every level on one cell.
fn check<T: Scalar>(config: &CellConfig) {
    let cell: Arc<dyn Cell<T>> = build(config).unwrap();
    let mut theta: Vec<T> = cell.layout().init(1);
    theta.truncate(cell.layout().core_len());
    let probe = Probe::<T>::random(2, 6, config.input, config.hidden);
    let mut grad = vec![T::zero(); theta.len()];
    for level in 1..=4 {
        let mut snap = Snap::new(cell.clone(), level).unwrap();
        let allocations = count(|| {
            for _ in 0..2 {
                snap.reset();
                for (x, c) in probe.inputs.iter().zip(&probe.weights) {
                    snap.forward(&theta, x);
                    snap.backward(&theta, c, &mut grad);
                }
                snap.flush(&theta, &mut grad);
            }
        });
        assert_eq!(allocations, 0, "SnAp-{level} on {config:?} ({})", T::NAME);
    }
}

#[test]
fn steps_do_not_allocate() {
    for kind in [CellKind::Gru, CellKind::Lstm, CellKind::Rnn] {
        for density in [1.0, 0.6, 0.2] {
            let sparsity =
                Sparsity { recurrent_density: density, inout_density: 0.8, seed: 3 };
            let config = CellConfig { sparsity, ..CellConfig::new(kind, 3, 32, 1) };
            check::<f32>(&config);
            check::<f64>(&config);
            let small = CellConfig { bias: true, ..CellConfig::new(kind, 2, 5, 1) };
            check::<f32>(&small);
        }
    }
}
