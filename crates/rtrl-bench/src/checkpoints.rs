//! Weights into and out of a run: `--init-from`, `--save` and
//! `--save-merged`.
//!
//! A run starts from `ParamLayout::init(seed)` unless
//! [`RunConfig::init_from`] names a checkpoint (`.safetensors`, checked
//! against the run's cell) or a `.npz` file with a flat `params` array in
//! the specification's order. A checkpoint that carries LoRA factors is
//! merged first, so every estimator starts from plain weights; for
//! LoRA-RTRL those weights are the frozen base.
//!
//! At the end of a run, [`save`] writes what was trained: the weights for
//! the exact estimators; for LoRA-RTRL the frozen base with the factors
//! (and the readout's, for a low-rank readout). [`save_merged`] folds
//! LoRA-RTRL's factors into the base and writes plain weights. Both write
//! atomically.

use std::path::Path;

use rtrl_core::checkpoint::{import_npz, Checkpoint, LoraState};
use rtrl_core::{Cell, Readout, ReadoutMode, Sparsity, Trainer};
use rtrl_lora::{merge, LoraConfig, LoraLayout};

use crate::experiment::{Algo, RunConfig, RunError};

/// The weights a run starts from, and how many epochs made them.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialWeights {
    /// The cell's flat vector (core, then readout), masked entries zero.
    pub params: Vec<f32>,
    /// Epochs recorded in the checkpoint (0 for a `.npz` file).
    pub epoch: usize,
}

/// Reads the weights at `path` for `cell`: a `.npz` file's `params`
/// array, or a checkpoint (LoRA factors merged in).
///
/// # Errors
/// [`RunError::Checkpoint`] when the file cannot be read or is not a
/// valid checkpoint; [`RunError::CheckpointMismatch`] when it was made for
/// another cell, other sizes or other masks.
pub fn load(path: &Path, cell: &dyn Cell<f32>) -> Result<InitialWeights, RunError> {
    let weights = load_unchecked(path, cell)?;

    // Weights that are not numbers cannot start a run.
    if let Some(i) = weights.params.iter().position(|v| !v.is_finite()) {
        return Err(RunError::InvalidWeights {
            path: path.display().to_string(),
            index: i,
            value: weights.params[i],
        });
    }
    Ok(weights)
}

/// [`load`] without the check that every weight is finite.
fn load_unchecked(path: &Path, cell: &dyn Cell<f32>) -> Result<InitialWeights, RunError> {
    let layout = cell.layout();
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz")) {
        let params = import_npz(path, layout)?;
        return Ok(InitialWeights { params, epoch: 0 });
    }
    let checkpoint = Checkpoint::load(path)?;
    let mismatch = |source| RunError::CheckpointMismatch {
        path: path.display().to_string(),
        source,
    };
    let base = checkpoint.params_for(cell).map_err(mismatch)?;
    let Some(state) = &checkpoint.lora else {
        return Ok(InitialWeights { params: base, epoch: checkpoint.epoch });
    };

    // Core: M + (α/r)·B·A on every factored block.
    let config = LoraConfig {
        rank_input: state.rank_input,
        rank_recurrent: state.rank_recurrent,
        alpha: state.alpha,
    };
    let lora = LoraLayout::new(layout, &config)?;
    let mut params = base.clone();
    merge(&lora, &base, &state.factors, &mut params);

    // Readout: V₀ + (α/r)·B·A for a low-rank readout (a full one is
    // already in the base).
    if let ReadoutMode::LowRank { .. } = state.readout {
        let block = layout.readout().ok_or_else(no_readout)?;
        let range = block.offset..block.offset + block.len();
        let mut readout = Readout::new(
            block.rows,
            block.cols,
            state.readout,
            base[range.clone()].to_vec(),
            block.mask.clone(),
        )?;
        readout.refresh(&state.readout_values);
        params[range].copy_from_slice(readout.effective());
    }
    Ok(InitialWeights { params, epoch: checkpoint.epoch })
}

/// Writes the end of a run to `path`: the trained weights, or for
/// LoRA-RTRL the frozen `base` (the run's initial flat vector) with the
/// trained factors. `epoch` is the total number of epochs behind the
/// weights.
pub fn save(
    path: &Path,
    config: &RunConfig,
    cell: &dyn Cell<f32>,
    base: &[f32],
    trainer: &mut Trainer<f32>,
    epoch: usize,
) -> Result<(), RunError> {
    let layout = cell.layout();
    let sparsity = sparsity(config);
    if config.algo != Algo::LoraRtrl {
        let core = trainer.core().to_vec();
        let flat = plain_weights(cell, &core, trainer)?;
        let checkpoint = Checkpoint::new(cell, sparsity, config.seed, epoch, &flat)?;
        return Ok(checkpoint.save(path)?);
    }

    // The base, with the trained V for a full readout or V₀ and the
    // readout's factors for a low-rank one.
    let block = layout.readout().ok_or_else(no_readout)?;
    let mut flat = base.to_vec();
    let mode = trainer.readout().mode();
    let readout_values = match mode {
        ReadoutMode::Full => {
            let v = &mut flat[block.offset..block.offset + block.len()];
            v.copy_from_slice(trainer.effective_readout());
            Vec::new()
        }
        ReadoutMode::LowRank { .. } => trainer.readout_values().to_vec(),
    };
    let state = LoraState {
        rank_input: config.lora.rank_input,
        rank_recurrent: config.lora.rank_recurrent,
        alpha: config.lora.alpha,
        factors: trainer.core().to_vec(),
        readout: mode,
        readout_values,
    };
    let checkpoint =
        Checkpoint::new(cell, sparsity, config.seed, epoch, &flat)?.with_lora(state)?;
    Ok(checkpoint.save(path)?)
}

/// Merges LoRA-RTRL's trained factors into the frozen `base` and writes
/// the plain weights (core and effective readout) to `path`.
pub fn save_merged(
    path: &Path,
    config: &RunConfig,
    cell: &dyn Cell<f32>,
    base: &[f32],
    trainer: &mut Trainer<f32>,
    epoch: usize,
) -> Result<(), RunError> {
    let layout = cell.layout();
    let lora = LoraLayout::new(layout, &config.lora)?;
    let core_len = layout.core_len();
    let mut core = base[..core_len].to_vec();
    merge(&lora, &base[..core_len], trainer.core(), &mut core);
    let flat = plain_weights(cell, &core, trainer)?;
    let checkpoint = Checkpoint::new(cell, sparsity(config), config.seed, epoch, &flat)?;
    Ok(checkpoint.save(path)?)
}

/// `core` followed by the trainer's effective readout.
fn plain_weights(
    cell: &dyn Cell<f32>,
    core: &[f32],
    trainer: &mut Trainer<f32>,
) -> Result<Vec<f32>, RunError> {
    if core.len() != cell.layout().core_len() {
        return Err(rtrl_core::Error::Unsupported(format!(
            "this estimator trains {} values, not the {} weights of the core; it cannot \
             be saved as plain weights",
            core.len(),
            cell.layout().core_len()
        ))
        .into());
    }
    let mut flat = core.to_vec();
    flat.extend_from_slice(trainer.effective_readout());
    Ok(flat)
}

/// The densities and mask seed the run's cell was built with.
fn sparsity(config: &RunConfig) -> Sparsity {
    Sparsity {
        recurrent_density: config.recurrent_density,
        inout_density: config.inout_density,
        seed: config.seed,
    }
}

fn no_readout() -> RunError {
    rtrl_core::Error::Unsupported("the cell's layout has no readout".to_string()).into()
}
