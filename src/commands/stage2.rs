//! `vidlower stage2`: embeddings + noise -> the denoising loop -> stage2_latents.safetensors.

use crate::args::RuntimeArgs;
use crate::memory_check::MemoryArgs;
use crate::pipeline_args::PipelineArgs;
use crate::session::Session;
use crate::interrupt::Interrupted;
use crate::stage_args::{CheckpointArgs, DenoiseArgs, DtypeArg, LoraArgs, ModelArgs};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use vidlower_runtime::stages::checkpoint::{self, CHECKPOINT_FILE};
use vidlower_runtime::stages::generation_config::GenerationConfig;
use vidlower_runtime::stages::model::OpenedModel;
use vidlower_frontends::family::{Component, DenoiseKnobs, VideoSize};
use vidlower_passes::Target;
use vidlower_runtime::stages::stage1::load_embeddings;
use vidlower_runtime::stages::stage2::{run_stage2_checkpointed, Checkpointing, Stage2Error, Stage2Settings};
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
    checkpoint: CheckpointArgs,
    #[command(flatten)]
    lora: LoraArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// The directory stage 1 wrote (stage 2 writes there too).
    #[arg(long, alias = "input_dir", default_value = "./stage_outputs")]
    input_dir: PathBuf,
}

pub fn run(args: Stage2Args) -> Result<()> {
    let mut config = GenerationConfig::read(&args.input_dir)?;
    let mut model = OpenedModel::open(&args.model.spec(Some(&config.model_id))?, &[Component::Transformer])?;
    model.set_lora(&args.lora.lora)?;
    // The plugin first: the pipeline options are made for its platform.
    let session = Session::open(&args.runtime, &args.pipeline)?;
    let settings = settings(&model, &args.denoise, &args.dtype, &args.pipeline, session.target()?)?;
    let decode = vidlower_runtime::stages::vae_decode::VaeDecodeSettings::untiled(settings.dtype);
    let request = vidlower_runtime::stages::memory_plan::PlanRequest {
        video: settings.video,
        text_len: config.max_sequence_length,
        dtype: settings.dtype,
        cfg: settings.guidance_scale > 1.0,
        pipeline: &settings.pipeline,
        decode: &decode,
        save_frames: false,
    };
    let plan = crate::memory_check::check(&args.memory, &model, &session, &request, &[2])?;
    let stop = crate::interrupt::install()?;
    let control = checkpointing(&args.checkpoint, &args.input_dir, stop);
    execute(&model, &session, &settings, &control, &args.input_dir, &mut config)?;
    crate::memory_check::report(plan.as_ref());
    Ok(())
}

/// How stage 2 checkpoints into `dir`, stopping when `stop` is set.
pub fn checkpointing(args: &CheckpointArgs, dir: &Path, stop: Arc<AtomicUsize>) -> Checkpointing {
    // A test hook: a pause after each step, so that a test's signal lands while the loop runs.
    let step_delay = std::env::var("VIDLOWER_TEST_STEP_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis);
    Checkpointing {
        dir: Some(dir.to_path_buf()),
        every: args.checkpoint_every,
        resume: args.resume,
        stop: Some(stop),
        step_delay: step_delay.unwrap_or_default(),
    }
}

/// Flags resolved against the model's defaults (the pipeline's for `target`), checked before
/// anything is compiled.
pub fn settings(model: &OpenedModel, d: &DenoiseArgs, dtype: &DtypeArg, pipeline: &PipelineArgs, target: Target) -> Result<Stage2Settings> {
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
        pipeline: pipeline.options(target)?,
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

/// Runs stage 2 from the files in `dir` and writes the latents; records the settings. The
/// checkpoint, superseded by the latents, is removed.
pub fn execute(
    model: &OpenedModel,
    session: &Session,
    s: &Stage2Settings,
    control: &Checkpointing,
    dir: &Path,
    config: &mut GenerationConfig,
) -> Result<()> {
    let embeddings = load_embeddings(dir, &model.embedding_names(), model.family().name()).map_err(anyhow::Error::msg)?;
    let existing = dir.join(CHECKPOINT_FILE);
    match (existing.is_file(), control.resume) {
        (true, false) => println!("stage 2: {} of an earlier run will be replaced (pass --resume to continue it)", existing.display()),
        (false, true) => println!("stage 2: --resume: no {CHECKPOINT_FILE} in {}; starting at step 0", dir.display()),
        _ => {}
    }
    let (latents, report) = run_stage2_checkpointed(model, &session.client, session.cache.as_ref(), &embeddings, s, control)
        .map_err(|e| match e {
            Stage2Error::Interrupted { signal, .. } => anyhow::Error::new(Interrupted { signal, message: format!("stage 2: {e}") }),
            e => anyhow!("stage 2: {e}"),
        })?;
    let path = dir.join(LATENTS_FILE);
    vidlower_runtime::safetensors_io::save(&path, &[("latents".into(), latents)])?;
    checkpoint::remove(dir).map_err(|e| anyhow!("removing {}: {e}", existing.display()))?;
    record(config, s, model);
    config.write(dir)?;
    println!("stage 2: transformer lowered with {}", s.pipeline.describe());
    println!("stage 2: {}", report.describe());
    if let Some(lora) = &model.lora {
        println!("stage 2: lora: merged {}", lora.describe());
    }
    for note in &report.notes {
        println!("stage 2: note: {note}");
    }
    println!("stage 2: wrote {}", path.display());
    Ok(())
}

/// Whether `dir` holds stage 2's latents for exactly `s` (recorded in `config`, no checkpoint
/// pending): what `generate --resume` reuses.
pub fn done_before(config: &GenerationConfig, s: &Stage2Settings, model: &OpenedModel, dir: &Path) -> bool {
    let mut want = config.clone();
    record(&mut want, s, model);
    // A --latents-in file may have changed since; that run is redone.
    want == *config && s.latents_in.is_none() && dir.join(LATENTS_FILE).is_file() && !dir.join(CHECKPOINT_FILE).exists()
}

/// Writes stage 2's settings into the generation config.
fn record(config: &mut GenerationConfig, s: &Stage2Settings, model: &OpenedModel) {
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
    config.lora = model.lora.as_ref().map(|l| l.identity()).unwrap_or_default();
    config.window_size = s.pipeline.window;
}
