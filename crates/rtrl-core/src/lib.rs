//! # rtrl-core
//!
//! The shared ground of the `rtrl` workspace: what a recurrent cell must
//! provide, what a gradient estimator does, and the two exact estimators
//! every approximation is measured against.
//!
//! - [`Scalar`]: everything runs in `f32` (training) and `f64` (checks).
//! - [`ParamLayout`]: the flat parameter vector's named blocks, in the
//!   specification's order, with masks for sparse matrices.
//! - [`Cell`]: one step of a gate-linear recurrent core, with `D_t` and
//!   the immediate Jacobian in structured form. The GRU, LSTM and tanh RNN
//!   live in `rtrl-cells`.
//! - [`Estimator`]: a step-by-step online gradient. Here: exact dense
//!   [`Rtrl`] and [`Bptt`] (full or truncated). SnAp-n lives in
//!   `rtrl-snap`, LoRA-RTRL in `rtrl-lora`.
//! - [`Trainer`]: batches in parallel, online or offline updates, with
//!   [`Adam`] or [`Sgd`], on a sigmoid or softmax readout.
//!
//! Not here: cells, tasks, the command line. This crate logs nothing.
//!
//! ## The recursion
//!
//! With state `s_t`, core parameters `θ` (`P` of them), influence matrix
//! `J_t = ∂s_t/∂θ`, `D_t = ∂s_t/∂s_{t−1}` and immediate Jacobian `I_t`:
//!
//! ```text
//! J_t = I_t + D_t · J_{t−1},        ∇_θ L_t = (∂L_t/∂h_t) · J^h_t
//! ```

pub mod bptt;
pub mod cell;
pub mod check;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod estimator;
pub mod kernel;
pub mod layout;
pub mod optim;
pub mod rng;
pub mod rtrl;
pub mod scalar;
pub mod train;

pub use bptt::Bptt;
pub use cell::{
    accumulate_block_gradients, Cell, CellShape, GateJacobian, StateJacobian, StepCache,
};
pub use data::{Batch, Loss};
pub use error::{Error, Result};
pub use estimator::Estimator;
pub use layout::{Block, BlockKind, BlockSpec, ParamLayout, Sparsity, MASKED};
pub use optim::{Adam, Optimizer, Sgd};
pub use rtrl::Rtrl;
pub use scalar::Scalar;
pub use train::{Readout, ReadoutMode, Trainer, TrainerConfig};
