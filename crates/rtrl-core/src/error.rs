//! The error type of the core crate.

use thiserror::Error;

/// What can go wrong when a model, an estimator or a batch is set up.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A size that must be at least one was zero.
    #[error("{what} must be at least 1, got {value}")]
    ZeroSize {
        /// Which size.
        what: &'static str,
        /// The value given.
        value: usize,
    },
    /// A density outside (0, 1].
    #[error("{what} must be in (0, 1], got {value}")]
    Density {
        /// Which density.
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// A hyper-parameter that must be a finite positive number was not.
    #[error("{what} must be a finite number greater than 0, got {value}")]
    NotPositive {
        /// Which hyper-parameter.
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// A vector or batch whose shape does not fit the model.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Which vector or tensor.
        what: String,
        /// The expected length or shape.
        expected: String,
        /// The length or shape given.
        got: String,
    },
    /// The loss became NaN or infinite.
    #[error(
        "the loss became {value} at epoch {epoch}; lower the learning rate or check the data"
    )]
    NonFinite {
        /// The epoch (counted from 1) in which it happened.
        epoch: usize,
        /// The offending value.
        value: f64,
    },
    /// Anything else that is not supported.
    #[error("{0}")]
    Unsupported(String),
}

/// Result with the core [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that a density lies in (0, 1].
pub fn check_density(what: &'static str, value: f64) -> Result<()> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(Error::Density { what, value })
    }
}

/// Checks that a size is at least one.
pub fn check_size(what: &'static str, value: usize) -> Result<()> {
    if value >= 1 {
        Ok(())
    } else {
        Err(Error::ZeroSize { what, value })
    }
}

/// Checks that a number is finite and positive.
pub fn check_positive(what: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::NotPositive { what, value })
    }
}
