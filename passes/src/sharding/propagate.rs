//! Propagation proper: every tensor of the graph (loop regions included) becomes a *slot* holding
//! the mesh axes of each dim, every op a constraint over its operands' and results' slots (from
//! [`op_factors`]), and each `while` a tie between its initial state, its regions' inputs and
//! body outputs, and its result. Propagation fills empty dims from the factors they share with
//! split dims, forward and backward over the constraints until nothing changes; it only ever adds
//! axes, so it terminates. Then each constraint is checked: an operand split differently from what
//! the op's results need is a conflict, resolved by an explicit reshard of that operand.

use super::factors::{op_factors, DimFactors};
use std::collections::HashMap;
use vidlower_ir::{Graph, Mesh, Op, TensorType, Type, ValueId};

/// Mesh axes per dim, major first; empty = whole.
pub type DimAxes = Vec<Vec<String>>;

/// Which `while` regions lead to a graph: (while node index, 0 = cond / 1 = body) from the top.
pub type GraphPath = Vec<(usize, u8)>;

/// The path of region `region` (0 = cond, 1 = body) of the loop at node `node` of the graph at `path`.
pub fn region_path(path: &GraphPath, node: usize, region: u8) -> GraphPath {
    path.iter().copied().chain([(node, region)]).collect()
}

/// One tensor: a node's result (or one element of a tuple result).
#[derive(Clone, Debug)]
pub struct Slot {
    pub shape: Vec<i64>,
    pub dims: DimAxes,
    /// Set by the user, a rule or the batch axis: propagation never changes it.
    pub fixed: bool,
    /// Computed from constants only (RoPE tables, masks, iotas): it takes its users' layout but
    /// passes none on, so a table shared by q and k does not carry q's split over to k.
    pub constant: bool,
}

/// Where an operand-side tensor is read, i.e. where a reshard would go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Use {
    /// Operand `pos` of node `node` in the graph at `graph`.
    Operand { graph: GraphPath, node: usize, pos: usize },
    /// Output `index` of the graph at `graph` (a loop body's next state).
    Output { graph: GraphPath, index: usize },
    /// A loop region's input: it *is* the loop state, so it takes the state's layout.
    RegionInput,
}

/// One op's (or one loop state element's) tie between tensors.
#[derive(Clone, Debug)]
pub struct Constraint {
    pub results: Vec<(usize, DimFactors)>,
    pub operands: Vec<(usize, DimFactors, Use)>,
}

/// The slots of one graph's nodes and of its regions.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// The first slot of each node (tuple results take one slot per element).
    pub first_slot: Vec<usize>,
    pub regions: HashMap<usize, [Layout; 2]>,
}

impl Layout {
    /// The slot of tensor value `v` of this graph (element 0 of a tuple).
    pub fn slot(&self, v: ValueId) -> usize {
        self.first_slot[v.index()]
    }
}

/// All slots and constraints of a graph.
pub struct Problem<'m> {
    pub mesh: &'m Mesh,
    pub slots: Vec<Slot>,
    pub constraints: Vec<Constraint>,
    pub layout: Layout,
}

impl<'m> Problem<'m> {
    /// Slots for every tensor of `g` and its regions, unsplit and not fixed.
    pub fn new(mesh: &'m Mesh, g: &Graph) -> Self {
        let mut p = Problem { mesh, slots: Vec::new(), constraints: Vec::new(), layout: Layout::default() };
        p.layout = p.add_graph(g, &Vec::new());
        p
    }

    fn add_graph(&mut self, g: &Graph, path: &GraphPath) -> Layout {
        let mut layout = Layout::default();
        let mut constant = Vec::with_capacity(g.nodes.len());
        for (i, node) in g.nodes.iter().enumerate() {
            let c = match node.op {
                Op::Constant(_) | Op::Iota { .. } => true,
                Op::Input { .. } | Op::Weight { .. } | Op::While { .. } | Op::CustomCall { .. } | Op::Reshard => false,
                _ => !node.operands.is_empty() && node.operands.iter().all(|o| constant[o.index()]),
            };
            constant.push(c);
            layout.first_slot.push(self.slots.len());
            let elems: Vec<&TensorType> = match &node.ty {
                Type::Tensor(t) => vec![t],
                Type::Tuple(ts) => ts.iter().collect(),
            };
            for t in elems {
                let dims = vec![Vec::new(); t.rank()];
                self.slots.push(Slot { shape: t.shape.clone(), dims, fixed: false, constant: c });
            }
            if let Op::While { cond, body } = &node.op {
                let regions =
                    [self.add_graph(cond, &region_path(path, i, 0)), self.add_graph(body, &region_path(path, i, 1))];
                layout.regions.insert(i, regions);
            }
        }
        for (i, node) in g.nodes.iter().enumerate() {
            if let Op::While { cond, body } = &node.op {
                self.tie_loop(&layout, path, i, node.operands.as_slice(), cond, body);
                continue;
            }
            let types: Vec<&Type> = node.operands.iter().map(|&o| g.ty(o)).collect();
            let f = op_factors(&node.op, &types, &node.ty);
            let first = layout.first_slot[i];
            let results = f.results.into_iter().enumerate().map(|(e, d)| (first + e, d)).collect();
            let operands = f
                .operands
                .into_iter()
                .enumerate()
                .map(|(pos, (elem, d))| {
                    let slot = layout.slot(node.operands[pos]) + elem;
                    (slot, d, Use::Operand { graph: path.clone(), node: i, pos })
                })
                .collect();
            self.constraints.push(Constraint { results, operands });
        }
        layout
    }

