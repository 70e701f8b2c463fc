//! One experiment: a network trained on the copy task with one estimator.
//!
//! [`run`] follows the thesis's protocol. An *epoch* is one batch of
//! [`RunConfig::batch`] sequences (16 in the thesis). Every run draws,
//! from its one seed and on independent random streams, the masks and
//! the initial weights (`ParamLayout::init(seed)`), the training batches
//! and a fixed validation set.
//!
//! # Validation
//!
//! The validation set is [`RunConfig::validation_samples`] sequences (64
//! by default: four batches of 16) drawn once, before training, from the
//! task's validation stream. Using the same samples at every point keeps
//! the curve free of sampling noise between points and makes runs with
//! the same seed comparable across estimators. It is evaluated after
//! epochs `k, 2k, 3k, …` (`k` = [`RunConfig::validation_every`], 5 by
//! default) and always after the last epoch, so a run of any length ends
//! with a validation loss. There is no point at epoch 0.
//!
//! # Losses
//!
//! Losses are binary cross-entropy in nats, averaged over the steps and
//! output bits of a sequence and then over the sequences (see
//! `rtrl_core::Loss`); the training loss of an epoch is measured while
//! that batch trains (with online updates, the weights move during it).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use rtrl_cells::{CellConfig, CellKind};
use rtrl_core::checkpoint::CheckpointError;
use rtrl_core::rng::Stream;
use rtrl_core::{
    Adam, Batch, Bptt, Cell, Estimator, Optimizer, Readout, ReadoutMode, Rtrl, Sgd,
    Sparsity, Trainer, TrainerConfig,
};
use rtrl_lora::{init_factors, LoraConfig, LoraLayout, LoraRtrl};
use rtrl_snap::Snap;
use rtrl_tasks::{CopyStream, CopyTask};
use serde::Serialize;
use thiserror::Error;

/// Number of final epochs whose validation points make up
/// [`RunSummary::mean_val_loss_tail`].
pub const TAIL_EPOCHS: usize = 50;

/// A mean loss above this many nats per output counts as divergence.
///
/// At chance a binary output costs `ln 2 ≈ 0.69` nats; a mean of a
/// thousand means logits in the thousands on the wrong side, which only
/// exploding weights produce. Full BPTT with a huge learning rate can sit
/// at losses of 1e29 without ever reaching NaN; this bound stops such a
/// run as diverged instead of reporting it as a result.
pub const DIVERGED_LOSS: f64 = 1e3;

/// Which gradient estimator trains the recurrent core.
///
/// Each variant is built by [`build_estimators`]; its settings (the
/// window of truncated BPTT, …) live in [`RunConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[non_exhaustive]
pub enum Algo {
    /// Back-propagation through the whole sequence; one update per
    /// sequence.
    Bptt,
    /// BPTT truncated to windows of `--window` steps; one update per
    /// window.
    Tbptt,
    /// Exact, dense real-time recurrent learning; online updates after
    /// every step.
    Rtrl,
    /// SnAp-n (level n from `--level`): RTRL with the influence kept on
    /// the units reachable in n − 1 recurrent edges; online updates after
    /// every step.
    Snap,
    /// RTRL over the LoRA factors of a frozen base (ranks from
    /// `--rank-input` and `--rank-recurrent`); online updates after every
    /// step.
    #[value(name = "lora-rtrl", alias = "lora_rtrl")]
    LoraRtrl,
}

