//! Tensor-parallel rules for transformers' T5-style encoders (`T5EncoderModel`, `UMT5EncoderModel`,
//! ByT5), as data: q, k, v, `wi_0`, `wi_1` (and a non-gated `wi`) and the token embedding
//! `shared` (vocabulary rows) split on `tp` along dim 0; `o` and `wo` along dim 1.

use crate::family::RuleTable;

const COLUMN: [Option<&str>; 2] = [Some("tp"), None];
const ROW: [Option<&str>; 2] = [None, Some("tp")];

pub const ENCODER_RULES: RuleTable = &[
    (r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.[qkv]\.weight", COLUMN),
    (r"encoder\.block\.\d+\.layer\.1\.DenseReluDense\.wi(_0|_1)?\.weight", COLUMN),
    (r"shared\.weight", COLUMN),
    (r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.o\.weight", ROW),
    (r"encoder\.block\.\d+\.layer\.1\.DenseReluDense\.wo\.weight", ROW),
];
