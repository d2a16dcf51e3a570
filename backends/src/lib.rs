//! vidlower's backends: the IR lowered to StableHLO module text, which every PJRT plugin compiles.
//! With the `mlir` feature, emitted modules are parsed and verified by MLIR itself (melior).

#[cfg(feature = "mlir")]
pub mod mlir_verify;
pub mod stablehlo;

pub use stablehlo::{emit_module, EmitError, EmitOptions, ShardingFormat, MESH_SYMBOL};
