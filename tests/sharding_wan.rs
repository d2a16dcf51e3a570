//! The Wan transformer laid out by the sharding pass and run on 8 virtual CPU devices gives the
//! single-device output: the tiny config with 8 heads (context parallel on `tp`, sequence
//! parallel on `sp`) and with its own 2 heads (which forces sequence parallel on `tp`), batch 2
//! (CFG) on `dp`, in both Shardy and GSPMD annotations. Also: the propagated graph has a sharding
//! on every value and the IR dump shows them, and the built-in rules reach every projection.

mod common;
#[path = "common/sharded.rs"]
mod sharded;

use sharded::{Case, Order};
use std::collections::HashMap;
use std::time::Instant;
use vidlower_frontends::wan::config::{Umt5Config, WanTransformerConfig};
use vidlower_frontends::wan::text_encoder::umt5_encoder;
use vidlower_frontends::wan::transformer::{transformer, TransformerShape};
use vidlower_ir::{text, DType, Graph, Mesh, Op};
use vidlower_passes::sharding::AttentionSplit;
use vidlower_passes::{ShardingPropagation, ShardingRules};
use vidlower_runtime::tensor::HostTensor;

const TINY_TRANSFORMER: &str = include_str!("../frontends/src/wan/tiny/transformer.json");
const TINY_TEXT_ENCODER: &str = include_str!("../frontends/src/wan/tiny/text_encoder.json");

/// The rules the stages give the Wan transformer (its table in `frontends/src/wan/sharding.rs`).
fn wan_rules() -> ShardingRules {
    ShardingRules::built_in("wan transformer rules", vidlower_frontends::wan::sharding::TRANSFORMER_RULES)
}

/// The rules the stages give the UMT5 text encoder.
fn umt5_rules() -> ShardingRules {
    ShardingRules::built_in("umt5 encoder rules", vidlower_frontends::wan::sharding::UMT5_RULES)
}

/// The tiny preset's transformer with `heads` heads of its head dim (12): 8 heads = inner 96.
fn config(heads: i64) -> WanTransformerConfig {
    let mut cfg: WanTransformerConfig = serde_json::from_str(TINY_TRANSFORMER).unwrap();
    cfg.num_attention_heads = heads;
    cfg
}

/// Batch 2 (CFG's stacked conditional and unconditional), 2x4x4 patches = 32 tokens, 8 text tokens.
const SHAPE: TransformerShape = TransformerShape { batch: 2, frames: 2, height: 8, width: 8, text_len: 8 };

fn graph(heads: i64) -> Graph {
    transformer(&config(heads), &SHAPE, DType::F32).unwrap()
}

fn wan(heads: i64) -> Case {
    Case::new(graph(heads), wan_rules(), None)
}

#[test]
fn eight_heads_context_and_sequence_parallel_match_one_device() {
    wan(8).check(&["dp=2,tp=4", "tp=8", "sp=8", "dp=2,sp=4"], Order::BeforeDecompose);
}

#[test]
fn two_heads_force_sequence_parallel_and_match_one_device() {
    wan(2).check(&["dp=2,tp=4", "tp=8"], Order::BeforeDecompose);
}

#[test]
fn after_decompose_the_primitives_are_laid_out_and_match_one_device() {
    wan(2).check(&["dp=2,tp=4"], Order::AfterDecompose);
}

/// UMT5 (tiny preset): 4 heads context parallel on tp=4, the relative-position bias table
/// gathered by `take`, the 423-row vocabulary kept whole; real token ids and a padding mask.
#[test]
fn umt5_encoder_on_dp_tp_matches_one_device() {
    let cfg: Umt5Config = serde_json::from_str(TINY_TEXT_ENCODER).unwrap();
    let (batch, len) = (2, 8);
    let g = umt5_encoder(&cfg, batch, len, DType::F32).unwrap();
    let ids: Vec<f32> = (0..batch * len).map(|i| ((i * 37 + 5) % cfg.vocab_size) as f32).collect();
    let mask: Vec<f32> = (0..batch * len).map(|i| if i % len < 6 - i / len { 1.0 } else { 0.0 }).collect();
    let tensor = |v: &[f32]| HostTensor::from_f32(vec![batch, len], v).unwrap().convert(DType::I64);
    let inputs =
        HashMap::from([("input_ids".to_string(), tensor(&ids)), ("attention_mask".to_string(), tensor(&mask))]);
    Case::new(g, umt5_rules(), Some(inputs)).check(&["dp=2,tp=4"], Order::BeforeDecompose);
}

