//! `W += c * U @ D` for a small inner dimension k (a LoRA's `B @ A` added to a block of weight rows,
//! k = the rank). A general SGEMM is built for large k: with k = 32 `matrixmultiply` reached ~32
//! GFLOP/s per thread here, re-packing D for every block of rows and storing C per k-panel. This
//! kernel keeps a tile of W's product (8 rows x 32 columns with AVX-512, 4 x 16 with AVX2) in
//! registers over all k, streams D's rows for those columns from L1, and adds `c * product` to W once.
//! The CPU features are detected at run time; other CPUs use `matrixmultiply`. The CPU attention
//! kernel uses it too, with k the head dim (scores) or the keys of a chunk (values).
//!
//! Values: the product is summed over k in f32 (fused multiply-adds in k order), then W gets
//! `c * product` added with one more fused multiply-add: diffusers' `W + c * (B @ A)` in f32, up to
//! the rounding of the sum's order.

/// `w [m, n] += coeff * up [m, k] @ down [k, n]`, all row-major.
pub fn add_low_rank(w: &mut [f32], up: &[f32], down: &[f32], m: usize, k: usize, n: usize, coeff: f32) {
    assert!(w.len() == m * n && up.len() == m * k && down.len() == k * n, "add_low_rank: sizes");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just now); the sizes are checked above.
            unsafe { x86::add_low_rank_avx512(w, up, down, m, k, n, coeff) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just now); the sizes are checked above.
            unsafe { x86::add_low_rank_avx2(w, up, down, m, k, n, coeff) };
            return;
        }
    }
    add_low_rank_portable(w, up, down, m, k, n, coeff);
}

/// The general SGEMM, for CPUs without the kernels above.
fn add_low_rank_portable(w: &mut [f32], up: &[f32], down: &[f32], m: usize, k: usize, n: usize, coeff: f32) {
    // SAFETY: the slices hold m*k, k*n and m*n elements (checked by `add_low_rank`), with the
    // row-major strides given; `w` is a separate buffer from the inputs.
    unsafe {
        matrixmultiply::sgemm(m, k, n, coeff, up.as_ptr(), k as isize, 1, down.as_ptr(), n as isize, 1, 1.0, w.as_mut_ptr(), n as isize, 1);
    }
}

