//! SnAp-n for `n ≥ 2`: one dense block per target unit.
//!
//! The block of unit `c` has the pattern rows `P_c` (the `h` rows of the
//! units `U_c`, then for an LSTM their `c` rows) and one column per
//! parameter targeting `c`. It is stored row by row (each row contiguous
//! over the parameters), which as a column-major matrix is the transposed
//! block `J[P_c, θ_c]ᵀ` of shape `q_c × |P_c|`. One step is
//!
//! ```text
//! J_next[P_c, θ_c] = D_t[P_c, U_c] · J[U_c, θ_c]           (h columns)
//!                  + diag-part of D_t's c columns            (LSTM only)
//!                  + I_t[P_c, θ_c]
//! ```

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rtrl_core::kernel;
use rtrl_core::{
    Cell, CellShape, GateJacobian, ParamLayout, Scalar, StateJacobian, StepCache, MASKED,
};

use crate::pattern::SnapPattern;

/// Block products with at least this many multiply-adds go through
/// the workspace's product kernel (`rtrl_core::kernel`, the one dense
/// RTRL uses); smaller ones through the plain loops of
/// [`propagate_small`].
const FAER_MIN_WORK: usize = 256;

/// Where the block of one target unit lives, and what it covers.
#[derive(Debug, Clone, Copy)]
struct UnitBlock {
    /// The target unit `c`.
    unit: usize,
    /// Pattern units `|U_c|`.
    units: usize,
    /// First of the block's state rows in `Blocks::rows`.
    rows_start: usize,
    /// First of the block's parameter columns in the column maps.
    cols_start: usize,
    /// Parameters `q_c` targeting the unit.
    cols: usize,
    /// The block's gate segments, `Blocks::segments[segs.0..segs.1]`.
    segs: (usize, usize),
    /// Offset of the block in the influence storage.
    offset: usize,
    /// Index of `c` itself in `U_c` (its `h` row in the block).
    own: usize,
}

/// A run of a block's columns that feed the same gate.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// The gate.
    gate: usize,
    /// Whether the gate's effect spreads over units (GRU reset gate).
    dense: bool,
    /// First column, relative to the block.
    start: usize,
    /// One past the last column, relative to the block.
    end: usize,
}

/// The SnAp-n (`n ≥ 2`) influence blocks and their update.
#[derive(Debug, Clone)]
pub(crate) struct Blocks<T> {
    hidden: usize,
    components: usize,
    blocks: Vec<UnitBlock>,
    /// State rows of every block, concatenated.
    rows: Vec<u32>,
    segments: Vec<Segment>,
    /// Per block column: flat index in `theta`.
    column_flat: Vec<u32>,
    /// Per block column: index of its source value in the step cache.
    column_source: Vec<u32>,
    /// Per block column: its kept-parameter index.
    column_param: Vec<u32>,
    /// `D_t`.
    d: StateJacobian<T>,
    /// The influence blocks.
    j: Vec<T>,
    /// The successor of `j`.
    j_next: Vec<T>,
    /// `D_t[P_c, U_c]ᵀ` (`|U_c| × |P_c|`, column-major).
    d_sub: Vec<T>,
    /// The block's source values, one per column.
    sources: Vec<T>,
    /// Gradient of one block's columns.
    acc: Vec<T>,
    /// LSTM: the diagonal factors of one block's rows, `∂h'/∂c` for its
    /// `h` rows, then `∂c'/∂c` for its `c` rows.
    diag_scale: Vec<T>,
}

