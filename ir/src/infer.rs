//! Result-type inference: the one place that knows each op's typing rule. The builder uses it to
//! type new nodes; the verifier re-runs it to check every node.

use crate::error::{IrError, Result};
use crate::op::{AttentionKind, ConvAttrs, DotDims, Op, UnaryOp};
use crate::types::{TensorType, Type};
use crate::DType;

/// The result type of `op` applied to operands of `operand_types`, or an error naming the op,
/// the operand types and what was expected.
pub fn infer_type(op: &Op, operand_types: &[&Type]) -> Result<Type> {
    let fail = |message: String| IrError::Shape {
        op: op.name().to_string(),
        operands: describe(operand_types),
        message,
    };
    // Only `get` takes a tuple.
    let mut ts: Vec<&TensorType> = Vec::with_capacity(operand_types.len());
    for t in operand_types {
        match t {
            Type::Tensor(t) => ts.push(t),
            Type::Tuple(_) if matches!(op, Op::GetTuple { .. }) => {}
            Type::Tuple(_) => return Err(fail("a tuple operand must first be taken apart with `get`".into())),
        }
    }
    let arity = |n: usize| -> Result<()> {
        if operand_types.len() == n {
            Ok(())
        } else {
            Err(fail(format!("expected {n} operand(s), got {}", operand_types.len())))
        }
    };
    let t = match op {
        Op::Input { .. } | Op::Weight { .. } => {
            return Err(fail("inputs and weights are typed where they are declared".into()))
        }
        Op::Constant(lit) => {
            arity(0)?;
            if let crate::op::LiteralData::Dense(v) = &lit.data {
                if v.len() as i64 != lit.ty.num_elements() {
                    return Err(fail(format!("{} values for a {} constant", v.len(), lit.ty)));
                }
            }
            check_dims(&lit.ty.shape).map_err(fail)?;
            lit.ty.clone()
        }
        Op::Iota { ty, dim } => {
            arity(0)?;
            if *dim >= ty.rank() {
                return Err(fail(format!("iota dim {dim} out of range for {ty}")));
            }
            ty.clone()
        }
        Op::Unary(u) => {
            arity(1)?;
            if u.float_only() && !ts[0].dtype.is_float() {
                return Err(fail(format!("{} needs a float operand", u.name())));
            }
            if *u == UnaryOp::Abs && ts[0].dtype == DType::I1 {
                return Err(fail("abs of a boolean".into()));
            }
            ts[0].clone()
        }
        Op::Binary(b) => {
            arity(2)?;
            same_type(ts[0], ts[1]).map_err(|m| fail(format!("{m}; broadcast explicitly with broadcast_in_dim")))?;
            if *b == crate::op::BinaryOp::Pow && !ts[0].dtype.is_float() {
                return Err(fail("pow needs float operands".into()));
            }
            ts[0].clone()
        }
        Op::Compare(_) => {
            arity(2)?;
            same_type(ts[0], ts[1]).map_err(fail)?;
            ts[0].with_dtype(DType::I1)
        }
        Op::Select => {
            arity(3)?;
            if ts[0].dtype != DType::I1 {
                return Err(fail("the predicate must be i1".into()));
            }
            same_type(ts[1], ts[2]).map_err(fail)?;
            if !ts[0].shape.is_empty() && ts[0].shape != ts[1].shape {
                return Err(fail("the predicate must be a scalar or have the operands' shape".into()));
            }
            ts[1].clone()
        }
        Op::Convert { to } => {
            arity(1)?;
            ts[0].with_dtype(*to)
        }
        Op::BroadcastInDim { shape, dims } => {
            arity(1)?;
            check_dims(shape).map_err(fail)?;
            if dims.len() != ts[0].rank() {
                return Err(fail(format!("dims has {} entries for a rank-{} operand", dims.len(), ts[0].rank())));
            }
            for (i, &d) in dims.iter().enumerate() {
                if d >= shape.len() {
                    return Err(fail(format!("dim {d} out of range for result rank {}", shape.len())));
                }
                if i > 0 && dims[i - 1] >= d {
                    return Err(fail("dims must be strictly increasing".into()));
                }
                let src = ts[0].shape[i];
                if src != 1 && src != shape[d] {
                    return Err(fail(format!("operand dim {i} (size {src}) cannot broadcast to size {}", shape[d])));
                }
            }
            ts[0].with_shape(shape.clone())
        }
        Op::Reshape { shape } => {
            arity(1)?;
            check_dims(shape).map_err(fail)?;
            let n: i64 = shape.iter().product();
            if n != ts[0].num_elements() {
                return Err(fail(format!("cannot reshape {} elements into {:?}", ts[0].num_elements(), shape)));
            }
            ts[0].with_shape(shape.clone())
        }
        Op::Transpose { perm } => {
            arity(1)?;
            check_perm(perm, ts[0].rank()).map_err(fail)?;
            ts[0].with_shape(perm.iter().map(|&p| ts[0].shape[p]).collect::<Vec<_>>())
        }
        Op::Slice { start, limit, strides } => {
            arity(1)?;
            let r = ts[0].rank();
            if start.len() != r || limit.len() != r || strides.len() != r {
                return Err(fail(format!("start/limit/strides need {r} entries each")));
            }
            let mut shape = Vec::with_capacity(r);
            for i in 0..r {
                if start[i] < 0 || limit[i] > ts[0].shape[i] || start[i] > limit[i] || strides[i] < 1 {
                    return Err(fail(format!(
                        "dim {i}: slice [{}:{}:{}] is outside 0..{}",
                        start[i], limit[i], strides[i], ts[0].shape[i]
                    )));
                }
                shape.push((limit[i] - start[i] + strides[i] - 1) / strides[i]);
            }
            ts[0].with_shape(shape)
        }
        Op::DynamicSlice { sizes } => {
            let r = ts.first().map(|t| t.rank()).unwrap_or(0);
            arity(1 + r)?;
            if sizes.len() != r {
                return Err(fail(format!("sizes needs {r} entries")));
            }
            check_indices(&ts[1..]).map_err(fail)?;
            for (i, (&size, &dim)) in sizes.iter().zip(&ts[0].shape).enumerate() {
                if size < 0 || size > dim {
                    return Err(fail(format!("dim {i}: size {size} exceeds {dim}")));
                }
            }
            ts[0].with_shape(sizes.clone())
        }
        Op::DynamicUpdateSlice => {
            let r = ts.first().map(|t| t.rank()).unwrap_or(0);
            arity(2 + r)?;
            if ts[1].dtype != ts[0].dtype || ts[1].rank() != r {
                return Err(fail("the update must have the operand's dtype and rank".into()));
            }
            if ts[1].shape.iter().zip(&ts[0].shape).any(|(u, o)| u > o) {
                return Err(fail("the update is larger than the operand".into()));
            }
            check_indices(&ts[2..]).map_err(fail)?;
            ts[0].clone()
        }
        Op::Take { axis } => {
            arity(2)?;
            let (table, idx) = (ts[0], ts[1]);
            if *axis >= table.rank() {
                return Err(fail(format!("axis {axis} out of range for {table}")));
            }
            if !matches!(idx.dtype, DType::I32 | DType::I64) {
                return Err(fail(format!("indices must be i32 or i64, got {idx}")));
            }
            let mut shape = table.shape[..*axis].to_vec();
            shape.extend(&idx.shape);
            shape.extend(&table.shape[axis + 1..]);
            table.with_shape(shape)
        }
        Op::Concatenate { dim } => {
            if ts.is_empty() {
                return Err(fail("needs at least one operand".into()));
            }
            let r = ts[0].rank();
            if *dim >= r {
                return Err(fail(format!("dim {dim} out of range for rank {r}")));
            }
            let mut shape = ts[0].shape.clone();
            shape[*dim] = 0;
            for t in &ts {
                if t.dtype != ts[0].dtype || t.rank() != r {
                    return Err(fail("operands must share dtype and rank".into()));
                }
                for i in 0..r {
                    if i != *dim && t.shape[i] != ts[0].shape[i] {
                        return Err(fail(format!("operands differ in dim {i}, which is not the concat dim")));
                    }
                }
                shape[*dim] += t.shape[*dim];
            }
            ts[0].with_shape(shape)
        }
        Op::Pad { low, high, interior } => {
            arity(2)?;
            let r = ts[0].rank();
            if low.len() != r || high.len() != r || interior.len() != r {
                return Err(fail(format!("low/high/interior need {r} entries each")));
            }
            if !ts[1].shape.is_empty() || ts[1].dtype != ts[0].dtype {
                return Err(fail("the padding value must be a scalar of the operand's dtype".into()));
            }
            let mut shape = Vec::with_capacity(r);
            for i in 0..r {
                let n = ts[0].shape[i];
                if interior[i] < 0 {
                    return Err(fail("interior padding must be >= 0".into()));
                }
                let size = low[i] + high[i] + n + (n - 1).max(0) * interior[i];
                if size < 0 {
                    return Err(fail(format!("dim {i}: padding gives a negative size")));
                }
                shape.push(size);
            }
            ts[0].with_shape(shape)
        }
        Op::DotGeneral(d) => {
            arity(2)?;
            dot_shape(ts[0], ts[1], d).map_err(fail)?
        }
        Op::Convolution(c) => {
            arity(2)?;
            conv_shape(ts[0], ts[1], c).map_err(fail)?
        }
        Op::Reduce { axes, .. } => {
            arity(1)?;
            let r = ts[0].rank();
            let mut seen = vec![false; r];
            for &a in axes {
                if a >= r || seen[a] {
                    return Err(fail(format!("axis {a} out of range or repeated for rank {r}")));
                }
                seen[a] = true;
            }
            ts[0].with_shape((0..r).filter(|i| !seen[*i]).map(|i| ts[0].shape[i]).collect::<Vec<_>>())
        }
        Op::While { cond, body } => {
            let state: Vec<TensorType> = ts.iter().map(|t| (*t).clone()).collect();
            check_region("cond", cond, &state).map_err(&fail)?;
            check_region("body", body, &state).map_err(&fail)?;
            let cond_out: Vec<TensorType> = cond.outputs.iter().map(|o| cond.tensor_ty(o.value).clone()).collect();
            if cond_out != [TensorType::scalar(DType::I1)] {
                return Err(fail("cond must return one i1[]".into()));
            }
            let body_out: Vec<TensorType> = body.outputs.iter().map(|o| body.tensor_ty(o.value).clone()).collect();
            if body_out != state {
                return Err(fail("body must return the loop state's types".into()));
            }
            return Ok(Type::Tuple(state));
        }
        Op::CustomCall { result, .. } => {
            return Ok(if result.len() == 1 { Type::Tensor(result[0].clone()) } else { Type::Tuple(result.clone()) })
        }
        Op::GetTuple { index } => {
            arity(1)?;
            match operand_types[0] {
                Type::Tuple(elems) if *index < elems.len() => elems[*index].clone(),
                Type::Tuple(elems) => return Err(fail(format!("index {index} out of range for {} results", elems.len()))),
                Type::Tensor(_) => return Err(fail("operand is not a tuple".into())),
            }
        }
        Op::Reshard => {
            arity(1)?;
            ts[0].clone()
        }
        Op::Softmax { axis } => {
            arity(1)?;
            float_operand(ts[0]).map_err(fail)?;
            if *axis >= ts[0].rank() {
                return Err(fail(format!("axis {axis} out of range for rank {}", ts[0].rank())));
            }
            ts[0].clone()
        }
        Op::Attention { kind, has_mask, window_span, .. } => {
            arity(3 + usize::from(*has_mask))?;
            let t = attention_shape(&ts, *kind, *has_mask).map_err(fail)?;
            if let Some((start, end)) = *window_span {
                // Positions in one sequence: not for cross attention (its keys have none).
                if *kind == AttentionKind::Cross || !(0 <= start && start < end && end <= t.shape[2]) {
                    let what = format!("window_span [{start}, {end}] on {} attention over {} tokens", kind.name(), t.shape[2]);
                    return Err(fail(format!("{what}: expected 0 <= start < end <= tokens, and not on cross attention")));
                }
            }
            t
        }
        Op::LayerNorm { has_weight, has_bias, .. } => {
            arity(1 + usize::from(*has_weight) + usize::from(*has_bias))?;
            norm_shape(&ts, 1).map_err(fail)?
        }
        Op::RmsNorm { has_weight, .. } => {
            arity(1 + usize::from(*has_weight))?;
            norm_shape(&ts, 1).map_err(fail)?
        }
        Op::GroupNorm { groups, affine, .. } => {
            arity(if *affine { 3 } else { 1 })?;
            float_operand(ts[0]).map_err(fail)?;
            let x = ts[0];
            if x.rank() < 2 || *groups < 1 || x.shape[1] % groups != 0 {
                return Err(fail(format!("channels (dim 1 of {x}) must be divisible by {groups} groups")));
            }
            for p in &ts[1..] {
                if p.shape != [x.shape[1]] {
                    return Err(fail(format!("weight and bias must be [{}]", x.shape[1])));
                }
            }
            x.clone()
        }
        Op::Gelu { .. } => {
            arity(1)?;
            float_operand(ts[0]).map_err(fail)?;
            ts[0].clone()
        }
    };
    Ok(Type::Tensor(t))
}

