//! CogVideoX (`CogVideoXPipeline`: CogVideoX-2b, -5b, 1.5-5B): T5 text encoder,
//! `CogVideoXTransformer3DModel`, `AutoencoderKLCogVideoX`.

pub mod vae;
pub mod vae_config;