impl<T: Scalar> Blocks<T> {
    /// Index maps and buffers for `pattern` over the core blocks of
    /// `layout`.
    ///
    /// Runs one block product of the largest size, so that `faer`'s
    /// per-thread packing buffer exists on the calling thread before the
    /// first step.
    pub(crate) fn new(
        layout: &ParamLayout,
        shape: CellShape,
        source_offsets: &[usize],
        dense_gates: &[bool],
        pattern: &SnapPattern,
    ) -> Self {
        let (n, k, p) = (pattern.hidden(), pattern.components(), pattern.num_params());

        // Gate, source value and flat index of every parameter.
        let column_of = layout.column_of();
        let mut param_gate = vec![0usize; p];
        let mut param_source = vec![0u32; p];
        let mut param_flat = vec![0u32; p];
        for block in layout.core_blocks() {
            for row in 0..block.rows {
                for col in 0..block.cols {
                    let flat = block.offset + row * block.cols + col;
                    let param = column_of[flat];
                    if param != MASKED {
                        let param = param as usize;
                        param_gate[param] = block.gate;
                        param_source[param] = (source_offsets[block.source] + row) as u32;
                        param_flat[param] = flat as u32;
                    }
                }
            }
        }

        // One block per target unit: rows, columns sorted by gate, segments.
        let mut blocks = Vec::with_capacity(n);
        let mut rows: Vec<u32> = Vec::new();
        let mut segments: Vec<Segment> = Vec::new();
        let (mut column_flat, mut column_source, mut column_param) =
            (Vec::with_capacity(p), Vec::with_capacity(p), Vec::with_capacity(p));
        let mut offset = 0;
        let (mut max_d_sub, mut max_cols) = (0, 0);
        for c in 0..n {
            let units = pattern.units_of(c);
            let own = units.binary_search(&c).expect("a unit is in its own pattern");
            let rows_start = rows.len();
            for component in 0..k {
                rows.extend(units.iter().map(|&u| (component * n + u) as u32));
            }
            let mut params = pattern.params_of(c).to_vec();
            params.sort_by_key(|&q| param_gate[q]);
            let cols_start = column_flat.len();
            let segs_start = segments.len();
            for (i, &q) in params.iter().enumerate() {
                // Columns are sorted by gate: extend the unit's last
                // segment or open a new one.
                let gate = param_gate[q];
                let open = segments.len() > segs_start;
                match segments.last_mut() {
                    Some(seg) if open && seg.gate == gate => seg.end = i + 1,
                    _ => segments.push(Segment {
                        gate,
                        dense: dense_gates[gate],
                        start: i,
                        end: i + 1,
                    }),
                }
                column_flat.push(param_flat[q]);
                column_source.push(param_source[q]);
                column_param.push(q as u32);
            }
            let block = UnitBlock {
                unit: c,
                units: units.len(),
                rows_start,
                cols_start,
                cols: params.len(),
                segs: (segs_start, segments.len()),
                offset,
                own,
            };
            offset += k * block.units * block.cols;
            max_d_sub = max_d_sub.max(k * block.units * block.units);
            max_cols = max_cols.max(block.cols);
            blocks.push(block);
        }
        debug_assert_eq!(offset, pattern.stored_entries());

        let mut this = Blocks {
            hidden: n,
            components: k,
            blocks,
            rows,
            segments,
            column_flat,
            column_source,
            column_param,
            d: StateJacobian::new(shape),
            j: vec![T::zero(); offset],
            j_next: vec![T::zero(); offset],
            d_sub: vec![T::zero(); max_d_sub],
            sources: vec![T::zero(); max_cols],
            acc: vec![T::zero(); max_cols],
            diag_scale: vec![T::zero(); k * n],
        };

        // Let faer set up its packing buffer on this thread now: the cells'
        // `D_t` products (GRU) and the block products outside the `f32`
        // kernel use it.
        if let Some(block) = this.blocks.iter().max_by_key(|b| b.units * b.units * b.cols)
        {
            let (units, rows, cols) = (block.units, k * block.units, block.cols);
            let new = &mut this.j_next[block.offset..block.offset + rows * cols];
            let old = &this.j[block.offset..block.offset + units * cols];
            matmul(
                MatMut::from_column_major_slice_mut(new, cols, rows),
                Accum::Replace,
                MatRef::from_column_major_slice(old, cols, units),
                MatRef::from_column_major_slice(&this.d_sub[..units * rows], units, rows),
                T::one(),
                Par::Seq,
            );
        }
        this
    }

