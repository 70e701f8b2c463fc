//! The parameter layout: named blocks in a fixed order, with masks.
//!
//! A model's parameters live in one flat vector, block after block, each
//! matrix row-major in its `(rows, cols)` shape. The core blocks (input
//! matrices `W`, recurrent matrices `R`, optional biases) come first; the
//! readout `V` comes last. A sparse block keeps a mask; its masked entries
//! stay in the flat vector as exact zeros but are not parameters: the
//! `P` parameters of the recurrent core are the kept core entries, in
//! flat order.

use rand::seq::index::sample;
use rand::Rng;

use crate::error::{check_density, Result};
use crate::rng::{seeded, Stream};
use crate::scalar::Scalar;

/// What role a block plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// An input matrix `W` (input × hidden), multiplied by the input `x`.
    Input,
    /// A recurrent matrix `R` (hidden × hidden), multiplied by a hidden vector.
    Recurrent,
    /// A bias vector (1 × hidden), multiplied by the constant 1.
    Bias,
    /// The readout `V` (outputs × hidden). Not part of the recurrent core.
    Readout,
}

/// One named matrix of the flat parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Name as in the specification (`W_r`, `R_z`, `b_h`, `V`).
    pub name: String,
    /// Role of the block.
    pub kind: BlockKind,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Offset of entry (0, 0) in the flat vector.
    pub offset: usize,
    /// Gate whose pre-activation this block feeds (core blocks only).
    pub gate: usize,
    /// Index of the cell's source vector that multiplies this block
    /// from the left (core blocks only).
    pub source: usize,
    /// Kept entries, row-major; `None` when every entry is kept.
    pub mask: Option<Vec<bool>>,
}

impl Block {
    /// Number of entries, kept or not.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the block has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether entry `(row, col)` is a parameter.
    #[inline]
    pub fn is_kept(&self, row: usize, col: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m[row * self.cols + col])
    }

    /// Number of kept entries.
    pub fn kept(&self) -> usize {
        self.mask.as_ref().map_or(self.len(), |m| m.iter().filter(|&&k| k).count())
    }

    /// Whether the block belongs to the recurrent core.
    pub fn is_core(&self) -> bool {
        self.kind != BlockKind::Readout
    }
}

/// A block's description before offsets and masks are fixed.
#[derive(Debug, Clone)]
pub struct BlockSpec {
    /// Name.
    pub name: String,
    /// Role.
    pub kind: BlockKind,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Gate fed.
    pub gate: usize,
    /// Source vector index.
    pub source: usize,
}

/// How sparse the matrices are, and the seed that picks their masks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sparsity {
    /// Fraction of each recurrent matrix kept, in (0, 1].
    pub recurrent_density: f64,
    /// Fraction of each input and readout matrix kept, in (0, 1].
    pub inout_density: f64,
    /// Seed of the masks.
    pub seed: u64,
}

impl Sparsity {
    /// Every entry kept.
    pub fn dense() -> Self {
        Sparsity { recurrent_density: 1.0, inout_density: 1.0, seed: 0 }
    }
}

impl Default for Sparsity {
    fn default() -> Self {
        Self::dense()
    }
}

/// The flat parameter vector's blocks, masks and the index of the kept
/// core entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamLayout {
    blocks: Vec<Block>,
    core_len: usize,
    len: usize,
    kept: Vec<usize>,
    column_of: Vec<u32>,
}

/// Marks a masked entry in [`ParamLayout::column_of`].
pub const MASKED: u32 = u32::MAX;

