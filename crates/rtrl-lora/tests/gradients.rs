//! LoRA-RTRL checked against BPTT through the LoRA-parametrised cell and
//! against finite differences; merging, counting and initialisation.

use std::sync::Arc;

use proptest::prelude::*;
use rand::Rng;
use rtrl_cells::{build, CellConfig, CellKind};
use rtrl_core::check::{relative_error, Probe};
use rtrl_core::rng::{seeded, Stream};
use rtrl_core::{BlockKind, Bptt, Cell, Estimator, Rtrl, Sparsity};
use rtrl_lora::{init_factors, merge, LoraConfig, LoraLayout, LoraRtrl};

/// The reference: full BPTT on the merged weights, its gradient of the
/// core `dM` chained to the factors by hand,
/// `dB = (α/r)·dM·Aᵀ` and `dA = (α/r)·Bᵀ·dM`.
struct LoraBptt {
    inner: Bptt<f64>,
    lora: LoraLayout,
    base: Vec<f64>,
    effective: Vec<f64>,
    d_core: Vec<f64>,
}

impl LoraBptt {
    fn new(cell: Arc<dyn Cell<f64>>, base: Vec<f64>, config: LoraConfig) -> Self {
        let lora = LoraLayout::new(cell.layout(), &config).unwrap();
        let core_len = cell.layout().core_len();
        LoraBptt {
            inner: Bptt::new(cell),
            lora,
            effective: base.clone(),
            base,
            d_core: vec![0.0; core_len],
        }
    }

    /// Adds the chained factor gradient of `d_core` to `grad`, then
    /// clears `d_core`.
    fn chain(&mut self, factors: &[f64], grad: &mut [f64]) {
        for block in self.lora.blocks() {
            let (rows, cols, rank) = (block.rows, block.cols, block.rank);
            let d_m = &self.d_core[block.core_offset..][..rows * cols];
            for k in 0..rows {
                for j in 0..rank {
                    for c in 0..cols {
                        let d = block.scale * d_m[k * cols + c];
                        grad[block.b_offset + k * rank + j] +=
                            d * factors[block.a_offset + j * cols + c];
                        grad[block.a_offset + j * cols + c] +=
                            d * factors[block.b_offset + k * rank + j];
                    }
                }
            }
        }
        self.d_core.fill(0.0);
    }
}

impl Estimator<f64> for LoraBptt {
    fn name(&self) -> String {
        "BPTT through LoRA".into()
    }

    fn num_params(&self) -> usize {
        self.lora.len()
    }

    fn hidden(&self) -> usize {
        self.inner.hidden()
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.d_core.fill(0.0);
    }

    fn forward(&mut self, theta: &[f64], x: &[f64]) -> &[f64] {
        merge(&self.lora, &self.base, theta, &mut self.effective);
        self.inner.forward(&self.effective, x)
    }

    fn backward(&mut self, theta: &[f64], dl_dh: &[f64], grad: &mut [f64]) -> bool {
        let ready = self.inner.backward(&self.effective, dl_dh, &mut self.d_core);
        if ready {
            self.chain(theta, grad);
        }
        ready
    }

    fn flush(&mut self, theta: &[f64], grad: &mut [f64]) -> bool {
        let ready = self.inner.flush(&self.effective, &mut self.d_core);
        if ready {
            self.chain(theta, grad);
        }
        ready
    }

    fn jacobian_entries(&self) -> usize {
        0
    }

    fn jacobian_bytes(&self) -> usize {
        0
    }
}

/// A random cell with random ranks (1 up to beyond the matrix sizes,
/// drawn independently for `W` and `R`), `α`, sequence length and seed.
fn cases() -> impl Strategy<Value = (CellConfig, LoraConfig, u64, usize)> {
    (
        prop_oneof![Just(CellKind::Gru), Just(CellKind::Lstm), Just(CellKind::Rnn)],
        1usize..=5,
        1usize..=8,
        any::<bool>(),
        prop_oneof![3 => Just(1.0), 1 => 0.3f64..1.0],
        prop_oneof![3 => Just(1.0), 1 => 0.5f64..1.0],
        1usize..=7,
        1usize..=10,
        prop_oneof![Just(1.0), 0.25f64..4.0],
        any::<u64>(),
        1usize..=12,
    )
        .prop_map(
            |(kind, input, hidden, bias, rec, io, r_in, r_rec, alpha, seed, steps)| {
                let sparsity =
                    Sparsity { recurrent_density: rec, inout_density: io, seed };
                let cell = CellConfig { kind, input, hidden, outputs: 1, bias, sparsity };
                let lora = LoraConfig { rank_input: r_in, rank_recurrent: r_rec, alpha };
                (cell, lora, seed, steps)
            },
        )
}

