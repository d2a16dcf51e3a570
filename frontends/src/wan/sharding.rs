//! The seeds' tensor-parallel rules for Wan 2.1 (SEEDS.md, "Sharding rules") as data, against
//! vidlower's weight names (diffusers' state-dict names, torch `[out, in]` layouts): column-parallel
//! layers split their output features on `tp`, row-parallel ones their input features.

const COLUMN: [Option<&str>; 2] = [Some("tp"), None];
const ROW: [Option<&str>; 2] = [None, Some("tp")];

/// `WanTransformer3DModel`.
pub const TRANSFORMER_RULES: &[(&str, [Option<&str>; 2])] = &[
    (r"condition_embedder\.\w+\.linear_1\.(weight|bias)", COLUMN),
    (r"blocks\.\d+\.attn[12]\.to_[qkv]\.(weight|bias)", COLUMN),
    (r"blocks\.\d+\.ffn\.net\.0\.proj\.(weight|bias)", COLUMN),
    (r"condition_embedder\.\w+\.linear_2\.(weight|bias)", ROW),
    (r"blocks\.\d+\.attn[12]\.to_out\.0\.(weight|bias)", ROW),
    (r"blocks\.\d+\.ffn\.net\.2\.(weight|bias)", ROW),
];

/// `UMT5EncoderModel`.
pub const UMT5_RULES: &[(&str, [Option<&str>; 2])] = &[
    (r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.[qkv]\.weight", COLUMN),
    (r"encoder\.block\.\d+\.layer\.1\.DenseReluDense\.wi(_0|_1)?\.weight", COLUMN),
    (r"shared\.weight", COLUMN),
    (r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.o\.weight", ROW),
    (r"encoder\.block\.\d+\.layer\.1\.DenseReluDense\.wo\.weight", ROW),
];
