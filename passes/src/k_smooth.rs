//! K smoothing: every `attention` op gets `K - mean(K over the sequence axis)` in place of K, the
//! mean taken per batch, head and channel (over dim 2 of [B, H, S, D]) and computed in f32 for
//! bf16/f16 keys, the smoothed K rounded back to K's dtype.
//!
//! Why it is exact: query i's scores become `scale * q_i . (k_j - kbar) = s_ij - scale * q_i . kbar`,
//! a shift that depends on the query (and batch and head) but not on the key j, and softmax over
//! the keys is invariant to a per-row constant. Every mask the composite takes adds per-(i, j)
//! terms after the product, so the shift stays a per-row constant: a boolean mask or a window
//! (entries set to -inf) and an additive float mask (finite or not) are all still exact. The mean
//! is over all keys, masked ones included; any per-(b, h, d) constant would do.
//! Why it helps: real DiT keys share a large common offset; subtracting it leaves small keys whose
//! bf16 rounding error (relative to their magnitude) is small, and scores without the large
//! common term that bf16 would round.
//! The pass runs before any padding of the key sequence (it sees the composite, whose keys are
//! the real ones). It is idempotent: an attention whose K already is such a subtraction (the
//! pattern this pass emits) is left alone.

use crate::decompose::emit::{compute_dtype, Emitter};
use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use vidlower_ir::{BinaryOp, Graph, Op, ReduceKind, ValueId};

/// The `k_smooth` pass.
pub struct KSmooth;

impl KSmooth {
    /// The registry name.
    pub const NAME: &'static str = "k_smooth";
}

impl Pass for KSmooth {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        k_smooth(&graph)
    }
}

fn k_smooth(g: &Graph) -> Result<Graph, PassError> {
    replace_nodes(g, KSmooth::NAME, &mut |rw, v, node| {
        if !matches!(node.op, Op::Attention { .. }) || is_smoothed(rw.old, node.operands[1]) {
            return Ok(None);
        }
        let mut args = rw.operands(v);
        args[1] = smooth(&mut Emitter { g: &mut rw.new }, args[1])?;
        rw.new.push(node.op.clone(), args).map(Some).map_err(PassError::ir(KSmooth::NAME))
    })
}

/// `k - mean(k, axis 2)` in the compute dtype, returned in k's dtype:
/// `[convert] -> reduce sum [2] -> div S -> broadcast -> sub -> [convert]`.
fn smooth(em: &mut Emitter, k: ValueId) -> Result<ValueId, PassError> {
    let ty = em.ty(k);
    let kc = em.convert(k, compute_dtype(ty.dtype))?;
    let mean = em.mean(kc, &[2])?;
    let mean = em.unreduce(mean, &ty.shape, &[2])?;
    let smoothed = em.sub(kc, mean)?;
    em.convert(smoothed, ty.dtype)
}

/// Whether `k` is what [`smooth`] emits: `x - broadcast(sum(x, [2]) / S)`, optionally between
/// converts (bf16/f16 keys).
fn is_smoothed(g: &Graph, k: ValueId) -> bool {
    let strip = |v: ValueId| match g.node(v).op {
        Op::Convert { .. } => g.node(v).operands[0],
        _ => v,
    };
    let k = strip(k);
    let node = g.node(k);
    if node.op != Op::Binary(BinaryOp::Sub) {
        return false;
    }
    let (x, b) = (node.operands[0], node.operands[1]);
    let bc = g.node(b);
    let Op::BroadcastInDim { dims, .. } = &bc.op else { return false };
    if dims != &[0, 1, 3] {
        return false;
    }
    let div = g.node(bc.operands[0]);
    if div.op != Op::Binary(BinaryOp::Div) {
        return false;
    }
    let n = g.tensor_ty(x).shape.get(2).copied();
    let divisor_ok = matches!(&g.node(div.operands[1]).op, Op::Constant(l) if l.as_splat().map(|s| s as i64) == n);
    let sum = g.node(div.operands[0]);
    let sum_ok = sum.op == Op::Reduce { kind: ReduceKind::Sum, axes: vec![2] } && sum.operands[0] == x;
    divisor_ok && sum_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(text: &str) -> Graph {
        crate::test_support::run_pass(KSmooth, text)
    }

    const BF16_MASK_WINDOW: &str = include_str!("testdata/attention_bf16_mask_window.ir");

    const F32_TWO: &str = include_str!("testdata/attention_f32_float_mask_and_causal.ir");

    #[test]
    fn smooths_bf16_keys_in_f32_keeping_mask_window_and_sharding() {
        insta::assert_snapshot!(print(&run(BF16_MASK_WINDOW)));
    }

    #[test]
    fn smooths_each_attention_in_f32() {
        insta::assert_snapshot!(print(&run(F32_TWO)));
    }

    #[test]
    fn keeps_attributes_and_operands_other_than_k() {
        let input = parse(BF16_MASK_WINDOW).unwrap();
        let out = run(BF16_MASK_WINDOW);
        let old = input.nodes.iter().find(|n| n.op.name() == "attention").unwrap();
        let new = out.nodes.iter().find(|n| n.op.name() == "attention").unwrap();
        assert_eq!(new.op, old.op);
        assert_eq!(new.sharding, old.sharding);
        assert_eq!(new.operands[0], old.operands[0]);
        assert_eq!(new.operands[2], old.operands[2]);
        assert_eq!(new.operands[3], old.operands[3]);
        assert_ne!(new.operands[1], old.operands[1]);
        assert!(is_smoothed(&out, new.operands[1]));
        // Computed in f32, handed back in bf16.
        assert_eq!(out.node(new.operands[1]).op, Op::Convert { to: vidlower_ir::DType::BF16 });
        assert_eq!(out.tensor_ty(out.node(new.operands[1]).operands[0]).dtype, vidlower_ir::DType::F32);
    }

    #[test]
    fn is_idempotent() {
        for text in [BF16_MASK_WINDOW, F32_TWO] {
            let once = run(text);
            let twice = KSmooth.run(once.clone()).unwrap();
            assert_eq!(print(&twice), print(&once));
        }
    }

    #[test]
    fn a_plain_subtraction_is_not_taken_for_smoothing() {
        let out = run(r#"
graph @attn {
  %0 = input "q" : f32[1,1,3,4]
  %1 = input "k" : f32[1,1,3,4]
  %2 = input "c" : f32[1,1,3,4]
  %3 = sub(%1, %2) : f32[1,1,3,4]
  %4 = attention(%0, %3, %0) {kind=self, scale=1.0, mask=false} : f32[1,1,3,4]
  output "o" = %4
}"#);
        assert_eq!(out.op_counts().get("reduce"), Some(&1));
    }

    #[test]
    fn smooths_inside_loops_and_leaves_graphs_without_attention_alone() {
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
        assert_eq!(body.op_counts().get("reduce"), Some(&1));
        let plain = "graph @g {\n  %0 = input \"x\" : f32[4]\n  %1 = exp(%0) : f32[4]\n  output \"y\" = %1\n}";
        assert_eq!(print(&run(plain)), print(&parse(plain).unwrap()));
    }
}
