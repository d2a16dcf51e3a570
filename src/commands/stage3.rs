//! `vidlower stage3`: stage2_latents.safetensors -> VAE decode -> output_video.mp4.

use crate::args::RuntimeArgs;
use crate::memory_check::MemoryArgs;
use crate::pipeline_args::PipelineArgs;
use crate::session::Session;
use crate::stage_args::{DecodeArgs, ModelArgs};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use vidlower_runtime::stages::generation_config::GenerationConfig;
use vidlower_runtime::stages::model::OpenedModel;
use vidlower_frontends::family::{Component, VideoSize};
use vidlower_passes::pipeline_options::PipelineOptions;
use vidlower_runtime::stages::stage3::{run_stage3, Stage3Outputs, FRAMES_FILE, LATENTS_FILE};
use vidlower_runtime::stages::vae_decode::VaeDecodeSettings;

#[derive(Args)]
pub struct Stage3Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    decode: DecodeArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// The directory stage 2 wrote.
    #[arg(long, alias = "input_dir", default_value = "./stage_outputs")]
    input_dir: PathBuf,
}

pub fn run(args: Stage3Args) -> Result<()> {
    let mut config = GenerationConfig::read(&args.input_dir)?;
    let model = OpenedModel::open(&args.model.spec(Some(&config.model_id))?, &[Component::VaeDecoder])?;
    if args.pipeline.mesh.is_some() {
        anyhow::bail!("--mesh does not apply to stage 3: the VAE runs on one device (its weights replicated, as the seeds run it)");
    }
    let session = Session::open(&args.runtime, &args.pipeline)?;
    let settings = check(&model, &args.decode, &args.pipeline.options(session.target()?)?)?;
    let d = &model.defaults;
    let video = VideoSize {
        height: config.height.unwrap_or(d.height),
        width: config.width.unwrap_or(d.width),
        frames: config.frames.unwrap_or(d.frames),
    };
    let request = vidlower_runtime::stages::memory_plan::PlanRequest {
        video,
        text_len: config.max_sequence_length,
        dtype: settings.dtype,
        cfg: false,
        pipeline: &settings.pipeline,
        decode: &settings,
        save_frames: args.decode.save_frames || model.writes_frames_file(),
    };
    let plan = crate::memory_check::check(&args.memory, &model, &session, &request, &[3])?;
    execute(&model, &session, &args.decode, &settings, &args.input_dir, &mut config)?;
    crate::memory_check::report(plan.as_ref());
    Ok(())
}

/// Decodes the latents in `dir` and writes the video (and frames).
pub fn execute(
    model: &OpenedModel,
    session: &Session,
    d: &DecodeArgs,
    settings: &VaeDecodeSettings,
    dir: &Path,
    config: &mut GenerationConfig,
) -> Result<()> {
    let path = dir.join(LATENTS_FILE);
    let mut file = vidlower_runtime::safetensors_io::load(&path).map_err(|e| anyhow!("{e} (run stage 2 first)"))?;
    let latents = file.remove("latents").ok_or_else(|| anyhow!("{}: no tensor named `latents`", path.display()))?;
    let video = d.output_video.clone().unwrap_or_else(|| dir.join("output_video.mp4"));
    let fps = d.fps.unwrap_or(model.defaults.fps);
    if fps == 0 {
        anyhow::bail!("--fps must be at least 1");
    }
    let frames_file = (d.save_frames || model.writes_frames_file()).then(|| dir.join(FRAMES_FILE));
    let d = &model.defaults;
    let request = VideoSize {
        height: config.height.unwrap_or(d.height),
        width: config.width.unwrap_or(d.width),
        frames: config.frames.unwrap_or(d.frames),
    };
    let (frames, summary) = run_stage3(
        model,
        &session.client,
        session.cache.as_ref(),
        &latents,
        &request,
        settings,
        &Stage3Outputs { video: &video, fps, frames_file: frames_file.as_deref() },
    )
    .map_err(|e| anyhow!("stage 3: {e}"))?;
    config.fps = Some(fps);
    config.output_video = Some(video.clone());
    config.write(dir)?;
    println!("stage 3: vae lowered with {}", settings.pipeline.describe());
    println!("stage 3: {summary}");
    println!("stage 3: wrote {} ({frames} frames at {fps} fps)", video.display());
    Ok(())
}

/// Checks the decode flags against the model's VAE before any work starts; returns how the
/// VAE is to be built (lowered with `pipeline`, which stage 3 and generate share).
pub fn check(model: &OpenedModel, d: &DecodeArgs, pipeline: &PipelineOptions) -> Result<VaeDecodeSettings> {
    let tiling = d.tiling.knobs();
    if let Some(knobs) = &tiling {
        model.vae_decoder()?.tile_geometry(knobs).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(VaeDecodeSettings { dtype: d.vae_dtype, tiling, pipeline: pipeline.clone() })
}
