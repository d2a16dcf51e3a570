//! Dead code elimination: drop the nodes no output depends on.
//!
//! Kept regardless of use: graph inputs and weights (they are the executable's parameters, whose
//! list must not change) and side-effecting ops (a side-effecting custom call, or a loop holding
//! one). Loop regions are cleaned too; their inputs and outputs stay, since they are the loop
//! state, and dropping an unused state element would change the loop's type.

use crate::rewrite::{has_side_effect_deep, map_regions, Rewriter};
use crate::{Pass, PassError};
use vidlower_ir::{Graph, ValueId};

/// The `dce` pass.
pub struct Dce;

impl Dce {
    /// The registry name.
    pub const NAME: &'static str = "dce";
}

impl Pass for Dce {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        dce(&graph)
    }
}

/// Which nodes of `g` must stay: those reachable backwards from outputs, inputs and side effects.
pub fn live_nodes(g: &Graph) -> Vec<bool> {
    let mut live = vec![false; g.nodes.len()];
    for o in &g.outputs {
        live[o.value.index()] = true;
    }
    // Operands precede their users, so one backward sweep sees every user before its operands.
    for (i, node) in g.nodes.iter().enumerate().rev() {
        if node.op.is_graph_input() || has_side_effect_deep(&node.op) {
            live[i] = true;
        }
        if live[i] {
            for o in &node.operands {
                live[o.index()] = true;
            }
        }
    }
    live
}

fn dce(g: &Graph) -> Result<Graph, PassError> {
    let live = live_nodes(g);
    let mut rw = Rewriter::new(g);
    for (i, node) in g.nodes.iter().enumerate() {
        if !live[i] {
            continue;
        }
        let v = ValueId(i as u32);
        match map_regions(&node.op, dce)? {
            Some(op) => rw.copy_with_op(v, op),
            None => rw.copy(v),
        };
    }
    Ok(rw.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(text: &str) -> Graph {
        let out = Dce.run(parse(text).unwrap()).unwrap();
        vidlower_ir::verify(&out).unwrap();
        out
    }

    const DEAD: &str = r#"
graph @dead {
  %0 = input "x" : f32[4]
  %1 = weight "unused" : f32[4]
  %2 = exp(%0) : f32[4]
  %3 = neg(%0) : f32[4]
  %4 = log(%3) : f32[4]
  %5 = add(%2, %0) : f32[4]
  output "y" = %5
}"#;

    #[test]
    fn removes_unreachable_nodes() {
        insta::assert_snapshot!(print(&run(DEAD)));
    }

    #[test]
    fn removes_exactly_the_dead_nodes_and_keeps_inputs_in_order() {
        let before = parse(DEAD).unwrap();
        let live = live_nodes(&before);
        assert_eq!(live, [true, true, true, false, false, true]);
        let out = run(DEAD);
        assert_eq!(out.nodes.len(), 4);
        let names: Vec<_> = out.inputs.iter().map(|&v| out.input_name(v).unwrap()).collect();
        assert_eq!(names, ["x", "unused"]);
        assert_eq!(out.outputs[0].name, "y");
    }

    #[test]
    fn keeps_side_effecting_custom_calls_and_their_operands() {
        let out = run(r#"
graph @effects {
  %0 = input "x" : f32[4]
  %1 = abs(%0) : f32[4]
  %2 = custom_call(%1) {target="print", backend_config="", side_effect=true} : f32[4]
  %3 = custom_call(%1) {target="pure", backend_config="", side_effect=false} : f32[4]
  output "y" = %0
}"#);
        let ops: Vec<_> = out.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(ops, ["input", "abs", "custom_call"]);
        assert!(out.nodes[2].op.has_side_effect());
    }

    #[test]
    fn cleans_inside_while_regions() {
        insta::assert_snapshot!(print(&run(r#"
graph @loop {
  %0 = input "i" : i32[]
  %1 = input "x" : f32[4]
  %2 = while(%0, %1) regions {
    graph @cond {
      %0 = input "i" : i32[]
      %1 = input "x" : f32[4]
      %2 = constant() {value=10.0} : i32[]
      %3 = exp(%1) : f32[4]
      %4 = compare(%0, %2) {dir=LT} : i1[]
      output "c" = %4
    }
    graph @body {
      %0 = input "i" : i32[]
      %1 = input "x" : f32[4]
      %2 = constant() {value=1.0} : i32[]
      %3 = add(%0, %2) : i32[]
      %4 = neg(%1) : f32[4]
      %5 = exp(%1) : f32[4]
      output "i" = %3
      output "x" = %5
    }
  } : (i32[], f32[4])
  %3 = get(%2) {index=1} : f32[4]
  %4 = get(%2) {index=0} : i32[]
  output "y" = %3
}"#)));
    }

    #[test]
    fn keeps_a_loop_whose_body_has_a_side_effect() {
        let out = run(r#"
graph @loop {
  %0 = input "x" : f32[4]
  %1 = while(%0) regions {
    graph @cond {
      %0 = input "x" : f32[4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[4]
      %1 = custom_call(%0) {target="log", backend_config="", side_effect=true} : f32[4]
      output "x" = %0
    }
  } : (f32[4])
  output "y" = %0
}"#);
        assert_eq!(out.nodes.len(), 2);
        assert_eq!(out.nodes[1].op.name(), "while");
    }
}