/// A base with non-zero biases (core part only).
fn base(cell: &dyn Cell<f64>, seed: u64) -> Vec<f64> {
    let layout = cell.layout();
    let mut theta: Vec<f64> = layout.init(seed);
    for block in layout.blocks().iter().filter(|b| b.kind == BlockKind::Bias) {
        for c in 0..block.cols {
            theta[block.offset + c] = 0.1 * ((c % 5) as f64 - 2.0);
        }
    }
    theta.truncate(layout.core_len());
    theta
}

/// Random factors, `B` included (with `B = 0` the gradient of `A` would
/// vanish): every entry uniform in ±0.5.
fn random_factors(lora: &LoraLayout, seed: u64) -> Vec<f64> {
    let mut rng = seeded(seed, Stream::Other, 1);
    (0..lora.len()).map(|_| rng.random_range(-0.5..0.5)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// LoRA-RTRL's gradient over (A, B) equals BPTT through the
    /// LoRA-parametrised cell (f64), every entry within 1e-9 of the
    /// largest.
    #[test]
    fn lora_rtrl_equals_bptt((config, lora_config, seed, steps) in cases()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let base = base(&*cell, seed);
        let lora = LoraLayout::new(cell.layout(), &lora_config).unwrap();
        let factors = random_factors(&lora, seed);
        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);

        let mut reference = LoraBptt::new(cell.clone(), base.clone(), lora_config);
        let want = probe.gradient(&mut reference, &factors);
        let mut estimator = LoraRtrl::new(cell, base, lora_config).unwrap();
        let got = probe.gradient(&mut estimator, &factors);
        let err = relative_error(&got, &want);
        prop_assert!(err <= 1e-9, "relative error {err:e} for {config:?} {lora_config:?}");
    }

    /// LoRA-RTRL agrees with central finite differences of the loss over
    /// the factors (f64, step 1e-6): truncation and rounding stay below
    /// 1e-6 of the gradient's largest entry.
    #[test]
    fn lora_rtrl_matches_finite_differences((config, lora_config, seed, steps) in cases()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let base = base(&*cell, seed);
        let lora = LoraLayout::new(cell.layout(), &lora_config).unwrap();
        let factors = random_factors(&lora, seed ^ 3);
        let probe = Probe::<f64>::random(seed ^ 1, steps, config.input, config.hidden);

        let mut estimator = LoraRtrl::new(cell, base, lora_config).unwrap();
        let analytic = probe.gradient(&mut estimator, &factors);
        let all: Vec<usize> = (0..lora.len()).collect();
        let numeric = probe.finite_differences(&mut estimator, &factors, &all, 1e-6);
        let err = relative_error(&analytic, &numeric);
        prop_assert!(err <= 1e-6, "relative error {err:e} for {config:?} {lora_config:?}");
    }

    /// The factored model and the merged one compute the same states:
    /// LoRA-RTRL's forward pass against exact RTRL run on independently
    /// merged weights (a naive triple loop), within 1e-12.
    #[test]
    fn merged_model_matches_factored((config, lora_config, seed, steps) in cases()) {
        let cell: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let base = base(&*cell, seed);
        let lora = LoraLayout::new(cell.layout(), &lora_config).unwrap();
        let factors = random_factors(&lora, seed);

        // M + (α/r)·B·A on kept entries, written out entry by entry.
        let mut merged = base.clone();
        for block in lora.blocks() {
            for k in 0..block.rows {
                for c in 0..block.cols {
                    if !block.is_kept(k, c) {
                        continue;
                    }
                    let update: f64 = (0..block.rank)
                        .map(|j| {
                            factors[block.b_offset + k * block.rank + j]
                                * factors[block.a_offset + j * block.cols + c]
                        })
                        .sum();
                    merged[block.core_offset + k * block.cols + c] += block.scale * update;
                }
            }
        }
        let mut library = vec![0.0; base.len()];
        merge(&lora, &base, &factors, &mut library);
        prop_assert!(relative_error(&library, &merged) <= 1e-14);

        let probe = Probe::<f64>::random(seed, steps, config.input, config.hidden);
        let mut factored = LoraRtrl::new(cell.clone(), base, lora_config).unwrap();
        let mut plain = Rtrl::new(cell);
        for x in &probe.inputs {
            let a = factored.forward(&factors, x).to_vec();
            let b = plain.forward(&merged, x);
            prop_assert!(relative_error(&a, b) <= 1e-12);
        }
    }
}