    /// Loop state element e: the while's result e, its operand e, the regions' inputs e and the
    /// body's output e are one tensor.
    fn tie_loop(&mut self, layout: &Layout, path: &GraphPath, i: usize, init: &[ValueId], cond: &Graph, body: &Graph) {
        let [lc, lb] = &layout.regions[&i];
        let body_path = region_path(path, i, 1);
        for (e, &v) in init.iter().enumerate() {
            let all: DimFactors = (0..self.slots[layout.slot(v)].shape.len()).map(Some).collect();
            let f = || all.clone();
            let operands = vec![
                (layout.slot(v), f(), Use::Operand { graph: path.clone(), node: i, pos: e }),
                (lc.slot(cond.inputs[e]), f(), Use::RegionInput),
                (lb.slot(body.inputs[e]), f(), Use::RegionInput),
                (lb.slot(body.outputs[e].value), f(), Use::Output { graph: body_path.clone(), index: e }),
            ];
            self.constraints.push(Constraint { results: vec![(layout.first_slot[i] + e, f())], operands });
        }
    }

    /// The number of devices the axes split into (axes the mesh lacks count 1).
    fn shards(&self, axes: &[String]) -> i64 {
        axes.iter().map(|a| i64::from(self.mesh.axis_size(a).unwrap_or(1))).product()
    }

    /// Whether `axes` can split dim `d` of `slot`: it divides and no axis is used elsewhere.
    pub fn can_split(&self, slot: usize, d: usize, axes: &[String]) -> bool {
        let s = &self.slots[slot];
        s.shape[d] % self.shards(axes) == 0 && !s.dims.iter().flatten().any(|a| axes.contains(a))
    }

    /// Puts `axes` on dim `d` of `slot` if it is empty, not fixed and can take them.
    pub fn offer(&mut self, slot: usize, d: usize, axes: &[String]) -> bool {
        let ok = !axes.is_empty()
            && !self.slots[slot].fixed
            && self.slots[slot].dims[d].is_empty()
            && self.can_split(slot, d, axes);
        if ok {
            self.slots[slot].dims[d] = axes.to_vec();
        }
        ok
    }

    /// The axes of each factor of `c`: the results' (first result with the factor), else the
    /// first operand's that is split. With `results_decide` (checking, not propagating), a
    /// result's whole dim counts too, and constant-derived tensors count like any other.
    fn factor_axes(&self, c: &Constraint, results_decide: bool) -> HashMap<usize, Vec<String>> {
        let mut axes: HashMap<usize, Vec<String>> = HashMap::new();
        let results = c.results.iter().map(|(s, f)| (s, f, true));
        for (&slot, factors, is_result) in results.chain(c.operands.iter().map(|(s, f, _)| (s, f, false))) {
            for (d, f) in factors.iter().enumerate() {
                let Some(f) = f else { continue };
                let here = &self.slots[slot].dims[d];
                let source = !self.slots[slot].constant || results_decide;
                if source && (!here.is_empty() || (is_result && results_decide)) {
                    axes.entry(*f).or_insert_with(|| here.clone());
                }
            }
        }
        axes
    }

    /// One propagation step over `c`; whether any slot changed.
    fn fill(&mut self, c: &Constraint) -> bool {
        let axes = self.factor_axes(c, false);
        if axes.is_empty() {
            return false;
        }
        let mut changed = false;
        let tensors = c.results.iter().map(|(s, f)| (*s, f)).chain(c.operands.iter().map(|(s, f, _)| (*s, f)));
        for (slot, factors) in tensors.collect::<Vec<_>>() {
            for (d, f) in factors.iter().enumerate() {
                if let Some(a) = f.and_then(|f| axes.get(&f)) {
                    changed |= self.offer(slot, d, a);
                }
            }
        }
        changed
    }

    /// Propagates to a fixpoint, alternating forward and backward sweeps.
    pub fn propagate(&mut self) {
        let constraints = std::mem::take(&mut self.constraints);
        loop {
            let mut changed = false;
            for c in &constraints {
                changed |= self.fill(c);
            }
            for c in constraints.iter().rev() {
                changed |= self.fill(c);
            }
            if !changed {
                break;
            }
        }
        self.constraints = constraints;
    }

