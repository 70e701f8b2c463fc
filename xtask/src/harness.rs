//! A network ready to train, built as `rtrl_bench::run` builds it (cell,
//! seeded initial weights, readout, Adam, copy-task streams) around the
//! estimators of a [`Method`], and a training loop with the same
//! validation protocol: a fixed set of 64 sequences, evaluated every 5
//! epochs and after the last one.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rtrl_bench::{RunConfig, DIVERGED_LOSS};
use rtrl_core::checkpoint::Checkpoint;
use rtrl_core::rng::Stream;
use rtrl_core::{Adam, Batch, Cell, Optimizer, Readout, Trainer, TrainerConfig};
use rtrl_tasks::CopyStream;

use crate::methods::Method;
use crate::XtaskError;

/// The least total time [`Harness::median_epoch`] times, in seconds.
pub const MIN_TIMED_SECONDS: f64 = 0.5;

/// A ready-to-train network, its batch buffer and its training stream.
pub struct Harness {
    /// The trainer (one estimator per sequence of the batch).
    pub trainer: Trainer<f32>,
    cell: Arc<dyn Cell<f32>>,
    config: RunConfig,
    batch: Batch<f32>,
    stream: CopyStream,
    /// Entries of `J^h` of one sequence's estimator.
    pub jacobian_entries: usize,
    /// Bytes of influence storage of one sequence's estimator.
    pub jacobian_bytes: usize,
}

/// What a training run reports.
#[derive(Debug, Clone)]
pub struct Trained {
    /// `(epoch, validation loss)` at every validation point.
    pub points: Vec<(usize, f64)>,
    /// Seconds of the whole run, validation included.
    pub wall_seconds: f64,
}

