//! The copy task and its seeded stream of batches.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rtrl_core::error::check_size;
use rtrl_core::rng::{seeded, Stream};
use rtrl_core::{Batch, Error, Result, Scalar};

/// The copy task: read a random bit pattern, then write it back.
///
/// A sample of length `L` (drawn uniformly from `[L_min, L_max]`) carries
/// `L` steps of `b` random bits between a start and an end marker; after
/// the end marker the target is the same pattern, one step at a time.
/// Every sample has `T = 2·L_max + 2` steps, so that samples of different
/// lengths share one batch; the steps after `2L + 1` are all zero.
///
/// Input channels (`b + 2` of them): `0` is the start marker, `1` the end
/// marker, `2 .. 2 + b` the pattern. Output channels (`b`): the pattern.
///
/// ```text
/// step      0       1 ..= L    L + 1    L + 2 ..= 2L + 1    2L + 2 ..= T − 1
/// input     start   pattern    end      0                   0
/// target    0       0          0        pattern             0
/// ```
///
/// The target at step `L + 1 + i` equals the pattern read at step `i`,
/// for `i = 1 ..= L`. Each bit is 0 or 1 with probability ½.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyTask {
    /// Bits per pattern step, `b ≥ 1`.
    bits: usize,
    /// Shortest pattern, `1 ≤ L_min ≤ L_max`.
    min_len: usize,
    /// Longest pattern, which fixes the number of steps.
    max_len: usize,
}

impl CopyTask {
    /// Bits per pattern step when none are given (the thesis uses 1).
    pub const DEFAULT_BITS: usize = 1;

    /// Longest pattern when none is given (the thesis uses 10).
    pub const DEFAULT_MAX_LEN: usize = 10;

    /// A copy task with `bits` bits per step and pattern lengths drawn
    /// uniformly from `[min_len, max_len]`.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`] if `bits`, `min_len` or `max_len` is zero, and
    /// [`Error::Unsupported`] if `min_len > max_len` or the sequence
    /// length `2·max_len + 2` does not fit in a `usize`.
    pub fn new(bits: usize, min_len: usize, max_len: usize) -> Result<Self> {
        check_size("copy task bits per step", bits)?;
        check_size("copy task maximum length", max_len)?;
        check_size("copy task minimum length", min_len)?;

        if min_len > max_len {
            return Err(Error::Unsupported(format!(
                "the copy task's minimum length {min_len} exceeds its maximum length \
                 {max_len}; choose a minimum length between 1 and the maximum length"
            )));
        }

        // Both widths and the step count must be representable.
        let fits = bits.checked_add(2).is_some()
            && max_len.checked_mul(2).and_then(|n| n.checked_add(2)).is_some();
        if !fits {
            return Err(Error::Unsupported(format!(
                "a copy task with {bits} bits per step and maximum length {max_len} \
                 has more steps or channels than can be counted; choose smaller values"
            )));
        }

        Ok(CopyTask { bits, min_len, max_len })
    }

    /// A copy task whose shortest length is the default for `max_len`,
    /// see [`CopyTask::default_min_len`].
    ///
    /// # Errors
    ///
    /// As [`CopyTask::new`].
    pub fn with_max_len(bits: usize, max_len: usize) -> Result<Self> {
        Self::new(bits, Self::default_min_len(max_len), max_len)
    }

    /// The default shortest length for a longest length `max_len`:
    /// `max(1, max_len − 5)`.
    pub const fn default_min_len(max_len: usize) -> usize {
        let min_len = max_len.saturating_sub(5);
        if min_len == 0 {
            1
        } else {
            min_len
        }
    }

    /// A task whose sizes the caller has already validated.
    pub(crate) const fn from_valid_parts(
        bits: usize,
        min_len: usize,
        max_len: usize,
    ) -> Self {
        CopyTask { bits, min_len, max_len }
    }

    /// Bits per pattern step, `b`.
    pub const fn bits(&self) -> usize {
        self.bits
    }

    /// Shortest pattern length, `L_min`.
    pub const fn min_len(&self) -> usize {
        self.min_len
    }

    /// Longest pattern length, `L_max`.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// Input channels per step: `b + 2` (start marker, end marker,
    /// pattern).
    pub const fn input_width(&self) -> usize {
        self.bits + 2
    }

    /// Output channels per step: `b`.
    pub const fn output_width(&self) -> usize {
        self.bits
    }

