//! `vidlower exec`: compile (or load from the cache) and run a graph once, with weights and
//! inputs from safetensors files or seeded random values; writes the outputs as safetensors.

use crate::args::{GraphArgs, PassArgs, RuntimeArgs};
use crate::lowering::{lower, pipeline};
use crate::session::Session;
use anyhow::{Context, Result};
use clap::Args;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;
use vidlower_frontends::random_weights::{random_input, random_weight};
use vidlower_ir::TensorType;
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
    /// Inputs by name (safetensors); missing ones are drawn from --seed.
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// Weights by name (safetensors); without it, deterministic random weights from --seed.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Where to write the outputs (safetensors).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seed of random weights and inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run this many times and report the mean time of the runs after the first.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
}

pub fn run(args: ExecArgs) -> Result<()> {
    let graph = args.graph.graph()?;
    let signature = Signature::of(&graph);
    let lowered = lower(graph, pipeline(&args.passes)?, DumpAfter::None, &mut |_, _| {})?;
    let session = Session::open(&args.runtime, 1)?;
    println!("plugin: {}", session.describe_plugin());

    let spinner = crate::commands::spinner("compiling");
    let compiled =
        compile_cached(&session.client, session.cache.as_ref(), &lowered.module, &CompileOptions::single_device(), &lowered.graph.name)?;
    spinner.finish_and_clear();
    for w in &compiled.warnings {
        eprintln!("warning: {w}");
    }
    println!("executable: {}", compiled.describe());

    let upload_start = Instant::now();
    let mut program = Program::new(compiled.executable, signature.clone(), &session.client)?;
    let files_weights = match &args.weights {
        Some(p) => Some(safetensors_io::load(p)?),
        None => None,
    };
    program
        .upload_weights(&mut |name, ty| match &files_weights {
            Some(w) => w.get(name).cloned(),
            None => Some(random_tensor(random_weight(args.seed, name, ty), ty)),
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
                None => random_tensor(random_input(args.seed, name, ty), ty),
            };
            inputs.insert(name.clone(), t);
        }
    }

    let mut outputs = Vec::new();
    let mut times = Vec::new();
    for _ in 0..args.runs {
        let start = Instant::now();
        outputs = program.run(&inputs).with_context(|| match &args.inputs {
            Some(p) => format!("running with inputs from {}", p.display()),
            None => "running".into(),
        })?;
        times.push(start.elapsed());
    }
    let first = format_duration(times[0]);
    if times.len() > 1 {
        let rest = times[1..].iter().sum::<std::time::Duration>() / (times.len() - 1) as u32;
        println!("run: first {first}, then {} per run (mean of {})", format_duration(rest), times.len() - 1);
    } else {
        println!("run: {first}");
    }
    for (name, t) in &outputs {
        let v = t.to_f64_vec();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let max_abs = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        println!("output {name}: {} mean {mean:.6} max|x| {max_abs:.6}", TensorType::new(t.dtype, t.dims.clone()));
    }
    if let Some(path) = &args.output {
        safetensors_io::save(path, &outputs)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// f32 values as a tensor of `ty` (converted to its dtype).
fn random_tensor(values: Vec<f32>, ty: &TensorType) -> HostTensor {
    let f = HostTensor::from_f32(ty.shape.clone(), &values).expect("sizes match the type");
    f.convert(ty.dtype)
}
