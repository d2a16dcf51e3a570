//! Emission of a graph as a StableHLO module: `func.func @main` takes the graph inputs (weights
//! and plain inputs, in `Graph::inputs` order) as arguments and returns the outputs in order.

use super::attrs::{custom_call_layouts, mlir_string, op_attrs, op_name};
use super::literal::{dense_attr, splat_attr};
use std::fmt::Write;
use thiserror::Error;
use vidlower_ir::{DType, Graph, Op, ReduceKind, TensorType, Type, ValueId};

#[derive(Debug, Error)]
pub enum EmitError {
    #[error("%{node} = {op}: a composite op has no StableHLO form; run the `decompose` pass first")]
    Composite { node: u32, op: &'static str },
    #[error("graph @{graph} does not verify: {source}")]
    Invalid { graph: String, source: vidlower_ir::IrError },
    #[error("%{node}: sharding {sharding} splits the tensor into {shards} shards but the module has {partitions} partitions")]
    Sharding { node: u32, sharding: String, shards: u32, partitions: u32 },
}

/// Options that change the emitted module.
#[derive(Clone, Debug)]
pub struct EmitOptions {
    /// Devices the module is partitioned over (`mhlo.num_partitions`); shardings must fit in it.
    pub num_partitions: u32,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { num_partitions: 1 }
    }
}

/// The StableHLO module text for `graph`, which must contain only primitive ops.
pub fn emit_module(graph: &Graph, opts: &EmitOptions) -> Result<String, EmitError> {
    vidlower_ir::verify(graph).map_err(|source| EmitError::Invalid { graph: graph.name.clone(), source })?;
    let mut e = Emitter { out: String::new(), next_temp: 0, opts: opts.clone() };
    let module = symbol(&graph.name);
    let _ = writeln!(
        e.out,
        "module @{module} attributes {{mhlo.num_partitions = {} : i32, mhlo.num_replicas = 1 : i32}} {{",
        opts.num_partitions
    );
    let mut args = Vec::new();
    let mut arg_names = Vec::new();
    for (i, &v) in graph.inputs.iter().enumerate() {
        let name = format!("%arg{i}");
        let mut attrs = Vec::new();
        if let Some(s) = e.sharding_attr(graph, v)? {
            attrs.push(s);
        }
        if let Some(n) = graph.input_name(v) {
            attrs.push(format!("mhlo.name = {}", mlir_string(n)));
        }
        args.push(format!("{name}: {} {{{}}}", ty(graph, v), attrs.join(", ")));
        arg_names.push(name);
    }
    let mut results = Vec::new();
    for o in &graph.outputs {
        let mut attrs = vec![format!("jax.result_info = {}", mlir_string(&o.name))];
        if let Some(s) = e.sharding_attr(graph, o.value)? {
            attrs.push(s);
        }
        results.push(format!("{} {{{}}}", ty(graph, o.value), attrs.join(", ")));
    }
    let _ = writeln!(e.out, "  func.func public @main({}) -> ({}) {{", args.join(", "), results.join(", "));
    let outs = e.body(graph, &arg_names, "v", 4)?;
    let types: Vec<String> = graph.outputs.iter().map(|o| ty(graph, o.value)).collect();
    let _ = writeln!(e.out, "    \"func.return\"({}) : ({}) -> ()", outs.join(", "), types.join(", "));
    e.out.push_str("  }\n}\n");
    Ok(e.out)
}

struct Emitter {
    out: String,
    next_temp: usize,
    opts: EmitOptions,
}

