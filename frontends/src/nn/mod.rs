//! Layers shared by the model families (no copy-paste between families: they live here).

pub mod causal_conv3d;
pub mod linear;
pub mod rope;
pub mod timestep_embedding;
