//! Checkpoints: a model's weights, masks, settings and LoRA factors in one
//! safetensors file, and import of flat `params` arrays from `.npz` files.
//!
//! # The file
//!
//! A checkpoint is a [safetensors] file (an 8-byte little-endian header
//! length, a JSON header, then the raw tensors) holding:
//!
//! | tensor | dtype | shape |
//! | --- | --- | --- |
//! | every block of the layout (`W_r`, …, `R_h`, `b_r`, …, `V`) | F32 | `[rows, cols]` |
//! | `mask.<block>` for every sparse block, 1 = kept | U8 | `[rows, cols]` |
//! | `lora.B.<block>`, `lora.A.<block>` for every `W` and `R` (LoRA only) | F32 | `[rows, r]`, `[r, cols]` |
//! | `lora.A.V`, `lora.B.V` for a low-rank readout (LoRA only) | F32 | `[r, hidden]`, `[outputs, r]` |
//!
//! and string metadata: `format` (`rtrl-checkpoint`), `format_version`
//! (`1`), `cell`, `input`, `hidden`, `outputs`, `bias`,
//! `recurrent_density`, `inout_density`, `mask_seed`, `init_seed`,
//! `epoch`, `blocks` (the block order with kinds, as JSON), for LoRA
//! `lora_rank_input`, `lora_rank_recurrent`, `lora_alpha`, `readout`
//! (`full` or `low-rank`), `readout_rank`, `readout_alpha`, and
//! `checksum`: FNV-1a (64 bit) over the sorted metadata and the tensors,
//! so that any changed byte is caught.
//!
//! Files are written atomically: to a temporary file in the same folder,
//! flushed to disk, then renamed over the target. Loading checks every
//! field and tensor and refuses anything that does not fit with a
//! [`CheckpointError`] whose message names the problem and the remedy.
//!
//! For a LoRA run, [`Checkpoint::params`] holds the frozen base (and the
//! readout: its frozen base `V₀` for a low-rank readout, the trained `V`
//! for a full one) and [`Checkpoint::lora`] the factors.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cell::Cell;
use crate::layout::{BlockKind, BlockSpec, ParamLayout, Sparsity};
use crate::scalar::Scalar;
use crate::train::ReadoutMode;

/// The value of the `format` metadata key.
pub const FORMAT: &str = "rtrl-checkpoint";

/// The version of the layout described in the module documentation.
pub const VERSION: u32 = 1;

/// Headers longer than this are not believed (safetensors' own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Why a checkpoint could not be written, read or used.
///
/// Every message is one line that says what does not fit and what to do.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The operating system refused a read or a write.
    #[error("{file}: {message}")]
    Io {
        /// The file.
        file: String,
        /// The system's message.
        message: String,
    },
    /// The file is not a checkpoint at all.
    #[error(
        "{file} is not an rtrl checkpoint ({reason}); pass a .safetensors file written \
         by rtrl or a .npz file with a `params` array"
    )]
    NotACheckpoint {
        /// The file.
        file: String,
        /// What gave it away.
        reason: String,
    },
    /// The file ends before its header says it should.
    #[error(
        "{file} is truncated: it has {got} bytes but its header needs {expected}; \
         the write or copy did not finish, save or copy it again"
    )]
    Truncated {
        /// The file.
        file: String,
        /// Bytes the header requires (at least).
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// The file looks like a checkpoint but its contents are damaged.
    #[error("{file} is corrupted ({reason}); save it again or use another copy")]
    Corrupted {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A format version this build does not read.
    #[error(
        "{file} has checkpoint format version {found}, this build reads version {VERSION}; \
         save it again with this build"
    )]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// The version found.
        found: String,
    },
    /// A metadata entry is missing or cannot be read.
    #[error(
        "{file}: metadata `{key}` {problem}; the file was not written by this format"
    )]
    BadMetadata {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A tensor the metadata calls for is absent.
    #[error("{file} lacks the tensor `{name}`; the file is incomplete, save it again")]
    MissingTensor {
        /// The file.
        file: String,
        /// The tensor's name.
        name: String,
    },
    /// A tensor has the wrong dtype or shape, or invalid values.
    #[error("{file}: tensor `{name}` is {found}, expected {expected}")]
    WrongTensor {
        /// The file.
        file: String,
        /// The tensor's name.
        name: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The checkpoint holds another cell than the one asked for.
    #[error(
        "the checkpoint holds a {found} model, not a {expected}; use a {found} model or \
         a checkpoint of a {expected}"
    )]
    WrongCell {
        /// The cell asked for.
        expected: String,
        /// The cell in the checkpoint.
        found: String,
    },
    /// The checkpoint's sizes differ from the model's.
    #[error(
        "the checkpoint has {what} {found}, the model has {expected}; set {what} to \
         {found} or use a checkpoint with {expected}"
    )]
    WrongSize {
        /// Which size.
        what: &'static str,
        /// The model's value.
        expected: String,
        /// The checkpoint's value.
        found: String,
    },
    /// A mask differs from the model's (another density or mask seed).
    #[error(
        "the mask of `{block}` in the checkpoint keeps {found} entries, the model's keeps \
         {expected} or other ones; build the model with recurrent density {recurrent}, \
         input/output density {inout} and mask seed {seed}"
    )]
    MaskMismatch {
        /// The block.
        block: String,
        /// Entries the model's mask keeps.
        expected: usize,
        /// Entries the checkpoint's mask keeps.
        found: usize,
        /// The checkpoint's recurrent density.
        recurrent: f64,
        /// The checkpoint's input/output density.
        inout: f64,
        /// The checkpoint's mask seed.
        seed: u64,
    },
    /// A `.npz` file whose `params` array does not fit.
    #[error("{file}: {reason}")]
    Npz {
        /// The file.
        file: String,
        /// What does not fit, and what was expected.
        reason: String,
    },
    /// The values handed to [`Checkpoint::new`] or
    /// [`Checkpoint::with_lora`] do not fit together.
    #[error("cannot build the checkpoint: {0}")]
    Inconsistent(String),
}

