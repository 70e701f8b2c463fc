//! The SnAp-n estimator: the influence matrix kept on its pattern only.

use std::sync::Arc;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rtrl_core::{
    Cell, CellShape, Error, Estimator, GateJacobian, Result, Scalar, StateJacobian,
    StepCache, MASKED,
};

use crate::pattern::SnapPattern;

/// Block products with at least this many multiply-adds go through
/// `faer`; smaller ones through the plain loops of [`propagate_small`].
const FAER_MIN_WORK: usize = 8 * 1024;

/// Where the block of one target unit lives, and what it covers.
#[derive(Debug, Clone, Copy)]
struct UnitBlock {
    /// The target unit `c`.
    unit: usize,
    /// Pattern units `|U_c|`.
    units: usize,
    /// First of the block's state rows in `Snap::rows` (`k · |U_c|` rows:
    /// the `h` rows of `U_c`, then for an LSTM their `c` rows).
    rows_start: usize,
    /// First of the block's parameter columns in the column maps.
    cols_start: usize,
    /// Parameters `q_c` targeting the unit.
    cols: usize,
    /// The block's gate segments, `Snap::segments[segs.0..segs.1]`.
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

/// SnAp-n: RTRL with the influence matrix restricted to the SnAp-n
/// pattern ([`SnapPattern`]), stored as one dense block per target unit.
///
/// For the target unit `c` with pattern rows `P_c` (the `h` rows, and for
/// an LSTM the `c` rows, of the units `U_c` reachable from `c` in at most
/// `n − 1` edges) and parameters `θ_c` (every parameter whose entry lies in
/// column `c`), one step is
///
/// ```text
/// J_t[P_c, θ_c] = I_t[P_c, θ_c] + D_t[P_c, P_c] · J_{t−1}[P_c, θ_c]
/// ∇_θ L_t      += (∂L_t/∂h_t)[U_c] · J^h_t[U_c, θ_c]
/// ```
///
/// and every entry outside the pattern (of `I_t` and of `D_t · J_{t−1}`)
/// is dropped. Because `J_{t−1}` is zero outside the pattern, the product
/// only needs the square sub-block `D_t[P_c, P_c]`.
///
/// Cost per step beyond the cell's own forward:
/// - SnAp-1 (`U_c = {c}`): `O(P)`, from the unit-wise blocks of `D_t`
///   ([`Cell::unit_jacobian`]) and the cell's gate Jacobian.
/// - SnAp-n, `n ≥ 2`: `Σ_c 2 |P_c| |U_c| q_c` flops for the block products
///   (the LSTM's `c` columns enter through a diagonal), plus `D_t` from
///   [`Cell::state_jacobian`].
///
/// Memory: the pattern's entries (twice for `n ≥ 2`, which double-buffers)
/// and scratch vectors of the largest block's size, all allocated in
/// [`Snap::new`]. `forward` and `backward` allocate nothing themselves;
/// the first block product large enough for `faer`'s packed kernel makes
/// `faer` set up a per-thread packing buffer once (see [`Snap::new`]).
///
/// `theta` is the core part of the cell's flat parameter vector (its
/// first [`core_len`](rtrl_core::ParamLayout::core_len) entries); gradients
/// come back in the same layout, masked entries zero.
///
/// # Precision
/// With `n − 1` at least the unit graph's diameter the pattern covers all
/// of `J`'s support and the gradient equals RTRL's up to rounding.
pub struct Snap<T: Scalar> {
    cell: Arc<dyn Cell<T>>,
    shape: CellShape,
    pattern: SnapPattern,
    state: Vec<T>,
    next: Vec<T>,
    cache: StepCache<T>,
    gates: GateJacobian<T>,
    /// `D_t` (levels ≥ 2).
    d: StateJacobian<T>,
    /// Unit-wise `k × k` blocks of `D_t` (level 1).
    unit_d: Vec<T>,
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
    /// The influence blocks; block `c` holds `k · |U_c|` rows of `q_c`.
    j: Vec<T>,
    /// The successor of `j` (levels ≥ 2).
    j_next: Vec<T>,
    /// `D_t[P_c, U_c]`, transposed (`|U_c| × |P_c|`, column-major).
    d_sub: Vec<T>,
    /// The block's source values, one per column.
    sources: Vec<T>,
    /// Gradient of one block's columns.
    acc: Vec<T>,
    fresh: bool,
}

impl<T: Scalar> Snap<T> {
    /// SnAp-`level` for `cell`.
    ///
    /// Builds the pattern, the index maps and every buffer the steps use.
    /// For levels ≥ 2 it also runs one block product of the largest size,
    /// so that `faer`'s per-thread packing buffer exists on the calling
    /// thread before the first step (a thread the estimator later moves to
    /// gets its buffer on its first large product, once).
    ///
    /// # Errors
    /// As [`SnapPattern::new`] (`level` 0, a state that is neither `h` nor
    /// `(h, c)`, blocks not one column per unit), and
    /// [`Error::Unsupported`] for a cell whose blocks name gates or sources
    /// it does not have.
    pub fn new(cell: Arc<dyn Cell<T>>, level: usize) -> Result<Self> {
        let shape = cell.shape();
        let layout = cell.layout();
        let pattern = SnapPattern::new(layout, shape, level)?;
        let (n, k) = (shape.hidden, pattern.components());
        let p = layout.num_core_params();
        let cache = cell.new_cache();
        let dense_gates = cell.dense_gates().to_vec();
        let offsets = cell.source_offsets();

        // Gate, source value and flat index of every parameter.
        let column_of = layout.column_of();
        let mut param_gate = vec![0usize; p];
        let mut param_source = vec![0u32; p];
        let mut param_flat = vec![0u32; p];
        for block in layout.core_blocks() {
            if block.gate >= dense_gates.len() || block.source + 1 >= offsets.len() {
                return Err(Error::Unsupported(format!(
                    "block {} names gate {} or source {} the cell does not have",
                    block.name, block.gate, block.source
                )));
            }
            for row in 0..block.rows {
                for col in 0..block.cols {
                    let flat = block.offset + row * block.cols + col;
                    let param = column_of[flat];
                    if param != MASKED {
                        let param = param as usize;
                        param_gate[param] = block.gate;
                        param_source[param] = (offsets[block.source] + row) as u32;
                        param_flat[param] = flat as u32;
                    }
                }
            }
        }

        // One block per target unit: rows, columns sorted by gate, segments.
        let mut blocks = Vec::with_capacity(n);
        let mut rows = Vec::new();
        let mut segments: Vec<Segment> = Vec::new();
        let (mut column_flat, mut column_source, mut column_param) =
            (Vec::with_capacity(p), Vec::with_capacity(p), Vec::with_capacity(p));
        let mut offset = 0;
        let (mut max_units, mut max_rows, mut max_cols, mut max_work) = (0, 0, 0, 0);
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
            max_units = max_units.max(block.units);
            max_rows = max_rows.max(k * block.units);
            max_cols = max_cols.max(block.cols);
            max_work = max_work.max(k * block.units * block.units * block.cols);
            blocks.push(block);
        }
        debug_assert_eq!(offset, pattern.stored_entries());