/// The laid-out (not yet decomposed) graph of `heads` heads on `mesh`, and the pass's report.
fn propagated(heads: i64, mesh: &str) -> (Graph, vidlower_passes::ShardingReport) {
    let pass = ShardingPropagation::new(Mesh::parse(mesh).unwrap(), wan_rules());
    pass.propagate(graph(heads)).unwrap()
}

#[test]
fn every_value_has_a_sharding_and_the_dump_shows_it() {
    let (g, report) = propagated(8, "dp=2,tp=4");
    vidlower_ir::verify(&g).unwrap();
    let missing: Vec<String> = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.sharding.is_none())
        .map(|(i, n)| format!("%{i} {}", n.op.name()))
        .collect();
    assert!(missing.is_empty(), "values without a sharding: {missing:?}");
    let dump = text::print(&g);
    assert!(dump.lines().nth(1).unwrap().trim() == "mesh dp=2,tp=4", "{}", &dump[..200]);
    let node_lines: Vec<&str> = dump.lines().filter(|l| l.trim_start().starts_with('%')).collect();
    assert_eq!(node_lines.len(), g.nodes.len());
    assert!(node_lines.iter().all(|l| l.contains(" sharding=[")), "every node line prints its sharding");
    // The batch is on dp from the inputs to the sample; every attention is context parallel.
    assert!(dump.contains(r#"input "hidden_states" : f32[2,16,2,8,8] sharding=[{dp},{},{},{},{}]"#));
    let out = g.node(g.outputs[0].value).sharding.as_ref().unwrap().to_string();
    assert!(out.starts_with("[{dp}"), "sample {out}");
    assert_eq!(report.attention.len(), 2 * 2, "two blocks, self and cross attention");
    for (at, c) in &report.attention {
        assert_eq!(c.splits, [("tp".to_string(), AttentionSplit::Heads)], "{at}: {c}");
    }
    assert!(report.reshards.is_empty(), "context parallel needs no reshard: {report}");
}

#[test]
fn sequence_parallel_gathers_keys_and_values_explicitly() {
    let (g, report) = propagated(2, "dp=2,tp=4");
    for (at, c) in &report.attention {
        assert_eq!(c.splits, [("tp".to_string(), AttentionSplit::Queries)], "{at}: {c}");
    }
    for n in g.nodes.iter().filter(|n| matches!(n.op, Op::Attention { .. })) {
        let s = |k: usize| g.node(n.operands[k]).sharding.as_ref().unwrap().to_string();
        assert_eq!(
            (s(0), s(1), s(2)),
            ("[{dp},{},{tp},{}]".into(), "[{dp},{},{},{}]".into(), "[{dp},{},{},{}]".into())
        );
    }
    // Per attention: q from heads-split features to split rows, k and v gathered, and the
    // output gathered before the row-parallel to_out (2 heads cannot take tp); nothing else.
    assert_eq!(g.op_counts()["reshard"], 4 * 4, "{report}");
    assert!(report.reshards.iter().all(|r| !r.contains("-> [{},{}]")), "no weight is gathered: {report}");
    println!("{report}");
}

#[test]
fn built_in_rules_split_every_projection() {
    let (g, report) = propagated(8, "dp=2,tp=4");
    let split = |name: &str| {
        let v = g.find_input(name).unwrap();
        !g.node(v).sharding.as_ref().unwrap().is_replicated()
    };
    for block in 0..2 {
        for layer in ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_out.0"] {
            assert!(split(&format!("blocks.{block}.{layer}.weight")), "blocks.{block}.{layer}");
        }
        assert!(
            split(&format!("blocks.{block}.ffn.net.0.proj.weight"))
                && split(&format!("blocks.{block}.ffn.net.2.weight"))
        );
    }
    assert!(split("condition_embedder.text_embedder.linear_1.weight"));
    assert!(!split("proj_out.weight") && !split("patch_embedding.weight"));
    // q/k/v, ffn.0 and linear_1 (weights and biases) + to_out, ffn.2 and linear_2 (weights).
    assert_eq!(report.weights_split, 2 * (12 + 2 + 3) + 4 + 2, "{report}");

    let cfg: Umt5Config = serde_json::from_str(TINY_TEXT_ENCODER).unwrap();
    let t5 = umt5_encoder(&cfg, 2, 8, DType::F32).unwrap();
    let pass = ShardingPropagation::new(Mesh::parse("dp=2,tp=4").unwrap(), umt5_rules());
    let (t5, report) = pass.propagate(t5).unwrap();
    let names: Vec<String> = t5
        .weights()
        .filter(|(n, _)| {
            let v = t5.find_input(n).unwrap();
            !t5.node(v).sharding.as_ref().unwrap().is_replicated()
        })
        .map(|(n, _)| n.to_string())
        .collect();
    // q, k, v, o, wi_0, wi_1, wo in both layers; the 423-row vocabulary does not divide by 4.
    assert_eq!(names.len(), 2 * 7, "{names:?}");
    assert!(report.notes.iter().any(|n| n.contains("shared.weight") && n.contains("423")), "{report}");
}