impl Algo {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Bptt => "bptt",
            Algo::Tbptt => "tbptt",
            Algo::Rtrl => "rtrl",
            Algo::Snap => "snap",
            Algo::LoraRtrl => "lora-rtrl",
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algo {
    type Err = RunError;

    fn from_str(s: &str) -> Result<Self, RunError> {
        <Algo as clap::ValueEnum>::from_str(s, true).map_err(|_| {
            RunError::InvalidSetting {
                setting: "algo",
                value: s.to_string(),
                requirement: format!(
                    "one of {}",
                    <Algo as clap::ValueEnum>::value_variants()
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        })
    }
}

/// Which optimizer applies the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum OptimizerKind {
    /// Adam with β₁ = 0.9, β₂ = 0.999, ε = 1e-8 (the thesis's choice).
    #[default]
    Adam,
    /// Plain stochastic gradient descent.
    Sgd,
}

impl OptimizerKind {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd => "sgd",
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How LoRA-RTRL trains the readout `V`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum LoraReadout {
    /// Through its own LoRA factors of rank `--rank-readout`,
    /// `V₀` frozen.
    #[default]
    Lora,
    /// Every entry of `V`.
    Full,
}

/// Every setting of one run. [`Default`] gives the thesis's protocol:
/// a dense GRU of 32 units trained with RTRL, online, by Adam at 1e-3 on
/// batches of 16 copy-task sequences (1 bit, lengths 5 to 10) for 500
/// epochs, seed 0.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The recurrent cell.
    pub model: CellKind,
    /// The gradient estimator.
    pub algo: Algo,
    /// Apply the optimizer whenever an estimator has a gradient ready
    /// (after every step for RTRL, after every window for truncated BPTT,
    /// once per sequence for BPTT) rather than once per batch.
    pub online: bool,
    /// Hidden units `n` (≥ 1).
    pub hidden: usize,
    /// Sequences per batch, one batch per epoch (≥ 1).
    pub batch: usize,
    /// Number of epochs, that is of training batches (≥ 1).
    pub epochs: usize,
    /// Learning rate (finite, > 0).
    pub lr: f64,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Seed of the masks, the initial weights and the task's streams.
    pub seed: u64,
    /// Longest copy pattern `L_max` (≥ 1); sequences have `2·L_max + 2`
    /// steps.
    pub max_len: usize,
    /// Shortest copy pattern `L_min` in `[1, L_max]`; `None` for
    /// `max(1, L_max − 5)`.
    pub min_len: Option<usize>,
    /// Bits per pattern step (≥ 1).
    pub bits: usize,
    /// Fraction of each recurrent matrix kept, in (0, 1].
    pub recurrent_density: f64,
    /// Fraction of each input and readout matrix kept, in (0, 1].
    pub inout_density: f64,
    /// Window of truncated BPTT in steps (≥ 1); required by
    /// [`Algo::Tbptt`] and refused by the other estimators.
    pub window: Option<usize>,
    /// Level `n` of SnAp-n (≥ 1); `None` is SnAp-1. Taken by
    /// [`Algo::Snap`] and refused by the other estimators.
    pub level: Option<usize>,
    /// One bias vector per gate (the thesis has none).
    pub bias: bool,
    /// Evaluate the validation set every this many epochs (≥ 1).
    pub validation_every: usize,
    /// Size of the fixed validation set, in sequences (≥ 1).
    pub validation_samples: usize,
    /// Ranks and scale `α` of LoRA-RTRL's factors ([`Algo::LoraRtrl`]).
    pub lora: LoraConfig,
    /// How LoRA-RTRL trains the readout.
    pub lora_readout: LoraReadout,
    /// Rank of the readout's factors for [`LoraReadout::Lora`] (≥ 1).
    pub rank_readout: usize,
    /// Start from the weights in this file (a checkpoint, or a `.npz`
    /// with a flat `params` array) instead of `ParamLayout::init(seed)`;
    /// for LoRA-RTRL, the frozen base. See [`crate::checkpoints`].
    pub init_from: Option<PathBuf>,
    /// Write a checkpoint of the trained network here at the end.
    pub save: Option<PathBuf>,
    /// LoRA-RTRL only: merge the factors into the base and write a plain
    /// checkpoint here at the end.
    pub save_merged: Option<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: CellKind::Gru,
            algo: Algo::Rtrl,
            online: true,
            hidden: 32,
            batch: 16,
            epochs: 500,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            seed: 0,
            max_len: CopyTask::DEFAULT_MAX_LEN,
            min_len: None,
            bits: CopyTask::DEFAULT_BITS,
            recurrent_density: 1.0,
            inout_density: 1.0,
            window: None,
            level: None,
            bias: false,
            validation_every: 5,
            validation_samples: 64,
            lora: LoraConfig::default(),
            lora_readout: LoraReadout::Lora,
            rank_readout: 1,
            init_from: None,
            save: None,
            save_merged: None,
        }
    }
}