    /// Steps of every sample: `T = 2·L_max + 2`.
    pub const fn steps(&self) -> usize {
        2 * self.max_len + 2
    }

    /// Writes one sample into `inputs` and `targets` and returns its
    /// pattern length `L`.
    ///
    /// Draws `L` uniformly from `[L_min, L_max]`, then the pattern's bits
    /// step by step (all `b` bits of step 1, then of step 2, …). Every
    /// value not set by the layout is overwritten with zero.
    ///
    /// # Panics
    ///
    /// If `inputs` does not hold `steps() · input_width()` values or
    /// `targets` does not hold `steps() · output_width()` values.
    pub fn write_sample<T: Scalar, R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        inputs: &mut [T],
        targets: &mut [T],
    ) -> usize {
        let len = rng.random_range(self.min_len..=self.max_len);
        self.write_sample_of_len(len, rng, inputs, targets);
        len
    }

    /// Writes one sample whose pattern has `len` steps, `len` in
    /// `[1, L_max]`.
    pub(crate) fn write_sample_of_len<T: Scalar, R: Rng + ?Sized>(
        &self,
        len: usize,
        rng: &mut R,
        inputs: &mut [T],
        targets: &mut [T],
    ) {
        let (bits, width, steps) = (self.bits, self.input_width(), self.steps());
        assert_eq!(inputs.len(), steps * width, "copy task sample inputs");
        assert_eq!(targets.len(), steps * bits, "copy task sample targets");
        debug_assert!((1..=self.max_len).contains(&len));

        // Start from silence: only the markers and the pattern are set.
        inputs.fill(T::zero());
        targets.fill(T::zero());

        // Step 0: start marker.
        inputs[0] = T::one();

        // Steps 1 ..= L read the pattern; steps L + 2 ..= 2L + 1 write it.
        for step in 1..=len {
            let read = &mut inputs[step * width + 2..][..bits];
            let write = &mut targets[(len + 1 + step) * bits..][..bits];
            for (read_bit, write_bit) in read.iter_mut().zip(write) {
                if rng.random::<bool>() {
                    *read_bit = T::one();
                    *write_bit = T::one();
                }
            }
        }

        // Step L + 1: end marker.
        inputs[(len + 1) * width + 1] = T::one();
    }
}

impl Default for CopyTask {
    /// One bit per step, lengths 5 ..= 10, 22 steps: the thesis's task.
    fn default() -> Self {
        let max_len = Self::DEFAULT_MAX_LEN;
        CopyTask {
            bits: Self::DEFAULT_BITS,
            min_len: Self::default_min_len(max_len),
            max_len,
        }
    }
}

/// An endless, seeded stream of copy-task batches.
///
/// The samples come from [`rtrl_core::rng::seeded`]`(seed, purpose, 0)`:
/// the same seed and purpose give the same batches bit for bit, and the
/// [`Stream::Train`] and [`Stream::Validation`] streams of one seed are
/// independent of each other. The precision of the batch does not change
/// the samples: an `f32` and an `f64` batch drawn at the same point hold
/// the same zeros and ones.
#[derive(Debug, Clone)]
pub struct CopyStream {
    /// The task samples are drawn from.
    task: CopyTask,
    /// Where the next sample's length and bits come from.
    rng: ChaCha8Rng,
}

impl CopyStream {
    /// A stream of `task` samples for `seed`, drawn for `purpose`
    /// (normally [`Stream::Train`] or [`Stream::Validation`]).
    pub fn new(task: CopyTask, seed: u64, purpose: Stream) -> Self {
        CopyStream { task, rng: seeded(seed, purpose, 0) }
    }

    /// The task the next samples are drawn from.
    pub fn task(&self) -> CopyTask {
        self.task
    }

    /// Draws the next samples from `task` instead, carrying on with the
    /// same random numbers (a curriculum raising its level uses this).
    pub fn set_task(&mut self, task: CopyTask) {
        self.task = task;
    }

    /// The next `batch_size` samples as a new batch of
    /// [`CopyTask::steps`] steps.
    pub fn next_batch<T: Scalar>(&mut self, batch_size: usize) -> Batch<T> {
        let task = self.task;
        let mut batch = Batch::zeros(
            batch_size,
            task.steps(),
            task.input_width(),
            task.output_width(),
        );
        self.fill_batch(&mut batch);
        batch
    }

