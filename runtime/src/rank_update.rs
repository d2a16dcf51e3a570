//! `W += c * U @ D` for a small inner dimension k (a LoRA's `B @ A` added to a block of weight rows,
//! k = the rank). A general SGEMM is built for large k: with k = 32 `matrixmultiply` reached ~32
//! GFLOP/s per thread here, re-packing D for every block of rows and storing C per k-panel. This
//! kernel keeps a tile of W's product (8 rows x 32 columns with AVX-512, 4 x 16 with AVX2) in
//! registers over all k, streams D's rows for those columns from L1, and adds `c * product` to W once.
//! The CPU features are detected at run time; other CPUs use `matrixmultiply`.
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

    /// One kernel per vector width: `$name` runs tiles of `$rows` rows x 2 vectors of `$lanes`
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

    low_rank_kernel!(add_low_rank_avx512, tile_rows_avx512, "avx512f", 8, 16, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps);
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