impl RunConfig {
    /// Checks every setting; the first one out of range is reported.
    pub fn validate(&self) -> Result<(), RunError> {
        at_least_one("hidden", self.hidden)?;
        at_least_one("batch", self.batch)?;
        at_least_one("epochs", self.epochs)?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(RunError::InvalidSetting {
                setting: "lr",
                value: self.lr.to_string(),
                requirement: "a finite number greater than 0".to_string(),
            });
        }
        at_least_one("bits", self.bits)?;
        at_least_one("max-len", self.max_len)?;
        if let Some(min_len) = self.min_len {
            if min_len == 0 || min_len > self.max_len {
                return Err(RunError::InvalidSetting {
                    setting: "min-len",
                    value: min_len.to_string(),
                    requirement: format!(
                        "between 1 and the maximum length ({})",
                        self.max_len
                    ),
                });
            }
        }
        density("recurrent-density", self.recurrent_density)?;
        density("inout-density", self.inout_density)?;
        at_least_one("validation-every", self.validation_every)?;
        at_least_one("validation-samples", self.validation_samples)?;

        // LoRA's ranks and scale; merging needs factors.
        at_least_one("rank-input", self.lora.rank_input)?;
        at_least_one("rank-recurrent", self.lora.rank_recurrent)?;
        at_least_one("rank-readout", self.rank_readout)?;
        if !(self.lora.alpha.is_finite() && self.lora.alpha > 0.0) {
            return Err(RunError::InvalidSetting {
                setting: "alpha",
                value: self.lora.alpha.to_string(),
                requirement: "a finite number greater than 0".to_string(),
            });
        }
        if let (Some(save), Some(merged)) = (&self.save, &self.save_merged) {
            if save == merged {
                return Err(RunError::SamePath {
                    first: "--save",
                    second: "--save-merged",
                    path: save.display().to_string(),
                });
            }
        }
        if self.save_merged.is_some() && self.algo != Algo::LoraRtrl {
            return Err(RunError::MergeWithoutLora { algo: self.algo });
        }

        // The level belongs to SnAp alone, the window to truncated BPTT.
        match (self.algo, self.level) {
            (_, Some(0)) => {
                return Err(RunError::InvalidSetting {
                    setting: "level",
                    value: "0".to_string(),
                    requirement: "at least 1".to_string(),
                })
            }
            (Algo::Snap, _) | (_, None) => {}
            (algo, Some(_)) => return Err(RunError::LevelUnused { algo }),
        }
        match (self.algo, self.window) {
            (_, Some(0)) => Err(RunError::InvalidSetting {
                setting: "window",
                value: "0".to_string(),
                requirement: "at least 1 step".to_string(),
            }),
            (Algo::Tbptt, None) => Err(RunError::WindowRequired),
            (Algo::Tbptt, Some(_)) | (_, None) => Ok(()),
            (algo, Some(_)) => Err(RunError::WindowUnused { algo }),
        }
    }

    /// An upper estimate, in bytes, of the memory a run with these
    /// settings allocates: weights and their optimizer state, one
    /// estimator per sequence of the batch (its influence matrix, double
    /// buffered, or BPTT's tape), per-sequence gradients, and the training
    /// and validation batches. `None` when the count itself overflows.
    ///
    /// The `rtrl` command line compares it with the memory available
    /// before it allocates anything.
    pub fn memory_estimate(&self) -> Option<u64> {
        let u = |v: usize| v as u64;
        let gates = u(self.model.gates());
        let components: u64 = if self.model == CellKind::Lstm { 2 } else { 1 };
        let n = u(self.hidden);
        let state = components.checked_mul(n)?;
        let input = u(self.bits).checked_add(2)?;
        let output = u(self.bits);
        let steps = u(self.max_len).checked_mul(2)?.checked_add(2)?;

        // Core parameters P (the dense count bounds a sparse one).
        let core =
            gates.checked_mul(input.checked_add(n)?.checked_add(1)?)?.checked_mul(n)?;
        let params = core.checked_add(output.checked_mul(n)?)?;

        // Entries one sequence's estimator keeps.
        let influence = match self.algo {
            Algo::Bptt | Algo::Tbptt => {
                // The tape: per step the cell's cache and state.
                steps.checked_mul(
                    gates.checked_add(4)?.checked_mul(state)?.checked_add(input)?,
                )?
            }
            Algo::Snap if self.level.unwrap_or(1) == 1 => core.checked_mul(components)?,
            Algo::Rtrl | Algo::Snap => state.checked_mul(core)?,
            Algo::LoraRtrl => {
                let w = u(self.lora.rank_input).checked_mul(input.checked_add(n)?)?;
                let r = u(self.lora.rank_recurrent).checked_mul(n.checked_mul(2)?)?;
                state.checked_mul(gates.checked_mul(w.checked_add(r)?)?)?
            }
        };
        let per_sequence = influence.checked_mul(2)?.checked_add(params)?;

        // Batches: training and validation sequences, inputs and targets.
        let sequences = u(self.batch).checked_add(u(self.validation_samples))?;
        let data =
            sequences.checked_mul(steps)?.checked_mul(input.checked_add(output)?)?;

        let entries = u(self.batch)
            .checked_mul(per_sequence)?
            .checked_add(params.checked_mul(6)?)?
            .checked_add(data)?;
        entries.checked_mul(4)
    }

    /// The copy task these settings describe.
    pub fn task(&self) -> Result<CopyTask, RunError> {
        let min_len = self.min_len.unwrap_or(CopyTask::default_min_len(self.max_len));
        Ok(CopyTask::new(self.bits, min_len, self.max_len)?)
    }

    /// The cell for `task`: its widths, this run's sizes and masks drawn
    /// from the run's seed.
    pub fn cell_config(&self, task: &CopyTask) -> CellConfig {
        CellConfig {
            kind: self.model,
            input: task.input_width(),
            hidden: self.hidden,
            outputs: task.output_width(),
            bias: self.bias,
            sparsity: Sparsity {
                recurrent_density: self.recurrent_density,
                inout_density: self.inout_density,
                seed: self.seed,
            },
        }
    }
}

