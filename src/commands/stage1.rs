//! `vidlower stage1`: prompt -> stage1_embeddings.safetensors + generation_config.json.

use crate::args::RuntimeArgs;
use crate::pipeline_args::PipelineArgs;
use crate::session::Session;
use crate::stage_args::{DtypeArg, ModelArgs, PromptArgs};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use vidlower_frontends::family::Component;
use vidlower_passes::pipeline_options::PipelineOptions;
use vidlower_runtime::stages::generation_config::GenerationConfig;
use vidlower_runtime::stages::model::OpenedModel;
use vidlower_runtime::stages::stage1::{run_stage1, save_embeddings, Stage1Settings, EMBEDDINGS_FILE};

#[derive(Args)]
pub struct Stage1Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    #[command(flatten)]
    dtype: DtypeArg,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Where the stage files go.
    #[arg(long, alias = "output_dir", default_value = "./stage_outputs")]
    output_dir: PathBuf,
}

pub fn run(args: Stage1Args) -> Result<()> {
    let model = OpenedModel::open(&args.model.spec(None)?, &[Component::TextEncoder, Component::TextEncoder2])?;
    let pipeline = args.pipeline.options()?;
    let session = Session::open(&args.runtime, &args.pipeline)?;
    execute(&model, &session, &args.prompt, &args.dtype, &pipeline, &args.output_dir)?;
    Ok(())
}

/// Runs stage 1 and writes its files; returns the generation config it started.
pub fn execute(
    model: &OpenedModel,
    session: &Session,
    p: &PromptArgs,
    dtype: &DtypeArg,
    pipeline: &PipelineOptions,
    dir: &Path,
) -> Result<GenerationConfig> {
    let max_len = p.max_sequence_length.unwrap_or(model.defaults.max_sequence_length);
    if max_len == 0 {
        anyhow::bail!("--max-sequence-length must be at least 1");
    }
    let settings = Stage1Settings {
        prompt: &p.prompt,
        negative_prompt: &p.negative_prompt,
        max_sequence_length: max_len,
        dtype: dtype.dtype,
        pipeline,
    };
    let (embeddings, summary) =
        run_stage1(model, &session.client, session.cache.as_ref(), &settings).map_err(|e| anyhow!("stage 1: {e}"))?;
    save_embeddings(dir, &embeddings)?;
    let config = GenerationConfig {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        model_id: model.spec.id(),
        max_sequence_length: max_len,
        ..Default::default()
    };
    config.write(dir)?;
    println!("stage 1: {summary}");
    println!("stage 1: wrote {}", dir.join(EMBEDDINGS_FILE).display());
    Ok(config)
}
