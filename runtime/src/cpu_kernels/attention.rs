//! Fused attention on the CPU: `softmax2(q k^T) v` over [B, H, S, D] f32 tensors, where q is
//! already scaled to base-2 logits (`scale * log2 e` folded in by the pass that emits the call),
//! so the probabilities are `exp2(s - rowmax)`.
//!
//! Why: XLA CPU lowers attention to a [B, H, Sq, Sk] score tensor that goes through memory four
//! or five times (dot, max, exp, sum, dot); at 2530 tokens x 16 heads that is 410 MB a pass, and
//! the attention took 2.4-2.8x torch's fused CPU kernel. Here, as in flash attention, each
//! thread takes a block of 64 query rows of one head, walks the keys in chunks (256 KiB of k^T
//! and v: 512 keys at head dim 64, staying in its L2 while the block's 8-row strips use them)
//! and keeps a strip's scores for a chunk (at most [8, 512] f32) in L1 through the softmax and
//! the product with v, so the scores never reach memory. The softmax is the online one: running
//! max and sum per row, the output accumulator rescaled when the max grows.
//!
//! Per strip and chunk: `s = q_strip @ k_chunk^T` and `o += p @ v_chunk` are the LoRA merge's
//! register-tiled [`add_low_rank`] (AVX-512 / AVX2); k is packed once per call as k^T in chunks
//! of [`key_chunk`] keys so each chunk's rows are contiguous.
//!
//! Values: scores summed over d in f32 (fused multiply-adds), `exp2` to about 1 ulp
//! (a degree-7 polynomial after range reduction; [`exp2`]), sums in f32, one division per
//! output element at the end. Rows whose keys all give -inf or NaN give NaN, as the dense
//! softmax does.

use crate::avx512_dispatch::with_avx512;
use crate::rank_update::add_low_rank;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Query rows per strip: the rows of [`add_low_rank`]'s AVX-512 register tile.
pub const STRIP_ROWS: usize = 8;

/// Query rows per task: the strips that share each key chunk while it is in cache.
pub const BLOCK_ROWS: usize = 8 * STRIP_ROWS;

/// Bytes of k^T and v per key chunk: a chunk stays in a core's L2 (1 MiB on Zen 4) while every
/// strip of the query block uses it. Measured at [2, 2, 7800, 128] f32: chunks of 512 keys (512
/// KiB) 947 ms, 256 (256 KiB) 756 ms, 128 keys 899 ms; at head dim 64, 256 and 512 keys are equal.
const CHUNK_BYTES: usize = 256 << 10;

/// Keys per chunk for these head dims: [`CHUNK_BYTES`] of k^T and v, a multiple of the 32-column
/// tile, at most 512 (a strip's scores, [8, 512] f32 = 16 KiB, stay in L1).
pub fn key_chunk(d: usize, dv: usize) -> usize {
    (CHUNK_BYTES / (4 * (d + dv).max(1)) / 32 * 32).clamp(32, 512)
}

/// Sizes of one call: q [b, h, sq, d], k [b, h, sk, d], v [b, h, sk, dv], out [b, h, sq, dv].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    pub b: usize,
    pub h: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
}

impl AttentionDims {
    fn heads(&self) -> usize {
        self.b * self.h
    }

    /// Element counts of q, k, v and out.
    pub fn lens(&self) -> [usize; 4] {
        let bh = self.heads();
        [bh * self.sq * self.d, bh * self.sk * self.d, bh * self.sk * self.dv, bh * self.sq * self.dv]
    }

    /// Multiply-adds of one call (both products), for throughput figures.
    pub fn macs(&self) -> usize {
        self.heads() * self.sq * self.sk * (self.d + self.dv)
    }
}

