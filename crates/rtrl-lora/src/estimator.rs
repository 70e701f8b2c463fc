//! RTRL over the LoRA factors of a frozen cell.

use std::sync::Arc;

use faer::Mat;
use rtrl_core::kernel::{propagate_with, Diagonal};
use rtrl_core::{
    Cell, CellShape, Error, Estimator, GateJacobian, Result, Scalar, StateJacobian,
    StepCache,
};

use crate::layout::{merge, LoraBlock, LoraConfig, LoraLayout};

/// Exact RTRL over the LoRA factors `(A, B)` of every core matrix, with
/// the base `M` frozen.
///
/// The trainable vector `theta` is the factor vector of a [`LoraLayout`];
/// each step runs the cell at the effective weights
/// `M + (α/r)·B·A` (recomputed from `theta`, `Σ rows·cols·r`
/// multiply-adds) and carries the influence matrix over the factors,
///
/// ```text
/// J_t = I_t + D_t · J_{t−1}        (|s| × P_lora,  P_lora = Σ r (rows + cols))
/// ∇_factors L_t = (∂L_t/∂h_t) · J^h_t
/// ```
///
/// `D_t` is the cell's state Jacobian at the effective weights. The
/// immediate Jacobian is never formed: with `G_g[c, :] = ∂s'/∂a_g[c]` (the
/// cell's gate Jacobian) and `u` the block's source vector,
///
/// ```text
/// ∂s'/∂A[j, c] = (α/r) · (u·B)[j] · G_g[c, :]          (A[j, c] feeds unit c only)
/// ∂s'/∂B[k, j] = u[k] · w_j,   w_j = (α/r) Σ_c A[j, c] · G_g[c, :]
/// ```
///
/// # Cost
///
/// Per step, `2 n |s| P_lora` flops for the propagation and
/// `O(|s| · Σ r (rows + cols))` for the immediate Jacobian of unit-wise
/// gates. `J` is stored transposed (`P_lora × |s|`) like
/// [`rtrl_core::Rtrl`], cut into one contiguous column-major matrix per
/// LoRA block (its rows `Bᵀ`, then `Aᵀ`, an order that makes the immediate
/// Jacobian's writes contiguous). Block by block, while its rows are in
/// cache, a step computes `Jᵀ_{t−1}[:, h] · (∂s'/∂h)` with the LSTM's
/// diagonal `c` terms fused into the product (`rtrl_core::kernel`), adds
/// the immediate Jacobian and takes the gradient entries; the gradient is
/// scattered back to the factor order once per step.
///
/// A sparse base keeps its mask: the update only touches kept entries, so
/// `u·B` and `w_j` sum over kept entries only (`O(rows · cols · r)` per
/// block and step, and `O(rows · cols · r · |s|)` for a block that feeds a
/// dense gate).
///
/// Nothing is allocated after construction.
pub struct LoraRtrl<T: Scalar> {
    cell: Arc<dyn Cell<T>>,
    shape: CellShape,
    lora: LoraLayout,
    base: Vec<T>,
    effective: Vec<T>,
    factors: Vec<T>,
    state: Vec<T>,
    next: Vec<T>,
    cache: StepCache<T>,
    d: StateJacobian<T>,
    gates: GateJacobian<T>,
    /// Per LoRA block, its rows of `Jᵀ` (`Bᵀ` then `Aᵀ`, column-major).
    j: Vec<Mat<T>>,
    /// The successor of `j`.
    j_next: Vec<Mat<T>>,
    fresh: bool,
    external: Vec<usize>,
    ub: Vec<T>,
    ub_offsets: Vec<usize>,
    acc: Vec<T>,
}

