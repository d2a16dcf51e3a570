//! Sharding propagation: lays a graph out over a device mesh. Weights take their layout from
//! name rules ([`ShardingRules`]: a file's, or the built-in table of the model family, which
//! the caller passes), plain inputs are split on the batch
//! axis (CFG's stacked batch on `dp`), attention ops are split by the seeds' strategy
//! ([`attention`]), and propagation ([`propagate`]) carries those layouts forward and backward
//! through every op, loop regions included, until every value has one. Where an op's operands
//! disagree with what it needs, an explicit `reshard` goes in. The backend emits the result as
//! Shardy or GSPMD annotations; XLA's partitioner inserts the collectives.
//!
//! The pass needs a mesh, so it is not in the argument-less registry: build it with
//! [`ShardingPropagation::new`] and add it to a [`PassManager`](crate::PassManager) with `add`.
//! It runs before `decompose` (attention is still one op, so its strategy applies) or after it
//! (the primitives propagate the same way; attention's strategy then has nothing to seed).

pub mod annotate;
pub mod attention;
pub mod factors;
pub mod propagate;
pub mod rules;

pub use attention::{AttentionChoice, AttentionSharding, AttentionSplit};
pub use rules::{RuleSource, RulesError, ShardingRules};

use crate::{Pass, PassError};
use annotate::Annotate;
use propagate::{region_path, GraphPath, Layout, Problem, Use};
use std::fmt;
use std::sync::Mutex;
use thiserror::Error;
use vidlower_ir::{Graph, Mesh, Op, Sharding, ValueId};

/// Why the graph could not be laid out.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ShardingError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("the graph to lay out does not verify: {0}")]
    Invalid(#[source] vidlower_ir::IrError),
    #[error("graph @{graph} is already laid out on mesh {found}; the pass was asked for mesh {wanted}")]
    MeshMismatch { graph: String, found: String, wanted: String },
}

/// What the pass decided, for `--explain`-style output and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardingReport {
    pub mesh: String,
    /// Weights a rule split, and all weights.
    pub weights_split: usize,
    pub weights: usize,
    /// Plain inputs and their layouts.
    pub inputs: Vec<(String, Sharding)>,
    /// Each attention op (by node, `%3/body/%7` inside loops) and how it is split.
    pub attention: Vec<(String, AttentionChoice)>,
    /// Each inserted reshard: which operand of which node (numbered as in the input graph),
    /// and the layout moved to.
    pub reshards: Vec<String>,
    /// Layouts that could not be had (indivisible dims, a batch the axis does not divide).
    pub notes: Vec<String>,
}

