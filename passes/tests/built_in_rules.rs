//! The model families' built-in sharding tables (plain data in `vidlower_frontends`) become
//! rules: every table compiles, and each splits the layers it is meant to by our weight names.

use vidlower_frontends::wan::sharding::{ShardingRule, TRANSFORMER_RULES, UMT5_RULES};
use vidlower_ir::Mesh;
use vidlower_passes::ShardingRules;

/// Every built-in table, by the name its rules carry.
const TABLES: &[(&str, &[ShardingRule])] = &[("wan transformer rules", TRANSFORMER_RULES), ("umt5 encoder rules", UMT5_RULES)];

#[test]
fn every_built_in_table_compiles() {
    for (name, table) in TABLES {
        let rules = ShardingRules::built_in(name, table);
        assert_eq!(rules.rules.len(), table.len(), "{name}");
    }
}

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
    let (r, m) = (ShardingRules::built_in("wan transformer rules", TRANSFORMER_RULES), Mesh::parse("dp=2,tp=4").unwrap());
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
    let r = ShardingRules::built_in("umt5 encoder rules", UMT5_RULES);
    let m = Mesh::parse("tp=4").unwrap();
    let s = |n: &str| r.weight_sharding(&m, n, &[32, 16]).unwrap().map(|w| w.sharding.to_string());
    assert_eq!(s("encoder.block.0.layer.0.SelfAttention.q.weight").unwrap(), "[{tp},{}]");
    assert_eq!(s("encoder.block.2.layer.1.DenseReluDense.wi_1.weight").unwrap(), "[{tp},{}]");
    assert_eq!(s("encoder.block.2.layer.1.DenseReluDense.wo.weight").unwrap(), "[{},{tp}]");
    assert_eq!(s("encoder.block.2.layer.0.SelfAttention.o.weight").unwrap(), "[{},{tp}]");
    assert_eq!(s("shared.weight").unwrap(), "[{tp},{}]");
    assert_eq!(s("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"), None);
}
