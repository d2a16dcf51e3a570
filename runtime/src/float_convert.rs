//! Converting stored float weights (f32, bf16, f16, f64) to a graph's dtype, split over a few
//! threads: a bf16 checkpoint run in f32 (or the reverse) is converted as fast as memory allows,
//! not one element at a time through f64 as `HostTensor::convert` does. The values are those of
//! `HostTensor::convert` (one round to nearest even from the exact stored value).

use crate::avx512_dispatch::with_avx512;
use half::f16;
use vidlower_ir::DType;

/// Below this many bytes a conversion runs on the calling thread (a thread costs more).
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// `src`, float elements of `from`, as elements of `to` (both float dtypes; native byte
/// order, as `HostTensor` holds them), converted on up to `threads` threads.
pub fn convert_floats(src: &[u8], from: DType, to: DType, threads: usize) -> Vec<u8> {
    let (win, wout) = (from.size_in_bytes(), to.size_in_bytes());
    let n = src.len() / win;
    let mut dst = vec![0u8; n * wout];
    let threads = if src.len() < PARALLEL_MIN_BYTES { 1 } else { threads.max(1) };
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let pieces = src.chunks(per * win).zip(dst.chunks_mut(per * wout));
        let mut pieces: Vec<_> = pieces.collect();
        // The last piece on this thread, the others on helpers.
        let last = pieces.pop();
        for (i, o) in pieces {
            s.spawn(move || convert_piece(i, from, o, to));
        }
        if let Some((i, o)) = last {
            convert_piece(i, from, o, to);
        }
    });
    dst
}

/// `dst[i] = f(src[i])` over elements of the plain-bits types `I` and `O` (u16, u32, u64: a
/// float's bits in native byte order), read and written unaligned: a loop the compiler turns
/// into vector loads and stores (byte-array chunks copied one at a time did not vectorize).
#[inline(always)]
fn map<I: Copy, O>(src: &[u8], dst: &mut [u8], f: impl Fn(I) -> O) {
    let n = (src.len() / size_of::<I>()).min(dst.len() / size_of::<O>());
    let (inp, out) = (src.as_ptr().cast::<I>(), dst.as_mut_ptr().cast::<O>());
    for i in 0..n {
        // SAFETY: i < n, and src and dst hold at least n elements of I and O.
        unsafe { out.add(i).write_unaligned(f(inp.add(i).read_unaligned())) };
    }
}

fn f32_of_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

fn f32_of_f16(b: u16) -> f32 {
    f16::from_bits(b).to_f32()
}

with_avx512!(
    /// One piece, element for element. f32, bf16 and f16 widen exactly to f32, so they round once
    /// from f32; f64 rounds once from f64.
    fn convert_piece(src: &[u8], from: DType, dst: &mut [u8], to: DType) = convert_piece_body);

#[inline(always)]
fn convert_piece_body(src: &[u8], from: DType, dst: &mut [u8], to: DType) {
    macro_rules! from_f32 {
        ($In:ty, $read:expr) => {
            match to {
                DType::F32 => map(src, dst, |b: $In| $read(b).to_bits()),
                DType::BF16 => map(src, dst, |b: $In| bf16_bits_of($read(b))),
                DType::F16 => map(src, dst, |b: $In| f16::from_f32($read(b)).to_bits()),
                DType::F64 => map(src, dst, |b: $In| f64::from($read(b)).to_bits()),
                _ => unreachable!("weights convert between float dtypes"),
            }
        };
    }
    match from {
        DType::F32 => from_f32!(u32, f32::from_bits),
        DType::BF16 => from_f32!(u16, f32_of_bf16),
        DType::F16 => from_f32!(u16, f32_of_f16),
        DType::F64 => match to {
            DType::F32 => map(src, dst, |b: u64| (f64::from_bits(b) as f32).to_bits()),
            DType::BF16 => map(src, dst, |b: u64| vidlower_ir::float_round::bf16_from_f64(f64::from_bits(b)).to_bits()),
            DType::F16 => map(src, dst, |b: u64| vidlower_ir::float_round::f16_from_f64(f64::from_bits(b)).to_bits()),
            DType::F64 => dst.copy_from_slice(src),
            _ => unreachable!("weights convert between float dtypes"),
        },
        _ => unreachable!("weights convert between float dtypes"),
    }
}

with_avx512!(
    /// `src` (float elements of `from`, native byte order) widened into `dst`, element for element:
    /// exact from f32, bf16 and f16; rounded once from f64, as [`convert_floats`] does.
    pub fn f32_from_floats(src: &[u8], from: DType, dst: &mut [f32]) = f32_from_floats_body);

