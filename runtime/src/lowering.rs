//! Graph -> passes -> StableHLO (verified by MLIR itself when built with the `mlir` feature): the
//! one lowering every command and every stage goes through, so what `dump-ir` shows, what
//! `compile` caches and what a stage runs are the same module.

use std::time::{Duration, Instant};
use vidlower_backends::{emit_module, EmitOptions, ShardingFormat};
use vidlower_ir::Graph;
use vidlower_passes::{DumpAfter, PassManager, PassReport};

/// A graph after its passes, and its module.
pub struct Lowered {
    pub graph: Graph,
    pub module: String,
    pub reports: Vec<PassReport>,
    pub emit_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("passes: {0}")]
    Passes(#[from] vidlower_passes::PassError),
    #[error("emitting StableHLO: {0}")]
    Emit(#[from] vidlower_backends::EmitError),
    #[error("MLIR rejected the emitted StableHLO: {0}")]
    Verify(String),
}

/// Runs `passes` (sending the dumps `dump` asks for to `sink`), emits the module with shardings
/// written in `format`, and verifies it.
pub fn lower(
    graph: Graph,
    mut passes: PassManager,
    format: ShardingFormat,
    dump: DumpAfter,
    sink: &mut dyn FnMut(&str, &str),
) -> Result<Lowered, LowerError> {
    passes.set_dump_after(dump)?;
    let run = passes.run_with_dumps(graph, sink)?;
    let start = Instant::now();
    let module = emit_module(&run.graph, &EmitOptions { sharding: format })?;
    #[cfg(feature = "mlir")]
    vidlower_backends::mlir_verify::verify_module(&module).map_err(|e| LowerError::Verify(e.to_string()))?;
    Ok(Lowered { graph: run.graph, module, reports: run.reports, emit_time: start.elapsed() })
}