impl fmt::Display for ShardingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mesh {}: {} of {} weights split by rules", self.mesh, self.weights_split, self.weights)?;
        for (name, s) in &self.inputs {
            writeln!(f, "  input {name}: {s}")?;
        }
        for (at, c) in &self.attention {
            writeln!(f, "  attention {at}: {c}")?;
        }
        writeln!(f, "  {} reshard(s)", self.reshards.len())?;
        for r in self.reshards.iter().take(20) {
            writeln!(f, "    {r}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

/// The sharding-propagation pass.
pub struct ShardingPropagation {
    pub mesh: Mesh,
    pub rules: ShardingRules,
    /// The axis plain inputs' dim 0 (the batch) is split on, when it divides; `dp` by default.
    pub batch_axis: Option<String>,
    pub attention: AttentionSharding,
    last_report: Mutex<Option<ShardingReport>>,
}

impl ShardingPropagation {
    pub const NAME: &'static str = "sharding";

    /// Lays graphs out on `mesh` with `rules`, batch on `dp`, attention split automatically.
    pub fn new(mesh: Mesh, rules: ShardingRules) -> Self {
        ShardingPropagation {
            mesh,
            rules,
            batch_axis: Some("dp".to_string()),
            attention: AttentionSharding::Auto,
            last_report: Mutex::new(None),
        }
    }

    /// The batch axis (`None`: inputs are replicated).
    pub fn with_batch_axis(mut self, axis: Option<&str>) -> Self {
        self.batch_axis = axis.map(str::to_string);
        self
    }

    /// The attention strategy.
    pub fn with_attention(mut self, attention: AttentionSharding) -> Self {
        self.attention = attention;
        self
    }

    /// The report of the last run through [`Pass::run`] (a pass manager hands back graphs only).
    pub fn last_report(&self) -> Option<ShardingReport> {
        self.last_report.lock().map(|r| r.clone()).unwrap_or(None)
    }

    /// Lays `g` out: every tensor value gets a sharding, `g.mesh` is set, reshards are inserted.
    pub fn propagate(&self, g: Graph) -> Result<(Graph, ShardingReport), ShardingError> {
        vidlower_ir::verify(&g).map_err(ShardingError::Invalid)?;
        if let Some(m) = g.mesh.as_ref().filter(|m| **m != self.mesh) {
            return Err(ShardingError::MeshMismatch {
                graph: g.name.clone(),
                found: m.to_string(),
                wanted: self.mesh.to_string(),
            });
        }
        let mut report = ShardingReport { mesh: self.mesh.to_string(), ..Default::default() };
        let mut p = Problem::new(&self.mesh, &g);
        let layout = p.layout.clone();
        keep_annotations(&mut p, &g, &layout);
        self.seed_inputs(&mut p, &g, &mut report)?;
        // Rules and inputs first, to a fixpoint: the weights' layout decides every dim it
        // reaches. The attention strategy then only fills what is left (the sequence dim under
        // sequence parallelism), so the projections stay tensor-parallel and the residual stream
        // between blocks is split on the sequence instead of gathering weights.
        p.propagate();
        self.seed_attention(&mut p, &g, &layout, &Vec::new(), &mut report);
        p.propagate();
        let reshards = p.conflicts();
        let mut listed: Vec<String> = reshards.iter().map(|(u, dims)| describe(u, dims)).collect();
        listed.sort();
        report.reshards = listed;
        let annotate = Annotate { slots: &p.slots, reshards: &reshards };
        let mut out = annotate.graph(&g, &Vec::new(), &layout);
        out.mesh = Some(self.mesh.clone());
        Ok((out, report))
    }

    /// Weights from the rules, plain inputs' batch dim on the batch axis; both fixed.
    fn seed_inputs(&self, p: &mut Problem, g: &Graph, report: &mut ShardingReport) -> Result<(), ShardingError> {
        let batch = self.batch_axis.as_ref().and_then(|a| Some((a.clone(), self.mesh.axis_size(a)?)));
        for &v in &g.inputs {
            let slot = p.layout.slot(v);
            let name = g.input_name(v).unwrap_or_default().to_string();
            let is_weight = matches!(g.node(v).op, Op::Weight { .. });
            report.weights += usize::from(is_weight);
            if p.slots[slot].fixed {
                continue;
            }
            p.slots[slot].fixed = true;
            let shape = p.slots[slot].shape.clone();
            if is_weight {
                if let Some(w) = self.rules.weight_sharding(&self.mesh, &name, &shape)? {
                    report.weights_split += usize::from(!w.sharding.is_replicated());
                    report.notes.extend(w.notes);
                    p.slots[slot].dims = w.sharding.dims;
                }
                continue;
            }
            if let Some((axis, size)) = batch.as_ref().filter(|(_, size)| *size > 1) {
                match shape.first() {
                    Some(&b) if b % i64::from(*size) == 0 => p.slots[slot].dims[0] = vec![axis.clone()],
                    Some(&b) => report
                        .notes
                        .push(format!("input {name}: batch {b} does not divide by {axis}={size}; replicated")),
                    None => {}
                }
            }
            report.inputs.push((name, Sharding { dims: p.slots[slot].dims.clone() }));
        }
        Ok(())
    }

    /// Each attention op's q, k, v and output get the strategy's splits (where still free).
    fn seed_attention(
        &self,
        p: &mut Problem,
        g: &Graph,
        layout: &Layout,
        path: &GraphPath,
        report: &mut ShardingReport,
    ) {
        for (i, node) in g.nodes.iter().enumerate() {
            if let (Op::While { cond, body }, Some([lc, lb])) = (&node.op, layout.regions.get(&i)) {
                self.seed_attention(p, cond, lc, &region_path(path, i, 0), report);
                self.seed_attention(p, body, lb, &region_path(path, i, 1), report);
            }
            let Op::Attention { kind, .. } = node.op else { continue };
            let (q, k) = (g.tensor_ty(node.operands[0]), g.tensor_ty(node.operands[1]));
            let choice = attention::choose(self.attention, &self.mesh, kind, q.shape[1], q.shape[2], k.shape[2]);
            let (q_axes, kv_axes) = choice.seeds();
            let slots = [layout.slot(ValueId(i as u32)), layout.slot(node.operands[0])]
                .map(|s| (s, &q_axes))
                .into_iter()
                .chain(node.operands[1..3].iter().map(|&o| (layout.slot(o), &kv_axes)));
            for (slot, axes) in slots.collect::<Vec<_>>() {
                for (d, a) in axes.iter().enumerate() {
                    p.offer(slot, d, a);
                }
            }
            report.attention.push((where_(path, i), choice));
        }
    }
}

/// Shardings already on the graph (a user's, an earlier run's reshards) are kept as they are
/// (the verifier has checked them against the graph's mesh, which is the pass's).
fn keep_annotations(p: &mut Problem, g: &Graph, layout: &Layout) {
    for (i, node) in g.nodes.iter().enumerate() {
        if let (Op::While { cond, body }, Some([lc, lb])) = (&node.op, layout.regions.get(&i)) {
            keep_annotations(p, cond, lc);
            keep_annotations(p, body, lb);
        }
        let Some(s) = &node.sharding else { continue };
        let slot = &mut p.slots[layout.first_slot[i]];
        if slot.dims.len() == s.dims.len() {
            slot.dims = s.dims.clone();
            slot.fixed = true;
        }
    }
}

/// `%3/body/` for the body of loop `%3`; empty at the top level.
fn region_prefix(path: &GraphPath) -> String {
    path.iter().map(|(n, r)| format!("%{n}/{}/", if *r == 0 { "cond" } else { "body" })).collect()
}

/// `%7`, or `%3/body/%7` inside a loop.
fn where_(path: &GraphPath, node: usize) -> String {
    format!("{}%{node}", region_prefix(path))
}

fn describe(u: &Use, dims: &propagate::DimAxes) -> String {
    let to = Sharding { dims: dims.clone() };
    match u {
        Use::Operand { graph, node, pos } => format!("{} operand {pos} -> {to}", where_(graph, *node)),
        Use::Output { graph, index } => format!("{}output {index} -> {to}", region_prefix(graph)),
        Use::RegionInput => format!("loop state -> {to}"),
    }
}

impl Pass for ShardingPropagation {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        let (g, report) = self.propagate(graph).map_err(|e| PassError::failed(Self::NAME, e.to_string()))?;
        if let Ok(mut last) = self.last_report.lock() {
            *last = Some(report);
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests;