/// One block of the flat vector as a checkpoint records it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedBlock {
    /// Name (`W_r`, `R_z`, `b_h`, `V`).
    pub name: String,
    /// Role.
    pub kind: BlockKind,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Kept entries, row-major, for a sparse block.
    pub mask: Option<Vec<bool>>,
}

/// LoRA factors of a fine-tuning run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraState {
    /// Rank of the factors of every input matrix `W`.
    pub rank_input: usize,
    /// Rank of the factors of every recurrent matrix `R`.
    pub rank_recurrent: usize,
    /// Scale `α` of the core factors.
    pub alpha: f64,
    /// The core factors: for every `W` and `R` block in layout order, `B`
    /// (rows × r) then `A` (r × cols), both row-major.
    pub factors: Vec<f32>,
    /// How the readout was trained.
    pub readout: ReadoutMode,
    /// For a low-rank readout, its trainable values as
    /// [`Readout`](crate::Readout) orders them: `A` (r × hidden) then `B`
    /// (outputs × r). Empty for a full readout (the trained `V` is then in
    /// [`Checkpoint::params`]).
    pub readout_values: Vec<f32>,
}

/// A saved model: what it is, how it was made, its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Cell name (`gru`, `lstm`, `rnn`).
    pub cell: String,
    /// Input width.
    pub input: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Readout width.
    pub outputs: usize,
    /// Whether the cell has biases.
    pub bias: bool,
    /// Densities and the mask seed.
    pub sparsity: Sparsity,
    /// Seed of the initial weights.
    pub init_seed: u64,
    /// Epochs trained.
    pub epoch: usize,
    /// The blocks of the flat vector, in order.
    pub blocks: Vec<SavedBlock>,
    /// The flat parameter vector in the specification's order (masked
    /// entries zero).
    pub params: Vec<f32>,
    /// LoRA factors, for a fine-tuning run.
    pub lora: Option<LoraState>,
}

/// The block order with kinds, as stored in the `blocks` metadata entry.
#[derive(Serialize, Deserialize)]
struct BlockEntry {
    name: String,
    kind: String,
}

fn kind_name(kind: BlockKind) -> &'static str {
    match kind {
        BlockKind::Input => "input",
        BlockKind::Recurrent => "recurrent",
        BlockKind::Bias => "bias",
        BlockKind::Readout => "readout",
    }
}

fn kind_from_name(name: &str) -> Option<BlockKind> {
    match name {
        "input" => Some(BlockKind::Input),
        "recurrent" => Some(BlockKind::Recurrent),
        "bias" => Some(BlockKind::Bias),
        "readout" => Some(BlockKind::Readout),
        _ => None,
    }
}

/// The masks `ParamLayout::new` draws for `blocks` with `sparsity`.
fn expected_masks(
    blocks: &[SavedBlock],
    sparsity: Sparsity,
) -> crate::Result<Vec<Option<Vec<bool>>>> {
    let specs: Vec<BlockSpec> = blocks
        .iter()
        .map(|b| BlockSpec {
            name: b.name.clone(),
            kind: b.kind,
            rows: b.rows,
            cols: b.cols,
            gate: 0,
            source: 0,
        })
        .collect();
    let layout = ParamLayout::new(&specs, sparsity)?;
    Ok(layout.blocks().iter().map(|b| b.mask.clone()).collect())
}

