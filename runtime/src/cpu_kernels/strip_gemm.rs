//! The two products of an attention strip, `w [rows, n] += a [rows, k] @ b [k, n]` (rows <= 8,
//! all row-major): scores (k = head dim, n = keys) and the weighted sum of values (k = keys,
//! n = value dim). With AVX-512 a dedicated 8 x 32 register tile (16 accumulators, kept in
//! registers over all of k; the last column tile masked) does both; measured on the attention
//! it is ~1.8x [`add_low_rank`]'s generic tile, which spills accumulators. Other CPUs use
//! [`add_low_rank`].

use crate::rank_update::add_low_rank;

/// Rows of the register tile (and of a strip).
pub const TILE_ROWS: usize = 8;

/// `w [rows, n] += a [rows, k] @ b [k, n]`. Panics if a slice is shorter than its shape.
pub fn strip_gemm(w: &mut [f32], a: &[f32], b: &[f32], rows: usize, k: usize, n: usize) {
    assert!(rows <= TILE_ROWS && w.len() >= rows * n && a.len() >= rows * k && b.len() >= k * n, "strip_gemm: sizes");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just now); the sizes are checked above.
        unsafe { x86::strip_gemm_avx512(w, a, b, rows, k, n) };
        return;
    }
    add_low_rank(&mut w[..rows * n], &a[..rows * k], &b[..k * n], rows, k, n, 1.0);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::TILE_ROWS;
    use std::arch::x86_64::*;

    /// Column tiles of 32 (two vectors); the last one masked to the columns left.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn strip_gemm_avx512(w: &mut [f32], a: &[f32], b: &[f32], rows: usize, k: usize, n: usize) {
        let (wp, ap, bp) = (w.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        let mut j = 0;
        while j < n {
            let left = n - j;
            let (m0, m1) = (lane_mask(left), lane_mask(left.saturating_sub(16)));
            // SAFETY: columns j .. j + 32 are read and written only where the masks allow (< n);
            // rows < `rows`; a has rows * k elements, b k * n (checked by the caller).
            unsafe {
                if rows == TILE_ROWS {
                    tile::<TILE_ROWS>(wp.add(j), ap, bp.add(j), k, n, m0, m1);
                } else {
                    for r in 0..rows {
                        tile::<1>(wp.add(r * n + j), ap.add(r * k), bp.add(j), k, n, m0, m1);
                    }
                }
            }
            j += 32;
        }
    }

    /// The lanes of a 16-wide vector that hold one of `left` remaining columns.
    fn lane_mask(left: usize) -> __mmask16 {
        if left >= 16 { 0xffff } else { ((1u32 << left) - 1) as __mmask16 }
    }

    /// `R` rows x 32 columns: w (row stride n) += a (row stride k) @ b (row stride n), the
    /// columns limited by masks m0 (first 16) and m1 (next 16).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize>(w: *mut f32, a: *const f32, b: *const f32, k: usize, n: usize, m0: __mmask16, m1: __mmask16) {
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        // SAFETY (all pointer reads and writes): see `strip_gemm_avx512`.
        unsafe {
            let mut brow = b;
            for kk in 0..k {
                let b0 = _mm512_maskz_loadu_ps(m0, brow);
                let b1 = _mm512_maskz_loadu_ps(m1, brow.add(16));
                for r in 0..R {
                    let x = _mm512_set1_ps(*a.add(r * k + kk));
                    acc0[r] = _mm512_fmadd_ps(x, b0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(x, b1, acc1[r]);
                }
                brow = brow.add(n);
            }
            for r in 0..R {
                let p = w.add(r * n);
                _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(acc0[r], _mm512_maskz_loadu_ps(m0, p)));
                _mm512_mask_storeu_ps(p.add(16), m1, _mm512_add_ps(acc1[r], _mm512_maskz_loadu_ps(m1, p.add(16))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_for_partial_rows_and_columns() {
        for (rows, k, n) in [(8, 64, 100), (8, 7, 32), (3, 64, 33), (1, 5, 15), (8, 300, 64), (8, 1, 1)] {
            let a: Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let start: Vec<f32> = (0..rows * n).map(|i| i as f32 * 0.01).collect();
            let mut w = start.clone();
            strip_gemm(&mut w, &a, &b, rows, k, n);
            for i in 0..rows {
                for j in 0..n {
                    let want = start[i * n + j] as f64 + (0..k).map(|kk| a[i * k + kk] as f64 * b[kk * n + j] as f64).sum::<f64>();
                    let got = w[i * n + j] as f64;
                    assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "rows {rows} k {k} n {n} at ({i}, {j}): {got} vs {want}");
                }
            }
        }
    }
}