/// `out = softmax2(q k^T + key_bias) v` per head on up to `threads` threads. `key_bias` [b, sk]
/// (base-2 units; -inf masks a key out) is added to every query row of every head of its batch
/// row. Panics if a slice's length does not match `dims` (the FFI handler checks the buffers'
/// shapes first).
pub fn attention_base2(q: &[f32], k: &[f32], v: &[f32], key_bias: Option<&[f32]>, out: &mut [f32], dims: AttentionDims, threads: usize) {
    let [lq, lk, lv, lo] = dims.lens();
    assert!(q.len() == lq && k.len() == lk && v.len() == lv && out.len() == lo, "attention_base2: sizes");
    assert!(key_bias.is_none_or(|m| m.len() == dims.b * dims.sk), "attention_base2: key bias size");
    if lo == 0 {
        return;
    }
    let kt = pack_k_transposed(k, dims, threads);
    let blocks_per_head = dims.sq.div_ceil(BLOCK_ROWS);
    let tasks = dims.heads() * blocks_per_head;
    let next = AtomicUsize::new(0);
    let out_ptr = SharedOut(out.as_mut_ptr());
    let work = || {
        let mut scratch = Scratch::new(dims);
        loop {
            let task = next.fetch_add(1, Ordering::Relaxed);
            if task >= tasks {
                break;
            }
            let (head, block) = (task / blocks_per_head, task % blocks_per_head);
            let row0 = block * BLOCK_ROWS;
            let rows = BLOCK_ROWS.min(dims.sq - row0);
            let o = &out_ptr;
            // SAFETY: every task writes its own rows (head, row0 .. row0 + rows) of `out`, which
            // outlives the scope; no two tasks share a row.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(o.0.add((head * dims.sq + row0) * dims.dv), rows * dims.dv)
            };
            let bias = key_bias.map(|m| &m[head / dims.h * dims.sk..][..dims.sk]);
            block_attention(q, &kt, v, bias, dst, dims, head, row0, rows, &mut scratch);
        }
    };
    run_on_threads(threads.clamp(1, tasks), &work);
}

/// An output shared by the worker threads, each writing disjoint rows.
struct SharedOut(*mut f32);
// SAFETY: the pointer is only used to build disjoint row slices (see its users).
unsafe impl Sync for SharedOut {}

/// Runs `work` on `threads` threads (this one included) and waits for all of them.
fn run_on_threads(threads: usize, work: &(dyn Fn() + Sync)) {
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
}

/// k [bh, sk, d] as k^T in key chunks: for head h and chunk c (keys c*chunk ..), a [d, len]
/// row-major block, blocks one after another per head. Chunk c of head h starts at
/// `h * sk * d + c * chunk * d`.
fn pack_k_transposed(k: &[f32], dims: AttentionDims, threads: usize) -> Vec<f32> {
    let (sk, d, chunk) = (dims.sk, dims.d, key_chunk(dims.d, dims.dv));
    let mut kt = vec![0f32; k.len()];
    let heads = dims.heads();
    if heads == 0 || sk * d == 0 {
        return kt;
    }
    let next = AtomicUsize::new(0);
    let kt_ptr = SharedOut(kt.as_mut_ptr());
    let work = || loop {
        let head = next.fetch_add(1, Ordering::Relaxed);
        if head >= heads {
            break;
        }
        let o = &kt_ptr;
        // SAFETY: every task writes its own head's sk * d elements of `kt`, which outlives the scope.
        let dst = unsafe { std::slice::from_raw_parts_mut(o.0.add(head * sk * d), sk * d) };
        let src = &k[head * sk * d..(head + 1) * sk * d];
        for (src, dst) in src.chunks(chunk * d).zip(dst.chunks_mut(chunk * d)) {
            let len = src.len() / d;
            for j in 0..len {
                for (dd, &x) in src[j * d..(j + 1) * d].iter().enumerate() {
                    dst[dd * len + j] = x;
                }
            }
        }
    };
    run_on_threads(threads.clamp(1, heads), &work);
    kt
}

/// One thread's buffers: a strip's scores, and the block's output accumulator, running max
/// and running sum per row.
struct Scratch {
    s: Vec<f32>,
    o: Vec<f32>,
    max: [f32; BLOCK_ROWS],
    sum: [f32; BLOCK_ROWS],
}

impl Scratch {
    fn new(dims: AttentionDims) -> Scratch {
        Scratch {
            s: vec![0.0; STRIP_ROWS * key_chunk(dims.d, dims.dv).min(dims.sk)],
            o: vec![0.0; BLOCK_ROWS * dims.dv],
            max: [f32::NEG_INFINITY; BLOCK_ROWS],
            sum: [0.0; BLOCK_ROWS],
        }
    }
}