impl<T: Scalar> LoraRtrl<T> {
    /// LoRA-RTRL for `cell` around the frozen `base`, the core part of
    /// the cell's flat vector (its first
    /// [`core_len`](rtrl_core::ParamLayout::core_len) entries; masked
    /// entries are set to zero).
    ///
    /// # Errors
    /// A `base` of the wrong length, or a rank of zero or a scale that is
    /// not finite and positive in `config`.
    pub fn new(
        cell: Arc<dyn Cell<T>>,
        mut base: Vec<T>,
        config: LoraConfig,
    ) -> Result<Self> {
        let layout = cell.layout();
        if base.len() != layout.core_len() {
            return Err(Error::Shape {
                what: "LoRA base (the core part of the flat vector)".into(),
                expected: layout.core_len().to_string(),
                got: base.len().to_string(),
            });
        }
        let lora = LoraLayout::new(layout, &config)?;

        // Masked entries are not parameters: exact zeros in the base.
        for block in layout.core_blocks() {
            if let Some(mask) = &block.mask {
                let entries = &mut base[block.offset..block.offset + block.len()];
                for (value, &keep) in entries.iter_mut().zip(mask) {
                    if !keep {
                        *value = T::zero();
                    }
                }
            }
        }

        // Internal row order of J: per block, Bᵀ (j-major) then Aᵀ
        // (c-major); `external` maps each row to its factor index.
        let mut external = vec![0; lora.len()];
        let mut ub_offsets = Vec::with_capacity(lora.blocks().len() + 1);
        let mut ub_len = 0;
        for block in lora.blocks() {
            let (rows, cols, rank) = (block.rows, block.cols, block.rank);
            for j in 0..rank {
                for k in 0..rows {
                    external[block.b_offset + j * rows + k] =
                        block.b_offset + k * rank + j;
                }
            }
            for c in 0..cols {
                for j in 0..rank {
                    external[block.a_offset + c * rank + j] =
                        block.a_offset + j * cols + c;
                }
            }
            ub_offsets.push(ub_len);
            ub_len += if block.mask.is_some() { cols * rank } else { rank };
        }
        ub_offsets.push(ub_len);

        let shape = cell.shape();
        let p = lora.len();
        Ok(LoraRtrl {
            effective: base.clone(),
            factors: vec![T::zero(); p],
            state: vec![T::zero(); shape.state],
            next: vec![T::zero(); shape.state],
            cache: cell.new_cache(),
            d: StateJacobian::new(shape),
            gates: GateJacobian::new(shape, cell.dense_gates()),
            j: lora
                .blocks()
                .iter()
                .map(|b| Mat::zeros(block_len(b), shape.state))
                .collect(),
            j_next: lora
                .blocks()
                .iter()
                .map(|b| Mat::zeros(block_len(b), shape.state))
                .collect(),
            fresh: true,
            external,
            ub: vec![T::zero(); ub_len],
            ub_offsets,
            acc: vec![T::zero(); p],
            base,
            lora,
            shape,
            cell,
        })
    }

    /// The factor layout.
    pub fn lora(&self) -> &LoraLayout {
        &self.lora
    }

    /// The frozen base (core part of the flat vector).
    pub fn base(&self) -> &[T] {
        &self.base
    }

    /// The effective core weights of the last forward step.
    pub fn effective(&self) -> &[T] {
        &self.effective
    }

    /// The cell this estimator follows.
    pub fn cell(&self) -> &Arc<dyn Cell<T>> {
        &self.cell
    }

    /// The influence matrix `J_t` (`|s| × P_lora`, columns in factor
    /// order), copied out for inspection.
    pub fn influence(&self) -> Mat<T> {
        let mut out = Mat::zeros(self.shape.state, self.lora.len());
        for (block, j) in self.lora.blocks().iter().zip(&self.j) {
            for i in 0..j.nrows() {
                let factor = self.external[block.b_offset + i];
                for r in 0..self.shape.state {
                    out[(r, factor)] = j[(i, r)];
                }
            }
        }
        out
    }
}

/// Rows of one LoRA block in `Jᵀ`: `Bᵀ` (`r · rows`), then `Aᵀ`
/// (`r · cols`).
fn block_len(block: &LoraBlock) -> usize {
    block.rank * (block.rows + block.cols)
}

/// `(α/r)·(u·B)` of one block into `ub`: one `r`-vector for a dense
/// block; for a masked block one per column `c` (`cols × r`), summing
/// over the rows `k` that keep entry `(k, c)`.
fn source_times_b<T: Scalar>(block: &LoraBlock, u: &[T], b: &[T], ub: &mut [T]) {
    let rank = block.rank;
    let scale = T::from_f64(block.scale);
    ub.fill(T::zero());
    for (k, &uk) in u.iter().enumerate() {
        let b_k = &b[k * rank..(k + 1) * rank];
        match &block.mask {
            None => {
                for (v, &bkj) in ub.iter_mut().zip(b_k) {
                    *v += uk * bkj;
                }
            }
            Some(mask) => {
                for c in (0..block.cols).filter(|&c| mask[k * block.cols + c]) {
                    for (v, &bkj) in ub[c * rank..(c + 1) * rank].iter_mut().zip(b_k) {
                        *v += uk * bkj;
                    }
                }
            }
        }
    }
    for v in ub.iter_mut() {
        *v *= scale;
    }
}

