//! The three stages of a text-to-video run, each runnable alone with files between them:
//! stage 1 prompt -> embeddings, stage 2 embeddings + noise -> latents, stage 3 latents -> mp4.

pub mod checkpoint;
pub mod compiled;
pub mod generation_config;
pub mod memory_plan;
pub mod model;
pub mod noise;
pub mod preflight;
pub mod preset;
pub mod request_bounds;
pub mod runner;
pub mod stage1;
pub mod stage2;
pub mod stage3;
pub mod vae_decode;