fn describe(types: &[&Type]) -> String {
    if types.is_empty() {
        return "none".into();
    }
    types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
}

fn check_dims(shape: &[i64]) -> std::result::Result<(), String> {
    match shape.iter().find(|&&d| d < 0) {
        Some(d) => Err(format!("negative dim {d} in {shape:?}")),
        None => Ok(()),
    }
}

fn same_type(a: &TensorType, b: &TensorType) -> std::result::Result<(), String> {
    if a == b {
        Ok(())
    } else {
        Err(format!("operands must have the same type, got {a} and {b}"))
    }
}

fn float_operand(t: &TensorType) -> std::result::Result<(), String> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("expected a float tensor, got {t}"))
    }
}

fn check_perm(perm: &[usize], rank: usize) -> std::result::Result<(), String> {
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return Err(format!("permutation {perm:?} is not of length {rank}"));
    }
    for &p in perm {
        if p >= rank || seen[p] {
            return Err(format!("{perm:?} is not a permutation of 0..{rank}"));
        }
        seen[p] = true;
    }
    Ok(())
}

fn check_indices(ts: &[&TensorType]) -> std::result::Result<(), String> {
    for t in ts {
        if !t.shape.is_empty() || !matches!(t.dtype, DType::I32 | DType::I64) {
            return Err(format!("start indices must be i32[] or i64[] scalars, got {t}"));
        }
    }
    Ok(())
}

