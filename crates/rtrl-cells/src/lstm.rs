//! The long short-term memory cell.

use std::marker::PhantomData;

use rtrl_core::{
    Cell, CellShape, GateJacobian, ParamLayout, Result, Scalar, StateJacobian, StepCache,
};

use crate::common::{add_product, add_product_transposed, gate_specs};
use crate::CellConfig;

/// Gate indices, in the specification's block order.
const INPUT: usize = 0;
const OUTPUT: usize = 1;
const FORGET: usize = 2;
const CANDIDATE: usize = 3;

/// The LSTM of the specification; its state is `(h, c)`, `h` first:
///
/// ```text
/// i = σ(x·W_i + h·R_i)     o = σ(x·W_o + h·R_o)
/// f = σ(x·W_f + h·R_f)     g = tanh(x·W_z + h·R_z)
/// c' = f ⊙ c + i ⊙ g       h' = o ⊙ tanh(c')
/// ```
///
/// Gates: `i` (0), `o` (1), `f` (2), `z` (3). Sources: `x` (0), `h` (1),
/// the constant 1 (2). All gates act unit-wise; `D_t`'s columns for `c`
/// are diagonal (`∂c'/∂c = diag(f)`), so only the `h` columns are dense.
#[derive(Debug, Clone)]
pub struct Lstm<T> {
    shape: CellShape,
    layout: ParamLayout,
    offsets: [usize; 4],
    w: [usize; 4],
    r: [usize; 4],
    b: Option<[usize; 4]>,
    _scalar: PhantomData<T>,
}

/// Cached values, each `n` long: the gates, `tanh(c')` and the old `c`.
struct Acts<'a, T> {
    i: &'a [T],
    o: &'a [T],
    f: &'a [T],
    g: &'a [T],
    tc: &'a [T],
    c: &'a [T],
}

const NAMES: [&str; 4] = ["_i", "_o", "_f", "_z"];

impl<T: Scalar> Lstm<T> {
    /// An LSTM of the configured sizes (the `kind` field is ignored).
    pub fn new(config: &CellConfig) -> Result<Self> {
        config.validate()?;
        let (m, n) = (config.input, config.hidden);
        let specs =
            gate_specs(&NAMES, m, n, config.outputs, config.bias, &[1, 1, 1, 1], 2);
        let layout = ParamLayout::new(&specs, config.sparsity)?;
        let offset = |name: &str| layout.block(name).map(|b| b.offset);
        let offsets4 =
            |p: &str| NAMES.map(|g| offset(&format!("{p}{g}")).expect("block exists"));
        let b = config.bias.then(|| offsets4("b"));
        Ok(Lstm {
            shape: CellShape {
                input: m,
                hidden: n,
                state: 2 * n,
                gates: 4,
                outputs: config.outputs,
            },
            offsets: [0, m, m + n, m + n + 1],
            w: offsets4("W"),
            r: offsets4("R"),
            b,
            layout,
            _scalar: PhantomData,
        })
    }

    fn recurrent<'a>(&self, params: &'a [T], gate: usize) -> &'a [T] {
        let n = self.shape.hidden;
        &params[self.r[gate]..self.r[gate] + n * n]
    }

    fn acts<'a>(&self, cache: &'a StepCache<T>) -> Acts<'a, T> {
        let n = self.shape.hidden;
        let a = &cache.acts;
        Acts {
            i: &a[..n],
            o: &a[n..2 * n],
            f: &a[2 * n..3 * n],
            g: &a[3 * n..4 * n],
            tc: &a[4 * n..5 * n],
            c: &a[5 * n..6 * n],
        }
    }
}

