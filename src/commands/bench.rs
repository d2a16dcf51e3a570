//! `vidlower bench`: cold compile vs cache-hit load vs execute of a graph on one plugin, as
//! medians over repeats, with the ratios between them (figures to compare plugins and changes).

use crate::args::{GraphArgs, PassArgs, RuntimeArgs};
use crate::lowering::{lower, pipeline};
use crate::session::Session;
use anyhow::Result;
use clap::Args;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use vidlower_frontends::random_weights::{random_input, random_weight};
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
    /// Compiles and loads to time (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    /// Executions to time, after one warm-up run.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> Result<()> {
    let graph = args.graph.graph()?;
    let signature = Signature::of(&graph);
    let lowered = lower(graph, pipeline(&args.passes)?, DumpAfter::None, &mut |_, _| {})?;
    let session = Session::open(&args.runtime, 1)?;
    println!("plugin: {}", session.describe_plugin());
    println!("graph @{}: {} ops after passes, StableHLO {} bytes", lowered.graph.name, lowered.graph.op_count(), lowered.module.len());

    let options = CompileOptions::single_device();
    let bar = indicatif::ProgressBar::new(u64::from(args.repeats) * 2 + u64::from(args.runs));
    let mut compiles = Vec::new();
    let mut executable = None;
    for _ in 0..args.repeats {
        let start = Instant::now();
        executable = Some(session.client.compile(&lowered.module, &options)?);
        compiles.push(start.elapsed());
        bar.inc(1);
    }
    let bytes = executable.as_ref().expect("repeats >= 1").serialize()?;
    let mut loads = Vec::new();
    for _ in 0..args.repeats {
        let start = Instant::now();
        executable = Some(session.client.deserialize_executable(&bytes)?);
        loads.push(start.elapsed());
        bar.inc(1);
    }
    let mut program = Program::new(executable.expect("repeats >= 1"), signature.clone(), &session.client)?;
    program.upload_weights(&mut |name, ty| Some(tensor(random_weight(0, name, ty), ty)))?;
    let inputs: HashMap<String, HostTensor> = signature
        .params
        .iter()
        .filter(|(_, k, _)| *k == ParamKind::Input)
        .map(|(n, _, ty)| (n.clone(), tensor(random_input(0, n, ty), ty)))
        .collect();
    program.run(&inputs)?;
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let start = Instant::now();
        program.run(&inputs)?;
        runs.push(start.elapsed());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (c, l, r) = (median(compiles), median(loads), median(runs));
    println!("cold compile   {:>10}  (median of {})", format_duration(c), args.repeats);
    println!("cache load     {:>10}  (median of {}; {} serialized)", format_duration(l), args.repeats, bytes.len());
    println!("execute        {:>10}  (median of {}, incl. input upload and output download)", format_duration(r), args.runs);
    println!("cold compile / cache load = {:.1}x", c.as_secs_f64() / l.as_secs_f64());
    Ok(())
}

fn tensor(values: Vec<f32>, ty: &vidlower_ir::TensorType) -> HostTensor {
    HostTensor::from_f32(ty.shape.clone(), &values).expect("sizes match the type").convert(ty.dtype)
}