fn check_region(which: &str, region: &crate::graph::Graph, state: &[TensorType]) -> std::result::Result<(), String> {
    let params: Vec<&TensorType> = region.inputs.iter().map(|&v| region.tensor_ty(v)).collect();
    if params.len() != state.len() || params.iter().zip(state).any(|(p, s)| *p != s) {
        return Err(format!("{which} region must take the loop state ({} values) as its inputs", state.len()));
    }
    crate::verify::verify_region(region).map_err(|e| format!("in {which} region: {e}"))
}

fn dot_shape(l: &TensorType, r: &TensorType, d: &DotDims) -> std::result::Result<TensorType, String> {
    if l.dtype != r.dtype {
        return Err(format!("operand dtypes differ: {} vs {}", l.dtype, r.dtype));
    }
    if d.lhs_batch.len() != d.rhs_batch.len() || d.lhs_contract.len() != d.rhs_contract.len() {
        return Err("batch and contracting dim lists must pair up".into());
    }
    let all_l: Vec<usize> = d.lhs_batch.iter().chain(&d.lhs_contract).copied().collect();
    let all_r: Vec<usize> = d.rhs_batch.iter().chain(&d.rhs_contract).copied().collect();
    for (dims, t, side) in [(&all_l, l, "lhs"), (&all_r, r, "rhs")] {
        let mut seen = vec![false; t.rank()];
        for &x in dims {
            if x >= t.rank() || seen[x] {
                return Err(format!("{side} dim {x} out of range or repeated for {t}"));
            }
            seen[x] = true;
        }
    }
    for (&a, &b) in d.lhs_batch.iter().zip(&d.rhs_batch).chain(d.lhs_contract.iter().zip(&d.rhs_contract)) {
        if l.shape[a] != r.shape[b] {
            return Err(format!("lhs dim {a} (size {}) does not match rhs dim {b} (size {})", l.shape[a], r.shape[b]));
        }
    }
    let mut shape: Vec<i64> = d.lhs_batch.iter().map(|&i| l.shape[i]).collect();
    shape.extend((0..l.rank()).filter(|i| !all_l.contains(i)).map(|i| l.shape[i]));
    shape.extend((0..r.rank()).filter(|i| !all_r.contains(i)).map(|i| r.shape[i]));
    Ok(l.with_shape(shape))
}

