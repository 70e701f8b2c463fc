//! A trainer built exactly as `rtrl_bench::run` builds it, for timing
//! epochs one at a time.

use std::sync::Arc;
use std::time::Instant;

use rtrl_bench::{build_estimators, RunConfig, RunError};
use rtrl_core::rng::Stream;
use rtrl_core::{Adam, Batch, Cell, Optimizer, Readout, Trainer, TrainerConfig};
use rtrl_tasks::CopyStream;

/// A ready-to-train network, its batch buffer and its training stream.
pub struct Harness {
    /// The trainer (one estimator per sequence of the batch).
    pub trainer: Trainer<f32>,
    batch: Batch<f32>,
    stream: CopyStream,
    /// Entries of `J^h` of one sequence's estimator.
    pub jacobian_entries: usize,
    /// Bytes of influence storage of one sequence's estimator.
    pub jacobian_bytes: usize,
}

impl Harness {
    /// Builds the cell, estimators, readout, Adam and the training stream
    /// of `config`, as `rtrl_bench::run` does.
    pub fn new(config: &RunConfig) -> Result<Harness, RunError> {
        config.validate()?;
        let task = config.task()?;
        let cell: Arc<dyn Cell<f32>> = rtrl_cells::build(&config.cell_config(&task))?;
        let layout = cell.layout();
        let params = layout.init::<f32>(config.seed);
        let setup = build_estimators(config, &cell, &params)?;

        // The readout V follows the core in the flat vector.
        let block = layout.readout().ok_or_else(|| {
            rtrl_core::Error::Unsupported("the cell's layout has no readout".to_string())
        })?;
        let base = params[block.offset..block.offset + block.len()].to_vec();
        let readout = Readout::new(
            block.rows,
            block.cols,
            setup.readout_mode,
            base,
            block.mask.clone(),
        )?;
        let readout_values = readout.init(config.seed);
        let optimizer: Box<dyn Optimizer<f32>> = Box::new(Adam::<f32>::new(config.lr)?);
        let trainer_config =
            TrainerConfig { online: config.online, ..TrainerConfig::default() };
        let trainer = Trainer::new(
            setup.estimators,
            setup.core,
            readout,
            readout_values,
            optimizer,
            trainer_config,
        )?;
        let jacobian_entries = trainer.estimator().jacobian_entries();
        let jacobian_bytes = trainer.estimator().jacobian_bytes();
        Ok(Harness {
            trainer,
            batch: Batch::zeros(
                config.batch,
                task.steps(),
                task.input_width(),
                task.output_width(),
            ),
            stream: CopyStream::new(task, config.seed, Stream::Train),
            jacobian_entries,
            jacobian_bytes,
        })
    }

    /// Steps per sequence.
    pub fn steps(&self) -> usize {
        self.batch.steps
    }

    /// Trains one epoch (one batch) and returns its seconds, the batch's
    /// drawing excluded.
    pub fn epoch(&mut self) -> Result<f64, RunError> {
        self.stream.fill_batch(&mut self.batch);
        let start = Instant::now();
        self.trainer.train_batch(&self.batch)?;
        Ok(start.elapsed().as_secs_f64())
    }

    /// Median seconds of `repeats` epochs after `warmup` untimed ones.
    pub fn median_epoch(
        &mut self,
        warmup: usize,
        repeats: usize,
    ) -> Result<f64, RunError> {
        for _ in 0..warmup {
            self.epoch()?;
        }
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats.max(1) {
            times.push(self.epoch()?);
        }
        Ok(median(&mut times))
    }
}

/// The median of `values` (sorted in place); the mean of the two middle
/// values for an even count.
///
/// # Panics
/// When `values` is empty.
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        0.5 * (values[mid - 1] + values[mid])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn a_small_harness_trains() {
        let config =
            RunConfig { hidden: 3, batch: 2, max_len: 3, ..RunConfig::default() };
        let mut harness = Harness::new(&config).unwrap();
        assert_eq!(harness.steps(), 8);
        assert!(harness.median_epoch(1, 3).unwrap() >= 0.0);
        assert_eq!(harness.jacobian_entries, 3 * 54);
    }
}
