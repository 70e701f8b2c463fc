//! The influence-propagation product, `C = A · B` with a tall, thin `A`.
//!
//! Dense RTRL spends most of its time in one product per step,
//! `Jᵀ_t = Jᵀ_{t−1}[:, h] · (∂s'/∂h)`, of shape `(P × n) · (n × |s|)` with
//! `P` in the thousands and `n`, `|s|` in the tens (or one target unit's
//! block of it, `P/n` rows). A general matrix product packs `A` into
//! panels on every call; here `A` changes every step, so that packing is
//! a full extra pass over the influence matrix. On x86-64 with AVX2 and
//! FMA, `f32` products go through a register-tiled kernel that reads `A`
//! in place (512-bit registers where AVX-512F is present, 256-bit ones
//! otherwise; both give the same bits); everything else goes through
//! `faer`.
//!
//! The kernel can also add a unit-wise term while the result is still in
//! registers, `C[:, j] += scale[j] · E[:, j mod e]`: the cell-state
//! columns of an LSTM's `D_t`, which act through a diagonal.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::scalar::Scalar;

/// A unit-wise term added to a product: column `j` of the result gains
/// `scale[j] · source[:, j mod source.ncols()]`.
#[derive(Debug, Clone, Copy)]
pub struct Diagonal<'a, T> {
    /// `rows × e`, the columns the term is read from.
    pub source: MatRef<'a, T>,
    /// One factor per column of the result.
    pub scale: &'a [T],
}

/// `dst = lhs · rhs` (overwriting `dst`), single-threaded.
///
/// # Panics
/// If the shapes do not chain.
pub fn propagate<T: Scalar>(dst: MatMut<'_, T>, lhs: MatRef<'_, T>, rhs: MatRef<'_, T>) {
    propagate_with(dst, lhs, rhs, None);
}

