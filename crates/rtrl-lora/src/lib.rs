//! # rtrl-lora
//!
//! Low-rank RTRL: fine-tune a recurrent cell online by training LoRA
//! factors of its matrices, with exact RTRL over those factors only.
//!
//! Every input and recurrent matrix `M` (rows × cols) of a frozen base
//! becomes
//!
//! ```text
//! M_eff = M + (α/r) · B · A,     B: rows × r (starts at 0),   A: r × cols (~ N(0, 0.01²))
//! ```
//!
//! with one rank for the input matrices `W` and one for the recurrent
//! matrices `R` ([`LoraConfig`], default 2 and 8, `α = 1`). The trainable
//! vector is the factor vector of a [`LoraLayout`]; [`LoraRtrl`] carries
//! the influence matrix over it,
//!
//! ```text
//! J_t = I_t + D_t · J_{t−1},        ∇ L_t = (∂L_t/∂h_t) · J^h_t,
//! ```
//!
//! where `J_t = ∂s_t/∂(A, B)` has `|s| × Σ r (rows + cols)` entries
//! instead of dense RTRL's `|s| × P` (for the thesis network, hidden 32,
//! input 3, ranks 2 and 8: 74,496 instead of 143,360 for the LSTM).
//! [`merge`] folds trained factors back into plain weights.
//!
//! What this crate is for: [`LoraRtrl`] as an
//! [`Estimator`](rtrl_core::Estimator) that `rtrl_core::Trainer` drives
//! like any other, the factor layout, its initialisation and merging.
//!
//! What it is not for: the readout (its low-rank mode lives in
//! `rtrl_core::Readout`), checkpoint files (`rtrl_core::checkpoint`), the
//! cells (`rtrl-cells`). Biases are not factored: they stay frozen in the
//! base. A sparse base stays sparse: the update is applied to kept
//! entries only.
//!
//! ```
//! use std::sync::Arc;
//! use rtrl_cells::{build, CellConfig, CellKind};
//! use rtrl_core::{Cell, Estimator};
//! use rtrl_lora::{init_factors, LoraConfig, LoraLayout, LoraRtrl};
//!
//! let cell: Arc<dyn Cell<f64>> = build(&CellConfig::new(CellKind::Gru, 3, 32, 1)).unwrap();
//! let base: Vec<f64> = cell.layout().init(0)[..cell.layout().core_len()].to_vec();
//! let config = LoraConfig::default();
//! let lora = LoraLayout::new(cell.layout(), &config).unwrap();
//! assert_eq!(lora.jacobian_entries(32), 55_872);
//!
//! let mut estimator = LoraRtrl::new(cell, base, config).unwrap();
//! let factors: Vec<f64> = init_factors(&lora, 1);
//! let mut grad = vec![0.0; lora.len()];
//! estimator.forward(&factors, &[1.0, 0.0, 0.0]);
//! estimator.backward(&factors, &[1.0; 32], &mut grad);
//! ```

mod estimator;
mod layout;

pub use estimator::LoraRtrl;
pub use layout::{init_factors, merge, LoraBlock, LoraConfig, LoraLayout};
