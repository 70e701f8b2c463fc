//! The estimators the thesis compares, in one list.
//!
//! Every subcommand iterates over [`METHODS`]; a new estimator is one
//! variant, one entry in the list and one arm in [`Method::setup`].
//!
//! The estimators are built here from the estimator crates, around the
//! same trainer, readout and copy-task streams as `rtrl_bench::run`
//! (see `harness.rs`), so that LoRA-RTRL can start from a checkpoint.

use std::sync::Arc;

use rtrl_bench::{build_estimators, Algo, EstimatorSetup, RunConfig};
use rtrl_cells::CellKind;
use rtrl_core::{Cell, Estimator, ReadoutMode};
use rtrl_lora::{init_factors, LoraConfig, LoraLayout, LoraRtrl};
use rtrl_snap::Snap;

use crate::XtaskError;

/// Recurrent density of the sparse network SnAp-2 runs on (the thesis's
/// `d = 0.6`).
pub const SNAP2_DENSITY: f64 = 0.6;

/// Rank of the LoRA factors of the input matrices `W` (the thesis's 2).
pub const LORA_RANK_INPUT: usize = 2;

/// Rank of the LoRA factors of the recurrent matrices `R` (the thesis's 8).
pub const LORA_RANK_RECURRENT: usize = 8;

/// One of the thesis's training methods, with its settings fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Back-propagation through time over the whole sequence.
    Bptt,
    /// Exact dense RTRL.
    Rtrl,
    /// SnAp-1 on the dense network.
    Snap1,
    /// SnAp-2 on a network of recurrent density [`SNAP2_DENSITY`].
    Snap2,
    /// LoRA-RTRL with ranks ([`LORA_RANK_INPUT`], [`LORA_RANK_RECURRENT`]).
    LoraRtrl,
}

/// Every method, in the thesis's legend order.
pub const METHODS: [Method; 5] =
    [Method::Bptt, Method::Rtrl, Method::Snap1, Method::Snap2, Method::LoraRtrl];

/// Both cells of the thesis, in its panel order.
pub const CELLS: [CellKind; 2] = [CellKind::Lstm, CellKind::Gru];

impl Method {
    /// The name in the thesis's legend (`SnAp-2 (d=0.6)`).
    pub fn label(self) -> &'static str {
        match self {
            Method::Bptt => "BPTT",
            Method::Rtrl => "RTRL",
            Method::Snap1 => "SnAp-1",
            Method::Snap2 => "SnAp-2 (d=0.6)",
            Method::LoraRtrl => "LoRA-RTRL",
        }
    }

    /// A short name for files and CSV columns (`snap-2`).
    pub fn slug(self) -> &'static str {
        match self {
            Method::Bptt => "bptt",
            Method::Rtrl => "rtrl",
            Method::Snap1 => "snap-1",
            Method::Snap2 => "snap-2",
            Method::LoraRtrl => "lora-rtrl",
        }
    }

    /// The method with slug `slug`.
    pub fn from_slug(slug: &str) -> Option<Method> {
        METHODS.into_iter().find(|m| m.slug() == slug)
    }

    /// Seconds per epoch of the thesis's own code (SPEC section 8: JAX,
    /// CPU, 2 cores, hidden 32, 16 × 22 steps).
    pub fn thesis_seconds(self, cell: CellKind) -> Option<f64> {
        let (gru, lstm) = match self {
            Method::Rtrl => (0.52, 2.36),
            Method::Snap1 => (0.17, 2.16),
            Method::Snap2 => (0.25, 1.43),
            Method::LoraRtrl => (0.43, 0.86),
            Method::Bptt => (0.12, 0.13),
        };
        match cell {
            CellKind::Gru => Some(gru),
            CellKind::Lstm => Some(lstm),
            CellKind::Rnn => None,
        }
    }

    /// `base` with this method's network settings: the estimator that
    /// `rtrl_bench` knows it by, and the recurrent density (SnAp-2 runs
    /// on a sparse network).
    pub fn configure(self, base: &RunConfig) -> RunConfig {
        match self {
            Method::Bptt => RunConfig { algo: Algo::Bptt, ..base.clone() },
            Method::Rtrl | Method::Snap1 | Method::LoraRtrl => {
                RunConfig { algo: Algo::Rtrl, ..base.clone() }
            }
            Method::Snap2 => RunConfig {
                algo: Algo::Rtrl,
                recurrent_density: SNAP2_DENSITY,
                ..base.clone()
            },
        }
    }

    /// The estimators of one run of this method on `cell` (one per
    /// sequence of `config.batch`), the trainable core vector and the
    /// readout mode, from the flat parameters `params` (the initial
    /// weights, or the frozen base of LoRA-RTRL).
    ///
    /// # Errors
    /// An estimator that cannot be built for `cell`.
    pub fn setup(
        self,
        config: &RunConfig,
        cell: &Arc<dyn Cell<f32>>,
        params: &[f32],
    ) -> Result<EstimatorSetup, XtaskError> {
        let failed = |e: rtrl_core::Error| XtaskError::Run {
            what: format!("building {}", self.label()),
            reason: e.to_string(),
        };
        let core = params[..cell.layout().core_len()].to_vec();
        let snap = |level: usize| -> Result<EstimatorSetup, XtaskError> {
            let mut estimators: Vec<Box<dyn Estimator<f32>>> = Vec::new();
            for _ in 0..config.batch {
                estimators
                    .push(Box::new(Snap::new(cell.clone(), level).map_err(failed)?));
            }
            Ok(EstimatorSetup {
                estimators,
                core: core.clone(),
                readout_mode: ReadoutMode::Full,
            })
        };
        match self {
            Method::Bptt | Method::Rtrl => {
                build_estimators(&self.configure(config), cell, params).map_err(|e| {
                    XtaskError::Run {
                        what: format!("building {}", self.label()),
                        reason: e.to_string(),
                    }
                })
            }
            Method::Snap1 => snap(1),
            Method::Snap2 => snap(2),
            Method::LoraRtrl => {
                // RTRL over the factors of a frozen base, rank-1 readout.
                let lora_config = LoraConfig {
                    rank_input: LORA_RANK_INPUT,
                    rank_recurrent: LORA_RANK_RECURRENT,
                    ..LoraConfig::default()
                };
                let lora =
                    LoraLayout::new(cell.layout(), &lora_config).map_err(failed)?;
                let mut estimators: Vec<Box<dyn Estimator<f32>>> = Vec::new();
                for _ in 0..config.batch {
                    let estimator =
                        LoraRtrl::new(cell.clone(), core.clone(), lora_config)
                            .map_err(failed)?;
                    estimators.push(Box::new(estimator));
                }
                Ok(EstimatorSetup {
                    estimators,
                    core: init_factors(&lora, config.seed),
                    readout_mode: ReadoutMode::LowRank { rank: 1, alpha: 1.0 },
                })
            }
        }
    }
}
