//! Exact, dense Real-Time Recurrent Learning.

use std::sync::Arc;

use faer::{Mat, MatMut, MatRef};

use crate::cell::{Cell, CellShape, GateJacobian, StateJacobian, StepCache};
use crate::estimator::Estimator;
use crate::kernel::{propagate, propagate_with, Diagonal};
use crate::scalar::Scalar;

/// Exact RTRL: the full influence matrix `J_t = ∂s_t/∂θ`, carried forward
///
/// ```text
/// J_t = I_t + D_t · J_{t−1},        ∇_θ L_t = (∂L_t/∂h_t) · J^h_t
/// ```
///
/// over all `P` kept core parameters, whatever the network's sparsity.
/// `J` is stored transposed and cut by target unit: unit `c`'s rows of
/// `Jᵀ` (the parameters that feed `c`, see [`UnitOrder`]) form one
/// contiguous column-major block of `m_c × |s|` entries. The propagation
/// is then, block by block, the product `Jᵀ_{t−1}[:, h] · (∂s'/∂h)` of
/// shape `(m_c × n) · (n × |s|)`; the LSTM's cell-state columns enter
/// through a diagonal, not a product.
///
/// Cost per step: `2 n |s| P` flops for the product, `O(|s| P)` for the
/// rest. Memory: the `P × |s|` entries of `J` (each block padded to the
/// largest `m_c`) and one spare block. A step writes unit `c`'s new block
/// into the spare one, adds the immediate Jacobian and takes the gradient
/// entries while it is in L1, then swaps the two blocks: nothing is
/// copied.
///
/// `theta` is the core part of the cell's flat parameter vector (its first
/// [`core_len`](crate::ParamLayout::core_len) entries); gradients come back
/// in the same layout, masked entries zero.
pub struct Rtrl<T: Scalar> {
    cell: Arc<dyn Cell<T>>,
    shape: CellShape,
    state: Vec<T>,
    next: Vec<T>,
    cache: StepCache<T>,
    d: StateJacobian<T>,
    gates: GateJacobian<T>,
    /// Per unit `c`, its block of `Jᵀ` (`m_c × |s|`, column-major).
    j: Vec<Vec<T>>,
    /// The spare block a step writes into.
    tile: Vec<T>,
    fresh: bool,
    acc: Vec<T>,
    order: UnitOrder,
}

impl<T: Scalar> Rtrl<T> {
    /// Exact RTRL for `cell`.
    pub fn new(cell: Arc<dyn Cell<T>>) -> Self {
        let shape = cell.shape();
        let p = cell.layout().num_core_params();
        let order = UnitOrder::new(cell.layout(), shape.hidden);
        let widest = (0..shape.hidden).map(|c| order.unit(c).len()).max().unwrap_or(0);
        Rtrl {
            tile: vec![T::zero(); widest * shape.state],
            state: vec![T::zero(); shape.state],
            next: vec![T::zero(); shape.state],
            cache: cell.new_cache(),
            d: StateJacobian::new(shape),
            gates: GateJacobian::new(shape, cell.dense_gates()),
            j: (0..shape.hidden).map(|_| vec![T::zero(); widest * shape.state]).collect(),
            fresh: true,
            acc: vec![T::zero(); p],
            order,
            shape,
            cell,
        }
    }

    /// The influence matrix `J_t` (`|s| × P`, columns in kept-parameter
    /// order), copied out for inspection.
    pub fn influence(&self) -> Mat<T> {
        let column_of = self.cell.layout().column_of();
        let mut out = Mat::zeros(self.shape.state, self.order.flat.len());
        for c in 0..self.shape.hidden {
            let rows = self.order.unit(c);
            let m = rows.len();
            for (i, &flat) in self.order.flat[rows].iter().enumerate() {
                for r in 0..self.shape.state {
                    out[(r, column_of[flat] as usize)] = self.j[c][i + r * m];
                }
            }
        }
        out
    }

    /// The cell this estimator follows.
    pub fn cell(&self) -> &Arc<dyn Cell<T>> {
        &self.cell
    }
}

/// The core parameters grouped by target unit.
///
/// Every core entry `M[k, c]` feeds unit `c` alone (through its gate's
/// pre-activation), so an influence matrix whose parameter columns are
/// grouped by `c` receives the immediate Jacobian of a unit-wise gate as
/// one contiguous run per block and unit, instead of a stride through
/// every block. Within a unit, parameters follow block order and then
/// row `k`.
#[derive(Debug, Clone)]
pub struct UnitOrder {
    /// For each grouped position, the flat index of the parameter.
    pub flat: Vec<usize>,
    /// For each core block and unit `c`, the first grouped position.
    pub start: Vec<Vec<usize>>,
    /// For each core block and unit `c`, the kept rows (`None`: all rows).
    pub rows: Vec<Vec<Option<Vec<usize>>>>,
}

impl UnitOrder {
    /// Groups the kept core entries of `layout` by unit (`hidden` units).
    pub fn new(layout: &crate::ParamLayout, hidden: usize) -> Self {
        let blocks: Vec<_> = layout.core_blocks().collect();
        let mut flat = Vec::with_capacity(layout.num_core_params());
        let mut start = vec![vec![0; hidden]; blocks.len()];
        let mut rows = vec![vec![None; hidden]; blocks.len()];
        for c in 0..hidden {
            for (b, block) in blocks.iter().enumerate() {
                start[b][c] = flat.len();
                if block.mask.is_some() {
                    let kept: Vec<usize> =
                        (0..block.rows).filter(|&k| block.is_kept(k, c)).collect();
                    flat.extend(kept.iter().map(|&k| block.offset + k * block.cols + c));
                    rows[b][c] = Some(kept);
                } else {
                    flat.extend(
                        (0..block.rows).map(|k| block.offset + k * block.cols + c),
                    );
                }
            }
        }
        UnitOrder { flat, start, rows }
    }