impl Harness {
    /// `method` on the network of `config` (whose `algo` is ignored):
    /// weights drawn from the seed, or for LoRA-RTRL the frozen base read
    /// from the checkpoint `base` when given.
    pub fn build(
        method: Method,
        config: &RunConfig,
        base: Option<&Path>,
    ) -> Result<Harness, XtaskError> {
        let what = format!("{} {}", config.model.name(), method.label());
        let failed = |reason: String| XtaskError::Run { what: what.clone(), reason };
        let config = method.configure(config);
        config.validate().map_err(|e| failed(e.to_string()))?;
        let task = config.task().map_err(|e| failed(e.to_string()))?;
        let cell: Arc<dyn Cell<f32>> = rtrl_cells::build(&config.cell_config(&task))
            .map_err(|e| failed(e.to_string()))?;
        let layout = cell.layout();
        let params = match base {
            Some(path) => Checkpoint::load(path)
                .and_then(|c| c.params_for::<f32>(&*cell))
                .map_err(|e| failed(e.to_string()))?,
            None => layout.init::<f32>(config.seed),
        };
        let setup = method.setup(&config, &cell, &params)?;

        // The readout V follows the core in the flat vector.
        let block = layout
            .readout()
            .ok_or_else(|| failed("the cell's layout has no readout".to_string()))?;
        let readout_base = params[block.offset..block.offset + block.len()].to_vec();
        let readout = Readout::new(
            block.rows,
            block.cols,
            setup.readout_mode,
            readout_base,
            block.mask.clone(),
        )
        .map_err(|e| failed(e.to_string()))?;
        let readout_values = readout.init(config.seed);
        let optimizer: Box<dyn Optimizer<f32>> =
            Box::new(Adam::<f32>::new(config.lr).map_err(|e| failed(e.to_string()))?);
        let trainer_config =
            TrainerConfig { online: config.online, ..TrainerConfig::default() };
        let trainer = Trainer::new(
            setup.estimators,
            setup.core,
            readout,
            readout_values,
            optimizer,
            trainer_config,
        )
        .map_err(|e| failed(e.to_string()))?;
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
            cell,
            config,
        })
    }

    /// Steps per sequence.
    pub fn steps(&self) -> usize {
        self.batch.steps
    }

    /// Trains one epoch (one batch) and returns its seconds, the batch's
    /// drawing excluded.
    pub fn epoch(&mut self) -> Result<f64, XtaskError> {
        self.stream.fill_batch(&mut self.batch);
        let start = Instant::now();
        let loss = self.trainer.train_batch(&self.batch).map_err(|e| self.failed(e))?;
        if !(loss.is_finite() && loss <= DIVERGED_LOSS) {
            return Err(self.failed(format!("the training loss became {loss:.3e}")));
        }
        Ok(start.elapsed().as_secs_f64())
    }

    fn failed(&self, reason: impl ToString) -> XtaskError {
        XtaskError::Run {
            what: format!("{} training", self.config.model.name()),
            reason: reason.to_string(),
        }
    }

    /// Median seconds of `repeats` epochs after `warmup` untimed ones;
    /// epochs of a millisecond or so are timed on until
    /// [`MIN_TIMED_SECONDS`] have passed (at most `50 · repeats` of them),
    /// so that the median of a cheap estimator is not one of a handful of
    /// scheduler-sized samples.
    pub fn median_epoch(
        &mut self,
        warmup: usize,
        repeats: usize,
    ) -> Result<f64, XtaskError> {
        for _ in 0..warmup {
            self.epoch()?;
        }
        let repeats = repeats.max(1);
        let mut times = Vec::with_capacity(repeats);
        let mut total = 0.0;
        while times.len() < repeats
            || (total < MIN_TIMED_SECONDS && times.len() < 50 * repeats)
        {
            let t = self.epoch()?;
            total += t;
            times.push(t);
        }
        Ok(median(&mut times))
    }

    /// Trains `config.epochs` epochs, evaluating the fixed validation set
    /// every `config.validation_every` epochs and after the last one;
    /// `progress(epoch, last validation loss)` after every epoch.
    pub fn train(
        &mut self,
        progress: &mut dyn FnMut(usize, Option<f64>),
    ) -> Result<Trained, XtaskError> {
        let start = Instant::now();
        let task = self.config.task().map_err(|e| self.failed(e))?;
        let validation = CopyStream::new(task, self.config.seed, Stream::Validation)
            .next_batch::<f32>(self.config.validation_samples);
        let mut points = Vec::new();
        let epochs = self.config.epochs;
        for epoch in 1..=epochs {
            self.epoch()?;
            let mut val = None;
            if epoch % self.config.validation_every == 0 || epoch == epochs {
                let loss =
                    self.trainer.evaluate(&validation).map_err(|e| self.failed(e))?;
                if !(loss.is_finite() && loss <= DIVERGED_LOSS) {
                    return Err(
                        self.failed(format!("the validation loss became {loss:.3e}"))
                    );
                }
                points.push((epoch, loss));
                val = Some(loss);
            }
            progress(epoch, val);
        }
        Ok(Trained { points, wall_seconds: start.elapsed().as_secs_f64() })
    }

    /// Saves the trained network (core and full readout: BPTT or RTRL)
    /// as a checkpoint at `path`.
    pub fn save(&self, path: &Path) -> Result<(), XtaskError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| XtaskError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        Checkpoint::new(
            &*self.cell,
            self.cell_sparsity(),
            self.config.seed,
            self.config.epochs,
            self.trainer.theta(),
        )
        .and_then(|c| c.save(path))
        .map_err(|e| XtaskError::Output(e.to_string()))
    }

    fn cell_sparsity(&self) -> rtrl_core::Sparsity {
        rtrl_core::Sparsity {
            recurrent_density: self.config.recurrent_density,
            inout_density: self.config.inout_density,
            seed: self.config.seed,
        }
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
        let mut harness = Harness::build(Method::Rtrl, &config, None).unwrap();
        assert_eq!(harness.steps(), 8);
        assert!(harness.median_epoch(1, 3).unwrap() >= 0.0);
        assert_eq!(harness.jacobian_entries, 3 * 54);
    }

    #[test]
    fn every_method_trains_and_lora_starts_from_a_saved_base() {
        let config = RunConfig {
            hidden: 4,
            batch: 2,
            max_len: 3,
            epochs: 6,
            ..RunConfig::default()
        };
        let dir =
            std::env::temp_dir().join(format!("xtask-harness-{}", std::process::id()));
        let base = dir.join("base.safetensors");
        let mut bptt = Harness::build(Method::Bptt, &config, None).unwrap();
        bptt.train(&mut |_, _| {}).unwrap();
        bptt.save(&base).unwrap();
        for method in crate::methods::METHODS {
            let from = (method == Method::LoraRtrl).then_some(base.as_path());
            let mut harness = Harness::build(method, &config, from).unwrap();
            let trained = harness.train(&mut |_, _| {}).unwrap();
            let epochs: Vec<usize> = trained.points.iter().map(|p| p.0).collect();
            assert_eq!(epochs, [5, 6], "{}", method.label());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn training_is_the_same_as_rtrl_bench_run() {
        // Same network, streams and validation: the same curve as the
        // harness of the `rtrl` command line, bit for bit.
        let config = RunConfig {
            hidden: 4,
            batch: 2,
            max_len: 3,
            epochs: 10,
            ..RunConfig::default()
        };
        for method in crate::methods::METHODS {
            let mut theirs = Vec::new();
            rtrl_bench::run(&method.configure(&config), &mut |r| {
                if let Some(v) = r.val_loss {
                    theirs.push((r.epoch, v));
                }
            })
            .unwrap();
            let mut harness = Harness::build(method, &config, None).unwrap();
            let ours = harness.train(&mut |_, _| {}).unwrap();
            assert_eq!(ours.points, theirs);
        }
    }
}