impl ParamLayout {
    /// Lays out `specs` in order (core blocks first, readout last), drawing
    /// masks for the densities in `sparsity`.
    ///
    /// A density keeps exactly `round(d · rows · cols)` entries of each
    /// matrix (at least one), chosen uniformly from the block's own
    /// random stream. Biases are never masked.
    pub fn new(specs: &[BlockSpec], sparsity: Sparsity) -> Result<Self> {
        check_density("recurrent density", sparsity.recurrent_density)?;
        check_density("input/output density", sparsity.inout_density)?;
        let mut blocks = Vec::with_capacity(specs.len());
        let mut offset = 0;
        for (index, spec) in specs.iter().enumerate() {
            let density = match spec.kind {
                BlockKind::Recurrent => sparsity.recurrent_density,
                BlockKind::Input | BlockKind::Readout => sparsity.inout_density,
                BlockKind::Bias => 1.0,
            };
            let len = spec.rows * spec.cols;
            let mask = if density < 1.0 && len > 0 {
                // Exactly round(d · len) kept entries, at least one.
                let keep = ((density * len as f64).round() as usize).clamp(1, len);
                let mut rng = seeded(sparsity.seed, Stream::Mask, index as u32);
                let mut mask = vec![false; len];
                for i in sample(&mut rng, len, keep) {
                    mask[i] = true;
                }
                Some(mask)
            } else {
                None
            };
            blocks.push(Block {
                name: spec.name.clone(),
                kind: spec.kind,
                rows: spec.rows,
                cols: spec.cols,
                offset,
                gate: spec.gate,
                source: spec.source,
                mask,
            });
            offset += len;
        }
        Self::from_blocks(blocks)
    }

    /// Builds a layout from blocks whose offsets and masks are already
    /// set (for instance read from a checkpoint).
    ///
    /// Offsets are recomputed from the order; core blocks must precede the
    /// readout.
    pub fn from_blocks(mut blocks: Vec<Block>) -> Result<Self> {
        let mut offset = 0;
        let mut seen_readout = false;
        for block in &mut blocks {
            if block.is_core() && seen_readout {
                return Err(crate::Error::Unsupported(format!(
                    "block {} follows the readout; core blocks must come first",
                    block.name
                )));
            }
            seen_readout |= !block.is_core();
            if let Some(mask) = &block.mask {
                if mask.len() != block.len() {
                    return Err(crate::Error::Shape {
                        what: format!("mask of {}", block.name),
                        expected: block.len().to_string(),
                        got: mask.len().to_string(),
                    });
                }
            }
            block.offset = offset;
            offset += block.len();
        }
        let core_len: usize = blocks.iter().filter(|b| b.is_core()).map(Block::len).sum();
        let mut kept = Vec::new();
        let mut column_of = vec![MASKED; core_len];
        for block in blocks.iter().filter(|b| b.is_core()) {
            for row in 0..block.rows {
                for col in 0..block.cols {
                    if block.is_kept(row, col) {
                        let flat = block.offset + row * block.cols + col;
                        column_of[flat] = kept.len() as u32;
                        kept.push(flat);
                    }
                }
            }
        }
        Ok(ParamLayout { blocks, core_len, len: offset, kept, column_of })
    }

