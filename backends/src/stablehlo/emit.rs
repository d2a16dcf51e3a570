//! Emission of a graph as a StableHLO module: `func.func @main` takes the graph inputs (weights
//! and plain inputs, in `Graph::inputs` order) as arguments and returns the outputs in order.
//! A graph with a mesh is partitioned over `mesh.device_count()` devices; its shardings become
//! Shardy (`sdy`) or GSPMD (`mhlo.sharding`) attributes, as [`ShardingFormat`] says.

use super::attrs::{custom_call_layouts, mlir_string, op_attrs, op_name};
use super::literal::{dense_attr, splat_attr};
use std::fmt::Write;
use thiserror::Error;
use vidlower_ir::{DType, Graph, Mesh, Op, ReduceKind, Sharding, TensorType, Type, ValueId};

#[derive(Debug, Error)]
pub enum EmitError {
    #[error("%{node} = {op}: a composite op has no StableHLO form; run the `decompose` pass first")]
    Composite { node: u32, op: &'static str },
    #[error("graph @{graph} does not verify: {source}")]
    Invalid { graph: String, source: vidlower_ir::IrError },
}

/// How shardings are written. The partitioner that reads them must match
/// (`use_shardy_partitioner` in the runtime's compile options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ShardingFormat {
    /// `sdy.mesh` plus `sdy.sharding` / `sdy.sharding_constraint`: named axes, what XLA now
    /// partitions with.
    #[default]
    Shardy,
    /// `mhlo.sharding` tile-assignment strings, for plugins without Shardy.
    Gspmd,
}

/// The symbol of the one `sdy.mesh` a module declares.
pub const MESH_SYMBOL: &str = "mesh";

/// Options that change the emitted module. The partition count is not one of them: it is the
/// graph mesh's device count (1 without a mesh), so it cannot disagree with the shardings.
#[derive(Clone, Debug, Default)]
pub struct EmitOptions {
    pub sharding: ShardingFormat,
}

/// The StableHLO module text for `graph`, which must contain only primitive ops.
pub fn emit_module(graph: &Graph, opts: &EmitOptions) -> Result<String, EmitError> {
    vidlower_ir::verify(graph).map_err(|source| EmitError::Invalid { graph: graph.name.clone(), source })?;
    let mut e = Emitter { out: String::new(), next_temp: 0, format: opts.sharding, mesh: graph.mesh.clone() };
    let module = symbol(&graph.name);
    let partitions = graph.mesh.as_ref().map_or(1, Mesh::device_count);
    let _ = writeln!(
        e.out,
        "module @{module} attributes {{mhlo.num_partitions = {partitions} : i32, mhlo.num_replicas = 1 : i32}} {{"
    );
    if let (Some(mesh), ShardingFormat::Shardy) = (&graph.mesh, opts.sharding) {
        // Inherent attributes as properties (`<{...}>`): given in the attribute dictionary, the
        // plugin's parser leaves the symbol unnamed and `sdy.reshard` cannot find the mesh.
        let mesh = sdy_mesh(mesh);
        let _ = writeln!(e.out, "  \"sdy.mesh\"() <{{mesh = {mesh}, sym_name = \"{MESH_SYMBOL}\"}}> : () -> ()");
    }
    let mut args = Vec::new();
    let mut arg_names = Vec::new();
    for (i, &v) in graph.inputs.iter().enumerate() {
        let name = format!("%arg{i}");
        let mut attrs = Vec::new();
        if let Some(s) = e.boundary_sharding_attr(graph, v) {
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
        if let Some(s) = e.boundary_sharding_attr(graph, o.value) {
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
    format: ShardingFormat,
    /// The top-level graph's mesh, which `while` regions share; `None`: no annotations.
    mesh: Option<Mesh>,
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
                Op::Reshard => {
                    let value = self.reshard(g, ValueId(i as u32), operand_names[0], &name, &pad);
                    names.push(value);
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
            if let Some(s) = self.sharding_attr(g, ValueId(i as u32)) {
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

    /// The sharding of a function argument or result: `v`'s, or replicated when it has none.
    /// The boundary is always pinned on a mesh, because the runtime cuts and joins host tensors
    /// by exactly these layouts (`Signature::of` reads them the same way); left open, the
    /// partitioner could choose another.
    fn boundary_sharding_attr(&self, g: &Graph, v: ValueId) -> Option<String> {
        let mesh = self.mesh.as_ref()?;
        let s = g.node(v).sharding.clone().unwrap_or_else(|| Sharding::replicated(g.tensor_ty(v).rank()));
        Some(self.sharding_text(&s, mesh, false))
    }

    /// The attribute-dictionary entry for an op's sharding (none without a mesh or a sharding).
    fn sharding_attr(&self, g: &Graph, v: ValueId) -> Option<String> {
        let (Some(s), Some(mesh)) = (&g.node(v).sharding, &self.mesh) else { return None };
        Some(self.sharding_text(s, mesh, true))
    }

    /// Function arguments and results take a plain `#sdy.sharding`; ops take one per result.
    fn sharding_text(&self, s: &Sharding, mesh: &Mesh, on_op: bool) -> String {
        match self.format {
            ShardingFormat::Gspmd => format!("mhlo.sharding = {}", mlir_string(&s.gspmd(mesh))),
            ShardingFormat::Shardy if on_op => {
                let one = s.sdy(MESH_SYMBOL);
                let inner = one.strip_prefix("#sdy.sharding").expect("sdy() writes #sdy.sharding<...>");
                format!("sdy.sharding = #sdy.sharding_per_value<[{inner}]>")
            }
            ShardingFormat::Shardy => format!("sdy.sharding = {}", s.sdy(MESH_SYMBOL)),
        }
    }

    /// `v = reshard(x)`: `sdy.sharding_constraint` or GSPMD's `@Sharding` custom call, both of
    /// which only constrain the layout; the partitioner moves the data. (Shardy's `sdy.reshard`
    /// is refused by the CPU plugin: "'sdy.reshard' op unknown mesh", whatever the form;
    /// `sharding_constraint` is also what JAX emits for `with_sharding_constraint`.) Without a mesh there is nothing to move: `x` stands for `v`.
    fn reshard(&mut self, g: &Graph, v: ValueId, x: &str, name: &str, pad: &str) -> String {
        let (Some(s), Some(mesh)) = (&g.node(v).sharding, &self.mesh) else { return x.to_string() };
        let t = ty(g, v);
        let _ = match self.format {
            ShardingFormat::Shardy => {
                writeln!(self.out, "{pad}{name} = \"sdy.sharding_constraint\"({x}) <{{sharding = {}}}> : ({t}) -> {t}", s.sdy(MESH_SYMBOL))
            }
            ShardingFormat::Gspmd => writeln!(
                self.out,
                "{pad}{name} = \"stablehlo.custom_call\"({x}) {{call_target_name = \"Sharding\", mhlo.sharding = {}}} : ({t}) -> {t}",
                mlir_string(&s.gspmd(mesh))
            ),
        };
        name.to_string()
    }
}

/// `#sdy.mesh<["dp"=2, "tp"=4]>`.
fn sdy_mesh(mesh: &Mesh) -> String {
    let axes: Vec<String> = mesh.axes.iter().map(|a| format!("\"{}\"={}", a.name, a.size)).collect();
    format!("#sdy.mesh<[{}]>", axes.join(", "))
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
