//! `vidlower exec`: compile (or load from the cache) and run a graph once, with weights and
//! inputs from safetensors files or seeded random values; writes the outputs as safetensors.
//! A model component takes its weights from the model directory and its inputs, named as the
//! diffusers forward() arguments, from `--inputs`; the graph is built for their shapes.

use crate::args::{GraphArgs, ModelSelection, PassArgs, RuntimeArgs, Selection};
use crate::components::ComponentArg;
use crate::components::Runner;
use crate::lowering::{lower, pipeline};
use crate::session::Session;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;
use vidlower_frontends::random_weights::{random_input, random_weight};
use vidlower_ir::{Graph, TensorType};
use vidlower_passes::DumpAfter;
use vidlower_runtime::compile::compile_cached;
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::program::{ParamKind, Program, Signature};
use vidlower_runtime::safetensors_io;
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::timing::format_duration;

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    graph: GraphArgs,
    #[command(flatten)]
    passes: PassArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Inputs by name (safetensors). Example graph or IR file: missing ones are drawn from
    /// --seed. Model component (required): input_ids, attention_mask (int64) for the
    /// text_encoder; hidden_states, timestep (int64 or float), encoder_hidden_states for the
    /// transformer; z (what the pipeline passes to vae.decode) for the vae_decoder. Other
    /// tensors in the file are ignored.
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// Weights by name (safetensors); without it, deterministic random weights from --seed.
    /// (A model component's weights come from the model directory.)
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Where to write the outputs (safetensors): `sample` (transformer, vae_decoder) or
    /// `last_hidden_state` (text_encoder) for a model component.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seed of random weights and inputs (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many times and report the mean time of the runs after the first.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// VAE tiling of the `vae_decoder` (the flags stage 3 takes).
    #[command(flatten)]
    tiling: crate::stage_args::TileArgs,
}

pub fn run(args: ExecArgs) -> Result<()> {
    match args.graph.select()? {
        Selection::Graph(graph) => run_graph(graph, &args),
        Selection::Model(m) => run_component(&m, &args),
    }
}

/// The example graph or an IR file, with weights and inputs from files or a seed.
fn run_graph(graph: Graph, args: &ExecArgs) -> Result<()> {
    let seed = args.seed.unwrap_or(0);
    let signature = Signature::of(&graph);
    let format = args.passes.pipeline.format();
    let session = Session::open(&args.runtime, &args.passes.pipeline)?;
    let lowered = lower(graph, pipeline(&args.passes, None, session.target()?)?, format, DumpAfter::None, &mut |_, _| {})?;
    println!("plugin: {}", session.describe_plugin());

    let spinner = crate::commands::spinner("compiling");
    let compiled =
        compile_cached(&session.client, session.cache.as_ref(), &lowered.module, &CompileOptions::for_graph(&lowered.graph, format), &lowered.graph.name)?;
    spinner.finish_and_clear();
    for w in &compiled.warnings {
        vidlower_runtime::user_eprintln!("warning: {w}");
    }
    println!("executable: {}", compiled.describe());

    let upload_start = Instant::now();
    // The lowered graph's signature carries the shardings a mesh gave the parameters.
    let mut program = Program::new(compiled.executable, Signature::of(&lowered.graph), &session.client)?;
    let files_weights = match &args.weights {
        Some(p) => Some(safetensors_io::load(p)?),
        None => None,
    };
    program
        .upload_weights(&mut |name, ty| match &files_weights {
            Some(w) => w.get(name).cloned(),
            None => Some(random_tensor(random_weight(seed, name, ty), ty)),
        })
        .with_context(|| match &args.weights {
            Some(p) => format!("binding weights from {}", p.display()),
            None => "binding random weights".into(),
        })?;
    println!("weights: uploaded in {}", format_duration(upload_start.elapsed()));

    let given: BTreeMap<String, HostTensor> = match &args.inputs {
        Some(p) => safetensors_io::load(p)?,
        None => BTreeMap::new(),
    };
    let mut inputs = HashMap::new();
    for (name, kind, ty) in &signature.params {
        if *kind == ParamKind::Input {
            let t = match given.get(name) {
                Some(t) => t.clone(),
                None => random_tensor(random_input(seed, name, ty), ty),
            };
            inputs.insert(name.clone(), t);
        }
    }

    let context = match &args.inputs {
        Some(p) => format!("running with inputs from {}", p.display()),
        None => "running".into(),
    };
    let outputs = run_timed(args.runs, || program.run(&inputs).with_context(|| context.clone()))?;
    write_outputs(&outputs, args.output.as_deref())
}

