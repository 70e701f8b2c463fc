//! The gated recurrent unit.

use std::marker::PhantomData;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatRef, Par};

use rtrl_core::{
    Cell, CellShape, GateJacobian, ParamLayout, Result, Scalar, StateJacobian, StepCache,
};

use crate::common::{
    add_product, add_product_transposed, gate_specs, product_transposed,
};
use crate::CellConfig;

/// Gate indices, in the specification's block order.
const RESET: usize = 0;
const UPDATE: usize = 1;
const CANDIDATE: usize = 2;

/// The GRU of the specification:
///
/// ```text
/// z  = σ(x·W_z + h·R_z)
/// r  = σ(x·W_r + h·R_r)
/// h~ = tanh(x·W_h + (r ⊙ h)·R_h)
/// h' = (1 − z) ⊙ h + z ⊙ h~
/// ```
///
/// Gates: reset `r` (0), update `z` (1), candidate `h~` (2). Sources:
/// `x` (0), `h` (1), `r ⊙ h` (2), the constant 1 (3). The reset gate's
/// effect spreads over units through `R_h`, so its
/// [`GateJacobian`] entry is dense.
#[derive(Debug, Clone)]
pub struct Gru<T> {
    shape: CellShape,
    layout: ParamLayout,
    offsets: [usize; 5],
    w: [usize; 3],
    r: [usize; 3],
    b: Option<[usize; 3]>,
    _scalar: PhantomData<T>,
}

/// Views of the cached activations `r, z, h~` (each `n` long).
struct Acts<'a, T> {
    r: &'a [T],
    z: &'a [T],
    cand: &'a [T],
}

impl<T: Scalar> Gru<T> {
    /// A GRU of the configured sizes (the `kind` field is ignored).
    pub fn new(config: &CellConfig) -> Result<Self> {
        config.validate()?;
        let (m, n) = (config.input, config.hidden);
        let specs = gate_specs(
            &["_r", "_z", "_h"],
            m,
            n,
            config.outputs,
            config.bias,
            &[1, 1, 2],
            3,
        );
        let layout = ParamLayout::new(&specs, config.sparsity)?;
        let offset = |name: &str| layout.block(name).map(|b| b.offset);
        let offsets3 = |p: &str| {
            ["_r", "_z", "_h"].map(|g| offset(&format!("{p}{g}")).expect("block exists"))
        };
        let b = config.bias.then(|| offsets3("b"));
        Ok(Gru {
            shape: CellShape {
                input: m,
                hidden: n,
                state: n,
                gates: 3,
                outputs: config.outputs,
            },
            offsets: [0, m, m + n, m + 2 * n, m + 2 * n + 1],
            w: offsets3("W"),
            r: offsets3("R"),
            b,
            layout,
            _scalar: PhantomData,
        })
    }

    fn recurrent<'a>(&self, params: &'a [T], gate: usize) -> &'a [T] {
        let n = self.shape.hidden;
        &params[self.r[gate]..self.r[gate] + n * n]
    }

    fn input<'a>(&self, params: &'a [T], gate: usize) -> &'a [T] {
        let (m, n) = (self.shape.input, self.shape.hidden);
        &params[self.w[gate]..self.w[gate] + m * n]
    }

    fn acts<'a>(&self, cache: &'a StepCache<T>) -> Acts<'a, T> {
        let n = self.shape.hidden;
        Acts {
            r: &cache.acts[..n],
            z: &cache.acts[n..2 * n],
            cand: &cache.acts[2 * n..3 * n],
        }
    }

    fn hidden_source<'a>(&self, cache: &'a StepCache<T>) -> &'a [T] {
        &cache.sources[self.offsets[1]..self.offsets[2]]
    }
}