fn at_least_one(setting: &'static str, value: usize) -> Result<(), RunError> {
    if value >= 1 {
        return Ok(());
    }
    Err(RunError::InvalidSetting {
        setting,
        value: value.to_string(),
        requirement: "at least 1".to_string(),
    })
}

fn density(setting: &'static str, value: f64) -> Result<(), RunError> {
    if value > 0.0 && value <= 1.0 {
        return Ok(());
    }
    Err(RunError::InvalidSetting {
        setting,
        value: value.to_string(),
        requirement: "in (0, 1]".to_string(),
    })
}

/// One epoch of a run: a row of the loss curve.
///
/// Serialises (as a CSV row) to the columns `epoch, train_loss, val_loss,
/// elapsed_s, jacobian_entries, jacobian_bytes, updates`; `val_loss` is
/// empty when the epoch was not evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    /// Epoch, counted from 1.
    pub epoch: usize,
    /// Mean training loss of this epoch's batch.
    pub train_loss: f64,
    /// Mean loss on the validation set after this epoch, when evaluated.
    pub val_loss: Option<f64>,
    /// Seconds since training started (set-up excluded, validation
    /// included).
    pub elapsed_s: f64,
    /// Entries of `J^h` one sequence's estimator tracks (0 for BPTT).
    pub jacobian_entries: usize,
    /// Bytes of influence storage of one sequence's estimator; the batch
    /// holds [`RunConfig::batch`] of them.
    pub jacobian_bytes: usize,
    /// Optimizer steps taken so far.
    pub updates: u64,
}

/// What a completed run reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The cell (`gru`, `lstm`, `rnn`).
    pub model: String,
    /// The estimator's name with its settings (`RTRL`, `TBPTT-5`).
    pub estimator: String,
    /// Epochs trained.
    pub epochs: usize,
    /// `P`: the number of trainable core parameters.
    pub core_params: usize,
    /// Training loss of the last epoch.
    pub final_train_loss: f64,
    /// Validation loss after the last epoch.
    pub final_val_loss: f64,
    /// Mean of the validation points of the last [`TAIL_EPOCHS`] epochs
    /// (epochs `E − 49 ..= E`; all of them when the run is shorter).
    pub mean_val_loss_tail: f64,
    /// Seconds from the start of [`run`] to its end.
    pub wall_seconds: f64,
    /// Seconds spent training (validation excluded) per epoch.
    pub seconds_per_epoch: f64,
    /// Entries of `J^h` one sequence's estimator tracks.
    pub jacobian_entries: usize,
    /// Bytes of influence storage of one sequence's estimator.
    pub jacobian_bytes: usize,
    /// Optimizer steps taken.
    pub updates: u64,
}