impl<T: Scalar> Cell<T> for Lstm<T> {
    fn shape(&self) -> CellShape {
        self.shape
    }

    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn name(&self) -> &'static str {
        "lstm"
    }

    fn source_offsets(&self) -> &[usize] {
        &self.offsets
    }

    fn dense_gates(&self) -> &[bool] {
        &[false; 4]
    }

    fn new_cache(&self) -> StepCache<T> {
        StepCache {
            sources: vec![T::zero(); self.offsets[3]],
            acts: vec![T::zero(); 6 * self.shape.hidden],
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
        assert_eq!(state.len(), 2 * n, "state length");
        let (h, c) = state.split_at(n);

        // Sources x, h, 1; the old c is kept for ∂c'/∂f.
        cache.sources[..m].copy_from_slice(x);
        cache.sources[m..m + n].copy_from_slice(h);
        cache.sources[m + n] = T::one();
        let acts = &mut cache.acts;
        acts[5 * n..6 * n].copy_from_slice(c);

        // Pre-activations of the four gates.
        for gate in 0..4 {
            let a = &mut acts[gate * n..(gate + 1) * n];
            match self.b {
                Some(b) => a.copy_from_slice(&params[b[gate]..b[gate] + n]),
                None => a.fill(T::zero()),
            }
            add_product(a, x, &params[self.w[gate]..self.w[gate] + m * n]);
            add_product(a, h, self.recurrent(params, gate));
        }

        // i, o, f in (0, 1), g in (−1, 1); c' = f c + i g; h' = o tanh(c').
        for a in &mut acts[..3 * n] {
            *a = a.sigmoid();
        }
        for a in &mut acts[3 * n..4 * n] {
            *a = a.tanh();
        }
        let (next_h, next_c) = next.split_at_mut(n);
        for j in 0..n {
            let (i, o, f, g) = (acts[j], acts[n + j], acts[2 * n + j], acts[3 * n + j]);
            next_c[j] = f * c[j] + i * g;
            let tc = next_c[j].tanh();
            acts[4 * n + j] = tc;
            next_h[j] = o * tc;
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
        let Acts { i, o, f, g, tc, c } = self.acts(cache);
        let (d_h_next, d_c_next) = d_next.split_at(n);
        let (d_h, d_c) = d_state.split_at_mut(n);
        let one = T::one();

        // Gate pre-activation gradients; ∂L/∂c' collects both paths.
        for j in 0..n {
            let dc = d_c_next[j] + d_h_next[j] * o[j] * (one - tc[j] * tc[j]);
            d_gates[INPUT * n + j] = dc * g[j] * i[j] * (one - i[j]);
            d_gates[OUTPUT * n + j] = d_h_next[j] * tc[j] * o[j] * (one - o[j]);
            d_gates[FORGET * n + j] = dc * c[j] * f[j] * (one - f[j]);
            d_gates[CANDIDATE * n + j] = dc * i[j] * (one - g[j] * g[j]);
            d_c[j] = dc * f[j];
        }

        // ∂L/∂h = Σ_g R_g · ∂L/∂a_g.
        d_h.fill(T::zero());
        for gate in 0..4 {
            add_product_transposed(
                d_h,
                self.recurrent(params, gate),
                &d_gates[gate * n..(gate + 1) * n],
            );
        }
    }

    fn state_jacobian(
        &self,
        params: &[T],
        cache: &StepCache<T>,
        out: &mut StateJacobian<T>,
    ) {
        let n = self.shape.hidden;
        let Acts { i, o, f, g, tc, c } = self.acts(cache);
        let one = T::one();
        let (r_i, r_o, r_f, r_z) = (
            self.recurrent(params, INPUT),
            self.recurrent(params, OUTPUT),
            self.recurrent(params, FORGET),
            self.recurrent(params, CANDIDATE),
        );

        // Per unit j: how c'_j moves with each gate's pre-activation, and
        // how h'_j moves with c'_j and with a_o[j].
        for j in 0..n {
            let e_i = g[j] * i[j] * (one - i[j]);
            let e_f = c[j] * f[j] * (one - f[j]);
            let e_z = i[j] * (one - g[j] * g[j]);
            let h_from_c = o[j] * (one - tc[j] * tc[j]);
            let h_from_o = tc[j] * o[j] * (one - o[j]);
            let dc = |k: usize| {
                let kj = k * n + j;
                r_i[kj] * e_i + r_f[kj] * e_f + r_z[kj] * e_z
            };
            for (k, v) in out.dh.col_as_slice_mut(n + j).iter_mut().enumerate() {
                *v = dc(k);
            }
            for (k, v) in out.dh.col_as_slice_mut(j).iter_mut().enumerate() {
                *v = h_from_c * dc(k) + h_from_o * r_o[k * n + j];
            }

            // The c columns: ∂h'_j/∂c_j and ∂c'_j/∂c_j = f_j.
            out.diag[j] = h_from_c * f[j];
            out.diag[n + j] = f[j];
        }
    }

    fn gate_jacobian(
        &self,
        _params: &[T],
        cache: &StepCache<T>,
        out: &mut GateJacobian<T>,
    ) {
        let n = self.shape.hidden;
        let s = 2 * n;
        let Acts { i, o, f, g, tc, c } = self.acts(cache);
        let one = T::one();
        for j in 0..n {
            let h_from_c = o[j] * (one - tc[j] * tc[j]);
            let dc = [
                (INPUT, g[j] * i[j] * (one - i[j])),
                (FORGET, c[j] * f[j] * (one - f[j])),
                (CANDIDATE, i[j] * (one - g[j] * g[j])),
            ];
            for (gate, e) in dc {
                out.diag[gate * s + j] = h_from_c * e;
                out.diag[gate * s + n + j] = e;
            }
            out.diag[OUTPUT * s + j] = tc[j] * o[j] * (one - o[j]);
            out.diag[OUTPUT * s + n + j] = T::zero();
        }
    }

    fn unit_jacobian(&self, params: &[T], cache: &StepCache<T>, out: &mut [T]) {
        let n = self.shape.hidden;
        let Acts { i, o, f, g, tc, c } = self.acts(cache);
        let one = T::one();
        for j in 0..n {
            let jj = j * n + j;
            let dc = self.recurrent(params, INPUT)[jj] * g[j] * i[j] * (one - i[j])
                + self.recurrent(params, FORGET)[jj] * c[j] * f[j] * (one - f[j])
                + self.recurrent(params, CANDIDATE)[jj] * i[j] * (one - g[j] * g[j]);
            let h_from_c = o[j] * (one - tc[j] * tc[j]);
            let h_from_o = tc[j] * o[j] * (one - o[j]);
            let block = &mut out[4 * j..4 * j + 4];
            block[0] = h_from_c * dc + h_from_o * self.recurrent(params, OUTPUT)[jj];
            block[1] = h_from_c * f[j];
            block[2] = dc;
            block[3] = f[j];
        }
    }
}
