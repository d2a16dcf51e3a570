//! The seeds' tensor-parallel rules for Wan 2.1 (SEEDS.md, "Sharding rules"), written against
//! vidlower's weight names (diffusers' state-dict names, torch `[out, in]` layouts): column-parallel
//! layers split their output features (weight dim 0 and the bias) on `tp`, row-parallel layers
//! split their input features (weight dim 1; the bias stays whole, it is added after the partial
//! sums are reduced). A column-parallel layer feeding a row-parallel one keeps the hidden
//! activation split, so each such pair costs one all-reduce. The VAE has no rules (replicated).

use super::rules::{RuleSource, ShardingRules};

const COLUMN: [Option<&str>; 2] = [Some("tp"), None];
const ROW: [Option<&str>; 2] = [None, Some("tp")];

/// `WanTransformer3DModel`: q/k/v (self and cross attention), `ffn.net.0.proj` and the condition
/// embedder's `linear_1` column-parallel; `to_out.0`, `ffn.net.2` and `linear_2` row-parallel.
pub fn wan_transformer() -> ShardingRules {
    let rules = [
        (r"condition_embedder\.\w+\.linear_1\.(weight|bias)", COLUMN),
        (r"blocks\.\d+\.attn[12]\.to_[qkv]\.(weight|bias)", COLUMN),
        (r"blocks\.\d+\.ffn\.net\.0\.proj\.(weight|bias)", COLUMN),
        (r"condition_embedder\.\w+\.linear_2\.(weight|bias)", ROW),
        (r"blocks\.\d+\.attn[12]\.to_out\.0\.(weight|bias)", ROW),
        (r"blocks\.\d+\.ffn\.net\.2\.(weight|bias)", ROW),
    ];
    built_in("wan transformer rules", &rules)
}

/// `UMT5EncoderModel`: q, k, v, `wi_0`, `wi_1` (and a non-gated `wi`) and the token embedding
/// `shared` (vocabulary rows) on dim 0; `o` and `wo` on dim 1.
pub fn umt5_encoder() -> ShardingRules {
    let rules = [
        (r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.[qkv]\.weight", COLUMN),
        (r"encoder\.block\.\d+\.layer\.1\.DenseReluDense\.wi(_0|_1)?\.weight", COLUMN),
        (r"shared\.weight", COLUMN),
        (r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.o\.weight", ROW),
        (r"encoder\.block\.\d+\.layer\.1\.DenseReluDense\.wo\.weight", ROW),
    ];
    built_in("umt5 encoder rules", &rules)
}

/// The built-in rules for a Wan pipeline component by its diffusers folder name: `transformer`,
/// `text_encoder`, or `vae` (no rules: replicated). `None` for other names.
pub fn wan_component_rules(component: &str) -> Option<ShardingRules> {
    match component {
        "transformer" => Some(wan_transformer()),
        "text_encoder" => Some(umt5_encoder()),
        "vae" => Some(ShardingRules::none()),
        _ => None,
    }
}

/// Rules from a family's table of (pattern, dims); a bad built-in regex is a programming error.
pub fn built_in(name: &'static str, rules: &[(&'static str, [Option<&'static str>; 2])]) -> ShardingRules {
    ShardingRules::new(RuleSource::BuiltIn(name), rules.iter().map(|(p, d)| (*p, d.to_vec())))
        .expect("the built-in rules are valid regexes over mesh axis names")
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::Mesh;

    #[test]
    fn wan_transformer_rules_cover_the_seeds_layers_by_our_weight_names() {
        // The shape of our Wan graph's weights (names as `frontends/src/wan/transformer.rs` makes them).
        let names = [
            ("condition_embedder.time_embedder.linear_1.weight", vec![24, 16], "[{tp},{}]"),
            ("condition_embedder.time_embedder.linear_1.bias", vec![24], "[{tp}]"),
            ("condition_embedder.text_embedder.linear_2.weight", vec![24, 24], "[{},{tp}]"),
            ("condition_embedder.text_embedder.linear_2.bias", vec![24], "[{}]"),
            ("blocks.11.attn1.to_k.weight", vec![24, 24], "[{tp},{}]"),
            ("blocks.0.attn2.to_v.bias", vec![24], "[{tp}]"),
            ("blocks.0.attn2.to_out.0.weight", vec![24, 24], "[{},{tp}]"),
            ("blocks.3.ffn.net.0.proj.weight", vec![48, 24], "[{tp},{}]"),
            ("blocks.3.ffn.net.2.weight", vec![24, 48], "[{},{tp}]"),
        ];
        let (r, m) = (wan_transformer(), Mesh::parse("dp=2,tp=4").unwrap());
        for (name, shape, want) in names {
            let got = r.weight_sharding(&m, name, &shape).unwrap().unwrap();
            assert_eq!(got.sharding.to_string(), want, "{name}");
        }
        for unmatched in ["blocks.0.attn1.norm_q.weight", "condition_embedder.time_proj.weight", "proj_out.weight"] {
            assert!(r.find(unmatched).is_none(), "{unmatched}");
        }
    }

    #[test]
    fn umt5_rules_split_attention_ffn_and_vocabulary() {
        let r = umt5_encoder();
        let m = Mesh::parse("tp=4").unwrap();
        let s = |n: &str| r.weight_sharding(&m, n, &[32, 16]).unwrap().map(|w| w.sharding.to_string());
        assert_eq!(s("encoder.block.0.layer.0.SelfAttention.q.weight").unwrap(), "[{tp},{}]");
        assert_eq!(s("encoder.block.2.layer.1.DenseReluDense.wi_1.weight").unwrap(), "[{tp},{}]");
        assert_eq!(s("encoder.block.2.layer.1.DenseReluDense.wo.weight").unwrap(), "[{},{tp}]");
        assert_eq!(s("encoder.block.2.layer.0.SelfAttention.o.weight").unwrap(), "[{},{tp}]");
        assert_eq!(s("shared.weight").unwrap(), "[{tp},{}]");
        assert_eq!(s("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"), None);
        assert!(wan_component_rules("vae").unwrap().rules.is_empty());
        assert!(wan_component_rules("scheduler").is_none());
    }
}
