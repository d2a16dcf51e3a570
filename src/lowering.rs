//! Graph -> passes -> StableHLO, shared by `compile`, `dump-ir` and `exec`.

use crate::args::PassArgs;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use vidlower_backends::{emit_module, EmitOptions};
use vidlower_ir::Graph;
use vidlower_passes::{default_pipeline, DumpAfter, PassManager, PassReport};

/// A graph after its passes, and its module.
pub struct Lowered {
    pub graph: Graph,
    pub module: String,
    pub reports: Vec<PassReport>,
    pub emit_time: Duration,
}

/// The pass pipeline `args` selects.
pub fn pipeline(args: &PassArgs) -> Result<PassManager> {
    match &args.passes {
        None => Ok(default_pipeline()),
        Some(names) if names.len() == 1 && names[0] == "none" => Ok(PassManager::new()),
        Some(names) => Ok(PassManager::from_names(names).context("--passes")?),
    }
}

/// Runs the passes (sending dumps to `sink`) and emits the module.
pub fn lower(graph: Graph, mut passes: PassManager, dump: DumpAfter, sink: &mut dyn FnMut(&str, &str)) -> Result<Lowered> {
    passes.set_dump_after(dump).context("--after")?;
    let run = passes.run_with_dumps(graph, sink)?;
    let start = Instant::now();
    let module = emit_module(&run.graph, &EmitOptions::default())?;
    #[cfg(feature = "mlir")]
    vidlower_backends::mlir_verify::verify_module(&module).context("MLIR rejected the emitted StableHLO")?;
    Ok(Lowered { graph: run.graph, module, reports: run.reports, emit_time: start.elapsed() })
}
