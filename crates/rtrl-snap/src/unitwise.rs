//! SnAp-1: each parameter keeps the rows of its own target unit only.
//!
//! The block of unit `c` is then a single row (two for an LSTM) over the
//! parameters of column `c`. Those rows are stored interleaved in
//! kept-parameter order, component by component, so that the parameters
//! of one row `k` of a weight matrix (one source value `u[k]`, target
//! units `0..n` in turn) form one contiguous run and the whole update is
//! a handful of vector operations over `P` entries:
//!
//! ```text
//! J[c, p] ← D_t[c, c] · J[c, p] + u[k] · ∂s'[c]/∂a_g[c],     p = M[k, c]
//! ```
//!
//! (with the `k × k` unit block of `D_t` for an LSTM).

use rtrl_core::{Cell, GateJacobian, ParamLayout, Scalar, StepCache, MASKED};

use crate::pattern::SnapPattern;

/// Consecutive kept entries of one core block: a whole unmasked block, or
/// the kept entries of one row of a masked one.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Gate the block feeds.
    gate: usize,
    /// Index of the first row's source value `u[k]` in the step cache.
    source: usize,
    /// Rows covered (consecutive source values).
    rows: usize,
    /// Kept-parameter index of the run's first entry.
    param: usize,
    /// Flat index of entry `(k, 0)` of the first row.
    flat: usize,
    /// `None` when every column is kept; else (one row only) the range of
    /// the kept columns in `UnitWise::columns`.
    columns: Option<(usize, usize)>,
}

/// Units updated together in the unmasked kernels (one vector register
/// of `f32` on AVX2).
const LANES: usize = 8;

/// The SnAp-1 influence and its update.
#[derive(Debug, Clone)]
pub(crate) struct UnitWise<T> {
    hidden: usize,
    components: usize,
    params: usize,
    runs: Vec<Run>,
    /// Kept columns of the masked rows, concatenated.
    columns: Vec<u32>,
    /// `J`: component `a` of parameter `p` at `a · P + p`.
    j: Vec<T>,
    /// The cell's unit blocks of `D_t`, `c · k² + a · k + b`.
    unit_d: Vec<T>,
    /// The same, one vector of `n` per `(a, b)`: `(a · k + b) · n + c`.
    d: Vec<T>,
    /// `∂s'[a·n + c]/∂a_g[c]` at `(g · k + a) · n + c`.
    gate_factor: Vec<T>,
}

impl<T: Scalar> UnitWise<T> {
    /// Runs and buffers for the core blocks of `layout`.
    pub(crate) fn new(
        layout: &ParamLayout,
        source_offsets: &[usize],
        gates: usize,
        pattern: &SnapPattern,
    ) -> Self {
        let (n, k, p) = (pattern.hidden(), pattern.components(), pattern.num_params());
        let column_of = layout.column_of();

        // One run per unmasked block; one per row of a masked block,
        // listing its kept columns.
        let mut runs = Vec::new();
        let mut columns = Vec::new();
        for block in layout.core_blocks() {
            if block.mask.is_none() {
                if block.rows > 0 {
                    runs.push(Run {
                        gate: block.gate,
                        source: source_offsets[block.source],
                        rows: block.rows,
                        param: column_of[block.offset] as usize,
                        flat: block.offset,
                        columns: None,
                    });
                }
                continue;
            }
            for row in 0..block.rows {
                let flat = block.offset + row * block.cols;
                let kept: Vec<u32> = (0..block.cols)
                    .filter(|&c| column_of[flat + c] != MASKED)
                    .map(|c| c as u32)
                    .collect();
                let Some(&first) = kept.first() else { continue };
                let columns = if kept.len() == block.cols {
                    None
                } else {
                    columns.extend_from_slice(&kept);
                    Some((columns.len() - kept.len(), kept.len()))
                };
                runs.push(Run {
                    gate: block.gate,
                    source: source_offsets[block.source] + row,
                    rows: 1,
                    param: column_of[flat + first as usize] as usize,
                    flat,
                    columns,
                });
            }
        }

        UnitWise {
            hidden: n,
            components: k,
            params: p,
            runs,
            columns,
            j: vec![T::zero(); k * p],
            unit_d: vec![T::zero(); n * k * k],
            d: vec![T::zero(); n * k * k],
            gate_factor: vec![T::zero(); gates * k * n],
        }
    }