fn conv_shape(x: &TensorType, w: &TensorType, c: &ConvAttrs) -> std::result::Result<TensorType, String> {
    if x.dtype != w.dtype {
        return Err(format!("input and kernel dtypes differ: {} vs {}", x.dtype, w.dtype));
    }
    if x.rank() < 3 || x.rank() != w.rank() {
        return Err("input [N,C,spatial...] and kernel [O,I,spatial...] must have the same rank >= 3".into());
    }
    let s = x.rank() - 2;
    if c.strides.len() != s || c.padding.len() != s || c.lhs_dilation.len() != s || c.rhs_dilation.len() != s {
        return Err(format!("strides/padding/dilations need {s} entries each"));
    }
    let g = c.feature_group_count;
    if g < 1 || x.shape[1] % g != 0 || w.shape[0] % g != 0 || x.shape[1] / g != w.shape[1] {
        return Err(format!(
            "channels: input has {}, kernel takes {} per group with {g} group(s) and {} outputs",
            x.shape[1], w.shape[1], w.shape[0]
        ));
    }
    let mut shape = vec![x.shape[0], w.shape[0]];
    for i in 0..s {
        let input = (x.shape[i + 2] - 1) * c.lhs_dilation[i] + 1 + c.padding[i].0 + c.padding[i].1;
        let window = (w.shape[i + 2] - 1) * c.rhs_dilation[i] + 1;
        if c.strides[i] < 1 || input < window {
            return Err(format!("spatial dim {i}: window {window} larger than padded input {input}"));
        }
        shape.push((input - window) / c.strides[i] + 1);
    }
    Ok(x.with_shape(shape))
}

