//! Wan 2.1 (`WanPipeline`): UMT5 text encoder, `WanTransformer3DModel`, `AutoencoderKLWan`.

pub mod config;
pub mod exec_inputs;
pub mod family;
pub mod sharding;
pub mod text_encoder;
pub mod tiny;
pub mod tokenizer;
pub mod transformer;
pub mod vae;