    /// After propagation: loop regions' inputs take their state's layout, and every operand whose
    /// split dims disagree with what its op needs gets the layout it needs (the reshards to insert).
    pub fn conflicts(&mut self) -> HashMap<Use, DimAxes> {
        let constraints = std::mem::take(&mut self.constraints);
        for c in &constraints {
            let state = &self.slots[c.results[0].0].dims;
            let state =
                if c.operands.iter().any(|(_, _, u)| *u == Use::RegionInput) { Some(state.clone()) } else { None };
            for (slot, _, u) in &c.operands {
                if let (Use::RegionInput, Some(s)) = (u, &state) {
                    self.slots[*slot].dims = s.clone();
                }
            }
        }
        let mut out = HashMap::new();
        for c in &constraints {
            let axes = self.factor_axes(c, true);
            for (slot, factors, u) in &c.operands {
                if *u == Use::RegionInput {
                    continue;
                }
                let needed = self.needed(*slot, factors, &axes);
                let current = &self.slots[*slot].dims;
                if current.iter().zip(&needed).any(|(c, n)| !c.is_empty() && c != n) {
                    out.insert(u.clone(), needed);
                }
            }
        }
        self.constraints = constraints;
        out
    }

    /// The layout `slot` must have to be read through `factors`: each factor's axes where they
    /// divide and are not taken by an earlier dim, whole where the op needs the dim whole.
    fn needed(&self, slot: usize, factors: &DimFactors, axes: &HashMap<usize, Vec<String>>) -> DimAxes {
        let shape = &self.slots[slot].shape;
        let mut needed: DimAxes = vec![Vec::new(); shape.len()];
        for (d, f) in factors.iter().enumerate() {
            let Some(a) = f.and_then(|f| axes.get(&f)) else { continue };
            let used = needed.iter().flatten().any(|x| a.contains(x));
            if !used && shape[d] % self.shards(a) == 0 {
                needed[d] = a.clone();
            }
        }
        needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::parse;

    fn axes(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    const LINEARS: &str = r#"graph @g {
  %0 = input "x" : f32[4,8]
  %1 = weight "w1" : f32[16,8]
  %2 = weight "w2" : f32[8,16]
  %3 = dot_general(%0, %1) {lhs_batch=[], rhs_batch=[], lhs_contract=[1], rhs_contract=[1]} : f32[4,16]
  %4 = tanh(%3) : f32[4,16]
  %5 = dot_general(%4, %2) {lhs_batch=[], rhs_batch=[], lhs_contract=[1], rhs_contract=[1]} : f32[4,8]
  output "y" = %5
}"#;

    #[test]
    fn column_then_row_parallel_needs_no_reshard() {
        let g = parse(LINEARS).unwrap();
        let mesh = Mesh::parse("dp=2,tp=4").unwrap();
        let mut p = Problem::new(&mesh, &g);
        let slot = |v: u32| p.layout.slot(ValueId(v));
        let (x, w1, w2, h, y) = (slot(0), slot(1), slot(2), slot(4), slot(5));
        p.slots[x].dims[0] = axes(&["dp"]);
        p.slots[w1].dims[0] = axes(&["tp"]);
        p.slots[w2].dims[1] = axes(&["tp"]);
        for s in [x, w1, w2] {
            p.slots[s].fixed = true;
        }
        p.propagate();
        assert_eq!(p.slots[h].dims, [axes(&["dp"]), axes(&["tp"])]);
        assert_eq!(p.slots[y].dims, [axes(&["dp"]), vec![]], "the contracted tp leaves partial sums, not a split");
        assert!(p.conflicts().is_empty());
    }

    #[test]
    fn disagreeing_operands_get_a_reshard_and_indivisible_dims_stay_whole() {
        let g = parse(
            r#"graph @g {
  %0 = input "x" : f32[4,8]
  %1 = input "y" : f32[4,8]
  %2 = add(%0, %1) : f32[4,8]
  output "z" = %2
}"#,
        )
        .unwrap();
        let mesh = Mesh::parse("tp=4").unwrap();
        let mut p = Problem::new(&mesh, &g);
        let (x, y, z) = (p.layout.slot(ValueId(0)), p.layout.slot(ValueId(1)), p.layout.slot(ValueId(2)));
        p.slots[x].dims[0] = axes(&["tp"]);
        p.slots[y].dims[1] = axes(&["tp"]);
        p.slots[x].fixed = true;
        p.slots[y].fixed = true;
        p.propagate();
        assert_eq!(p.slots[z].dims, [axes(&["tp"]), vec![]], "the first operand wins; tp cannot split two dims");
        let c = p.conflicts();
        let want = Use::Operand { graph: vec![], node: 2, pos: 1 };
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c.get(&want), Some(&vec![axes(&["tp"]), vec![]]), "y is moved to the result's layout");

        let mesh = Mesh::parse("tp=3").unwrap();
        let mut p = Problem::new(&mesh, &g);
        assert!(!p.offer(p.layout.slot(ValueId(2)), 1, &axes(&["tp"])), "8 does not divide by 3");
    }
}
