//! CogVideoX (CogVideoX-2b, CogVideoX-5b, CogVideoX1.5-5B; diffusers layout).

pub mod config;
pub mod embeddings;
pub mod transformer;
