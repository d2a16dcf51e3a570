//! Softmax and attention in primitives.

use super::emit::{compute_dtype, Emitter};
use crate::PassError;
use vidlower_ir::{BinaryOp, CompareDir, DType, DotDims, ReduceKind, TensorType, UnaryOp, ValueId};

/// `softmax(x)` over `axis`, max-subtracted so `exp` cannot overflow, in x's dtype.
pub fn softmax(em: &mut Emitter, x: ValueId, axis: usize) -> Result<ValueId, PassError> {
    let shape = em.ty(x).shape;
    let m = em.reduce(ReduceKind::Max, x, &[axis])?;
    let m = em.unreduce(m, &shape, &[axis])?;
    let shifted = em.sub(x, m)?;
    let e = em.unary(UnaryOp::Exp, shifted)?;
    let s = em.reduce(ReduceKind::Sum, e, &[axis])?;
    let s = em.unreduce(s, &shape, &[axis])?;
    em.div(e, s)
}

/// The `softmax` composite: computed in f32 for bf16/f16 input, returned in the input's dtype.
pub fn softmax_op(em: &mut Emitter, x: ValueId, axis: usize) -> Result<ValueId, PassError> {
    let dtype = em.ty(x).dtype;
    let xc = em.convert(x, compute_dtype(dtype))?;
    let y = softmax(em, xc, axis)?;
    em.convert(y, dtype)
}

/// `softmax(scale * q k^T [+ mask]) v` on [B, H, S, D].
///
/// The scores come from `dot_general` in q's dtype; scaling, masking and the softmax run in f32
/// for bf16/f16 (as torch's kernels accumulate), and the probabilities go back to q's dtype
/// for the product with v. A boolean mask selects -inf where a query may not attend; a float
/// mask is added. A window (left, right) keeps key j for query i when `i - left <= j <= i + right`,
/// positions counted from 0 in both sequences; a negative bound means no limit on that side, as
/// in flash-attention's `window_size=(-1, -1)`. With a `span` [start, end), the window holds only
/// between two positions inside it: a query or key outside (a joint attention's text) is kept.
pub fn attention(
    em: &mut Emitter,
    args: &[ValueId],
    scale: f64,
    mask: bool,
    window: Option<(i64, i64)>,
    span: Option<(i64, i64)>,
) -> Result<ValueId, PassError> {
    let (q, k, v) = (args[0], args[1], args[2]);
    let dtype = em.ty(q).dtype;
    let cdt = compute_dtype(dtype);
    let qk = DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![3] };
    let scores = em.op(vidlower_ir::Op::DotGeneral(qk), &[q, k])?;
    let mut s = em.convert(scores, cdt)?;
    if scale != 1.0 {
        s = em.binary_const(BinaryOp::Mul, s, scale)?;
    }
    let s = mask_scores(em, s, mask.then(|| args[3]), window, span, &mut |_, m| Ok(m))?;
    let p = softmax(em, s, 3)?;
    let p = em.convert(p, dtype)?;
    let pv = DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![2] };
    em.op(vidlower_ir::Op::DotGeneral(pv), &[p, v])
}

/// Scores `s` [B, H, Sq, Sk] (in the compute dtype) with the op's mask and window applied: a
/// boolean mask puts -inf where a query may not attend, a float mask is converted to the
/// scores' dtype, passed through `bias` (exp2_softmax turns it into base 2 there, at the mask's
/// own, often broadcast, size) and added; size-1 mask dims broadcast over batch, heads, queries
/// or keys. (pub(crate): exp2_softmax masks its base-2 scores with it.)
pub(crate) fn mask_scores(
    em: &mut Emitter,
    mut s: ValueId,
    mask: Option<ValueId>,
    window: Option<(i64, i64)>,
    span: Option<(i64, i64)>,
    bias: &mut dyn FnMut(&mut Emitter, ValueId) -> Result<ValueId, PassError>,
) -> Result<ValueId, PassError> {
    let t = em.ty(s);
    if let Some(m) = mask {
        let bool_mask = em.ty(m).dtype == DType::I1;
        let m = if bool_mask {
            m
        } else {
            let m = em.convert(m, t.dtype)?;
            bias(em, m)?
        };
        let m = if em.ty(m).shape == t.shape { m } else { em.broadcast(m, &t.shape, &[0, 1, 2, 3])? };
        s = if bool_mask {
            let neg_inf = em.splat_like(f64::NEG_INFINITY, s)?;
            em.select(m, s, neg_inf)?
        } else {
            em.add(s, m)?
        };
    }
    match window {
        Some((left, right)) => window_mask(em, s, left, right, span),
        None => Ok(s),
    }
}

