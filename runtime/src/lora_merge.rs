//! Merging LoRA products into a stored weight as it is read, block of rows by block of rows: each
//! block of the stored rows is widened into a small f32 buffer, every LoRA's
//! `coeff * B[rows, :] @ A` is added to it with the low-rank kernel of `rank_update`, and the block
//! is rounded straight into the output in the compute dtype. No full-size f32 copy of the weight
//! exists, and the one output buffer is the only large allocation; blocks are split over threads.
//!
//! Measured before this file (rank-32 LoRA on the 40 linears of 4 Wan-1.3B blocks, 2 cores): the
//! weight-sized f32 round trip (fresh pages for each copy) and a scalar `B @ A` loop made a warm
//! upload 17x slower than without the LoRA; see issue 11's note for the figures after.
//!
//! The values are diffusers' `fuse_lora` in f32: `W + coeff * (B @ A)` per LoRA, in order, the
//! product summed over the rank in f32, then one rounding to the compute dtype.

use crate::float_convert::{f32_from_floats, floats_from_f32};
use crate::rank_update::add_low_rank;
use vidlower_ir::DType;

/// One LoRA's term for a weight [out, in]: `coeff * up @ down`, up [out, rank], down [rank, in],
/// row-major f32.
#[derive(Clone, Copy, Debug)]
pub struct MergeTerm<'a> {
    pub up: &'a [f32],
    pub down: &'a [f32],
    pub rank: usize,
    pub coeff: f32,
}

/// Rows widened at a time: 64 rows of a 1536-wide weight are 384 KiB of f32 (stays in L2).
const BLOCK_ROWS: usize = 64;

/// Below this many multiply-adds a merge runs on the calling thread (a thread costs more).
const PARALLEL_MIN_MACS: usize = 1 << 22;

/// `stored` (a [out, in] weight, float elements of `from`, native byte order) plus every term,
/// as elements of `to`, on up to `threads` threads.
pub fn merge_into_dtype(stored: &[u8], from: DType, to: DType, inp: usize, terms: &[MergeTerm], threads: usize) -> Vec<u8> {
    let (win, wout) = (from.size_in_bytes(), to.size_in_bytes());
    let out = stored.len() / (win * inp.max(1));
    let mut dst = vec![0u8; out * inp * wout];
    if out == 0 || inp == 0 {
        return dst;
    }
    let macs = out * inp * terms.iter().map(|t| t.rank).sum::<usize>().max(1);
    let blocks = out.div_ceil(BLOCK_ROWS);
    let threads = if macs < PARALLEL_MIN_MACS { 1 } else { threads.clamp(1, blocks) };
    let rows_per_thread = blocks.div_ceil(threads) * BLOCK_ROWS;
    std::thread::scope(|s| {
        let pieces = stored.chunks(rows_per_thread * inp * win).zip(dst.chunks_mut(rows_per_thread * inp * wout));
        let mut pieces: Vec<_> = pieces.enumerate().collect();
        // The last piece on this thread, the others on helpers.
        let last = pieces.pop();
        for (t, (src, dst)) in pieces {
            s.spawn(move || merge_rows(src, from, dst, to, t * rows_per_thread, inp, terms));
        }
        if let Some((t, (src, dst))) = last {
            merge_rows(src, from, dst, to, t * rows_per_thread, inp, terms);
        }
    });
    dst
}