    /// The grouped positions of unit `c`'s parameters (one contiguous
    /// run: every block's entries feeding `c`).
    pub fn unit(&self, c: usize) -> std::ops::Range<usize> {
        let first = self.start.first().map_or(0, |s| s[c]);
        let end = self
            .start
            .first()
            .and_then(|s| s.get(c + 1).copied())
            .unwrap_or(self.flat.len());
        first..end
    }
}

/// Adds unit `c`'s share of the immediate Jacobian to `tile`, the rows
/// [`UnitOrder::unit`]`(c)` of a transposed influence matrix (column-major,
/// `|s|` columns): `tile[p, r] += u[k] · ∂s'[r]/∂a_g[c]` for every kept
/// core entry `p = M[k, c]`.
pub fn add_immediate_unit<T: Scalar>(
    cell: &dyn Cell<T>,
    order: &UnitOrder,
    cache: &StepCache<T>,
    gates: &GateJacobian<T>,
    c: usize,
    tile: &mut [T],
) {
    let shape = cell.shape();
    let (n, s) = (shape.hidden, shape.state);
    let unit = order.unit(c);
    let m = unit.len();
    let offsets = cell.source_offsets();
    for (b, block) in cell.layout().core_blocks().enumerate() {
        let source = &cache.sources[offsets[block.source]..][..block.rows];
        let local = order.start[b][c] - unit.start;
        let kept = &order.rows[b][c];
        let mut add = |r: usize, g: T| {
            if g == T::zero() {
                return;
            }
            let col = &mut tile[r * m..(r + 1) * m];
            match kept {
                None => {
                    for (d, &uk) in
                        col[local..local + source.len()].iter_mut().zip(source)
                    {
                        *d += uk * g;
                    }
                }
                Some(kept) => {
                    for (d, &k) in col[local..local + kept.len()].iter_mut().zip(kept) {
                        *d += source[k] * g;
                    }
                }
            }
        };
        match &gates.dense[block.gate] {
            // A dense gate touches every state row r.
            Some(dense) => {
                for r in 0..s {
                    add(r, dense[(c, r)]);
                }
            }
            // A unit-wise gate touches rows c (and n + c) only.
            None => {
                for r in (c..s).step_by(n) {
                    add(r, gates.diag[block.gate * s + r]);
                }
            }
        }
    }
}

impl<T: Scalar> Estimator<T> for Rtrl<T> {
    fn name(&self) -> String {
        "RTRL".to_string()
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
        let (n, s) = (self.shape.hidden, self.shape.state);
        self.cell.gate_jacobian(theta, &self.cache, &mut self.gates);
        if !self.fresh {
            self.cell.state_jacobian(theta, &self.cache, &mut self.d);
        }

        // One unit at a time: unit `c`'s block of `Jᵀ` is propagated into
        // the spare block, which receives the immediate Jacobian and gives
        // the gradient entries while it is in L1, then takes the old
        // block's place; the influence matrix is read once and written
        // once per step.
        for c in 0..n {
            let rows = self.order.unit(c);
            let m = rows.len();
            let tile = &mut self.tile[..m * s];
            if self.fresh {
                // J_{t−1} = 0.
                tile.fill(T::zero());
            } else {
                // The cell-state columns act unit-wise: column r gains
                // diag[r] · Jᵀ[:, n + r mod n], added in the same pass.
                let block = &self.j[c];
                let diagonal = (!self.d.diag.is_empty()).then(|| Diagonal {
                    source: MatRef::from_column_major_slice(
                        &block[n * m..2 * n * m],
                        m,
                        n,
                    ),
                    scale: &self.d.diag,
                });
                propagate_with(
                    MatMut::from_column_major_slice_mut(&mut *tile, m, s),
                    MatRef::from_column_major_slice(&block[..m * n], m, n),
                    self.d.dh.as_ref(),
                    diagonal,
                );
            }
            add_immediate_unit(
                &*self.cell,
                &self.order,
                &self.cache,
                &self.gates,
                c,
                tile,
            );

            // ∇θ L_t = (∂L_t/∂h_t) · J^h_t on these rows: the tile's h
            // columns times the loss gradient, one more (m × n)·(n × 1)
            // product, which keeps each entry in a register over all n.
            propagate(
                MatMut::from_column_major_slice_mut(&mut self.acc[rows.clone()], m, 1),
                MatRef::from_column_major_slice(&tile[..m * n], m, n),
                MatRef::from_column_major_slice(dl_dh, n, 1),
            );
            std::mem::swap(&mut self.j[c], &mut self.tile);
        }
        self.fresh = false;

        for (&flat, &a) in self.order.flat.iter().zip(&self.acc) {
            grad[flat] += a;
        }
        true
    }

    fn jacobian_entries(&self) -> usize {
        self.shape.hidden * self.cell.layout().num_core_params()
    }

    fn jacobian_bytes(&self) -> usize {
        self.shape.state * self.cell.layout().num_core_params() * std::mem::size_of::<T>()
    }
}
