//! `vidlower plan`: the memory plan of a run, before any work. Takes `generate`'s model, size,
//! dtype and pipeline flags, compiles each stage's executables through the cache (so a
//! `generate` after it compiles nothing) and prints, per stage and executable, the weights, one
//! run's activations, the compiled code, the host buffers, the predicted peak and whether it fits.

use crate::args::RuntimeArgs;
use crate::memory_check::MemoryArgs;
use crate::pipeline_args::PipelineArgs;
use crate::session::Session;
use crate::stage_args::{DecodeArgs, DenoiseArgs, DtypeArg, LoraArgs, ModelArgs};
use anyhow::Result;
use clap::Args;
use vidlower_runtime::stages::memory_plan::{plan, PlanRequest};
use vidlower_runtime::stages::model::OpenedModel;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    denoise: DenoiseArgs,
    #[command(flatten)]
    decode: DecodeArgs,
    #[command(flatten)]
    dtype: DtypeArg,
    #[command(flatten)]
    lora: LoraArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Text tokens stage 1 encodes (the pipeline's max_sequence_length).
    #[arg(long, alias = "max_sequence_length")]
    max_sequence_length: Option<usize>,
}

pub fn run(args: PlanArgs) -> Result<()> {
    if args.memory.no_memory_check {
        anyhow::bail!("--no-memory-check: `plan` is the memory check; drop the flag");
    }
    let mut model = OpenedModel::open_all(&args.model.spec(None)?)?;
    model.set_lora(&args.lora.lora)?;
    let session = Session::open(&args.runtime, &args.pipeline)?;
    let settings = super::stage2::settings(&model, &args.denoise, &args.dtype, &args.pipeline, session.target()?)?;
    let decode = super::stage3::check(&model, &args.decode, &settings.pipeline)?;
    let text_len = args.max_sequence_length.unwrap_or(model.defaults.max_sequence_length);
    if text_len == 0 {
        anyhow::bail!("--max-sequence-length must be at least 1");
    }
    let request = PlanRequest {
        video: settings.video,
        text_len,
        dtype: settings.dtype,
        cfg: settings.guidance_scale > 1.0,
        pipeline: &settings.pipeline,
        decode: &decode,
        save_frames: args.decode.save_frames || model.writes_frames_file(),
    };
    println!("model: {} ({}, {})", model.spec.id(), model.family().name(), model.dir().display());
    println!("plugin: {}", session.describe_plugin());
    let v = settings.video;
    println!("run: {}x{}, {} frames, --dtype {}, vae {}{}", v.width, v.height, v.frames, settings.dtype, decode.dtype, if decode.tiling.is_some() { " tiled" } else { "" });
    let plan = plan(&model, &session.client, session.cache.as_ref(), &request, &[1, 2, 3], args.memory.memory_limit)?;
    print!("{}", plan.table());
    plan.check()?;
    println!("plan: every stage fits");
    Ok(())
}
