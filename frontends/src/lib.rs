//! vidlower's model frontends: model definitions written in the IR builder API, one folder per
//! family (`wan/`, `cogvideox/`), shared layers in `nn/`, the family seam (`family`) and registry,
//! and the built-in `example` graph.

pub mod cogvideox;
pub mod config;
pub mod example;
pub mod exec_inputs;
pub mod family;
pub mod hunyuanvideo15;
pub mod nn;
pub mod random_weights;
pub mod registry;
pub mod wan;
