//! Four virtual CPU devices: the example block with its weights sharded tensor-parallel
//! (column-parallel q/k/v and MLP-in, row-parallel out-projections, as the seeds shard Wan),
//! compiled with num_partitions = 4 (SPMD), gives the single-device result.

mod common;

use vidlower_backends::{emit_module, EmitOptions, ShardingFormat};
use vidlower_frontends::example::{example_block, ExampleConfig};
use vidlower_ir::{Mesh, Op, Sharding};
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::program::Signature;
use vidlower_runtime::shard::shard_of;

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

#[test]
fn tensor_parallel_matches_single_device() {
    const N: u32 = 4;
    let cfg = ExampleConfig::default();
    let graph = example_block(&cfg).unwrap();
    let (weights, inputs) = common::random_params(&graph, 3);

    // Single device.
    let client1 = common::cpu_client(1);
    let single = common::program(&client1, graph.clone(), vidlower_passes::DEFAULT_PIPELINE, &weights);
    let want = single.run(&inputs).unwrap().remove(0).1.to_f64_vec();

    // Sharded: annotate the lowered graph's params and output, emit with 4 partitions.
    let (mut lowered, _) = common::lower(graph, vidlower_passes::DEFAULT_PIPELINE);
    let mesh = Mesh::parse("tp=4").unwrap();
    lowered.mesh = Some(mesh.clone());
    let mut shardings = Vec::new();
    for &v in &lowered.inputs.clone() {
        let rank = lowered.tensor_ty(v).rank();
        let s = match &lowered.node(v).op {
            Op::Weight { name } => tp_sharding(name, rank),
            _ => Sharding::replicated(rank),
        };
        lowered.nodes[v.index()].sharding = Some(s.clone());
        shardings.push(s);
    }
    let out = lowered.outputs[0].value;
    let out_rank = lowered.tensor_ty(out).rank();
    lowered.nodes[out.index()].sharding = Some(Sharding::replicated(out_rank));
    let module = emit_module(&lowered, &EmitOptions { sharding: ShardingFormat::Gspmd }).unwrap();
    assert!(module.contains("mhlo.num_partitions = 4") && module.contains("{devices=[4,1]<=[4]}"));
    assert!(module.contains("{devices=[1,4]<=[4]}"), "row-parallel weights are sharded on dim 1");

    let client = common::cpu_client(N);
    let exe = client.compile(&module, &CompileOptions::spmd(N)).unwrap();
    let devices = exe.addressable_devices().to_vec();
    assert_eq!(devices.len(), N as usize);
    let sig = Signature::of(&lowered);
    let mut per_device = Vec::new();
    for (d, device) in devices.iter().enumerate() {
        let mut bufs = Vec::new();
        for ((name, _, _), s) in sig.params.iter().zip(&shardings) {
            let full = weights.get(name).or_else(|| inputs.get(name)).unwrap();
            let piece = shard_of(full, s, &mesh, d as u32).unwrap();
            bufs.push(client.buffer_from_host(&piece, device).unwrap());
        }
        per_device.push(bufs);
    }
    let args: Vec<Vec<&_>> = per_device.iter().map(|b| b.iter().collect()).collect();
    let results = exe.execute(&args).unwrap();
    assert_eq!(results.len(), N as usize);
    for (d, outs) in results.iter().enumerate() {
        let got = outs[0].to_host().unwrap();
        assert_eq!(got.dims, vec![cfg.batch, cfg.seq, cfg.dim], "device {d} holds the replicated output");
        let err = common::max_rel_err(&got.to_f64_vec(), &want);
        assert!(err < 1e-5, "device {d}: max relative error {err:e} against the single-device run");
    }
}
