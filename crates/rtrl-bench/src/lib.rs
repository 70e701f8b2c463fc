//! # rtrl-bench
//!
//! The experiment harness of the `rtrl` workspace and the library behind
//! the `rtrl` command line: it turns one set of settings into one trained
//! network and a loss curve on the copy task.
//!
//! - [`experiment`]: [`RunConfig`] (every setting, with the thesis's
//!   defaults), [`run`] (build the cell, the estimators, the readout, the
//!   optimizer and the copy-task streams, then train epoch by epoch),
//!   [`EpochRecord`] (one row of the loss curve) and [`RunSummary`];
//!   [`jacobian_size`] counts an estimator's influence storage without
//!   training.
//! - [`log`]: [`CsvLog`], a loss-curve CSV that appears at its path only
//!   once the run has completed.
//! - [`cli`]: what the `rtrl` and `cargo xtask` command lines share.
//! - [`checkpoints`]: the weights a run starts from (`--init-from`) and
//!   the checkpoints it writes (`--save`, `--save-merged`).
//!
//! Not here: cells, estimators and the trainer (`rtrl-core`,
//! `rtrl-cells`, `rtrl-snap`, `rtrl-lora`), the task (`rtrl-tasks`), and
//! the thesis tables and figures (`xtask`). The library prints and logs
//! nothing; progress comes back through a callback.
//!
//! # Example
//!
//! ```
//! use rtrl_bench::{run, Algo, RunConfig};
//!
//! let config = RunConfig { algo: Algo::Rtrl, hidden: 4, epochs: 5, ..RunConfig::default() };
//! let mut curve = Vec::new();
//! let summary = run(&config, &mut |record| curve.push(record.train_loss)).unwrap();
//! assert_eq!(curve.len(), 5);
//! assert!(summary.final_val_loss.is_finite());
//! ```

pub mod checkpoints;
pub mod cli;
pub mod experiment;
pub mod log;

pub use experiment::{
    build_estimators, jacobian_size, run, Algo, EpochRecord, EstimatorSetup,
    JacobianSize, LoraReadout, OptimizerKind, RunConfig, RunError, RunSummary,
    DIVERGED_LOSS, TAIL_EPOCHS,
};
pub use log::CsvLog;
