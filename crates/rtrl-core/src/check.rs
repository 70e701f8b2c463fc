//! Helpers for checking one estimator against another.
//!
//! Every estimator in the workspace is tested the same way: run a
//! sequence with a fixed linear loss `L = Σ_t c_t · h_t` (weights held
//! constant), collect the gradient, and compare it with BPTT's, entry by
//! entry, on the scale of the reference's largest entry.

use rand::Rng;

use crate::estimator::Estimator;
use crate::rng::{seeded, Stream};
use crate::scalar::Scalar;

/// A random sequence: inputs `x_t` (uniform in ±1) and loss weights
/// `c_t = ∂L/∂h_t` (uniform in ±1), each `steps` long.
#[derive(Debug, Clone)]
pub struct Probe<T> {
    /// `steps × input` inputs.
    pub inputs: Vec<Vec<T>>,
    /// `steps × hidden` loss weights.
    pub weights: Vec<Vec<T>>,
}

impl<T: Scalar> Probe<T> {
    /// Draws a probe sequence from `seed`.
    pub fn random(seed: u64, steps: usize, input: usize, hidden: usize) -> Self {
        let mut rng = seeded(seed, Stream::Other, 0);
        let mut draw = |len: usize| -> Vec<T> {
            (0..len).map(|_| T::from_f64(rng.random_range(-1.0..1.0))).collect()
        };
        let inputs = (0..steps).map(|_| draw(input)).collect();
        let weights = (0..steps).map(|_| draw(hidden)).collect();
        Probe { inputs, weights }
    }

    /// The probe in another precision.
    pub fn convert<U: Scalar>(&self) -> Probe<U> {
        let conv =
            |v: &Vec<Vec<T>>| v.iter().map(|x| crate::scalar::convert(x)).collect();
        Probe { inputs: conv(&self.inputs), weights: conv(&self.weights) }
    }

    /// The loss `Σ_t c_t · h_t` of running `estimator` forward on `theta`.
    pub fn loss(&self, estimator: &mut dyn Estimator<T>, theta: &[T]) -> T {
        estimator.reset();
        let mut total = T::zero();
        for (x, c) in self.inputs.iter().zip(&self.weights) {
            let h = estimator.forward(theta, x);
            total += h.iter().zip(c).map(|(&a, &b)| a * b).sum::<T>();
        }
        total
    }

    /// The gradient of the loss that `estimator` computes, `theta` fixed.
    pub fn gradient(&self, estimator: &mut dyn Estimator<T>, theta: &[T]) -> Vec<T> {
        estimator.reset();
        let mut grad = vec![T::zero(); estimator.num_params()];
        for (x, c) in self.inputs.iter().zip(&self.weights) {
            estimator.forward(theta, x);
            estimator.backward(theta, c, &mut grad);
        }
        estimator.flush(theta, &mut grad);
        grad
    }

    /// Central finite differences of the loss over the entries `indices`
    /// of `theta` (others report zero), step `eps`.
    pub fn finite_differences(
        &self,
        estimator: &mut dyn Estimator<T>,
        theta: &[T],
        indices: &[usize],
        eps: f64,
    ) -> Vec<T> {
        let mut grad = vec![T::zero(); theta.len()];
        let mut probe = theta.to_vec();
        let eps_t = T::from_f64(eps);
        for &i in indices {
            probe[i] = theta[i] + eps_t;
            let up = self.loss(estimator, &probe);
            probe[i] = theta[i] - eps_t;
            let down = self.loss(estimator, &probe);
            probe[i] = theta[i];
            grad[i] = (up - down) / (eps_t + eps_t);
        }
        grad
    }
}

/// The largest `|a_i − b_i|` divided by the largest `|b_i|` (or by 1 when
/// `b` is all zeros): the error on the reference's own scale.
pub fn relative_error<A: Scalar, B: Scalar>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared vectors differ in length");
    let scale = b.iter().map(|v| v.as_f64().abs()).fold(0.0, f64::max);
    let diff =
        a.iter().zip(b).map(|(x, y)| (x.as_f64() - y.as_f64()).abs()).fold(0.0, f64::max);
    if scale > 0.0 {
        diff / scale
    } else {
        diff
    }
}
