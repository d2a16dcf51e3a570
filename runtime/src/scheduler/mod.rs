//! Diffusion schedulers, host-side (f64 / f32 math on latents between executable calls), behind one
//! [`Scheduler`] trait that a family-generic denoising loop drives:
//!
//! ```text
//! let mut s = scheduler::from_config_file(&model_dir.join("scheduler/scheduler_config.json"))?;
//! s.set_shift(flow_shift)?;                 // only where the family has a shift flag (Wan, Hunyuan)
//! s.set_timesteps(steps)?;
//! latents *= s.init_noise_sigma();
//! for &t in s.timesteps().to_vec().iter() {
//!     let v = guidance(transformer(latents, t));    // t as the family's transformer wants it
//!     let noise = s.needs_noise().then(|| gaussian(latents.len()));
//!     latents = s.step(&v, &latents, noise.as_deref())?;
//! }
//! ```
//!
//! Every scheduler here has `scale_model_input(x) = x` in diffusers, so the trait has no such method.
//! diffusers 0.42.1 is the reference: `scheduling_{unipc_multistep,ddim_cogvideox,dpm_cogvideox,
//! flow_match_euler_discrete}.py`.

pub mod cogvideox_ddim;
pub mod cogvideox_dpm;
pub mod cogvideox_schedule;
pub mod flow_match_euler;
pub mod numerics;
pub mod state;
pub mod unipc;

pub use state::{SchedulerState, StateArray};

use std::path::{Path, PathBuf};

/// One diffusers scheduler as the pipelines drive it. The step index is internal state: call
/// [`set_timesteps`](Scheduler::set_timesteps), then [`step`](Scheduler::step) once per entry of
/// [`timesteps`](Scheduler::timesteps), in order.
pub trait Scheduler: Send {
    /// Builds the schedule for `steps` inference steps (the config's shift, spacing, offsets applied, or the
    /// shift from [`set_shift`](Scheduler::set_shift)) and resets the multistep state.
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError>;
    /// Overrides the config's flow shift for the next `set_timesteps` (Wan's `--flow-shift`; diffusers'
    /// `UniPCMultistepScheduler.from_config(..., flow_shift=)` / `FlowMatchEulerDiscreteScheduler.set_shift`).
    /// Schedulers without a shift refuse it.
    fn set_shift(&mut self, shift: f64) -> Result<(), SchedulerError>;
    /// What the transformer gets, one per step (the pipeline's `t`): integer-valued for UniPC and the
    /// CogVideoX schedulers (diffusers holds int64), f32-valued floats for flow-match Euler.
    fn timesteps(&self) -> &[f64];
    /// The factor diffusers multiplies the initial noise by (`prepare_latents`); 1.0 for all schedulers here.
    fn init_noise_sigma(&self) -> f64;
    /// Steps taken since `set_timesteps`.
    fn step_index(&self) -> usize;
    /// Whether the next [`step`](Scheduler::step) takes a standard-normal `noise` of the sample's length
    /// (the CogVideoX DPM scheduler's per-step noise).
    fn needs_noise(&self) -> bool;
    /// One step: the model output (after guidance) and the current sample -> the next sample. `noise` is
    /// drawn by the caller exactly when [`needs_noise`](Scheduler::needs_noise) (so tests can inject
    /// diffusers' noise); it is an error to pass it otherwise or to omit it then.
    fn step(&mut self, model_output: &[f32], sample: &[f32], noise: Option<&[f32]>)
        -> Result<Vec<f32>, SchedulerError>;
    /// One line for logs: class and the config values that matter, e.g.
    /// `CogVideoXDPMScheduler (v_prediction, trailing, snr_shift_scale 1.0)`.
    fn describe(&self) -> String;
    /// The multistep state after the steps taken so far (step index, counters, history arrays), for a
    /// checkpoint. The schedule is not part of it: it is rebuilt from the config.
    fn state(&self) -> SchedulerState;
    /// Continues from `state` (written by [`state`](Scheduler::state) of a scheduler of the same class and
    /// config after `set_timesteps` with the same steps): call `set_timesteps` first, then `restore`; the
    /// next [`step`](Scheduler::step) is then exactly the step the saved scheduler would have taken next.
    fn restore(&mut self, state: &SchedulerState) -> Result<(), SchedulerError>;
}

/// The `_class_name`s [`from_config_file`] accepts.
pub const SUPPORTED_CLASSES: [&str; 4] =
    ["UniPCMultistepScheduler", "CogVideoXDDIMScheduler", "CogVideoXDPMScheduler", "FlowMatchEulerDiscreteScheduler"];

/// Reads a diffusers `scheduler_config.json` and builds the scheduler its `_class_name` names. Unknown
/// fields are ignored and missing ones take diffusers' defaults, as `from_config` does; an unknown class or a
/// value this implementation does not cover is an error naming the file, the field and what is supported.
pub fn from_config_file(path: &Path) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let file_err = |message: String| SchedulerError::File { path: path.into(), message };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    from_config_value(&value).map_err(|e| match e {
        SchedulerError::File { .. } | SchedulerError::InFile { .. } => e,
        e => SchedulerError::InFile { path: path.into(), source: Box::new(e) },
    })
}