impl<T: Scalar> Cell<T> for Gru<T> {
    fn shape(&self) -> CellShape {
        self.shape
    }

    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn name(&self) -> &'static str {
        "gru"
    }

    fn source_offsets(&self) -> &[usize] {
        &self.offsets
    }

    fn dense_gates(&self) -> &[bool] {
        &[true, false, false]
    }

    fn new_cache(&self) -> StepCache<T> {
        StepCache {
            sources: vec![T::zero(); self.offsets[4]],
            acts: vec![T::zero(); 3 * self.shape.hidden],
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

        // Sources x, h and 1; r ⊙ h follows once r is known.
        let (sources, acts) = (&mut cache.sources, &mut cache.acts);
        sources[..m].copy_from_slice(x);
        sources[m..m + n].copy_from_slice(state);
        sources[m + 2 * n] = T::one();

        // Pre-activations of all three gates (biases, inputs, recurrences
        // of r and z).
        for gate in 0..3 {
            let a = &mut acts[gate * n..(gate + 1) * n];
            match self.b {
                Some(b) => a.copy_from_slice(&params[b[gate]..b[gate] + n]),
                None => a.fill(T::zero()),
            }
            add_product(a, x, self.input(params, gate));
        }
        for gate in [RESET, UPDATE] {
            add_product(
                &mut acts[gate * n..(gate + 1) * n],
                state,
                self.recurrent(params, gate),
            );
        }

        // r and z in (0, 1); then r ⊙ h feeds the candidate.
        for a in &mut acts[..2 * n] {
            *a = a.sigmoid();
        }
        for k in 0..n {
            sources[m + n + k] = acts[k] * state[k];
        }
        let (gates, cand) = acts.split_at_mut(2 * n);
        add_product(cand, &sources[m + n..m + 2 * n], self.recurrent(params, CANDIDATE));

        // h~ in (−1, 1); h' = (1 − z) h + z h~.
        let z = &gates[n..];
        for j in 0..n {
            cand[j] = cand[j].tanh();
            next[j] = (T::one() - z[j]) * state[j] + z[j] * cand[j];
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
        let n = self.shape.hidden;
        let Acts { r, z, cand } = self.acts(cache);
        let h = self.hidden_source(cache);
        let (d_r, rest) = d_gates.split_at_mut(n);
        let (d_z, d_c) = rest.split_at_mut(n);

        // Candidate and update gate pre-activations.
        for j in 0..n {
            d_c[j] = d_next[j] * z[j] * (T::one() - cand[j] * cand[j]);
            d_z[j] = d_next[j] * (cand[j] - h[j]) * z[j] * (T::one() - z[j]);
        }

        // ∂L/∂(r ⊙ h) = R_h · ∂L/∂a_h, kept in d_state for now.
        product_transposed(d_state, self.recurrent(params, CANDIDATE), d_c);
        for k in 0..n {
            let d_q = d_state[k];
            d_r[k] = d_q * h[k] * r[k] * (T::one() - r[k]);
            d_state[k] = d_next[k] * (T::one() - z[k]) + d_q * r[k];
        }

        // The recurrences of z and r.
        add_product_transposed(d_state, self.recurrent(params, UPDATE), d_z);
        add_product_transposed(d_state, self.recurrent(params, RESET), d_r);
    }

    fn state_jacobian(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        out: &mut StateJacobian<T>,
    ) {
        let n = self.shape.hidden;
        let Acts { r, z, cand } = self.acts(cache);
        let h = self.hidden_source(cache);
        let (r_r, r_z, r_h) = (
            self.recurrent(params, RESET),
            self.recurrent(params, UPDATE),
            self.recurrent(params, CANDIDATE),
        );

        // ∂h'[j]/∂h[k] = (1 − z_j) δ_kj + (h~_j − h_j) z'_j R_z[k, j]
        //   + z_j (1 − h~_j²) (r_k R_h[k, j] + Σ_i R_r[k, i] h_i r'_i R_h[i, j]).
        // The triple sum is one product R_r · (diag(h r') R_h), in faer.
        for i in 0..n {
            let s = h[i] * r[i] * (T::one() - r[i]);
            for (w, &v) in
                out.work[i * n..(i + 1) * n].iter_mut().zip(&r_h[i * n..(i + 1) * n])
            {
                *w = s * v;
            }
        }
        matmul(
            out.dh.as_mut(),
            Accum::Replace,
            MatRef::from_row_major_slice(r_r, n, n),
            MatRef::from_row_major_slice(&out.work, n, n),
            T::one(),
            Par::Seq,
        );

        // The remaining terms, one column j (one new unit) at a time.
        for j in 0..n {
            let through_candidate = z[j] * (T::one() - cand[j] * cand[j]);
            let through_update = (cand[j] - h[j]) * z[j] * (T::one() - z[j]);
            let col = out.dh.col_as_slice_mut(j);
            for k in 0..n {
                col[k] = (col[k] + r[k] * r_h[k * n + j]) * through_candidate
                    + through_update * r_z[k * n + j];
            }
            col[j] += T::one() - z[j];
        }
    }

    fn gate_jacobian(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        out: &mut GateJacobian<T>,
    ) {
        let n = self.shape.hidden;
        let Acts { r, z, cand } = self.acts(cache);
        let h = self.hidden_source(cache);
        let r_h = self.recurrent(params, CANDIDATE);

        // Unit-wise gates: ∂h'_j/∂a_z[j] and ∂h'_j/∂a_h[j].
        for j in 0..n {
            out.diag[UPDATE * n + j] = (cand[j] - h[j]) * z[j] * (T::one() - z[j]);
            out.diag[CANDIDATE * n + j] = z[j] * (T::one() - cand[j] * cand[j]);
        }

        // Reset gate: ∂h'_j/∂a_r[c] = r'_c h_c R_h[c, j] z_j (1 − h~_j²).
        let dense = out.dense[RESET].as_mut().expect("the reset gate is dense");
        for c in 0..n {
            let s = r[c] * (T::one() - r[c]) * h[c];
            for j in 0..n {
                dense[(c, j)] =
                    s * r_h[c * n + j] * z[j] * (T::one() - cand[j] * cand[j]);
            }
        }
    }

    fn unit_jacobian(&self, params: &[T], cache: &StepCache<T>, out: &mut [T]) {
        let n = self.shape.hidden;
        let Acts { r, z, cand } = self.acts(cache);
        let h = self.hidden_source(cache);
        let (r_r, r_z, r_h) = (
            self.recurrent(params, RESET),
            self.recurrent(params, UPDATE),
            self.recurrent(params, CANDIDATE),
        );
        // The diagonal of the state Jacobian, O(n²).
        for c in 0..n {
            let through_reset: T = (0..n)
                .map(|i| {
                    r_r[c * n + i] * h[i] * r[i] * (T::one() - r[i]) * r_h[i * n + c]
                })
                .sum();
            out[c] = (T::one() - z[c])
                + (cand[c] - h[c]) * z[c] * (T::one() - z[c]) * r_z[c * n + c]
                + z[c]
                    * (T::one() - cand[c] * cand[c])
                    * (r[c] * r_h[c * n + c] + through_reset);
        }
    }
}
