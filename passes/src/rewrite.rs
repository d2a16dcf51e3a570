//! Rebuilding a graph with a value remap, the shape most passes take: walk the old nodes in
//! definition order, and for each either copy it (operands remapped), point it at a value already
//! in the new graph, or emit new nodes for it. Walking in order keeps the new arena in definition
//! order and keeps the inputs in their parameter order, since `push_typed` records inputs as it
//! meets them.

use crate::PassError;
use vidlower_ir::{Graph, Node, Op, ValueId};

/// A new graph being built from `old`, with the old-to-new value map.
pub struct Rewriter<'a> {
    /// The graph being rewritten.
    pub old: &'a Graph,
    /// The graph being built; named like `old`, outputs added by [`Rewriter::finish`].
    pub new: Graph,
    map: Vec<Option<ValueId>>,
}

impl<'a> Rewriter<'a> {
    /// Starts an empty graph with `old`'s name and mesh (which its shardings refer to).
    pub fn new(old: &'a Graph) -> Self {
        let new = Graph { mesh: old.mesh.clone(), ..Graph::new(old.name.clone()) };
        Rewriter { old, new, map: vec![None; old.nodes.len()] }
    }

    /// The new value standing for old value `v`. Panics when `v` was dropped while a user was
    /// kept, which is a bug in the pass, not in its input.
    pub fn get(&self, v: ValueId) -> ValueId {
        self.map[v.index()].unwrap_or_else(|| panic!("{v} was removed but is still used"))
    }

    /// Records that old value `old` is now `new`.
    pub fn set(&mut self, old: ValueId, new: ValueId) {
        self.map[old.index()] = Some(new);
    }

    /// The remapped operands of old node `v`.
    pub fn operands(&self, v: ValueId) -> Vec<ValueId> {
        self.old.node(v).operands.iter().map(|&o| self.get(o)).collect()
    }

    /// Copies old node `v` unchanged (operands remapped, sharding kept) and maps it.
    pub fn copy(&mut self, v: ValueId) -> ValueId {
        let op = self.old.node(v).op.clone();
        self.copy_with_op(v, op)
    }

    /// Copies old node `v` with `op` in place of its op (same operands, type and sharding), as for
    /// a `while` whose regions a pass rewrote.
    pub fn copy_with_op(&mut self, v: ValueId, op: Op) -> ValueId {
        let operands = self.operands(v);
        let node = self.old.node(v);
        let new = self.new.push_typed(op, operands, node.ty.clone());
        self.new.nodes[new.index()].sharding = node.sharding.clone();
        self.set(v, new);
        new
    }

    /// The new graph, with the old outputs (same names and order) pointing at their new values.
    pub fn finish(mut self) -> Graph {
        for o in &self.old.outputs {
            let v = self.get(o.value);
            self.new.add_output(o.name.clone(), v);
        }
        self.new
    }
}

/// A lowering of one node: the value that replaces old value `v` (emitted into `rw.new`), or
/// `None` to copy the node unchanged.
pub type Lowering<'f> = dyn FnMut(&mut Rewriter, ValueId, &Node) -> Result<Option<ValueId>, PassError> + 'f;

/// The driver of the passes that replace ops by lowerings (`decompose` and the attention passes):
/// each node is copied or replaced by what `lower` emits, loop regions get the same rewrite, and
/// a replacement must keep the node's type (an error naming `pass` otherwise) and takes over its
/// sharding.
pub fn replace_nodes(g: &Graph, pass: &'static str, lower: &mut Lowering) -> Result<Graph, PassError> {
    let mut rw = Rewriter::new(g);
    for (i, node) in g.nodes.iter().enumerate() {
        let v = ValueId(i as u32);
        if let Some(op) = map_regions(&node.op, |region| replace_nodes(region, pass, lower))? {
            rw.copy_with_op(v, op);
            continue;
        }
        let Some(new) = lower(&mut rw, v, node)? else {
            rw.copy(v);
            continue;
        };
        if rw.new.ty(new) != &node.ty {
            let message = format!("{v} = {} became {} instead of {}", node.op.name(), rw.new.ty(new), node.ty);
            return Err(PassError::failed(pass, message));
        }
        if node.sharding.is_some() {
            rw.new.nodes[new.index()].sharding = node.sharding.clone();
        }
        rw.set(v, new);
    }
    Ok(rw.finish())
}

/// `op` with `f` applied to each of its regions (a `while`'s cond and body); `None` for ops
/// without regions. Passes use it to run themselves inside loops.
pub fn map_regions(op: &Op, mut f: impl FnMut(&Graph) -> Result<Graph, PassError>) -> Result<Option<Op>, PassError> {
    match op {
        Op::While { cond, body } => Ok(Some(Op::While { cond: Box::new(f(cond)?), body: Box::new(f(body)?) })),
        _ => Ok(None),
    }
}

/// Whether running `op` does something besides producing its result: a side-effecting custom
/// call, or a loop whose regions contain one. Such ops are never removed or merged.
pub fn has_side_effect_deep(op: &Op) -> bool {
    match op {
        Op::While { cond, body } => [cond, body].iter().any(|g| g.nodes.iter().any(|n| has_side_effect_deep(&n.op))),
        op => op.has_side_effect(),
    }
}
