//! The floating-point types the workspace computes in.

use std::fmt::{Debug, Display};
use std::iter::Sum;

use num_traits::Float;

/// A real floating-point scalar: `f32` for training, `f64` for checks.
///
/// Everything numeric in the workspace is generic over this trait, so a
/// gradient check can run the very code that trains, in double precision.
pub trait Scalar:
    Float
    + faer::traits::RealField
    + Copy
    + Default
    + Debug
    + Display
    + Sum
    + Send
    + Sync
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + 'static
{
    /// Short name of the type, as in a file format (`"f32"`, `"f64"`).
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest.
    fn from_f64(value: f64) -> Self;

    /// Converts to `f64` exactly.
    fn as_f64(self) -> f64;

    /// The logistic sigmoid `1 / (1 + exp(-x))`, stable for large `|x|`.
    #[inline]
    fn sigmoid(self) -> Self {
        let one = Self::one();
        if self >= Self::zero() {
            one / (one + (-self).exp())
        } else {
            let e = self.exp();
            e / (one + e)
        }
    }
}

impl Scalar for f32 {
    const NAME: &'static str = "f32";

    #[inline]
    fn from_f64(value: f64) -> Self {
        value as f32
    }

    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";

    #[inline]
    fn from_f64(value: f64) -> Self {
        value
    }

    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
}

/// Converts a slice of one scalar type into a vector of another.
pub fn convert<A: Scalar, B: Scalar>(values: &[A]) -> Vec<B> {
    values.iter().map(|v| B::from_f64(v.as_f64())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(Scalar::sigmoid(1000.0f64), 1.0);
        assert_eq!(Scalar::sigmoid(-1000.0f64), 0.0);
        assert!((Scalar::sigmoid(0.0f32) - 0.5).abs() < 1e-7);
    }
}