/// [`from_config_file`] on an already parsed config (errors do not name a file).
pub fn from_config_value(value: &serde_json::Value) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let class = match value.get("_class_name") {
        Some(serde_json::Value::String(c)) => c.as_str(),
        Some(other) => return Err(SchedulerError::UnknownClass { class: other.to_string() }),
        None => return Err(SchedulerError::UnknownClass { class: "(missing)".into() }),
    };
    Ok(match class {
        "UniPCMultistepScheduler" => {
            let cfg: unipc::UniPcConfig = parse_config(value)?;
            Box::new(unipc::UniPcScheduler::new(&cfg)?)
        }
        "CogVideoXDDIMScheduler" => {
            let cfg = cogvideox_schedule::CogVideoXSchedulerConfig::from_json(value, cogvideox_schedule::Kind::Ddim)?;
            Box::new(cogvideox_ddim::CogVideoXDdimScheduler::new(&cfg)?)
        }
        "CogVideoXDPMScheduler" => {
            let cfg = cogvideox_schedule::CogVideoXSchedulerConfig::from_json(value, cogvideox_schedule::Kind::Dpm)?;
            Box::new(cogvideox_dpm::CogVideoXDpmScheduler::new(&cfg)?)
        }
        "FlowMatchEulerDiscreteScheduler" => {
            let cfg: flow_match_euler::FlowMatchEulerConfig = parse_config(value)?;
            Box::new(flow_match_euler::FlowMatchEulerScheduler::new(&cfg)?)
        }
        other => return Err(SchedulerError::UnknownClass { class: format!("{other:?}") }),
    })
}

/// Deserializes a config object into `T` (a `#[serde(default)]` struct: unknown fields ignored, missing ones
/// defaulted). serde's message does not say which field was wrong, so on failure each field is tried alone
/// and the first that fails by itself is named.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, SchedulerError> {
    serde_json::from_value::<T>(value.clone()).map_err(|e| {
        let culprit = value.as_object().and_then(|obj| {
            obj.iter().find(|(k, v)| {
                let one = serde_json::Value::Object([((*k).clone(), (*v).clone())].into_iter().collect());
                serde_json::from_value::<T>(one).is_err()
            })
        });
        match culprit {
            Some((k, v)) => SchedulerError::Parse(format!("{k} = {v}: {e}")),
            None => SchedulerError::Parse(e.to_string()),
        }
    })
}

