//! The SnAp-n estimator: the influence matrix kept on its pattern only.

use std::sync::Arc;

use faer::Mat;
use rtrl_core::{
    Cell, CellShape, Error, Estimator, GateJacobian, Result, Scalar, StepCache,
};

use crate::blocks::Blocks;
use crate::pattern::SnapPattern;
use crate::unitwise::UnitWise;

/// SnAp-n: RTRL with the influence matrix restricted to the SnAp-n
/// pattern ([`SnapPattern`]), stored as one dense block per target unit.
///
/// For the target unit `c` with pattern rows `P_c` (the `h` rows, and for
/// an LSTM the `c` rows, of the units `U_c` reachable from `c` in at most
/// `n − 1` edges) and parameters `θ_c` (every parameter whose entry lies in
/// column `c`), one step is
///
/// ```text
/// J_t[P_c, θ_c] = I_t[P_c, θ_c] + D_t[P_c, P_c] · J_{t−1}[P_c, θ_c]
/// ∇_θ L_t      += (∂L_t/∂h_t)[U_c] · J^h_t[U_c, θ_c]
/// ```
///
/// and every entry outside the pattern (of `I_t` and of `D_t · J_{t−1}`)
/// is dropped. Because `J_{t−1}` is zero outside the pattern, the product
/// only needs the square sub-block `D_t[P_c, P_c]`.
///
/// Cost per step beyond the cell's own forward and gate Jacobian:
/// - SnAp-1 (`U_c = {c}`): `O(P)`, from the unit-wise blocks of `D_t`
///   ([`Cell::unit_jacobian`]). Each block is a single row (two for an
///   LSTM), and the rows are stored in parameter order so that a row of a
///   weight matrix is one vector operation.
/// - SnAp-n, `n ≥ 2`: `Σ_c 2 |U_c| |P_c| q_c` flops for the block products
///   (`q_c` parameters target `c`; the LSTM's `c` columns of `D_t` enter
///   through a diagonal), plus `D_t` from [`Cell::state_jacobian`].
///
/// Memory: the pattern's entries (twice for `n ≥ 2`, which double-buffers)
/// and scratch vectors of the largest block's size, all allocated in
/// [`Snap::new`]. `forward` and `backward` allocate nothing themselves;
/// for `n ≥ 2` the first large block product on a thread makes `faer` set
/// up that thread's packing buffer, once (see [`Snap::new`]).
///
/// `theta` is the core part of the cell's flat parameter vector (its
/// first [`core_len`](rtrl_core::ParamLayout::core_len) entries); gradients
/// come back in the same layout, masked entries zero.
///
/// # Precision
/// With `n − 1` at least the unit graph's diameter the pattern covers all
/// of `J`'s support and the gradient equals RTRL's up to rounding.
pub struct Snap<T: Scalar> {
    cell: Arc<dyn Cell<T>>,
    shape: CellShape,
    pattern: SnapPattern,
    state: Vec<T>,
    next: Vec<T>,
    cache: StepCache<T>,
    gates: GateJacobian<T>,
    kernel: Kernel<T>,
    /// Whether `J_{t−1}` is zero (no step since the last reset).
    fresh: bool,
}

/// The influence storage and update of one level.
enum Kernel<T> {
    /// SnAp-1.
    UnitWise(UnitWise<T>),
    /// SnAp-n, `n ≥ 2`.
    Blocks(Box<Blocks<T>>),
}

