//! Layers shared by the model families (no copy-paste between families: they live here).

pub mod attention;
pub mod byt5_tokenizer;
pub mod causal_conv3d;
pub mod chat_template;
pub mod channel_rms_norm;
pub mod linear;
pub mod norms;
pub mod qwen2_5_vl_text;
pub mod qwen2_tokenizer;
pub mod padding_mask;
pub mod rope;
pub mod sentencepiece;
pub mod t5_encoder;
pub mod t5_sharding;
pub mod timestep_embedding;
pub mod tokenizer;
pub mod vae_decoder;