/// FNV-1a, 64 bit: any single changed byte changes the hash.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that moving bytes between fields changes the hash.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// The checksum of the metadata (without `checksum`) and the tensors,
/// both in name order.
fn checksum<'a>(
    metadata: &HashMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    let mut hash = Fnv::new();
    let sorted: BTreeMap<_, _> =
        metadata.iter().filter(|(k, _)| *k != "checksum").collect();
    for (key, value) in sorted {
        hash.feed(key.as_bytes());
        hash.feed(value.as_bytes());
    }
    let mut tensors: Vec<_> = tensors.collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape, data) in tensors {
        hash.feed(name.as_bytes());
        hash.feed(format!("{dtype:?}").as_bytes());
        for &d in shape {
            hash.feed(&(d as u64).to_le_bytes());
        }
        hash.feed(data);
    }
    format!("fnv1a64:{:016x}", hash.0)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl Checkpoint {
    /// A checkpoint of `cell` with the full flat vector `params`, the
    /// densities and mask seed `sparsity` the cell was built with, the
    /// seed of its initial weights and the epochs trained.
    ///
    /// # Errors
    /// [`CheckpointError::Inconsistent`] if `params` has the wrong length
    /// or the cell's masks do not follow from `sparsity`.
    pub fn new<T: Scalar>(
        cell: &dyn Cell<T>,
        sparsity: Sparsity,
        init_seed: u64,
        epoch: usize,
        params: &[T],
    ) -> Result<Self, CheckpointError> {
        let layout = cell.layout();
        let shape = cell.shape();
        if params.len() != layout.len() {
            return Err(CheckpointError::Inconsistent(format!(
                "the parameter vector has {} entries, the {} model has {}",
                params.len(),
                cell.name(),
                layout.len()
            )));
        }
        let blocks: Vec<SavedBlock> = layout
            .blocks()
            .iter()
            .map(|b| SavedBlock {
                name: b.name.clone(),
                kind: b.kind,
                rows: b.rows,
                cols: b.cols,
                mask: b.mask.clone(),
            })
            .collect();

        // The masks must be those the densities and seed give, or loading
        // would not be able to check them.
        let masks = expected_masks(&blocks, sparsity)
            .map_err(|e| CheckpointError::Inconsistent(e.to_string()))?;
        if blocks.iter().zip(&masks).any(|(b, m)| b.mask != *m) {
            return Err(CheckpointError::Inconsistent(
                "the cell's masks do not follow from the given densities and mask seed"
                    .into(),
            ));
        }

        // Masked entries are not parameters: store them as exact zeros.
        let mut values: Vec<f32> = params.iter().map(|v| v.as_f64() as f32).collect();
        layout.apply_masks(&mut values);
        Ok(Checkpoint {
            cell: cell.name().to_string(),
            input: shape.input,
            hidden: shape.hidden,
            outputs: shape.outputs,
            bias: layout.blocks().iter().any(|b| b.kind == BlockKind::Bias),
            sparsity,
            init_seed,
            epoch,
            blocks,
            params: values,
            lora: None,
        })
    }

    /// Length of the core factor vector for the given ranks:
    /// `Σ r · (rows + cols)` over the `W` and `R` blocks.
    pub fn lora_len(&self, rank_input: usize, rank_recurrent: usize) -> usize {
        self.blocks
            .iter()
            .map(|b| match b.kind {
                BlockKind::Input => rank_input * (b.rows + b.cols),
                BlockKind::Recurrent => rank_recurrent * (b.rows + b.cols),
                BlockKind::Bias | BlockKind::Readout => 0,
            })
            .sum()
    }

    /// Adds LoRA factors.
    ///
    /// # Errors
    /// [`CheckpointError::Inconsistent`] for a zero rank, a scale that is
    /// not finite and positive, or factor vectors of the wrong length.
    pub fn with_lora(mut self, lora: LoraState) -> Result<Self, CheckpointError> {
        let bad = |what: String| Err(CheckpointError::Inconsistent(what));
        if lora.rank_input == 0 || lora.rank_recurrent == 0 {
            return bad("LoRA ranks must be at least 1".into());
        }
        if !(lora.alpha.is_finite() && lora.alpha > 0.0) {
            return bad(format!(
                "LoRA alpha must be finite and positive, got {}",
                lora.alpha
            ));
        }
        let want = self.lora_len(lora.rank_input, lora.rank_recurrent);
        if lora.factors.len() != want {
            return bad(format!(
                "{} LoRA factor entries, expected {want}",
                lora.factors.len()
            ));
        }
        let readout_len = match lora.readout {
            ReadoutMode::Full => 0,
            ReadoutMode::LowRank { rank, alpha } => {
                if rank == 0 || !(alpha.is_finite() && alpha > 0.0) {
                    return bad(format!(
                        "readout rank {rank} and alpha {alpha} are invalid"
                    ));
                }
                rank * (self.outputs + self.hidden)
            }
        };
        if lora.readout_values.len() != readout_len {
            return bad(format!(
                "{} readout factor entries, expected {readout_len}",
                lora.readout_values.len()
            ));
        }
        self.lora = Some(lora);
        Ok(self)
    }

    /// The block of kind [`BlockKind::Readout`], if any.
    fn readout_block(&self) -> Option<&SavedBlock> {
        self.blocks.iter().find(|b| b.kind == BlockKind::Readout)
    }

    /// The checkpoint as the bytes of a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();

        // One tensor per block, and a u8 mask for every sparse block.
        let mut offset = 0;
        for block in &self.blocks {
            let len = block.rows * block.cols;
            let values = &self.params[offset..offset + len];
            offset += len;
            let shape = vec![block.rows, block.cols];
            tensors.push((
                block.name.clone(),
                Dtype::F32,
                shape.clone(),
                f32_bytes(values),
            ));
            if let Some(mask) = &block.mask {
                let bytes = mask.iter().map(|&k| k as u8).collect();
                tensors.push((format!("mask.{}", block.name), Dtype::U8, shape, bytes));
            }
        }

        // LoRA factors: B then A for every W and R, then the readout's.
        let mut metadata = self.metadata();
        if let Some(lora) = &self.lora {
            let mut at = 0;
            for block in &self.blocks {
                let rank = match block.kind {
                    BlockKind::Input => lora.rank_input,
                    BlockKind::Recurrent => lora.rank_recurrent,
                    _ => continue,
                };
                let b = &lora.factors[at..at + block.rows * rank];
                at += b.len();
                let a = &lora.factors[at..at + rank * block.cols];
                at += a.len();
                let name = &block.name;
                tensors.push((
                    format!("lora.B.{name}"),
                    Dtype::F32,
                    vec![block.rows, rank],
                    f32_bytes(b),
                ));
                tensors.push((
                    format!("lora.A.{name}"),
                    Dtype::F32,
                    vec![rank, block.cols],
                    f32_bytes(a),
                ));
            }
            if let ReadoutMode::LowRank { rank, .. } = lora.readout {
                let name = self.readout_block().map_or("V", |b| &b.name).to_string();
                let (a, b) = lora.readout_values.split_at(rank * self.hidden);
                tensors.push((
                    format!("lora.A.{name}"),
                    Dtype::F32,
                    vec![rank, self.hidden],
                    f32_bytes(a),
                ));
                tensors.push((
                    format!("lora.B.{name}"),
                    Dtype::F32,
                    vec![self.outputs, rank],
                    f32_bytes(b),
                ));
            }
        }

        // The checksum covers everything else.
        let sum = checksum(
            &metadata,
            tensors
                .iter()
                .map(|(n, d, s, b)| (n.as_str(), *d, s.as_slice(), b.as_slice())),
        );
        metadata.insert("checksum".into(), sum);
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                let view = TensorView::new(*dtype, shape.clone(), bytes)
                    .expect("the byte length follows from the shape");
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| CheckpointError::Inconsistent(e.to_string()))
    }

    /// The metadata entries, without the checksum.
    fn metadata(&self) -> HashMap<String, String> {
        let blocks: Vec<BlockEntry> = self
            .blocks
            .iter()
            .map(|b| BlockEntry { name: b.name.clone(), kind: kind_name(b.kind).into() })
            .collect();
        let mut m = HashMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("format_version", VERSION.to_string());
        put("cell", self.cell.clone());
        put("input", self.input.to_string());
        put("hidden", self.hidden.to_string());
        put("outputs", self.outputs.to_string());
        put("bias", self.bias.to_string());
        put("recurrent_density", self.sparsity.recurrent_density.to_string());
        put("inout_density", self.sparsity.inout_density.to_string());
        put("mask_seed", self.sparsity.seed.to_string());
        put("init_seed", self.init_seed.to_string());
        put("epoch", self.epoch.to_string());
        put("blocks", serde_json::to_string(&blocks).expect("plain strings serialise"));
        if let Some(lora) = &self.lora {
            put("lora_rank_input", lora.rank_input.to_string());
            put("lora_rank_recurrent", lora.rank_recurrent.to_string());
            put("lora_alpha", lora.alpha.to_string());
            match lora.readout {
                ReadoutMode::Full => put("readout", "full".into()),
                ReadoutMode::LowRank { rank, alpha } => {
                    put("readout", "low-rank".into());
                    put("readout_rank", rank.to_string());
                    put("readout_alpha", alpha.to_string());
                }
            }
        }
        m
    }

    /// Writes the checkpoint to `path` atomically: a temporary file in the
    /// same folder, flushed to disk, then renamed over `path`. On failure
    /// the temporary file is removed and `path` is left as it was.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        write_atomically(path.as_ref(), &self.to_bytes()?)
    }

    /// Reads and checks the checkpoint at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = fs::read(path).map_err(|e| CheckpointError::Io {
            file: file.clone(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::from_bytes(&bytes, &file)
    }

    /// Reads and checks a checkpoint from the bytes of a file; `file`
    /// names it in error messages.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self, CheckpointError> {
        let header = read_header(bytes, file)?;
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Corrupted {
                file: file.into(),
                reason: format!("safetensors says: {e}"),
            })?;
        let metadata = header.metadata;
        let reader = MetaReader { file, metadata: &metadata };

        // The version first: the rest of the checks depend on it.
        let version = reader.string("format_version")?;
        if version != VERSION.to_string() {
            return Err(CheckpointError::UnsupportedVersion {
                file: file.into(),
                found: version,
            });
        }

        // Then the checksum: anything changed after saving stops here.
        let recorded = reader.string("checksum")?;
        let views: Vec<(&str, TensorView<'_>)> = st.iter().collect();
        let actual = checksum(
            &metadata,
            views
                .iter()
                .map(|(name, view)| (*name, view.dtype(), view.shape(), view.data())),
        );
        if recorded != actual {
            return Err(CheckpointError::Corrupted {
                file: file.into(),
                reason: format!(
                    "checksum {actual} does not match the recorded {recorded}: bytes changed \
                     after saving"
                ),
            });
        }

        // Settings.
        let cell = reader.string("cell")?;
        let input = reader.number::<usize>("input")?;
        let hidden = reader.number::<usize>("hidden")?;
        let outputs = reader.number::<usize>("outputs")?;
        let bias = reader.number::<bool>("bias")?;
        let sparsity = Sparsity {
            recurrent_density: reader.number("recurrent_density")?,
            inout_density: reader.number("inout_density")?,
            seed: reader.number("mask_seed")?,
        };
        let init_seed = reader.number("init_seed")?;
        let epoch = reader.number("epoch")?;
        let entries: Vec<BlockEntry> = serde_json::from_str(&reader.string("blocks")?)
            .map_err(|e| reader.bad("blocks", format!("is not a block list ({e})")))?;

        // Every block: an F32 tensor of the shape its kind and the sizes
        // give, and a U8 mask for sparse blocks.
        let tensors = TensorReader { file, st: &st };
        let mut blocks = Vec::with_capacity(entries.len());
        let mut params = Vec::new();
        let mut known: Vec<String> = Vec::new();
        for entry in &entries {
            let kind = kind_from_name(&entry.kind).ok_or_else(|| {
                reader.bad("blocks", format!("names an unknown kind `{}`", entry.kind))
            })?;
            let (rows, cols) = match kind {
                BlockKind::Input => (input, hidden),
                BlockKind::Recurrent => (hidden, hidden),
                BlockKind::Bias => (1, hidden),
                BlockKind::Readout => (outputs, hidden),
            };
            params.extend(tensors.f32(&entry.name, rows, cols)?);
            known.push(entry.name.clone());
            let mask_name = format!("mask.{}", entry.name);
            let mask = if st.names().contains(&mask_name.as_str()) {
                known.push(mask_name.clone());
                Some(tensors.mask(&mask_name, rows, cols)?)
            } else {
                None
            };
            blocks.push(SavedBlock { name: entry.name.clone(), kind, rows, cols, mask });
        }

        // The masks must be those the recorded densities and seed give.
        let masks = expected_masks(&blocks, sparsity)
            .map_err(|e| reader.bad("recurrent_density", e.to_string()))?;
        for (block, mask) in blocks.iter().zip(&masks) {
            if block.mask != *mask {
                let count = |m: &Option<Vec<bool>>| {
                    m.as_ref().map_or(block.rows * block.cols, |m| {
                        m.iter().filter(|&&k| k).count()
                    })
                };
                return Err(CheckpointError::Corrupted {
                    file: file.into(),
                    reason: format!(
                        "the mask of `{}` keeps {} entries where the recorded densities and \
                         seed keep {}",
                        block.name,
                        count(&block.mask),
                        count(mask)
                    ),
                });
            }
        }

        let mut checkpoint = Checkpoint {
            cell,
            input,
            hidden,
            outputs,
            bias,
            sparsity,
            init_seed,
            epoch,
            blocks,
            params,
            lora: None,
        };

        // LoRA factors, when the metadata announces them.
        if metadata.contains_key("lora_rank_input") {
            let rank_input = reader.number::<usize>("lora_rank_input")?;
            let rank_recurrent = reader.number::<usize>("lora_rank_recurrent")?;
            let alpha = reader.number::<f64>("lora_alpha")?;
            let mut factors = Vec::new();
            for block in &checkpoint.blocks {
                let rank = match block.kind {
                    BlockKind::Input => rank_input,
                    BlockKind::Recurrent => rank_recurrent,
                    _ => continue,
                };
                for (name, rows, cols) in [
                    (format!("lora.B.{}", block.name), block.rows, rank),
                    (format!("lora.A.{}", block.name), rank, block.cols),
                ] {
                    factors.extend(tensors.f32(&name, rows, cols)?);
                    known.push(name);
                }
            }
            let (readout, readout_values) = match reader.string("readout")?.as_str() {
                "full" => (ReadoutMode::Full, Vec::new()),
                "low-rank" => {
                    let rank = reader.number::<usize>("readout_rank")?;
                    let alpha = reader.number::<f64>("readout_alpha")?;
                    let name =
                        checkpoint.readout_block().map_or("V", |b| &b.name).to_string();
                    let a_name = format!("lora.A.{name}");
                    let b_name = format!("lora.B.{name}");
                    let mut values = tensors.f32(&a_name, rank, hidden)?;
                    values.extend(tensors.f32(&b_name, outputs, rank)?);
                    known.extend([a_name, b_name]);
                    (ReadoutMode::LowRank { rank, alpha }, values)
                }
                other => {
                    return Err(reader
                        .bad("readout", format!("is `{other}`, not full or low-rank")))
                }
            };
            let lora = LoraState {
                rank_input,
                rank_recurrent,
                alpha,
                factors,
                readout,
                readout_values,
            };
            checkpoint = checkpoint.with_lora(lora).map_err(|e| {
                CheckpointError::Corrupted { file: file.into(), reason: e.to_string() }
            })?;
        }

        // Nothing may be left over.
        if let Some(extra) =
            st.names().into_iter().find(|n| !known.iter().any(|k| k == n))
        {
            return Err(CheckpointError::Corrupted {
                file: file.into(),
                reason: format!("unexpected tensor `{extra}`"),
            });
        }
        Ok(checkpoint)
    }

    /// The flat parameter vector for `cell`, after checking that the
    /// checkpoint was made for a cell of the same kind, sizes, biases and
    /// masks. Masked entries are set to zero.
    ///
    /// # Errors
    /// [`CheckpointError::WrongCell`], [`CheckpointError::WrongSize`] or
    /// [`CheckpointError::MaskMismatch`], whichever is found first.
    pub fn params_for<T: Scalar>(
        &self,
        cell: &dyn Cell<T>,
    ) -> Result<Vec<T>, CheckpointError> {
        let shape = cell.shape();
        let layout = cell.layout();
        if cell.name() != self.cell {
            return Err(CheckpointError::WrongCell {
                expected: cell.name().into(),
                found: self.cell.clone(),
            });
        }

        // Sizes, then biases, then the block list itself.
        let sizes = [
            ("input width", shape.input, self.input),
            ("hidden size", shape.hidden, self.hidden),
            ("output width", shape.outputs, self.outputs),
        ];
        for (what, expected, found) in sizes {
            if expected != found {
                return Err(CheckpointError::WrongSize {
                    what,
                    expected: expected.to_string(),
                    found: found.to_string(),
                });
            }
        }
        let bias = layout.blocks().iter().any(|b| b.kind == BlockKind::Bias);
        if bias != self.bias {
            let yes_no = |b: bool| if b { "on" } else { "off" }.to_string();
            return Err(CheckpointError::WrongSize {
                what: "biases",
                expected: yes_no(bias),
                found: yes_no(self.bias),
            });
        }
        let names = |it: &mut dyn Iterator<Item = (&str, usize, usize)>| {
            it.map(|(n, r, c)| format!("{n} {r}x{c}")).collect::<Vec<_>>().join(", ")
        };
        let model_blocks =
            names(&mut layout.blocks().iter().map(|b| (b.name.as_str(), b.rows, b.cols)));
        let saved_blocks =
            names(&mut self.blocks.iter().map(|b| (b.name.as_str(), b.rows, b.cols)));
        if model_blocks != saved_blocks {
            return Err(CheckpointError::WrongSize {
                what: "blocks",
                expected: model_blocks,
                found: saved_blocks,
            });
        }

        // Masks, entry by entry.
        for (model, saved) in layout.blocks().iter().zip(&self.blocks) {
            if model.mask != saved.mask {
                return Err(CheckpointError::MaskMismatch {
                    block: model.name.clone(),
                    expected: model.kept(),
                    found: saved.mask.as_ref().map_or(saved.rows * saved.cols, |m| {
                        m.iter().filter(|&&k| k).count()
                    }),
                    recurrent: self.sparsity.recurrent_density,
                    inout: self.sparsity.inout_density,
                    seed: self.sparsity.seed,
                });
            }
        }
        let mut params: Vec<T> =
            self.params.iter().map(|&v| T::from_f64(v as f64)).collect();
        layout.apply_masks(&mut params);
        Ok(params)
    }
}

