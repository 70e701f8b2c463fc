//! Optimizers: Adam and plain SGD.

use crate::error::{check_positive, Result};
use crate::scalar::Scalar;

/// Applies a gradient to a parameter vector.
pub trait Optimizer<T: Scalar>: Send {
    /// `params ← params − update(grad)`.
    ///
    /// # Panics
    /// If `params` and `grad` differ in length from the first call.
    fn step(&mut self, params: &mut [T], grad: &[T]);

    /// Forgets all state (moments, step count).
    fn reset(&mut self);
}

/// Stochastic gradient descent: `θ ← θ − lr · g`.
#[derive(Debug, Clone)]
pub struct Sgd {
    lr: f64,
}

impl Sgd {
    /// SGD with learning rate `lr` (finite, > 0).
    pub fn new(lr: f64) -> Result<Self> {
        check_positive("learning rate", lr)?;
        Ok(Sgd { lr })
    }
}

impl<T: Scalar> Optimizer<T> for Sgd {
    fn step(&mut self, params: &mut [T], grad: &[T]) {
        assert_eq!(params.len(), grad.len(), "parameter and gradient lengths differ");
        let lr = T::from_f64(self.lr);
        for (p, &g) in params.iter_mut().zip(grad) {
            *p -= lr * g;
        }
    }

    fn reset(&mut self) {}
}

/// Adam (Kingma and Ba), with bias correction:
///
/// ```text
/// m ← β₁ m + (1 − β₁) g        v ← β₂ v + (1 − β₂) g²
/// θ ← θ − lr · m̂ / (sqrt(v̂) + ε),   m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)
/// ```
///
/// Defaults: β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
#[derive(Debug, Clone)]
pub struct Adam<T> {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i32,
    m: Vec<T>,
    v: Vec<T>,
}

impl<T: Scalar> Adam<T> {
    /// Adam with learning rate `lr` (finite, > 0) and default moments.
    pub fn new(lr: f64) -> Result<Self> {
        check_positive("learning rate", lr)?;
        Ok(Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: Vec::new(),
            v: Vec::new(),
        })
    }
}

impl<T: Scalar> Optimizer<T> for Adam<T> {
    fn step(&mut self, params: &mut [T], grad: &[T]) {
        assert_eq!(params.len(), grad.len(), "parameter and gradient lengths differ");
        if self.m.len() != params.len() {
            assert!(self.m.is_empty(), "parameter vector changed length");
            self.m = vec![T::zero(); params.len()];
            self.v = vec![T::zero(); params.len()];
        }
        self.step = self.step.saturating_add(1);

        // Bias corrections in f64; both lie in (0, 1].
        let c1 = 1.0 - self.beta1.powi(self.step);
        let c2 = 1.0 - self.beta2.powi(self.step);
        let step_size = T::from_f64(self.lr / c1);
        let inv_sqrt_c2 = T::from_f64(1.0 / c2.sqrt());
        let (b1, b2) = (T::from_f64(self.beta1), T::from_f64(self.beta2));
        let (one, eps) = (T::one(), T::from_f64(self.eps));
        for (((p, &g), m), v) in
            params.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v)
        {
            *m = b1 * *m + (one - b1) * g;
            *v = b2 * *v + (one - b2) * g * g;
            *p -= step_size * *m / (v.sqrt() * inv_sqrt_c2 + eps);
        }
    }

    fn reset(&mut self) {
        self.step = 0;
        self.m.clear();
        self.v.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr() {
        let mut adam = Adam::<f64>::new(0.1).unwrap();
        let mut p = vec![1.0, -1.0, 0.0];
        adam.step(&mut p, &[2.0, -3.0, 0.0]);
        // The first bias-corrected step is lr · sign(g) up to ε.
        assert!((p[0] - 0.9).abs() < 1e-6);
        assert!((p[1] + 0.9).abs() < 1e-6);
        assert_eq!(p[2], 0.0);
    }

    #[test]
    fn bad_learning_rate_is_refused() {
        assert!(Adam::<f32>::new(f64::NAN).is_err());
        assert!(Sgd::new(0.0).is_err());
    }
}
