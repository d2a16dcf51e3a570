//! `vidlower compile`: graph -> passes -> StableHLO -> executable in the cache, with timings. A
//! model component is built at the sizes the flags give (the model's defaults otherwise), as
//! the stages build it, so compiling ahead of time makes their compile a cache hit.

use crate::args::{GraphArgs, PassArgs, RuntimeArgs};
use crate::lowering::{lower, pipeline};
use crate::session::Session;
use anyhow::{Context, Result};
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
    /// Print each pass that ran, its time, and the op counts before and after it; with the
    /// standard pipeline also each attention op (kind, q/k types, mask) and the lowering it gets
    /// on this plugin's platform, with the reason.
    #[arg(long)]
    explain: bool,
}

pub fn run(args: CompileArgs) -> Result<()> {
    let selection = args.graph.select()?;
    for line in selection.describe()? {
        println!("{line}");
    }
    // The graphs (checking the size flags), then the plugin: the pipeline is made for its
    // platform (`--attention auto` follows it).
    let graphs = selection.graphs()?;
    let session = Session::open(&args.runtime, &args.passes.pipeline)?;
    println!("plugin: {}", session.describe_plugin());
    let target = session.target()?;
    for g in graphs {
        let (label, cache_label, rules) = (g.label.clone(), g.cache_label(), g.rules);
        let graph = g.graph;
        let title = if label == graph.name { String::new() } else { format!("{label} ") };
        println!(
            "graph {title}@{}: {} weights, {} inputs, {} ops",
            graph.name,
            graph.weights().count(),
            graph.inputs.len() - graph.weights().count(),
            graph.op_count()
        );
        let standard = if args.explain && args.passes.passes.is_none() { Some(args.passes.pipeline.options(target)?) } else { None };
        let plan = match &standard {
            Some(options) => {
                let built_in = rules.map(|t| vidlower_passes::sharding::ShardingRules::built_in("built-in rules", t));
                options.attention_plan(graph.clone(), built_in).with_context(|| label.clone())?
            }
            None => Vec::new(),
        };
        let start = Instant::now();
        let format = args.passes.pipeline.format();
        let lowered = lower(graph, pipeline(&args.passes, rules, target)?, format, DumpAfter::None, &mut |_, _| {})
            .with_context(|| label.clone())?;
        let names: Vec<&str> = lowered.reports.iter().map(|r| r.name).collect();
        println!("passes: {} ({})", names.join(", "), format_duration(start.elapsed() - lowered.emit_time));
        if let Some(options) = &standard {
            println!("  standard pipeline: {}", options.describe());
            println!("  attention ops: {}", plan.len());
            for (i, p) in plan.iter().enumerate() {
                println!("    {}. {p}", i + 1);
            }
        }
        if args.explain {
            for r in &lowered.reports {
                println!("  {r}");
            }
        }
        println!("stablehlo: {} bytes, emitted in {}", lowered.module.len(), format_duration(lowered.emit_time));

        let spinner = crate::commands::spinner("compiling");
        let compiled =
            compile_cached(&session.client, session.cache.as_ref(), &lowered.module, &CompileOptions::for_graph(&lowered.graph, format), &cache_label);
        spinner.finish_and_clear();
        let compiled = compiled.with_context(|| label.clone())?;
        for w in &compiled.warnings {
            vidlower_runtime::user_eprintln!("warning: {w}");
        }
        println!("executable: {}", compiled.describe());
        if let Some(cache) = &session.cache {
            println!("cache: {}", cache.entry_path(&compiled.key).display());
        }
    }
    Ok(())
}
