//! Tensor-parallel rules for HunyuanVideo-1.5, as data (diffusers'/transformers' weight names,
//! torch `[out, in]` layouts). Column-parallel layers feed row-parallel ones, so each pair costs
//! one all-reduce; adaptive norms (their outputs are chunked into shift/scale/gate), embedders
//! and the final layer stay replicated.
//!
//! Qwen2.5-VL-7B has 28 query heads and 4 KV heads: neither divides tp=8. The projections are
//! still split on `tp` (3584 and 512 output features divide), and the sharding propagation
//! decides the attention itself from the heads and query rows it gets: heads split when they
//! divide the axis, else query rows, else replicated; `compile --explain` prints which and why
//! (`neither 28 heads nor 1108 queries divide by tp=8; replicated on tp`).

use crate::family::RuleTable;

const COLUMN: [Option<&str>; 2] = [Some("tp"), None];
const ROW: [Option<&str>; 2] = [None, Some("tp")];

/// `HunyuanVideo15Transformer3DModel`: in each double-stream block the joint attention's video
/// (`to_q/k/v`) and text (`add_q/k/v_proj`) projections and both feed-forwards' first layers are
/// column-parallel, `to_out.0`, `to_add_out` and the feed-forwards' second layers row-parallel;
/// the token refiner's blocks likewise.
pub const TRANSFORMER_RULES: RuleTable = &[
    (r"transformer_blocks\.\d+\.attn\.(to_[qkv]|add_[qkv]_proj)\.(weight|bias)", COLUMN),
    (r"transformer_blocks\.\d+\.ff(_context)?\.net\.0\.proj\.(weight|bias)", COLUMN),
    (r"transformer_blocks\.\d+\.attn\.(to_out\.0|to_add_out)\.(weight|bias)", ROW),
    (r"transformer_blocks\.\d+\.ff(_context)?\.net\.2\.(weight|bias)", ROW),
    (r"context_embedder\.token_refiner\.refiner_blocks\.\d+\.attn\.to_[qkv]\.(weight|bias)", COLUMN),
    (r"context_embedder\.token_refiner\.refiner_blocks\.\d+\.ff\.net\.0\.proj\.(weight|bias)", COLUMN),
    (r"context_embedder\.token_refiner\.refiner_blocks\.\d+\.attn\.to_out\.0\.(weight|bias)", ROW),
    (r"context_embedder\.token_refiner\.refiner_blocks\.\d+\.ff\.net\.2\.(weight|bias)", ROW),
];

/// `Qwen2_5_VLTextModel`: q/k/v and the SwiGLU's gate/up column-parallel, `o_proj` and
/// `down_proj` row-parallel, the token embedding split by vocabulary rows.
pub const QWEN_RULES: RuleTable = &[
    (r"layers\.\d+\.self_attn\.[qkv]_proj\.(weight|bias)", COLUMN),
    (r"layers\.\d+\.mlp\.(gate|up)_proj\.weight", COLUMN),
    (r"embed_tokens\.weight", COLUMN),
    (r"layers\.\d+\.self_attn\.o_proj\.weight", ROW),
    (r"layers\.\d+\.mlp\.down_proj\.weight", ROW),
];

/// ByT5's encoder: the T5-style rules.
pub const BYT5_RULES: RuleTable = crate::nn::t5_sharding::ENCODER_RULES;