/// Hidden 1, input 1, one step, ranks far beyond the matrix size.
#[test]
fn smallest_shapes_agree() {
    for kind in [CellKind::Gru, CellKind::Lstm, CellKind::Rnn] {
        let cell: Arc<dyn Cell<f64>> = build(&CellConfig::new(kind, 1, 1, 1)).unwrap();
        let config = LoraConfig { rank_input: 3, rank_recurrent: 5, alpha: 1.0 };
        let lora = LoraLayout::new(cell.layout(), &config).unwrap();
        let factors = random_factors(&lora, 4);
        let probe = Probe::<f64>::random(9, 1, 1, 1);
        let base = base(&*cell, 5);
        let want = probe
            .gradient(&mut LoraBptt::new(cell.clone(), base.clone(), config), &factors);
        let got =
            probe.gradient(&mut LoraRtrl::new(cell, base, config).unwrap(), &factors);
        assert!(relative_error(&got, &want) <= 1e-12, "{kind}");
    }
}

/// The thesis network (input 3, hidden 32, output 1, no bias) with ranks
/// 2 (W) and 8 (R): 55,872 Jacobian entries for the GRU, 74,496 for the
/// LSTM, and the estimator reports the same count.
#[test]
fn thesis_jacobian_entries() {
    for (kind, want) in [(CellKind::Gru, 55_872), (CellKind::Lstm, 74_496)] {
        let cell: Arc<dyn Cell<f32>> = build(&CellConfig::new(kind, 3, 32, 1)).unwrap();
        let config = LoraConfig::default();
        let lora = LoraLayout::new(cell.layout(), &config).unwrap();
        assert_eq!(lora.jacobian_entries(32), want, "{kind}");
        let base = vec![0.0f32; cell.layout().core_len()];
        let estimator = LoraRtrl::new(cell, base, config).unwrap();
        assert_eq!(estimator.jacobian_entries(), want, "{kind}");
    }
}

/// `B` starts at zero, `A` has the standard deviation 0.01 (within 10 %
/// over a few thousand draws), and the draw of one block does not depend
/// on the ranks of the others.
#[test]
fn initial_factors() {
    let cell: Arc<dyn Cell<f64>> =
        build(&CellConfig::new(CellKind::Lstm, 3, 32, 1)).unwrap();
    let lora = LoraLayout::new(cell.layout(), &LoraConfig::default()).unwrap();
    let factors: Vec<f64> = init_factors(&lora, 11);
    let mut a_values = Vec::new();
    for block in lora.blocks() {
        assert!(factors[block.b_offset..][..block.rows * block.rank]
            .iter()
            .all(|&v| v == 0.0));
        a_values.extend_from_slice(&factors[block.a_offset..][..block.rank * block.cols]);
    }
    let mean = a_values.iter().sum::<f64>() / a_values.len() as f64;
    let var =
        a_values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / a_values.len() as f64;
    assert!((var.sqrt() - 0.01).abs() < 0.001, "standard deviation {}", var.sqrt());

    let other = LoraConfig { rank_input: 5, ..LoraConfig::default() };
    let lora2 = LoraLayout::new(cell.layout(), &other).unwrap();
    let factors2: Vec<f64> = init_factors(&lora2, 11);
    let r_i = lora.block("R_i").unwrap();
    let r_i2 = lora2.block("R_i").unwrap();
    assert_eq!(
        factors[r_i.a_offset..][..r_i.rank * r_i.cols],
        factors2[r_i2.a_offset..][..r_i2.rank * r_i2.cols]
    );
}