    /// One step of the update, adding `(∂L/∂h) · J^h` to `grad`.
    pub(crate) fn step(
        &mut self,
        cell: &dyn Cell<T>,
        theta: &[T],
        cache: &StepCache<T>,
        gates: &GateJacobian<T>,
        fresh: bool,
        dl_dh: &[T],
        grad: &mut [T],
    ) {
        let (n, k, p) = (self.hidden, self.components, self.params);
        let s = n * k;

        // The unit blocks of D_t, one vector per (a, b); zero (and J zero)
        // on a fresh sequence.
        if fresh {
            self.j.fill(T::zero());
            self.unit_d.fill(T::zero());
        } else {
            cell.unit_jacobian(theta, cache, &mut self.unit_d);
        }
        for (c, block) in self.unit_d.chunks_exact(k * k).enumerate() {
            for (ab, &v) in block.iter().enumerate() {
                self.d[ab * n + c] = v;
            }
        }

        // ∂s'[a·n + c]/∂a_g[c]: the diagonal of every gate's effect.
        for (g, dense) in gates.dense.iter().enumerate() {
            for a in 0..k {
                let out = &mut self.gate_factor[(g * k + a) * n..][..n];
                match dense {
                    Some(m) => {
                        for (c, o) in out.iter_mut().enumerate() {
                            *o = m[(c, a * n + c)];
                        }
                    }
                    None => out.copy_from_slice(&gates.diag[g * s + a * n..][..n]),
                }
            }
        }

        // The update, run by run.
        let dl = &dl_dh[..n];
        let (j_h, j_c) = self.j.split_at_mut(p);
        for run in &self.runs {
            let g = &self.gate_factor[run.gate * k * n..][..k * n];
            let span = run.param..run.param + run.rows * n;
            match (k, run.columns) {
                (1, None) => unit_block(
                    &mut j_h[span],
                    &mut grad[run.flat..run.flat + run.rows * n],
                    &self.d,
                    g,
                    dl,
                    &cache.sources[run.source..run.source + run.rows],
                ),
                (_, None) => pair_block(
                    &mut j_h[span.clone()],
                    &mut j_c[span],
                    &mut grad[run.flat..run.flat + run.rows * n],
                    &self.d,
                    g,
                    dl,
                    &cache.sources[run.source..run.source + run.rows],
                ),
                (1, Some((start, len))) => {
                    // One masked row: the kept columns only.
                    let u = cache.sources[run.source];
                    let columns = &self.columns[start..start + len];
                    let j = &mut j_h[run.param..run.param + len];
                    for (v, &c) in j.iter_mut().zip(columns) {
                        let c = c as usize;
                        *v = self.d[c] * *v + g[c] * u;
                        grad[run.flat + c] += dl[c] * *v;
                    }
                }
                (_, Some((start, len))) => {
                    let u = cache.sources[run.source];
                    let columns = &self.columns[start..start + len];
                    let jh = &mut j_h[run.param..run.param + len];
                    let jc = &mut j_c[run.param..run.param + len];
                    let d = &self.d;
                    for ((h, cc), &c) in jh.iter_mut().zip(jc.iter_mut()).zip(columns) {
                        let c = c as usize;
                        let (old_h, old_c) = (*h, *cc);
                        *h = d[c] * old_h + d[n + c] * old_c + g[c] * u;
                        *cc = d[2 * n + c] * old_h + d[3 * n + c] * old_c + g[n + c] * u;
                        grad[run.flat + c] += dl[c] * *h;
                    }
                }
            }
        }
    }

    /// Writes the stored entries into the dense `|s| × P` matrix `out`.
    pub(crate) fn influence(&self, pattern: &SnapPattern, out: &mut faer::Mat<T>) {
        let (n, p) = (self.hidden, self.params);
        for a in 0..self.components {
            for (param, &v) in self.j[a * p..(a + 1) * p].iter().enumerate() {
                out[(a * n + pattern.target_of(param), param)] = v;
            }
        }
    }
}

