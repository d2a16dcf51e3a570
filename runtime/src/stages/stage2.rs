//! Stage 2: prompt embeddings + noise -> the denoising loop -> latents, exactly as
//! `WanPipeline(..., output_type="latent")`: the transformer runs compiled (cond and uncond batched
//! as one call of batch 2 for classifier-free guidance), the UniPC scheduler host-side.

use super::compiled::{prepare, ComponentError, ComponentTimes};
use super::model::WanModel;
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use crate::program::ProgramError;
use crate::scheduler::{unipc::UniPcScheduler, Scheduler};
use crate::tensor::HostTensor;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vidlower_frontends::wan::transformer::{transformer, TransformerShape};
use vidlower_ir::DType;
use vidlower_passes::pipeline_options::PipelineOptions;

/// What stage 2 runs with (resolved flags; see `vidlower stage2 --help`).
#[derive(Clone, Debug)]
pub struct Stage2Settings {
    pub steps: usize,
    pub guidance_scale: f64,
    pub seed: u64,
    pub height: i64,
    pub width: i64,
    pub frames: i64,
    pub flow_shift: f64,
    pub dtype: DType,
    pub warmup_steps: usize,
    pub latents_in: Option<PathBuf>,
    /// How the transformer is lowered (attention, exp2, K smoothing, blocks, window).
    pub pipeline: PipelineOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum Stage2Error {
    #[error("{0}")]
    Invalid(String),
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
            "transformer: {}; {} steps in {} (first {}{later})",
            self.transformer.describe(),
            self.steps.len(),
            f(total),
            f(self.first_step)
        )
    }
}

/// Frames must be 4n+1 and sizes divisible by 16 (the VAE's 8x and the 2x2 patches).
pub fn validate_shape(height: i64, width: i64, frames: i64) -> Result<(), String> {
    if frames < 1 || (frames - 1) % 4 != 0 {
        return Err(format!("--frames {frames}: must be 4n+1 (1, 5, 9, ..., 81)"));
    }
    for (flag, v) in [("--height", height), ("--width", width)] {
        if v < 16 || v % 16 != 0 {
            return Err(format!("{flag} {v}: must be a positive multiple of 16"));
        }
    }
    Ok(())
}

/// The latent shape [1, C, T, H/8, W/8] of a generation.
pub fn latent_shape(model: &WanModel, s: &Stage2Settings) -> Vec<i64> {
    let (st, ss) = (model.vae.scale_temporal(), model.vae.scale_spatial());
    vec![1, model.transformer.in_channels, (s.frames - 1) / st + 1, s.height / ss, s.width / ss]
}