    /// One step of the update, adding `(∂L/∂h) · J^h` to `grad`.
    pub(crate) fn step(
        &mut self,
        cell: &dyn Cell<T>,
        theta: &[T],
        cache: &StepCache<T>,
        gates: &GateJacobian<T>,
        fresh: bool,
        dl_dh: &[T],
        grad: &mut [T],
    ) {
        let (n, k) = (self.hidden, self.components);
        let s = n * k;

        // D_t, unless J_{t−1} = 0 (a fresh sequence).
        if fresh {
            self.j_next.fill(T::zero());
        } else {
            cell.state_jacobian(theta, cache, &mut self.d);
        }

        for block in &self.blocks {
            let (c, units, q) = (block.unit, block.units, block.cols);
            let nrows = k * units;
            let rows = &self.rows[block.rows_start..][..nrows];
            let span = block.offset..block.offset + nrows * q;
            let old = &self.j[span.clone()];
            let new = &mut self.j_next[span];

            if !fresh {
                // D_t[P_c, U_c]ᵀ: column i holds ∂s'[P_c[i]]/∂h[U_c[·]].
                let d_sub = &mut self.d_sub[..units * nrows];
                gather(d_sub, &self.d.dh, rows, units);

                // J_next[P_c] = D_t[P_c, U_c] · J[h rows of U_c], plus for an
                // LSTM the diagonal c columns of D_t in the same pass:
                // J_next[h_u] += ∂h'_u/∂c_u · J[c_u], J_next[c_u] +=
                // ∂c'_u/∂c_u · J[c_u].
                let diagonal = if k == 2 {
                    let scale = &mut self.diag_scale[..nrows];
                    for (i, &u) in rows[..units].iter().enumerate() {
                        scale[i] = self.d.diag[u as usize];
                        scale[units + i] = self.d.diag[n + u as usize];
                    }
                    Some((&old[units * q..nrows * q], &*scale))
                } else {
                    None
                };
                propagate(new, &old[..units * q], d_sub, diagonal, q, units, nrows);
            }

            // The block's source values u[k] of its parameters M[k, c].
            let srcs = &self.column_source[block.cols_start..][..q];
            let u = &mut self.sources[..q];
            for (v, &src) in u.iter_mut().zip(srcs) {
                *v = cache.sources[src as usize];
            }

            // I_t[P_c, θ_c]: row r gains u · ∂s'[r]/∂a_g[c], for unit-wise
            // gates only on unit c's own rows.
            for seg in &self.segments[block.segs.0..block.segs.1] {
                let range = seg.start..seg.end;
                if seg.dense {
                    let dense = gates.dense[seg.gate].as_ref().expect("dense gate");
                    for (i, &row) in rows.iter().enumerate() {
                        let g = dense[(c, row as usize)];
                        if g != T::zero() {
                            axpy(&mut new[i * q..][range.clone()], g, &u[range.clone()]);
                        }
                    }
                } else {
                    for component in 0..k {
                        let g = gates.diag[seg.gate * s + component * n + c];
                        let i = component * units + block.own;
                        axpy(&mut new[i * q..][range.clone()], g, &u[range.clone()]);
                    }
                }
            }

            // ∇θ_c L_t = Σ_{u ∈ U_c} (∂L/∂h_u) · J_next[h_u, θ_c], while the
            // block is in cache.
            let acc = &mut self.acc[..q];
            acc.fill(T::zero());
            for (i, &u) in rows[..units].iter().enumerate() {
                let dl = dl_dh[u as usize];
                if dl != T::zero() {
                    axpy(acc, dl, &new[i * q..(i + 1) * q]);
                }
            }
            let flats = &self.column_flat[block.cols_start..][..q];
            for (&flat, &a) in flats.iter().zip(acc.iter()) {
                grad[flat as usize] += a;
            }
        }
        std::mem::swap(&mut self.j, &mut self.j_next);
    }

    /// Writes the stored entries into the dense `|s| × P` matrix `out`.
    pub(crate) fn influence(&self, out: &mut Mat<T>) {
        for block in &self.blocks {
            let q = block.cols;
            let rows = &self.rows[block.rows_start..][..self.components * block.units];
            let params = &self.column_param[block.cols_start..][..q];
            for (i, &row) in rows.iter().enumerate() {
                let values = &self.j[block.offset + i * q..][..q];
                for (&param, &v) in params.iter().zip(values) {
                    out[(row as usize, param as usize)] = v;
                }
            }
        }
    }
}