/// What the pre-checks of a file found.
struct Header {
    metadata: HashMap<String, String>,
}

/// Checks the framing of a safetensors file by hand, so that a file that
/// is not one, a truncated one and a damaged one each get their own
/// message, and returns its metadata (format tag checked).
fn read_header(bytes: &[u8], file: &str) -> Result<Header, CheckpointError> {
    let not =
        |reason: String| CheckpointError::NotACheckpoint { file: file.into(), reason };
    let corrupted =
        |reason: String| CheckpointError::Corrupted { file: file.into(), reason };
    let total = bytes.len() as u64;

    // 8 bytes of header length, then a JSON object.
    if bytes.len() < 9 {
        return Err(not(format!("only {total} bytes long")));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let looks_like_json = bytes[8] == b'{';
    if !(2..=MAX_HEADER).contains(&n) {
        return Err(if looks_like_json {
            corrupted(format!("the header length field reads {n}"))
        } else {
            not("no safetensors header".into())
        });
    }
    if 8 + n > total {
        return Err(if looks_like_json {
            CheckpointError::Truncated { file: file.into(), expected: 8 + n, got: total }
        } else {
            not("no safetensors header".into())
        });
    }
    let text = &bytes[8..8 + n as usize];
    if !looks_like_json {
        return Err(not("no safetensors header".into()));
    }
    let text = std::str::from_utf8(text)
        .map_err(|_| corrupted("the header is not valid UTF-8".into()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text)
            .map_err(|e| corrupted(format!("the header is not valid JSON: {e}")))?;

    // Our format tag, or this is some other safetensors file.
    let metadata: HashMap<String, String> = match header.get("__metadata__") {
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|_| corrupted("the metadata is not a map of strings".into()))?,
        None => HashMap::new(),
    };
    match metadata.get("format") {
        Some(tag) if tag == FORMAT => {}
        Some(tag) => {
            return Err(not(format!("a safetensors file with format tag `{tag}`")));
        }
        None => return Err(not("a safetensors file without an rtrl format tag".into())),
    }

    // The data must end exactly where the last tensor ends.
    let mut data_len = 0u64;
    for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let end = info
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(|e| e.as_u64())
            .ok_or_else(|| {
                corrupted(format!("tensor `{name}` has no valid data offsets"))
            })?;
        data_len = data_len.max(end);
    }
    let expected = 8 + n + data_len;
    if expected > total {
        return Err(CheckpointError::Truncated {
            file: file.into(),
            expected,
            got: total,
        });
    }
    if expected < total {
        return Err(corrupted(format!(
            "{} bytes follow the last tensor",
            total - expected
        )));
    }
    Ok(Header { metadata })
}

