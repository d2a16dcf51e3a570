//! The `vidlower` command line.

mod args;
mod commands;
mod lowering;
mod session;

use clap::{Parser, Subcommand};

/// Compile video diffusion models to fast, cached PJRT executables.
#[derive(Parser)]
#[command(name = "vidlower", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a graph to an executable in the on-disk cache (or find it there).
    Compile(commands::compile::CompileArgs),
    /// Print a graph's IR (after any pass) or its StableHLO module.
    DumpIr(commands::dump_ir::DumpIrArgs),
    /// Run a graph once on inputs from a safetensors file (or seeded random ones).
    Exec(commands::exec::ExecArgs),
    /// Time cold compile, cache-hit load and execution of a graph.
    Bench(commands::bench::BenchArgs),
    /// Show the PJRT plugins found, or install the CPU plugin.
    Plugin(commands::plugin::PluginArgs),
    /// List or clear the executable cache.
    Cache(commands::cache::CacheArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(a) => commands::compile::run(a),
        Command::DumpIr(a) => commands::dump_ir::run(a),
        Command::Exec(a) => commands::exec::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Plugin(a) => commands::plugin::run(a),
        Command::Cache(a) => commands::cache::run(a),
    };
    if let Err(e) = result {
        // One clear line (plus causes), never a backtrace.
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}
