//! HunyuanVideo-1.5 text-to-video (diffusers `HunyuanVideo15Pipeline`): Qwen2.5-VL and ByT5 text
//! encoders, `HunyuanVideo15Transformer3DModel`, `AutoencoderKLHunyuanVideo15`, flow-matching
//! Euler with the pipeline's sigmas, classifier-free guidance from the guider's config.

pub mod exec_inputs;
pub mod family;
pub mod guider;
pub mod prompt;
pub mod rope;
pub mod sharding;
pub mod tiny;
pub mod tiny_tokenizer;
pub mod token_refiner;
pub mod transformer;
pub mod transformer_config;
pub mod vae;
pub mod vae_config;