/// Rows `row0 .. row0 + rows` (a query block) of head `head` into `dst` ([rows, dv]): key chunk
/// by key chunk, every strip of the block takes the chunk (the online softmax). `bias`: the
/// head's key bias [sk].
#[allow(clippy::too_many_arguments)]
fn block_attention(q: &[f32], kt: &[f32], v: &[f32], bias: Option<&[f32]>, dst: &mut [f32], dims: AttentionDims, head: usize, row0: usize, rows: usize, sc: &mut Scratch) {
    let AttentionDims { sq, sk, d, dv, .. } = dims;
    let q_block = &q[(head * sq + row0) * d..(head * sq + row0 + rows) * d];
    let o = &mut sc.o[..rows * dv];
    o.fill(0.0);
    sc.max[..rows].fill(f32::NEG_INFINITY);
    sc.sum[..rows].fill(0.0);
    let (kt_head, v_head) = (&kt[head * sk * d..(head + 1) * sk * d], &v[head * sk * dv..(head + 1) * sk * dv]);
    let mut key0 = 0;
    while key0 < sk {
        let len = key_chunk(d, dv).min(sk - key0);
        let (kt_chunk, v_chunk) = (&kt_head[key0 * d..(key0 + len) * d], &v_head[key0 * dv..(key0 + len) * dv]);
        for strip0 in (0..rows).step_by(STRIP_ROWS) {
            let n = STRIP_ROWS.min(rows - strip0);
            let s = &mut sc.s[..n * len];
            s.fill(0.0);
            add_low_rank(s, &q_block[strip0 * d..(strip0 + n) * d], kt_chunk, n, d, len, 1.0);
            for r in 0..n {
                let row = &mut s[r * len..(r + 1) * len];
                if let Some(bias) = bias {
                    add_in_place(row, &bias[key0..key0 + len]);
                }
                let (max, sum) = (&mut sc.max[strip0 + r], &mut sc.sum[strip0 + r]);
                let chunk_max = row_max(row);
                if chunk_max == f32::NEG_INFINITY {
                    // Every key of the chunk masked out for this row: it adds nothing.
                    row.fill(0.0);
                    continue;
                }
                let new_max = if chunk_max > *max { chunk_max } else { *max };
                // exp2(-inf - finite) = 0: the first chunk's rescale of an empty accumulator.
                let rescale = exp2(*max - new_max);
                let row_sum = exp2_shifted_in_place(row, new_max);
                // An infinite or NaN score makes the row NaN, as in the dense softmax.
                *sum = if new_max.is_finite() { *sum * rescale + row_sum } else { f32::NAN };
                *max = new_max;
                if rescale != 1.0 {
                    o[(strip0 + r) * dv..(strip0 + r + 1) * dv].iter_mut().for_each(|x| *x *= rescale);
                }
            }
            add_low_rank(&mut o[strip0 * dv..(strip0 + n) * dv], s, v_chunk, n, len, dv, 1.0);
        }
        key0 += len;
    }
    // A row whose keys were all masked out has sum 0: 0/0 = NaN, as the dense softmax gives.
    for r in 0..rows {
        let total = sc.sum[r];
        for (x, &acc) in dst[r * dv..(r + 1) * dv].iter_mut().zip(&o[r * dv..(r + 1) * dv]) {
            *x = acc / total;
        }
    }
}

/// `row[j] += bias[j]`.
fn add_in_place(row: &mut [f32], bias: &[f32]) {
    row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
}

with_avx512!(
    /// The largest element, ignoring NaN (a NaN element makes its row's sum NaN through [`exp2`]).
    fn row_max(row: &[f32]) -> f32 = row_max_body);

with_avx512!(
    /// `row[j] = exp2(row[j] - shift)` for every j; returns their sum.
    fn exp2_shifted_in_place(row: &mut [f32], shift: f32) -> f32 = exp2_shifted_body);

/// Lanes of the partial maxima and sums: 16 independent accumulators let the loops vectorize
/// (a single f32 accumulator would force the sequential order).
const LANES: usize = 16;

#[inline(always)]
fn row_max_body(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    acc.iter().fold(tail, |m, &x| if x > m { x } else { m })
}

