//! f64 -> bf16 / f16 rounded once, to nearest-even. `half`'s `from_f64` for these types looks only
//! at the f64's upper 32 bits, so a value just above a tie (an f32 such as 0x40008001, widened)
//! rounds down: a weight stored in f32 then became a different bf16 through the f64 path than
//! through the f32 one. Rounding to f32 first *to odd* (the dropped bits kept as a sticky low bit)
//! and then to nearest-even is exact, because f32 carries more than 2p + 2 bits for both targets.

use half::{bf16, f16};

/// `v` rounded to f32 toward zero, with the lowest bit set when that dropped anything.
fn f32_round_to_odd(v: f64) -> f32 {
    let f = v as f32;
    if !f.is_finite() || f as f64 == v {
        return f;
    }
    // `as` rounded to nearest: step back toward zero when it rounded away from it.
    let bits = f.to_bits();
    let toward_zero = if (f as f64).abs() > v.abs() { bits - 1 } else { bits };
    f32::from_bits(toward_zero | 1)
}

pub fn bf16_from_f64(v: f64) -> bf16 {
    if v.is_nan() {
        return bf16::NAN;
    }
    bf16::from_f32(f32_round_to_odd(v))
}

pub fn f16_from_f64(v: f64) -> f16 {
    if v.is_nan() {
        return f16::NAN;
    }
    f16::from_f32(f32_round_to_odd(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn just_above_a_tie_rounds_up() {
        let x = f32::from_bits(0x4000_8001);
        assert_eq!(bf16_from_f64(x as f64).to_bits(), 0x4001);
        assert_eq!(bf16_from_f64(x as f64), bf16::from_f32(x));
        // An exact tie rounds to even; a hair above it (only visible in f64) rounds up.
        assert_eq!(bf16_from_f64(f32::from_bits(0x4000_8000) as f64).to_bits(), 0x4000);
        assert_eq!(bf16_from_f64(f32::from_bits(0x4000_8000) as f64 * (1.0 + 1e-12)).to_bits(), 0x4001);
        let h = f32::from_bits(0x3F80_1001); // 1 + 2^-11 + 2^-23: just above an f16 tie.
        assert_eq!(f16_from_f64(h as f64), f16::from_f32(h));
        assert_eq!(f16_from_f64(h as f64).to_bits(), 0x3C01);
    }

    #[test]
    fn agrees_with_the_f32_path_on_every_f32_pattern_sampled() {
        // Widened f32 values must round exactly as from the f32 itself.
        let mut bits: u32 = 0x1234_5678;
        for _ in 0..200_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = f32::from_bits(bits);
            if x.is_nan() {
                continue;
            }
            assert_eq!(bf16_from_f64(x as f64).to_bits(), bf16::from_f32(x).to_bits(), "{bits:#x}");
            assert_eq!(f16_from_f64(x as f64).to_bits(), f16::from_f32(x).to_bits(), "{bits:#x}");
        }
        assert!(f16_from_f64(1e9).is_infinite() && bf16_from_f64(-1e300).is_infinite());
        assert_eq!(bf16_from_f64(0.0).to_bits(), 0);
        assert_eq!(bf16_from_f64(-0.0).to_bits(), 0x8000);
        assert!(bf16_from_f64(f64::NAN).is_nan());
    }
}
