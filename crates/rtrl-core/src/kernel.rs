//! The influence-propagation product, `C = A · B` with a tall, thin `A`.
//!
//! Dense RTRL spends most of its time in one product per step,
//! `Jᵀ_t = Jᵀ_{t−1}[:, h] · (∂s'/∂h)`, of shape `(P × n) · (n × |s|)` with
//! `P` in the thousands and `n`, `|s|` in the tens. A general matrix
//! product packs `A` into panels on every call; here `A` changes every
//! step, so that packing is a full extra pass over the influence matrix.
//! On x86-64 with AVX2 and FMA, `f32` products go through a register-tiled
//! kernel that reads `A` in place (a 24 × n panel stays in L1 while it is
//! multiplied by every column block of `B`); everything else goes through
//! `faer`.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use crate::scalar::Scalar;

/// `dst = lhs · rhs` (overwriting `dst`), single-threaded.
///
/// # Panics
/// If the shapes do not chain.
pub fn propagate<T: Scalar>(dst: MatMut<'_, T>, lhs: MatRef<'_, T>, rhs: MatRef<'_, T>) {
    assert!(
        dst.nrows() == lhs.nrows()
            && lhs.ncols() == rhs.nrows()
            && dst.ncols() == rhs.ncols(),
        "propagate: shapes do not chain"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
            && lhs.row_stride() == 1
            && rhs.row_stride() == 1
            && dst.row_stride() == 1
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            let wide = std::arch::is_x86_feature_detected!("avx512f");
            // SAFETY: T is f32 (checked above), so the pointers address f32
            // values; every matrix is column-major with unit row stride and
            // the column strides come from the views themselves; AVX2 and
            // FMA are present.
            unsafe {
                let product = if wide { x86::product_f32_wide } else { x86::product_f32 };
                product(
                    dst.nrows(),
                    lhs.ncols(),
                    dst.ncols(),
                    lhs.as_ptr() as *const f32,
                    lhs.col_stride() as usize,
                    rhs.as_ptr() as *const f32,
                    rhs.col_stride() as usize,
                    dst.as_ptr_mut() as *mut f32,
                    dst.col_stride() as usize,
                );
            }
            return;
        }
    }
    matmul(dst, Accum::Replace, lhs, rhs, T::one(), Par::Seq);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Registers of 8 rows per panel, and columns of `B` per register tile:
    /// PANEL_REGS · PANEL_COLS accumulators out of sixteen registers.
    const PANEL_REGS: usize = 3;
    const PANEL_COLS: usize = 4;

    /// `C (m × n) = A (m × k) · B (k × n)`, all column-major with the given
    /// column strides.
    ///
    /// # Safety
    /// The pointers must address matrices of those shapes and strides
    /// (non-negative), `C` must not overlap `A` or `B`, and the CPU must
    /// support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product_f32(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        // Row panels of 8·PANEL_REGS rows, then 8, then single rows.
        let mut row = 0;
        while row + 8 * PANEL_REGS <= m {
            // SAFETY: rows row..row+8·PANEL_REGS lie inside A and C.
            unsafe { panel::<PANEL_REGS, PANEL_COLS>(row, k, n, a, lda, b, ldb, c, ldc) };
            row += 8 * PANEL_REGS;
        }
        while row + 8 <= m {
            // SAFETY: rows row..row+8 lie inside A and C.
            unsafe { panel::<1, 4>(row, k, n, a, lda, b, ldb, c, ldc) };
            row += 8;
        }
        for r in row..m {
            for j in 0..n {
                let mut sum = 0.0f32;
                for kk in 0..k {
                    // SAFETY: r < m, kk < k, j < n.
                    unsafe {
                        sum = (*a.add(r + kk * lda)).mul_add(*b.add(kk + j * ldb), sum)
                    };
                }
                // SAFETY: r < m, j < n.
                unsafe { *c.add(r + j * ldc) = sum };
            }
        }
    }

    /// One panel of `8·R` rows starting at `row`, against every column of
    /// `B`, `C` columns at a time (then one at a time).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn panel<const R: usize, const C: usize>(
        row: usize,
        k: usize,
        n: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut col = 0;
        while col + C <= n {
            // Accumulators: C columns × R registers of 8 rows.
            let mut acc = [[_mm256_setzero_ps(); R]; C];
            for kk in 0..k {
                // SAFETY: rows row..row+8R of column kk of A, entries
                // (kk, col..col+4) of B; all in bounds.
                unsafe {
                    let a_col = a.add(row + kk * lda);
                    let mut lanes = [_mm256_setzero_ps(); R];
                    for (i, lane) in lanes.iter_mut().enumerate() {
                        *lane = _mm256_loadu_ps(a_col.add(8 * i));
                    }
                    for (j, acc_j) in acc.iter_mut().enumerate() {
                        let bj = _mm256_broadcast_ss(&*b.add(kk + (col + j) * ldb));
                        for i in 0..R {
                            acc_j[i] = _mm256_fmadd_ps(lanes[i], bj, acc_j[i]);
                        }
                    }
                }
            }
            for (j, acc_j) in acc.iter().enumerate() {
                for (i, &v) in acc_j.iter().enumerate() {
                    // SAFETY: rows row+8i..row+8i+8 of column col+j of C.
                    unsafe { _mm256_storeu_ps(c.add(row + 8 * i + (col + j) * ldc), v) };
                }
            }
            col += C;
        }
        while col < n {
            let mut acc = [_mm256_setzero_ps(); R];
            for kk in 0..k {
                // SAFETY: as above, one column of B.
                unsafe {
                    let bj = _mm256_broadcast_ss(&*b.add(kk + col * ldb));
                    for (i, acc_i) in acc.iter_mut().enumerate() {
                        let lane = _mm256_loadu_ps(a.add(row + kk * lda + 8 * i));
                        *acc_i = _mm256_fmadd_ps(lane, bj, *acc_i);
                    }
                }
            }
            for (i, &v) in acc.iter().enumerate() {
                // SAFETY: rows row+8i..row+8i+8 of column col of C.
                unsafe { _mm256_storeu_ps(c.add(row + 8 * i + col * ldc), v) };
            }
            col += 1;
        }
    }

    /// Registers of 16 rows per wide panel and columns of `B` per tile.
    const WIDE_REGS: usize = 6;
    const WIDE_COLS: usize = 4;

    /// [`product_f32`] with 512-bit registers: panels of `16·WIDE_REGS`
    /// rows, then one masked panel for the last rows. Every
    /// entry is the same chain of fused multiply-adds over `k` as in the
    /// 256-bit kernel, so both give the same bits.
    ///
    /// # Safety
    /// As [`product_f32`], and the CPU must support AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product_f32_wide(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut row = 0;
        while row + 16 * WIDE_REGS <= m {
            // SAFETY: rows row..row+16·WIDE_REGS lie inside A and C.
            unsafe {
                wide_panel::<WIDE_REGS, WIDE_COLS>(
                    row, 0xffff, k, n, a, lda, b, ldb, c, ldc,
                )
            };
            row += 16 * WIDE_REGS;
        }
        // The last `m mod 96` rows: one panel of as many registers as they
        // need (the last one masked), with more columns per tile when the
        // panel is short so that enough independent accumulators (8 or
        // more) hide the latency of the fused multiply-add.
        let rest = m - row;
        if rest > 0 {
            let last = rest - 16 * ((rest - 1) / 16);
            let mask: __mmask16 = if last == 16 { 0xffff } else { (1u16 << last) - 1 };
            // SAFETY: the panel covers rows row..m, inside A and C; the
            // masked-off lanes of its last register are neither read nor
            // written.
            unsafe {
                match rest.div_ceil(16) {
                    1 => wide_panel::<1, 8>(row, mask, k, n, a, lda, b, ldb, c, ldc),
                    2 => wide_panel::<2, 8>(row, mask, k, n, a, lda, b, ldb, c, ldc),
                    3 => wide_panel::<3, 8>(row, mask, k, n, a, lda, b, ldb, c, ldc),
                    4 => wide_panel::<4, 4>(row, mask, k, n, a, lda, b, ldb, c, ldc),
                    5 => wide_panel::<5, 4>(row, mask, k, n, a, lda, b, ldb, c, ldc),
                    // 81 to 95 rows (fewer than 16·WIDE_REGS are left).
                    _ => wide_panel::<6, 4>(row, mask, k, n, a, lda, b, ldb, c, ldc),
                }
            }
        }
    }

    /// One panel of `16·R` rows starting at `row` (the last register's
    /// lanes limited to `mask`), against every column of `B`: tiles of `C`
    /// columns, then single columns.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn wide_panel<const R: usize, const C: usize>(
        row: usize,
        mask: __mmask16,
        k: usize,
        n: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut col = 0;
        while col + C <= n {
            // SAFETY: columns col..col+C of B and C exist.
            unsafe { wide_tile::<R, C>(row, mask, col, k, a, lda, b, ldb, c, ldc) };
            col += C;
        }
        while col < n {
            // SAFETY: column col of B and C exists.
            unsafe { wide_tile::<R, 1>(row, mask, col, k, a, lda, b, ldb, c, ldc) };
            col += 1;
        }
    }

    /// `C[row.., col..col+C] = A[row.., :] · B[:, col..col+C]` for `16·R`
    /// rows (the last register's lanes limited to `mask`).
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn wide_tile<const R: usize, const C: usize>(
        row: usize,
        mask: __mmask16,
        col: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let mask_of = |i: usize| if i + 1 == R { mask } else { 0xffff };
        let mut acc = [[_mm512_setzero_ps(); R]; C];
        for kk in 0..k {
            // SAFETY: the masked lanes of rows row..row+16R of column kk of
            // A, and entries (kk, col..col+C) of B, are in bounds.
            unsafe {
                let a_col = a.add(row + kk * lda);
                let mut lanes = [_mm512_setzero_ps(); R];
                for (i, lane) in lanes.iter_mut().enumerate() {
                    *lane = _mm512_maskz_loadu_ps(mask_of(i), a_col.add(16 * i));
                }
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    let bj = _mm512_set1_ps(*b.add(kk + (col + j) * ldb));
                    for i in 0..R {
                        acc_j[i] = _mm512_fmadd_ps(lanes[i], bj, acc_j[i]);
                    }
                }
            }
        }
        for (j, acc_j) in acc.iter().enumerate() {
            for (i, &v) in acc_j.iter().enumerate() {
                // SAFETY: the masked lanes of rows row+16i.. of column col+j
                // of C are in bounds.
                unsafe {
                    _mm512_mask_storeu_ps(
                        c.add(row + 16 * i + (col + j) * ldc),
                        mask_of(i),
                        v,
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use faer::Mat;

    use super::*;

    /// The kernel agrees with faer on awkward shapes (rows not a multiple
    /// of 8 or 24, columns not a multiple of 4), to f32 rounding.
    #[test]
    fn matches_faer_on_awkward_shapes() {
        for (m, k, n) in [
            (1, 1, 1),
            (7, 3, 5),
            (25, 32, 32),
            (100, 17, 63),
            (105, 32, 32),
            (113, 32, 64),
            (140, 32, 64),
            (176, 3, 5),
            (191, 32, 33),
            (3360, 32, 32),
        ] {
            let a = Mat::<f32>::from_fn(m, k, |i, j| {
                ((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5
            });
            let b =
                Mat::<f32>::from_fn(k, n, |i, j| ((i * 5 + j) % 13) as f32 * 0.1 - 0.6);
            let mut ours = Mat::<f32>::zeros(m, n);
            let mut theirs = Mat::<f32>::zeros(m, n);
            propagate(ours.as_mut(), a.as_ref(), b.as_ref());
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
                    // Sums of k ≤ 32 products of size ≤ 0.6: rounding below 1e-5.
                    assert!(
                        (ours[(i, j)] - theirs[(i, j)]).abs() < 1e-5,
                        "{m}x{k}x{n} at {i},{j}"
                    );
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
        for (m, k, n) in [
            (1, 1, 1),
            (9, 32, 32),
            (17, 5, 3),
            (105, 32, 32),
            (113, 32, 64),
            (140, 32, 64),
            (160, 7, 9),
            (176, 3, 5),
            (191, 32, 33),
            (3360, 32, 32),
        ] {
            let a =
                Mat::<f32>::from_fn(m, k, |i, j| ((i * 7 + j * 3) % 11) as f32 * 0.137);
            let b = Mat::<f32>::from_fn(k, n, |i, j| ((i * 5 + j) % 13) as f32 * 0.071);
            let mut narrow = Mat::<f32>::zeros(m, n);
            let mut wide = Mat::<f32>::zeros(m, n);
            // SAFETY: column-major matrices of the given shapes; the CPU
            // features are checked above.
            unsafe {
                let (pa, pb) = (a.as_ptr(), b.as_ptr());
                let (la, lb) = (a.col_stride() as usize, b.col_stride() as usize);
                let ln = narrow.col_stride() as usize;
                x86::product_f32(m, k, n, pa, la, pb, lb, narrow.as_ptr_mut(), ln);
                let lw = wide.col_stride() as usize;
                x86::product_f32_wide(m, k, n, pa, la, pb, lb, wide.as_ptr_mut(), lw);
            }
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(
                        narrow[(i, j)].to_bits(),
                        wide[(i, j)].to_bits(),
                        "{m}x{k}x{n} at {i},{j}"
                    );
                }
            }
        }
    }
}