impl<T: Scalar> Snap<T> {
    /// SnAp-`level` for `cell`.
    ///
    /// Builds the pattern, the index maps and every buffer the steps use.
    /// For levels ≥ 2 it also runs one block product of the largest size,
    /// so that `faer`'s per-thread packing buffer exists on the calling
    /// thread before the first step (a thread the estimator later moves to
    /// sets up its own on its first large product).
    ///
    /// # Errors
    /// As [`SnapPattern::new`] (`level` 0, a state that is neither `h` nor
    /// `(h, c)`, core blocks without one column per unit), and
    /// [`Error::Unsupported`] for a cell whose blocks name gates or sources
    /// it does not have.
    pub fn new(cell: Arc<dyn Cell<T>>, level: usize) -> Result<Self> {
        let shape = cell.shape();
        let layout = cell.layout();
        let pattern = SnapPattern::new(layout, shape, level)?;
        let dense_gates = cell.dense_gates().to_vec();
        let offsets = cell.source_offsets();

        // Every core block must feed a gate and read a source the cell has.
        for block in layout.core_blocks() {
            if block.gate >= dense_gates.len() || block.source + 1 >= offsets.len() {
                return Err(Error::Unsupported(format!(
                    "block {} names gate {} or source {} the cell does not have",
                    block.name, block.gate, block.source
                )));
            }
        }

        let kernel = if level == 1 {
            Kernel::UnitWise(UnitWise::new(layout, offsets, dense_gates.len(), &pattern))
        } else {
            Kernel::Blocks(Box::new(Blocks::new(
                layout,
                shape,
                offsets,
                &dense_gates,
                &pattern,
            )))
        };
        Ok(Snap {
            state: vec![T::zero(); shape.state],
            next: vec![T::zero(); shape.state],
            cache: cell.new_cache(),
            gates: GateJacobian::new(shape, &dense_gates),
            kernel,
            fresh: true,
            shape,
            pattern,
            cell,
        })
    }

    /// The pattern this estimator keeps.
    pub fn pattern(&self) -> &SnapPattern {
        &self.pattern
    }

    /// The level `n` of SnAp-n.
    pub fn level(&self) -> usize {
        self.pattern.level()
    }

    /// The cell this estimator follows.
    pub fn cell(&self) -> &Arc<dyn Cell<T>> {
        &self.cell
    }

    /// The influence matrix `J_t` (`|s| × P`, columns in kept-parameter
    /// order, as [`rtrl_core::Rtrl::influence`]) copied out for
    /// inspection: the stored entries, zero outside the pattern.
    pub fn influence(&self) -> Mat<T> {
        let mut out = Mat::zeros(self.shape.state, self.pattern.num_params());
        if !self.fresh {
            match &self.kernel {
                Kernel::UnitWise(kernel) => kernel.influence(&self.pattern, &mut out),
                Kernel::Blocks(kernel) => kernel.influence(&mut out),
            }
        }
        out
    }
}

impl<T: Scalar> Estimator<T> for Snap<T> {
    fn name(&self) -> String {
        format!("SnAp-{}", self.pattern.level())
    }

    fn num_params(&self) -> usize {
        self.cell.layout().core_len()
    }

    fn hidden(&self) -> usize {
        self.shape.hidden
    }

    fn reset(&mut self) {
        self.state.fill(T::zero());
        self.fresh = true;
    }

    fn forward(&mut self, theta: &[T], x: &[T]) -> &[T] {
        self.cell.forward(theta, &self.state, x, &mut self.cache, &mut self.next);
        std::mem::swap(&mut self.state, &mut self.next);
        &self.state[..self.shape.hidden]
    }

    fn backward(&mut self, theta: &[T], dl_dh: &[T], grad: &mut [T]) -> bool {
        // ∂s'/∂a_g of the step just taken: the factor of I_t.
        self.cell.gate_jacobian(theta, &self.cache, &mut self.gates);

        // J_t on the pattern, and (∂L_t/∂h_t) · J^h_t into grad.
        let (cell, cache, gates) = (&*self.cell, &self.cache, &self.gates);
        match &mut self.kernel {
            Kernel::UnitWise(kernel) => {
                kernel.step(cell, theta, cache, gates, self.fresh, dl_dh, grad)
            }
            Kernel::Blocks(kernel) => {
                kernel.step(cell, theta, cache, gates, self.fresh, dl_dh, grad)
            }
        }
        self.fresh = false;
        true
    }

    fn jacobian_entries(&self) -> usize {
        self.pattern.entries()
    }

    fn jacobian_bytes(&self) -> usize {
        self.pattern.stored_entries() * std::mem::size_of::<T>()
    }
}
