//! The estimators the thesis compares, in one list.
//!
//! Every subcommand iterates over [`METHODS`]; a new estimator is one
//! variant, one entry in the list and one arm in [`Method::setup`].
//!
//! Each method is a [`RunConfig`] of `rtrl_bench` ([`Method::configure`]);
//! its estimators come from `rtrl_bench::build_estimators`, around the
//! same trainer, readout and copy-task streams as `rtrl_bench::run` (see
//! `harness.rs`).

use std::sync::Arc;

use rtrl_bench::{build_estimators, Algo, EstimatorSetup, LoraReadout, RunConfig};
use rtrl_cells::CellKind;
use rtrl_core::Cell;
use rtrl_lora::LoraConfig;

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

    /// `base` with this method's settings: the estimator `rtrl_bench`
    /// knows it by, its level or ranks, and the recurrent density (SnAp-2
    /// runs on a sparse network).
    pub fn configure(self, base: &RunConfig) -> RunConfig {
        let base = RunConfig { level: None, ..base.clone() };
        match self {
            Method::Bptt => RunConfig { algo: Algo::Bptt, ..base },
            Method::Rtrl => RunConfig { algo: Algo::Rtrl, ..base },
            Method::Snap1 => RunConfig { algo: Algo::Snap, level: Some(1), ..base },
            Method::Snap2 => RunConfig {
                algo: Algo::Snap,
                level: Some(2),
                recurrent_density: SNAP2_DENSITY,
                ..base
            },
            // RTRL over the factors of a frozen base, rank-1 readout.
            Method::LoraRtrl => RunConfig {
                algo: Algo::LoraRtrl,
                lora: LoraConfig {
                    rank_input: LORA_RANK_INPUT,
                    rank_recurrent: LORA_RANK_RECURRENT,
                    ..LoraConfig::default()
                },
                lora_readout: LoraReadout::Lora,
                rank_readout: 1,
                ..base
            },
        }
    }

    /// The estimators of one run of this method on `cell` (one per
    /// sequence of `config.batch`), the trainable core vector and the
    /// readout mode, from the flat parameters `params` (the initial
    /// weights, or the frozen base of LoRA-RTRL). `config` is already
    /// [`configure`](Method::configure)d.
    ///
    /// # Errors
    /// An estimator that cannot be built for `cell`.
    pub fn setup(
        self,
        config: &RunConfig,
        cell: &Arc<dyn Cell<f32>>,
        params: &[f32],
    ) -> Result<EstimatorSetup, XtaskError> {
        build_estimators(config, cell, params).map_err(|e| XtaskError::Run {
            what: format!("building {}", self.label()),
            reason: e.to_string(),
        })
    }
}