    /// All blocks, in flat order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The core blocks (everything but the readout).
    pub fn core_blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.iter().filter(|b| b.is_core())
    }

    /// The block called `name`.
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The readout block, if the layout has one.
    pub fn readout(&self) -> Option<&Block> {
        self.blocks.iter().find(|b| b.kind == BlockKind::Readout)
    }

    /// Length of the flat vector, masked entries included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the layout has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length of the core part of the flat vector (it starts at 0).
    pub fn core_len(&self) -> usize {
        self.core_len
    }

    /// `P`: the number of kept core entries, the parameters an influence
    /// matrix has columns for.
    pub fn num_core_params(&self) -> usize {
        self.kept.len()
    }

    /// Flat index of each core parameter, ascending.
    pub fn kept(&self) -> &[usize] {
        &self.kept
    }

    /// For each flat core index, its parameter column, or [`MASKED`].
    pub fn column_of(&self) -> &[u32] {
        &self.column_of
    }

    /// Whether flat entry `index` is a parameter (core or readout).
    pub fn is_kept(&self, index: usize) -> bool {
        let block =
            self.blocks.iter().find(|b| index >= b.offset && index < b.offset + b.len());
        block.is_some_and(|b| {
            let local = index - b.offset;
            b.is_kept(local / b.cols, local % b.cols)
        })
    }

    /// Draws initial weights: each kept entry of a matrix uniform in
    /// `±sqrt(1 / rows)`, biases zero, masked entries zero.
    pub fn init<T: Scalar>(&self, seed: u64) -> Vec<T> {
        let mut params = vec![T::zero(); self.len];
        for (index, block) in self.blocks.iter().enumerate() {
            if block.kind == BlockKind::Bias {
                continue;
            }
            let bound = (1.0 / block.rows as f64).sqrt();
            let mut rng = seeded(seed, crate::rng::Stream::Init, index as u32);
            for row in 0..block.rows {
                for col in 0..block.cols {
                    // Draw for every entry so that masks do not shift the stream.
                    let value: f64 = rng.random_range(-bound..bound);
                    if block.is_kept(row, col) {
                        params[block.offset + row * block.cols + col] =
                            T::from_f64(value);
                    }
                }
            }
        }
        params
    }

    /// Sets every masked entry of `values` (a flat vector) to zero.
    pub fn apply_masks<T: Scalar>(&self, values: &mut [T]) {
        for block in &self.blocks {
            if let Some(mask) = &block.mask {
                let slice = &mut values[block.offset..block.offset + block.len()];
                for (v, &keep) in slice.iter_mut().zip(mask) {
                    if !keep {
                        *v = T::zero();
                    }
                }
            }
        }
    }

    /// The recurrent unit graph: `edges[k]` lists the units `c` for which
    /// some recurrent matrix keeps entry `(k, c)`, ascending.
    pub fn unit_graph(&self) -> Vec<Vec<usize>> {
        let hidden = self
            .blocks
            .iter()
            .find(|b| b.kind == BlockKind::Recurrent)
            .map_or(0, |b| b.rows);
        let mut adjacent = vec![vec![false; hidden]; hidden];
        for block in self.blocks.iter().filter(|b| b.kind == BlockKind::Recurrent) {
            for k in 0..block.rows {
                for c in 0..block.cols {
                    if block.is_kept(k, c) {
                        adjacent[k][c] = true;
                    }
                }
            }
        }
        adjacent
            .into_iter()
            .map(|row| {
                row.iter().enumerate().filter(|(_, &a)| a).map(|(c, _)| c).collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<BlockSpec> {
        vec![
            BlockSpec {
                name: "W".into(),
                kind: BlockKind::Input,
                rows: 3,
                cols: 4,
                gate: 0,
                source: 0,
            },
            BlockSpec {
                name: "R".into(),
                kind: BlockKind::Recurrent,
                rows: 4,
                cols: 4,
                gate: 0,
                source: 1,
            },
            BlockSpec {
                name: "V".into(),
                kind: BlockKind::Readout,
                rows: 2,
                cols: 4,
                gate: 0,
                source: 0,
            },
        ]
    }

    #[test]
    fn masks_keep_the_rounded_fraction() {
        let sparsity = Sparsity { recurrent_density: 0.6, inout_density: 1.0, seed: 7 };
        let layout = ParamLayout::new(&specs(), sparsity).unwrap();
        assert_eq!(layout.block("R").unwrap().kept(), 10);
        assert_eq!(layout.num_core_params(), 12 + 10);
        assert_eq!(layout.core_len(), 28);
        assert_eq!(layout.len(), 36);
        let params: Vec<f64> = layout.init(3);
        for (i, &p) in params.iter().enumerate() {
            if !layout.is_kept(i) {
                assert_eq!(p, 0.0);
            }
        }
    }

    #[test]
    fn bad_density_is_refused() {
        let sparsity = Sparsity { recurrent_density: 1.5, inout_density: 1.0, seed: 0 };
        let err = ParamLayout::new(&specs(), sparsity).unwrap_err();
        assert_eq!(err.to_string(), "recurrent density must be in (0, 1], got 1.5");
    }
}
