//! HunyuanVideo-1.5 text-to-video (diffusers `HunyuanVideo15Pipeline`): Qwen2.5-VL and ByT5 text
//! encoders, `HunyuanVideo15Transformer3DModel`, `AutoencoderKLHunyuanVideo15`, flow-matching
//! Euler with the pipeline's sigmas, classifier-free guidance from the guider's config.

pub mod vae;
pub mod vae_config;
