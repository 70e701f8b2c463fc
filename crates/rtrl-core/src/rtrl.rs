//! Exact, dense Real-Time Recurrent Learning.

use std::sync::Arc;

use faer::Mat;

use crate::cell::{Cell, CellShape, GateJacobian, StateJacobian, StepCache};
use crate::estimator::Estimator;
use crate::kernel::propagate;
use crate::scalar::Scalar;

/// Exact RTRL: the full influence matrix `J_t = ∂s_t/∂θ`, carried forward
///
/// ```text
/// J_t = I_t + D_t · J_{t−1},        ∇_θ L_t = (∂L_t/∂h_t) · J^h_t
/// ```
///
/// over all `P` kept core parameters, whatever the network's sparsity.
/// `J` is stored transposed (`P × |s|`, one contiguous column per state
/// entry), so the propagation is the single `faer` product
/// `Jᵀ_{t−1}[:, h] · (∂s'/∂h)` of shape `(P × n) · (n × |s|)`; the LSTM's
/// cell-state columns enter through a diagonal, not a product.
///
/// Cost per step: `2 n |s| P` flops for the product, `O(|s| P)` for the
/// rest. Memory: two `P × |s|` buffers (the influence and its successor).
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
    j: Mat<T>,
    j_next: Mat<T>,
    fresh: bool,
    acc: Vec<T>,
    order: UnitOrder,
}

impl<T: Scalar> Rtrl<T> {
    /// Exact RTRL for `cell`.
    pub fn new(cell: Arc<dyn Cell<T>>) -> Self {
        let shape = cell.shape();
        let p = cell.layout().num_core_params();
        Rtrl {
            state: vec![T::zero(); shape.state],
            next: vec![T::zero(); shape.state],
            cache: cell.new_cache(),
            d: StateJacobian::new(shape),
            gates: GateJacobian::new(shape, cell.dense_gates()),
            j: Mat::zeros(p, shape.state),
            j_next: Mat::zeros(p, shape.state),
            fresh: true,
            acc: vec![T::zero(); p],
            order: UnitOrder::new(cell.layout(), shape.hidden),
            shape,
            cell,
        }
    }

    /// The influence matrix `J_t` (`|s| × P`, columns in kept-parameter
    /// order), copied out for inspection.
    pub fn influence(&self) -> Mat<T> {
        let column_of = self.cell.layout().column_of();
        let mut out = Mat::zeros(self.shape.state, self.j.nrows());
        for (p, &flat) in self.order.flat.iter().enumerate() {
            for r in 0..self.shape.state {
                out[(r, column_of[flat] as usize)] = self.j[(p, r)];
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
}

/// Adds the immediate Jacobian `I_t` to a transposed influence matrix
/// `jt` (`P × |s|`, parameters in [`UnitOrder`]):
/// `Jᵀ[p, r] += u[k] · ∂s'[r]/∂a_g[c]` for every kept core entry
/// `p = M[k, c]`.
pub fn add_immediate<T: Scalar>(
    cell: &dyn Cell<T>,
    order: &UnitOrder,
    cache: &StepCache<T>,
    gates: &GateJacobian<T>,
    jt: &mut Mat<T>,
) {
    let shape = cell.shape();
    let (n, s) = (shape.hidden, shape.state);
    let offsets = cell.source_offsets();

    // One run of `u[k] · g` into a block's positions for one unit.
    let add_run = |col: &mut [T],
                   start: usize,
                   rows: &Option<Vec<usize>>,
                   u: &[T],
                   g: T| {
        match rows {
            None => {
                for (d, &uk) in col[start..start + u.len()].iter_mut().zip(u) {
                    *d += uk * g;
                }
            }
            Some(rows) => {
                for (d, &k) in col[start..start + rows.len()].iter_mut().zip(rows) {
                    *d += u[k] * g;
                }
            }
        }
    };

    for (b, block) in cell.layout().core_blocks().enumerate() {
        let source = &cache.sources[offsets[block.source]..][..block.rows];
        let (start, rows) = (&order.start[b], &order.rows[b]);
        match &gates.dense[block.gate] {
            Some(dense) => {
                // A dense gate touches every state row r.
                for r in 0..s {
                    let g = dense.col_as_slice(r);
                    let col = jt.col_as_slice_mut(r);
                    for c in 0..n {
                        if g[c] != T::zero() {
                            add_run(col, start[c], &rows[c], source, g[c]);
                        }
                    }
                }
            }
            None => {
                // A unit-wise gate touches rows c (and n + c) only.
                let diag = &gates.diag[block.gate * s..(block.gate + 1) * s];
                for r in 0..s {
                    let c = r % n;
                    if diag[r] != T::zero() {
                        add_run(
                            jt.col_as_slice_mut(r),
                            start[c],
                            &rows[c],
                            source,
                            diag[r],
                        );
                    }
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

        // Propagate: Jᵀ_t = Jᵀ_{t−1} · Dᵀ (skipped while J_{t−1} = 0).
        if self.fresh {
            self.j_next.fill(T::zero());
        } else {
            self.cell.state_jacobian(theta, &self.cache, &mut self.d);
            propagate(
                self.j_next.as_mut(),
                self.j.as_ref().subcols(0, n),
                self.d.dh.as_ref(),
            );
            // The cell-state columns act unit-wise.
            for r in 0..self.d.diag.len() {
                let scale = self.d.diag[r];
                let src = self.j.col_as_slice(n + r % n);
                for (d, &v) in self.j_next.col_as_slice_mut(r).iter_mut().zip(src) {
                    *d += scale * v;
                }
            }
        }

        // Add the immediate Jacobian I_t.
        add_immediate(
            &*self.cell,
            &self.order,
            &self.cache,
            &self.gates,
            &mut self.j_next,
        );
        std::mem::swap(&mut self.j, &mut self.j_next);
        self.fresh = false;
        let _ = s;

        // ∇θ L_t = (∂L_t/∂h_t) · J^h_t, one axpy per hidden row.
        self.acc.fill(T::zero());
        for (r, &dl) in dl_dh.iter().enumerate() {
            if dl == T::zero() {
                continue;
            }
            for (a, &v) in self.acc.iter_mut().zip(self.j.col_as_slice(r)) {
                *a += dl * v;
            }
        }
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