        // Storage: the pattern's entries, double-buffered from level 2 on.
        let second = if level >= 2 { offset } else { 0 };
        let mut snap = Snap {
            state: vec![T::zero(); shape.state],
            next: vec![T::zero(); shape.state],
            cache,
            gates: GateJacobian::new(shape, &dense_gates),
            d: StateJacobian::new(shape),
            unit_d: vec![T::zero(); if level == 1 { n * k * k } else { 0 }],
            blocks,
            rows,
            segments,
            column_flat,
            column_source,
            column_param,
            j: vec![T::zero(); offset],
            j_next: vec![T::zero(); second],
            d_sub: vec![T::zero(); if level >= 2 { max_units * max_rows } else { 0 }],
            sources: vec![T::zero(); max_cols],
            acc: vec![T::zero(); max_cols],
            fresh: true,
            shape,
            pattern,
            cell,
        };

        // Let faer set up its packing buffer on this thread now.
        if level >= 2 && max_work >= FAER_MIN_WORK {
            let block = *snap
                .blocks
                .iter()
                .max_by_key(|b| k * b.units * b.units * b.cols)
                .expect("at least one unit");
            let (units, rows, cols) = (block.units, k * block.units, block.cols);
            let span = block.offset..block.offset + rows * cols;
            propagate(
                &mut snap.j_next[span],
                &snap.j[block.offset..block.offset + units * cols],
                &snap.d_sub[..units * rows],
                cols,
                units,
                rows,
            );
        }
        Ok(snap)
    }

    /// The pattern this estimator keeps.
    pub fn pattern(&self) -> &SnapPattern {
        &self.pattern
    }

    /// The level `n` of SnAp-n.
    pub fn level(&self) -> usize {
        self.pattern.level()
    }

    /// The cell this estimator follows.
    pub fn cell(&self) -> &Arc<dyn Cell<T>> {
        &self.cell
    }

