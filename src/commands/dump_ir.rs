//! `vidlower dump-ir`: the IR after any pass (or before all of them), or the StableHLO module.
//! One graph prints as itself (it parses back with `--ir`); several (a model's `vae_decoder`
//! is two step graphs, and no `--component` means every component) each under a
//! `// ===== label =====` line.

use crate::args::{GraphArgs, PassArgs};
use crate::lowering::{lower, pipeline};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use vidlower_passes::{DumpAfter, Target};

#[derive(Args)]
pub struct DumpIrArgs {
    #[command(flatten)]
    graph: GraphArgs,
    #[command(flatten)]
    passes: PassArgs,
    /// Print the IR after this pass, or after every pass with `all` (default: before any pass).
    #[arg(long, value_name = "PASS|all")]
    after: Option<String>,
    /// The platform to lower for (dump-ir opens no plugin): cpu, cuda or tpu; `--attention auto`
    /// follows it.
    #[arg(long, value_name = "cpu|cuda|tpu", default_value = "cpu", value_parser = parse_target)]
    target: Target,
    /// What to print: the IR text, or the StableHLO module the backend emits after all passes.
    #[arg(long, value_enum, default_value_t = Format::Ir)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Ir,
    Stablehlo,
}

pub fn run(args: DumpIrArgs) -> Result<()> {
    if let (Format::Stablehlo, Some(_)) = (args.format, &args.after) {
        bail!("--after applies to --format ir; the StableHLO module is emitted after the whole pipeline")
    }
    let graphs = args.graph.select()?.graphs()?;
    let several = graphs.len() > 1;
    for g in graphs {
        if several {
            println!("// ===== {} =====", g.label);
        }
        let passes = pipeline(&args.passes, g.rules, args.target)?;
        let format = args.passes.pipeline.format();
        let graph = g.graph;
        match (args.format, args.after.as_deref()) {
            (Format::Ir, None) => print!("{}", vidlower_ir::text::print(&graph)),
            (Format::Ir, Some(after)) => {
                let dump = if after == "all" { DumpAfter::All } else { DumpAfter::Pass(after.to_string()) };
                lower(graph, passes, format, dump, &mut |pass, text| {
                    println!("// ----- IR after {pass} -----");
                    print!("{text}");
                })?;
            }
            (Format::Stablehlo, _) => print!("{}", lower(graph, passes, format, DumpAfter::None, &mut |_, _| {})?.module),
        }
    }
    Ok(())
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse()
}
