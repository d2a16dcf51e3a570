//! CogVideoX (`CogVideoXPipeline`: CogVideoX-2b, CogVideoX-5b, CogVideoX1.5-5B; diffusers layout):
//! T5 v1.1 text encoder (shared: `nn::t5_encoder`) and its tokenizer, `CogVideoXTransformer3DModel`,
//! `AutoencoderKLCogVideoX`'s decoder, the family seam's implementation, and the map from SAT
//! checkpoints (the CogVideo repository's training format) to diffusers' names.

pub mod config;
pub mod embeddings;
pub mod exec_inputs;
pub mod family;
pub mod sat_convert;
pub mod sat_keys;
pub mod sharding;
pub mod tiny;
pub mod tokenizer;
pub mod transformer;
pub mod vae;
pub mod vae_config;
