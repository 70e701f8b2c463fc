//! # rtrl-snap
//!
//! The Sparse n-step Approximation (SnAp-n) of Real-Time Recurrent
//! Learning, with an influence matrix whose storage and cost follow the
//! size of its pattern.
//!
//! - [`SnapPattern`]: which entries of `J = ∂s/∂θ` SnAp-n keeps, built from
//!   a cell's parameter layout and masks; [`jacobian_entries`] counts them
//!   without building an estimator (the thesis tables).
//! - [`Snap`]: the estimator, an [`rtrl_core::Estimator`] like
//!   [`rtrl_core::Rtrl`], for any level `n ≥ 1` and any gate-linear cell of
//!   `rtrl-cells` (GRU, LSTM, tanh RNN), dense or sparse.
//!
//! Not here: exact RTRL and BPTT (`rtrl-core`), the cells (`rtrl-cells`),
//! training loops and the command line (`rtrl-core`, `rtrl-bench`). This
//! crate logs nothing.
//!
//! ## The pattern
//!
//! Each core parameter `M[k, c]` feeds one *target unit*, the column `c`
//! of its entry. The unit graph has an edge `k → c` when some recurrent
//! matrix keeps `(k, c)`. SnAp-n keeps, for every parameter targeting `c`,
//! the rows `P_c` of the units `U_c` reachable from `c` in at most `n − 1`
//! edges (both `h` and `c` rows for an LSTM). SnAp-1 keeps one unit per
//! parameter; once `n − 1` reaches the unit graph's diameter SnAp-n is
//! exact RTRL.
//!
//! ## The update
//!
//! With `θ_c` the parameters targeting unit `c`, one step is
//!
//! ```text
//! J_t[P_c, θ_c] = I_t[P_c, θ_c] + D_t[P_c, P_c] · J_{t−1}[P_c, θ_c]
//! ∇_θ L_t       = (∂L_t/∂h_t) · J^h_t
//! ```
//!
//! with every entry outside the pattern dropped, of `I_t` and of
//! `D_t · J_{t−1}` alike. `J` lives as one dense `|P_c| × |θ_c|` block per
//! target unit; the dense `|s| × P` matrix is never formed.
//!
//! ```
//! use std::sync::Arc;
//! use rtrl_cells::{build, CellConfig, CellKind};
//! use rtrl_core::{Cell, Estimator};
//! use rtrl_snap::Snap;
//!
//! let config = CellConfig::new(CellKind::Gru, 3, 32, 1);
//! let cell: Arc<dyn Cell<f32>> = build(&config).unwrap();
//! let snap = Snap::new(cell, 1).unwrap();
//! assert_eq!(snap.name(), "SnAp-1");
//! assert_eq!(snap.jacobian_entries(), 3_360);
//! ```

mod blocks;
mod pattern;
mod snap;
mod unitwise;

pub use pattern::{jacobian_entries, SnapPattern};
pub use snap::Snap;
