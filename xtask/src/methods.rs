//! The estimators the thesis compares, in one list.
//!
//! Every subcommand iterates over [`METHODS`]; a new estimator is one
//! variant, one entry in the list and one arm in [`Method::configure`].

use rtrl_bench::{Algo, RunConfig};
use rtrl_cells::CellKind;

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

    /// `base` with this method's estimator and network settings: the
    /// estimator, the SnAp level and density, the LoRA ranks.
    ///
    /// # Errors
    /// [`XtaskError::Unavailable`] when the workspace does not build the
    /// estimator.
    pub fn configure(self, base: &RunConfig) -> Result<RunConfig, XtaskError> {
        let config = match self {
            Method::Bptt => RunConfig { algo: Algo::Bptt, ..base.clone() },
            Method::Rtrl => RunConfig { algo: Algo::Rtrl, ..base.clone() },
            Method::Snap1 | Method::Snap2 | Method::LoraRtrl => {
                return Err(XtaskError::Unavailable(self.label().to_string()))
            }
        };
        Ok(config)
    }
}

impl Method {
    /// [`Method::configure`] for the thesis figure: LoRA-RTRL fine-tunes
    /// the checkpoint `lora_base`.
    ///
    /// # Errors
    /// As [`Method::configure`].
    pub fn configure_for_figure(
        self,
        base: &RunConfig,
        lora_base: &std::path::Path,
    ) -> Result<RunConfig, XtaskError> {
        let config = self.configure(base)?;
        let _ = lora_base;
        Ok(config)
    }
}

/// `config`, saving its trained network as a checkpoint at `path`.
///
/// # Errors
/// [`XtaskError::Unavailable`] when the harness cannot save checkpoints.
pub fn with_save(
    config: RunConfig,
    path: &std::path::Path,
) -> Result<RunConfig, XtaskError> {
    let _ = (config, path);
    Err(XtaskError::Unavailable("checkpoints".to_string()))
}
