//! The copy-task curriculum: raise the length once the current one is
//! learned.

use std::f64::consts::LN_2;

use rtrl_core::error::check_positive;
use rtrl_core::Result;

use crate::copy::CopyTask;

/// The copy-task curriculum after Menick et al.: start at level `L = 1`
/// and raise `L` by one whenever the training loss falls below a
/// threshold, 0.15 bits per output by default.
///
/// At level `L` the samples come from [`Curriculum::task`]: pattern
/// lengths uniform in `[1, L]` and `T = 2·L + 2` steps, so a batch grows
/// with the level. Drawing from the whole range `[1, L]` (rather than
/// `L` alone) keeps the shorter lengths learned while longer ones are
/// added.
///
/// The loss given to [`Curriculum::observe`] is the one the trainer
/// reports: binary cross-entropy in nats, averaged over steps and output
/// bits. The level is raised when
///
/// ```text
/// loss_nats / ln 2 < threshold_bits     and     L < L_cap
/// ```
///
/// and never lowered. The level reached after a fixed budget of samples
/// is what the curriculum experiment reports.
///
/// # Example
///
/// ```
/// use rtrl_core::rng::Stream;
/// use rtrl_tasks::{CopyStream, Curriculum};
///
/// let mut curriculum = Curriculum::new(1, 64)?;
/// let mut train = CopyStream::new(curriculum.task(), 0, Stream::Train);
/// for loss in [0.5, 0.2, 0.09, 0.3] {
///     let batch = train.next_batch::<f32>(16);
///     assert_eq!(batch.steps, 2 * curriculum.level() + 2);
///     // ... train on `batch`, which reports `loss` in nats ...
///     if curriculum.observe(loss) {
///         train.set_task(curriculum.task());
///     }
/// }
/// assert_eq!(curriculum.level(), 2);
/// # Ok::<(), rtrl_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curriculum {
    /// Bits per pattern step, `b ≥ 1`.
    bits: usize,
    /// Current level `L`, in `[1, max_level]`.
    level: usize,
    /// Highest level the curriculum raises to.
    max_level: usize,
    /// Loss in bits per output below which the level is raised, `> 0`.
    threshold_bits: f64,
}

impl Curriculum {
    /// The loss, in bits per output, below which the level is raised
    /// unless another threshold is set.
    pub const DEFAULT_THRESHOLD_BITS: f64 = 0.15;

    /// A curriculum at level 1 for patterns of `bits` bits per step that
    /// raises its level at most to `max_level`.
    ///
    /// # Errors
    ///
    /// As [`CopyTask::new`]`(bits, 1, max_level)`: [`rtrl_core::Error::ZeroSize`]
    /// if `bits` or `max_level` is zero.
    pub fn new(bits: usize, max_level: usize) -> Result<Self> {
        // The task at the top level must exist.
        CopyTask::new(bits, 1, max_level)?;

        Ok(Curriculum {
            bits,
            level: 1,
            max_level,
            threshold_bits: Self::DEFAULT_THRESHOLD_BITS,
        })
    }

    /// The same curriculum raising its level below `threshold_bits` bits
    /// per output instead.
    ///
    /// # Errors
    ///
    /// [`rtrl_core::Error::NotPositive`] if `threshold_bits` is not a
    /// finite number greater than 0.
    pub fn with_threshold(self, threshold_bits: f64) -> Result<Self> {
        check_positive("curriculum loss threshold (bits per output)", threshold_bits)?;
        Ok(Curriculum { threshold_bits, ..self })
    }

    /// Current level `L`: the longest pattern drawn now.
    pub const fn level(&self) -> usize {
        self.level
    }

    /// Highest level the curriculum raises to.
    pub const fn max_level(&self) -> usize {
        self.max_level
    }

    /// Bits per pattern step.
    pub const fn bits(&self) -> usize {
        self.bits
    }

    /// Loss in bits per output below which the level is raised.
    pub const fn threshold_bits(&self) -> f64 {
        self.threshold_bits
    }

    /// Whether the level has reached [`Curriculum::max_level`].
    pub const fn is_at_max_level(&self) -> bool {
        self.level == self.max_level
    }

    /// The task at the current level: lengths uniform in `[1, L]`,
    /// `2·L + 2` steps.
    pub const fn task(&self) -> CopyTask {
        CopyTask::from_valid_parts(self.bits, 1, self.level)
    }

    /// Takes one training loss (binary cross-entropy in nats, averaged
    /// over steps and output bits) and raises the level by one if it is
    /// below the threshold in bits and the level is below its maximum.
    /// Returns whether the level was raised.
    ///
    /// A NaN loss never raises the level.
    pub fn observe(&mut self, loss_nats: f64) -> bool {
        // Nats to bits: divide by ln 2. NaN compares false.
        let loss_bits = loss_nats / LN_2;
        let raise = loss_bits < self.threshold_bits && self.level < self.max_level;

        if raise {
            self.level += 1;
        }
        raise
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one_with_the_matching_task() {
        let curriculum = Curriculum::new(2, 5).unwrap();
        assert_eq!(curriculum.level(), 1);
        assert_eq!(curriculum.task(), CopyTask::new(2, 1, 1).unwrap());
        assert_eq!(curriculum.task().steps(), 4);
    }

    #[test]
    fn threshold_is_in_bits_not_nats() {
        // 0.15 bits = 0.10397 nats; a loss of 0.12 nats is 0.173 bits.
        let mut curriculum = Curriculum::new(1, 10).unwrap();
        assert!(!curriculum.observe(0.12));
        assert!(!curriculum.observe(0.15 * LN_2 * (1.0 + 1e-12)));
        assert_eq!(curriculum.level(), 1);
        assert!(curriculum.observe(0.15 * LN_2 * (1.0 - 1e-12)));
        assert_eq!(curriculum.level(), 2);
    }
}
