//! Where the LoRA factors of every core matrix live in the factor vector.

use rand_distr::{Distribution, Normal};
use rtrl_core::error::{check_positive, check_size};
use rtrl_core::rng::{seeded, Stream};
use rtrl_core::{BlockKind, Error, ParamLayout, Result, Scalar};

/// Ranks and scale of a LoRA factorisation.
///
/// Each core matrix `M` (rows × cols) becomes `M + (α/r)·B·A`; the input
/// matrices `W` use `rank_input`, the recurrent matrices `R` use
/// `rank_recurrent`. A rank may exceed `min(rows, cols)`: the update is
/// then no longer low-rank, but it stays a valid reparametrisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of the factors of every input matrix `W` (≥ 1).
    pub rank_input: usize,
    /// Rank `r` of the factors of every recurrent matrix `R` (≥ 1).
    pub rank_recurrent: usize,
    /// Scale `α` (finite, > 0); the update is multiplied by `α / r`.
    pub alpha: f64,
}

impl Default for LoraConfig {
    /// The thesis's setting: ranks 2 (input) and 8 (recurrent), `α = 1`.
    fn default() -> Self {
        LoraConfig { rank_input: 2, rank_recurrent: 8, alpha: 1.0 }
    }
}

impl LoraConfig {
    /// Checks that both ranks are at least one and `α` is finite and
    /// positive.
    pub fn validate(&self) -> Result<()> {
        check_size("input rank", self.rank_input)?;
        check_size("recurrent rank", self.rank_recurrent)?;
        check_positive("alpha", self.alpha)
    }

    /// The rank this configuration gives a block of `kind` (`None` for
    /// blocks that are not factored: biases and the readout).
    pub fn rank_of(&self, kind: BlockKind) -> Option<usize> {
        match kind {
            BlockKind::Input => Some(self.rank_input),
            BlockKind::Recurrent => Some(self.rank_recurrent),
            BlockKind::Bias | BlockKind::Readout => None,
        }
    }
}

/// One factored core matrix `M` (rows × cols) and its factors
/// `B` (rows × r) and `A` (r × cols).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraBlock {
    /// Name of the core block (`W_r`, `R_z`, …).
    pub name: String,
    /// Index of the block in the cell's [`ParamLayout::blocks`].
    pub index: usize,
    /// Input or recurrent.
    pub kind: BlockKind,
    /// Rows of `M` (and of `B`).
    pub rows: usize,
    /// Columns of `M` (and of `A`).
    pub cols: usize,
    /// Rank `r`.
    pub rank: usize,
    /// `α / r`, the factor in front of `B·A`.
    pub scale: f64,
    /// Gate whose pre-activation `M` feeds.
    pub gate: usize,
    /// Index of the source vector that multiplies `M` from the left.
    pub source: usize,
    /// Offset of `M[0, 0]` in the cell's flat vector.
    pub core_offset: usize,
    /// Offset of `B[0, 0]` in the factor vector (`B` is row-major).
    pub b_offset: usize,
    /// Offset of `A[0, 0]` in the factor vector (`A` is row-major).
    pub a_offset: usize,
    /// Kept entries of `M`, row-major, when `M` is sparse.
    pub mask: Option<Vec<bool>>,
}

impl LoraBlock {
    /// Number of factor entries, `r · (rows + cols)`.
    pub fn len(&self) -> usize {
        self.rank * (self.rows + self.cols)
    }

    /// Whether the block has no factor entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether entry `(row, col)` of `M` is kept.
    #[inline]
    pub fn is_kept(&self, row: usize, col: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m[row * self.cols + col])
    }
}

/// The factor vector of a cell: for every input and recurrent matrix of
/// the cell's layout, in layout order, its `B` (rows × r, row-major) then
/// its `A` (r × cols, row-major).
///
/// Biases and the readout are not factored; biases stay frozen in the
/// base. A sparse matrix keeps its mask: the update `(α/r)·B·A` is applied
/// to its kept entries only, so the network stays exactly as sparse as
/// its base.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraLayout {
    config: LoraConfig,
    blocks: Vec<LoraBlock>,
    len: usize,
    core_len: usize,
}