/// The real configs at their real sizes (graphs only): the pass stays fast on 40 layers and
/// 75,600 tokens, 14B's 40 heads are context parallel on tp=4 and tp=8, 1.3B's 12 heads are
/// sequence parallel on tp=8 (12 % 8 != 0; 32,760 tokens divide).
#[test]
fn real_wan_graphs_are_laid_out_fast() {
    let wan_14b = WanTransformerConfig::default();
    let wan_1_3b = WanTransformerConfig { num_attention_heads: 12, ffn_dim: 8960, num_layers: 30, ..wan_14b.clone() };
    let cases = [
        (
            "14B 720p",
            &wan_14b,
            TransformerShape { batch: 2, frames: 21, height: 90, width: 160, text_len: 512 },
            "dp=2,tp=4",
        ),
        (
            "14B 720p",
            &wan_14b,
            TransformerShape { batch: 2, frames: 21, height: 90, width: 160, text_len: 512 },
            "tp=8",
        ),
        (
            "1.3B 480p",
            &wan_1_3b,
            TransformerShape { batch: 2, frames: 21, height: 60, width: 104, text_len: 512 },
            "tp=8",
        ),
    ];
    for (name, cfg, shape, mesh) in cases {
        let g = transformer(cfg, &shape, DType::BF16).unwrap();
        let nodes = g.nodes.len();
        let start = Instant::now();
        let (g, report) = ShardingPropagation::new(Mesh::parse(mesh).unwrap(), wan_rules()).propagate(g).unwrap();
        let took = start.elapsed();
        println!("{name} on {mesh}: {nodes} nodes laid out in {took:.2?}, {} reshards", report.reshards.len());
        assert!(g.nodes.iter().all(|n| n.sharding.is_some()));
        let want = if cfg.num_attention_heads % 8 == 0 { AttentionSplit::Heads } else { AttentionSplit::Queries };
        assert_eq!(report.attention.len() as i64, 2 * cfg.num_layers);
        assert!(report.attention.iter().all(|(_, c)| c.splits == [("tp".to_string(), want)]), "{report}");
        assert!(took.as_secs_f64() < 5.0, "{name}: {took:?}");
    }
}
