//! GELU in primitives, computed in f32 for bf16/f16 input (as torch's kernels do) and rounded
//! to the input's dtype at the end.

use super::emit::{compute_dtype, Emitter};
use crate::PassError;
use vidlower_ir::{BinaryOp, GeluApprox, UnaryOp, ValueId};

/// Numerator coefficients of the erf approximation `erf(x) ~ x P(x^2) / Q(x^2)` on [-4, 4]
/// (highest power first). This is Eigen's and XLA's f32 erf; its error against the exact erf is
/// below 6.5e-8 everywhere (checked in the tests), under A&S 7.1.26's 1.5e-7 and without an exp.
/// The bound is absolute: in gelu's far negative tail (x < -3, where gelu(x) > -4e-3) the
/// relative error grows (about 1e-4 at x = -3.6), where torch's erf stays relatively accurate.
const ERF_P: [f64; 7] = [
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
];
/// Denominator coefficients, highest power first.
const ERF_Q: [f64; 5] =
    [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03, -1.42647390514189e-02];

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` or `0.5 x (1 + erf(x / sqrt 2))`.
pub fn gelu(em: &mut Emitter, x: ValueId, approximate: GeluApprox) -> Result<ValueId, PassError> {
    let dtype = em.ty(x).dtype;
    let x = em.convert(x, compute_dtype(dtype))?;
    let s = match approximate {
        GeluApprox::Tanh => {
            let x2 = em.mul(x, x)?;
            let x3 = em.mul(x2, x)?;
            let cubic = em.binary_const(BinaryOp::Mul, x3, 0.044715)?;
            let inner = em.add(x, cubic)?;
            let inner = em.binary_const(BinaryOp::Mul, inner, (2.0 / std::f64::consts::PI).sqrt())?;
            em.unary(UnaryOp::Tanh, inner)?
        }
        GeluApprox::Erf => {
            let z = em.binary_const(BinaryOp::Mul, x, std::f64::consts::FRAC_1_SQRT_2)?;
            erf(em, z)?
        }
    };
    let half_x = em.binary_const(BinaryOp::Mul, x, 0.5)?;
    let one_plus = em.binary_const(BinaryOp::Add, s, 1.0)?;
    let y = em.mul(half_x, one_plus)?;
    em.convert(y, dtype)
}

/// `erf(x)` by the rational approximation above: x clamped to [-4, 4] (where erf is 1 to f32
/// precision), and the result clamped to [-1, 1], which the approximation overshoots by 5e-8.
pub fn erf(em: &mut Emitter, x: ValueId) -> Result<ValueId, PassError> {
    let c = clamp(em, x, 4.0)?;
    let c2 = em.mul(c, c)?;
    let p = horner(em, &ERF_P, c2)?;
    let q = horner(em, &ERF_Q, c2)?;
    let cp = em.mul(c, p)?;
    let e = em.div(cp, q)?;
    clamp(em, e, 1.0)
}

/// `max(min(x, bound), -bound)`.
fn clamp(em: &mut Emitter, x: ValueId, bound: f64) -> Result<ValueId, PassError> {
    let hi = em.binary_const(BinaryOp::Min, x, bound)?;
    em.binary_const(BinaryOp::Max, hi, -bound)
}

/// The polynomial with `coeffs` (highest power first) at `x`.
fn horner(em: &mut Emitter, coeffs: &[f64], x: ValueId) -> Result<ValueId, PassError> {
    let mut acc = em.splat_like(coeffs[0], x)?;
    for &c in &coeffs[1..] {
        let scaled = em.mul(acc, x)?;
        acc = em.binary_const(BinaryOp::Add, scaled, c)?;
    }
    Ok(acc)
}

/// The approximation evaluated on an f64, to check it against the exact erf.
#[cfg(test)]
pub fn erf_reference(x: f64) -> f64 {
    let c = x.clamp(-4.0, 4.0);
    let c2 = c * c;
    let p = ERF_P.iter().fold(0.0, |acc, &k| acc * c2 + k);
    let q = ERF_Q.iter().fold(0.0, |acc, &k| acc * c2 + k);
    (c * p / q).clamp(-1.0, 1.0)
}
