//! The graph: an arena of nodes in definition order (operands always precede their users),
//! the graph inputs in parameter order, and named outputs.

use crate::error::{IrError, Result};
use crate::infer::infer_type;
use crate::mesh::Mesh;
use crate::op::Op;
use crate::sharding::Sharding;
use crate::types::{TensorType, Type};
use std::fmt;

/// An SSA value: the index of the node that defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// The one node kind: an op, its operands, its result type, and an optional sharding.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub operands: Vec<ValueId>,
    pub ty: Type,
    /// How the value is laid out over a device mesh; `None` = unspecified (the compiler decides).
    pub sharding: Option<Sharding>,
}

/// A named graph output.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: ValueId,
}

/// A model graph (or a `while` region): typed SSA with static shapes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    /// `input`/`weight` nodes in the order the executable takes them as parameters.
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<Output>,
    /// The device mesh the nodes' shardings refer to; `None` = one device. Set on the top-level
    /// graph only: `while` regions use their enclosing graph's mesh.
    pub mesh: Option<Mesh>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph { name: name.into(), ..Default::default() }
    }

    pub fn node(&self, v: ValueId) -> &Node {
        &self.nodes[v.index()]
    }

    pub fn ty(&self, v: ValueId) -> &Type {
        &self.nodes[v.index()].ty
    }

    /// The tensor type of `v`; panics on a tuple, which only `get` may consume (the verifier ensures it).
    pub fn tensor_ty(&self, v: ValueId) -> &TensorType {
        match &self.nodes[v.index()].ty {
            Type::Tensor(t) => t,
            Type::Tuple(_) => panic!("{v} is a tuple; take it apart with `get`"),
        }
    }

    /// Appends a node after inferring its type from the op and operands.
    pub fn push(&mut self, op: Op, operands: Vec<ValueId>) -> Result<ValueId> {
        for &o in &operands {
            if o.index() >= self.nodes.len() {
                return Err(IrError::Value(format!("{}: operand {o} is not defined", op.name())));
            }
        }
        let operand_types: Vec<&Type> = operands.iter().map(|&o| self.ty(o)).collect();
        let ty = infer_type(&op, &operand_types)?;
        Ok(self.push_typed(op, operands, ty))
    }

    /// Appends a node with a type already known to be right (used by the parser and by passes
    /// that copy nodes; the verifier checks it).
    pub fn push_typed(&mut self, op: Op, operands: Vec<ValueId>, ty: Type) -> ValueId {
        let id = ValueId(self.nodes.len() as u32);
        if op.is_graph_input() {
            self.inputs.push(id);
        }
        self.nodes.push(Node { op, operands, ty, sharding: None });
        id
    }

    pub fn add_output(&mut self, name: impl Into<String>, value: ValueId) {
        self.outputs.push(Output { name: name.into(), value });
    }

    /// The input node named `name` (an `input` or a `weight`).
    pub fn find_input(&self, name: &str) -> Option<ValueId> {
        self.inputs.iter().copied().find(|&v| match &self.node(v).op {
            Op::Input { name: n } | Op::Weight { name: n } => n == name,
            _ => false,
        })
    }

    /// The name of graph input `v`.
    pub fn input_name(&self, v: ValueId) -> Option<&str> {
        match &self.node(v).op {
            Op::Input { name } | Op::Weight { name } => Some(name),
            _ => None,
        }
    }

    /// The weights in parameter order, with their types.
    pub fn weights(&self) -> impl Iterator<Item = (&str, &TensorType)> {
        self.inputs.iter().filter_map(|&v| match (&self.node(v).op, &self.node(v).ty) {
            (Op::Weight { name }, Type::Tensor(t)) => Some((name.as_str(), t)),
            _ => None,
        })
    }

    /// How many nodes run each op name (for `compile --explain` and pass reports), nested regions included.
    pub fn op_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        self.visit_ops(&mut |op| *counts.entry(op.name()).or_insert(0) += 1);
        counts
    }

    /// Number of ops, regions included, not counting inputs.
    pub fn op_count(&self) -> usize {
        let mut n = 0;
        self.visit_ops(&mut |op| n += usize::from(!op.is_graph_input()));
        n
    }

    fn visit_ops<'a>(&'a self, f: &mut dyn FnMut(&'a Op)) {
        for node in &self.nodes {
            f(&node.op);
            if let Op::While { cond, body } = &node.op {
                cond.visit_ops(f);
                body.visit_ops(f);
            }
        }
    }

    /// For each node, how many times it is used (as an operand or an output).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut uses = vec![0; self.nodes.len()];
        for n in &self.nodes {
            for o in &n.operands {
                uses[o.index()] += 1;
            }
        }
        for o in &self.outputs {
            uses[o.value.index()] += 1;
        }
        uses
    }
}