impl Emitter {
    /// Emits the nodes of `g` (main body or a region); returns the SSA names of its outputs.
    fn body(&mut self, g: &Graph, arg_names: &[String], prefix: &str, indent: usize) -> Result<Vec<String>, EmitError> {
        let pad = " ".repeat(indent);
        let mut names: Vec<String> = Vec::with_capacity(g.nodes.len());
        let mut next_arg = 0;
        for (i, node) in g.nodes.iter().enumerate() {
            let name = format!("%{prefix}{i}");
            let operand_names: Vec<&str> = node.operands.iter().map(|o| names[o.index()].as_str()).collect();
            match &node.op {
                Op::Input { .. } | Op::Weight { .. } => {
                    names.push(arg_names[next_arg].clone());
                    next_arg += 1;
                    continue;
                }
                Op::GetTuple { index } => {
                    let src = &node.operands[0];
                    let n = match g.ty(*src) {
                        Type::Tuple(ts) if ts.len() > 1 => format!("{}#{index}", names[src.index()]),
                        _ => names[src.index()].clone(),
                    };
                    names.push(n);
                    continue;
                }
                op if op.is_composite() => return Err(EmitError::Composite { node: i as u32, op: op.name() }),
                _ => {}
            }
            let operand_types: Vec<String> = node.operands.iter().map(|&o| ty(g, o)).collect();
            let result_types = node.ty.flatten();
            let result_sig = if result_types.len() == 1 {
                result_types[0].mlir()
            } else {
                format!("({})", result_types.iter().map(|t| t.mlir()).collect::<Vec<_>>().join(", "))
            };
            let lhs = if result_types.len() > 1 { format!("{name}:{}", result_types.len()) } else { name.clone() };
            let sig = format!("({}) -> {result_sig}", operand_types.join(", "));
            let mut attrs = op_attrs(&node.op);
            if let Op::Take { axis } = &node.op {
                attrs = gather_attrs(g.tensor_ty(node.operands[0]), g.tensor_ty(node.operands[1]), *axis);
            }
            if let Op::CustomCall { .. } = &node.op {
                let operands: Vec<&TensorType> = node.operands.iter().map(|&o| g.tensor_ty(o)).collect();
                attrs.extend(custom_call_layouts(&operands, &result_types));
            }
            if let Some(s) = self.sharding_attr(g, ValueId(i as u32))? {
                attrs.push(s);
            }
            let attr_dict = if attrs.is_empty() { String::new() } else { format!(" {{{}}}", attrs.join(", ")) };
            let stablehlo = op_name(&node.op).expect("composites were rejected above");
            match &node.op {
                Op::Constant(lit) => {
                    let _ = writeln!(self.out, "{pad}{lhs} = \"stablehlo.constant\"() {{value = {}}} : {sig}", dense_attr(lit));
                }
                Op::Reduce { kind, .. } => {
                    let elem = TensorType::scalar(g.tensor_ty(node.operands[0]).dtype);
                    let init = self.temp();
                    let _ = writeln!(
                        self.out,
                        "{pad}{init} = \"stablehlo.constant\"() {{value = {}}} : () -> {}",
                        splat_attr(reduce_init(*kind, elem.dtype), &elem),
                        elem.mlir()
                    );
                    let (a, b, r) = (self.temp(), self.temp(), self.temp());
                    let combine = match kind {
                        ReduceKind::Sum => "add",
                        ReduceKind::Max => "maximum",
                        ReduceKind::Min => "minimum",
                    };
                    let t = elem.mlir();
                    let _ = writeln!(self.out, "{pad}{lhs} = \"stablehlo.reduce\"({}, {init}) ({{", operand_names[0]);
                    let _ = writeln!(self.out, "{pad}^bb0({a}: {t}, {b}: {t}):");
                    let _ = writeln!(self.out, "{pad}  {r} = \"stablehlo.{combine}\"({a}, {b}) : ({t}, {t}) -> {t}");
                    let _ = writeln!(self.out, "{pad}  \"stablehlo.return\"({r}) : ({t}) -> ()");
                    let _ = writeln!(self.out, "{pad}}}){attr_dict} : ({}, {t}) -> {result_sig}", operand_types[0]);
                }
                Op::While { cond, body } => {
                    let _ = writeln!(self.out, "{pad}{lhs} = \"stablehlo.while\"({}) ({{", operand_names.join(", "));
                    self.region(cond, &pad, indent)?;
                    let _ = writeln!(self.out, "{pad}}}, {{");
                    self.region(body, &pad, indent)?;
                    let _ = writeln!(self.out, "{pad}}}){attr_dict} : {sig}");
                }
                _ => {
                    let _ = writeln!(
                        self.out,
                        "{pad}{lhs} = \"stablehlo.{stablehlo}\"({}){attr_dict} : {sig}",
                        operand_names.join(", ")
                    );
                }
            }
            names.push(name);
        }
        Ok(g.outputs.iter().map(|o| names[o.value.index()].clone()).collect())
    }

