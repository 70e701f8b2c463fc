//! The estimator trait: a gradient, one time step at a time.

use crate::scalar::Scalar;

/// A way of computing the gradient of a recurrent core, driven one step
/// at a time.
///
/// One estimator follows one sequence. The caller, per step:
///
/// 1. calls [`forward`](Estimator::forward) with the trainable vector
///    `theta` and the input `x_t`, and reads `h_t`;
/// 2. computes the loss at `h_t` (through a readout) and calls
///    [`backward`](Estimator::backward) with `∂L_t/∂h_t`. The estimator
///    adds to `grad` whatever part of the gradient is ready and says
///    whether it did: forward-mode estimators (RTRL, SnAp, LoRA-RTRL)
///    add `(∂L_t/∂h_t) · J^h_t` at every step; BPTT only at the end of a
///    window.
///
/// At the end of a sequence [`flush`](Estimator::flush) adds what is left.
/// [`reset`](Estimator::reset) starts a new sequence (state and influence
/// zero). A pass that only evaluates may call `forward` alone.
///
/// `theta` may change between steps (online learning); the estimator
/// always uses the values it is given. Its length is
/// [`num_params`](Estimator::num_params), the same for `grad`.
pub trait Estimator<T: Scalar>: Send {
    /// Human-readable name, with its settings (`"SnAp-2"`).
    fn name(&self) -> String;

    /// Length of the trainable vector `theta` (and of `grad`).
    fn num_params(&self) -> usize;

    /// Hidden units `n` (the length of `h_t`).
    fn hidden(&self) -> usize;

    /// Starts a new sequence: zero state, zero influence, empty tape.
    fn reset(&mut self);

    /// Advances one step on input `x`; returns `h_t`.
    fn forward(&mut self, theta: &[T], x: &[T]) -> &[T];

    /// Takes `∂L_t/∂h_t` for the step just taken; adds any gradient that
    /// is ready to `grad` and returns whether it added one.
    fn backward(&mut self, theta: &[T], dl_dh: &[T], grad: &mut [T]) -> bool;

    /// Adds whatever gradient is still pending at the end of a sequence;
    /// returns whether it added one.
    fn flush(&mut self, theta: &[T], grad: &mut [T]) -> bool {
        let _ = (theta, grad);
        false
    }

    /// Entries of `J^h` this estimator tracks (0 for BPTT).
    fn jacobian_entries(&self) -> usize;

    /// Bytes of influence storage (`J^h`, and `J^c` for an LSTM).
    fn jacobian_bytes(&self) -> usize;
}
