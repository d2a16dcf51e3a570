//! Wan 2.1 (`WanPipeline`): UMT5 text encoder, `WanTransformer3DModel`, `AutoencoderKLWan`.

pub mod config;
pub mod text_encoder;
pub mod tiny;
pub mod sharding;
pub mod tokenizer;
pub mod transformer;
pub mod vae;
