//! vidlower's thin runtime: our own PJRT C API binding, plugin discovery, an on-disk executable
//! cache, and programs (an executable with its graph's signature).

pub mod atomic_file;
mod avx512_dispatch;
pub mod cache;
pub mod cpu_kernels;
pub mod compile;
pub mod float_convert;
pub mod lora;
pub mod lora_merge;
pub mod lowering;
pub mod memory_plan;
pub mod pjrt;
pub mod plugin;
pub mod program;
pub mod rank_update;
pub mod safetensors_header;
pub mod safetensors_io;
pub mod scheduler;
pub mod shard;
pub mod stages;
pub mod tensor;
pub mod timing;
pub mod vae_tiling;
pub mod video;
pub mod weight_upload;
pub mod weights;

pub use vidlower_ir as ir;
