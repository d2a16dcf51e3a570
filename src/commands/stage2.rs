//! `vidlower stage2`: embeddings + noise -> the denoising loop -> stage2_latents.safetensors.

use crate::args::RuntimeArgs;
use crate::pipeline_args::PipelineArgs;
use crate::session::Session;
use crate::stage_args::{DenoiseArgs, DtypeArg, ModelArgs};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use vidlower_runtime::stages::generation_config::GenerationConfig;
use vidlower_runtime::stages::model::OpenedModel;
use vidlower_frontends::family::{Component, DenoiseKnobs, VideoSize};
use vidlower_runtime::stages::stage1::load_embeddings;
use vidlower_runtime::stages::stage2::{run_stage2, Stage2Settings};
use vidlower_runtime::stages::stage3::LATENTS_FILE;

#[derive(Args)]
pub struct Stage2Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    denoise: DenoiseArgs,
    #[command(flatten)]
    dtype: DtypeArg,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// The directory stage 1 wrote (stage 2 writes there too).
    #[arg(long, alias = "input_dir", default_value = "./stage_outputs")]
    input_dir: PathBuf,
}

pub fn run(args: Stage2Args) -> Result<()> {
    let mut config = GenerationConfig::read(&args.input_dir)?;
    let model = OpenedModel::open(&args.model.spec(Some(&config.model_id))?, &[Component::Transformer])?;
    let settings = settings(&model, &args.denoise, &args.dtype, &args.pipeline)?;
    let session = Session::open(&args.runtime, &args.pipeline)?;
    execute(&model, &session, &settings, &args.input_dir, &mut config)
}

/// Flags resolved against the model's defaults, checked before any work starts.
pub fn settings(model: &OpenedModel, d: &DenoiseArgs, dtype: &DtypeArg, pipeline: &PipelineArgs) -> Result<Stage2Settings> {
    let def = &model.defaults;
    let s = Stage2Settings {
        steps: d.num_inference_steps.unwrap_or(def.steps),
        guidance_scale: d.guidance_scale.unwrap_or(def.guidance_scale),
        seed: d.seed.unwrap_or(def.seed),
        video: VideoSize {
            height: d.height.unwrap_or(def.height),
            width: d.width.unwrap_or(def.width),
            frames: d.frames.unwrap_or(def.frames),
        },
        knobs: DenoiseKnobs { flow_shift: d.flow_shift.or(def.flow_shift), dynamic_cfg: d.use_dynamic_cfg },
        dtype: dtype.dtype,
        warmup_steps: d.warmup_steps,
        latents_in: d.latents_in.clone(),
        step_noise: None,
        scheduler_class: d.scheduler.clone(),
        pipeline: pipeline.options()?,
    };
    vidlower_runtime::stages::stage2::check(model, &s)?;
    vidlower_runtime::stages::preflight::check_weights(model, &[vidlower_frontends::family::Component::Transformer], &s.video)?;
    if let Some(p) = &s.latents_in {
        if !p.is_file() {
            anyhow::bail!("--latents-in {}: no such file", p.display());
        }
    }
    Ok(s)
}

/// Runs stage 2 from the files in `dir` and writes the latents; records the settings.
pub fn execute(model: &OpenedModel, session: &Session, s: &Stage2Settings, dir: &Path, config: &mut GenerationConfig) -> Result<()> {
    let embeddings = load_embeddings(dir, &model.embedding_names()).map_err(anyhow::Error::msg)?;
    let (latents, report) = run_stage2(model, &session.client, session.cache.as_ref(), &embeddings, s)
        .map_err(|e| anyhow!("stage 2: {e}"))?;
    let path = dir.join(LATENTS_FILE);
    vidlower_runtime::safetensors_io::save(&path, &[("latents".into(), latents)])?;
    config.steps = Some(s.steps);
    config.guidance_scale = Some(s.guidance_scale);
    config.seed = Some(s.seed);
    config.height = Some(s.video.height);
    config.width = Some(s.video.width);
    config.frames = Some(s.video.frames);
    config.flow_shift = s.knobs.flow_shift;
    config.use_dynamic_cfg = s.knobs.dynamic_cfg.then_some(true);
    config.scheduler = s.scheduler_class.clone();
    config.dtype = Some(s.dtype.to_string());
    config.latents_in = s.latents_in.clone();
    config.write(dir)?;
    println!("stage 2: transformer lowered with {}", s.pipeline.describe());
    println!("stage 2: {}", report.describe());
    println!("stage 2: wrote {}", path.display());
    Ok(())
}
