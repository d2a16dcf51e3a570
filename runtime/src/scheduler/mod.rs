//! Diffusion schedulers, host-side (f64 math on latents between executable calls).

pub mod unipc;
