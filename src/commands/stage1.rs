//! `vidlower stage1`: prompt -> stage1_embeddings.safetensors + generation_config.json.

use crate::args::RuntimeArgs;
use crate::memory_check::MemoryArgs;
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
    #[command(flatten)]
    memory: MemoryArgs,
    /// Where the stage files go.
    #[arg(long, alias = "output_dir", default_value = "./stage_outputs")]
    output_dir: PathBuf,
}

pub fn run(args: Stage1Args) -> Result<()> {
    let model = OpenedModel::open(&args.model.spec(None)?, &[Component::TextEncoder, Component::TextEncoder2])?;
    let session = Session::open(&args.runtime, &args.pipeline)?;
    let pipeline = args.pipeline.options(session.target()?)?;
    let d = &model.defaults;
    let decode = vidlower_runtime::stages::vae_decode::VaeDecodeSettings::untiled(args.dtype.dtype);
    let request = vidlower_runtime::stages::memory_plan::PlanRequest {
        video: vidlower_frontends::family::VideoSize { height: d.height, width: d.width, frames: d.frames },
        text_len: args.prompt.max_sequence_length.unwrap_or(d.max_sequence_length),
        dtype: args.dtype.dtype,
        cfg: true,
        pipeline: &pipeline,
        decode: &decode,
        save_frames: false,
    };
    let plan = crate::memory_check::check(&args.memory, &model, &session, &request, &[1])?;
    execute(&model, &session, &args.prompt, &args.dtype, &pipeline, &args.output_dir)?;
    crate::memory_check::report(plan.as_ref());
    Ok(())
}

/// `generate --resume`: the generation config of a finished stage 1 in `dir` for this prompt,
/// model and dtype; `None` when stage 1 has not finished there; an error naming the setting when
/// it was run with another.
pub fn done_before(model: &OpenedModel, p: &PromptArgs, dtype: &DtypeArg, dir: &Path) -> Result<Option<GenerationConfig>> {
    use vidlower_runtime::stages::generation_config::FILE_NAME;
    if !dir.join(FILE_NAME).is_file() || !dir.join(EMBEDDINGS_FILE).is_file() {
        return Ok(None);
    }
    let config = GenerationConfig::read(dir)?;
    let max_len = p.max_sequence_length.unwrap_or(model.defaults.max_sequence_length);
    let recorded_dtype = config.dtype.clone().unwrap_or_else(|| dtype.dtype.to_string());
    let fields = [
        ("--model", config.model_id.clone(), model.spec.id()),
        ("--prompt", format!("{:?}", config.prompt), format!("{:?}", p.prompt)),
        ("--negative-prompt", format!("{:?}", config.negative_prompt), format!("{:?}", p.negative_prompt)),
        ("--max-sequence-length", config.max_sequence_length.to_string(), max_len.to_string()),
        ("--dtype", recorded_dtype, dtype.dtype.to_string()),
    ];
    if let Some((flag, was, now)) = fields.into_iter().find(|(_, was, now)| was != now) {
        anyhow::bail!(
            "--resume: {} was written for {flag} {was}, this run has {flag} {now} (resume with the same settings, or run without --resume to start over)",
            dir.join(FILE_NAME).display()
        );
    }
    Ok(Some(config))
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
    for (flag, text) in [("--prompt", &p.prompt), ("--negative-prompt", &p.negative_prompt)] {
        if let Some(note) = vidlower_runtime::stages::stage1::truncation_note(model.dir(), flag, text, max_len) {
            println!("stage 1: note: {note}");
        }
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
    save_embeddings(dir, &embeddings, model.family().name())?;
    let config = GenerationConfig {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        model_id: model.spec.id(),
        max_sequence_length: max_len,
        // The embeddings' compute dtype (stage 2 records its own over it).
        dtype: Some(dtype.dtype.to_string()),
        ..Default::default()
    };
    config.write(dir)?;
    println!("stage 1: text encoders lowered with {}", pipeline.describe());
    println!("stage 1: {summary}");
    println!("stage 1: wrote {}", dir.join(EMBEDDINGS_FILE).display());
    Ok(config)
}
