//! The cell trait: one step of a recurrent core, with its derivatives.
//!
//! Every cell in this workspace is *gate-linear*: each gate `g` has a
//! pre-activation `a_g` (one entry per hidden unit) that is a sum of
//! products `u · M` of a *source* vector `u` (the input `x`, the hidden
//! state `h`, or a cell-specific vector such as `r ⊙ h`) with a parameter
//! block `M`. The new state depends on the parameters only through the
//! pre-activations. This is what lets every estimator share one
//! description of the immediate Jacobian:
//!
//! ```text
//! ∂s'/∂M[k, c] = u[k] · ∂s'/∂a_g[c]
//! ```
//!
//! so the cell reports `∂s'/∂a_g` (the [`GateJacobian`]) and the sources,
//! and never materialises `I_t` itself.

use faer::Mat;

use crate::layout::ParamLayout;
use crate::scalar::Scalar;

/// Sizes of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellShape {
    /// Input width `m`.
    pub input: usize,
    /// Hidden units `n`.
    pub hidden: usize,
    /// State length `|s|`: `n`, or `2n` for an LSTM (`h` then `c`).
    pub state: usize,
    /// Number of gates (pre-activation vectors of length `n`).
    pub gates: usize,
    /// Readout width.
    pub outputs: usize,
}

/// What a cell keeps from a forward step for its derivatives.
#[derive(Debug, Clone, Default)]
pub struct StepCache<T> {
    /// The source vectors, concatenated; see [`Cell::source_offsets`].
    pub sources: Vec<T>,
    /// Cell-private values (activations, the previous state).
    pub acts: Vec<T>,
}

/// `D_t = ∂s_t/∂s_{t−1}` in the structured form every cell here has.
///
/// The columns for `h` are dense: `dh[(k, r)] = ∂s'[r]/∂h[k]`, a
/// `hidden × state` matrix (laid out like the weight matrices, row `k`
/// for the source unit). The columns of any further state component
/// (the LSTM's `c`) act unit-wise: `∂s'[r]/∂s[n + (r mod n)] = diag[r]`,
/// and zero for every other column.
#[derive(Debug, Clone)]
pub struct StateJacobian<T> {
    /// `hidden × state`; entry `(k, r)` is `∂s'[r]/∂h[k]`.
    pub dh: Mat<T>,
    /// `state` entries (empty when the state is `h` alone).
    pub diag: Vec<T>,
    /// Scratch space a cell may use while filling `dh` (`hidden²` entries).
    pub work: Vec<T>,
}

impl<T: Scalar> StateJacobian<T> {
    /// Zeroed storage for `shape`.
    pub fn new(shape: CellShape) -> Self {
        let extra = if shape.state > shape.hidden { shape.state } else { 0 };
        StateJacobian {
            dh: Mat::zeros(shape.hidden, shape.state),
            diag: vec![T::zero(); extra],
            work: vec![T::zero(); shape.hidden * shape.hidden],
        }
    }

    /// Entry `∂s'[row]/∂s[col]`.
    pub fn entry(&self, row: usize, col: usize) -> T {
        let hidden = self.dh.nrows();
        if col < hidden {
            self.dh[(col, row)]
        } else if !self.diag.is_empty() && col - hidden == row % hidden {
            self.diag[row]
        } else {
            T::zero()
        }
    }

    /// The full `state × state` matrix `D_t` (row = new state entry).
    pub fn to_dense(&self) -> Mat<T> {
        let state = self.dh.ncols();
        Mat::from_fn(state, state, |r, c| self.entry(r, c))
    }
}

/// `∂s_t/∂a_g` for every gate, in the structured form every cell here has.
///
/// Most gates act unit-wise: `a_g[c]` moves only the entries of unit `c`
/// (`s'[c]`, and `s'[n + c]` for an LSTM). Their derivatives are in
/// `diag[g · state + r] = ∂s'[r]/∂a_g[r mod n]`. A gate whose effect
/// spreads over units (the GRU's reset gate, through `R_h`) is *dense*:
/// `dense[g]` holds a `hidden × state` matrix with entry
/// `(c, r) = ∂s'[r]/∂a_g[c]`, and its `diag` entries are unused.
#[derive(Debug, Clone)]
pub struct GateJacobian<T> {
    /// Hidden units `n`.
    pub hidden: usize,
    /// State length `|s|`.
    pub state: usize,
    /// `gates × state` unit-wise derivatives.
    pub diag: Vec<T>,
    /// Per gate, `Some(hidden × state)` for a dense gate.
    pub dense: Vec<Option<Mat<T>>>,
}