/// `Σ_i x[i]·y[i]` with eight independent partial sums, so that the
/// loop vectorises (a single running sum is a chain of dependent adds).
#[inline]
fn dot<T: Scalar>(x: &[T], y: &[T]) -> T {
    const LANES: usize = 8;
    let split = x.len().min(y.len()) / LANES * LANES;
    let mut partial = [T::zero(); LANES];
    for (xs, ys) in x[..split].chunks_exact(LANES).zip(y[..split].chunks_exact(LANES)) {
        for lane in 0..LANES {
            partial[lane] += xs[lane] * ys[lane];
        }
    }
    let tail: T = x[split..].iter().zip(&y[split..]).map(|(&a, &b)| a * b).sum();
    partial.iter().copied().sum::<T>() + tail
}

/// Adds one block's immediate Jacobian to column `r` of its rows of `Jᵀ`
/// (`col`, in the internal order: `Bᵀ[j, k]` at `j·rows + k`, then
/// `Aᵀ[c, j]` at `rows·r + c·r + j`).
///
/// `u` is the block's source vector, `a` its `A` (factor order), `ub`
/// its `(α/r)·(u·B)` from [`source_times_b`].
fn add_immediate_column<T: Scalar>(
    block: &LoraBlock,
    r: usize,
    u: &[T],
    a: &[T],
    ub: &[T],
    gates: &GateJacobian<T>,
    col: &mut [T],
) {
    let (rows, cols, rank) = (block.rows, block.cols, block.rank);
    let scale = T::from_f64(block.scale);
    let (bt, at) = col.split_at_mut(rows * rank);
    let ub_at = |c: usize| match block.mask {
        None => &ub[..rank],
        Some(_) => &ub[c * rank..(c + 1) * rank],
    };

    match &gates.dense[block.gate] {
        None => {
            // A unit-wise gate: row r depends on unit c = r mod n only,
            // through g = ∂s'[r]/∂a_g[c].
            let g = gates.diag[block.gate * gates.state + r];
            if g == T::zero() {
                return;
            }
            let c = r % gates.hidden;

            // A[j, c]: (α/r)·(u·B)[j] · g.
            for (d, &v) in at[c * rank..(c + 1) * rank].iter_mut().zip(ub_at(c)) {
                *d += v * g;
            }

            // B[k, j]: u[k] · (α/r)·A[j, c]·g, on the rows k keeping (k, c).
            for j in 0..rank {
                let w = scale * a[j * cols + c] * g;
                let dst = &mut bt[j * rows..(j + 1) * rows];
                match &block.mask {
                    None => {
                        for (d, &uk) in dst.iter_mut().zip(u) {
                            *d += w * uk;
                        }
                    }
                    Some(mask) => {
                        for k in (0..rows).filter(|&k| mask[k * cols + c]) {
                            dst[k] += w * u[k];
                        }
                    }
                }
            }
        }
        Some(dense) => {
            // A dense gate: every unit c reaches row r through
            // G[c, r] = ∂s'[r]/∂a_g[c].
            let g = &dense.col_as_slice(r)[..cols];

            // A[j, c]: (α/r)·(u·B)[j] · G[c, r].
            for (c, &gc) in g.iter().enumerate() {
                for (d, &v) in at[c * rank..(c + 1) * rank].iter_mut().zip(ub_at(c)) {
                    *d += v * gc;
                }
            }

            // B[k, j]: u[k] · (α/r) Σ_c A[j, c]·G[c, r], the sum over the
            // kept entries (k, c) for a masked block.
            for j in 0..rank {
                let a_j = &a[j * cols..(j + 1) * cols];
                let dst = &mut bt[j * rows..(j + 1) * rows];
                match &block.mask {
                    None => {
                        let w = scale * dot(a_j, g);
                        for (d, &uk) in dst.iter_mut().zip(u) {
                            *d += w * uk;
                        }
                    }
                    Some(mask) => {
                        for (k, d) in dst.iter_mut().enumerate() {
                            let keep = &mask[k * cols..(k + 1) * cols];
                            let mut sum = T::zero();
                            for c in (0..cols).filter(|&c| keep[c]) {
                                sum += a_j[c] * g[c];
                            }
                            *d += u[k] * scale * sum;
                        }
                    }
                }
            }
        }
    }
}

impl<T: Scalar> Estimator<T> for LoraRtrl<T> {
    fn name(&self) -> String {
        let config = self.lora.config();
        format!("LoRA-RTRL (r = {}, {})", config.rank_input, config.rank_recurrent)
    }

