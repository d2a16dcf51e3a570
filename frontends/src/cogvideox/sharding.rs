//! Tensor-parallel rules for CogVideoX, as data (diffusers' weight names, torch `[out, in]`
//! layouts): in every block the joint attention's q/k/v and the feed-forward's first layer are
//! column-parallel on `tp`, `to_out.0` and `ff.net.2` row-parallel, so each pair costs one
//! all-reduce. The adaptive norms (`norm1.linear`, `norm2.linear`: their output is chunked into
//! shift/scale/gate) and the patch/time embeddings stay replicated.

use crate::family::RuleTable;

const COLUMN: [Option<&str>; 2] = [Some("tp"), None];
const ROW: [Option<&str>; 2] = [None, Some("tp")];

/// `CogVideoXTransformer3DModel`.
pub const TRANSFORMER_RULES: RuleTable = &[
    (r"transformer_blocks\.\d+\.attn1\.to_[qkv]\.(weight|bias)", COLUMN),
    (r"transformer_blocks\.\d+\.ff\.net\.0\.proj\.(weight|bias)", COLUMN),
    (r"transformer_blocks\.\d+\.attn1\.to_out\.0\.(weight|bias)", ROW),
    (r"transformer_blocks\.\d+\.ff\.net\.2\.(weight|bias)", ROW),
];

/// The T5 v1.1 encoder.
pub const T5_RULES: RuleTable = crate::nn::t5_sharding::ENCODER_RULES;