/// An unmasked block, one state component (`h`): for every row `k`
/// (source value `u[k]`) and unit `c`,
/// `J[k, c] ← d[c] · J[k, c] + u[k] · g[c]` and `grad[k, c] += dl[c] · J[k, c]`.
///
/// Units go [`LANES`] at a time, their factors held in registers while the
/// rows pass.
fn unit_block<T: Scalar>(
    j: &mut [T],
    grad: &mut [T],
    d: &[T],
    g: &[T],
    dl: &[T],
    u: &[T],
) {
    let n = dl.len();
    let lanes = |v: &[T], c0: usize| -> [T; LANES] {
        v[c0..c0 + LANES].try_into().expect("LANES entries")
    };

    // Full groups of LANES units.
    let mut c0 = 0;
    while c0 + LANES <= n {
        let (d, g, dl) = (lanes(d, c0), lanes(g, c0), lanes(dl, c0));
        for (row, &u) in u.iter().enumerate() {
            let j = &mut j[row * n + c0..][..LANES];
            let grad = &mut grad[row * n + c0..][..LANES];
            for l in 0..LANES {
                let v = d[l] * j[l] + g[l] * u;
                j[l] = v;
                grad[l] += dl[l] * v;
            }
        }
        c0 += LANES;
    }

    // The remaining units, one at a time.
    for (row, &u) in u.iter().enumerate() {
        for c in c0..n {
            let v = d[c] * j[row * n + c] + g[c] * u;
            j[row * n + c] = v;
            grad[row * n + c] += dl[c] * v;
        }
    }
}

/// An unmasked block, two state components (`h`, `c`), through the
/// `2 × 2` unit blocks of `D_t` (`d` holds the four vectors
/// `∂h'/∂h, ∂h'/∂c, ∂c'/∂h, ∂c'/∂c`, `g` the two vectors `∂h'/∂a_g`,
/// `∂c'/∂a_g`); as [`unit_block`] otherwise.
fn pair_block<T: Scalar>(
    j_h: &mut [T],
    j_c: &mut [T],
    grad: &mut [T],
    d: &[T],
    g: &[T],
    dl: &[T],
    u: &[T],
) {
    let n = dl.len();
    let lanes = |v: &[T], c0: usize| -> [T; LANES] {
        v[c0..c0 + LANES].try_into().expect("LANES entries")
    };
    let (hh, hc, ch, cc) = (&d[..n], &d[n..2 * n], &d[2 * n..3 * n], &d[3 * n..4 * n]);
    let (g_h, g_c) = (&g[..n], &g[n..2 * n]);

    // Full groups of LANES units.
    let mut c0 = 0;
    while c0 + LANES <= n {
        let (hh, hc, ch, cc) =
            (lanes(hh, c0), lanes(hc, c0), lanes(ch, c0), lanes(cc, c0));
        let (g_h, g_c, dl) = (lanes(g_h, c0), lanes(g_c, c0), lanes(dl, c0));
        for (row, &u) in u.iter().enumerate() {
            let at = row * n + c0;
            let j_h = &mut j_h[at..][..LANES];
            let j_c = &mut j_c[at..][..LANES];
            let grad = &mut grad[at..][..LANES];
            for l in 0..LANES {
                let (old_h, old_c) = (j_h[l], j_c[l]);
                let new_h = hh[l] * old_h + hc[l] * old_c + g_h[l] * u;
                j_h[l] = new_h;
                j_c[l] = ch[l] * old_h + cc[l] * old_c + g_c[l] * u;
                grad[l] += dl[l] * new_h;
            }
        }
        c0 += LANES;
    }

    // The remaining units, one at a time.
    for (row, &u) in u.iter().enumerate() {
        for c in c0..n {
            let at = row * n + c;
            let (old_h, old_c) = (j_h[at], j_c[at]);
            let new_h = hh[c] * old_h + hc[c] * old_c + g_h[c] * u;
            j_h[at] = new_h;
            j_c[at] = ch[c] * old_h + cc[c] * old_c + g_c[c] * u;
            grad[at] += dl[c] * new_h;
        }
    }
}
