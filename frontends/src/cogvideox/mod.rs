//! CogVideoX (`CogVideoXPipeline`: CogVideoX-2b, CogVideoX-5b, CogVideoX1.5-5B; diffusers layout):
//! T5 v1.1 text encoder (shared: `nn::t5_encoder`) and its tokenizer, `CogVideoXTransformer3DModel`,
//! `AutoencoderKLCogVideoX`'s decoder, and the family seam's implementation.

pub mod config;
pub mod embeddings;
pub mod exec_inputs;
pub mod family;
pub mod sharding;
pub mod tiny;
pub mod tokenizer;
pub mod transformer;
pub mod vae;
pub mod vae_config;
