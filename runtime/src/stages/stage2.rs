//! Stage 2: prompt embeddings + noise -> the denoising loop -> latents, as the family's pipeline
//! with `output_type="latent"`: the transformer runs compiled (cond and uncond batched as one call
//! of batch 2 for classifier-free guidance, in the order the family's pipeline batches them), the
//! scheduler host-side. The family decides the transformer's inputs and the guidance; the loop,
//! the noise and the progress are the same for every family.
//!
//! With [`Checkpointing`], the loop writes `stage2_checkpoint.safetensors` every N steps and when
//! asked to stop (a signal handler's flag, checked between steps), and continues from such a
//! checkpoint to exactly the latents of an uninterrupted run (see [`super::checkpoint`]).

use super::checkpoint::{Checkpoint, CheckpointError, RunIdentity, CHECKPOINT_FILE};
use super::compiled::{passes_for, prepare, sharding_format, ComponentError, ComponentTimes};
use super::model::OpenedModel;
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use crate::program::ProgramError;
use crate::scheduler::Scheduler;
use crate::tensor::HostTensor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// Checkpoints, resuming, and stopping between steps (`--checkpoint-every`, `--resume`, SIGINT/SIGTERM).
/// The default writes and reads no checkpoint and never stops early.
#[derive(Clone, Debug, Default)]
pub struct Checkpointing {
    /// The directory `stage2_checkpoint.safetensors` is written to and resumed from; `None`: none.
    pub dir: Option<PathBuf>,
    /// Write a checkpoint after every this many steps; 0: only when stopped.
    pub every: usize,
    /// Continue from the checkpoint in `dir` when there is one; one written for another run is refused.
    pub resume: bool,
    /// Nonzero (a signal's number, set by a handler) asks the loop to stop before its next step; it
    /// writes a checkpoint and returns [`Stage2Error::Interrupted`].
    pub stop: Option<Arc<AtomicUsize>>,
    /// A pause after each step: a test hook, so that a signal reliably lands while the loop runs.
    pub step_delay: Duration,
}

impl Checkpointing {
    /// The checkpoint's path, when checkpoints are on.
    pub fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(CHECKPOINT_FILE))
    }

    /// The signal that asked to stop, if one did.
    fn stop_requested(&self) -> Option<usize> {
        self.stop.as_ref().map(|f| f.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }
}

