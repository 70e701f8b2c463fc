//! # rtrl-cells
//!
//! The recurrent cells of the `rtrl` workspace, each with analytic
//! derivatives for every estimator in `rtrl-core`, `rtrl-snap` and
//! `rtrl-lora`: [`Gru`], [`Lstm`] and the plain tanh [`Rnn`].
//!
//! Row-vector convention (`x·W`, `h·R`), no biases unless asked for, and
//! the specification's flat parameter order:
//!
//! | cell | blocks |
//! | --- | --- |
//! | GRU | `W_r, W_z, W_h, R_r, R_z, R_h, [b_r, b_z, b_h], V` |
//! | LSTM | `W_i, W_o, W_f, W_z, R_i, R_o, R_f, R_z, [b_i, b_o, b_f, b_z], V` |
//! | RNN | `W, R, [b], V` |
//!
//! Recurrent matrices can be sparse (`recurrent_density`), input and
//! readout matrices too (`inout_density`); masked entries are exact zeros
//! and not parameters.
//!
//! Not here: the readout's loss and training (see `rtrl-core`), tasks.
//!
//! ```
//! use std::sync::Arc;
//! use rtrl_cells::{build, CellConfig, CellKind};
//! use rtrl_core::{Cell, Estimator, Rtrl};
//!
//! let config = CellConfig::new(CellKind::Gru, 3, 8, 1);
//! let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
//! let params = cell.layout().init::<f64>(0);
//! let mut rtrl = Rtrl::new(cell.clone());
//! let h = rtrl.forward(&params, &[1.0, 0.0, 0.0]).to_vec();
//! assert_eq!(h.len(), 8);
//! ```

mod common;
mod gru;
mod lstm;
mod rnn;

use std::str::FromStr;
use std::sync::Arc;

use rtrl_core::error::check_size;
use rtrl_core::{Cell, Result, Scalar, Sparsity};

pub use gru::Gru;
pub use lstm::Lstm;
pub use rnn::Rnn;

/// Which cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Gated recurrent unit (update gate z, reset gate r).
    Gru,
    /// Long short-term memory; its state is `(h, c)`.
    Lstm,
    /// `h' = tanh(x·W + h·R)`.
    Rnn,
}

impl CellKind {
    /// Lower-case name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Gru => "gru",
            CellKind::Lstm => "lstm",
            CellKind::Rnn => "rnn",
        }
    }

    /// Number of gates (pre-activation vectors).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
            CellKind::Rnn => 1,
        }
    }
}

impl FromStr for CellKind {
    type Err = rtrl_core::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "gru" => Ok(CellKind::Gru),
            "lstm" => Ok(CellKind::Lstm),
            "rnn" | "tanh" => Ok(CellKind::Rnn),
            _ => Err(rtrl_core::Error::Unsupported(format!(
                "unknown cell '{s}'; use gru, lstm or rnn"
            ))),
        }
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sizes, biases and sparsity of a cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellConfig {
    /// Which cell.
    pub kind: CellKind,
    /// Input width `m` (≥ 1).
    pub input: usize,
    /// Hidden units `n` (≥ 1).
    pub hidden: usize,
    /// Readout width (≥ 1).
    pub outputs: usize,
    /// One bias vector per gate.
    pub bias: bool,
    /// Densities and the seed of the masks.
    pub sparsity: Sparsity,
}

impl CellConfig {
    /// A dense cell without biases.
    pub fn new(kind: CellKind, input: usize, hidden: usize, outputs: usize) -> Self {
        CellConfig {
            kind,
            input,
            hidden,
            outputs,
            bias: false,
            sparsity: Sparsity::dense(),
        }
    }

    /// Checks sizes and densities.
    pub fn validate(&self) -> Result<()> {
        check_size("input size", self.input)?;
        check_size("hidden size", self.hidden)?;
        check_size("output size", self.outputs)?;
        rtrl_core::error::check_density(
            "recurrent density",
            self.sparsity.recurrent_density,
        )?;
        rtrl_core::error::check_density(
            "input/output density",
            self.sparsity.inout_density,
        )?;
        Ok(())
    }
}

/// Builds the cell `config` describes.
pub fn build<T: Scalar>(config: &CellConfig) -> Result<Arc<dyn Cell<T>>> {
    config.validate()?;
    Ok(match config.kind {
        CellKind::Gru => Arc::new(Gru::new(config)?),
        CellKind::Lstm => Arc::new(Lstm::new(config)?),
        CellKind::Rnn => Arc::new(Rnn::new(config)?),
    })
}
