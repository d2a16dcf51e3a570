//! `vidlower generate`: the three stages in one process, with the same flags and files.

use crate::args::RuntimeArgs;
use crate::pipeline_args::PipelineArgs;
use crate::session::Session;
use crate::stage_args::{DecodeArgs, DenoiseArgs, DtypeArg, ModelArgs, PromptArgs};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use vidlower_runtime::stages::model::OpenedModel;

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
    pipeline: PipelineArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Where the stage files and the video go.
    #[arg(long, alias = "output_dir", default_value = "./stage_outputs")]
    output_dir: PathBuf,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let start = Instant::now();
    let model = OpenedModel::open_all(&args.model.spec(None)?)?;
    // Every flag is checked before any work starts.
    let settings = super::stage2::settings(&model, &args.denoise, &args.dtype, &args.pipeline)?;
    let decode = super::stage3::check(&model, &args.decode, &settings.pipeline)?;
    // Every weight every component takes, by name and shape (headers only).
    vidlower_runtime::stages::preflight::check_weights(&model, &model.components(), &settings.video)?;
    let session = Session::open(&args.runtime, &args.pipeline)?;
    println!("model: {} ({}, {})", model.spec.id(), model.family().name(), model.dir().display());
    println!("plugin: {}", session.describe_plugin());
    let mut config = super::stage1::execute(&model, &session, &args.prompt, &args.dtype, &settings.pipeline, &args.output_dir)?;
    super::stage2::execute(&model, &session, &settings, &args.output_dir, &mut config)?;
    super::stage3::execute(&model, &session, &args.decode, &decode, &args.output_dir, &mut config)?;
    println!("generate: done in {}", vidlower_runtime::timing::format_duration(start.elapsed()));
    Ok(())
}