    /// The influence matrix `J_t` (`|s| × P`, columns in kept-parameter
    /// order, as [`rtrl_core::Rtrl::influence`]) copied out for
    /// inspection: the stored blocks, zero outside the pattern.
    pub fn influence(&self) -> Mat<T> {
        let mut out = Mat::zeros(self.shape.state, self.pattern.num_params());
        if self.fresh {
            return out;
        }
        for block in &self.blocks {
            let q = block.cols;
            let rows = &self.rows[block.rows_start..][..self.components() * block.units];
            for (i, &row) in rows.iter().enumerate() {
                let values = &self.j[block.offset + i * q..][..q];
                let params = &self.column_param[block.cols_start..][..q];
                for (&param, &v) in params.iter().zip(values) {
                    out[(row as usize, param as usize)] = v;
                }
            }
        }
        out
    }

    fn components(&self) -> usize {
        self.pattern.components()
    }

    /// SnAp-1: every block has the rows of its own unit only, so the
    /// update is `J[c, θ_c] ← D_t[c, c] · J[c, θ_c] + I_t[c, θ_c]` per
    /// unit (with `k × k` blocks for an LSTM), done in place.
    fn step_level_one(&mut self, theta: &[T], dl_dh: &[T], grad: &mut [T]) {
        let (n, s, k) = (self.shape.hidden, self.shape.state, self.components());

        // The unit-wise blocks of D_t; zero (and J zero) on a fresh sequence.
        if self.fresh {
            self.j.fill(T::zero());
            self.unit_d.fill(T::zero());
        } else {
            self.cell.unit_jacobian(theta, &self.cache, &mut self.unit_d);
        }

        let sources = &self.cache.sources;
        for block in &self.blocks {
            let (c, q) = (block.unit, block.cols);
            let d = &self.unit_d[c * k * k..(c + 1) * k * k];
            let dl = dl_dh[c];
            let flats = &self.column_flat[block.cols_start..][..q];
            let srcs = &self.column_source[block.cols_start..][..q];
            let j = &mut self.j[block.offset..block.offset + k * q];
            for seg in &self.segments[block.segs.0..block.segs.1] {
                let range = seg.start..seg.end;
                let (flats, srcs) = (&flats[range.clone()], &srcs[range.clone()]);
                if k == 1 {
                    // h'_c row: J ← d·J + u·∂h'_c/∂a_g[c]; gradient dl_c · J.
                    let (d, g) = (d[0], self.gates.entry(seg.gate, c, c));
                    for ((v, &src), &flat) in j[range].iter_mut().zip(srcs).zip(flats) {
                        *v = d * *v + g * sources[src as usize];
                        grad[flat as usize] += dl * *v;
                    }
                } else {
                    // (h'_c, c'_c) rows through the 2 × 2 unit block of D_t.
                    let g_h = self.gates.entry(seg.gate, c, c);
                    let g_c = self.gates.entry(seg.gate, c, n + c);
                    let (h_row, c_row) = j.split_at_mut(q);
                    let (h_row, c_row) = (&mut h_row[range.clone()], &mut c_row[range]);
                    for (((h, cc), &src), &flat) in
                        h_row.iter_mut().zip(c_row.iter_mut()).zip(srcs).zip(flats)
                    {
                        let u = sources[src as usize];
                        let (old_h, old_c) = (*h, *cc);
                        *h = d[0] * old_h + d[1] * old_c + g_h * u;
                        *cc = d[2] * old_h + d[3] * old_c + g_c * u;
                        grad[flat as usize] += dl * *h;
                    }
                }
            }
        }
        let _ = s;
    }

