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
use vidlower_runtime::pjrt::plugin_log;
use vidlower_runtime::user_eprintln;

/// Compile video diffusion models to fast, cached PJRT executables.
#[derive(Parser)]
#[command(name = "vidlower", version, about, propagate_version = true)]
struct Cli {
    /// Show the PJRT plugins' own log lines as they come (also VIDLOWER_VERBOSE=1); without it
    /// they are kept aside and only a failed run shows their last lines.
    #[arg(short, long, global = true)]
    verbose: bool,
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
    /// Convert a checkpoint to the diffusers layout (CogVideoX SAT checkpoints and LoRAs).
    Convert(commands::convert::ConvertArgs),
}

fn main() {
    allocator::return_freed_memory();
    let cli = Cli::parse();
    if !(cli.verbose || env_flag("VIDLOWER_VERBOSE")) {
        plugin_log::lower_plugin_log_level();
        // Before any plugin is loaded. If fd 2 cannot be taken the plugins' lines pass through:
        // noise, not a reason to fail the run.
        let _ = plugin_log::capture();
    }
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
        Command::Convert(a) => commands::convert::run(a),
    };
    if let Err(e) = result {
        // A signal's stop is not an error: say where it stopped and how to resume.
        if let Some(stop) = e.downcast_ref::<interrupt::Interrupted>() {
            user_eprintln!("{stop}");
            std::process::exit(stop.exit_code());
        }
        // What the plugins logged may explain it; then one clear line (plus causes), never a
        // backtrace.
        plugin_log::print_tail(plugin_log::FAILURE_TAIL_LINES);
        user_eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            user_eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

/// An environment switch: set, and neither empty nor `0`.
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}
