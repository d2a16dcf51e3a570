//! Converting stored float weights (f32, bf16, f16, f64) to a graph's dtype, split over a few
//! threads: a bf16 checkpoint run in f32 (or the reverse) is converted as fast as memory allows,
//! not one element at a time through f64 as `HostTensor::convert` does. The values are those of
//! `HostTensor::convert` (one round to nearest even from the exact stored value).

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

fn map<const IN: usize, const OUT: usize>(src: &[u8], dst: &mut [u8], f: impl Fn([u8; IN]) -> [u8; OUT]) {
    for (s, d) in src.chunks_exact(IN).zip(dst.chunks_exact_mut(OUT)) {
        d.copy_from_slice(&f(s.try_into().expect("chunks_exact")));
    }
}

/// One piece, element for element. f32, bf16 and f16 widen exactly to f32, so they round once
/// from f32; f64 rounds once from f64.
fn convert_piece(src: &[u8], from: DType, dst: &mut [u8], to: DType) {
    let f32_of_bf16 = |b: [u8; 2]| f32::from_bits(u32::from(u16::from_ne_bytes(b)) << 16);
    let f32_of_f16 = |b: [u8; 2]| f16::from_bits(u16::from_ne_bytes(b)).to_f32();
    macro_rules! from_f32 {
        ($IN:literal, $read:expr) => {
            match to {
                DType::F32 => map::<$IN, 4>(src, dst, |b| $read(b).to_ne_bytes()),
                DType::BF16 => map::<$IN, 2>(src, dst, |b| bf16_bits_of($read(b)).to_ne_bytes()),
                DType::F16 => map::<$IN, 2>(src, dst, |b| f16::from_f32($read(b)).to_bits().to_ne_bytes()),
                DType::F64 => map::<$IN, 8>(src, dst, |b| f64::from($read(b)).to_ne_bytes()),
                _ => unreachable!("weights convert between float dtypes"),
            }
        };
    }
    match from {
        DType::F32 => from_f32!(4, f32::from_ne_bytes),
        DType::BF16 => from_f32!(2, f32_of_bf16),
        DType::F16 => from_f32!(2, f32_of_f16),
        DType::F64 => {
            let r = f64::from_ne_bytes;
            match to {
                DType::F32 => map::<8, 4>(src, dst, |b| (r(b) as f32).to_ne_bytes()),
                DType::BF16 => map::<8, 2>(src, dst, |b| vidlower_ir::float_round::bf16_from_f64(r(b)).to_bits().to_ne_bytes()),
                DType::F16 => map::<8, 2>(src, dst, |b| vidlower_ir::float_round::f16_from_f64(r(b)).to_bits().to_ne_bytes()),
                DType::F64 => dst.copy_from_slice(src),
                _ => unreachable!("weights convert between float dtypes"),
            }
        }
        _ => unreachable!("weights convert between float dtypes"),
    }
}

/// `src` (float elements of `from`, native byte order) widened into `dst`, element for element:
/// exact from f32, bf16 and f16; rounded once from f64, as [`convert_floats`] does.
pub fn f32_from_floats(src: &[u8], from: DType, dst: &mut [f32]) {
    fn each<const IN: usize>(src: &[u8], dst: &mut [f32], f: impl Fn([u8; IN]) -> f32) {
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(IN)) {
            *d = f(s.try_into().expect("chunks_exact"));
        }
    }
    match from {
        DType::F32 => each::<4>(src, dst, f32::from_ne_bytes),
        // The top half of the f32's bits (branch-free, so the loop vectorizes).
        DType::BF16 => each::<2>(src, dst, |b| f32::from_bits(u32::from(u16::from_ne_bytes(b)) << 16)),
        DType::F16 => each::<2>(src, dst, |b| f16::from_bits(u16::from_ne_bytes(b)).to_f32()),
        DType::F64 => each::<8>(src, dst, |b| f64::from_ne_bytes(b) as f32),
        _ => unreachable!("weights convert between float dtypes"),
    }
}

/// `src` rounded once into `dst` as elements of `to` (native byte order), the values
/// [`convert_floats`] gives from f32.
pub fn floats_from_f32(src: &[f32], dst: &mut [u8], to: DType) {
    fn each<const OUT: usize>(src: &[f32], dst: &mut [u8], f: impl Fn(f32) -> [u8; OUT]) {
        for (s, d) in src.iter().zip(dst.chunks_exact_mut(OUT)) {
            d.copy_from_slice(&f(*s));
        }
    }
    match to {
        DType::F32 => each::<4>(src, dst, f32::to_ne_bytes),
        DType::BF16 => each::<2>(src, dst, |x| bf16_bits_of(x).to_ne_bytes()),
        DType::F16 => each::<2>(src, dst, |x| f16::from_f32(x).to_bits().to_ne_bytes()),
        DType::F64 => each::<8>(src, dst, |x| f64::from(x).to_ne_bytes()),
        _ => unreachable!("weights convert between float dtypes"),
    }
}

/// `x` rounded to nearest even bf16, as `half::bf16::from_f32` rounds (a NaN stays a quiet NaN),
/// written without branches so that a loop over it vectorizes.
#[inline]
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