#[inline(always)]
fn exp2_shifted_body(row: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
            *x = exp2(*x - shift);
            *a += *x;
        }
    }
    let mut tail = 0.0;
    for x in chunks.into_remainder() {
        *x = exp2(*x - shift);
        tail += *x;
    }
    acc.iter().sum::<f32>() + tail
}

/// `2^x` in f32, branch-free so that loops over it vectorize: x = n + f with n = round(x) and
/// |f| <= 1/2, `2^f = e^(f ln 2)` by its Taylor series to degree 7 (truncation error below
/// 6e-9 relative), then n added to the exponent bits. Below 2^-125 the result is 0 (so a masked
/// key's -inf gives exactly 0), above 2^127 it is 2^127; NaN stays NaN.
#[inline(always)]
pub fn exp2(x: f32) -> f32 {
    // 1.5 * 2^23: adding it leaves round(x) in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let c = x.clamp(-125.0, 127.0);
    let t = c + ROUND;
    let n = t - ROUND;
    let y = (c - n) * std::f32::consts::LN_2;
    let mut p = 1.0 / 5040.0;
    for inv_k_factorial in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * y + inv_k_factorial;
    }
    let shift = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32) << 23;
    let r = f32::from_bits((p.to_bits() as i32).wrapping_add(shift) as u32);
    if x.is_nan() {
        x
    } else if x < -125.0 {
        0.0
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `softmax2(q k^T + key_bias) v` in f64, row by row.
    fn reference(q: &[f32], k: &[f32], v: &[f32], bias: Option<&[f32]>, dims: AttentionDims) -> Vec<f64> {
        let AttentionDims { sq, sk, d, dv, .. } = dims;
        let mut out = Vec::with_capacity(dims.lens()[3]);
        for head in 0..dims.heads() {
            for i in 0..sq {
                let qi = &q[(head * sq + i) * d..][..d];
                let bias_of = |j: usize| bias.map_or(0.0, |b| b[head / dims.h * sk + j] as f64);
                let s: Vec<f64> = (0..sk)
                    .map(|j| qi.iter().zip(&k[(head * sk + j) * d..][..d]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() + bias_of(j))
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let p: Vec<f64> = s.iter().map(|x| (x - m).exp2()).collect();
                let total: f64 = p.iter().sum();
                for c in 0..dv {
                    out.push((0..sk).map(|j| p[j] * v[(head * sk + j) * dv + c] as f64).sum::<f64>() / total);
                }
            }
        }
        out
    }

    /// Deterministic values in [-scale, scale) plus `trend * position` along the sequence.
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn check(dims: AttentionDims, q: &[f32], k: &[f32], v: &[f32], threads: usize) {
        check_with(dims, q, k, v, None, threads)
    }

    fn check_with(dims: AttentionDims, q: &[f32], k: &[f32], v: &[f32], bias: Option<&[f32]>, threads: usize) {
        let mut out = vec![0f32; dims.lens()[3]];
        attention_base2(q, k, v, bias, &mut out, dims, threads);
        let want = reference(q, k, v, bias, dims);
        let same = |g: f32, w: f64| if g.is_nan() || w.is_nan() { g.is_nan() && w.is_nan() } else { true };
        assert!(out.iter().zip(&want).all(|(&g, &w)| same(g, w)), "{dims:?}: NaN rows differ");
        let finite = |x: &f64| !x.is_nan();
        let worst = out.iter().zip(&want).filter(|(_, w)| finite(w)).map(|(&g, &w)| (g as f64 - w).abs() / (1.0 + w.abs())).fold(0.0, f64::max);
        assert!(worst < 2e-6, "{dims:?}: max error {worst:e}");
    }

    #[test]
    fn matches_the_f64_definition_across_blocks_chunks_and_remainders() {
        // Query rows not a multiple of a strip or block, keys over several chunks with a
        // partial last one, head dims that are not multiples of the vector width, dv != d.
        for (b, h, sq, sk, d, dv, threads) in [
            (1, 1, 1, 1, 1, 1, 1),
            (2, 3, 70, 1100, 24, 40, 2),
            (1, 2, 130, 513, 64, 64, 3),
            (1, 1, 9, 7, 80, 17, 1),
            (1, 1, 65, 2048, 128, 128, 2),
        ] {
            let dims = AttentionDims { b, h, sq, sk, d, dv };
            let [lq, lk, lv, _] = dims.lens();
            check(dims, &values(lq, 1, 0.5), &values(lk, 2, 0.5), &values(lv, 3, 1.0), threads);
        }
    }

    #[test]
    fn the_online_softmax_rescales_when_a_later_chunk_has_the_max() {
        // Scores grow with the key index (k's first column rises): each chunk raises every row's
        // max, and the earliest keys' weights end up ~2^-30 of the last ones'.
        let dims = AttentionDims { b: 1, h: 1, sq: 20, sk: 1600, d: 8, dv: 8 };
        let [lq, lk, lv, _] = dims.lens();
        let q: Vec<f32> = (0..lq).map(|i| if i % 8 == 0 { 1.0 } else { 0.1 }).collect();
        let mut k = values(lk, 5, 0.5);
        for j in 0..dims.sk {
            k[j * 8] = j as f32 / 50.0;
        }
        check(dims, &q, &k, &values(lv, 6, 1.0), 2);
    }

    #[test]
    fn a_key_bias_masks_keys_whole_chunks_and_whole_rows() {
        // Batch 2 x 2 heads, 700 keys (two chunks at head dim 64): batch row 0 masks every even
        // key and adds a float bias to the rest; batch row 1 masks the whole first chunk and
        // all keys but one of the second. Masked keys get huge values: any weight on them shows.
        let dims = AttentionDims { b: 2, h: 2, sq: 10, sk: 700, d: 64, dv: 64 };
        let [lq, lk, lv, _] = dims.lens();
        let mut bias = vec![0f32; 2 * 700];
        for j in 0..700 {
            bias[j] = if j % 2 == 0 { f32::NEG_INFINITY } else { (j % 7) as f32 * 0.3 };
            bias[700 + j] = if j == 650 { 0.0 } else { f32::NEG_INFINITY };
        }
        let mut v = values(lv, 13, 1.0);
        for (i, x) in v.iter_mut().enumerate() {
            let (head, j) = (i / (700 * 64), i / 64 % 700);
            if bias[head / 2 * 700 + j] == f32::NEG_INFINITY {
                *x = 1e30;
            }
        }
        check_with(dims, &values(lq, 11, 0.5), &values(lk, 12, 0.5), &v, Some(&bias), 2);
        // A batch row with every key masked gives NaN rows, as the dense softmax does.
        let all_masked: Vec<f32> = bias.iter().enumerate().map(|(i, &b)| if i >= 700 { f32::NEG_INFINITY } else { b }).collect();
        check_with(dims, &values(lq, 11, 0.5), &values(lk, 12, 0.5), &v, Some(&all_masked), 2);
    }

    #[test]
    fn a_nan_or_infinite_score_makes_its_row_nan_only() {
        let dims = AttentionDims { b: 1, h: 1, sq: 3, sk: 600, d: 4, dv: 4 };
        let [lq, lk, lv, lo] = dims.lens();
        let mut q = values(lq, 7, 0.5);
        q[4] = f32::INFINITY; // row 1: +inf scores
        let mut k = values(lk, 8, 0.5);
        let v = values(lv, 9, 1.0);
        let mut out = vec![0f32; lo];
        attention_base2(&q, &k, &v, None, &mut out, dims, 1);
        assert!(out[4..8].iter().all(|x| x.is_nan()), "{:?}", &out[4..8]);
        assert!(out[..4].iter().chain(&out[8..]).all(|x| x.is_finite()));
        k[550 * 4] = f32::NAN; // key 550 (second chunk): every row's score is NaN there
        attention_base2(&q, &k, &v, None, &mut out, dims, 1);
        assert!(out.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn exp2_is_within_two_ulp_and_clamps() {
        for i in -125_000..=127_000 {
            let x = i as f32 / 1000.0;
            let (got, want) = (exp2(x) as f64, (x as f64).exp2());
            assert!((got - want).abs() <= 2.4e-7 * want, "exp2({x}) = {got}, expected {want}");
        }
        assert_eq!(exp2(0.0), 1.0);
        assert_eq!(exp2(-125.0), 2f32.powi(-125));
        assert_eq!(exp2(-125.5), 0.0);
        assert_eq!(exp2(f32::NEG_INFINITY), 0.0);
        assert!(exp2(f32::NAN).is_nan());
    }
}