/// Rows `first_row ..` of the weight: `src` stored, `dst` merged, a block at a time.
fn merge_rows(src: &[u8], from: DType, dst: &mut [u8], to: DType, first_row: usize, inp: usize, terms: &[MergeTerm]) {
    let (win, wout) = (from.size_in_bytes(), to.size_in_bytes());
    let mut block = vec![0f32; BLOCK_ROWS.min(src.len() / (win * inp)) * inp];
    let pieces = src.chunks(BLOCK_ROWS * inp * win).zip(dst.chunks_mut(BLOCK_ROWS * inp * wout));
    for (b, (s, d)) in pieces.enumerate() {
        let rows = s.len() / (win * inp);
        let w = &mut block[..rows * inp];
        f32_from_floats(s, from, w);
        let row0 = first_row + b * BLOCK_ROWS;
        for t in terms {
            add_low_rank(w, &t.up[row0 * t.rank..(row0 + rows) * t.rank], t.down, rows, t.rank, inp, t.coeff);
        }
        floats_from_f32(w, d, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::HostTensor;

    fn pattern(n: usize, a: usize, b: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * a % b) as f32 - (b / 2) as f32) * 0.1).collect()
    }

    /// Against the plain definition, over block and thread boundaries, with two terms, from bf16
    /// to bf16 and f32 to f32.
    #[test]
    fn matches_naive_over_blocks_and_threads() {
        let (out, inp) = (1030, 1500);
        let (r1, r2) = (3, 5);
        let (up1, down1) = (pattern(out * r1, 7, 13), pattern(r1 * inp, 5, 11));
        let (up2, down2) = (pattern(out * r2, 3, 17), pattern(r2 * inp, 11, 7));
        let base: Vec<f32> = pattern(out * inp, 13, 29);
        let terms = [
            MergeTerm { up: &up1, down: &down1, rank: r1, coeff: 0.5 },
            MergeTerm { up: &up2, down: &down2, rank: r2, coeff: -1.25 },
        ];
        let want = |o: usize, i: usize, w0: f32| {
            let p1: f32 = (0..r1).map(|k| up1[o * r1 + k] * down1[k * inp + i]).sum();
            let p2: f32 = (0..r2).map(|k| up2[o * r2 + k] * down2[k * inp + i]).sum();
            w0 + 0.5 * p1 - 1.25 * p2
        };
        let stored = HostTensor::from_f32(vec![out as i64, inp as i64], &base).unwrap();
        for threads in [1, 2, 3] {
            let got = merge_into_dtype(&stored.data, DType::F32, DType::F32, inp, &terms, threads);
            let got = HostTensor::new(DType::F32, stored.dims.clone(), got).unwrap().to_f32_vec();
            for &(o, i) in &[(0, 0), (63, 1), (64, 2), (517, 999), (out - 1, inp - 1)] {
                let w = want(o, i, base[o * inp + i]);
                assert!((got[o * inp + i] - w).abs() <= 1e-5 * (1.0 + w.abs()), "{threads} threads at {o},{i}: {} vs {w}", got[o * inp + i]);
            }
        }
        // bf16 in, bf16 out: widened exactly, rounded once at the end.
        let stored16 = stored.convert(DType::BF16);
        let got = merge_into_dtype(&stored16.data, DType::BF16, DType::BF16, inp, &terms, 2);
        let got = HostTensor::new(DType::BF16, stored.dims.clone(), got).unwrap().to_f32_vec();
        let base16 = stored16.to_f32_vec();
        for &(o, i) in &[(0, 0), (700, 3), (out - 1, inp - 1)] {
            let w = half::bf16::from_f32(want(o, i, base16[o * inp + i])).to_f32();
            assert!((got[o * inp + i] - w).abs() <= 1e-2 * (1.0 + w.abs()), "bf16 at {o},{i}: {} vs {w}", got[o * inp + i]);
        }
    }

    /// No terms: the stored values, converted (the conversion alone is exact f32 -> f32).
    #[test]
    fn no_terms_is_a_conversion() {
        let base = pattern(70 * 9, 13, 29);
        let stored = HostTensor::from_f32(vec![70, 9], &base).unwrap();
        assert_eq!(merge_into_dtype(&stored.data, DType::F32, DType::F32, 9, &[], 2), stored.data);
        assert_eq!(merge_into_dtype(&stored.data, DType::F32, DType::BF16, 9, &[], 2), stored.convert(DType::BF16).data);
    }
}