/// Runs the denoising loop; `negative` is used when guidance_scale > 1 (as diffusers does).
pub fn run_stage2(
    model: &WanModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    prompt_embeds: &HostTensor,
    negative_embeds: &HostTensor,
    s: &Stage2Settings,
) -> Result<(HostTensor, Stage2Report), Stage2Error> {
    validate_shape(s.height, s.width, s.frames).map_err(Stage2Error::Invalid)?;
    if s.steps == 0 {
        return Err(Stage2Error::Invalid("--num-inference-steps must be at least 1".into()));
    }
    let shape = latent_shape(model, s);
    let cfg = s.guidance_scale > 1.0;
    let text_dim = model.transformer.text_dim;
    for (name, e) in [("prompt_embeds", prompt_embeds), ("negative_prompt_embeds", negative_embeds)] {
        if e.dims.len() != 3 || e.dims[0] != 1 || e.dims[2] != text_dim {
            return Err(Stage2Error::Invalid(format!("{name}: expected [1, L, {text_dim}], got {:?}", e.dims)));
        }
    }
    if cfg && prompt_embeds.dims != negative_embeds.dims {
        return Err(Stage2Error::Invalid(format!(
            "prompt_embeds {:?} and negative_prompt_embeds {:?} must have the same shape",
            prompt_embeds.dims, negative_embeds.dims
        )));
    }

    let mut latents = match &s.latents_in {
        Some(path) => {
            let mut file = crate::safetensors_io::load(path)?;
            let t = file.remove("latents").ok_or_else(|| {
                Stage2Error::Invalid(format!("{}: no tensor named `latents`", path.display()))
            })?;
            if t.dims != shape {
                return Err(Stage2Error::Invalid(format!(
                    "{}: `latents` is {:?}, expected {shape:?} for {}x{}x{} frames",
                    path.display(),
                    t.dims,
                    s.height,
                    s.width,
                    s.frames
                )));
            }
            t.to_f32_vec()
        }
        None => super::noise::gaussian(s.seed, shape.iter().product::<i64>() as usize),
    };

    let batch = if cfg { 2 } else { 1 };
    let tshape = TransformerShape { batch, frames: shape[2], height: shape[3], width: shape[4], text_len: prompt_embeds.dims[1] };
    let graph = transformer(&model.transformer, &tshape, s.dtype)
        .map_err(|source| ComponentError::Graph { component: "transformer".into(), source })?;
    let weights = model.weights("transformer").map_err(|e| Stage2Error::Invalid(e.to_string()))?;
    let (program, times) = prepare("transformer", graph, &s.pipeline, client, cache, &weights)?;

    let text = if cfg { concat_batch(&[prompt_embeds, negative_embeds]) } else { prompt_embeds.clone() };
    let mut inputs = HashMap::from([("encoder_hidden_states".to_string(), text.convert(s.dtype))]);
    let sched_err = |e: crate::scheduler::SchedulerError| Stage2Error::Scheduler(e.to_string());
    let mut scheduler: Box<dyn Scheduler> = Box::new(UniPcScheduler::new(&model.scheduler).map_err(sched_err)?);
    scheduler.set_shift(s.flow_shift).map_err(sched_err)?;
    scheduler.set_timesteps(s.steps).map_err(sched_err)?;
    let timesteps: Vec<f64> = scheduler.timesteps().to_vec();

    let run = |latents: &[f32], t: f64, inputs: &mut HashMap<String, HostTensor>| -> Result<Vec<f32>, Stage2Error> {
        let one = HostTensor::from_f32(shape.clone(), latents).expect("latent sizes match");
        let hidden = if cfg { concat_batch(&[&one, &one]) } else { one };
        inputs.insert("hidden_states".into(), hidden.convert(s.dtype));
        inputs.insert("timestep".into(), HostTensor::from_f32(vec![batch], &vec![t as f32; batch as usize]).expect("[B]"));
        let out = program.run(inputs)?.remove(0).1.to_f32_vec();
        if !cfg {
            return Ok(out);
        }
        let n = out.len() / 2;
        let g = s.guidance_scale as f32;
        Ok((0..n).map(|i| out[n + i] + g * (out[i] - out[n + i])).collect())
    };

    let mut warmup = Vec::new();
    for _ in 0..s.warmup_steps {
        let start = Instant::now();
        run(&latents, timesteps[0], &mut inputs)?;
        warmup.push(start.elapsed());
    }
    let bar = indicatif::ProgressBar::new(timesteps.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("denoising {bar:30} {pos}/{len} [{elapsed} < {eta}] {msg}").expect("valid template"),
    );
    let mut steps = Vec::new();
    for &t in &timesteps {
        let start = Instant::now();
        let noise_pred = run(&latents, t, &mut inputs)?;
        latents = scheduler.step(&noise_pred, &latents, None).map_err(sched_err)?;
        let d = start.elapsed();
        steps.push(d);
        bar.set_message(format!("{} /step", crate::timing::format_duration(steps.iter().sum::<Duration>() / steps.len() as u32)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let first_step = warmup.first().copied().unwrap_or(steps[0]);
    let latents = HostTensor::from_f32(shape, &latents).expect("latent sizes match");
    Ok((latents, Stage2Report { transformer: times, first_step, steps, warmup }))
}

/// Tensors of the same shape [1, ...] stacked along the batch dim.
pub fn concat_batch(ts: &[&HostTensor]) -> HostTensor {
    let mut dims = ts[0].dims.clone();
    dims[0] = ts.iter().map(|t| t.dims[0]).sum();
    let data = ts.iter().flat_map(|t| t.data.iter().copied()).collect();
    HostTensor { dtype: ts[0].dtype, dims, data }
}