impl<T: Scalar> GateJacobian<T> {
    /// Zeroed storage for a cell with `shape` whose dense gates are flagged.
    pub fn new(shape: CellShape, dense_gates: &[bool]) -> Self {
        GateJacobian {
            hidden: shape.hidden,
            state: shape.state,
            diag: vec![T::zero(); shape.gates * shape.state],
            dense: dense_gates
                .iter()
                .map(|&d| d.then(|| Mat::zeros(shape.hidden, shape.state)))
                .collect(),
        }
    }

    /// `∂s'[row]/∂a_gate[unit]`.
    pub fn entry(&self, gate: usize, unit: usize, row: usize) -> T {
        match &self.dense[gate] {
            Some(m) => m[(unit, row)],
            None if row % self.hidden == unit => self.diag[gate * self.state + row],
            None => T::zero(),
        }
    }
}

/// One step of a recurrent core with analytic derivatives.
///
/// `params` is always the whole flat parameter vector of
/// [`Cell::layout`] (the readout included; the cell reads only its core
/// blocks). States are `|s|` long: `h`, then `c` for an LSTM.
pub trait Cell<T: Scalar>: Send + Sync {
    /// Sizes.
    fn shape(&self) -> CellShape;

    /// Blocks, masks and order of the flat parameter vector.
    fn layout(&self) -> &ParamLayout;

    /// Short lower-case name (`gru`, `lstm`, `rnn`).
    fn name(&self) -> &'static str;

    /// Offsets of the source vectors inside [`StepCache::sources`]
    /// (one more entry than there are sources).
    fn source_offsets(&self) -> &[usize];

    /// Which gates have a dense [`GateJacobian`] entry.
    fn dense_gates(&self) -> &[bool];

    /// A cache sized for this cell.
    fn new_cache(&self) -> StepCache<T>;

    /// Computes the next state from `state` and input `x`, filling `cache`.
    ///
    /// # Panics
    /// If a slice does not have the length of [`Cell::shape`].
    fn forward(
        &self,
        params: &[T],
        state: &[T],
        x: &[T],
        cache: &mut StepCache<T>,
        next: &mut [T],
    );

    /// Vector-Jacobian product of the step cached in `cache`: from
    /// `∂L/∂s'` computes `∂L/∂a_g` for every gate (`gates × hidden`,
    /// gate-major) and `∂L/∂s` (overwritten, not accumulated).
    fn backward(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        d_next: &[T],
        d_gates: &mut [T],
        d_state: &mut [T],
    );

    /// `D_t` of the cached step.
    fn state_jacobian(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        out: &mut StateJacobian<T>,
    );

    /// `∂s'/∂a_g` of the cached step for every gate.
    fn gate_jacobian(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        out: &mut GateJacobian<T>,
    );

    /// The unit-wise blocks of `D_t`: for each unit `c`, the
    /// `k × k` block (`k = |s| / n` state components) of derivatives of
    /// the components of unit `c` with respect to the components of the
    /// same unit, `out[c·k² + a·k + b] = ∂s'[a·n + c]/∂s[b·n + c]`.
    ///
    /// This is all SnAp-1 needs; cells compute it in `O(n²)` or better,
    /// without forming `D_t`. The default extracts it from
    /// [`state_jacobian`](Cell::state_jacobian) (and allocates).
    fn unit_jacobian(&self, params: &[T], cache: &StepCache<T>, out: &mut [T]) {
        let shape = self.shape();
        let (n, k) = (shape.hidden, shape.state / shape.hidden);
        let mut d = StateJacobian::new(shape);
        self.state_jacobian(params, cache, &mut d);
        for c in 0..n {
            for a in 0..k {
                for b in 0..k {
                    out[c * k * k + a * k + b] = d.entry(a * n + c, b * n + c);
                }
            }
        }
    }
}

/// Adds the gradient of every core block from the gate gradients of one
/// step: `grad[M[k, c]] += u[k] · ∂L/∂a_g[c]` over kept entries.
pub fn accumulate_block_gradients<T: Scalar>(
    layout: &ParamLayout,
    source_offsets: &[usize],
    hidden: usize,
    cache: &StepCache<T>,
    d_gates: &[T],
    grad: &mut [T],
) {
    for block in layout.core_blocks() {
        let start = source_offsets[block.source];
        let source = &cache.sources[start..start + block.rows];
        let d_gate = &d_gates[block.gate * hidden..(block.gate + 1) * hidden];
        for (k, &u) in source.iter().enumerate() {
            let row = &mut grad[block.offset + k * block.cols..][..block.cols];
            match &block.mask {
                None => {
                    for (g, &d) in row.iter_mut().zip(d_gate) {
                        *g += u * d;
                    }
                }
                Some(mask) => {
                    let mask = &mask[k * block.cols..(k + 1) * block.cols];
                    for ((g, &d), &keep) in row.iter_mut().zip(d_gate).zip(mask) {
                        if keep {
                            *g += u * d;
                        }
                    }
                }
            }
        }
    }
}