/// What can stop a run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// A setting out of its range. `setting` is the setting's name as on
    /// the command line (`hidden`, `recurrent-density`).
    #[error("{setting} must be {requirement}, got {value}")]
    InvalidSetting {
        /// Which setting.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        requirement: String,
    },
    /// Truncated BPTT was asked for without a window.
    #[error("truncated BPTT needs a window of at least 1 step")]
    WindowRequired,
    /// A window was given to an estimator other than truncated BPTT.
    #[error("a window applies to truncated BPTT only, not to {algo}")]
    WindowUnused {
        /// The estimator asked for.
        algo: Algo,
    },
    /// A SnAp level was given to an estimator other than SnAp.
    #[error("a level applies to snap only, not to {algo}")]
    LevelUnused {
        /// The estimator asked for.
        algo: Algo,
    },
    /// The loss became NaN, infinite, or larger than [`DIVERGED_LOSS`].
    #[error(
        "training diverged: the loss became {value:.3e} at epoch {epoch}; \
         use a smaller learning rate"
    )]
    Diverged {
        /// Epoch (from 1) whose training or validation loss was not finite.
        epoch: usize,
        /// The loss.
        value: f64,
    },
    /// The log file cannot be written where it was asked for.
    #[error("cannot write the log file {path}: {reason}")]
    Log {
        /// The log's path.
        path: String,
        /// What is wrong, and what to do about it.
        reason: String,
    },
    /// A checkpoint cannot be written where it was asked for (checked
    /// before training).
    #[error("cannot write the checkpoint {path}: {reason}")]
    Output {
        /// The checkpoint's path.
        path: String,
        /// What is wrong, and what to do about it.
        reason: String,
    },
    /// Initial weights (`init_from`) that are NaN or infinite.
    #[error(
        "{path} holds a weight that is not a finite number ({value} at flat index \
         {index}); use a checkpoint of a run that did not diverge"
    )]
    InvalidWeights {
        /// The file.
        path: String,
        /// Flat index of the first bad weight (SPEC parameter order).
        index: usize,
        /// Its value.
        value: f32,
    },
    /// Two outputs of one run were given the same path.
    #[error("{first} and {second} name the same file {path}; give each its own path")]
    SamePath {
        /// The first setting.
        first: &'static str,
        /// The second setting.
        second: &'static str,
        /// The path.
        path: String,
    },
    /// An error of the model or the task set-up.
    #[error(transparent)]
    Core(#[from] rtrl_core::Error),
    /// Merged weights were asked of an estimator without LoRA factors.
    #[error("merging applies to lora-rtrl only, not to {algo}")]
    MergeWithoutLora {
        /// The estimator asked for.
        algo: Algo,
    },
    /// A checkpoint or `.npz` file could not be read or written; the
    /// message names the file.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A valid checkpoint that does not fit this run's cell.
    #[error("{path} does not fit this run: {source}")]
    CheckpointMismatch {
        /// The file.
        path: String,
        /// What does not fit.
        source: CheckpointError,
    },
}

/// The estimators of one run and the trainable values they start from.
pub struct EstimatorSetup {
    /// One estimator per sequence of a batch.
    pub estimators: Vec<Box<dyn Estimator<f32>>>,
    /// Initial core vector, [`Estimator::num_params`] long.
    pub core: Vec<f32>,
    /// How the readout is trained.
    pub readout_mode: ReadoutMode,
}