/// Why a scheduler config, schedule or step was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    #[error("{scheduler} scheduler config: {field} = {value} is not supported: {reason}")]
    UnsupportedConfig { scheduler: &'static str, field: &'static str, value: String, reason: String },
    #[error("scheduler config: _class_name = {class} is not supported: expected one of {}", SUPPORTED_CLASSES.join(", "))]
    UnknownClass { class: String },
    #[error("scheduler config: {0}")]
    Parse(String),
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    InFile { path: PathBuf, source: Box<SchedulerError> },
    #[error("scheduler: flow shift = {0} must be finite and > 0")]
    InvalidFlowShift(f64),
    #[error("{scheduler} has no flow shift (it is not a flow-matching scheduler); got shift = {shift}")]
    ShiftNotSupported { scheduler: &'static str, shift: f64 },
    #[error("{scheduler}: {steps} inference steps: {reason}")]
    InvalidSteps { scheduler: &'static str, steps: usize, reason: String },
    #[error("scheduler: step called before set_timesteps")]
    NoTimesteps,
    #[error("scheduler: step called after all {0} steps were taken; call set_timesteps to start again")]
    Finished(usize),
    #[error("scheduler: model_output has {model_output} elements but sample has {sample}")]
    LengthMismatch { model_output: usize, sample: usize },
    #[error("scheduler: sample has {got} elements but earlier steps of this schedule had {expected}")]
    SampleSizeChanged { got: usize, expected: usize },
    #[error("{scheduler}: step {step_index} needs noise of the sample's length {len}, got {got}")]
    Noise { scheduler: &'static str, step_index: usize, len: usize, got: String },
    #[error("{scheduler}: step {step_index} takes no noise (needs_noise() is false) but was given some")]
    UnexpectedNoise { scheduler: &'static str, step_index: usize },
    #[error("{scheduler}: step {step_index} (timestep {timestep}): {reason}")]
    NonFinite { scheduler: &'static str, step_index: usize, timestep: f64, reason: String },
    #[error("UniPC scheduler: the order-{order} coefficient system is singular at step {step_index}")]
    Singular { order: usize, step_index: usize },
    #[error("scheduler state: {0}")]
    State(String),
}

impl SchedulerError {
    /// The config field an [`UnsupportedConfig`](SchedulerError::UnsupportedConfig) error names (also through
    /// [`InFile`](SchedulerError::InFile)); `None` for other errors.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SchedulerError::UnsupportedConfig { field, .. } => Some(field),
            SchedulerError::InFile { source, .. } => source.field(),
            _ => None,
        }
    }
}

/// An [`UnsupportedConfig`](SchedulerError::UnsupportedConfig) error.
pub(crate) fn unsupported(
    scheduler: &'static str,
    field: &'static str,
    value: impl std::fmt::Debug,
    reason: impl Into<String>,
) -> SchedulerError {
    SchedulerError::UnsupportedConfig { scheduler, field, value: format!("{value:?}"), reason: reason.into() }
}

/// The checks every `step` starts with: a schedule, a step left, matching lengths, noise iff wanted.
pub(crate) fn check_step(
    scheduler: &'static str,
    steps: usize,
    step_index: usize,
    model_output: &[f32],
    sample: &[f32],
    noise: Option<&[f32]>,
    wants_noise: bool,
) -> Result<(), SchedulerError> {
    if steps == 0 {
        return Err(SchedulerError::NoTimesteps);
    }
    if step_index >= steps {
        return Err(SchedulerError::Finished(steps));
    }
    if model_output.len() != sample.len() {
        return Err(SchedulerError::LengthMismatch { model_output: model_output.len(), sample: sample.len() });
    }
    match (noise, wants_noise) {
        (Some(n), true) if n.len() == sample.len() => Ok(()),
        (Some(n), true) => {
            Err(SchedulerError::Noise { scheduler, step_index, len: sample.len(), got: format!("{} values", n.len()) })
        }
        (None, true) => Err(SchedulerError::Noise { scheduler, step_index, len: sample.len(), got: "none".into() }),
        (Some(_), false) => Err(SchedulerError::UnexpectedNoise { scheduler, step_index }),
        (None, false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: serde_json::Value) -> SchedulerError {
        match from_config_value(&v) {
            Ok(s) => panic!("expected an error, got {}", s.describe()),
            Err(e) => e,
        }
    }

    #[test]
    fn dispatches_on_class_name() {
        let cases = [
            (
                json!({"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction", "use_flow_sigmas": true, "flow_shift": 3.0}),
                "UniPCMultistepScheduler",
            ),
            (
                json!({"_class_name": "CogVideoXDDIMScheduler", "prediction_type": "v_prediction", "timestep_spacing": "trailing"}),
                "CogVideoXDDIMScheduler",
            ),
            (
                json!({"_class_name": "CogVideoXDPMScheduler", "beta_schedule": "scaled_linear"}),
                "CogVideoXDPMScheduler",
            ),
            (
                json!({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 5.0}),
                "FlowMatchEulerDiscreteScheduler",
            ),
        ];
        for (v, class) in cases {
            let s = from_config_value(&v).unwrap();
            assert!(s.describe().starts_with(class), "{}", s.describe());
        }
    }

    #[test]
    fn unknown_or_missing_class_lists_the_supported_ones() {
        for v in [json!({"_class_name": "EulerDiscreteScheduler"}), json!({"shift": 1.0}), json!({"_class_name": 3})] {
            let e = err(v);
            assert!(matches!(e, SchedulerError::UnknownClass { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains("_class_name") && SUPPORTED_CLASSES.iter().all(|c| msg.contains(c)), "{msg}");
        }
    }

    #[test]
    fn file_errors_name_the_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler_config.json");
        let missing = from_config_file(&path).err().unwrap();
        assert!(
            matches!(missing, SchedulerError::File { .. }) && missing.to_string().contains("scheduler_config.json")
        );
        std::fs::write(&path, "{ not json").unwrap();
        assert!(from_config_file(&path).err().unwrap().to_string().starts_with(&path.display().to_string()));
        std::fs::write(&path, r#"{"_class_name": "CogVideoXDDIMScheduler", "timestep_spacing": "karras"}"#).unwrap();
        let e = from_config_file(&path).err().unwrap();
        let msg = e.to_string();
        assert_eq!(e.field(), Some("timestep_spacing"));
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains("timestep_spacing = \"karras\"") && msg.contains("\"trailing\""), "{msg}");
        std::fs::write(&path, r#"{"_class_name": "PNDMScheduler"}"#).unwrap();
        let e = from_config_file(&path).err().unwrap().to_string();
        assert!(e.starts_with(&path.display().to_string()) && e.contains("PNDMScheduler"), "{e}");
        std::fs::write(&path, r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": "five"}"#).unwrap();
        let e = from_config_file(&path).err().unwrap().to_string();
        assert!(e.starts_with(&path.display().to_string()) && e.contains("shift"), "{e}");
    }

    #[test]
    fn shift_is_refused_where_there_is_none() {
        let mut s = from_config_value(&json!({"_class_name": "CogVideoXDDIMScheduler"})).unwrap();
        assert_eq!(
            s.set_shift(5.0),
            Err(SchedulerError::ShiftNotSupported { scheduler: "CogVideoXDDIMScheduler", shift: 5.0 })
        );
        let mut f = from_config_value(&json!({"_class_name": "FlowMatchEulerDiscreteScheduler"})).unwrap();
        f.set_shift(7.0).unwrap();
        assert_eq!(f.set_shift(-1.0), Err(SchedulerError::InvalidFlowShift(-1.0)));
    }
}
