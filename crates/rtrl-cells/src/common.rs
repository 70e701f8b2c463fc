//! Helpers the cells share.

use rtrl_core::{BlockKind, BlockSpec, Scalar};

/// `a += u · M` for a row-major `M` of `u.len()` rows and `a.len()` columns.
#[inline]
pub(crate) fn add_product<T: Scalar>(a: &mut [T], u: &[T], m: &[T]) {
    let cols = a.len();
    for (k, &uk) in u.iter().enumerate() {
        if uk == T::zero() {
            continue;
        }
        let row = &m[k * cols..(k + 1) * cols];
        for (ac, &mkc) in a.iter_mut().zip(row) {
            *ac += uk * mkc;
        }
    }
}

/// `out[k] = Σ_c M[k, c] · d[c]` (`M · d`) for a row-major `M`.
#[inline]
pub(crate) fn product_transposed<T: Scalar>(out: &mut [T], m: &[T], d: &[T]) {
    let cols = d.len();
    for (k, o) in out.iter_mut().enumerate() {
        let row = &m[k * cols..(k + 1) * cols];
        *o = row.iter().zip(d).map(|(&a, &b)| a * b).sum();
    }
}

/// `out[k] += Σ_c M[k, c] · d[c]`.
#[inline]
pub(crate) fn add_product_transposed<T: Scalar>(out: &mut [T], m: &[T], d: &[T]) {
    let cols = d.len();
    for (k, o) in out.iter_mut().enumerate() {
        let row = &m[k * cols..(k + 1) * cols];
        *o += row.iter().zip(d).map(|(&a, &b)| a * b).sum::<T>();
    }
}

/// Block specs of a gate-linear cell: input matrices for every gate, then
/// recurrent matrices, then (optionally) biases, then the readout.
///
/// `recurrent_source[g]` is the source vector of gate `g`'s recurrent
/// matrix; the input matrices use source 0 (`x`) and biases the last
/// source (the constant 1).
pub(crate) fn gate_specs(
    names: &[&'static str],
    input: usize,
    hidden: usize,
    outputs: usize,
    bias: bool,
    recurrent_source: &[usize],
    one_source: usize,
) -> Vec<BlockSpec> {
    let mut specs = Vec::new();
    for (gate, name) in names.iter().enumerate() {
        specs.push(BlockSpec {
            name: format!("W{name}"),
            kind: BlockKind::Input,
            rows: input,
            cols: hidden,
            gate,
            source: 0,
        });
    }
    for (gate, name) in names.iter().enumerate() {
        specs.push(BlockSpec {
            name: format!("R{name}"),
            kind: BlockKind::Recurrent,
            rows: hidden,
            cols: hidden,
            gate,
            source: recurrent_source[gate],
        });
    }
    if bias {
        for (gate, name) in names.iter().enumerate() {
            specs.push(BlockSpec {
                name: format!("b{name}"),
                kind: BlockKind::Bias,
                rows: 1,
                cols: hidden,
                gate,
                source: one_source,
            });
        }
    }
    specs.push(BlockSpec {
        name: "V".into(),
        kind: BlockKind::Readout,
        rows: outputs,
        cols: hidden,
        gate: 0,
        source: 0,
    });
    specs
}
