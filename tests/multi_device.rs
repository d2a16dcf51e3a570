//! Virtual CPU devices: the example block with its weights sharded tensor-parallel
//! (column-parallel q/k/v and MLP-in, row-parallel out-projections, as the seeds shard Wan), on a
//! `tp=4` mesh and on `dp=2,tp=4` with the batch on `dp`, emitted as Shardy and as GSPMD, compiled
//! with num_partitions = mesh size and run through `Program`, gives the single-device result.

mod common;

use std::collections::HashMap;
use vidlower_backends::{emit_module, EmitOptions, ShardingFormat};
use vidlower_frontends::example::{example_block, ExampleConfig};
use vidlower_ir::{Graph, Mesh, Op, Sharding};
use vidlower_runtime::program::ProgramError;
use vidlower_runtime::tensor::HostTensor;

/// Tensor-parallel sharding of a weight of the example block over axis `tp` (torch [out, in]).
fn tp_sharding(name: &str, rank: usize) -> Sharding {
    let column = ["attn.to_q", "attn.to_k", "attn.to_v", "ff.net.0.proj"].iter().any(|p| name.starts_with(p));
    let row = ["attn.to_out.0", "ff.net.2"].iter().any(|p| name.starts_with(p)) && name.ends_with(".weight");
    match (column, row, rank) {
        (true, _, _) => Sharding::split(rank, 0, "tp"),
        (_, true, 2) => Sharding::split(rank, 1, "tp"),
        _ => Sharding::replicated(rank),
    }
}

/// The lowered example block on `mesh`: weights by [`tp_sharding`], the input and output
/// batch on `dp` when the mesh has it (CFG-style data parallelism), else replicated.
fn sharded_block(lowered: &Graph, mesh: &str) -> Graph {
    let mut g = lowered.clone();
    let mesh = Mesh::parse(mesh).unwrap();
    let batch = |rank| match mesh.axis_size("dp") {
        Some(_) => Sharding::split(rank, 0, "dp"),
        None => Sharding::replicated(rank),
    };
    for &v in &g.inputs.clone() {
        let rank = g.tensor_ty(v).rank();
        g.nodes[v.index()].sharding = Some(match &g.node(v).op {
            Op::Weight { name } => tp_sharding(name, rank),
            _ => batch(rank),
        });
    }
    let out = g.outputs[0].value;
    g.nodes[out.index()].sharding = Some(batch(g.tensor_ty(out).rank()));
    g.mesh = Some(mesh);
    vidlower_ir::verify(&g).unwrap();
    g
}

struct Block {
    lowered: Graph,
    weights: HashMap<String, HostTensor>,
    inputs: HashMap<String, HostTensor>,
    want: Vec<f64>,
    dims: Vec<i64>,
}

/// The example block lowered by the default pipeline, random params, and its single-device output.
fn block(client: &vidlower_runtime::pjrt::Client) -> Block {
    let cfg = ExampleConfig::default();
    let graph = example_block(&cfg).unwrap();
    let (weights, inputs) = common::random_params(&graph, 3);
    let single = common::program(client, graph.clone(), vidlower_passes::DEFAULT_PIPELINE, &weights);
    let want = single.run(&inputs).unwrap().remove(0).1.to_f64_vec();
    let (lowered, _) = common::lower(graph, vidlower_passes::DEFAULT_PIPELINE);
    Block { lowered, weights, inputs, want, dims: vec![cfg.batch, cfg.seq, cfg.dim] }
}

/// Runs the block sharded on `mesh` in `format` and compares with the single-device output.
fn check(b: &Block, client: &vidlower_runtime::pjrt::Client, mesh: &str, format: ShardingFormat) {
    let g = sharded_block(&b.lowered, mesh);
    let p = common::sharded_program(client, &g, format, &b.weights);
    assert_eq!(p.devices().len() as u32, g.mesh.as_ref().unwrap().device_count());
    let out = p.run(&b.inputs).unwrap().remove(0).1;
    assert_eq!(out.dims, b.dims, "{mesh} {format:?}: the output is joined back to the full tensor");
    let err = common::max_rel_err(&out.to_f64_vec(), &b.want);
    eprintln!("{mesh} {format:?}: max relative error {err:e} against one device");
    assert!(err < 1e-5, "{mesh} {format:?}: max relative error {err:e} against the single-device run");
}

