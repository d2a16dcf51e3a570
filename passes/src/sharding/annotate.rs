//! Writing the propagated layouts back: a copy of the graph (regions included) in which every
//! tensor node carries its sharding and every conflicting read goes through an explicit `reshard`
//! node. One reshard per (value, layout) serves all its readers in a graph.

use super::propagate::{region_path, DimAxes, GraphPath, Layout, Slot, Use};
use crate::rewrite::Rewriter;
use std::collections::HashMap;
use vidlower_ir::{Graph, Op, Sharding, ValueId};

/// What annotation needs from propagation.
pub struct Annotate<'a> {
    pub slots: &'a [Slot],
    pub reshards: &'a HashMap<Use, DimAxes>,
}

impl Annotate<'_> {
    /// `g` (at `path`, laid out as `layout`) with shardings on every tensor and the reshards.
    pub fn graph(&self, g: &Graph, path: &GraphPath, layout: &Layout) -> Graph {
        let mut rw = Rewriter::new(g);
        let mut made: HashMap<(ValueId, DimAxes), ValueId> = HashMap::new();
        for (i, node) in g.nodes.iter().enumerate() {
            let op = match &node.op {
                Op::While { cond, body } => {
                    let [lc, lb] = &layout.regions[&i];
                    Op::While {
                        cond: Box::new(self.graph(cond, &region_path(path, i, 0), lc)),
                        body: Box::new(self.graph(body, &region_path(path, i, 1), lb)),
                    }
                }
                op => op.clone(),
            };
            let mut operands = rw.operands(ValueId(i as u32));
            for (pos, o) in operands.iter_mut().enumerate() {
                if let Some(needed) = self.reshards.get(&Use::Operand { graph: path.clone(), node: i, pos }) {
                    *o = reshard(&mut rw.new, &mut made, *o, needed);
                }
            }
            let new = rw.new.push_typed(op, operands, node.ty.clone());
            rw.new.nodes[new.index()].sharding =
                node.ty.tensor().map(|_| sharding(&self.slots[layout.first_slot[i]].dims));
            rw.set(ValueId(i as u32), new);
        }
        for (index, o) in g.outputs.iter().enumerate() {
            let mut v = rw.get(o.value);
            if let Some(needed) = self.reshards.get(&Use::Output { graph: path.clone(), index }) {
                v = reshard(&mut rw.new, &mut made, v, needed);
            }
            rw.new.add_output(o.name.clone(), v);
        }
        std::mem::take(&mut rw.new)
    }
}

fn sharding(dims: &DimAxes) -> Sharding {
    Sharding { dims: dims.clone() }
}

/// `x` moved to layout `dims` by a `reshard` node (made once per value and layout).
fn reshard(g: &mut Graph, made: &mut HashMap<(ValueId, DimAxes), ValueId>, x: ValueId, dims: &DimAxes) -> ValueId {
    *made.entry((x, dims.clone())).or_insert_with(|| {
        let r = g.push_typed(Op::Reshard, vec![x], g.ty(x).clone());
        g.nodes[r.index()].sharding = Some(sharding(dims));
        r
    })
}
