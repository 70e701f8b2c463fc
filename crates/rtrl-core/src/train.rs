//! Training a batch of sequences with any estimator, online or offline.

use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::data::{Batch, Loss};
use crate::error::{Error, Result};
use crate::estimator::Estimator;
use crate::optim::Optimizer;
use crate::rng::{seeded, Stream};
use crate::scalar::Scalar;

/// How the readout `V` (outputs × hidden) is trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadoutMode {
    /// Every entry of `V` is trainable.
    Full,
    /// `V = V₀ + (α/r)·B·A` with `V₀` frozen, `B` (outputs × r) starting
    /// at zero and `A` (r × hidden) drawn from N(0, 0.01²).
    LowRank {
        /// Rank `r` (at least 1).
        rank: usize,
        /// Scale `α`.
        alpha: f64,
    },
}

/// The readout: its mode, frozen base, mask and the effective `V`.
#[derive(Debug, Clone)]
pub struct Readout<T> {
    outputs: usize,
    hidden: usize,
    mode: ReadoutMode,
    base: Vec<T>,
    mask: Option<Vec<bool>>,
    effective: Vec<T>,
}

impl<T: Scalar> Readout<T> {
    /// A readout of `outputs × hidden` with the given mode; `base` is `V₀`
    /// for a low-rank readout (ignored, but kept, for a full one).
    pub fn new(
        outputs: usize,
        hidden: usize,
        mode: ReadoutMode,
        base: Vec<T>,
        mask: Option<Vec<bool>>,
    ) -> Result<Self> {
        if base.len() != outputs * hidden {
            return Err(Error::Shape {
                what: "readout base".into(),
                expected: format!("{outputs} x {hidden}"),
                got: base.len().to_string(),
            });
        }
        if let ReadoutMode::LowRank { rank, alpha } = mode {
            crate::error::check_size("readout rank", rank)?;
            crate::error::check_positive("alpha", alpha)?;
        }
        Ok(Readout {
            outputs,
            hidden,
            mode,
            base,
            mask,
            effective: vec![T::zero(); outputs * hidden],
        })
    }

    /// Length of the readout's trainable vector.
    pub fn num_params(&self) -> usize {
        match self.mode {
            ReadoutMode::Full => self.outputs * self.hidden,
            ReadoutMode::LowRank { rank, .. } => rank * (self.outputs + self.hidden),
        }
    }

    /// The mode.
    pub fn mode(&self) -> ReadoutMode {
        self.mode
    }

    /// The frozen base `V₀`.
    pub fn base(&self) -> &[T] {
        &self.base
    }

    /// Initial trainable values: `V₀` itself for a full readout; for a
    /// low-rank one `A` ~ N(0, 0.01²) (seeded) then `B = 0`.
    pub fn init(&self, seed: u64) -> Vec<T> {
        match self.mode {
            ReadoutMode::Full => self.base.clone(),
            ReadoutMode::LowRank { rank, .. } => {
                let mut rng = seeded(seed, Stream::Lora, u32::MAX);
                let normal = Normal::new(0.0, 0.01).expect("valid normal");
                let mut values = vec![T::zero(); self.num_params()];
                for v in &mut values[..rank * self.hidden] {
                    *v = T::from_f64(normal.sample(&mut rng));
                }
                values
            }
        }
    }

    /// Recomputes the effective `V` from the trainable values.
    pub fn refresh(&mut self, trainable: &[T]) {
        match self.mode {
            ReadoutMode::Full => self.effective.copy_from_slice(trainable),
            ReadoutMode::LowRank { rank, alpha } => {
                let scale = T::from_f64(alpha / rank as f64);
                let (a, b) = trainable.split_at(rank * self.hidden);
                self.effective.copy_from_slice(&self.base);
                for o in 0..self.outputs {
                    for j in 0..rank {
                        let bo = scale * b[o * rank + j];
                        let row = &mut self.effective[o * self.hidden..][..self.hidden];
                        for (v, &aj) in
                            row.iter_mut().zip(&a[j * self.hidden..][..self.hidden])
                        {
                            *v += bo * aj;
                        }
                    }
                }
            }
        }
        if let Some(mask) = &self.mask {
            for (v, &keep) in self.effective.iter_mut().zip(mask) {
                if !keep {
                    *v = T::zero();
                }
            }
        }
    }

