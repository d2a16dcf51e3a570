//! LayerNorm, RMSNorm and GroupNorm in primitives. Statistics and the affine step run in f32
//! for bf16/f16 input (diffusers' FP32LayerNorm, and torch's norm kernels, which accumulate in
//! f32) and the result is rounded to the input's dtype once, at the end. Weights and biases may
//! have another float dtype than x; they are converted to the compute dtype.

use super::emit::{compute_dtype, Emitter};
use crate::PassError;
use vidlower_ir::{BinaryOp, UnaryOp, ValueId};

/// `(x - mean) * rsqrt(var + eps) [* weight] [+ bias]` over the last axis; variance two-pass.
pub fn layer_norm(
    em: &mut Emitter,
    x: ValueId,
    eps: f64,
    weight: Option<ValueId>,
    bias: Option<ValueId>,
) -> Result<ValueId, PassError> {
    let t = em.ty(x);
    let xc = em.convert(x, compute_dtype(t.dtype))?;
    let last = [t.rank() - 1];
    let mean = em.mean(xc, &last)?;
    let mean = em.unreduce(mean, &t.shape, &last)?;
    let centered = em.sub(xc, mean)?;
    let squares = em.mul(centered, centered)?;
    let var = em.mean(squares, &last)?;
    let y = scale_by_rsqrt(em, centered, var, eps, &last)?;
    let y = affine(em, y, weight, bias, last[0])?;
    em.convert(y, t.dtype)
}

/// `x * rsqrt(mean(x^2) + eps) [* weight]` over the last axis.
pub fn rms_norm(em: &mut Emitter, x: ValueId, eps: f64, weight: Option<ValueId>) -> Result<ValueId, PassError> {
    let t = em.ty(x);
    let xc = em.convert(x, compute_dtype(t.dtype))?;
    let last = [t.rank() - 1];
    let squares = em.mul(xc, xc)?;
    let ms = em.mean(squares, &last)?;
    let y = scale_by_rsqrt(em, xc, ms, eps, &last)?;
    let y = affine(em, y, weight, None, last[0])?;
    em.convert(y, t.dtype)
}

/// GroupNorm on [N, C, ...]: statistics per (sample, group) over the group's channels and all
/// spatial positions, via a reshape to [N, G, C/G * rest]; the affine step is per channel.
pub fn group_norm(
    em: &mut Emitter,
    x: ValueId,
    groups: i64,
    eps: f64,
    affine_params: Option<(ValueId, ValueId)>,
) -> Result<ValueId, PassError> {
    let t = em.ty(x);
    let xc = em.convert(x, compute_dtype(t.dtype))?;
    let per_group = t.num_elements() / (t.shape[0] * groups);
    let grouped = [t.shape[0], groups, per_group];
    let xg = em.reshape(xc, &grouped)?;
    let axis = [2];
    let mean = em.mean(xg, &axis)?;
    let mean = em.unreduce(mean, &grouped, &axis)?;
    let centered = em.sub(xg, mean)?;
    let squares = em.mul(centered, centered)?;
    let var = em.mean(squares, &axis)?;
    let y = scale_by_rsqrt(em, centered, var, eps, &axis)?;
    let y = em.reshape(y, &t.shape)?;
    let (w, b) = affine_params.unzip();
    let y = affine(em, y, w, b, 1)?;
    em.convert(y, t.dtype)
}

/// `x * rsqrt(stat + eps)`, `stat` being `x` reduced over `axes`; the rsqrt runs at the reduced
/// size and only its result is broadcast.
fn scale_by_rsqrt(em: &mut Emitter, x: ValueId, stat: ValueId, eps: f64, axes: &[usize]) -> Result<ValueId, PassError> {
    let shifted = em.binary_const(BinaryOp::Add, stat, eps)?;
    let r = em.unary(UnaryOp::Rsqrt, shifted)?;
    let shape = em.ty(x).shape;
    let r = em.unreduce(r, &shape, axes)?;
    em.mul(x, r)
}

/// `y * weight + bias` with 1-d parameters laid along dim `dim` of y, in y's dtype.
fn affine(
    em: &mut Emitter,
    y: ValueId,
    weight: Option<ValueId>,
    bias: Option<ValueId>,
    dim: usize,
) -> Result<ValueId, PassError> {
    let t = em.ty(y);
    let mut y = y;
    for (param, op) in [(weight, BinaryOp::Mul), (bias, BinaryOp::Add)] {
        if let Some(p) = param {
            let p = em.convert(p, t.dtype)?;
            let p = em.broadcast(p, &t.shape, &[dim])?;
            y = em.binary(op, y, p)?;
        }
    }
    Ok(y)
}