/// Typed access to the metadata, with the file's name for errors.
struct MetaReader<'a> {
    file: &'a str,
    metadata: &'a HashMap<String, String>,
}

impl MetaReader<'_> {
    fn bad(&self, key: &str, problem: String) -> CheckpointError {
        CheckpointError::BadMetadata { file: self.file.into(), key: key.into(), problem }
    }

    fn string(&self, key: &str) -> Result<String, CheckpointError> {
        self.metadata.get(key).cloned().ok_or_else(|| self.bad(key, "is missing".into()))
    }

    fn number<N: std::str::FromStr>(&self, key: &str) -> Result<N, CheckpointError> {
        let value = self.string(key)?;
        value
            .parse()
            .map_err(|_| self.bad(key, format!("is `{value}`, not a valid value")))
    }
}

/// Typed access to the tensors, with the file's name for errors.
struct TensorReader<'a, 'data> {
    file: &'a str,
    st: &'a SafeTensors<'data>,
}

impl TensorReader<'_, '_> {
    fn view(
        &self,
        name: &str,
        dtype: Dtype,
        rows: usize,
        cols: usize,
    ) -> Result<TensorView<'_>, CheckpointError> {
        let view = self.st.tensor(name).map_err(|_| CheckpointError::MissingTensor {
            file: self.file.into(),
            name: name.into(),
        })?;
        if view.dtype() != dtype || view.shape() != [rows, cols] {
            return Err(CheckpointError::WrongTensor {
                file: self.file.into(),
                name: name.into(),
                expected: format!("{dtype:?} of shape [{rows}, {cols}]"),
                found: format!("{:?} of shape {:?}", view.dtype(), view.shape()),
            });
        }
        Ok(view)
    }

    fn f32(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>, CheckpointError> {
        let view = self.view(name, Dtype::F32, rows, cols)?;
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    fn mask(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<bool>, CheckpointError> {
        let view = self.view(name, Dtype::U8, rows, cols)?;
        if let Some(&bad) = view.data().iter().find(|&&b| b > 1) {
            return Err(CheckpointError::WrongTensor {
                file: self.file.into(),
                name: name.into(),
                expected: "a mask of 0s and 1s".into(),
                found: format!("a mask holding the value {bad}"),
            });
        }
        Ok(view.data().iter().map(|&b| b == 1).collect())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file next to it,
/// flushed to disk, then renamed over `path` (and the folder flushed, so
/// the rename itself survives a crash). On failure the temporary file is
/// removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file = path.display().to_string();
    let io = |what: &str, e: std::io::Error| CheckpointError::Io {
        file: file.clone(),
        message: format!("cannot {what}: {e}"),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CheckpointError::Io {
            file: file.clone(),
            message: "cannot write: the path names no file".into(),
        })?
        .to_string_lossy();
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = folder.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));

    // Write and flush the temporary file; remove it if anything fails.
    let written = (|| -> std::io::Result<()> {
        let mut out = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        out.write_all(bytes)?;
        out.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io("write a temporary file next to it", e));
    }
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(io("rename the temporary file onto it", e));
    }

    // Make the rename durable; a folder that cannot be synced (some file
    // systems refuse) still holds a complete file.
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a flat `params` array from a `.npz` file (as the thesis's code
/// saves its models) for a model with `layout`: a 1-D float32 or float64
/// array in the specification's order, core then readout, exactly
/// [`ParamLayout::len`] long. Masked entries are set to zero.
///
/// # Errors
/// [`CheckpointError::Io`] when the file cannot be read,
/// [`CheckpointError::NotACheckpoint`] when it is not a zip archive, and
/// [`CheckpointError::Npz`] when `params` is missing or has the wrong
/// dtype, dimension or length.
pub fn import_npz<T: Scalar>(
    path: impl AsRef<Path>,
    layout: &ParamLayout,
) -> Result<Vec<T>, CheckpointError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let npz_error = |reason: String| CheckpointError::Npz { file: file.clone(), reason };
    let handle = File::open(path).map_err(|e| CheckpointError::Io {
        file: file.clone(),
        message: format!("cannot read the file: {e}"),
    })?;
    let mut archive = npyz::npz::NpzArchive::new(std::io::BufReader::new(handle))
        .map_err(|e| CheckpointError::NotACheckpoint {
            file: file.clone(),
            reason: format!("not a .npz archive: {e}"),
        })?;
    let names: Vec<String> = archive.array_names().map(str::to_string).collect();
    let array = archive
        .by_name("params")
        .map_err(|e| npz_error(format!("cannot read the `params` array: {e}")))?
        .ok_or_else(|| {
            npz_error(format!(
                "no `params` array (it holds: {}); save the flat parameters as `params`",
                if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
            ))
        })?;

    // A flat array of float32 or float64.
    if array.shape().len() != 1 {
        return Err(npz_error(format!(
            "`params` has shape {:?}; expected a flat 1-D array",
            array.shape()
        )));
    }
    let size = match array.dtype() {
        npyz::DType::Plain(ts) if ts.type_char() == npyz::TypeChar::Float => {
            ts.size_field()
        }
        _ => 0,
    };
    let values: Vec<f64> = match size {
        4 => array
            .into_vec::<f32>()
            .map_err(|e| npz_error(format!("cannot read `params`: {e}")))?
            .into_iter()
            .map(f64::from)
            .collect(),
        8 => array
            .into_vec::<f64>()
            .map_err(|e| npz_error(format!("cannot read `params`: {e}")))?,
        _ => {
            return Err(npz_error(format!(
                "`params` has dtype {}; expected float32 or float64",
                array.dtype().descr()
            )))
        }
    };

    // Exactly the model's flat length: core then readout.
    if values.len() != layout.len() {
        let readout = layout.len() - layout.core_len();
        return Err(npz_error(format!(
            "`params` has {} entries; this model needs {} (core {} + readout {}): check the \
             cell, sizes and biases",
            values.len(),
            layout.len(),
            layout.core_len(),
            readout
        )));
    }
    let mut params: Vec<T> = values.into_iter().map(T::from_f64).collect();
    layout.apply_masks(&mut params);
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{CellShape, GateJacobian, StateJacobian, StepCache};
    use std::path::PathBuf;

    /// A stand-in cell: the GRU's block layout without its arithmetic
    /// (checkpoints only read names, sizes and masks).
    struct Shell {
        name: &'static str,
        shape: CellShape,
        layout: ParamLayout,
    }

    impl Shell {
        fn new(
            name: &'static str,
            input: usize,
            hidden: usize,
            sparsity: Sparsity,
        ) -> Self {
            let gates = ["_r", "_z", "_h"];
            let mut specs = Vec::new();
            for (prefix, kind, rows) in
                [("W", BlockKind::Input, input), ("R", BlockKind::Recurrent, hidden)]
            {
                for (gate, g) in gates.iter().enumerate() {
                    specs.push(BlockSpec {
                        name: format!("{prefix}{g}"),
                        kind,
                        rows,
                        cols: hidden,
                        gate,
                        source: 0,
                    });
                }
            }
            specs.push(BlockSpec {
                name: "V".into(),
                kind: BlockKind::Readout,
                rows: 2,
                cols: hidden,
                gate: 0,
                source: 0,
            });
            let shape = CellShape { input, hidden, state: hidden, gates: 3, outputs: 2 };
            Shell { name, shape, layout: ParamLayout::new(&specs, sparsity).unwrap() }
        }
    }

    impl Cell<f64> for Shell {
        fn shape(&self) -> CellShape {
            self.shape
        }
        fn layout(&self) -> &ParamLayout {
            &self.layout
        }
        fn name(&self) -> &'static str {
            self.name
        }
        fn source_offsets(&self) -> &[usize] {
            &[]
        }
        fn dense_gates(&self) -> &[bool] {
            &[]
        }
        fn new_cache(&self) -> StepCache<f64> {
            StepCache::default()
        }
        fn forward(
            &self,
            _: &[f64],
            _: &[f64],
            _: &[f64],
            _: &mut StepCache<f64>,
            _: &mut [f64],
        ) {
            unreachable!("checkpoints never step a cell")
        }
        fn backward(
            &self,
            _: &[f64],
            _: &StepCache<f64>,
            _: &[f64],
            _: &mut [f64],
            _: &mut [f64],
        ) {
            unreachable!("checkpoints never step a cell")
        }
        fn state_jacobian(
            &self,
            _: &[f64],
            _: &StepCache<f64>,
            _: &mut StateJacobian<f64>,
        ) {
            unreachable!("checkpoints never step a cell")
        }
        fn gate_jacobian(
            &self,
            _: &[f64],
            _: &StepCache<f64>,
            _: &mut GateJacobian<f64>,
        ) {
            unreachable!("checkpoints never step a cell")
        }
    }

    fn sparse() -> Sparsity {
        Sparsity { recurrent_density: 0.6, inout_density: 0.8, seed: 7 }
    }

    /// A sparse checkpoint with LoRA factors and a low-rank readout.
    fn sample() -> Checkpoint {
        let cell = Shell::new("gru", 3, 5, sparse());
        let params: Vec<f64> = cell.layout().init(3);
        let checkpoint = Checkpoint::new(&cell, sparse(), 3, 42, &params).unwrap();
        let len = checkpoint.lora_len(2, 4);
        let lora = LoraState {
            rank_input: 2,
            rank_recurrent: 4,
            alpha: 1.5,
            factors: (0..len).map(|i| i as f32 * 0.25 - 3.0).collect(),
            readout: ReadoutMode::LowRank { rank: 1, alpha: 1.0 },
            readout_values: (0..7).map(|i| i as f32).collect(),
        };
        checkpoint.with_lora(lora).unwrap()
    }

    fn temp_path(name: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rtrl-checkpoint-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn save_then_load_gives_back_identical_tensors() {
        let checkpoint = sample();
        let path = temp_path("model.safetensors");
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded, checkpoint);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&loaded.params), bits(&checkpoint.params));

        // Only the target is left in the folder: no temporary file.
        let files: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(files.len(), 1);

        // And the parameters come back for the same cell, masks applied.
        let cell = Shell::new("gru", 3, 5, sparse());
        let params = loaded.params_for(&cell).unwrap();
        let want: Vec<f64> = cell.layout().init(3);
        let rounded: Vec<f64> = want.iter().map(|&v| v as f32 as f64).collect();
        assert_eq!(params, rounded);
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let bytes = sample().to_bytes().unwrap();
        for keep in [bytes.len() - 1, bytes.len() / 2, 40] {
            let err =
                Checkpoint::from_bytes(&bytes[..keep], "cut.safetensors").unwrap_err();
            assert!(matches!(err, CheckpointError::Truncated { .. }), "{keep}: {err}");
            assert!(err.to_string().starts_with("cut.safetensors is truncated: it has"));
        }
    }

    #[test]
    fn every_flipped_header_byte_is_refused() {
        let bytes = sample().to_bytes().unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for i in 0..8 + n {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                let result = Checkpoint::from_bytes(&bad, "flip.safetensors");
                assert!(
                    result.is_err(),
                    "flipping bit {bit:#x} of byte {i} went unnoticed"
                );
            }
        }

        // A flipped data byte is caught by the checksum.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x10;
        let err = Checkpoint::from_bytes(&bad, "flip.safetensors").unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_checkpoint_is_refused() {
        let mut state = 0x1234_5678u64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let err = Checkpoint::from_bytes(&random, "noise.bin").unwrap_err();
        assert!(matches!(err, CheckpointError::NotACheckpoint { .. }), "{err}");
        assert!(err.to_string().starts_with("noise.bin is not an rtrl checkpoint"));

        // Text, an empty file, and a safetensors file from elsewhere.
        for bytes in [&b"hello, this is a text file\n"[..], &b""[..]] {
            let err = Checkpoint::from_bytes(bytes, "x").unwrap_err();
            assert!(matches!(err, CheckpointError::NotACheckpoint { .. }), "{err}");
        }
        let data = [0u8; 8];
        let view = TensorView::new(Dtype::F32, vec![2], &data).unwrap();
        let foreign = safetensors::serialize([("w", view)], None).unwrap();
        let err = Checkpoint::from_bytes(&foreign, "other.safetensors").unwrap_err();
        assert!(err.to_string().contains("without an rtrl format tag"), "{err}");
    }

    #[test]
    fn a_checkpoint_of_another_cell_or_size_is_refused() {
        let checkpoint = sample();
        let lstm = Shell::new("lstm", 3, 5, sparse());
        let err = checkpoint.params_for(&lstm).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the checkpoint holds a gru model, not a lstm; use a gru model or a checkpoint \
             of a lstm"
        );

        let wider = Shell::new("gru", 3, 6, sparse());
        let err = checkpoint.params_for(&wider).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the checkpoint has hidden size 5, the model has 6; set hidden size to 5 or use \
             a checkpoint with 6"
        );

        let dense = Shell::new("gru", 3, 5, Sparsity::dense());
        let err = checkpoint.params_for(&dense).unwrap_err();
        assert!(matches!(err, CheckpointError::MaskMismatch { .. }), "{err}");
        assert!(err.to_string().contains("mask seed 7"), "{err}");
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let checkpoint = sample();
        let bytes = checkpoint.to_bytes().unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut metadata = meta.metadata().clone().unwrap();
        let kept: Vec<(String, TensorView<'_>)> =
            st.tensors().into_iter().filter(|(n, _)| n != "R_z").collect();
        let sum = checksum(
            &metadata,
            kept.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
        );
        metadata.insert("checksum".into(), sum);
        let without = safetensors::serialize(kept, Some(metadata)).unwrap();
        let err = Checkpoint::from_bytes(&without, "m.safetensors").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.safetensors lacks the tensor `R_z`; the file is incomplete, save it again"
        );
    }

    #[test]
    fn npz_round_trip() {
        use npyz::WriterBuilder;
        let cell = Shell::new("gru", 3, 5, Sparsity::dense());
        let layout = cell.layout();
        let params: Vec<f64> = layout.init(9);
        for (name, as_f32) in [("f64.npz", false), ("f32.npz", true)] {
            let path = temp_path(name);
            {
                let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
                let shape = [params.len() as u64];
                if as_f32 {
                    let values: Vec<f32> = params.iter().map(|&v| v as f32).collect();
                    let builder = npz.array("params", Default::default()).unwrap();
                    let mut w = builder.default_dtype().shape(&shape).begin_nd().unwrap();
                    w.extend(values).unwrap();
                    w.finish().unwrap();
                } else {
                    let builder = npz.array("params", Default::default()).unwrap();
                    let mut w = builder.default_dtype().shape(&shape).begin_nd().unwrap();
                    w.extend(params.iter().copied()).unwrap();
                    w.finish().unwrap();
                }
            }
            let back: Vec<f64> = import_npz(&path, layout).unwrap();
            if as_f32 {
                let rounded: Vec<f64> = params.iter().map(|&v| v as f32 as f64).collect();
                assert_eq!(back, rounded);
            } else {
                assert_eq!(back, params);
            }
        }

        // The wrong length and a missing array get their own messages.
        let path = temp_path("short.npz");
        {
            let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
            let builder = npz.array("weights", Default::default()).unwrap();
            let mut w = builder.default_dtype().shape(&[3]).begin_nd().unwrap();
            w.extend([1.0f64, 2.0, 3.0]).unwrap();
            w.finish().unwrap();
            let builder = npz.array("params", Default::default()).unwrap();
            let mut w = builder.default_dtype().shape(&[3]).begin_nd().unwrap();
            w.extend([1.0f64, 2.0, 3.0]).unwrap();
            w.finish().unwrap();
        }
        let err = import_npz::<f64>(&path, layout).unwrap_err();
        assert!(
            err.to_string().contains(
                "`params` has 3 entries; this model needs 130 (core 120 + readout 10)"
            ),
            "{err}"
        );
        let err = import_npz::<f64>(temp_path("absent.npz"), layout).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    }
}
