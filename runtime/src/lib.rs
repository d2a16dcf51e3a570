//! vidlower's thin runtime: our own PJRT C API binding, plugin discovery, and an on-disk executable cache.

pub mod cache;
pub mod pjrt;
pub mod plugin;
pub mod tensor;

pub use vidlower_ir as ir;
