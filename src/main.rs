//! The `vidlower` command line.

mod allocator;
mod args;
mod commands;
mod components;
mod interrupt;
mod lowering;
mod memory_check;
mod pipeline_args;
mod session;
mod stage_args;

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
    /// Prompt -> video: the three stages in one process.
    Generate(commands::generate::GenerateArgs),
    /// Stage 1: prompt -> stage1_embeddings.safetensors + generation_config.json.
    Stage1(commands::stage1::Stage1Args),
    /// Stage 2: embeddings + noise -> denoising loop -> stage2_latents.safetensors.
    Stage2(commands::stage2::Stage2Args),
    /// Stage 3: latents -> VAE decode -> output_video.mp4.
    Stage3(commands::stage3::Stage3Args),
    /// The memory plan of a run (generate's flags): per stage and device, before any work.
    Plan(commands::plan::PlanArgs),
    /// The model families and built-in presets, with their default shapes.
    Models,
    /// Compile a graph (the example block, a model component, an IR file) into the executable cache.
    Compile(commands::compile::CompileArgs),
    /// Print a graph's IR (after any pass) or its StableHLO module (any model component too).
    DumpIr(commands::dump_ir::DumpIrArgs),
    /// Run a graph or one model component on inputs from a safetensors file.
    Exec(commands::exec::ExecArgs),
    /// Time a graph's compile, cache load and execution, or a model component's forward.
    Bench(commands::bench::BenchArgs),
    /// Show the PJRT plugins found, or install the CPU plugin.
    Plugin(commands::plugin::PluginArgs),
    /// List or clear the executable cache.
    Cache(commands::cache::CacheArgs),
}

fn main() {
    allocator::return_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => commands::generate::run(a),
        Command::Stage1(a) => commands::stage1::run(a),
        Command::Stage2(a) => commands::stage2::run(a),
        Command::Stage3(a) => commands::stage3::run(a),
        Command::Plan(a) => commands::plan::run(a),
        Command::Models => commands::models::run(),
        Command::Compile(a) => commands::compile::run(a),
        Command::DumpIr(a) => commands::dump_ir::run(a),
        Command::Exec(a) => commands::exec::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Plugin(a) => commands::plugin::run(a),
        Command::Cache(a) => commands::cache::run(a),
    };
    if let Err(e) = result {
        // A signal's stop is not an error: say where it stopped and how to resume.
        if let Some(stop) = e.downcast_ref::<interrupt::Interrupted>() {
            eprintln!("{stop}");
            std::process::exit(stop.exit_code());
        }
        // One clear line (plus causes), never a backtrace.
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}