/// Builds [`RunConfig::batch`] estimators of [`RunConfig::algo`] for
/// `cell`, and the core vector they train, from the flat initial
/// parameters `params` (`cell.layout().init(seed)`).
///
/// This is the one place that maps an [`Algo`] to estimators: a new
/// estimator adds a variant and an arm here.
pub fn build_estimators(
    config: &RunConfig,
    cell: &Arc<dyn Cell<f32>>,
    params: &[f32],
) -> Result<EstimatorSetup, RunError> {
    let core = params[..cell.layout().core_len()].to_vec();

    // LoRA-RTRL trains factors around the core, which becomes its frozen
    // base; the factor layout also checks the ranks.
    let lora = match config.algo {
        Algo::LoraRtrl => Some(LoraLayout::new(cell.layout(), &config.lora)?),
        _ => None,
    };
    let one = |_: usize| -> Result<Box<dyn Estimator<f32>>, RunError> {
        Ok(match config.algo {
            Algo::Bptt => Box::new(Bptt::new(cell.clone())),
            Algo::Tbptt => Box::new(Bptt::with_window(cell.clone(), config.window)),
            Algo::Rtrl => Box::new(Rtrl::new(cell.clone())),
            Algo::Snap => Box::new(Snap::new(cell.clone(), config.level.unwrap_or(1))?),
            Algo::LoraRtrl => {
                Box::new(LoraRtrl::new(cell.clone(), core.clone(), config.lora)?)
            }
        })
    };
    let estimators = (0..config.batch).map(one).collect::<Result<_, _>>()?;
    let (core, readout_mode) = match (&lora, config.lora_readout) {
        (None, _) => (core, ReadoutMode::Full),
        (Some(lora), LoraReadout::Full) => {
            (init_factors(lora, config.seed), ReadoutMode::Full)
        }
        (Some(lora), LoraReadout::Lora) => (
            init_factors(lora, config.seed),
            ReadoutMode::LowRank { rank: config.rank_readout, alpha: config.lora.alpha },
        ),
    };
    Ok(EstimatorSetup { estimators, core, readout_mode })
}

/// The influence storage of one sequence's estimator under `config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JacobianSize {
    /// `P`: the number of core parameters of the cell (kept entries).
    pub core_params: usize,
    /// Entries of `J^h` the estimator tracks (0 for BPTT).
    pub entries: usize,
    /// Bytes of influence storage in `f32` (`J^h`, and `J^c` for an LSTM).
    pub bytes: usize,
}

/// Counts the influence storage `config` asks for without training: the
/// cell, its masks (from the seed) and one estimator are built, nothing
/// runs. `init_from` is not read: the counts depend on the shapes and
/// masks alone.
///
/// # Errors
/// As [`run`] before its first epoch: a setting out of range, or an
/// estimator that cannot be built for the cell.
pub fn jacobian_size(config: &RunConfig) -> Result<JacobianSize, RunError> {
    let config = RunConfig { batch: 1, init_from: None, ..config.clone() };
    config.validate()?;
    let task = config.task()?;
    let cell: Arc<dyn Cell<f32>> = rtrl_cells::build(&config.cell_config(&task))?;
    let params = cell.layout().init::<f32>(config.seed);
    let setup = build_estimators(&config, &cell, &params)?;
    let estimator = &setup.estimators[0];
    Ok(JacobianSize {
        core_params: cell.layout().num_core_params(),
        entries: estimator.jacobian_entries(),
        bytes: estimator.jacobian_bytes(),
    })
}

