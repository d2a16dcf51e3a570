//! exp2 softmax: every `attention` composite lowered in base 2, with `scale * log2(e)` folded into
//! Q (one multiply on the [B, H, Sq, D] tensor instead of one on the [Sq, Sk] scores) and the
//! normalisation moved after the product with V (a divide on [B, H, Sq, Dv] instead of [Sq, Sk]):
//!
//! ```text
//! q' = q * (scale * log2 e)         (in f32 for bf16/f16, rounded back to q's dtype)
//! s  = q' k^T                       (in q's dtype, then f32)   [+ mask * log2 e | -inf]  [window -inf]
//! m  = max_k s
//! p  = exp2(s - m)                  emitted as exp((s - m) * ln 2)
//! o  = (p v) / sum_k p              (p rounded to q's dtype for the product; the divide in f32)
//! ```
//!
//! This is `softmax(scale q k^T + mask) v`: `2^(x log2 e) = e^x`, and an additive float mask is
//! scaled by `log2 e` so it stays a natural-log bias. StableHLO has no exp2 the plugins accept, so
//! exp2 is `exp(x * ln 2)`: on such targets the ln 2 multiply gives back the scale multiply it
//! saved, and what remains of the gain is the deferred normalisation (a target kernel taking
//! base 2 would drop the ln 2). Masks and windows are handled as `decompose` does (its window
//! helper is reused); a query row with every key masked gives NaN, as there. The pass runs
//! before `decompose` and leaves no attention composite behind, so a second run changes nothing.

use crate::decompose::attention::mask_scores;
use crate::decompose::emit::{compute_dtype, Emitter};
use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use vidlower_ir::{BinaryOp, DotDims, Graph, Op, ReduceKind, UnaryOp, ValueId};

/// The `exp2_softmax` pass.
pub struct Exp2Softmax;

impl Exp2Softmax {
    /// The registry name.
    pub const NAME: &'static str = "exp2_softmax";
}

impl Pass for Exp2Softmax {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        exp2_softmax(&graph)
    }
}

fn exp2_softmax(g: &Graph) -> Result<Graph, PassError> {
    replace_nodes(g, Exp2Softmax::NAME, &mut |rw, v, node| {
        let Op::Attention { scale, has_mask, window, window_span, .. } = node.op else { return Ok(None) };
        let args = rw.operands(v);
        attention_base2(&mut Emitter { g: &mut rw.new }, &args, scale, has_mask, window, window_span).map(Some)
    })
}

/// The base-2 lowering of `attention(q, k, v[, mask])`; see the module docs.
fn attention_base2(
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
    let q2 = fold_scale_base2(em, q, scale)?;
    let qk = DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![3] };
    let scores = em.op(Op::DotGeneral(qk), &[q2, k])?;
    let s = em.convert(scores, cdt)?;
    let shape = em.ty(s).shape;
    // A float mask is a natural-log bias: into base 2 at its own (often broadcast) size.
    let s = mask_scores(em, s, mask.then(|| args[3]), window, span, &mut |em, m| to_base2(em, m))?;
    let mx = em.reduce(ReduceKind::Max, s, &[3])?;
    let mx = em.unreduce(mx, &shape, &[3])?;
    let shifted = em.sub(s, mx)?;
    let p = exp2(em, shifted)?;
    let denom = em.reduce(ReduceKind::Sum, p, &[3])?;
    let p = em.convert(p, dtype)?;
    let pv = DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![2] };
    let o = em.op(Op::DotGeneral(pv), &[p, v])?;
    let o = em.convert(o, cdt)?;
    let out_shape = em.ty(o).shape;
    let denom = em.unreduce(denom, &out_shape, &[3])?;
    let o = em.div(o, denom)?;
    em.convert(o, dtype)
}

/// `q * (scale * log2 e)`, computed in f32 for bf16/f16 and rounded back to q's dtype: the
/// scores `q' k^T` are then base-2 logits. (Shared with `blockwise_attention`'s exp2 mode.)
pub(crate) fn fold_scale_base2(em: &mut Emitter, q: ValueId, scale: f64) -> Result<ValueId, PassError> {
    let dtype = em.ty(q).dtype;
    let qc = em.convert(q, compute_dtype(dtype))?;
    let qc = em.binary_const(BinaryOp::Mul, qc, scale * std::f64::consts::LOG2_E)?;
    em.convert(qc, dtype)
}

/// A natural-log quantity (an additive float mask) in base 2: `x * log2 e`.
pub(crate) fn to_base2(em: &mut Emitter, x: ValueId) -> Result<ValueId, PassError> {
    em.binary_const(BinaryOp::Mul, x, std::f64::consts::LOG2_E)
}

