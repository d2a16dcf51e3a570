//! Wan's text encoder: transformers' `UMT5EncoderModel`, built by the shared T5 encoder
//! ([`crate::nn::t5_encoder`]) with a relative attention bias per layer and the attention mask.

use super::config::Umt5Config;
use crate::nn::t5_encoder::{t5_encoder, T5EncoderOptions, T5Variant};
use vidlower_ir::{DType, Graph, Result};

pub use crate::nn::t5_encoder::{relative_position_bucket, relative_position_buckets, weight_aliases, EMBEDDING_WEIGHT};

/// The UMT5 encoder on `input_ids` (i64 [B, L]) and `attention_mask` (i64 [B, L], 1 for a real
/// token, 0 for padding), giving `last_hidden_state` [B, L, d_model] in `dtype`.
///
/// `dtype` is the dtype the model is loaded in (`from_pretrained(torch_dtype=...)`): weights in
/// it, except `wo` in f32 for f16, as transformers does.
pub fn umt5_encoder(cfg: &Umt5Config, batch: i64, seq_len: i64, dtype: DType) -> Result<Graph> {
    let opts = T5EncoderOptions { variant: T5Variant::Umt5, ..T5EncoderOptions::new(cfg, dtype) };
    t5_encoder(cfg, batch, seq_len, &opts)
}