/// Scores `s` [B, H, Sq, Sk] with -inf outside the window (where query and key both lie in
/// `span`, if one is given). The predicate is built once at [Sq, Sk] from two iotas and
/// broadcast over batch and heads. (pub(crate): exp2_softmax masks its base-2 scores with it.)
pub(crate) fn window_mask(em: &mut Emitter, s: ValueId, left: i64, right: i64, span: Option<(i64, i64)>) -> Result<ValueId, PassError> {
    if left < 0 && right < 0 {
        return Ok(s);
    }
    let shape = em.ty(s).shape;
    let pos = TensorType::new(DType::I32, [shape[2], shape[3]]);
    let query = em.op(vidlower_ir::Op::Iota { ty: pos.clone(), dim: 0 }, &[])?;
    let key = em.op(vidlower_ir::Op::Iota { ty: pos.clone(), dim: 1 }, &[])?;
    let offset = em.sub(key, query)?;
    let mut allowed = None;
    if left >= 0 {
        let lo = em.splat(-left as f64, pos.clone())?;
        allowed = Some(em.compare(CompareDir::Ge, offset, lo)?);
    }
    if right >= 0 {
        let hi = em.splat(right as f64, pos.clone())?;
        let below = em.compare(CompareDir::Le, offset, hi)?;
        allowed = Some(match allowed {
            // The IR has no `and`: select(a, b, false) is a AND b.
            Some(above) => {
                let no = em.splat(0.0, pos.with_dtype(DType::I1))?;
                em.select(above, below, no)?
            }
            None => below,
        });
    }
    let mut allowed = allowed.expect("one bound is set");
    if let Some(span) = span {
        let inside = both_in_span(em, query, key, span)?;
        let yes = em.splat(1.0, pos.with_dtype(DType::I1))?;
        allowed = em.select(inside, allowed, yes)?;
    }
    let allowed = em.broadcast(allowed, &shape, &[2, 3])?;
    let neg_inf = em.splat_like(f64::NEG_INFINITY, s)?;
    em.select(allowed, s, neg_inf)
}

/// Where query position `query` and key position `key` (i32 tensors of one shape) both lie in
/// `span` [start, end): the pairs a window applies to. (pub(crate): the blockwise key loop
/// builds its slice predicate with it.)
pub(crate) fn both_in_span(em: &mut Emitter, query: ValueId, key: ValueId, (start, end): (i64, i64)) -> Result<ValueId, PassError> {
    let pos = em.ty(query);
    let no = em.splat(0.0, pos.with_dtype(DType::I1))?;
    let (lo, hi) = (em.splat(start as f64, pos.clone())?, em.splat(end as f64, pos.clone())?);
    let mut inside = None;
    for x in [query, key] {
        let ge = em.compare(CompareDir::Ge, x, lo)?;
        let lt = em.compare(CompareDir::Lt, x, hi)?;
        // The IR has no `and`: select(a, b, false) is a AND b.
        let x_in = em.select(ge, lt, no)?;
        inside = Some(match inside {
            Some(prev) => em.select(prev, x_in, no)?,
            None => x_in,
        });
    }
    Ok(inside.expect("two positions"))
}