/// `exp2(x)` as `exp(x * ln 2)`: the plugins reject `stablehlo.exp2`.
pub(crate) fn exp2(em: &mut Emitter, x: ValueId) -> Result<ValueId, PassError> {
    let x = em.binary_const(BinaryOp::Mul, x, std::f64::consts::LN_2)?;
    em.unary(UnaryOp::Exp, x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(text: &str) -> Graph {
        let out = crate::test_support::run_pass(Exp2Softmax, text);
        assert!(!out.op_counts().contains_key("attention"));
        out
    }

    const BF16_MASK_WINDOW: &str = include_str!("testdata/attention_bf16_mask_window.ir");

    const F32_FLOAT_MASK: &str = include_str!("testdata/attention_f32_float_mask_and_causal.ir");

    #[test]
    fn attention_with_boolean_mask_and_window() {
        insta::assert_snapshot!(print(&run(BF16_MASK_WINDOW)));
    }

    #[test]
    fn attention_with_float_mask_and_causal_window() {
        insta::assert_snapshot!(print(&run(F32_FLOAT_MASK)));
    }

    #[test]
    fn scale_is_folded_into_q_and_softmax_is_base_2() {
        let out = run(BF16_MASK_WINDOW);
        // The first multiply is on Q's shape, by scale * log2 e.
        let first_mul = out.nodes.iter().position(|n| n.op == Op::Binary(BinaryOp::Mul)).unwrap();
        assert_eq!(out.nodes[first_mul].ty.tensor().unwrap().shape, [1, 2, 4, 8]);
        let c = out.node(out.nodes[first_mul].operands[1]);
        let Op::Constant(l) = &c.op else { panic!("{:?}", c.op) };
        assert!((l.as_splat().unwrap() - 0.35355339059327373 * std::f64::consts::LOG2_E).abs() < 1e-15);
        // exp of (s - m) * ln 2; one exp, one divide, on the output's shape.
        let exp = out.nodes.iter().find(|n| n.op == Op::Unary(UnaryOp::Exp)).unwrap();
        let arg = out.node(exp.operands[0]);
        assert_eq!(arg.op, Op::Binary(BinaryOp::Mul));
        let Op::Constant(l) = &out.node(arg.operands[1]).op else { panic!() };
        assert_eq!(l.as_splat(), Some(std::f64::consts::LN_2));
        let divs: Vec<_> = out.nodes.iter().filter(|n| n.op == Op::Binary(BinaryOp::Div)).collect();
        assert_eq!(divs.len(), 1);
        assert_eq!(divs[0].ty.tensor().unwrap().shape, [1, 2, 4, 16]);
        // Mask and window both kept; sharding moved to the result.
        assert_eq!(out.op_counts().get("iota"), Some(&2));
        assert!(out.nodes.iter().any(|n| n.operands.contains(&ValueId(3))));
        let last = out.node(out.outputs[0].value);
        assert_eq!(last.sharding, Some(vidlower_ir::Sharding::split(4, 1, "tp")));
    }

    #[test]
    fn fewer_ops_on_the_scores_than_decompose() {
        // Elementwise ops on [.., Sq, Sk] (what scales with S x S), this pass vs decompose.
        fn on_scores(g: &Graph, sq: i64, sk: i64) -> usize {
            g.nodes
                .iter()
                .filter(|n| !matches!(n.op, Op::Constant(_) | Op::Iota { .. } | Op::BroadcastInDim { .. }))
                .filter(|n| n.ty.tensor().is_some_and(|t| t.shape.len() == 4 && t.shape[2] == sq && t.shape[3] == sk))
                .count()
        }
        let text = r#"
graph @attn {
  %0 = input "q" : f32[1,2,7,8]
  %1 = input "k" : f32[1,2,9,8]
  %2 = input "v" : f32[1,2,9,8]
  %3 = attention(%0, %1, %2) {kind=cross, scale=0.35, mask=false} : f32[1,2,7,8]
  output "o" = %3
}"#;
        let base = crate::Decompose.run(parse(text).unwrap()).unwrap();
        let ours = run(text);
        // decompose: dot, mul scale, sub, exp, div; ours: dot, sub, mul ln2, exp.
        assert_eq!((on_scores(&base, 7, 9), on_scores(&ours, 7, 9)), (5, 4));
    }

    #[test]
    fn is_idempotent_and_lowers_inside_loops() {
        let once = run(F32_FLOAT_MASK);
        assert_eq!(print(&Exp2Softmax.run(once.clone()).unwrap()), print(&once));
        let out = run(r#"
graph @loop {
  %0 = input "x" : f32[1,1,3,4]
  %1 = while(%0) regions {
    graph @cond {
      %0 = input "x" : f32[1,1,3,4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[1,1,3,4]
      %1 = attention(%0, %0, %0) {kind=self, scale=0.5, mask=false} : f32[1,1,3,4]
      output "x" = %1
    }
  } : (f32[1,1,3,4])
  %2 = get(%1) {index=0} : f32[1,1,3,4]
  output "y" = %2
}"#);
        let Op::While { body, .. } = &out.nodes[1].op else { unreachable!() };
        assert!(body.nodes.iter().all(|n| !n.op.is_composite()));
    }
}