/// `dst[:, j] = lhs · rhs[:, j] + scale[j] · source[:, j mod e]` (the
/// second term only with a [`Diagonal`]), single-threaded.
///
/// # Precision
/// On the `f32` kernel each entry is one chain of fused multiply-adds
/// over `k`, then one more for the diagonal term: the same bits on every
/// CPU that runs it, whichever register width it gets.
///
/// # Panics
/// If the shapes do not chain, or the diagonal's source has other rows
/// than `dst`, no columns, or its scales are not one per column of `dst`.
pub fn propagate_with<T: Scalar>(
    mut dst: MatMut<'_, T>,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    diagonal: Option<Diagonal<'_, T>>,
) {
    assert!(
        dst.nrows() == lhs.nrows()
            && lhs.ncols() == rhs.nrows()
            && dst.ncols() == rhs.ncols(),
        "propagate: shapes do not chain"
    );
    if let Some(diagonal) = &diagonal {
        assert!(
            diagonal.source.nrows() == dst.nrows()
                && diagonal.source.ncols() > 0
                && diagonal.scale.len() == dst.ncols(),
            "propagate: the diagonal term does not fit the result"
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        let unit_rows = lhs.row_stride() == 1
            && rhs.row_stride() == 1
            && dst.row_stride() == 1
            && diagonal.is_none_or(|d| d.source.row_stride() == 1);
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            && unit_rows
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            let (e, lde, ecols, scale) = match &diagonal {
                Some(d) => (
                    d.source.as_ptr() as *const f32,
                    d.source.col_stride() as usize,
                    d.source.ncols(),
                    d.scale.as_ptr() as *const f32,
                ),
                None => (std::ptr::null(), 0, 0, std::ptr::null()),
            };
            let operands = x86::Operands {
                m: dst.nrows(),
                k: lhs.ncols(),
                n: dst.ncols(),
                a: lhs.as_ptr() as *const f32,
                lda: lhs.col_stride() as usize,
                b: rhs.as_ptr() as *const f32,
                ldb: rhs.col_stride() as usize,
                c: dst.as_ptr_mut() as *mut f32,
                ldc: dst.col_stride() as usize,
                e,
                lde,
                ecols,
                scale,
            };
            // SAFETY: T is f32 (checked above), so the pointers address f32
            // values; every matrix is column-major with unit row stride, the
            // shapes were checked above and the column strides come from
            // the views themselves; AVX2 and FMA are present (and AVX-512F
            // for the wide kernel).
            unsafe {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    x86::product_f32_wide(&operands)
                } else {
                    x86::product_f32(&operands)
                }
            }
            return;
        }
    }
    matmul(dst.as_mut(), Accum::Replace, lhs, rhs, T::one(), Par::Seq);
    if let Some(diagonal) = diagonal {
        let e = diagonal.source.ncols();
        for (j, &scale) in diagonal.scale.iter().enumerate() {
            for i in 0..dst.nrows() {
                dst[(i, j)] += scale * diagonal.source[(i, j % e)];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// One call's operands: `C (m × n) = A (m × k) · B (k × n)`, plus
    /// `scale[j] · E[:, j mod ecols]` when `ecols > 0`; all column-major
    /// with the given column strides.
    #[derive(Clone, Copy)]
    pub(super) struct Operands {
        pub m: usize,
        pub k: usize,
        pub n: usize,
        pub a: *const f32,
        pub lda: usize,
        pub b: *const f32,
        pub ldb: usize,
        pub c: *mut f32,
        pub ldc: usize,
        pub e: *const f32,
        pub lde: usize,
        pub ecols: usize,
        pub scale: *const f32,
    }

    /// Registers of 8 rows per panel, and columns of `B` per register tile:
    /// PANEL_REGS · PANEL_COLS accumulators out of sixteen registers.
    const PANEL_REGS: usize = 3;
    const PANEL_COLS: usize = 4;

    /// The product with 256-bit registers: panels of `8·PANEL_REGS` rows,
    /// then of 8, then single rows.
    ///
    /// # Safety
    /// The pointers must address matrices of those shapes and strides,
    /// `C` must not overlap `A`, `B` or `E`, and the CPU must support AVX2
    /// and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product_f32(op: &Operands) {
        let mut row = 0;
        while row + 8 * PANEL_REGS <= op.m {
            // SAFETY: rows row..row+8·PANEL_REGS lie inside A, C and E.
            unsafe { panel::<PANEL_REGS, PANEL_COLS>(op, row) };
            row += 8 * PANEL_REGS;
        }
        while row + 8 <= op.m {
            // SAFETY: rows row..row+8 lie inside A, C and E.
            unsafe { panel::<1, 4>(op, row) };
            row += 8;
        }
        for r in row..op.m {
            for j in 0..op.n {
                // SAFETY: r < m, kk < k, j < n; E and the scales exist
                // when ecols > 0.
                unsafe {
                    let mut sum = 0.0f32;
                    for kk in 0..op.k {
                        sum = (*op.a.add(r + kk * op.lda))
                            .mul_add(*op.b.add(kk + j * op.ldb), sum);
                    }
                    if op.ecols > 0 {
                        let e = *op.e.add(r + (j % op.ecols) * op.lde);
                        sum = e.mul_add(*op.scale.add(j), sum);
                    }
                    *op.c.add(r + j * op.ldc) = sum;
                }
            }
        }
    }

    /// One panel of `8·R` rows starting at `row`, against every column of
    /// `B`: tiles of `C` columns, then single columns.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn panel<const R: usize, const C: usize>(op: &Operands, row: usize) {
        let mut col = 0;
        while col + C <= op.n {
            // SAFETY: columns col..col+C of B and C exist.
            unsafe { tile::<R, C>(op, row, col) };
            col += C;
        }
        while col < op.n {
            // SAFETY: column col of B and C exists.
            unsafe { tile::<R, 1>(op, row, col) };
            col += 1;
        }
    }

    /// `C[row.., col..col+C]` for `8·R` rows: accumulators of C columns ×
    /// R registers, one fused multiply-add per `k`, then the diagonal term.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const R: usize, const C: usize>(
        op: &Operands,
        row: usize,
        col: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        for kk in 0..op.k {
            // SAFETY: rows row..row+8R of column kk of A, entries
            // (kk, col..col+C) of B; all in bounds.
            unsafe {
                let a_col = op.a.add(row + kk * op.lda);
                let mut lanes = [_mm256_setzero_ps(); R];
                for (i, lane) in lanes.iter_mut().enumerate() {
                    *lane = _mm256_loadu_ps(a_col.add(8 * i));
                }
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    let bj = _mm256_broadcast_ss(&*op.b.add(kk + (col + j) * op.ldb));
                    for i in 0..R {
                        acc_j[i] = _mm256_fmadd_ps(lanes[i], bj, acc_j[i]);
                    }
                }
            }
        }
        for (j, acc_j) in acc.iter_mut().enumerate() {
            for (i, v) in acc_j.iter_mut().enumerate() {
                // SAFETY: rows row+8i..row+8i+8 of column col+j of C, and of
                // column (col+j) mod ecols of E when there is a diagonal.
                unsafe {
                    if op.ecols > 0 {
                        let e = op.e.add(row + 8 * i + ((col + j) % op.ecols) * op.lde);
                        let scale = _mm256_broadcast_ss(&*op.scale.add(col + j));
                        *v = _mm256_fmadd_ps(_mm256_loadu_ps(e), scale, *v);
                    }
                    _mm256_storeu_ps(op.c.add(row + 8 * i + (col + j) * op.ldc), *v);
                }
            }
        }
    }

    /// Registers of 16 rows per wide panel and columns of `B` per tile.
    const WIDE_REGS: usize = 6;
    const WIDE_COLS: usize = 4;

    /// [`product_f32`] with 512-bit registers: panels of `16·WIDE_REGS`
    /// rows, then one masked panel for the last rows. Every entry is the
    /// same chain of fused multiply-adds as in the 256-bit kernel, so both
    /// give the same bits.
    ///
    /// # Safety
    /// As [`product_f32`], and the CPU must support AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn product_f32_wide(op: &Operands) {
        let mut row = 0;
        while row + 16 * WIDE_REGS <= op.m {
            // SAFETY: rows row..row+16·WIDE_REGS lie inside A, C and E.
            unsafe { wide_panel::<WIDE_REGS, WIDE_COLS>(op, row, 0xffff) };
            row += 16 * WIDE_REGS;
        }

        // The last `m mod 96` rows: one panel of as many registers as they
        // need (the last one masked), with more columns per tile when the
        // panel is short so that enough independent accumulators (8 or
        // more) hide the latency of the fused multiply-add.
        let rest = op.m - row;
        if rest > 0 {
            let last = rest - 16 * ((rest - 1) / 16);
            let mask: __mmask16 = if last == 16 { 0xffff } else { (1u16 << last) - 1 };
            // SAFETY: the panel covers rows row..m, inside A, C and E; the
            // masked-off lanes of its last register are neither read nor
            // written.
            unsafe {
                match rest.div_ceil(16) {
                    1 => wide_panel::<1, 8>(op, row, mask),
                    2 => wide_panel::<2, 8>(op, row, mask),
                    3 => wide_panel::<3, 8>(op, row, mask),
                    4 => wide_panel::<4, 4>(op, row, mask),
                    5 => wide_panel::<5, 4>(op, row, mask),
                    // 81 to 95 rows (fewer than 16·WIDE_REGS are left).
                    _ => wide_panel::<6, 4>(op, row, mask),
                }
            }
        }
    }

    /// One panel of `16·R` rows starting at `row` (the last register's
    /// lanes limited to `mask`), against every column of `B`: tiles of `C`
    /// columns, then single columns.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn wide_panel<const R: usize, const C: usize>(
        op: &Operands,
        row: usize,
        mask: __mmask16,
    ) {
        let mut col = 0;
        while col + C <= op.n {
            // SAFETY: columns col..col+C of B and C exist.
            unsafe { wide_tile::<R, C>(op, row, mask, col) };
            col += C;
        }
        while col < op.n {
            // SAFETY: column col of B and C exists.
            unsafe { wide_tile::<R, 1>(op, row, mask, col) };
            col += 1;
        }
    }

    /// `C[row.., col..col+C]` for `16·R` rows (the last register's lanes
    /// limited to `mask`), then the diagonal term.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn wide_tile<const R: usize, const C: usize>(
        op: &Operands,
        row: usize,
        mask: __mmask16,
        col: usize,
    ) {
        let mask_of = |i: usize| if i + 1 == R { mask } else { 0xffff };
        let mut acc = [[_mm512_setzero_ps(); R]; C];
        for kk in 0..op.k {
            // SAFETY: the masked lanes of rows row..row+16R of column kk of
            // A, and entries (kk, col..col+C) of B, are in bounds.
            unsafe {
                let a_col = op.a.add(row + kk * op.lda);
                let mut lanes = [_mm512_setzero_ps(); R];
                for (i, lane) in lanes.iter_mut().enumerate() {
                    *lane = _mm512_maskz_loadu_ps(mask_of(i), a_col.add(16 * i));
                }
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    let bj = _mm512_set1_ps(*op.b.add(kk + (col + j) * op.ldb));
                    for i in 0..R {
                        acc_j[i] = _mm512_fmadd_ps(lanes[i], bj, acc_j[i]);
                    }
                }
            }
        }
        for (j, acc_j) in acc.iter_mut().enumerate() {
            for (i, v) in acc_j.iter_mut().enumerate() {
                // SAFETY: the masked lanes of rows row+16i.. of column col+j
                // of C, and of column (col+j) mod ecols of E when there is a
                // diagonal, are in bounds.
                unsafe {
                    if op.ecols > 0 {
                        let e = op.e.add(row + 16 * i + ((col + j) % op.ecols) * op.lde);
                        let scale = _mm512_set1_ps(*op.scale.add(col + j));
                        let e = _mm512_maskz_loadu_ps(mask_of(i), e);
                        *v = _mm512_fmadd_ps(e, scale, *v);
                    }
                    let c = op.c.add(row + 16 * i + (col + j) * op.ldc);
                    _mm512_mask_storeu_ps(c, mask_of(i), *v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use faer::Mat;

    use super::*;

    /// Shapes with rows not a multiple of 8, 16, 24 or 96 and columns not
    /// a multiple of 4 or 8; the RTRL tiles of the thesis network (105 and
    /// 140 rows) among them.
    const SHAPES: [(usize, usize, usize); 12] = [
        (1, 1, 1),
        (7, 3, 5),
        (9, 32, 32),
        (17, 5, 3),
        (25, 32, 32),
        (100, 17, 63),
        (105, 32, 32),
        (113, 32, 64),
        (140, 32, 64),
        (176, 3, 5),
        (191, 32, 33),
        (3360, 32, 32),
    ];

    /// Operands of small, varied values: `A`, `B`, a diagonal source of
    /// `max(n / 2, 1)` columns and one scale per column.
    fn operands(
        m: usize,
        k: usize,
        n: usize,
    ) -> (Mat<f32>, Mat<f32>, Mat<f32>, Vec<f32>) {
        let a = Mat::from_fn(m, k, |i, j| ((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5);
        let b = Mat::from_fn(k, n, |i, j| ((i * 5 + j) % 13) as f32 * 0.1 - 0.6);
        let e =
            Mat::from_fn(m, (n / 2).max(1), |i, j| ((i + 2 * j) % 9) as f32 * 0.1 - 0.4);
        let scale = (0..n).map(|j| (j % 5) as f32 * 0.2 - 0.3).collect();
        (a, b, e, scale)
    }

    /// The kernel agrees with faer (and a plain loop for the diagonal
    /// term) to f32 rounding.
    #[test]
    fn matches_faer_on_awkward_shapes() {
        for (m, k, n) in SHAPES {
            let (a, b, e, scale) = operands(m, k, n);
            let mut plain = Mat::<f32>::zeros(m, n);
            let mut with_diagonal = Mat::<f32>::zeros(m, n);
            let mut theirs = Mat::<f32>::zeros(m, n);
            propagate(plain.as_mut(), a.as_ref(), b.as_ref());
            let diagonal = Diagonal { source: e.as_ref(), scale: &scale };
            propagate_with(
                with_diagonal.as_mut(),
                a.as_ref(),
                b.as_ref(),
                Some(diagonal),
            );
            matmul(
                theirs.as_mut(),
                Accum::Replace,
                a.as_ref(),
                b.as_ref(),
                1.0,
                Par::Seq,
            );
            for i in 0..m {
                for j in 0..n {
                    // Sums of k ≤ 32 products of size ≤ 0.6, plus one of
                    // size ≤ 0.5: rounding below 1e-5.
                    let extra = scale[j] * e[(i, j % e.ncols())];
                    let at = format!("{m}x{k}x{n} at {i},{j}");
                    assert!((plain[(i, j)] - theirs[(i, j)]).abs() < 1e-5, "{at}");
                    let expected = theirs[(i, j)] + extra;
                    assert!((with_diagonal[(i, j)] - expected).abs() < 1e-5, "{at}");
                }
            }
        }
    }

    /// The 512-bit and 256-bit kernels give the same bits (one chain of
    /// fused multiply-adds per entry in both), so results do not depend
    /// on which one the CPU gets.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_and_narrow_kernels_agree_bit_for_bit() {
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return;
        }
        for (m, k, n) in SHAPES {
            let (a, b, e, scale) = operands(m, k, n);
            for diagonal in [false, true] {
                let mut narrow = Mat::<f32>::zeros(m, n);
                let mut wide = Mat::<f32>::zeros(m, n);
                let mut operands = x86::Operands {
                    m,
                    k,
                    n,
                    a: a.as_ptr(),
                    lda: a.col_stride() as usize,
                    b: b.as_ptr(),
                    ldb: b.col_stride() as usize,
                    c: narrow.as_ptr_mut(),
                    ldc: narrow.col_stride() as usize,
                    e: e.as_ptr(),
                    lde: e.col_stride() as usize,
                    ecols: if diagonal { e.ncols() } else { 0 },
                    scale: scale.as_ptr(),
                };
                // SAFETY: column-major matrices of the given shapes; the
                // CPU features are checked above.
                unsafe {
                    x86::product_f32(&operands);
                    operands.c = wide.as_ptr_mut();
                    operands.ldc = wide.col_stride() as usize;
                    x86::product_f32_wide(&operands);
                }
                for i in 0..m {
                    for j in 0..n {
                        assert_eq!(
                            narrow[(i, j)].to_bits(),
                            wide[(i, j)].to_bits(),
                            "{m}x{k}x{n} at {i},{j}, diagonal {diagonal}"
                        );
                    }
                }
            }
        }
    }
}
