//! Stage 2: prompt embeddings + noise -> the denoising loop -> latents, as the family's pipeline
//! with `output_type="latent"`: the transformer runs compiled (cond and uncond batched as one call
//! of batch 2 for classifier-free guidance, in the order the family's pipeline batches them), the
//! scheduler host-side. The family decides the transformer's inputs and the guidance; the loop,
//! the noise and the progress are the same for every family.

use super::compiled::{passes_for, prepare, sharding_format, ComponentError, ComponentTimes};
use super::model::OpenedModel;
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use crate::program::ProgramError;
use crate::scheduler::Scheduler;
use crate::tensor::HostTensor;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vidlower_frontends::family::{Component, DenoiseKnobs, Embeddings, FamilyError, GuidanceAt, VideoSize};
use vidlower_ir::DType;
use vidlower_passes::pipeline_options::PipelineOptions;

/// What stage 2 runs with (resolved flags; see `vidlower stage2 --help`).
#[derive(Clone, Debug)]
pub struct Stage2Settings {
    pub steps: usize,
    pub guidance_scale: f64,
    pub seed: u64,
    pub video: VideoSize,
    /// Family knobs: the flow shift, dynamic CFG.
    pub knobs: DenoiseKnobs,
    pub dtype: DType,
    pub warmup_steps: usize,
    pub latents_in: Option<PathBuf>,
    /// Per-step scheduler noise to use instead of vidlower's generator (step i takes entry i):
    /// how a run replays another's stochastic steps (the goldens replay diffusers' DPM noise).
    pub step_noise: Option<Vec<Vec<f32>>>,
    /// `--scheduler`: a scheduler class replacing the config's `_class_name`.
    pub scheduler_class: Option<String>,
    /// How the transformer is lowered (attention, exp2, K smoothing, blocks, window, mesh).
    pub pipeline: PipelineOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum Stage2Error {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Family(#[from] FamilyError),
    #[error(transparent)]
    Component(Box<ComponentError>),
    #[error("transformer: {0}")]
    Run(Box<ProgramError>),
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Io(#[from] crate::safetensors_io::SafetensorsError),
}

impl From<ProgramError> for Stage2Error {
    fn from(e: ProgramError) -> Self {
        Stage2Error::Run(Box::new(e))
    }
}

impl From<ComponentError> for Stage2Error {
    fn from(e: ComponentError) -> Self {
        Stage2Error::Component(Box::new(e))
    }
}

/// Timings for the stage summary.
pub struct Stage2Report {
    pub transformer: ComponentTimes,
    pub scheduler: String,
    pub first_step: Duration,
    pub steps: Vec<Duration>,
    pub warmup: Vec<Duration>,
}

impl Stage2Report {
    pub fn describe(&self) -> String {
        let f = crate::timing::format_duration;
        let total: Duration = self.steps.iter().sum();
        let later = if self.steps.len() > 1 {
            format!(", later steps {} each", f(self.steps[1..].iter().sum::<Duration>() / (self.steps.len() - 1) as u32))
        } else {
            String::new()
        };
        format!(
            "transformer: {}; {}; {} steps in {} (first {}{later})",
            self.transformer.describe(),
            self.scheduler,
            self.steps.len(),
            f(total),
            f(self.first_step)
        )
    }
}

/// Checks the settings against the model before any work: the size, the steps, the knobs.
pub fn check(model: &OpenedModel, s: &Stage2Settings) -> Result<(), Stage2Error> {
    model.check_video(&s.video)?;
    model.check_denoise(&s.knobs)?;
    if s.steps == 0 {
        return Err(Stage2Error::Invalid("--num-inference-steps must be at least 1".into()));
    }
    // The scheduler's config is read and checked now, not after stage 2 has compiled.
    open_scheduler(model, s)?;
    Ok(())
}

/// Runs the denoising loop on the stage-1 `embeddings`; the negative ones are used when
/// guidance_scale > 1 (as diffusers does).
pub fn run_stage2(
    model: &OpenedModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    embeddings: &Embeddings,
    s: &Stage2Settings,
) -> Result<(HostTensor, Stage2Report), Stage2Error> {
    check(model, s)?;
    let shape = model.latent_shape(&s.video);
    let cfg = s.guidance_scale > 1.0;

    let mut scheduler = open_scheduler(model, s)?;
    let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
    let scheduler_summary = scheduler.describe();

    // `prepare_latents`: the initial noise times the scheduler's `init_noise_sigma`; a
    // `--latents-in` file is taken as the pipeline takes `latents=` (scaled the same way).
    let n = shape.iter().product::<i64>() as usize;
    let sigma = scheduler.init_noise_sigma() as f32;
    let mut latents: Vec<f32> = match &s.latents_in {
        Some(path) => read_latents(path, &shape, &s.video)?,
        None => super::noise::gaussian(s.seed, n),
    };
    if sigma != 1.0 {
        latents.iter_mut().for_each(|x| *x *= sigma);
    }

    let batch = if cfg { 2 } else { 1 };
    let c = Component::Transformer;
    let sizes = model.transformer_sizes(&shape, embeddings, batch)?;
    let graph = model.graphs(c, &sizes, s.dtype)?.remove(0).graph;
    let weights = model.weights(c).map_err(|e| Stage2Error::Invalid(e.to_string()))?;
    let passes = passes_for(&s.pipeline, model.model.as_ref(), c);
    let (program, times) = prepare(c.name(), graph, passes, sharding_format(&s.pipeline), client, cache, &weights)?;

    // The text conditioning is converted and batched once; each step adds its latents and t.
    let mut inputs = model.conditioning_inputs(embeddings, cfg, s.dtype)?;
    let mut run = |latents: &[f32], t: f64, step: usize| -> Result<Vec<f32>, Stage2Error> {
        let one = HostTensor::from_f32(shape.clone(), latents).expect("latent sizes match");
        inputs.extend(model.step_inputs(&one, t, cfg, s.dtype)?);
        let out = program.run(&inputs)?.remove(0).1.to_f32_vec();
        let g = GuidanceAt { scale: s.guidance_scale, t, step, steps: s.steps, dynamic: s.knobs.dynamic_cfg };
        Ok(model.guide(&out, cfg, &g))
    };

    let mut warmup = Vec::new();
    for _ in 0..s.warmup_steps {
        let start = Instant::now();
        run(&latents, timesteps[0], 0)?;
        warmup.push(start.elapsed());
    }
    let bar = indicatif::ProgressBar::new(timesteps.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("denoising {bar:30} {pos}/{len} [{elapsed} < {eta}] {msg}").expect("valid template"),
    );
    let mut steps = Vec::new();
    for (i, &t) in timesteps.iter().enumerate() {
        let start = Instant::now();
        let noise_pred = run(&latents, t, i)?;
        // Stochastic schedulers (CogVideoX's DPM) take per-step noise from vidlower's generator,
        // seeded by the run's seed and the step.
        let noise = match (&s.step_noise, scheduler.needs_noise()) {
            (_, false) => None,
            (Some(given), true) => Some(given.get(i).filter(|v| v.len() == n).cloned().ok_or_else(|| {
                Stage2Error::Invalid(format!("step noise: step {i} needs {n} values"))
            })?),
            (None, true) => Some(super::noise::gaussian(step_noise_seed(s.seed, i), n)),
        };
        latents = scheduler.step(&noise_pred, &latents, noise.as_deref()).map_err(|e| Stage2Error::Scheduler(e.to_string()))?;
        let d = start.elapsed();
        steps.push(d);
        bar.set_message(format!("{} /step", crate::timing::format_duration(steps.iter().sum::<Duration>() / steps.len() as u32)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let first_step = warmup.first().copied().unwrap_or(steps[0]);
    let latents = HostTensor::from_f32(shape, &latents).expect("latent sizes match");
    Ok((latents, Stage2Report { transformer: times, scheduler: scheduler_summary, first_step, steps, warmup }))
}

/// The scheduler `scheduler/scheduler_config.json` names, with the flow shift when given, set to
/// `s.steps` steps.
pub fn open_scheduler(model: &OpenedModel, s: &Stage2Settings) -> Result<Box<dyn Scheduler>, Stage2Error> {
    let err = |e: crate::scheduler::SchedulerError| Stage2Error::Scheduler(e.to_string());
    let path = model.scheduler_config();
    let mut scheduler = match &s.scheduler_class {
        None => crate::scheduler::from_config_file(&path).map_err(err)?,
        Some(class) => {
            let mut value: serde_json::Value =
                vidlower_frontends::config::read_json(&path).map_err(|e| Stage2Error::Scheduler(e.to_string()))?;
            value["_class_name"] = serde_json::Value::String(class.clone());
            crate::scheduler::from_config_value(&value)
                .map_err(|e| Stage2Error::Invalid(format!("--scheduler {class}: {e} (with the values of {})", path.display())))?
        }
    };
    if let Some(shift) = s.knobs.flow_shift {
        scheduler.set_shift(shift).map_err(err)?;
    }
    scheduler.set_timesteps(s.steps).map_err(err)?;
    Ok(scheduler)
}

/// The seed of step `i`'s scheduler noise (distinct from the initial noise's stream).
fn step_noise_seed(seed: u64, i: usize) -> u64 {
    seed ^ 0xD1B5_4A32_D192_ED03u64.wrapping_mul(i as u64 + 1)
}

/// `latents` from a `--latents-in` file, checked against the generation's shape.
fn read_latents(path: &std::path::Path, shape: &[i64], v: &VideoSize) -> Result<Vec<f32>, Stage2Error> {
    let mut file = crate::safetensors_io::load(path)?;
    let t = file.remove("latents").ok_or_else(|| Stage2Error::Invalid(format!("{}: no tensor named `latents`", path.display())))?;
    if t.dims != shape {
        return Err(Stage2Error::Invalid(format!(
            "{}: `latents` is {:?}, expected {shape:?} for {}x{}x{} frames",
            path.display(),
            t.dims,
            v.height,
            v.width,
            v.frames
        )));
    }
    Ok(t.to_f32_vec())
}
