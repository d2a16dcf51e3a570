//! `vidlower compile`: graph -> passes -> StableHLO -> executable in the cache, with timings.

use crate::args::{GraphArgs, PassArgs, RuntimeArgs};
use crate::lowering::{lower, pipeline};
use crate::session::Session;
use anyhow::Result;
use clap::Args;
use std::time::Instant;
use vidlower_passes::DumpAfter;
use vidlower_runtime::compile::compile_cached;
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::timing::format_duration;

#[derive(Args)]
pub struct CompileArgs {
    #[command(flatten)]
    graph: GraphArgs,
    #[command(flatten)]
    passes: PassArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Print each pass that ran, its time, and the op counts before and after it.
    #[arg(long)]
    explain: bool,
}

pub fn run(args: CompileArgs) -> Result<()> {
    let graph = args.graph.graph()?;
    println!(
        "graph @{}: {} weights, {} inputs, {} ops",
        graph.name,
        graph.weights().count(),
        graph.inputs.len() - graph.weights().count(),
        graph.op_count()
    );
    let start = Instant::now();
    let lowered = lower(graph, pipeline(&args.passes)?, DumpAfter::None, &mut |_, _| {})?;
    let names: Vec<&str> = lowered.reports.iter().map(|r| r.name).collect();
    println!("passes: {} ({})", names.join(", "), format_duration(start.elapsed() - lowered.emit_time));
    if args.explain {
        for r in &lowered.reports {
            println!("  {r}");
        }
    }
    println!("stablehlo: {} bytes, emitted in {}", lowered.module.len(), format_duration(lowered.emit_time));

    let session = Session::open(&args.runtime, 1)?;
    println!("plugin: {}", session.describe_plugin());
    let spinner = crate::commands::spinner("compiling");
    let compiled = compile_cached(
        &session.client,
        session.cache.as_ref(),
        &lowered.module,
        &CompileOptions::single_device(),
        &lowered.graph.name,
    )?;
    spinner.finish_and_clear();
    for w in &compiled.warnings {
        eprintln!("warning: {w}");
    }
    println!("executable: {}", compiled.describe());
    if let Some(cache) = &session.cache {
        println!("cache: {}", cache.entry_path(&compiled.key).display());
    }
    Ok(())
}
