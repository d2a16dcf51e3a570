//! Common subexpression elimination: nodes with the same op (attributes compared bit-exactly),
//! the same operands, the same type and the same sharding become one, the first in definition
//! order. Operands of commutative ops (add, mul, max, min, EQ/NE compares) are compared as a set,
//! so `a + b` and `b + a` merge.
//!
//! Never merged: graph inputs and weights (distinct parameters even when alike) and side-effecting
//! ops. Loop regions are cleaned independently (no value is shared across a region boundary);
//! two loops merge only when their regions are identical after that.

use crate::key::{hash_op, op_eq_bits};
use crate::rewrite::{has_side_effect_deep, map_regions, Rewriter};
use crate::{Pass, PassError};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use vidlower_ir::{BinaryOp, CompareDir, Graph, Node, Op, ValueId};

/// The `cse` pass.
pub struct Cse;

impl Cse {
    /// The registry name.
    pub const NAME: &'static str = "cse";
}

impl Pass for Cse {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        cse(&graph)
    }
}

/// Operands in the order in which they identify the node: sorted for commutative ops.
fn key_operands(op: &Op, operands: &[ValueId]) -> Vec<ValueId> {
    let mut k = operands.to_vec();
    let commutative = matches!(
        op,
        Op::Binary(BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min)
            | Op::Compare(CompareDir::Eq | CompareDir::Ne)
    );
    if commutative {
        k.sort();
    }
    k
}

fn node_hash(node: &Node, key_operands: &[ValueId]) -> u64 {
    let mut h = DefaultHasher::new();
    hash_op(&node.op, &mut h);
    key_operands.hash(&mut h);
    node.ty.hash(&mut h);
    node.sharding.hash(&mut h);
    h.finish()
}

