//! Back-propagation through time, full and truncated.

use std::sync::Arc;

use crate::cell::{accumulate_block_gradients, Cell, CellShape, StepCache};
use crate::estimator::Estimator;
use crate::scalar::Scalar;

/// BPTT: records every step of a window on a tape, then runs the chain
/// rule backwards,
///
/// ```text
/// δs_{t−1} = D_tᵀ (δs_t + ∂L_t/∂s_t),      ∇_θ L += Σ_t (δs_t)ᵀ I_t
/// ```
///
/// With no window the tape spans the whole sequence and the gradient is
/// exact (the reference every other estimator is tested against); memory
/// grows with its length. With a window of `k` steps the backward pass
/// runs every `k` steps and the gradient is truncated there: the state
/// carries on, its dependence on earlier windows is dropped.
///
/// `theta` is the core part of the cell's flat parameter vector; the
/// gradient comes back in the same layout.
pub struct Bptt<T: Scalar> {
    cell: Arc<dyn Cell<T>>,
    shape: CellShape,
    window: Option<usize>,
    state: Vec<T>,
    next: Vec<T>,
    tape: Vec<StepCache<T>>,
    dl_dh: Vec<T>,
    len: usize,
    d_next: Vec<T>,
    d_state: Vec<T>,
    d_gates: Vec<T>,
}

impl<T: Scalar> Bptt<T> {
    /// Full BPTT over the whole sequence.
    pub fn new(cell: Arc<dyn Cell<T>>) -> Self {
        Self::with_window(cell, None)
    }

    /// BPTT truncated to windows of `window` steps (`None`: no truncation).
    ///
    /// # Panics
    /// If `window` is `Some(0)`.
    pub fn with_window(cell: Arc<dyn Cell<T>>, window: Option<usize>) -> Self {
        assert!(window != Some(0), "a BPTT window has at least one step");
        let shape = cell.shape();
        Bptt {
            state: vec![T::zero(); shape.state],
            next: vec![T::zero(); shape.state],
            tape: Vec::new(),
            dl_dh: Vec::new(),
            len: 0,
            d_next: vec![T::zero(); shape.state],
            d_state: vec![T::zero(); shape.state],
            d_gates: vec![T::zero(); shape.gates * shape.hidden],
            window,
            shape,
            cell,
        }
    }

    fn run_backward(&mut self, theta: &[T], grad: &mut [T]) {
        let n = self.shape.hidden;
        let layout = self.cell.layout();
        let offsets = self.cell.source_offsets();
        self.d_next.fill(T::zero());
        for t in (0..self.len).rev() {
            // δs_t gains the loss gradient of step t.
            for (d, &g) in
                self.d_next[..n].iter_mut().zip(&self.dl_dh[t * n..(t + 1) * n])
            {
                *d += g;
            }
            self.cell.backward(
                theta,
                &self.tape[t],
                &self.d_next,
                &mut self.d_gates,
                &mut self.d_state,
            );
            accumulate_block_gradients(
                layout,
                offsets,
                n,
                &self.tape[t],
                &self.d_gates,
                grad,
            );
            std::mem::swap(&mut self.d_next, &mut self.d_state);
        }
        self.len = 0;
    }
}

impl<T: Scalar> Estimator<T> for Bptt<T> {
    fn name(&self) -> String {
        match self.window {
            None => "BPTT".to_string(),
            Some(k) => format!("TBPTT-{k}"),
        }
    }

    fn num_params(&self) -> usize {
        self.cell.layout().core_len()
    }

    fn hidden(&self) -> usize {
        self.shape.hidden
    }

    fn reset(&mut self) {
        self.state.fill(T::zero());
        self.len = 0;
    }

    fn forward(&mut self, theta: &[T], x: &[T]) -> &[T] {
        // Grow the tape only the first time a sequence is this long.
        if self.tape.len() == self.len {
            self.tape.push(self.cell.new_cache());
            self.dl_dh.resize(self.tape.len() * self.shape.hidden, T::zero());
        }
        let cache = &mut self.tape[self.len];
        self.cell.forward(theta, &self.state, x, cache, &mut self.next);
        std::mem::swap(&mut self.state, &mut self.next);
        self.len += 1;
        &self.state[..self.shape.hidden]
    }

    fn backward(&mut self, theta: &[T], dl_dh: &[T], grad: &mut [T]) -> bool {
        let n = self.shape.hidden;
        let t = self.len - 1;
        self.dl_dh[t * n..(t + 1) * n].copy_from_slice(dl_dh);
        if self.window == Some(self.len) {
            self.run_backward(theta, grad);
            true
        } else {
            false
        }
    }

    fn flush(&mut self, theta: &[T], grad: &mut [T]) -> bool {
        if self.len == 0 {
            return false;
        }
        self.run_backward(theta, grad);
        true
    }

    fn jacobian_entries(&self) -> usize {
        0
    }

    fn jacobian_bytes(&self) -> usize {
        0
    }
}
