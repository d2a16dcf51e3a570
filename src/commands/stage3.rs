//! `vidlower stage3`: stage2_latents.safetensors -> VAE decode -> output_video.mp4.

use crate::args::RuntimeArgs;
use crate::session::Session;
use crate::stage_args::{DecodeArgs, ModelArgs};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use vidlower_runtime::stages::generation_config::GenerationConfig;
use vidlower_runtime::stages::model::WanModel;
use vidlower_runtime::stages::stage3::{run_stage3_tiled, Stage3Outputs, FRAMES_FILE, LATENTS_FILE};
use vidlower_runtime::vae_tiling::TileConfig;

#[derive(Args)]
pub struct Stage3Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    decode: DecodeArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// The directory stage 2 wrote.
    #[arg(long, alias = "input_dir", default_value = "./stage_outputs")]
    input_dir: PathBuf,
}

pub fn run(args: Stage3Args) -> Result<()> {
    let mut config = GenerationConfig::read(&args.input_dir)?;
    let model = WanModel::open(&args.model.spec(Some(&config.model_id))?)?;
    let session = Session::open(&args.runtime, &crate::pipeline_args::PipelineArgs::default())?;
    execute(&model, &session, &args.decode, &args.input_dir, &mut config)
}

/// Decodes the latents in `dir` and writes the video (and frames).
pub fn execute(model: &WanModel, session: &Session, d: &DecodeArgs, dir: &Path, config: &mut GenerationConfig) -> Result<()> {
    let tiling = check(model, d)?;
    let path = dir.join(LATENTS_FILE);
    let mut file = vidlower_runtime::safetensors_io::load(&path).map_err(|e| anyhow!("{e} (run stage 2 first)"))?;
    let latents = file.remove("latents").ok_or_else(|| anyhow!("{}: no tensor named `latents`", path.display()))?;
    let video = d.output_video.clone().unwrap_or_else(|| dir.join("output_video.mp4"));
    let fps = d.fps.unwrap_or(model.defaults.fps);
    if fps == 0 {
        anyhow::bail!("--fps must be at least 1");
    }
    let frames_file = d.save_frames.then(|| dir.join(FRAMES_FILE));
    let (frames, summary) = run_stage3_tiled(
        model,
        &session.client,
        session.cache.as_ref(),
        &latents,
        d.vae_dtype,
        tiling.as_ref(),
        &Stage3Outputs { video: &video, fps, frames_file: frames_file.as_deref() },
    )
    .map_err(|e| anyhow!("stage 3: {e}"))?;
    config.fps = Some(fps);
    config.output_video = Some(video.clone());
    config.write(dir)?;
    println!("stage 3: {summary}");
    println!("stage 3: wrote {} ({frames} frames at {fps} fps)", video.display());
    Ok(())
}

/// Checks the decode flags against the model's VAE before any work starts; returns the tiling.
pub fn check(model: &WanModel, d: &DecodeArgs) -> Result<Option<TileConfig>> {
    let tiling = d.tiling();
    if let Some(t) = &tiling {
        t.validate(model.vae.scale_spatial()).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(tiling)
}