    /// The effective `V` of the last [`refresh`](Self::refresh).
    pub fn effective(&self) -> &[T] {
        &self.effective
    }

    /// Turns `∂L/∂V` into the gradient of the trainable values, added to
    /// `out`.
    pub fn chain(&self, trainable: &[T], d_v: &[T], out: &mut [T]) {
        let masked = |i: usize| self.mask.as_ref().is_some_and(|m| !m[i]);
        match self.mode {
            ReadoutMode::Full => {
                for (i, (o, &d)) in out.iter_mut().zip(d_v).enumerate() {
                    if !masked(i) {
                        *o += d;
                    }
                }
            }
            ReadoutMode::LowRank { rank, alpha } => {
                let scale = T::from_f64(alpha / rank as f64);
                let (a, b) = trainable.split_at(rank * self.hidden);
                let (d_a, d_b) = out.split_at_mut(rank * self.hidden);
                for o in 0..self.outputs {
                    for c in 0..self.hidden {
                        let i = o * self.hidden + c;
                        if masked(i) {
                            continue;
                        }
                        let d = scale * d_v[i];
                        for j in 0..rank {
                            d_a[j * self.hidden + c] += b[o * rank + j] * d;
                            d_b[o * rank + j] += a[j * self.hidden + c] * d;
                        }
                    }
                }
            }
        }
    }
}

/// Runs one matrix product on every thread of the current rayon pool.
///
/// `faer` keeps a packing buffer per thread, allocated by that thread's
/// first product; doing it here, once, keeps later training steps free of
/// heap allocation whichever thread a sequence lands on.
fn warm_up_threads<T: Scalar>() {
    rayon::broadcast(|_| {
        let a = faer::Mat::<T>::zeros(64, 64);
        let mut c = faer::Mat::<T>::zeros(64, 64);
        faer::linalg::matmul::matmul(
            c.as_mut(),
            faer::Accum::Replace,
            a.as_ref(),
            a.as_ref(),
            T::one(),
            faer::Par::Seq,
        );
    });
}

/// Settings of a [`Trainer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainerConfig {
    /// Apply the optimizer after every step whose gradient is ready
    /// (`true`), or once per batch (`false`).
    pub online: bool,
    /// The loss on the readout.
    pub loss: Loss,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig { online: true, loss: Loss::BinaryCrossEntropy }
    }
}

/// One sequence's estimator and buffers.
struct Worker<T: Scalar> {
    estimator: Box<dyn Estimator<T>>,
    grad: Vec<T>,
    d_v: Vec<T>,
    h: Vec<T>,
    logits: Vec<T>,
    d_logits: Vec<T>,
    d_h: Vec<T>,
    loss: f64,
    ready: bool,
}

impl<T: Scalar> Worker<T> {
    /// One step: forward, readout, loss and (when training) backward.
    fn step(
        &mut self,
        core: &[T],
        v: &[T],
        x: &[T],
        target: &[T],
        loss: Loss,
        scale: T,
        train: bool,
    ) {
        let hidden = self.h.len();
        self.h.copy_from_slice(self.estimator.forward(core, x));

        // Logits z = V·h, then the loss and ∂L/∂z.
        for (o, z) in self.logits.iter_mut().enumerate() {
            *z =
                v[o * hidden..][..hidden].iter().zip(&self.h).map(|(&a, &b)| a * b).sum();
        }
        let step_loss = loss.step(&self.logits, target, &mut self.d_logits);
        self.loss += (step_loss * scale).as_f64();
        if !train {
            return;
        }

        // ∂L/∂h = Vᵀ·∂L/∂z and ∂L/∂V += ∂L/∂z ⊗ h, both with the mean's scale.
        self.d_h.fill(T::zero());
        for (o, d) in self.d_logits.iter_mut().enumerate() {
            *d *= scale;
            let row = &v[o * hidden..][..hidden];
            let d_v = &mut self.d_v[o * hidden..][..hidden];
            for c in 0..hidden {
                self.d_h[c] += row[c] * *d;
                d_v[c] += *d * self.h[c];
            }
        }
        self.ready = self.estimator.backward(core, &self.d_h, &mut self.grad);
    }
}