/// Trains one network as `config` says and reports every epoch to
/// `on_epoch`.
///
/// Runs in `f32`. Batches of a step run in parallel on the current rayon
/// pool; the result is bit for bit the same whatever the pool's size.
///
/// # Errors
///
/// [`RunError::InvalidSetting`], [`RunError::WindowRequired`] or
/// [`RunError::WindowUnused`] before anything is built; [`RunError::Diverged`] as soon as a training or validation
/// loss is not finite.
pub fn run(
    config: &RunConfig,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<RunSummary, RunError> {
    let start = Instant::now();
    config.validate()?;

    // The checkpoints' places, before any training.
    for path in [&config.save, &config.save_merged].into_iter().flatten() {
        crate::log::check_output_path(path).map_err(|reason| RunError::Output {
            path: path.display().to_string(),
            reason,
        })?;
    }

    // The network: masks and initial weights both come from the seed.
    let task = config.task()?;
    let cell: Arc<dyn Cell<f32>> = rtrl_cells::build(&config.cell_config(&task))?;
    let layout = cell.layout();
    let (params, prior_epochs) = match &config.init_from {
        Some(path) => {
            let weights = crate::checkpoints::load(path, &*cell)?;
            (weights.params, weights.epoch)
        }
        None => (layout.init::<f32>(config.seed), 0),
    };
    let setup = build_estimators(config, &cell, &params)?;

    // The readout V sits after the core in the flat vector.
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
    let optimizer: Box<dyn Optimizer<f32>> = match config.optimizer {
        OptimizerKind::Adam => Box::new(Adam::<f32>::new(config.lr)?),
        OptimizerKind::Sgd => Box::new(Sgd::new(config.lr)?),
    };
    let trainer_config =
        TrainerConfig { online: config.online, ..TrainerConfig::default() };
    let mut trainer = Trainer::new(
        setup.estimators,
        setup.core,
        readout,
        readout_values,
        optimizer,
        trainer_config,
    )?;

    // Independent streams: training batches, and one fixed validation set.
    let mut train_stream = CopyStream::new(task, config.seed, Stream::Train);
    let validation = CopyStream::new(task, config.seed, Stream::Validation)
        .next_batch::<f32>(config.validation_samples);
    let mut batch = Batch::<f32>::zeros(
        config.batch,
        task.steps(),
        task.input_width(),
        task.output_width(),
    );

    let jacobian_entries = trainer.estimator().jacobian_entries();
    let jacobian_bytes = trainer.estimator().jacobian_bytes();
    let mut train_seconds = 0.0;
    let mut last: Option<EpochRecord> = None;
    let mut tail = Vec::new();
    let tail_start = config.epochs.saturating_sub(TAIL_EPOCHS);
    let training_start = Instant::now();
    for epoch in 1..=config.epochs {
        // Train on the next batch of the stream.
        train_stream.fill_batch(&mut batch);
        let step_start = Instant::now();
        let train_loss = trainer.train_batch(&batch).map_err(|e| diverged(e, epoch))?;
        train_seconds += step_start.elapsed().as_secs_f64();
        check_loss(train_loss, epoch)?;

        // Validate every k epochs and after the last one.
        let val_loss = if epoch % config.validation_every == 0 || epoch == config.epochs {
            let loss = trainer.evaluate(&validation)?;
            check_loss(loss, epoch)?;
            if epoch > tail_start {
                tail.push(loss);
            }
            Some(loss)
        } else {
            None
        };

        let record = EpochRecord {
            epoch,
            train_loss,
            val_loss,
            elapsed_s: training_start.elapsed().as_secs_f64(),
            jacobian_entries,
            jacobian_bytes,
            updates: trainer.updates(),
        };
        on_epoch(&record);
        last = Some(record);
    }

    // Checkpoints of the trained network.
    let epochs = prior_epochs + config.epochs;
    if let Some(path) = &config.save {
        crate::checkpoints::save(path, config, &*cell, &params, &mut trainer, epochs)?;
    }
    if let Some(path) = &config.save_merged {
        crate::checkpoints::save_merged(
            path,
            config,
            &*cell,
            &params,
            &mut trainer,
            epochs,
        )?;
    }

    // The last epoch is always evaluated, so `tail` is never empty.
    let last = last.expect("at least one epoch");
    let estimator = trainer.estimator();
    Ok(RunSummary {
        model: config.model.name().to_string(),
        estimator: estimator.name(),
        epochs: config.epochs,
        core_params: layout.num_core_params(),
        final_train_loss: last.train_loss,
        final_val_loss: last.val_loss.unwrap_or(f64::NAN),
        mean_val_loss_tail: tail.iter().sum::<f64>() / tail.len() as f64,
        wall_seconds: start.elapsed().as_secs_f64(),
        seconds_per_epoch: train_seconds / config.epochs as f64,
        jacobian_entries,
        jacobian_bytes,
        updates: trainer.updates(),
    })
}

/// Refuses a loss that is not finite or above [`DIVERGED_LOSS`].
fn check_loss(loss: f64, epoch: usize) -> Result<(), RunError> {
    if loss.is_finite() && loss <= DIVERGED_LOSS {
        return Ok(());
    }
    Err(RunError::Diverged { epoch, value: loss })
}

/// A non-finite training loss becomes [`RunError::Diverged`] at `epoch`.
fn diverged(error: rtrl_core::Error, epoch: usize) -> RunError {
    match error {
        rtrl_core::Error::NonFinite { value, .. } => RunError::Diverged { epoch, value },
        other => RunError::Core(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(algo: Algo) -> RunConfig {
        RunConfig {
            algo,
            hidden: 3,
            batch: 2,
            epochs: 7,
            max_len: 3,
            ..RunConfig::default()
        }
    }

    #[test]
    fn defaults_are_the_thesis_protocol() {
        let config = RunConfig::default();
        assert_eq!((config.hidden, config.batch, config.epochs), (32, 16, 500));
        assert_eq!(
            (config.lr, config.optimizer, config.online),
            (1e-3, OptimizerKind::Adam, true)
        );
        let task = config.task().unwrap();
        assert_eq!((task.min_len(), task.max_len(), task.bits()), (5, 10, 1));
        config.validate().unwrap();
    }

    #[test]
    fn validation_points_fall_on_every_fifth_and_the_last_epoch() {
        let mut points = Vec::new();
        run(&small(Algo::Bptt), &mut |r| {
            if r.val_loss.is_some() {
                points.push(r.epoch)
            }
        })
        .unwrap();
        assert_eq!(points, [5, 7]);
    }

    #[test]
    fn rtrl_updates_after_every_step_and_bptt_once_per_batch() {
        let rtrl = run(&small(Algo::Rtrl), &mut |_| {}).unwrap();
        let bptt = run(&small(Algo::Bptt), &mut |_| {}).unwrap();
        // Sequences of 2·3 + 2 = 8 steps.
        assert_eq!(rtrl.updates, 7 * 8);
        assert_eq!(bptt.updates, 7);
        assert_eq!(bptt.jacobian_entries, 0);
        // GRU, input 3, hidden 3: P = 3·(3·3 + 3·3) = 54, J^h is 3 × 54.
        assert_eq!(rtrl.core_params, 54);
        assert_eq!(rtrl.jacobian_entries, 3 * 54);
    }

    #[test]
    fn truncated_bptt_updates_once_per_window() {
        let config = RunConfig { window: Some(3), ..small(Algo::Tbptt) };
        let summary = run(&config, &mut |_| {}).unwrap();
        // Windows end after steps 3 and 6; the flush adds one for 7..8.
        assert_eq!(summary.updates, 7 * 3);
        assert_eq!(summary.estimator, "TBPTT-3");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            (
                RunConfig { hidden: 0, ..RunConfig::default() },
                "hidden must be at least 1, got 0",
            ),
            (
                RunConfig { recurrent_density: 1.5, ..RunConfig::default() },
                "recurrent-density must be in (0, 1], got 1.5",
            ),
            (
                RunConfig { lr: f64::NAN, ..RunConfig::default() },
                "lr must be a finite number greater than 0, got NaN",
            ),
            (
                RunConfig { min_len: Some(9), max_len: 3, ..RunConfig::default() },
                "min-len must be between 1 and the maximum length (3), got 9",
            ),
            (
                RunConfig { algo: Algo::Tbptt, ..RunConfig::default() },
                "truncated BPTT needs a window of at least 1 step",
            ),
            (
                RunConfig { window: Some(4), ..RunConfig::default() },
                "a window applies to truncated BPTT only, not to rtrl",
            ),
            (
                RunConfig { algo: Algo::Snap, level: Some(0), ..RunConfig::default() },
                "level must be at least 1, got 0",
            ),
            (
                RunConfig { level: Some(2), ..RunConfig::default() },
                "a level applies to snap only, not to rtrl",
            ),
            (
                RunConfig {
                    algo: Algo::LoraRtrl,
                    save: Some("w.safetensors".into()),
                    save_merged: Some("w.safetensors".into()),
                    ..RunConfig::default()
                },
                "--save and --save-merged name the same file w.safetensors; give each its \
                 own path",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn algo_names_round_trip() {
        for &algo in <Algo as clap::ValueEnum>::value_variants() {
            assert_eq!(algo.name().parse::<Algo>().unwrap(), algo);
        }
        assert!("foo".parse::<Algo>().is_err());
    }
}