/// One model component on the inputs of `--inputs`, with the model's weights.
fn run_component(m: &ModelSelection, args: &ExecArgs) -> Result<()> {
    let c = m.single("exec")?;
    if let Some(flag) = m.size_flags_given() {
        bail!("{flag} does not apply to exec of a model component: the graph is built for the shapes in --inputs");
    }
    if args.weights.is_some() || args.seed.is_some() {
        bail!("--weights and --seed apply to the example graph; a model component's weights come from {}", m.model.dir().display());
    }
    let Some(path) = &args.inputs else {
        bail!("exec of a model component needs --inputs FILE (tensors named as diffusers' forward() arguments; see --help)")
    };
    let weights = m.weights(c)?;
    let dtype = m.dtype(&weights);
    let file = safetensors_io::load(path)?;
    if matches!(c, ComponentArg::VaeDecoderFirst | ComponentArg::VaeDecoderNext) {
        bail!("exec runs the whole decoder (every latent frame): use --component vae_decoder");
    }
    let (sizes, inputs, ignored) = m.model.checked_inputs(c.component(), file, dtype, &path.display().to_string())?;
    println!("model: {} ({}, {})", m.model.spec.id(), m.model.family().name(), m.model.dir().display());
    println!("{}: {dtype}, {}", c.name(), m.model.describe_sizes(c.component(), &sizes));
    if !ignored.is_empty() {
        println!("inputs: ignoring {} (not inputs of the {})", ignored.join(", "), c.name());
    }
    let session = Session::open(&args.runtime, &args.passes.pipeline)?;
    println!("plugin: {}", session.describe_plugin());
    let mut runner = Runner::prepare(&session, &m.model, &weights, c, &sizes, dtype, &args.passes, args.tiling.knobs())?;
    let outputs = run_timed(args.runs, || runner.run(&inputs).with_context(|| format!("running the {} on {}", c.name(), path.display())))?;
    write_outputs(&outputs, args.output.as_deref())
}

/// Runs `runs` times; prints the first run's time and the mean of the rest; returns the last
/// outputs.
fn run_timed(runs: u32, mut run: impl FnMut() -> Result<Vec<(String, HostTensor)>>) -> Result<Vec<(String, HostTensor)>> {
    let mut outputs = Vec::new();
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        outputs = run()?;
        times.push(start.elapsed());
    }
    let first = format_duration(times[0]);
    if times.len() > 1 {
        let rest = times[1..].iter().sum::<std::time::Duration>() / (times.len() - 1) as u32;
        println!("run: first {first}, then {} per run (mean of {})", format_duration(rest), times.len() - 1);
    } else {
        println!("run: {first}");
    }
    Ok(outputs)
}

/// Prints each output's type and range, and writes them all to `path` (atomically).
fn write_outputs(outputs: &[(String, HostTensor)], path: Option<&std::path::Path>) -> Result<()> {
    for (name, t) in outputs {
        let v = t.to_f64_vec();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max_abs = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        println!("output {name}: {} mean {mean:.6} max|x| {max_abs:.6}", TensorType::new(t.dtype, t.dims.clone()));
    }
    if let Some(path) = path {
        safetensors_io::save(path, outputs)?;
        println!("wrote {}", path.display());
    }
    if let Some(b) = vidlower_runtime::timing::peak_rss_bytes() {
        println!("peak memory: {:.0} MiB", b as f64 / (1024.0 * 1024.0));
    }
    Ok(())
}

/// f32 values as a tensor of `ty` (converted to its dtype).
pub(crate) fn random_tensor(values: Vec<f32>, ty: &TensorType) -> HostTensor {
    let f = HostTensor::from_f32(ty.shape.clone(), &values).expect("sizes match the type");
    f.convert(ty.dtype)
}