    /// Overwrites every sample of `batch` with the next `batch.batch`
    /// samples, the same ones [`CopyStream::next_batch`] would return.
    ///
    /// The batch takes this task's steps and widths; its buffers are
    /// reused and allocate only if they must grow (for instance when a
    /// curriculum raised the length since the batch was made).
    pub fn fill_batch<T: Scalar>(&mut self, batch: &mut Batch<T>) {
        let task = self.task;
        let input_len = task.steps() * task.input_width();
        let target_len = task.steps() * task.output_width();

        // Reshape to this task; a batch of the right shape is untouched.
        batch.steps = task.steps();
        batch.input_width = task.input_width();
        batch.output_width = task.output_width();
        batch.inputs.resize(batch.batch * input_len, T::zero());
        batch.targets.resize(batch.batch * target_len, T::zero());

        // One sample per chunk; chunks hold at least 12 and 4 values, never 0.
        let samples = batch
            .inputs
            .chunks_exact_mut(input_len)
            .zip(batch.targets.chunks_exact_mut(target_len));
        for (inputs, targets) in samples {
            task.write_sample(&mut self.rng, inputs, targets);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value every cell of a sample of length `len` must hold,
    /// computed from the specification's rules one cell at a time; the
    /// pattern is taken from the sample's own inputs.
    fn check_layout(task: &CopyTask, len: usize, inputs: &[f64], targets: &[f64]) {
        let (bits, width) = (task.bits(), task.input_width());
        let pattern = |step: usize, bit: usize| inputs[step * width + 2 + bit];

        for step in 0..task.steps() {
            for channel in 0..width {
                let got = inputs[step * width + channel];
                let expected = match (step, channel) {
                    (0, 0) => 1.0,
                    (s, 1) if s == len + 1 => 1.0,
                    (s, c) if (1..=len).contains(&s) && c >= 2 => {
                        assert!(got == 0.0 || got == 1.0, "pattern bit {got}");
                        got
                    }
                    _ => 0.0,
                };
                assert_eq!(got, expected, "input step {step} channel {channel}, L {len}");
            }
            for bit in 0..bits {
                let got = targets[step * bits + bit];
                let expected = if (len + 2..=2 * len + 1).contains(&step) {
                    pattern(step - len - 1, bit)
                } else {
                    0.0
                };
                assert_eq!(got, expected, "target step {step} bit {bit}, L {len}");
            }
        }
    }

    fn layout_case(bits: usize, min_len: usize, max_len: usize) {
        let task = CopyTask::new(bits, min_len, max_len).unwrap();
        let mut rng = seeded(11, Stream::Other, 0);
        let mut inputs = vec![0.5; task.steps() * task.input_width()];
        let mut targets = vec![0.5; task.steps() * task.output_width()];

        for len in [min_len, max_len] {
            // Several draws, so that both bit values show up.
            let mut ones = 0.0;
            for _ in 0..8 {
                task.write_sample_of_len(len, &mut rng, &mut inputs, &mut targets);
                check_layout(&task, len, &inputs, &targets);
                ones += targets.iter().sum::<f64>();
            }
            let cells = (8 * len * bits) as f64;
            assert!(ones > 0.0 && ones < cells, "{ones} ones in {cells} pattern bits");
        }
    }

    #[test]
    fn layout_one_bit_at_both_lengths() {
        layout_case(1, 5, 10);
    }

    #[test]
    fn layout_three_bits_at_both_lengths() {
        layout_case(3, 2, 7);
    }

    #[test]
    fn layout_when_the_pattern_fills_the_sequence() {
        layout_case(2, 1, 1);
        layout_case(1, 4, 4);
    }

    #[test]
    fn write_sample_reports_the_length_it_wrote() {
        let task = CopyTask::new(2, 1, 6).unwrap();
        let mut rng = seeded(3, Stream::Other, 1);
        let mut inputs = vec![0.0f64; task.steps() * task.input_width()];
        let mut targets = vec![0.0f64; task.steps() * task.output_width()];
        for _ in 0..50 {
            let len = task.write_sample(&mut rng, &mut inputs, &mut targets);
            assert!((1..=6).contains(&len));
            check_layout(&task, len, &inputs, &targets);
        }
    }

    #[test]
    #[should_panic(expected = "copy task sample inputs")]
    fn write_sample_rejects_a_short_buffer() {
        let task = CopyTask::default();
        let mut rng = seeded(0, Stream::Other, 0);
        let mut inputs = vec![0.0f32; 3];
        let mut targets = vec![0.0f32; task.steps()];
        task.write_sample(&mut rng, &mut inputs, &mut targets);
    }
}
