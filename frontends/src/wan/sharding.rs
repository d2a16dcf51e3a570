//! The seeds' tensor-parallel rules for Wan 2.1 (SEEDS.md, "Sharding rules") as plain data:
//! `(pattern over the whole weight name, per-dim mesh axis)`, written against vidlower's weight
//! names (diffusers' state-dict names, torch `[out, in]` layouts). The passes crate turns a table
//! into rules (`ShardingRules::built_in`); frontends does not depend on it.
//!
//! Column-parallel layers split their output features (weight dim 0 and the bias) on `tp`,
//! row-parallel layers split their input features (weight dim 1; the bias stays whole, it is
//! added after the partial sums are reduced). A column-parallel layer feeding a row-parallel one
//! keeps the hidden activation split, so each such pair costs one all-reduce. The VAE has no
//! rules (replicated).

/// One rule: a regex over the whole weight name and the axis splitting each of its first two
/// dims (`None` = whole); a bias takes the first entry.
pub type ShardingRule = (&'static str, [Option<&'static str>; 2]);

const COLUMN: [Option<&str>; 2] = [Some("tp"), None];
const ROW: [Option<&str>; 2] = [None, Some("tp")];

/// `WanTransformer3DModel`: q/k/v (self and cross attention), `ffn.net.0.proj` and the condition
/// embedder's `linear_1` column-parallel; `to_out.0`, `ffn.net.2` and `linear_2` row-parallel.
pub const TRANSFORMER_RULES: &[ShardingRule] = &[
    (r"condition_embedder\.\w+\.linear_1\.(weight|bias)", COLUMN),
    (r"blocks\.\d+\.attn[12]\.to_[qkv]\.(weight|bias)", COLUMN),
    (r"blocks\.\d+\.ffn\.net\.0\.proj\.(weight|bias)", COLUMN),
    (r"condition_embedder\.\w+\.linear_2\.(weight|bias)", ROW),
    (r"blocks\.\d+\.attn[12]\.to_out\.0\.(weight|bias)", ROW),
    (r"blocks\.\d+\.ffn\.net\.2\.(weight|bias)", ROW),
];

/// `UMT5EncoderModel`: the T5-style encoder rules (`nn::t5_sharding`).
pub const UMT5_RULES: &[ShardingRule] = crate::nn::t5_sharding::ENCODER_RULES;
