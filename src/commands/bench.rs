//! `vidlower bench`: cold compile vs cache-hit load vs execute of a graph on one plugin, as
//! medians over repeats, with the ratios between them (figures to compare plugins and changes).
//! On a model component: one forward (the VAE decoder: a whole decode) with the model's weights
//! and seeded inputs at the sizes the flags give, timed as the median of `--runs` after warm-up.

use crate::args::{GraphArgs, ModelSelection, PassArgs, RuntimeArgs, Selection};
use crate::components::Runner;
use crate::lowering::{lower, pipeline};
use crate::session::Session;
use super::exec::random_tensor;
use anyhow::{bail, Result};
use clap::Args;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use vidlower_frontends::random_weights::{random_input, random_weight};
use vidlower_ir::Graph;
use vidlower_passes::DumpAfter;
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::program::{ParamKind, Program, Signature};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::timing::format_duration;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    graph: GraphArgs,
    #[command(flatten)]
    passes: PassArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Compiles and loads of the example graph (or IR file) to time (default 5; the median is
    /// reported). A model component is compiled once, through the cache.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: Option<u32>,
    /// Executions to time, after the warm-up (default 50; 5 for a model component).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// Untimed executions first.
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Time the component's weight upload instead of a forward: a plain read of its files, the
    /// one-at-a-time upload and the fast one, in GB/s (medians of --repeats, default 3).
    #[arg(long)]
    upload: bool,
    /// With --upload: first write deterministic random weights stored in this dtype for the
    /// component (into a model dir that holds only configs), and delete them afterwards.
    #[arg(long, requires = "upload", value_name = "DTYPE", value_parser = crate::args::parse_dtype)]
    random_weights: Option<vidlower_ir::DType>,
    /// VAE tiling of the `vae_decoder` (the flags stage 3 takes).
    #[command(flatten)]
    tiling: crate::stage_args::TileArgs,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(mut args: BenchArgs) -> Result<()> {
    // --random-weights writes the weights a --lora is checked against: attach it after that.
    let lora_after_write = match args.random_weights {
        Some(_) => std::mem::take(&mut args.graph.lora.lora),
        None => Vec::new(),
    };
    match args.graph.select()? {
        Selection::Graph(_) if args.upload => bail!("--upload times a model component's weights: give --model or --model-dir with --component"),
        Selection::Graph(graph) => bench_graph(graph, &args),
        Selection::Model(mut m) if args.upload => {
            let session = Session::open(&args.runtime, &args.passes.pipeline)?;
            super::bench_upload::run(&mut m, args.random_weights, &lora_after_write, args.repeats.unwrap_or(3), &session)
        }
        Selection::Model(m) => bench_component(&m, &args),
    }
}

fn bench_graph(graph: Graph, args: &BenchArgs) -> Result<()> {
    let (repeats, runs) = (args.repeats.unwrap_or(5), args.runs.unwrap_or(50));
    let signature = Signature::of(&graph);
    let format = args.passes.pipeline.format();
    let session = Session::open(&args.runtime, &args.passes.pipeline)?;
    let lowered = lower(graph, pipeline(&args.passes, None, session.target()?)?, format, DumpAfter::None, &mut |_, _| {})?;
    println!("plugin: {}", session.describe_plugin());
    println!("graph @{}: {} ops after passes, StableHLO {} bytes", lowered.graph.name, lowered.graph.op_count(), lowered.module.len());

    let options = CompileOptions::for_graph(&lowered.graph, format);
    let bar = indicatif::ProgressBar::with_draw_target(Some(u64::from(repeats) * 2 + u64::from(runs)), vidlower_runtime::pjrt::plugin_log::progress_target());
    let mut compiles = Vec::new();
    let mut executable = None;
    for _ in 0..repeats {
        let start = Instant::now();
        executable = Some(session.client.compile(&lowered.module, &options)?);
        compiles.push(start.elapsed());
        bar.inc(1);
    }
    let bytes = executable.as_ref().expect("repeats >= 1").serialize()?;
    let mut loads = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        executable = Some(session.client.deserialize_executable(&bytes)?);
        loads.push(start.elapsed());
        bar.inc(1);
    }
    let mut program = Program::new(executable.expect("repeats >= 1"), Signature::of(&lowered.graph), &session.client)?;
    program.upload_weights(&mut |name, ty| Some(random_tensor(random_weight(0, name, ty), ty)))?;
    let inputs: HashMap<String, HostTensor> = signature
        .params
        .iter()
        .filter(|(_, k, _)| *k == ParamKind::Input)
        .map(|(n, _, ty)| (n.clone(), random_tensor(random_input(0, n, ty), ty)))
        .collect();
    for _ in 0..args.warmup {
        program.run(&inputs)?;
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        program.run(&inputs)?;
        times.push(start.elapsed());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (c, l, r) = (median(compiles), median(loads), median(times));
    println!("cold compile   {:>10}  (median of {repeats})", format_duration(c));
    println!("cache load     {:>10}  (median of {repeats}; {} serialized)", format_duration(l), bytes.len());
    println!("execute        {:>10}  (median of {runs}, incl. input upload and output download)", format_duration(r));
    println!("cold compile / cache load = {:.1}x", c.as_secs_f64() / l.as_secs_f64());
    Ok(())
}

/// One model component: compiled once (through the cache), its weights from the model, seeded
/// inputs; the median of `--runs` forwards after `--warmup`.
fn bench_component(m: &ModelSelection, args: &BenchArgs) -> Result<()> {
    let c = m.single("bench")?;
    if args.repeats.is_some() {
        bail!("--repeats times cold compiles of the example graph; a component is compiled once (through the cache; --no-cache for a cold compile)");
    }
    let runs = args.runs.unwrap_or(5);
    let weights = m.weights(c)?;
    let dtype = m.dtype(&weights);
    let sizes = m.sizes(c)?;
    println!("model: {} ({}, {})", m.model.spec.id(), m.model.family().name(), m.model.dir().display());
    println!("{}: {dtype}, {}", c.name(), m.model.describe_sizes(c.component(), &sizes));
    let session = Session::open(&args.runtime, &args.passes.pipeline)?;
    println!("plugin: {}", session.describe_plugin());
    let mut runner = Runner::prepare(&session, &m.model, &weights, c, &sizes, dtype, &args.passes, args.tiling.knobs())?;
    let inputs = m.model.random_inputs(c.component(), &sizes, dtype, 0)?;
    let bar = indicatif::ProgressBar::with_draw_target(Some(u64::from(args.warmup + runs)), vidlower_runtime::pjrt::plugin_log::progress_target());
    let mut warmup = Vec::new();
    for _ in 0..args.warmup {
        let start = Instant::now();
        runner.run(&inputs)?;
        warmup.push(start.elapsed());
        bar.inc(1);
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        runner.run(&inputs)?;
        times.push(start.elapsed());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let list = |v: &[Duration]| v.iter().map(|d| format_duration(*d)).collect::<Vec<_>>().join(", ");
    if !warmup.is_empty() {
        println!("warm-up        {}", list(&warmup));
    }
    println!("runs           {}", list(&times));
    let (lo, hi) = (*times.iter().min().expect("runs >= 1"), *times.iter().max().expect("runs >= 1"));
    let what = if matches!(runner, Runner::Vae(_)) { "decode" } else { "forward" };
    println!(
        "{what:<14} {:>10}  (median of {runs}; min {}, max {}; incl. input upload and output download)",
        format_duration(median(times)),
        format_duration(lo),
        format_duration(hi)
    );
    Ok(())
}
