//! The verifier, run after every pass: definition order, recorded types against inference,
//! inputs and outputs well formed, shardings that fit their value and the graph's mesh. Errors
//! name the node, its op and what was expected.

use crate::error::{IrError, Result};
use crate::graph::Graph;
use crate::infer::infer_type;
use crate::mesh::Mesh;
use crate::op::Op;
use crate::types::Type;
use std::collections::HashSet;

/// Checks `graph` (and its `while` regions); the first problem found is returned.
pub fn verify(graph: &Graph) -> Result<()> {
    verify_region(graph)?;
    check_shardings(graph, graph.mesh.as_ref())
}

/// Everything but the shardings' axes, which a `while` region cannot check alone: its mesh is
/// its enclosing graph's (type inference verifies regions through this).
pub(crate) fn verify_region(graph: &Graph) -> Result<()> {
    let err = |i: usize, op: &Op, message: String| IrError::Verify { node: i as u32, op: op.name().into(), message };
    let mut input_names = HashSet::new();
    let mut expected_inputs = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for o in &node.operands {
            if o.index() >= i {
                return Err(err(i, &node.op, format!("operand {o} is not defined before its use")));
            }
        }
        if let Op::Input { name } | Op::Weight { name } = &node.op {
            if !node.operands.is_empty() || node.ty.tensor().is_none() {
                return Err(err(i, &node.op, "a graph input takes no operands and has a tensor type".into()));
            }
            if !input_names.insert(name.as_str()) {
                return Err(err(i, &node.op, format!("input name \"{name}\" is declared twice")));
            }
            expected_inputs.push(crate::graph::ValueId(i as u32));
        } else {
            let operand_types: Vec<&Type> = node.operands.iter().map(|&o| graph.ty(o)).collect();
            let inferred = infer_type(&node.op, &operand_types).map_err(|e| err(i, &node.op, e.to_string()))?;
            if inferred != node.ty {
                return Err(err(i, &node.op, format!("recorded type {} but the operands give {inferred}", node.ty)));
            }
        }
        if let Some(s) = &node.sharding {
            match &node.ty {
                Type::Tensor(t) if t.rank() == s.rank() => {}
                _ => return Err(err(i, &node.op, format!("sharding {s} does not match type {}", node.ty))),
            }
        } else if matches!(node.op, Op::Reshard) {
            return Err(err(i, &node.op, "a reshard needs a sharding (its target layout)".into()));
        }
    }
    if graph.inputs != expected_inputs {
        return Err(IrError::Value(format!(
            "graph @{}: the inputs list does not match the input/weight nodes in definition order",
            graph.name
        )));
    }
    let mut output_names = HashSet::new();
    for out in &graph.outputs {
        if out.value.index() >= graph.nodes.len() {
            return Err(IrError::Value(format!("output \"{}\" refers to undefined {}", out.name, out.value)));
        }
        if graph.ty(out.value).tensor().is_none() {
            return Err(IrError::Value(format!("output \"{}\" is a tuple; outputs must be tensors", out.name)));
        }
        if !output_names.insert(out.name.as_str()) {
            return Err(IrError::Value(format!("output name \"{}\" is used twice", out.name)));
        }
    }
    Ok(())
}

/// Every sharding in `graph` and its regions names axes of `mesh`, each at most once.
fn check_shardings(graph: &Graph, mesh: Option<&Mesh>) -> Result<()> {
    let err = |i: usize, op: &Op, message: String| IrError::Verify { node: i as u32, op: op.name().into(), message };
    for (i, node) in graph.nodes.iter().enumerate() {
        if let Some(s) = &node.sharding {
            let mut seen = HashSet::new();
            for axis in s.axes() {
                match mesh {
                    None => {
                        return Err(err(
                            i,
                            &node.op,
                            format!("sharding {s} names axis `{axis}` but the graph has no mesh"),
                        ))
                    }
                    Some(m) if m.axis_size(axis).is_none() => {
                        return Err(err(i, &node.op, format!("sharding {s}: mesh {m} has no axis `{axis}`")))
                    }
                    Some(_) => {}
                }
                if !seen.insert(axis) {
                    return Err(err(i, &node.op, format!("sharding {s} uses axis `{axis}` twice")));
                }
            }
        }
        if let Op::While { cond, body } = &node.op {
            for region in [cond, body] {
                if region.mesh.is_some() && region.mesh.as_ref() != mesh {
                    return Err(err(
                        i,
                        &node.op,
                        format!("region @{} has its own mesh; regions use the graph's", region.name),
                    ));
                }
                check_shardings(region, mesh)?;
            }
        }
    }
    Ok(())
}
