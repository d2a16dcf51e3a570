//! `vidlower generate`: the three stages in one process, with the same flags and files.

use crate::args::RuntimeArgs;
use crate::memory_check::MemoryArgs;
use crate::pipeline_args::PipelineArgs;
use crate::session::Session;
use crate::interrupt::{received, Interrupted};
use crate::stage_args::{CheckpointArgs, DecodeArgs, DenoiseArgs, DtypeArg, LoraArgs, ModelArgs, PromptArgs};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use vidlower_runtime::stages::model::OpenedModel;
use vidlower_runtime::stages::stage1::EMBEDDINGS_FILE;
use vidlower_runtime::stages::stage3::LATENTS_FILE;

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    #[command(flatten)]
    denoise: DenoiseArgs,
    #[command(flatten)]
    decode: DecodeArgs,
    #[command(flatten)]
    dtype: DtypeArg,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    #[command(flatten)]
    lora: LoraArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Where the stage files and the video go.
    #[arg(long, alias = "output_dir", default_value = "./stage_outputs")]
    output_dir: PathBuf,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let start = Instant::now();
    let mut model = OpenedModel::open_all(&args.model.spec(None)?)?;
    model.set_lora(&args.lora.lora)?;
    // The plugin first (the pipeline options are made for its platform), then every flag is
    // checked before anything is compiled.
    let session = Session::open(&args.runtime, &args.pipeline)?;
    let settings = super::stage2::settings(&model, &args.denoise, &args.dtype, &args.pipeline, session.target()?)?;
    let decode = super::stage3::check(&model, &args.decode, &settings.pipeline)?;
    // Every weight every component takes, by name and shape (headers only).
    vidlower_runtime::stages::preflight::check_weights(&model, &model.components(), &settings.video)?;
    println!("model: {} ({}, {})", model.spec.id(), model.family().name(), model.dir().display());
    println!("plugin: {}", session.describe_plugin());
    // Every stage's memory, before any work (the executables compiled now are cache hits below).
    let request = vidlower_runtime::stages::memory_plan::PlanRequest {
        video: settings.video,
        text_len: args.prompt.max_sequence_length.unwrap_or(model.defaults.max_sequence_length),
        dtype: settings.dtype,
        cfg: settings.guidance_scale > 1.0,
        pipeline: &settings.pipeline,
        decode: &decode,
        save_frames: args.decode.save_frames || model.writes_frames_file(),
    };
    let plan = crate::memory_check::check(&args.memory, &model, &session, &request, &[1, 2, 3])?;
    let dir = &args.output_dir;
    let stop = crate::interrupt::install()?;
    // A signal during stage 1 or 3 stops the run after that stage (a second one at once).
    let stopped = |after: &str| match received(&stop) {
        Some(signal) => Err(anyhow::Error::new(Interrupted {
            signal,
            message: format!("generate: interrupted by {} after {after}", vidlower_runtime::stages::stage2::signal_name(signal)),
        })),
        None => Ok(()),
    };
    let resume = args.checkpoint.resume;
    let stage1 = if resume { super::stage1::done_before(&model, &args.prompt, &args.dtype, dir)? } else { None };
    let mut config = match stage1 {
        Some(config) => {
            println!("stage 1: --resume: reusing {}", dir.join(EMBEDDINGS_FILE).display());
            config
        }
        None => super::stage1::execute(&model, &session, &args.prompt, &args.dtype, &settings.pipeline, dir)?,
    };
    stopped("stage 1")?;
    if resume && super::stage2::done_before(&config, &settings, &model, dir) {
        println!("stage 2: --resume: reusing {}", dir.join(LATENTS_FILE).display());
    } else {
        let control = super::stage2::checkpointing(&args.checkpoint, dir, stop.clone());
        super::stage2::execute(&model, &session, &settings, &control, dir, &mut config)?;
    }
    stopped("stage 2")?;
    super::stage3::execute(&model, &session, &args.decode, &decode, dir, &mut config)?;
    crate::memory_check::report(plan.as_ref());
    println!("generate: done in {}", vidlower_runtime::timing::format_duration(start.elapsed()));
    Ok(())
}
