//! HunyuanVideo-1.5 laid out by the sharding pass with its built-in rules and run on 8 virtual CPU
//! devices gives the single-device output: the tiny transformer (joint attention with padding
//! masks, the token refiner) with its own 2 heads and with 8, and the tiny Qwen2.5-VL text model
//! (4 query heads, 2 KV heads: grouped-query attention whose KV heads do not divide tp=4).
//! Also: the rules reach every projection, and the real Qwen2.5-VL-7B's 28 / 4 heads on tp=8
//! are reported, not silently replicated.

mod common;
#[path = "common/sharded.rs"]
mod sharded;

use sharded::{Case, Order};
use std::collections::HashMap;
use vidlower_frontends::hunyuanvideo15::sharding::{QWEN_RULES, TRANSFORMER_RULES};
use vidlower_frontends::hunyuanvideo15::transformer::{transformer, TransformerShape};
use vidlower_frontends::hunyuanvideo15::transformer_config::HunyuanVideo15TransformerConfig;
use vidlower_frontends::nn::qwen2_5_vl_text::{text_encoder_with, Qwen2_5VlTextConfig, Qwen2_5VlTextOptions};
use vidlower_ir::{DType, Graph, Mesh};
use vidlower_passes::{ShardingPropagation, ShardingRules};
use vidlower_runtime::tensor::HostTensor;

const TINY_TRANSFORMER: &str = include_str!("../frontends/src/hunyuanvideo15/tiny/transformer.json");
const TINY_QWEN: &str = include_str!("../frontends/src/hunyuanvideo15/tiny/text_encoder.json");

fn transformer_rules() -> ShardingRules {
    ShardingRules::built_in("hunyuanvideo15 transformer rules", TRANSFORMER_RULES)
}

fn qwen_rules() -> ShardingRules {
    ShardingRules::built_in("qwen2.5-vl rules", QWEN_RULES)
}

/// Batch 2 (the CFG pair), 2x4x4 latents = 32 video tokens, 8 Qwen + 8 ByT5 tokens.
const SHAPE: TransformerShape = TransformerShape { batch: 2, frames: 2, height: 4, width: 4, text_len: 8, text_len_2: 8 };

fn transformer_graph(heads: i64) -> Graph {
    let mut cfg: HunyuanVideo15TransformerConfig = serde_json::from_str(TINY_TRANSFORMER).unwrap();
    cfg.num_attention_heads = heads;
    transformer(&cfg, &SHAPE, DType::F32).unwrap()
}

/// 0/1 masks [2, len]: row 0 keeps `valid[0]` tokens, row 1 `valid[1]` (0: no glyph text).
fn mask(len: i64, valid: [i64; 2]) -> HostTensor {
    let v: Vec<f32> = (0..2).flat_map(|r| (0..len).map(move |i| if i < valid[r] { 1.0 } else { 0.0 })).collect();
    HostTensor::from_f32(vec![2, len], &v).unwrap()
}

/// The transformer with random weights and states, real masks (padding in both texts, one row
/// without glyph text) and the pipeline's float timestep.
fn transformer_case(heads: i64) -> Case {
    let g = transformer_graph(heads);
    let (_, mut inputs) = common::random_params(&g, 11);
    inputs.insert("encoder_attention_mask".into(), mask(8, [5, 3]));
    inputs.insert("encoder_attention_mask_2".into(), mask(8, [4, 0]));
    inputs.insert("timestep".into(), HostTensor::from_f32(vec![2], &[909.09, 909.09]).unwrap());
    Case::new(g, transformer_rules(), Some(inputs))
}

#[test]
fn transformer_with_two_heads_matches_one_device() {
    transformer_case(2).check(&["dp=2,tp=4", "tp=8"], Order::BeforeDecompose);
}

#[test]
fn transformer_with_eight_heads_matches_one_device() {
    transformer_case(8).check(&["dp=2,tp=4", "sp=8"], Order::BeforeDecompose);
}

