//! Constant evaluation for `canonicalize`: elementwise ops on values of one dtype, computed in
//! f64 and rounded to the dtype as a constant of that dtype would hold them. Integer arithmetic
//! wraps at the dtype's width as StableHLO's does. Where StableHLO leaves the result
//! implementation-defined (integer division by zero, float-to-int conversion out of range or of
//! NaN) or an i64 result would not fit the f64 a literal holds, evaluation declines (`None`) and
//! the op stays for the device to compute.

use vidlower_ir::{BinaryOp, CompareDir, DType, UnaryOp};

/// Integers up to this magnitude are exact in the f64 a `Literal` holds.
const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Rounds `v` to the nearest value representable in float `dtype` (ties to even), as f64.
pub fn round_float(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F64 => v,
        DType::F32 => v as f32 as f64,
        // Rounded once (`half`'s own f64 conversions can round a value just above a tie down).
        DType::BF16 => vidlower_ir::float_round::bf16_from_f64(v).to_f64(),
        DType::F16 => vidlower_ir::float_round::f16_from_f64(v).to_f64(),
        _ => unreachable!("round_float on {dtype}"),
    }
}

/// The value a constant element `v` of `dtype` stands for: rounded for floats, truncated and
/// wrapped for integers, 0 or 1 for booleans.
pub fn canonical(dtype: DType, v: f64) -> Option<f64> {
    if dtype.is_float() {
        return Some(round_float(dtype, v));
    }
    if dtype == DType::I1 {
        return Some(if v != 0.0 { 1.0 } else { 0.0 });
    }
    if !v.is_finite() || v.abs() > EXACT_INT {
        return None;
    }
    wrap(dtype, v.trunc() as i128)
}

/// `v` wrapped to integer `dtype`'s width, as f64; `None` where f64 cannot hold it exactly.
fn wrap(dtype: DType, v: i128) -> Option<f64> {
    let w = match dtype {
        DType::I8 => v as i8 as i128,
        DType::U8 => v as u8 as i128,
        DType::I32 => v as i32 as i128,
        DType::I64 => v as i64 as i128,
        _ => unreachable!("wrap on {dtype}"),
    };
    let f = w as f64;
    (f.abs() <= EXACT_INT).then_some(f)
}

/// `u` applied to `x`, a canonical value of `dtype`.
pub fn unary(u: UnaryOp, dtype: DType, x: f64) -> Option<f64> {
    if dtype.is_float() {
        let r = match u {
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Rsqrt => 1.0 / x.sqrt(),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Logistic => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Floor => x.floor(),
            // sign(±0) is ±0 and sign(NaN) is NaN, which returning x itself gives.
            UnaryOp::Sign if x == 0.0 || x.is_nan() => x,
            UnaryOp::Sign => x.signum(),
        };
        return Some(round_float(dtype, r));
    }
    if !dtype.is_integer() {
        return None;
    }
    let i = x as i128;
    let r = match u {
        UnaryOp::Neg => -i,
        UnaryOp::Abs => i.abs(),
        UnaryOp::Sign => i.signum(),
        _ => return None,
    };
    wrap(dtype, r)
}

/// `x (b) y` for canonical values of `dtype`.
pub fn binary(b: BinaryOp, dtype: DType, x: f64, y: f64) -> Option<f64> {
    if dtype.is_float() {
        let r = match b {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Max => max_nan(x, y),
            BinaryOp::Min => -max_nan(-x, -y),
            BinaryOp::Pow => x.powf(y),
        };
        return Some(round_float(dtype, r));
    }
    if !dtype.is_integer() {
        return None;
    }
    let (i, j) = (x as i128, y as i128);
    let r = match b {
        BinaryOp::Add => i + j,
        BinaryOp::Sub => i - j,
        BinaryOp::Mul => i * j,
        // Division by zero and MIN / -1 are implementation-defined in StableHLO: leave them.
        BinaryOp::Div if j == 0 || wrap(dtype, i / j)? != (i / j) as f64 => return None,
        BinaryOp::Div => i / j, // i128 division truncates toward zero, as StableHLO's does
        BinaryOp::Max => i.max(j),
        BinaryOp::Min => i.min(j),
        BinaryOp::Pow => return None,
    };
    wrap(dtype, r)
}