/// `d_sub[i · units + j] = dh[(rows[j], rows[i])]` for the block's rows
/// `i` and its `h` rows `j < units` (the unit indices themselves).
fn gather<T: Scalar>(d_sub: &mut [T], dh: &Mat<T>, rows: &[u32], units: usize) {
    let n = dh.nrows();
    let whole = units == n;
    // Every index is a unit, below n (checked once, so that the loop below
    // compiles to vector gathers).
    let units_of = &rows[..units];
    assert!(units_of.iter().all(|&u| (u as usize) < n));
    for (out, &row) in d_sub.chunks_exact_mut(units).zip(rows) {
        let col = dh.col(row as usize).try_as_col_major().expect("contiguous column");
        let col = col.as_slice();
        if whole {
            // U_c is every unit: the column as it is.
            out.copy_from_slice(col);
        } else {
            for (o, &u) in out.iter_mut().zip(units_of) {
                // SAFETY: u < n = col.len(), asserted above.
                *o = unsafe { *col.get_unchecked(u as usize) };
            }
        }
    }
}

/// `y += a · x`.
#[inline]
fn axpy<T: Scalar>(y: &mut [T], a: T, x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `new = old · d_sub` for column-major `new` (`q × rows`), `old`
/// (`q × units`) and `d_sub` (`units × rows`): with the blocks stored
/// row by row, this is `J_next[P_c] = D[P_c, U_c] · J[U_c]`. With a
/// diagonal `(from, scale)` (`from` column-major `q × e`), column `i` of
/// `new` also gains `scale[i] · from[:, i mod e]`.
fn propagate<T: Scalar>(
    new: &mut [T],
    old: &[T],
    d_sub: &[T],
    diagonal: Option<(&[T], &[T])>,
    q: usize,
    units: usize,
    rows: usize,
) {
    if q == 0 {
        return;
    }
    if q * units * rows >= FAER_MIN_WORK {
        let new = MatMut::from_column_major_slice_mut(new, q, rows);
        let old = MatRef::from_column_major_slice(old, q, units);
        let d_sub = MatRef::from_column_major_slice(d_sub, units, rows);
        let diagonal = diagonal.map(|(from, scale)| kernel::Diagonal {
            source: MatRef::from_column_major_slice(from, q, from.len() / q),
            scale,
        });
        kernel::propagate_with(new, old, d_sub, diagonal);
    } else {
        propagate_small(new, old, d_sub, q, units);
        if let Some((from, scale)) = diagonal {
            let e = from.len() / q;
            for (i, (row, &a)) in new.chunks_exact_mut(q).zip(scale).enumerate() {
                axpy(row, a, &from[(i % e) * q..(i % e + 1) * q]);
            }
        }
    }
}

/// The plain-loop version of [`propagate`]: each new row is a combination
/// of the old rows, taken four at a time.
fn propagate_small<T: Scalar>(
    new: &mut [T],
    old: &[T],
    d_sub: &[T],
    q: usize,
    units: usize,
) {
    if q == 0 {
        return;
    }
    for (new_row, coeffs) in new.chunks_exact_mut(q).zip(d_sub.chunks_exact(units)) {
        new_row.fill(T::zero());
        let mut groups = old.chunks_exact(4 * q).zip(coeffs.chunks_exact(4));
        for (four, a) in groups.by_ref() {
            let (o0, rest) = four.split_at(q);
            let (o1, rest) = rest.split_at(q);
            let (o2, o3) = rest.split_at(q);
            for ((((y, &x0), &x1), &x2), &x3) in
                new_row.iter_mut().zip(o0).zip(o1).zip(o2).zip(o3)
            {
                *y += a[0] * x0 + a[1] * x1 + a[2] * x2 + a[3] * x3;
            }
        }
        let done = units / 4 * 4;
        for (old_row, &a) in old[done * q..].chunks_exact(q).zip(&coeffs[done..]) {
            axpy(new_row, a, old_row);
        }
    }
}
