//! vidlower's backends: the IR lowered to StableHLO module text, which every PJRT plugin compiles.
//! With the `mlir` feature, emitted modules are parsed and verified by MLIR itself (melior).

pub mod stablehlo;

pub use stablehlo::{emit_module, EmitError, EmitOptions};