/// Columns `from..n` of rows `rows` (a tile's leftover columns, fewer than a vector tile), one at a time.
#[allow(clippy::too_many_arguments)]
fn add_tail(w: &mut [f32], up: &[f32], down: &[f32], rows: std::ops::Range<usize>, from: usize, k: usize, n: usize, coeff: f32) {
    for i in rows {
        for j in from..n {
            let product: f32 = (0..k).map(|kk| up[i * k + kk] * down[kk * n + j]).sum();
            w[i * n + j] += coeff * product;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::add_tail;
    use std::arch::x86_64::*;

    /// The AVX2 kernel: `$name` runs tiles of `$rows` rows x 2 vectors of `$lanes`
    /// columns (2 x `$rows` accumulators kept over the whole rank), then single rows, then the
    /// leftover columns one at a time.
    macro_rules! low_rank_kernel {
        ($name:ident, $tile:ident, $feature:literal, $rows:literal, $lanes:literal,
         $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident) => {
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn $name(w: &mut [f32], up: &[f32], down: &[f32], m: usize, k: usize, n: usize, coeff: f32) {
                let cols = n / (2 * $lanes) * (2 * $lanes);
                let mut i = 0;
                while i + $rows <= m {
                    // SAFETY (both calls): rows i..i+R exist, columns below `cols` are whole tiles.
                    unsafe { $tile::<$rows>(w, up, down, i, k, n, cols, coeff) };
                    i += $rows;
                }
                while i < m {
                    unsafe { $tile::<1>(w, up, down, i, k, n, cols, coeff) };
                    i += 1;
                }
                add_tail(w, up, down, 0..m, cols, k, n, coeff);
            }

            /// Rows `i..i+R`, columns `0..cols` (a multiple of two vectors).
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $tile<const R: usize>(w: &mut [f32], up: &[f32], down: &[f32], i: usize, k: usize, n: usize, cols: usize, coeff: f32) {
                let c = $set1(coeff);
                let (wp, dp, upp) = (w.as_mut_ptr(), down.as_ptr(), up.as_ptr());
                let mut j = 0;
                while j < cols {
                    let mut acc = [[$zero(); 2]; R];
                    for kk in 0..k {
                        // SAFETY: kk < k and j + 2 vectors <= cols <= n, so down[kk*n + j ..] is in
                        // bounds; i + r < m, so up[(i + r)*k + kk] is.
                        let d = unsafe { dp.add(kk * n + j) };
                        let (d0, d1) = unsafe { ($load(d), $load(d.add($lanes))) };
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let u = $set1(unsafe { *upp.add((i + r) * k + kk) });
                            acc[0] = $fmadd(u, d0, acc[0]);
                            acc[1] = $fmadd(u, d1, acc[1]);
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        // SAFETY: row i + r < m, columns j .. j + 2 vectors <= n.
                        unsafe {
                            let p = wp.add((i + r) * n + j);
                            $store(p, $fmadd(c, acc[0], $load(p)));
                            $store(p.add($lanes), $fmadd(c, acc[1], $load(p.add($lanes))));
                        }
                    }
                    j += 2 * $lanes;
                }
            }
        };
    }

    /// AVX-512: tiles of 8 rows x 32 columns (16 accumulators kept in registers over all of k),
    /// then single rows; the last column tile masked to the columns left, so no scalar tail.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_low_rank_avx512(w: &mut [f32], up: &[f32], down: &[f32], m: usize, k: usize, n: usize, coeff: f32) {
        let (wp, up, dp) = (w.as_mut_ptr(), up.as_ptr(), down.as_ptr());
        let mut i = 0;
        while i < m {
            let rows = if i + 8 <= m { 8 } else { 1 };
            let mut j = 0;
            while j < n {
                let left = n - j;
                let (m0, m1) = (lane_mask(left), lane_mask(left.saturating_sub(16)));
                // SAFETY: rows i .. i + rows < m; columns j .. j + 32 touched only where the
                // masks allow (< n); the slices hold m*n, m*k and k*n elements (checked by the caller).
                unsafe {
                    let (w, u, d) = (wp.add(i * n + j), up.add(i * k), dp.add(j));
                    if rows == 8 {
                        tile_avx512::<8>(w, u, d, k, n, coeff, m0, m1);
                    } else {
                        tile_avx512::<1>(w, u, d, k, n, coeff, m0, m1);
                    }
                }
                j += 32;
            }
            i += rows;
        }
    }

    /// The lanes of a 16-wide vector that hold one of `left` remaining columns.
    fn lane_mask(left: usize) -> __mmask16 {
        if left >= 16 { 0xffff } else { ((1u32 << left) - 1) as __mmask16 }
    }

    /// `R` rows x 32 columns: w (row stride n) += c * u (row stride k) @ d (row stride n), the
    /// columns limited by masks m0 (first 16) and m1 (next 16). The accumulators are plain
    /// locals indexed by constants, so they stay in registers (the macro's tile below spilled
    /// some with 8 rows: the CPU attention's products ran ~1.5x slower with it).
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_avx512<const R: usize>(w: *mut f32, u: *const f32, d: *const f32, k: usize, n: usize, coeff: f32, m0: __mmask16, m1: __mmask16) {
        let mut acc0 = [_mm512_setzero_ps(); R];
        let mut acc1 = [_mm512_setzero_ps(); R];
        // SAFETY (all pointer reads and writes): see `add_low_rank_avx512`.
        unsafe {
            let mut drow = d;
            for kk in 0..k {
                let d0 = _mm512_maskz_loadu_ps(m0, drow);
                let d1 = _mm512_maskz_loadu_ps(m1, drow.add(16));
                for r in 0..R {
                    let x = _mm512_set1_ps(*u.add(r * k + kk));
                    acc0[r] = _mm512_fmadd_ps(x, d0, acc0[r]);
                    acc1[r] = _mm512_fmadd_ps(x, d1, acc1[r]);
                }
                drow = drow.add(n);
            }
            let c = _mm512_set1_ps(coeff);
            for r in 0..R {
                let p = w.add(r * n);
                _mm512_mask_storeu_ps(p, m0, _mm512_fmadd_ps(c, acc0[r], _mm512_maskz_loadu_ps(m0, p)));
                _mm512_mask_storeu_ps(p.add(16), m1, _mm512_fmadd_ps(c, acc1[r], _mm512_maskz_loadu_ps(m1, p.add(16))));
            }
        }
    }
    low_rank_kernel!(add_low_rank_avx2, tile_rows_avx2, "avx2,fma", 4, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, a: usize, b: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * a % b) as f32 - (b / 2) as f32) * 0.1).collect()
    }

    type Kernel = fn(&mut [f32], &[f32], &[f32], usize, usize, usize, f32);

    /// Every kernel this CPU can run, on shapes with and without row and column remainders, against
    /// the definition in f64.
    #[test]
    fn kernels_match_the_definition() {
        let mut kernels: Vec<(&str, Kernel)> = vec![("dispatch", add_low_rank), ("portable", add_low_rank_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: only run where the CPU has the feature.
                kernels.push(("avx512", |w, u, d, m, k, n, c| unsafe { x86::add_low_rank_avx512(w, u, d, m, k, n, c) }));
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                kernels.push(("avx2", |w, u, d, m, k, n, c| unsafe { x86::add_low_rank_avx2(w, u, d, m, k, n, c) }));
            }
        }
        for (m, k, n) in [(64, 32, 1536), (13, 5, 70), (1, 1, 1), (9, 3, 31), (17, 16, 48), (8, 0, 32)] {
            let (up, down, base) = (pattern(m * k, 7, 13), pattern(k * n, 5, 11), pattern(m * n, 13, 29));
            for (name, kernel) in &kernels {
                let mut w = base.clone();
                kernel(&mut w, &up, &down, m, k, n, -0.75);
                for i in 0..m {
                    for j in 0..n {
                        let product: f64 = (0..k).map(|kk| f64::from(up[i * k + kk]) * f64::from(down[kk * n + j])).sum();
                        let want = f64::from(base[i * n + j]) - 0.75 * product;
                        let got = f64::from(w[i * n + j]);
                        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{name} {m}x{k}x{n} at {i},{j}: {got} vs {want}");
                    }
                }
            }
        }
    }
}