#[inline(always)]
fn f32_from_floats_body(src: &[u8], from: DType, dst: &mut [f32]) {
    // SAFETY: a [f32] viewed as its bytes (any bit pattern is a valid f32).
    let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(dst)) };
    match from {
        DType::F32 => map(src, dst, |b: u32| b),
        // The top half of the f32's bits (branch-free, so the loop vectorizes).
        DType::BF16 => map(src, dst, |b: u16| u32::from(b) << 16),
        DType::F16 => map(src, dst, |b: u16| f32_of_f16(b).to_bits()),
        DType::F64 => map(src, dst, |b: u64| (f64::from_bits(b) as f32).to_bits()),
        _ => unreachable!("weights convert between float dtypes"),
    }
}

with_avx512!(
    /// `src` rounded once into `dst` as elements of `to` (native byte order), the values
    /// [`convert_floats`] gives from f32.
    pub fn floats_from_f32(src: &[f32], dst: &mut [u8], to: DType) = floats_from_f32_body);

#[inline(always)]
fn floats_from_f32_body(src: &[f32], dst: &mut [u8], to: DType) {
    // SAFETY: a [f32] viewed as its bytes.
    let src = unsafe { std::slice::from_raw_parts(src.as_ptr().cast::<u8>(), std::mem::size_of_val(src)) };
    match to {
        DType::F32 => map(src, dst, |b: u32| b),
        DType::BF16 => map(src, dst, |b: u32| bf16_bits_of(f32::from_bits(b))),
        DType::F16 => map(src, dst, |b: u32| f16::from_f32(f32::from_bits(b)).to_bits()),
        DType::F64 => map(src, dst, |b: u32| f64::from(f32::from_bits(b)).to_bits()),
        _ => unreachable!("weights convert between float dtypes"),
    }
}

/// `x` rounded to nearest even bf16, as `half::bf16::from_f32` rounds (a NaN stays a quiet NaN),
/// written without branches so that a loop over it vectorizes.
#[inline(always)]
fn bf16_bits_of(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let quiet_nan = (bits >> 16) | 0x0040;
    (if x.is_nan() { quiet_nan } else { rounded }) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    use crate::tensor::HostTensor;

    /// The branch-free rounding is half's, on every 2^16th f32 bit pattern plus the edges: ties
    /// both ways, the largest finite values (round to inf), subnormals, infinities, NaNs.
    #[test]
    fn bf16_rounding_is_halfs() {
        let edges = [0x3f80_8000u32, 0x3f81_8000, 0x3f80_8001, 0x7f7f_ffff, 0x7f7f_7fff, 0x0000_8000, 0x0001_8000, 0x8000_0001, 0x7f80_0000, 0xff80_0000, 0x7fc0_0000, 0x7f80_0001, 0xffff_ffff];
        for bits in (0..=u32::MAX).step_by(65_521).chain(edges) {
            let x = f32::from_bits(bits);
            assert_eq!(bf16_bits_of(x), bf16::from_f32(x).to_bits(), "{bits:#010x}");
            let back = f32::from_bits(u32::from(bf16_bits_of(x)) << 16);
            assert_eq!(back.to_bits(), bf16::from_bits(bf16_bits_of(x)).to_f32().to_bits(), "{bits:#010x}");
        }
    }

    #[test]
    fn matches_host_tensor_convert_for_every_float_pair() {
        // Values that round differently in each narrow dtype, ties included, and enough of
        // them (5 MB of f64) that the conversion is split over threads.
        let n = 5 << 17;
        let values: Vec<f64> =
            (0..n).map(|i| ((i as f64) * 0.7311).sin() * 10f64.powi(i % 9 - 4) + (i % 3) as f64 * 1.0009765625).collect();
        let floats = [DType::F32, DType::BF16, DType::F16, DType::F64];
        for from in floats {
            let t = HostTensor::from_f64(vec![n as i64], &values).unwrap().convert(from);
            for to in floats {
                for threads in [1, 3] {
                    let got = convert_floats(&t.data, from, to, threads);
                    let want = t.convert(to).data;
                    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                        let w = to.size_in_bytes();
                        let e = i / w;
                        panic!("{from} -> {to} on {threads} thread(s): element {e} (source {:?}) {:?} vs HostTensor::convert {:?}", &t.data[e * from.size_in_bytes()..(e + 1) * from.size_in_bytes()], &got[e * w..(e + 1) * w], &want[e * w..(e + 1) * w]);
                    }
                }
            }
        }
    }
}