    fn num_params(&self) -> usize {
        self.lora.len()
    }

    fn hidden(&self) -> usize {
        self.shape.hidden
    }

    fn reset(&mut self) {
        self.state.fill(T::zero());
        self.fresh = true;
    }

    /// Merges the factors into the effective weights, then steps the cell.
    ///
    /// # Panics
    /// If `theta` is not a factor vector or `x` has the wrong width.
    fn forward(&mut self, theta: &[T], x: &[T]) -> &[T] {
        // The factors of this step are kept for the derivatives.
        self.factors.copy_from_slice(theta);
        merge(&self.lora, &self.base, theta, &mut self.effective);
        self.cell.forward(
            &self.effective,
            &self.state,
            x,
            &mut self.cache,
            &mut self.next,
        );
        std::mem::swap(&mut self.state, &mut self.next);
        &self.state[..self.shape.hidden]
    }

    /// Updates `J` with the step just taken (at the factors and effective
    /// weights of that [`forward`](Estimator::forward); `theta` is not
    /// read again) and adds `(∂L_t/∂h_t) · J^h_t` to `grad`.
    fn backward(&mut self, _theta: &[T], dl_dh: &[T], grad: &mut [T]) -> bool {
        let (n, s) = (self.shape.hidden, self.shape.state);
        let offsets = self.cell.source_offsets();
        self.cell.gate_jacobian(&self.effective, &self.cache, &mut self.gates);

        // (α/r)·(u·B) of every block, once per step.
        for (index, block) in self.lora.blocks().iter().enumerate() {
            let u = &self.cache.sources[offsets[block.source]..][..block.rows];
            let b = &self.factors[block.b_offset..][..block.rows * block.rank];
            let ub = &mut self.ub[self.ub_offsets[index]..self.ub_offsets[index + 1]];
            source_times_b(block, u, b, ub);
        }

        // Block by block, while the block's rows of J are in cache:
        // propagate them, add the block's immediate Jacobian, take their
        // gradient entries.
        let carried = !self.fresh;
        if carried {
            self.cell.state_jacobian(&self.effective, &self.cache, &mut self.d);
        }
        self.acc.fill(T::zero());
        for (index, block) in self.lora.blocks().iter().enumerate() {
            // The block's rows of Jᵀ: Bᵀ, then Aᵀ.
            let (old, next) = (&self.j[index], &mut self.j_next[index]);

            // Jᵀ_t = Jᵀ_{t−1}[:, h] · (∂s'/∂h), and for an LSTM the unit-wise
            // c columns in the same pass:
            // Jᵀ_t[:, r] += D[r, n + r mod n] · Jᵀ_{t−1}[:, n + r mod n].
            if carried {
                let diagonal = (s > n).then(|| Diagonal {
                    source: old.as_ref().subcols(n, s - n),
                    scale: &self.d.diag,
                });
                propagate_with(
                    next.as_mut(),
                    old.as_ref().subcols(0, n),
                    self.d.dh.as_ref(),
                    diagonal,
                );
            } else {
                next.fill(T::zero());
            }

            // The block's immediate Jacobian and ∇ L_t = (∂L_t/∂h_t) · J^h_t,
            // one column r of Jᵀ_t at a time.
            let u = &self.cache.sources[offsets[block.source]..][..block.rows];
            let a = &self.factors[block.a_offset..][..block.rank * block.cols];
            let ub = &self.ub[self.ub_offsets[index]..self.ub_offsets[index + 1]];
            let acc = &mut self.acc[block.b_offset..][..block_len(block)];
            for r in 0..s {
                let col = next.col_as_slice_mut(r);
                add_immediate_column(block, r, u, a, ub, &self.gates, col);
                if r < n && dl_dh[r] != T::zero() {
                    let dl = dl_dh[r];
                    for (g, &v) in acc.iter_mut().zip(col.iter()) {
                        *g += dl * v;
                    }
                }
            }
        }
        std::mem::swap(&mut self.j, &mut self.j_next);
        self.fresh = false;

        // Back to the factor order.
        for (&factor, &g) in self.external.iter().zip(&self.acc) {
            grad[factor] += g;
        }
        true
    }

    fn jacobian_entries(&self) -> usize {
        self.lora.jacobian_entries(self.shape.hidden)
    }

    fn jacobian_bytes(&self) -> usize {
        self.shape.state * self.lora.len() * std::mem::size_of::<T>()
    }
}