impl LoraLayout {
    /// The factor layout of `layout` with the ranks and scale of `config`.
    ///
    /// # Errors
    /// A rank of zero or a scale that is not finite and positive.
    pub fn new(layout: &ParamLayout, config: &LoraConfig) -> Result<Self> {
        config.validate()?;
        let mut blocks = Vec::new();
        let mut offset = 0;
        for (index, block) in layout.blocks().iter().enumerate() {
            let Some(rank) = config.rank_of(block.kind) else {
                continue;
            };

            // B first (rows × r), then A (r × cols).
            let b_offset = offset;
            let a_offset = b_offset + block.rows * rank;
            offset = a_offset + rank * block.cols;
            blocks.push(LoraBlock {
                name: block.name.clone(),
                index,
                kind: block.kind,
                rows: block.rows,
                cols: block.cols,
                rank,
                scale: config.alpha / rank as f64,
                gate: block.gate,
                source: block.source,
                core_offset: block.offset,
                b_offset,
                a_offset,
                mask: block.mask.clone(),
            });
        }
        if blocks.is_empty() {
            return Err(Error::Unsupported(
                "the layout has no input or recurrent matrix to factor".into(),
            ));
        }
        Ok(LoraLayout {
            config: *config,
            blocks,
            len: offset,
            core_len: layout.core_len(),
        })
    }

    /// The ranks and scale.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The factored blocks, in layout order.
    pub fn blocks(&self) -> &[LoraBlock] {
        &self.blocks
    }

    /// The factored block called `name`.
    pub fn block(&self, name: &str) -> Option<&LoraBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// Length of the factor vector, `Σ r · (rows + cols)`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the factor vector is empty (never, for a valid layout).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length of the core part of the cell's flat vector (the base).
    pub fn core_len(&self) -> usize {
        self.core_len
    }

    /// Entries of `J^h` that LoRA-RTRL tracks for a cell of `hidden`
    /// units: `hidden · Σ r · (rows + cols)`.
    pub fn jacobian_entries(&self, hidden: usize) -> usize {
        hidden * self.len
    }
}

/// Initial factors: every `B = 0` and every entry of `A` drawn from
/// N(0, 0.01²), block by block from
/// `seeded(seed, Stream::Lora, index)` with the block's index in the
/// cell's layout, so that the draw of one block does not depend on the
/// ranks of the others.
pub fn init_factors<T: Scalar>(lora: &LoraLayout, seed: u64) -> Vec<T> {
    let normal = Normal::new(0.0, 0.01).expect("a positive standard deviation");
    let mut factors = vec![T::zero(); lora.len()];
    for block in lora.blocks() {
        let mut rng = seeded(seed, Stream::Lora, block.index as u32);
        let a = &mut factors[block.a_offset..][..block.rank * block.cols];
        for value in a {
            *value = T::from_f64(normal.sample(&mut rng));
        }
    }
    factors
}

/// The effective weights: `out = base`, then on every factored block
/// `M_eff = M + (α/r)·B·A` on the kept entries (masked entries keep the
/// base's value, an exact zero in a well-formed sparse base).
///
/// `base` is the cell's flat vector or a prefix of it that holds the
/// whole core; entries after the core (the readout) are copied unchanged.
///
/// Cost: `Σ rows · cols · r` multiply-adds.
///
/// # Panics
/// If `factors.len() != lora.len()`, `out.len() != base.len()` or `base`
/// is shorter than the core.
pub fn merge<T: Scalar>(lora: &LoraLayout, base: &[T], factors: &[T], out: &mut [T]) {
    assert_eq!(factors.len(), lora.len(), "factor vector length");
    assert_eq!(out.len(), base.len(), "merged vector length");
    assert!(base.len() >= lora.core_len(), "the base must hold the whole core");
    out.copy_from_slice(base);
    for block in lora.blocks() {
        let (rows, cols, rank) = (block.rows, block.cols, block.rank);
        let scale = T::from_f64(block.scale);
        let b = &factors[block.b_offset..][..rows * rank];
        let a = &factors[block.a_offset..][..rank * cols];
        for k in 0..rows {
            // Row k of the update: (α/r) Σ_j B[k, j] · A[j, :].
            let row = &mut out[block.core_offset + k * cols..][..cols];
            for (j, &bkj) in b[k * rank..(k + 1) * rank].iter().enumerate() {
                let coeff = scale * bkj;
                for (m, &ajc) in row.iter_mut().zip(&a[j * cols..(j + 1) * cols]) {
                    *m += coeff * ajc;
                }
            }

            // Masked entries are not parameters: they keep the base value.
            if let Some(mask) = &block.mask {
                let base_row = &base[block.core_offset + k * cols..][..cols];
                for c in 0..cols {
                    if !mask[k * cols + c] {
                        row[c] = base_row[c];
                    }
                }
            }
        }
    }
}
