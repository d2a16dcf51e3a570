//! Running a graph laid out by the sharding pass on a mesh of virtual CPU devices against its
//! single-device output: the harness of the per-family sharding tests (`sharding_*.rs`, which
//! include it with `#[path]` next to `mod common;`).
#![allow(dead_code)]

use crate::common;
use std::collections::HashMap;
use std::time::Instant;
use vidlower_backends::{emit_module, EmitOptions, ShardingFormat};
use vidlower_ir::{Graph, Mesh};
use vidlower_passes::{PassManager, ShardingPropagation, ShardingRules, DEFAULT_PIPELINE};
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::program::{Program, Signature};
use vidlower_runtime::tensor::HostTensor;

/// Where the sharding pass goes in the pipeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Order {
    /// First, as the standard pipeline runs it (attention still one op).
    BeforeDecompose,
    /// After `decompose`: primitives only, no attention strategy to apply.
    AfterDecompose,
}

/// The default pipeline with the sharding pass (`rules` on `mesh`) placed as `order` says.
pub fn sharded_pipeline(mesh: &Mesh, rules: &ShardingRules, order: Order) -> PassManager {
    let mut pm = PassManager::new();
    let sharding = || Box::new(ShardingPropagation::new(mesh.clone(), rules.clone()));
    for (i, name) in DEFAULT_PIPELINE.iter().enumerate() {
        if i == usize::from(order == Order::AfterDecompose) {
            pm.add(sharding());
        }
        pm.add(vidlower_passes::create_pass(name).unwrap());
    }
    pm
}

/// A graph, its weights and inputs, and its single-device output.
pub struct Case {
    pub graph: Graph,
    pub rules: ShardingRules,
    pub weights: HashMap<String, HostTensor>,
    pub inputs: HashMap<String, HostTensor>,
    pub want: Vec<f64>,
}

impl Case {
    pub fn new(graph: Graph, rules: ShardingRules, inputs: Option<HashMap<String, HostTensor>>) -> Case {
        let (weights, random_inputs) = common::random_params(&graph, 11);
        let inputs = inputs.unwrap_or(random_inputs);
        let client = common::cpu_client(1);
        let single = common::program(&client, graph.clone(), DEFAULT_PIPELINE, &weights);
        let want = single.run(&inputs).unwrap().remove(0).1.to_f64_vec();
        Case { graph, rules, weights, inputs, want }
    }

    /// Runs the graph sharded on `mesh` in `format` on the mesh's CPU devices; the max relative
    /// error against the single-device output, or why it could not run.
    pub fn error(&self, mesh: &str, format: ShardingFormat, order: Order) -> Result<f64, String> {
        let mesh = Mesh::parse(mesh).unwrap();
        let run = sharded_pipeline(&mesh, &self.rules, order).run(self.graph.clone()).unwrap();
        let module = emit_module(&run.graph, &EmitOptions { sharding: format }).unwrap();
        let client = common::cpu_client(mesh.device_count());
        let start = Instant::now();
        let exe = client.compile(&module, &CompileOptions::for_graph(&run.graph, format)).map_err(|e| e.to_string())?;
        let compile = start.elapsed();
        let mut program = Program::new(exe, Signature::of(&run.graph), &client).unwrap();
        program.upload_weights(&mut |name, _| self.weights.get(name).cloned()).unwrap();
        let out = program.run(&self.inputs).unwrap().remove(0).1;
        let err = common::max_rel_err(&out.to_f64_vec(), &self.want);
        let reshards = run.graph.op_counts().get("reshard").copied().unwrap_or(0);
        let name = &self.graph.name;
        println!("{name} on {mesh}, {format:?}, {order:?}: max rel err {err:.2e}, {reshards} reshards, compile {compile:.1?}");
        Ok(err)
    }

    /// Every mesh in both formats; all failures are listed together.
    pub fn check(&self, meshes: &[&str], order: Order) {
        let mut failures = Vec::new();
        for mesh in meshes {
            for format in [ShardingFormat::Shardy, ShardingFormat::Gspmd] {
                match self.error(mesh, format, order) {
                    Ok(err) if err < TOLERANCE => {}
                    Ok(err) => failures.push(format!("{mesh} ({format:?}): max rel err {err:e}")),
                    Err(e) => failures.push(format!("{mesh} ({format:?}): {e}")),
                }
            }
        }
        assert!(failures.is_empty(), "{}:\n{}", self.graph.name, failures.join("\n"));
    }
}

/// f32 sums in another order across devices: a few ulps of the output's scale.
pub const TOLERANCE: f64 = 1e-5;

