//! StableHLO emission. Ops are written in MLIR's generic form (`"stablehlo.add"(%a, %b) : (...) -> ...`):
//! one uniform syntax for every op, which the CPU and CUDA plugins and MLIR's parser all accept.

mod attrs;
mod emit;
mod literal;

pub use emit::{emit_module, EmitError, EmitOptions, ShardingFormat, MESH_SYMBOL};
