//! Exact, dense Real-Time Recurrent Learning.

use std::sync::Arc;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

use crate::cell::{Cell, CellShape, GateJacobian, StateJacobian, StepCache};
use crate::estimator::Estimator;
use crate::layout::MASKED;
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
            shape,
            cell,
        }
    }

    /// The influence matrix `J_t` (`|s| × P`, columns in kept-parameter
    /// order), copied out for inspection.
    pub fn influence(&self) -> Mat<T> {
        self.j.transpose().to_owned()
    }

    /// The cell this estimator follows.
    pub fn cell(&self) -> &Arc<dyn Cell<T>> {
        &self.cell
    }
}

/// Adds the immediate Jacobian `I_t` to a transposed influence matrix
/// `jt` (`P × |s|`): `Jᵀ[p, r] += u[k] · ∂s'[r]/∂a_g[c]` for every kept
/// core entry `p = M[k, c]`.
pub fn add_immediate<T: Scalar>(
    cell: &dyn Cell<T>,
    cache: &StepCache<T>,
    gates: &GateJacobian<T>,
    jt: &mut Mat<T>,
) {
    let shape = cell.shape();
    let (n, s) = (shape.hidden, shape.state);
    let layout = cell.layout();
    let column_of = layout.column_of();
    let offsets = cell.source_offsets();
    for block in layout.core_blocks() {
        let source = &cache.sources[offsets[block.source]..][..block.rows];
        match &gates.dense[block.gate] {
            Some(dense) => {
                // A dense gate touches every state row: one pass per row r.
                for r in 0..s {
                    let col =
                        jt.col_mut(r).try_as_col_major_mut().expect("contiguous column");
                    let col = col.as_slice_mut();
                    for (k, &u) in source.iter().enumerate() {
                        let first = block.offset + k * block.cols;
                        for c in 0..block.cols {
                            let p = column_of[first + c];
                            if p != MASKED {
                                col[p as usize] += u * dense[(c, r)];
                            }
                        }
                    }
                }
            }
            None => {
                // A unit-wise gate touches rows c (and n + c): one pass per
                // state component.
                let diag = &gates.diag[block.gate * s..(block.gate + 1) * s];
                for component in 0..s / n {
                    let rows = component * n;
                    for c in 0..block.cols {
                        let g = diag[rows + c];
                        let col = jt
                            .col_mut(rows + c)
                            .try_as_col_major_mut()
                            .expect("contiguous");
                        let col = col.as_slice_mut();
                        for (k, &u) in source.iter().enumerate() {
                            let p = column_of[block.offset + k * block.cols + c];
                            if p != MASKED {
                                col[p as usize] += u * g;
                            }
                        }
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
            matmul(
                self.j_next.as_mut(),
                Accum::Replace,
                self.j.as_ref().subcols(0, n),
                self.d.dh.as_ref(),
                T::one(),
                Par::Seq,
            );
            // The cell-state columns act unit-wise.
            for r in 0..self.d.diag.len() {
                let scale = self.d.diag[r];
                let src = n + r % n;
                for p in 0..self.j.nrows() {
                    self.j_next[(p, r)] += scale * self.j[(p, src)];
                }
            }
        }

        // Add the immediate Jacobian I_t.
        add_immediate(&*self.cell, &self.cache, &self.gates, &mut self.j_next);
        std::mem::swap(&mut self.j, &mut self.j_next);
        self.fresh = false;
        let _ = s;

        // ∇θ L_t = (∂L_t/∂h_t) · J^h_t, one axpy per hidden row.
        self.acc.fill(T::zero());
        for (r, &dl) in dl_dh.iter().enumerate() {
            if dl == T::zero() {
                continue;
            }
            let col = self.j.col(r).try_as_col_major().expect("contiguous column");
            for (a, &v) in self.acc.iter_mut().zip(col.as_slice()) {
                *a += dl * v;
            }
        }
        for (&flat, &a) in self.cell.layout().kept().iter().zip(&self.acc) {
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
