//! Batches of sequences, and the losses on a readout.

use crate::error::{Error, Result};
use crate::scalar::Scalar;

/// A batch of equally long sequences with a target at every step.
///
/// `inputs[(b · steps + t) · input_width + i]` is input `i` of sample `b`
/// at step `t`; targets are laid out the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    /// Number of sequences.
    pub batch: usize,
    /// Steps per sequence.
    pub steps: usize,
    /// Input width.
    pub input_width: usize,
    /// Target width.
    pub output_width: usize,
    /// Inputs, sample-major then step-major.
    pub inputs: Vec<T>,
    /// Targets, laid out like the inputs.
    pub targets: Vec<T>,
}

impl<T: Scalar> Batch<T> {
    /// Zeroed batch of the given sizes.
    pub fn zeros(
        batch: usize,
        steps: usize,
        input_width: usize,
        output_width: usize,
    ) -> Self {
        Batch {
            batch,
            steps,
            input_width,
            output_width,
            inputs: vec![T::zero(); batch * steps * input_width],
            targets: vec![T::zero(); batch * steps * output_width],
        }
    }

    /// Input of sample `b` at step `t`.
    #[inline]
    pub fn input(&self, b: usize, t: usize) -> &[T] {
        let w = self.input_width;
        &self.inputs[(b * self.steps + t) * w..][..w]
    }

    /// Target of sample `b` at step `t`.
    #[inline]
    pub fn target(&self, b: usize, t: usize) -> &[T] {
        let w = self.output_width;
        &self.targets[(b * self.steps + t) * w..][..w]
    }

    /// Checks the buffers against the sizes and the model's widths.
    pub fn check(&self, input_width: usize, output_width: usize) -> Result<()> {
        let shape = |what: &str, expected: usize, got: usize| {
            Err(Error::Shape {
                what: what.to_string(),
                expected: expected.to_string(),
                got: got.to_string(),
            })
        };
        if self.input_width != input_width {
            return shape("batch input width", input_width, self.input_width);
        }
        if self.output_width != output_width {
            return shape("batch target width", output_width, self.output_width);
        }
        if self.inputs.len() != self.batch * self.steps * input_width {
            return shape(
                "batch inputs",
                self.batch * self.steps * input_width,
                self.inputs.len(),
            );
        }
        if self.targets.len() != self.batch * self.steps * output_width {
            return shape(
                "batch targets",
                self.batch * self.steps * output_width,
                self.targets.len(),
            );
        }
        Ok(())
    }
}

/// The loss on the readout's logits `z = V·h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// Independent sigmoid outputs, binary cross-entropy (natural log),
    /// averaged over steps and output bits.
    #[default]
    BinaryCrossEntropy,
    /// One softmax over the outputs, cross-entropy against a distribution
    /// (usually one-hot), averaged over steps.
    SoftmaxCrossEntropy,
}

impl Loss {
    /// Loss of one step, summed over outputs, and its gradient with
    /// respect to the logits written to `d_logits`.
    ///
    /// Binary cross-entropy uses the stable form
    /// `max(z, 0) − z·t + ln(1 + e^{−|z|})`, gradient `σ(z) − t`.
    pub fn step<T: Scalar>(self, logits: &[T], target: &[T], d_logits: &mut [T]) -> T {
        match self {
            Loss::BinaryCrossEntropy => {
                let mut total = T::zero();
                for ((&z, &t), d) in logits.iter().zip(target).zip(d_logits.iter_mut()) {
                    total += z.max(T::zero()) - z * t + (-z.abs()).exp().ln_1p();
                    *d = z.sigmoid() - t;
                }
                total
            }
            Loss::SoftmaxCrossEntropy => {
                let max = logits.iter().copied().fold(T::neg_infinity(), T::max);
                let sum: T = logits.iter().map(|&z| (z - max).exp()).sum();
                let log_sum = max + sum.ln();
                let mut total = T::zero();
                for ((&z, &t), d) in logits.iter().zip(target).zip(d_logits.iter_mut()) {
                    total += t * (log_sum - z);
                    *d = (z - log_sum).exp() - t;
                }
                total
            }
        }
    }

    /// The factor that turns a sum over steps (and outputs) into the
    /// per-sequence mean this loss reports.
    pub fn scale(self, steps: usize, outputs: usize) -> f64 {
        match self {
            Loss::BinaryCrossEntropy => 1.0 / (steps * outputs).max(1) as f64,
            Loss::SoftmaxCrossEntropy => 1.0 / steps.max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_matches_the_naive_formula() {
        let mut d = [0.0f64; 2];
        let loss = Loss::BinaryCrossEntropy.step(&[0.3, -2.0], &[1.0, 0.0], &mut d);
        let naive = -(0.3f64.sigmoid()).ln() - (1.0 - (-2.0f64).sigmoid()).ln();
        assert!((loss - naive).abs() < 1e-12);
        assert!((d[0] - (0.3f64.sigmoid() - 1.0)).abs() < 1e-15);
    }

    #[test]
    fn softmax_gradient_sums_to_zero() {
        let mut d = [0.0f64; 3];
        let loss =
            Loss::SoftmaxCrossEntropy.step(&[1.0, 2.0, 3.0], &[0.0, 1.0, 0.0], &mut d);
        assert!(loss > 0.0);
        assert!(d.iter().sum::<f64>().abs() < 1e-12);
    }
}