/// Trains a recurrent core and its readout on batches of sequences.
///
/// Each sequence of a batch has its own estimator; the sequences of a
/// step run in parallel (rayon, one task per sequence) and their gradients
/// are summed in sample order, so a result is bit-identical whatever the
/// number of threads.
///
/// The trainable vector is the estimator's core vector followed by the
/// readout's trainable values; with exact estimators and a full readout it
/// is the specification's flat parameter vector.
///
/// *Online* (the default) applies the optimizer with the batch's summed
/// gradient after every step whose gradient is ready, and the influence
/// matrices carry on with the new weights; *offline* applies it once per
/// batch.
pub struct Trainer<T: Scalar> {
    workers: Vec<Worker<T>>,
    core_len: usize,
    theta: Vec<T>,
    readout: Readout<T>,
    optimizer: Box<dyn Optimizer<T>>,
    config: TrainerConfig,
    grad: Vec<T>,
    d_v: Vec<T>,
    batches: usize,
    updates: u64,
}

impl<T: Scalar> Trainer<T> {
    /// A trainer with one estimator per sequence of a batch, the initial
    /// core vector and readout values.
    pub fn new(
        estimators: Vec<Box<dyn Estimator<T>>>,
        core: Vec<T>,
        readout: Readout<T>,
        readout_values: Vec<T>,
        optimizer: Box<dyn Optimizer<T>>,
        config: TrainerConfig,
    ) -> Result<Self> {
        let first =
            estimators.first().ok_or(Error::ZeroSize { what: "batch size", value: 0 })?;
        let core_len = first.num_params();
        let hidden = first.hidden();
        let shape_error = |what: &str, expected: usize, got: usize| Error::Shape {
            what: what.to_string(),
            expected: expected.to_string(),
            got: got.to_string(),
        };
        if core.len() != core_len {
            return Err(shape_error("core parameters", core_len, core.len()));
        }
        if readout.hidden != hidden {
            return Err(shape_error("readout columns", hidden, readout.hidden));
        }
        if readout_values.len() != readout.num_params() {
            return Err(shape_error(
                "readout values",
                readout.num_params(),
                readout_values.len(),
            ));
        }
        let outputs = readout.outputs;
        let workers = estimators
            .into_iter()
            .map(|estimator| Worker {
                estimator,
                grad: vec![T::zero(); core_len],
                d_v: vec![T::zero(); outputs * hidden],
                h: vec![T::zero(); hidden],
                logits: vec![T::zero(); outputs],
                d_logits: vec![T::zero(); outputs],
                d_h: vec![T::zero(); hidden],
                loss: 0.0,
                ready: false,
            })
            .collect();
        let mut theta = core;
        theta.extend_from_slice(&readout_values);
        Ok(Trainer {
            grad: vec![T::zero(); theta.len()],
            d_v: vec![T::zero(); outputs * hidden],
            workers,
            core_len,
            theta,
            readout,
            optimizer,
            config,
            batches: 0,
            updates: 0,
        })
    }

    /// The whole trainable vector: core, then readout values.
    pub fn theta(&self) -> &[T] {
        &self.theta
    }

    /// The core part of the trainable vector.
    pub fn core(&self) -> &[T] {
        &self.theta[..self.core_len]
    }

    /// The readout part of the trainable vector.
    pub fn readout_values(&self) -> &[T] {
        &self.theta[self.core_len..]
    }

    /// The readout.
    pub fn readout(&self) -> &Readout<T> {
        &self.readout
    }

    /// The effective readout `V` for the current values.
    pub fn effective_readout(&mut self) -> &[T] {
        self.readout.refresh(&self.theta[self.core_len..]);
        self.readout.effective()
    }

    /// Number of optimizer steps taken so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Sequences trained in parallel (the batch size).
    pub fn batch_size(&self) -> usize {
        self.workers.len()
    }

