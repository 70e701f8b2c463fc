//! Criterion bench of the influence-propagation product against `faer`:
//! `(m × k) · (k × n)` in `f32`, single-threaded, at the shapes dense
//! RTRL multiplies on the thesis network (hidden 32). The whole
//! influence matrix (GRU `3360 × 32 · 32 × 32`, LSTM
//! `4480 × 32 · 32 × 64`) and one target unit's tile of it (GRU 105 rows,
//! LSTM 140 rows), and the product an LSTM would need without its
//! structure (`4480 × 64 · 64 × 64`, the `c` columns of `D` taken as
//! dense). Throughput is reported in flops (`2 m k n` per
//! product), so "elem/s" reads as flop/s.
//!
//! ```text
//! cargo bench -p rtrl-core --bench kernel
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use rtrl_core::kernel::propagate;

/// `(label, m, k, n)`.
const SHAPES: [(&str, usize, usize, usize); 5] = [
    ("gru-tile", 105, 32, 32),
    ("lstm-tile", 140, 32, 64),
    ("gru-full", 3360, 32, 32),
    ("lstm-full", 4480, 32, 64),
    ("lstm-unstructured", 4480, 64, 64),
];

fn products(c: &mut Criterion) {
    let mut group = c.benchmark_group("propagate");
    for (label, m, k, n) in SHAPES {
        // Operands of small, varied values; the product overwrites `out`.
        let a = Mat::<f32>::from_fn(m, k, |i, j| ((i + 3 * j) % 7) as f32 * 0.01);
        let b = Mat::<f32>::from_fn(k, n, |i, j| ((3 * i + j) % 5) as f32 * 0.01);
        let mut out = Mat::<f32>::zeros(m, n);
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(BenchmarkId::new("kernel", label), |bench| {
            bench.iter(|| {
                propagate(out.as_mut(), a.as_ref(), b.as_ref());
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new("faer", label), |bench| {
            bench.iter(|| {
                matmul(
                    out.as_mut(),
                    Accum::Replace,
                    a.as_ref(),
                    b.as_ref(),
                    1.0,
                    Par::Seq,
                );
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, products);
criterion_main!(benches);