fn qwen_graph(cfg: &Qwen2_5VlTextConfig, batch: i64, len: i64, crop: i64) -> Graph {
    let opts = Qwen2_5VlTextOptions { crop_start: crop, ..Qwen2_5VlTextOptions::new(-3, DType::F32) };
    text_encoder_with(cfg, batch, len, &opts).unwrap()
}

#[test]
fn qwen_with_grouped_query_attention_matches_one_device() {
    let cfg: Qwen2_5VlTextConfig = serde_json::from_str(TINY_QWEN).unwrap();
    let (batch, len) = (2, 12);
    let g = qwen_graph(&cfg, batch, len, 4);
    let ids: Vec<i64> = (0..batch * len).map(|i| (i * 37 + 5) % cfg.vocab_size).collect();
    let m: Vec<i64> = (0..batch * len).map(|i| i64::from(i % len < 10 - 3 * (i / len))).collect();
    let inputs = HashMap::from([
        ("input_ids".to_string(), HostTensor::from_slice([batch, len], &ids).unwrap()),
        ("attention_mask".to_string(), HostTensor::from_slice([batch, len], &m).unwrap()),
    ]);
    Case::new(g, qwen_rules(), Some(inputs)).check(&["dp=2,tp=4", "tp=8"], Order::BeforeDecompose);
}

/// Names of the weights the pass split (not replicated).
fn split_weights(g: &Graph) -> Vec<String> {
    g.weights()
        .filter(|(n, _)| !g.node(g.find_input(n).unwrap()).sharding.as_ref().unwrap().is_replicated())
        .map(|(n, _)| n.to_string())
        .collect()
}

#[test]
fn built_in_rules_split_every_projection() {
    let pass = ShardingPropagation::new(Mesh::parse("dp=2,tp=4").unwrap(), transformer_rules());
    let (g, _) = pass.propagate(transformer_graph(8)).unwrap();
    let split = split_weights(&g);
    for block in 0..2 {
        for layer in ["to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"] {
            assert!(split.contains(&format!("transformer_blocks.{block}.attn.{layer}.weight")), "block {block} {layer}: {split:?}");
        }
        for ff in ["ff", "ff_context"] {
            for layer in ["net.0.proj", "net.2"] {
                assert!(split.contains(&format!("transformer_blocks.{block}.{ff}.{layer}.weight")), "{block} {ff}.{layer}");
            }
        }
    }
    for layer in ["attn.to_q", "attn.to_out.0", "ff.net.0.proj", "ff.net.2"] {
        let name = format!("context_embedder.token_refiner.refiner_blocks.0.{layer}.weight");
        assert!(split.contains(&name), "{name}: {split:?}");
    }
    assert!(!split.iter().any(|n| n.starts_with("proj_out") || n.starts_with("x_embedder") || n.contains("norm1")));
}

/// Qwen2.5-VL-7B (28 query heads, 4 KV heads, 1108 tokens) on tp=8: the projections split (their
/// features divide), and the attention's layout is decided and reported, never silently dropped.
#[test]
fn qwen_7b_heads_on_tp8_are_explained() {
    let cfg: Qwen2_5VlTextConfig = serde_json::from_value(serde_json::json!({
        "model_type": "qwen2_5_vl_text", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "max_position_embeddings": 128000
    }))
    .unwrap();
    let g = qwen_graph(&cfg, 1, 1108, 108);
    let (g, report) = ShardingPropagation::new(Mesh::parse("tp=8").unwrap(), qwen_rules()).propagate(g).unwrap();
    let split = split_weights(&g);
    for layer in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"] {
        assert!(split.contains(&format!("layers.0.{layer}.weight")), "{layer}");
    }
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.attention.len(), 26, "one decision per built layer");
    // 28 heads and 1108 rows do not divide by 8: the attention stays whole on `tp` and says why.
    assert!(text.contains("neither 28 heads nor 1108 queries divide by tp=8; replicated on tp"), "{text}");
}