    /// SnAp-n, `n ≥ 2`: per unit, gather `D_t[P_c, U_c]`, multiply into
    /// the successor block, add the LSTM's diagonal `c` columns and the
    /// immediate Jacobian, then read off the gradient.
    fn step_general(&mut self, theta: &[T], dl_dh: &[T], grad: &mut [T]) {
        let (n, s, k) = (self.shape.hidden, self.shape.state, self.components());

        // D_t, unless J_{t−1} = 0 (a fresh sequence).
        if self.fresh {
            self.j_next.fill(T::zero());
        } else {
            self.cell.state_jacobian(theta, &self.cache, &mut self.d);
        }

        for block in &self.blocks {
            let (c, units, q) = (block.unit, block.units, block.cols);
            let nrows = k * units;
            let rows = &self.rows[block.rows_start..][..nrows];
            let span = block.offset..block.offset + nrows * q;
            let old = &self.j[span.clone()];
            let new = &mut self.j_next[span];

            if !self.fresh {
                // D_t[P_c, U_c]ᵀ: column i holds ∂s'[P_c[i]]/∂h[U_c[·]].
                let d_sub = &mut self.d_sub[..units * nrows];
                for (i, &row) in rows.iter().enumerate() {
                    let col = self.d.dh.col(row as usize);
                    let out = &mut d_sub[i * units..(i + 1) * units];
                    for (o, &u) in out.iter_mut().zip(&rows[..units]) {
                        *o = col[u as usize];
                    }
                }

                // J_next[P_c] = D_t[P_c, U_c] · J[h rows of U_c].
                propagate(new, &old[..units * q], d_sub, q, units, nrows);

                // LSTM: the c columns of D_t are diagonal per unit.
                if k == 2 {
                    let (new_h, new_c) = new.split_at_mut(units * q);
                    let old_c = &old[units * q..];
                    for (i, &u) in rows[..units].iter().enumerate() {
                        let u = u as usize;
                        let (to_h, to_c) = (self.d.diag[u], self.d.diag[n + u]);
                        let from = &old_c[i * q..(i + 1) * q];
                        let h_row = &mut new_h[i * q..(i + 1) * q];
                        let c_row = &mut new_c[i * q..(i + 1) * q];
                        for ((h, cc), &v) in
                            h_row.iter_mut().zip(c_row.iter_mut()).zip(from)
                        {
                            *h += to_h * v;
                            *cc += to_c * v;
                        }
                    }
                }
            }

            // The block's source values u[k] of its parameters M[k, c].
            let srcs = &self.column_source[block.cols_start..][..q];
            let u = &mut self.sources[..q];
            for (v, &src) in u.iter_mut().zip(srcs) {
                *v = self.cache.sources[src as usize];
            }

            // I_t[P_c, θ_c]: row r gains u · ∂s'[r]/∂a_g[c], for unit-wise
            // gates only on unit c's own rows.
            for seg in &self.segments[block.segs.0..block.segs.1] {
                let range = seg.start..seg.end;
                if seg.dense {
                    let dense = self.gates.dense[seg.gate].as_ref().expect("dense gate");
                    for (i, &row) in rows.iter().enumerate() {
                        let g = dense[(c, row as usize)];
                        if g != T::zero() {
                            axpy(&mut new[i * q..][range.clone()], g, &u[range.clone()]);
                        }
                    }
                } else {
                    for component in 0..k {
                        let g = self.gates.diag[seg.gate * s + component * n + c];
                        let i = component * units + block.own;
                        axpy(&mut new[i * q..][range.clone()], g, &u[range.clone()]);
                    }
                }
            }

            // ∇θ_c L_t = Σ_{u ∈ U_c} (∂L/∂h_u) · J[h_u, θ_c].
            let acc = &mut self.acc[..q];
            acc.fill(T::zero());
            for (i, &row) in rows[..units].iter().enumerate() {
                let dl = dl_dh[row as usize];
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
/// row by row, this is `J_next[P_c] = D[P_c, U_c] · J[U_c]`.
fn propagate<T: Scalar>(
    new: &mut [T],
    old: &[T],
    d_sub: &[T],
    q: usize,
    units: usize,
    rows: usize,
) {
    if q * units * rows >= FAER_MIN_WORK {
        let new = MatMut::from_column_major_slice_mut(new, q, rows);
        let old = MatRef::from_column_major_slice(old, q, units);
        let d_sub = MatRef::from_column_major_slice(d_sub, units, rows);
        matmul(new, Accum::Replace, old, d_sub, T::one(), Par::Seq);
    } else {
        propagate_small(new, old, d_sub, q, units);
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

impl<T: Scalar> Estimator<T> for Snap<T> {
    fn name(&self) -> String {
        format!("SnAp-{}", self.pattern.level())
    }

    fn num_params(&self) -> usize {
        self.cell.layout().core_len()
    }

    fn hidden(&self) -> usize {
        self.shape.hidden
    }

    fn reset(&mut self) {
        self.state.fill(T::zero());
        self.fresh = true;
    }

    fn forward(&mut self, theta: &[T], x: &[T]) -> &[T] {
        self.cell.forward(theta, &self.state, x, &mut self.cache, &mut self.next);
        std::mem::swap(&mut self.state, &mut self.next);
        &self.state[..self.shape.hidden]
    }

    fn backward(&mut self, theta: &[T], dl_dh: &[T], grad: &mut [T]) -> bool {
        // ∂s'/∂a_g of the step just taken (the immediate Jacobian's factor).
        self.cell.gate_jacobian(theta, &self.cache, &mut self.gates);
        if self.pattern.level() == 1 {
            self.step_level_one(theta, dl_dh, grad);
        } else {
            self.step_general(theta, dl_dh, grad);
        }
        self.fresh = false;
        true
    }

    fn jacobian_entries(&self) -> usize {
        self.pattern.entries()
    }

    fn jacobian_bytes(&self) -> usize {
        self.pattern.stored_entries() * std::mem::size_of::<T>()
    }
}
