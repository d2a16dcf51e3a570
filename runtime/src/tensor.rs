//! Host tensors live in the IR crate (families build inputs and read outputs with them); the
//! runtime re-exports them under their old path.

pub use vidlower_ir::host_tensor::*;
