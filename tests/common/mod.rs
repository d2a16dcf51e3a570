//! Shared by the integration tests: a client on the CPU plugin (found, or fetched as a user's
//! first run would), and graph -> executable helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use vidlower_backends::{emit_module, EmitOptions};
use vidlower_ir::{Graph, TensorType};
use vidlower_runtime::pjrt::{Client, CompileOptions, NamedValue, Plugin};
use vidlower_runtime::plugin::{self, PluginKind, PluginSpec};
use vidlower_runtime::program::{ParamKind, Program, Signature};
use vidlower_runtime::tensor::HostTensor;

/// A CPU client with `devices` virtual devices.
pub fn cpu_client(devices: u32) -> Client {
    let c = plugin::resolve_or_install(&PluginSpec::Kind(PluginKind::Cpu)).expect("a CPU PJRT plugin");
    let p = Plugin::load(&c.path).expect("the CPU plugin loads");
    let opts = [("cpu_device_count".to_string(), NamedValue::Int64(devices as i64))];
    Client::new(&p, &opts).expect("a CPU client")
}

/// The StableHLO of `graph` after `passes` (names from the registry).
pub fn lower(graph: Graph, passes: &[&str]) -> (Graph, String) {
    let run = vidlower_passes::PassManager::from_names(passes).unwrap().run(graph).unwrap();
    let module = emit_module(&run.graph, &EmitOptions::default()).unwrap();
    (run.graph, module)
}

/// Compiles `graph` (after `passes`) and binds weights from `weights`.
pub fn program(client: &Client, graph: Graph, passes: &[&str], weights: &HashMap<String, HostTensor>) -> Program {
    let (graph, module) = lower(graph, passes);
    let exe = client.compile(&module, &CompileOptions::single_device()).unwrap_or_else(|e| panic!("{e}\n{module}"));
    let mut p = Program::new(exe, Signature::of(&graph), client).unwrap();
    p.upload_weights(&mut |name, _| weights.get(name).cloned()).unwrap();
    p
}

/// Seeded uniform values for every param of `graph`: (weights, inputs).
pub fn random_params(graph: &Graph, seed: u64) -> (HashMap<String, HostTensor>, HashMap<String, HostTensor>) {
    let (mut w, mut x) = (HashMap::new(), HashMap::new());
    for (name, kind, ty) in Signature::of(graph).params {
        let v = vidlower_frontends::random_weights::random_weight(seed, &name, &ty);
        let t = HostTensor::from_f32(ty.shape.clone(), &v).unwrap().convert(ty.dtype);
        match kind {
            ParamKind::Weight => w.insert(name, t),
            ParamKind::Input => x.insert(name, t),
        };
    }
    (w, x)
}

/// Max |a - b| / (1 + |b|) over all elements: relative for large values, absolute near 0.
pub fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| if x.is_nan() && y.is_nan() { 0.0 } else { (x - y).abs() / (1.0 + y.abs()) }).fold(0.0, f64::max)
}

pub fn ty_of(t: &HostTensor) -> TensorType {
    TensorType::new(t.dtype, t.dims.clone())
}

/// Compiles `graph` (already lowered; its mesh and shardings set) in the sharding `format`
/// over the client's devices, as the stages do (`CompileOptions::for_graph`), and binds
/// weights from `weights`: each device gets its piece.
pub fn sharded_program(
    client: &Client,
    graph: &Graph,
    format: vidlower_backends::ShardingFormat,
    weights: &HashMap<String, HostTensor>,
) -> Program {
    let module = emit_module(graph, &EmitOptions { sharding: format }).unwrap();
    let options = CompileOptions::for_graph(graph, format);
    let exe = client.compile(&module, &options).unwrap_or_else(|e| panic!("{e}\n{module}"));
    let mut p = Program::new(exe, Signature::of(graph), client).unwrap_or_else(|e| panic!("{e}"));
    p.upload_weights(&mut |name, _| weights.get(name).cloned()).unwrap_or_else(|e| panic!("{e}"));
    p
}
