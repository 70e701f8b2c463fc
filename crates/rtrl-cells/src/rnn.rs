//! The plain tanh RNN.

use std::marker::PhantomData;

use rtrl_core::{
    Cell, CellShape, GateJacobian, ParamLayout, Result, Scalar, StateJacobian, StepCache,
};

use crate::common::{add_product, gate_specs, product_transposed};
use crate::CellConfig;

/// `h' = tanh(x·W + h·R [+ b])`.
///
/// Sources: `x` (0), `h` (1), the constant 1 (2). One gate.
#[derive(Debug, Clone)]
pub struct Rnn<T> {
    shape: CellShape,
    layout: ParamLayout,
    offsets: [usize; 4],
    w: usize,
    r: usize,
    b: Option<usize>,
    _scalar: PhantomData<T>,
}

impl<T: Scalar> Rnn<T> {
    /// A tanh RNN of the configured sizes (the `kind` field is ignored).
    pub fn new(config: &CellConfig) -> Result<Self> {
        config.validate()?;
        let (m, n) = (config.input, config.hidden);
        let specs = gate_specs(&[""], m, n, config.outputs, config.bias, &[1], 2);
        let layout = ParamLayout::new(&specs, config.sparsity)?;
        let offset = |name: &str| layout.block(name).map(|b| b.offset);
        Ok(Rnn {
            shape: CellShape {
                input: m,
                hidden: n,
                state: n,
                gates: 1,
                outputs: config.outputs,
            },
            offsets: [0, m, m + n, m + n + 1],
            w: offset("W").expect("W"),
            r: offset("R").expect("R"),
            b: offset("b"),
            layout,
            _scalar: PhantomData,
        })
    }

    fn matrices<'a>(&self, params: &'a [T]) -> (&'a [T], &'a [T]) {
        let (m, n) = (self.shape.input, self.shape.hidden);
        (&params[self.w..self.w + m * n], &params[self.r..self.r + n * n])
    }
}

impl<T: Scalar> Cell<T> for Rnn<T> {
    fn shape(&self) -> CellShape {
        self.shape
    }

    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn name(&self) -> &'static str {
        "rnn"
    }

    fn source_offsets(&self) -> &[usize] {
        &self.offsets
    }

    fn dense_gates(&self) -> &[bool] {
        &[false]
    }

    fn new_cache(&self) -> StepCache<T> {
        StepCache {
            sources: vec![T::zero(); self.offsets[3]],
            acts: vec![T::zero(); self.shape.hidden],
        }
    }

    fn forward(
        &self,
        params: &[T],
        state: &[T],
        x: &[T],
        cache: &mut StepCache<T>,
        next: &mut [T],
    ) {
        let (m, n) = (self.shape.input, self.shape.hidden);
        assert_eq!(x.len(), m, "input width");
        assert_eq!(state.len(), n, "state length");
        let (w, r) = self.matrices(params);

        // Sources: x, h, 1.
        cache.sources[..m].copy_from_slice(x);
        cache.sources[m..m + n].copy_from_slice(state);
        cache.sources[m + n] = T::one();

        // a = x·W + h·R + b, then h' = tanh(a).
        let a = &mut cache.acts;
        match self.b {
            Some(b) => a.copy_from_slice(&params[b..b + n]),
            None => a.fill(T::zero()),
        }
        add_product(a, x, w);
        add_product(a, state, r);
        for (h, a) in next.iter_mut().zip(a.iter_mut()) {
            *a = a.tanh();
            *h = *a;
        }
    }

    fn backward(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        d_next: &[T],
        d_gates: &mut [T],
        d_state: &mut [T],
    ) {
        let (_, r) = self.matrices(params);
        // ∂L/∂a = ∂L/∂h' ⊙ (1 − h'²); ∂L/∂h = R · ∂L/∂a.
        for ((d, &h), &dn) in d_gates.iter_mut().zip(&cache.acts).zip(d_next) {
            *d = dn * (T::one() - h * h);
        }
        product_transposed(d_state, r, d_gates);
    }

    fn state_jacobian(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        out: &mut StateJacobian<T>,
    ) {
        let n = self.shape.hidden;
        let (_, r) = self.matrices(params);
        // ∂h'[j]/∂h[k] = (1 − h'[j]²) R[k, j].
        for j in 0..n {
            let slope = T::one() - cache.acts[j] * cache.acts[j];
            for k in 0..n {
                out.dh[(k, j)] = slope * r[k * n + j];
            }
        }
    }

    fn gate_jacobian(
        &self,
        _params: &[T],
        cache: &StepCache<T>,
        out: &mut GateJacobian<T>,
    ) {
        for (d, &h) in out.diag.iter_mut().zip(&cache.acts) {
            *d = T::one() - h * h;
        }
    }

    fn unit_jacobian(&self, params: &[T], cache: &StepCache<T>, out: &mut [T]) {
        let n = self.shape.hidden;
        let (_, r) = self.matrices(params);
        for (c, o) in out.iter_mut().enumerate().take(n) {
            *o = (T::one() - cache.acts[c] * cache.acts[c]) * r[c * n + c];
        }
    }
}