    /// A `while` region: block arguments for the loop state, the nodes, and `stablehlo.return`.
    fn region(&mut self, g: &Graph, pad: &str, indent: usize) -> Result<(), EmitError> {
        // Region names must not shadow outer SSA names: give each region its own prefix.
        let prefix = format!("r{}_", self.next_temp);
        self.next_temp += 1;
        let args: Vec<String> = (0..g.inputs.len()).map(|i| format!("%{prefix}a{i}")).collect();
        let decl: Vec<String> = args.iter().zip(&g.inputs).map(|(a, &v)| format!("{a}: {}", ty(g, v))).collect();
        let _ = writeln!(self.out, "{pad}^bb0({}):", decl.join(", "));
        let outs = self.body(g, &args, &prefix, indent + 2)?;
        let types: Vec<String> = g.outputs.iter().map(|o| ty(g, o.value)).collect();
        let _ = writeln!(self.out, "{pad}  \"stablehlo.return\"({}) : ({}) -> ()", outs.join(", "), types.join(", "));
        Ok(())
    }

    fn temp(&mut self) -> String {
        self.next_temp += 1;
        format!("%t{}", self.next_temp)
    }

    fn sharding_attr(&self, g: &Graph, v: ValueId) -> Result<Option<String>, EmitError> {
        let Some(s) = &g.node(v).sharding else { return Ok(None) };
        let partitions = self.opts.num_partitions;
        if !partitions.is_multiple_of(s.shard_count()) {
            return Err(EmitError::Sharding {
                node: v.0,
                sharding: s.to_string(),
                shards: s.shard_count(),
                partitions,
            });
        }
        Ok(Some(format!("mhlo.sharding = {}", mlir_string(&s.gspmd(partitions)))))
    }
}

fn ty(g: &Graph, v: ValueId) -> String {
    g.tensor_ty(v).mlir()
}

/// `take(table, indices)` as a gather of one slice per index, with the index dims placed where
/// the taken axis was.
fn gather_attrs(table: &TensorType, indices: &TensorType, axis: usize) -> Vec<String> {
    let ir = indices.rank();
    let offset: Vec<String> = (0..axis).chain(axis + ir..table.rank() - 1 + ir).map(|d| d.to_string()).collect();
    let mut sizes = table.shape.clone();
    sizes[axis] = 1;
    vec![
        format!(
            "dimension_numbers = #stablehlo.gather<offset_dims = [{}], collapsed_slice_dims = [{axis}], start_index_map = [{axis}], index_vector_dim = {ir}>",
            offset.join(", ")
        ),
        "indices_are_sorted = false".into(),
        format!("slice_sizes = {}", super::attrs::i64_array(&sizes)),
    ]
}

/// The identity of each reduction, as a value of `dtype`.
fn reduce_init(kind: ReduceKind, dtype: DType) -> f64 {
    let (lowest, highest) = match dtype {
        DType::I1 | DType::U8 => (0.0, if dtype == DType::I1 { 1.0 } else { 255.0 }),
        DType::I8 => (i8::MIN as f64, i8::MAX as f64),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::I64 => (i64::MIN as f64, i64::MAX as f64),
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    };
    match kind {
        ReduceKind::Sum => 0.0,
        ReduceKind::Max => lowest,
        ReduceKind::Min => highest,
    }
}

/// A valid MLIR symbol name from a graph name.
fn symbol(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("m_{s}")
    } else {
        s
    }
}