/// With the initial factors (`B = 0`) the effective weights are the base.
#[test]
fn initial_factors_leave_the_base_unchanged() {
    let cell: Arc<dyn Cell<f64>> =
        build(&CellConfig::new(CellKind::Gru, 3, 8, 1)).unwrap();
    let lora = LoraLayout::new(cell.layout(), &LoraConfig::default()).unwrap();
    let base = base(&*cell, 2);
    let mut out = vec![0.0; base.len()];
    merge(&lora, &base, &init_factors(&lora, 3), &mut out);
    assert_eq!(out, base);
}

/// Zero ranks and bad scales are refused with the core error type.
#[test]
fn bad_configs_are_refused() {
    let cell: Arc<dyn Cell<f64>> =
        build(&CellConfig::new(CellKind::Rnn, 2, 3, 1)).unwrap();
    let zero = LoraConfig { rank_recurrent: 0, ..LoraConfig::default() };
    let err = LoraLayout::new(cell.layout(), &zero).unwrap_err();
    assert_eq!(err.to_string(), "recurrent rank must be at least 1, got 0");
    let nan = LoraConfig { alpha: f64::NAN, ..LoraConfig::default() };
    assert!(LoraLayout::new(cell.layout(), &nan).is_err());
    let short = LoraRtrl::new(cell, vec![0.0; 3], LoraConfig::default());
    assert!(short.is_err());
}

/// f32 LoRA-RTRL (the vector kernel, with the LSTM's diagonal fused into
/// it) stays within 1e-4 of the exact f64 gradient, BPTT through the
/// LoRA cell, on the thesis's ranks at hidden 16 over 22 steps.
#[test]
fn f32_tracks_f64() {
    for kind in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
        let config = CellConfig::new(kind, 3, 16, 1);
        let cell64: Arc<dyn Cell<f64>> = build(&config).unwrap();
        let cell32: Arc<dyn Cell<f32>> = build(&config).unwrap();
        let lora_config = LoraConfig::default();
        let lora = LoraLayout::new(cell64.layout(), &lora_config).unwrap();
        let base64 = base(&*cell64, 1);
        let factors64 = random_factors(&lora, 2);
        let probe = Probe::<f64>::random(3, 22, 3, 16);
        let g64 = probe.gradient(
            &mut LoraBptt::new(cell64, base64.clone(), lora_config),
            &factors64,
        );
        let base32: Vec<f32> = rtrl_core::scalar::convert(&base64);
        let factors32: Vec<f32> = rtrl_core::scalar::convert(&factors64);
        let g32 = probe.convert::<f32>().gradient(
            &mut LoraRtrl::new(cell32, base32, lora_config).unwrap(),
            &factors32,
        );
        let err = relative_error(&g32, &g64);
        assert!(err <= 1e-4, "{kind}: {err:e}");
    }
}

/// Pins the norm of a seeded LoRA-RTRL gradient (GRU, input 3, hidden 4,
/// five steps) so that any change to the arithmetic shows.
#[test]
fn value_stability() {
    let cell: Arc<dyn Cell<f64>> =
        build(&CellConfig::new(CellKind::Gru, 3, 4, 1)).unwrap();
    let config = LoraConfig::default();
    let lora = LoraLayout::new(cell.layout(), &config).unwrap();
    let factors = random_factors(&lora, 0);
    let probe = Probe::<f64>::random(0, 5, 3, 4);
    let base: Vec<f64> =
        cell.layout().init::<f64>(0)[..cell.layout().core_len()].to_vec();
    let grad = probe.gradient(&mut LoraRtrl::new(cell, base, config).unwrap(), &factors);
    let norm: f64 = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
    // Pinned to 1e-12 relative: the cells may reorder sums (last bits),
    // anything larger is a change of the arithmetic.
    let pinned = 0.4021106158229452;
    assert!((norm - pinned).abs() <= 1e-12 * pinned, "seeded gradient norm {norm:?}");
}