    /// The estimator of the first sequence (for its name and counts).
    pub fn estimator(&self) -> &dyn Estimator<T> {
        &*self.workers[0].estimator
    }

    fn check_batch(&self, batch: &Batch<T>, exact_size: bool) -> Result<()> {
        batch.check(batch.input_width, self.readout.outputs)?;
        if exact_size && batch.batch != self.workers.len() {
            return Err(Error::Shape {
                what: "batch size".into(),
                expected: self.workers.len().to_string(),
                got: batch.batch.to_string(),
            });
        }
        Ok(())
    }

    /// Trains on one batch (its size must equal the trainer's); returns
    /// the mean loss per sequence.
    pub fn train_batch(&mut self, batch: &Batch<T>) -> Result<f64> {
        self.check_batch(batch, true)?;
        if self.batches == 0 {
            warm_up_threads::<T>();
        }
        self.batches += 1;
        let loss = self.config.loss;
        let scale = T::from_f64(loss.scale(batch.steps, batch.output_width));
        for w in &mut self.workers {
            w.estimator.reset();
            w.loss = 0.0;
        }
        let mut pending = false;
        for t in 0..batch.steps {
            self.readout.refresh(&self.theta[self.core_len..]);
            let core = &self.theta[..self.core_len];
            let v = self.readout.effective();
            self.workers.par_iter_mut().enumerate().for_each(|(b, w)| {
                w.step(core, v, batch.input(b, t), batch.target(b, t), loss, scale, true);
            });
            pending = true;
            if self.config.online && self.workers[0].ready {
                self.apply();
                pending = false;
            }
        }
        let core = &self.theta[..self.core_len];
        self.workers.par_iter_mut().for_each(|w| {
            let flushed = w.estimator.flush(core, &mut w.grad);
            w.ready |= flushed;
        });
        if pending || self.workers.iter().any(|w| w.ready) {
            self.apply();
        }
        let mean = self.workers.iter().map(|w| w.loss).sum::<f64>() / batch.batch as f64;
        if !mean.is_finite() {
            return Err(Error::NonFinite { epoch: self.batches, value: mean });
        }
        Ok(mean)
    }

    /// Mean loss per sequence on `batch` (any size), without training.
    pub fn evaluate(&mut self, batch: &Batch<T>) -> Result<f64> {
        self.check_batch(batch, false)?;
        let loss = self.config.loss;
        let scale = T::from_f64(loss.scale(batch.steps, batch.output_width));
        self.readout.refresh(&self.theta[self.core_len..]);
        let core = &self.theta[..self.core_len];
        let v = self.readout.effective();
        let mut total = 0.0;
        let per_chunk = self.workers.len();
        for first in (0..batch.batch).step_by(per_chunk) {
            let count = per_chunk.min(batch.batch - first);
            let workers = &mut self.workers[..count];
            workers.par_iter_mut().enumerate().for_each(|(i, w)| {
                w.estimator.reset();
                w.loss = 0.0;
                for t in 0..batch.steps {
                    let b = first + i;
                    w.step(
                        core,
                        v,
                        batch.input(b, t),
                        batch.target(b, t),
                        loss,
                        scale,
                        false,
                    );
                }
            });
            total += workers.iter().map(|w| w.loss).sum::<f64>();
        }
        Ok(total / batch.batch as f64)
    }

    /// Sums the workers' gradients in sample order and takes one
    /// optimizer step.
    fn apply(&mut self) {
        self.grad.fill(T::zero());
        self.d_v.fill(T::zero());
        let (core_grad, readout_grad) = self.grad.split_at_mut(self.core_len);
        for w in &mut self.workers {
            for (g, x) in core_grad.iter_mut().zip(&mut w.grad) {
                *g += *x;
                *x = T::zero();
            }
            for (g, x) in self.d_v.iter_mut().zip(&mut w.d_v) {
                *g += *x;
                *x = T::zero();
            }
            w.ready = false;
        }
        self.readout.chain(&self.theta[self.core_len..], &self.d_v, readout_grad);
        self.optimizer.step(&mut self.theta, &self.grad);
        self.updates += 1;
    }
}