/// StableHLO's maximum: NaN if either is NaN, and +0 above -0.
fn max_nan(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == y {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else {
        x.max(y)
    }
}

/// `x (dir) y` as 1.0 (true) or 0.0; float comparisons are IEEE (NaN is unordered).
pub fn compare(dir: CompareDir, x: f64, y: f64) -> f64 {
    let r = match dir {
        CompareDir::Eq => x == y,
        CompareDir::Ne => x != y,
        CompareDir::Lt => x < y,
        CompareDir::Le => x <= y,
        CompareDir::Gt => x > y,
        CompareDir::Ge => x >= y,
    };
    f64::from(u8::from(r))
}

/// `x`, a canonical value of `from`, converted to `to`.
pub fn convert(from: DType, to: DType, x: f64) -> Option<f64> {
    if to.is_float() {
        return Some(round_float(to, x));
    }
    if to == DType::I1 {
        return Some(f64::from(u8::from(x != 0.0)));
    }
    if from.is_float() {
        // Float to int truncates toward zero; NaN and out-of-range values are left to the device.
        let t = x.trunc();
        let (lo, hi) = int_range(to);
        // Through `wrap` so that -0.5 gives 0, not the -0.0 an integer literal must never hold.
        return if t.is_finite() && t >= lo && t <= hi { wrap(to, t as i128) } else { None };
    }
    wrap(to, x as i128)
}

fn int_range(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::I8 => (i8::MIN as f64, i8::MAX as f64),
        DType::U8 => (0.0, u8::MAX as f64),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        _ => (-EXACT_INT, EXACT_INT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    #[test]
    fn rounding_matches_the_formats() {
        assert_eq!(round_float(DType::F32, 0.1), 0.1f32 as f64);
        assert_eq!(round_float(DType::BF16, 1.0 + 1.0 / 256.0), 1.0); // a tie rounds to even
        assert_eq!(round_float(DType::BF16, 1.0 + 1.0 / 256.0 + 1e-12), 1.0 + 1.0 / 128.0);
        assert_eq!(round_float(DType::BF16, 3.0e38), bf16::from_f32(3.0e38).to_f64());
        assert_eq!(round_float(DType::BF16, 4.0e38), f64::INFINITY);
        assert_eq!(round_float(DType::F16, 65504.0), 65504.0);
        assert_eq!(round_float(DType::F16, 65520.0), f64::INFINITY); // max + half an ulp rounds up
        assert_eq!(round_float(DType::F16, 1e-7), f16::from_f64(1e-7).to_f64()); // subnormal
        assert_eq!(round_float(DType::F16, 0.1), f16::from_f32(0.1).to_f64());
        assert!(round_float(DType::BF16, f64::NAN).is_nan());
        assert_eq!(round_float(DType::F16, -0.0).to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn integers_wrap_and_decline_what_stablehlo_leaves_open() {
        assert_eq!(binary(BinaryOp::Add, DType::I8, 127.0, 1.0), Some(-128.0));
        assert_eq!(binary(BinaryOp::Sub, DType::U8, 0.0, 1.0), Some(255.0));
        assert_eq!(binary(BinaryOp::Mul, DType::I32, 65536.0, 65536.0), Some(0.0));
        assert_eq!(binary(BinaryOp::Div, DType::I32, -7.0, 2.0), Some(-3.0));
        assert_eq!(binary(BinaryOp::Div, DType::I32, 1.0, 0.0), None);
        assert_eq!(binary(BinaryOp::Div, DType::I8, -128.0, -1.0), None);
        assert_eq!(unary(UnaryOp::Neg, DType::I8, -128.0), Some(-128.0));
        assert_eq!(convert(DType::F32, DType::I32, -2.7), Some(-2.0));
        assert!(convert(DType::F64, DType::I32, -0.5).unwrap().is_sign_positive());
        assert_eq!(convert(DType::F32, DType::U8, -1.0), None);
        assert_eq!(convert(DType::F32, DType::I32, f64::NAN), None);
        assert_eq!(convert(DType::I32, DType::I8, 300.0), Some(44.0));
        assert_eq!(convert(DType::F32, DType::I1, f64::NAN), Some(1.0));
        assert_eq!(canonical(DType::I64, 1e300), None);
    }

    #[test]
    fn float_max_min_propagate_nan_and_order_zeros() {
        assert!(binary(BinaryOp::Max, DType::F32, f64::NAN, 1.0).unwrap().is_nan());
        assert!(binary(BinaryOp::Min, DType::F32, 1.0, f64::NAN).unwrap().is_nan());
        assert!(binary(BinaryOp::Max, DType::F32, -0.0, 0.0).unwrap().is_sign_positive());
        assert!(binary(BinaryOp::Min, DType::F32, 0.0, -0.0).unwrap().is_sign_negative());
        assert_eq!(unary(UnaryOp::Sign, DType::F32, -3.0), Some(-1.0));
        assert!(unary(UnaryOp::Sign, DType::F32, -0.0).unwrap().is_sign_negative());
        assert_eq!(compare(CompareDir::Ne, f64::NAN, f64::NAN), 1.0);
        assert_eq!(compare(CompareDir::Eq, f64::NAN, f64::NAN), 0.0);
    }
}