#[test]
fn tensor_parallel_on_tp4_matches_single_device() {
    let client = common::cpu_client(8);
    let b = block(&client);
    let g = sharded_block(&b.lowered, "tp=4");
    let gspmd = emit_module(&g, &EmitOptions { sharding: ShardingFormat::Gspmd }).unwrap();
    assert!(gspmd.contains("mhlo.num_partitions = 4") && gspmd.contains("{devices=[4,1]<=[4]}"));
    assert!(gspmd.contains("{devices=[1,4]<=[4]}"), "row-parallel weights are split on dim 1");
    let shardy = emit_module(&g, &EmitOptions { sharding: ShardingFormat::Shardy }).unwrap();
    assert!(shardy.contains(r#"#sdy.mesh<["tp"=4]>"#) && shardy.contains(r#"[{}, {"tp"}]"#));
    for format in [ShardingFormat::Shardy, ShardingFormat::Gspmd] {
        check(&b, &client, "tp=4", format);
    }
}

/// Batch on `dp`, weights on `tp`: a tp-only weight is split on the minor mesh axis, so devices
/// 0..4 hold different pieces and devices d, d+4 the same one (GSPMD needs the transposed iota).
#[test]
fn data_and_tensor_parallel_on_8_devices_matches_single_device() {
    let client = common::cpu_client(8);
    let b = block(&client);
    let g = sharded_block(&b.lowered, "dp=2,tp=4");
    let gspmd = emit_module(&g, &EmitOptions { sharding: ShardingFormat::Gspmd }).unwrap();
    assert!(gspmd.contains("mhlo.num_partitions = 8"));
    assert!(gspmd.contains("{devices=[4,1,2]<=[2,4]T(1,0) last_tile_dim_replicate}"), "column-parallel on tp");
    assert!(gspmd.contains("{devices=[2,1,1,4]<=[8] last_tile_dim_replicate}"), "batch on dp");
    for format in [ShardingFormat::Shardy, ShardingFormat::Gspmd] {
        check(&b, &client, "dp=2,tp=4", format);
    }
}

/// A parameter whose dim does not divide by its axis is refused when the program is made,
/// naming the parameter, not at the first run (nor by a crash in the plugin).
#[test]
fn indivisible_parameters_are_refused_by_name() {
    let client = common::cpu_client(8);
    let cfg = ExampleConfig::default();
    let (lowered, _) = common::lower(example_block(&cfg).unwrap(), vidlower_passes::DEFAULT_PIPELINE);
    // Batch 2 on an axis of 8.
    let mut g = sharded_block(&lowered, "dp=8,tp=1");
    let module = emit_module(&g, &EmitOptions::default()).unwrap();
    let options = vidlower_runtime::pjrt::CompileOptions::for_graph(&g, ShardingFormat::Shardy);
    let exe = client.compile(&module, &options).unwrap();
    let e = vidlower_runtime::program::Program::new(exe, vidlower_runtime::program::Signature::of(&g), &client)
        .err()
        .expect("batch 2 does not divide by dp=8");
    assert!(matches!(e, ProgramError::Shard { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("input `hidden_states`") && msg.contains("dp=8,tp=1") && msg.contains("[2, 32, 64]"), "{msg}");
    // An executable compiled for fewer devices than the mesh is refused too.
    let plain = emit_module(&lowered, &EmitOptions::default()).unwrap();
    let exe = client.compile(&plain, &vidlower_runtime::pjrt::CompileOptions::single_device()).unwrap();
    g = sharded_block(&lowered, "dp=2,tp=1");
    let e = vidlower_runtime::program::Program::new(exe, vidlower_runtime::program::Signature::of(&g), &client)
        .err()
        .expect("one device for a 2-device mesh");
    assert!(matches!(e, ProgramError::Devices { expected: 2, got: 1, .. }), "{e}");
}
