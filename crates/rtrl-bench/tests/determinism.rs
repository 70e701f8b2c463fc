//! The same seed gives the same losses, bit for bit, whatever the number
//! of rayon threads.

use rtrl_bench::{run, Algo, RunConfig};
use rtrl_cells::CellKind;

/// Train and validation losses of a short run on a pool of `threads`.
fn losses(config: &RunConfig, threads: usize) -> Vec<(u64, Option<u64>)> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut curve = Vec::new();
    pool.install(|| {
        run(config, &mut |record| {
            curve.push((record.train_loss.to_bits(), record.val_loss.map(f64::to_bits)))
        })
    })
    .unwrap();
    curve
}

fn check(model: CellKind, algo: Algo) {
    let config = RunConfig {
        model,
        algo,
        hidden: 6,
        epochs: 6,
        max_len: 4,
        validation_every: 2,
        ..RunConfig::default()
    };
    let one = losses(&config, 1);
    let two = losses(&config, 2);
    assert_eq!(one.len(), 6);
    assert_eq!(one, two, "{model} {algo}: 1 and 2 threads differ");

    // A different seed really changes the curve (the test can fail).
    let other = losses(&RunConfig { seed: 1, ..config }, 2);
    assert_ne!(one, other);
}

#[test]
fn rtrl_is_identical_on_one_and_two_threads() {
    check(CellKind::Gru, Algo::Rtrl);
    check(CellKind::Lstm, Algo::Rtrl);
}

#[test]
fn bptt_is_identical_on_one_and_two_threads() {
    check(CellKind::Gru, Algo::Bptt);
    check(CellKind::Lstm, Algo::Bptt);
}