/// `SIGINT`, `SIGTERM`, or `signal N`.
pub fn signal_name(signal: usize) -> String {
    match signal {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Stage2Error {
    #[error("{0}")]
    Invalid(String),
    /// Stopped between steps; the checkpoint (when checkpoints are on) holds the state after `done` steps.
    #[error("interrupted by {} after step {done}/{steps}{}", signal_name(*signal), checkpoint.as_ref().map(|p| format!("; the checkpoint is {}", p.display())).unwrap_or_default())]
    Interrupted { signal: usize, done: usize, steps: usize, checkpoint: Option<PathBuf> },
    /// `--resume` with a checkpoint written for another run.
    #[error("--resume: {} {difference} (resume with the checkpoint's settings, or run without --resume to start over)", path.display())]
    Mismatch { path: PathBuf, difference: String },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
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
    /// From process start to the first denoising step (the warm start, on a cache hit).
    pub ready_after: Option<Duration>,
    pub transformer: ComponentTimes,
    pub scheduler: String,
    pub first_step: Duration,
    pub steps: Vec<Duration>,
    pub warmup: Vec<Duration>,
    /// The step a `--resume` continued from.
    pub resumed_from: Option<usize>,
    pub total_steps: usize,
    /// Checkpoints written.
    pub checkpoints: usize,
    /// Things the user should know (a resume under another lowering).
    pub notes: Vec<String>,
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
        let resumed = match self.resumed_from {
            Some(k) => format!("resumed after step {k}/{}: ", self.total_steps),
            None => String::new(),
        };
        let checkpoints = match self.checkpoints {
            0 => String::new(),
            1 => "; 1 checkpoint written".into(),
            n => format!("; {n} checkpoints written"),
        };
        let ready = self.ready_after.map(|d| format!("; first step began {} after process start", f(d))).unwrap_or_default();
        format!(
            "transformer: {}; {}; {resumed}{} steps in {} (first {}{later}){checkpoints}{ready}",
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
    super::request_bounds::check(model, &s.video).map_err(Stage2Error::Invalid)?;
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
/// guidance_scale > 1 (as diffusers does). No checkpoints.
pub fn run_stage2(
    model: &OpenedModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    embeddings: &Embeddings,
    s: &Stage2Settings,
) -> Result<(HostTensor, Stage2Report), Stage2Error> {
    run_stage2_checkpointed(model, client, cache, embeddings, s, &Checkpointing::default())
}

/// [`run_stage2`] writing checkpoints, resuming from one, and stopping between steps as `control` says.
pub fn run_stage2_checkpointed(
    model: &OpenedModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    embeddings: &Embeddings,
    s: &Stage2Settings,
    control: &Checkpointing,
) -> Result<(HostTensor, Stage2Report), Stage2Error> {
    check(model, s)?;
    let shape = model.latent_shape(&s.video);
    let cfg = s.guidance_scale > 1.0;

    let mut scheduler = open_scheduler(model, s)?;
    let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
    let scheduler_summary = scheduler.describe();
    let n = shape.iter().product::<i64>() as usize;

    // A checkpoint to continue from is read and checked before anything is compiled.
    let identity = run_identity(model, embeddings, s, &shape, &scheduler.state().class)?;
    let checkpoint_path = control.path();
    let resumed = match &checkpoint_path {
        Some(path) if control.resume && path.is_file() => Some(read_checkpoint(path, &identity)?),
        _ => None,
    };
    let mut notes = Vec::new();
    let lowering = s.pipeline.describe();
    let (mut latents, start) = match resumed {
        Some(c) => {
            scheduler.restore(&c.scheduler).map_err(|e| Stage2Error::Scheduler(e.to_string()))?;
            if c.lowering != lowering {
                notes.push(format!(
                    "the checkpoint's steps ran with the transformer lowered with {}, these with {lowering}: the latents may differ in the last bits from an uninterrupted run",
                    c.lowering
                ));
            }
            (c.latents, Some(c.steps_done))
        }
        None => {
            // `prepare_latents`: the initial noise times the scheduler's `init_noise_sigma`; a
            // `--latents-in` file is taken as the pipeline takes `latents=` (scaled the same way).
            let sigma = scheduler.init_noise_sigma() as f32;
            let mut latents: Vec<f32> = match &s.latents_in {
                Some(path) => read_latents(path, &shape, &s.video)?,
                None => super::noise::gaussian(s.seed, n),
            };
            if sigma != 1.0 {
                latents.iter_mut().for_each(|x| *x *= sigma);
            }
            (latents, None)
        }
    };
    let first = start.unwrap_or(0);

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

    // The warm start: what a run pays before it denoises (a cache hit's load plus the upload).
    let ready_after = crate::timing::since_process_start();
    let mut warmup = Vec::new();
    for _ in 0..s.warmup_steps {
        let start = Instant::now();
        run(&latents, timesteps[0], 0)?;
        warmup.push(start.elapsed());
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(timesteps.len() as u64), crate::pjrt::plugin_log::progress_target());
    bar.set_style(
        indicatif::ProgressStyle::with_template("denoising {bar:30} {pos}/{len} [{elapsed} < {eta}] {msg}").expect("valid template"),
    );
    bar.set_position(first as u64);
    let mut steps = Vec::new();
    let mut checkpoints = 0;
    let mut saved_at = start;
    let save = |latents: &[f32], scheduler: &dyn Scheduler, done: usize| -> Result<(), Stage2Error> {
        let Some(path) = &checkpoint_path else { return Ok(()) };
        let c = Checkpoint { run: identity.clone(), steps_done: done, latents: latents.to_vec(), scheduler: scheduler.state(), lowering: lowering.clone() };
        Ok(c.save(path)?)
    };
    for (i, &t) in timesteps.iter().enumerate().skip(first) {
        // Between steps: a stop request writes the state so far and returns.
        if let Some(signal) = control.stop_requested() {
            if saved_at != Some(i) {
                save(&latents, scheduler.as_ref(), i)?;
            }
            bar.finish_and_clear();
            return Err(Stage2Error::Interrupted { signal, done: i, steps: timesteps.len(), checkpoint: checkpoint_path.clone() });
        }
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
        let done = i + 1;
        if control.every > 0 && done % control.every == 0 && done < timesteps.len() {
            save(&latents, scheduler.as_ref(), done)?;
            saved_at = Some(done);
            checkpoints += 1;
        }
        if !control.step_delay.is_zero() {
            std::thread::sleep(control.step_delay);
        }
        let d = start.elapsed();
        steps.push(d);
        bar.set_message(format!("{} /step", crate::timing::format_duration(steps.iter().sum::<Duration>() / steps.len() as u32)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let first_step = warmup.first().or(steps.first()).copied().unwrap_or_default();
    let latents = HostTensor::from_f32(shape, &latents).expect("latent sizes match");
    let report = Stage2Report {
        ready_after,
        transformer: times,
        scheduler: scheduler_summary,
        first_step,
        steps,
        warmup,
        resumed_from: start,
        total_steps: timesteps.len(),
        checkpoints,
        notes,
    };
    Ok((latents, report))
}

/// What a checkpoint of this run records as its owner.
fn run_identity(
    model: &OpenedModel,
    embeddings: &Embeddings,
    s: &Stage2Settings,
    shape: &[i64],
    scheduler_class: &str,
) -> Result<RunIdentity, Stage2Error> {
    use super::checkpoint::{embeddings_sha256, sha256};
    let file_sha = |path: &Path, what: &str| {
        std::fs::read(path).map(|b| sha256(&b)).map_err(|e| Stage2Error::Invalid(format!("{what} {}: {e}", path.display())))
    };
    let step_noise = s.step_noise.as_ref().map(|steps| {
        let bytes: Vec<u8> = steps.iter().flat_map(|v| v.iter().flat_map(|x| x.to_le_bytes()).chain((v.len() as u64).to_le_bytes())).collect();
        sha256(&bytes)
    });
    Ok(RunIdentity {
        model: model.spec.id(),
        family: model.family().name().to_string(),
        height: s.video.height,
        width: s.video.width,
        frames: s.video.frames,
        latent_shape: shape.to_vec(),
        seed: s.seed,
        latents_in_sha256: s.latents_in.as_deref().map(|p| file_sha(p, "--latents-in")).transpose()?,
        steps: s.steps,
        guidance_scale: s.guidance_scale,
        flow_shift: s.knobs.flow_shift,
        dynamic_cfg: s.knobs.dynamic_cfg,
        dtype: s.dtype.to_string(),
        scheduler_class: scheduler_class.to_string(),
        scheduler_config_sha256: file_sha(&model.scheduler_config(), "scheduler config")?,
        embeddings_sha256: embeddings_sha256(embeddings),
        step_noise_sha256: step_noise,
        lora: model.lora.as_ref().map(|l| l.identity()).unwrap_or_default(),
        window_size: s.pipeline.window,
    })
}

/// The checkpoint at `path`, refused when it was written for another run than `identity`.
fn read_checkpoint(path: &Path, identity: &RunIdentity) -> Result<Checkpoint, Stage2Error> {
    let c = Checkpoint::load(path)?;
    match c.run.difference(identity) {
        Some(difference) => Err(Stage2Error::Mismatch { path: path.into(), difference }),
        None => Ok(c),
    }
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