fn cse(g: &Graph) -> Result<Graph, PassError> {
    let mut rw = Rewriter::new(g);
    // Buckets of new-graph values by hash; candidates are compared in full, so collisions are safe.
    let mut seen: HashMap<u64, Vec<ValueId>> = HashMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let v = ValueId(i as u32);
        let op = map_regions(&node.op, cse)?;
        let op_ref = op.as_ref().unwrap_or(&node.op);
        if op_ref.is_graph_input() || has_side_effect_deep(op_ref) {
            match op {
                Some(op) => rw.copy_with_op(v, op),
                None => rw.copy(v),
            };
            continue;
        }
        let operands = rw.operands(v);
        let key = key_operands(op_ref, &operands);
        let candidate = Node {
            op: op.unwrap_or_else(|| node.op.clone()),
            operands,
            ty: node.ty.clone(),
            sharding: node.sharding.clone(),
        };
        let hash = node_hash(&candidate, &key);
        let bucket = seen.entry(hash).or_default();
        let existing = bucket.iter().copied().find(|&e| {
            let n = rw.new.node(e);
            n.ty == candidate.ty
                && n.sharding == candidate.sharding
                && key_operands(&n.op, &n.operands) == key
                && op_eq_bits(&n.op, &candidate.op)
        });
        match existing {
            Some(e) => rw.set(v, e),
            None => {
                let new = rw.new.push_typed(candidate.op, candidate.operands, candidate.ty);
                rw.new.nodes[new.index()].sharding = candidate.sharding;
                bucket.push(new);
                rw.set(v, new);
            }
        }
    }
    Ok(rw.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(text: &str) -> Graph {
        let out = Cse.run(parse(text).unwrap()).unwrap();
        vidlower_ir::verify(&out).unwrap();
        out
    }

    fn op_names(g: &Graph) -> Vec<&'static str> {
        g.nodes.iter().map(|n| n.op.name()).collect()
    }

    #[test]
    fn merges_duplicates_transitively() {
        insta::assert_snapshot!(print(&run(r#"
graph @dups {
  %0 = input "x" : f32[4]
  %1 = input "y" : f32[4]
  %2 = exp(%0) : f32[4]
  %3 = exp(%0) : f32[4]
  %4 = mul(%2, %1) : f32[4]
  %5 = mul(%1, %3) : f32[4]
  %6 = sub(%4, %5) : f32[4]
  %7 = sub(%5, %4) : f32[4]
  output "a" = %6
  output "b" = %7
  output "c" = %5
}"#)));
    }

    #[test]
    fn float_attributes_compare_by_bits() {
        let out = run(r#"
graph @consts {
  %0 = constant() {value=0.0} : f32[]
  %1 = constant() {value=-0.0} : f32[]
  %2 = constant() {value=0.0} : f32[]
  %3 = constant() {value=NaN} : f32[]
  %4 = constant() {value=NaN} : f32[]
  %5 = constant() {value=0.1} : f32[]
  %6 = constant() {value=0.1} : f64[]
  %7 = constant() {values=[1.0, 2.0]} : f32[2]
  %8 = constant() {values=[1.0, 2.0]} : f32[2]
  %9 = constant() {values=[1.0, 2.5]} : f32[2]
  output "a" = %0
  output "b" = %1
  output "c" = %2
  output "d" = %3
  output "e" = %4
  output "f" = %5
  output "g" = %6
  output "h" = %7
  output "i" = %8
  output "j" = %9
}"#);
        // 0.0 and 0.0 merge, -0.0 stays apart; the two NaNs (same bits) merge; the f64 0.1 and
        // the dense [1, 2.5] differ by type and value.
        assert_eq!(out.nodes.len(), 7);
        let outs: Vec<u32> = out.outputs.iter().map(|o| o.value.0).collect();
        assert_eq!(outs, [0, 1, 0, 2, 2, 3, 4, 5, 5, 6]);
    }

    #[test]
    fn different_eps_or_scale_do_not_merge() {
        let out = run(r#"
graph @norms {
  %0 = input "x" : f32[2,8]
  %1 = layer_norm(%0) {eps=1e-5, weight=false, bias=false} : f32[2,8]
  %2 = layer_norm(%0) {eps=1e-6, weight=false, bias=false} : f32[2,8]
  %3 = layer_norm(%0) {eps=1e-5, weight=false, bias=false} : f32[2,8]
  output "a" = %1
  output "b" = %2
  output "c" = %3
}"#);
        assert_eq!(op_names(&out), ["input", "layer_norm", "layer_norm"]);
        assert_eq!(out.outputs[2].value, out.outputs[0].value);
    }

    #[test]
    fn never_merges_inputs_or_side_effects() {
        let out = run(r#"
graph @effects {
  %0 = input "x" : f32[4]
  %1 = input "y" : f32[4]
  %2 = custom_call(%0) {target="f", backend_config="", side_effect=true} : f32[4]
  %3 = custom_call(%0) {target="f", backend_config="", side_effect=true} : f32[4]
  %4 = custom_call(%0) {target="g", backend_config="", side_effect=false} : f32[4]
  %5 = custom_call(%0) {target="g", backend_config="", side_effect=false} : f32[4]
  %6 = add(%2, %3) : f32[4]
  %7 = add(%4, %5) : f32[4]
  %8 = add(%6, %7) : f32[4]
  %9 = add(%8, %1) : f32[4]
  output "z" = %9
}"#);
        assert_eq!(
            op_names(&out),
            ["input", "input", "custom_call", "custom_call", "custom_call", "add", "add", "add", "add"]
        );
        assert_eq!(out.inputs.len(), 2);
    }

    #[test]
    fn sharding_is_part_of_the_identity_and_non_commutative_order_matters() {
        let out = run(r#"
graph @s {
  mesh dp=2
  %0 = input "x" : f32[4,4]
  %1 = exp(%0) : f32[4,4] sharding=[{dp},{}]
  %2 = exp(%0) : f32[4,4]
  %3 = exp(%0) : f32[4,4] sharding=[{dp},{}]
  %4 = div(%1, %2) : f32[4,4]
  %5 = div(%2, %1) : f32[4,4]
  %6 = compare(%1, %2) {dir=LT} : i1[4,4]
  %7 = compare(%2, %1) {dir=LT} : i1[4,4]
  output "a" = %3
  output "b" = %4
  output "c" = %5
  output "d" = %6
  output "e" = %7
}"#);
        assert_eq!(op_names(&out), ["input", "exp", "exp", "div", "div", "compare", "compare"]);
        assert_eq!(out.outputs[0].value, ValueId(1));
    }

    #[test]
    fn cses_inside_regions_and_merges_identical_loops() {
        insta::assert_snapshot!(print(&run(r#"
graph @loops {
  %0 = input "x" : f32[4]
  %1 = while(%0) regions {
    graph @cond {
      %0 = input "x" : f32[4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[4]
      %1 = exp(%0) : f32[4]
      %2 = exp(%0) : f32[4]
      %3 = add(%1, %2) : f32[4]
      output "x" = %3
    }
  } : (f32[4])
  %2 = while(%0) regions {
    graph @cond {
      %0 = input "x" : f32[4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[4]
      %1 = exp(%0) : f32[4]
      %2 = add(%1, %1) : f32[4]
      output "x" = %2
    }
  } : (f32[4])
  %3 = get(%1) {index=0} : f32[4]
  %4 = get(%2) {index=0} : f32[4]
  %5 = mul(%3, %4) : f32[4]
  output "y" = %5
}"#)));
    }
}