fn attention_shape(ts: &[&TensorType], kind: AttentionKind, has_mask: bool) -> std::result::Result<TensorType, String> {
    let (q, k, v) = (ts[0], ts[1], ts[2]);
    if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        return Err("q, k, v must be [batch, heads, seq, head_dim]".into());
    }
    if q.dtype != k.dtype || q.dtype != v.dtype || !q.dtype.is_float() {
        return Err("q, k, v must share one float dtype".into());
    }
    if q.shape[0] != k.shape[0] || q.shape[1] != k.shape[1] || q.shape[3] != k.shape[3] {
        return Err("k must match q in batch, heads and head_dim".into());
    }
    if v.shape[0] != k.shape[0] || v.shape[1] != k.shape[1] || v.shape[2] != k.shape[2] {
        return Err("v must match k in batch, heads and seq".into());
    }
    // Self and joint attention draw queries and keys from one sequence.
    if kind != AttentionKind::Cross && q.shape[2] != k.shape[2] {
        return Err(format!(
            "{} attention takes q and k from one sequence: q has {} tokens, k {} (cross attention takes another)",
            kind.name(),
            q.shape[2],
            k.shape[2]
        ));
    }
    if has_mask {
        let m = ts[3];
        let want = [q.shape[0], q.shape[1], q.shape[2], k.shape[2]];
        let ok = m.rank() == 4 && m.shape.iter().zip(want).all(|(&d, w)| d == w || d == 1);
        if !ok || (m.dtype != DType::I1 && m.dtype != q.dtype) {
            return Err(format!("mask must be i1 or {} broadcastable to {want:?}", q.dtype));
        }
    }
    Ok(q.with_shape(vec![q.shape[0], q.shape[1], q.shape[2], v.shape[3]]))
}

/// Norms over the last axis: parameters (weight, bias) must be [last dim].
fn norm_shape(ts: &[&TensorType], first_param: usize) -> std::result::Result<TensorType, String> {
    let x = ts[0];
    float_operand(x)?;
    let last = *x.shape.last().ok_or("cannot normalise a scalar")?;
    for p in &ts[first_param..] {
        if p.shape != [last] {
            return Err(format!("parameters must be [{last}], got {p}"));
        }
    }
    Ok(x.clone())
}
