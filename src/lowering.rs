//! Graph -> passes -> StableHLO, shared by `compile`, `dump-ir` and `exec`.

use crate::args::PassArgs;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use vidlower_backends::{emit_module, EmitOptions, ShardingFormat};
use vidlower_ir::Graph;
use vidlower_passes::{DumpAfter, PassManager, PassReport};
use vidlower_runtime::stages::compiled::wan_built_in_rules;

/// A graph after its passes, and its module.
pub struct Lowered {
    pub graph: Graph,
    pub module: String,
    pub reports: Vec<PassReport>,
    pub emit_time: Duration,
}

/// The pass pipeline `args` selects: the standard one shaped by the pipeline flags, or the
/// `--passes` list (which the pipeline flags would not reach, so they are refused next to it).
/// `component` is a Wan component's folder (`transformer`, `text_encoder`), whose built-in
/// sharding rules the standard pipeline takes when a mesh is given without `--rules`.
pub fn pipeline(args: &PassArgs, component: Option<&str>) -> Result<PassManager> {
    if let (Some(_), Some(flag)) = (&args.passes, args.pipeline.given()) {
        anyhow::bail!("{flag} shapes the standard pipeline, which --passes replaces; name the passes instead")
    }
    match &args.passes {
        None => Ok(args.pipeline.options()?.pipeline_for(component.and_then(wan_built_in_rules))),
        Some(names) if names.len() == 1 && names[0] == "none" => Ok(PassManager::new()),
        Some(names) => Ok(PassManager::from_names(names).context("--passes")?),
    }
}

/// Runs the passes (sending dumps to `sink`) and emits the module, shardings written in `format`.
pub fn lower(
    graph: Graph,
    mut passes: PassManager,
    format: ShardingFormat,
    dump: DumpAfter,
    sink: &mut dyn FnMut(&str, &str),
) -> Result<Lowered> {
    passes.set_dump_after(dump).context("--after")?;
    let run = passes.run_with_dumps(graph, sink)?;
    let start = Instant::now();
    let module = emit_module(&run.graph, &EmitOptions { sharding: format })?;
    #[cfg(feature = "mlir")]
    vidlower_backends::mlir_verify::verify_module(&module).context("MLIR rejected the emitted StableHLO")?;
    Ok(Lowered { graph: run.graph, module, reports: run.reports, emit_time: start.elapsed() })
}
