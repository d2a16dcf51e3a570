//! `stage2_checkpoint.safetensors`: the denoising loop's state after some steps, so an interrupted
//! stage 2 continues (`--resume`) and ends with exactly the latents of an uninterrupted run.
//!
//! Tensors: `latents` (f32, the latent shape) and the scheduler's arrays as `scheduler.<name>` (each in
//! the precision the scheduler keeps it, so the round trip is bit-exact). Header metadata (JSON strings):
//! `format` (`vidlower-stage2-checkpoint`), `version`, `run` (the [`RunIdentity`]: what the checkpoint
//! belongs to), `steps_done`, `scheduler` (class, steps, step index, counters) and `lowering` (how the
//! transformer was lowered; informational). Per-step scheduler noise needs no RNG state: step i's noise
//! is drawn from (seed, i).
//!
//! Written atomically (temp file beside it, fsync, rename), so the file on disk is always a whole
//! checkpoint, even when the process is killed while writing.

use crate::safetensors_io::{self, SafetensorsError};
use crate::scheduler::{SchedulerState, StateArray};
use crate::tensor::HostTensor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vidlower_frontends::family::Embeddings;

pub const CHECKPOINT_FILE: &str = "stage2_checkpoint.safetensors";
const FORMAT: &str = "vidlower-stage2-checkpoint";
const VERSION: u32 = 1;

/// What a checkpoint belongs to: everything that decides the latents of steps not yet taken. A resume
/// with any of it different is refused, naming the field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The preset name or model directory.
    pub model: String,
    pub family: String,
    pub height: i64,
    pub width: i64,
    pub frames: i64,
    pub latent_shape: Vec<i64>,
    pub seed: u64,
    /// SHA-256 of the `--latents-in` file; `None` when the noise came from the seed.
    pub latents_in_sha256: Option<String>,
    pub steps: usize,
    pub guidance_scale: f64,
    pub flow_shift: Option<f64>,
    pub dynamic_cfg: bool,
    pub dtype: String,
    /// The scheduler class run (the config's, or `--scheduler`).
    pub scheduler_class: String,
    /// SHA-256 of `scheduler/scheduler_config.json`.
    pub scheduler_config_sha256: String,
    /// SHA-256 of the stage-1 embeddings (names, dtypes, shapes and bytes).
    pub embeddings_sha256: String,
    /// SHA-256 of caller-given per-step noise (library callers replaying another run's noise).
    pub step_noise_sha256: Option<String>,
    /// `--lora`: each LoRA as "file-name xscale sha256 PREFIX" (none in checkpoints written before LoRAs).
    #[serde(default)]
    pub lora: Vec<String>,
    /// `--window-size` (none in checkpoints written before it was recorded).
    #[serde(default)]
    pub window_size: Option<(i64, i64)>,
}

impl RunIdentity {
    /// Each field as (what the user changes to change it, its value as shown), in the order a
    /// mismatch is reported: flags first, then files.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let short = |h: &str| h.chars().take(16).collect::<String>();
        vec![
            ("--model", self.model.clone()),
            ("model family", self.family.clone()),
            ("--height", self.height.to_string()),
            ("--width", self.width.to_string()),
            ("--frames", self.frames.to_string()),
            ("latent shape", format!("{:?}", self.latent_shape)),
            ("--num-inference-steps", self.steps.to_string()),
            ("--seed", self.seed.to_string()),
            (
                "--latents-in",
                self.latents_in_sha256.as_deref().map_or("(none: noise from --seed)".into(), |h| format!("a file with sha256 {}", short(h))),
            ),
            ("--guidance-scale", format!("{:?}", self.guidance_scale)),
            ("--flow-shift", self.flow_shift.map_or("(none)".into(), |s| format!("{s:?}"))),
            ("--use-dynamic-cfg", if self.dynamic_cfg { "on" } else { "off" }.into()),
            ("--dtype", self.dtype.clone()),
            ("--lora", if self.lora.is_empty() { "(none)".into() } else { self.lora.join(", ") }),
            ("--window-size", self.window_size.map_or("(none)".into(), |(l, r)| format!("{l},{r}"))),
            ("--scheduler", self.scheduler_class.clone()),
            ("scheduler_config.json with sha256", short(&self.scheduler_config_sha256)),
            ("stage-1 embeddings with sha256", short(&self.embeddings_sha256)),
            ("step noise with sha256", self.step_noise_sha256.as_deref().map_or("(none)".into(), short)),
        ]
    }

    /// The first field where `self` (the checkpoint's) and `run` (this run's) differ, as
    /// `was written for --seed 42, this run has --seed 7`.
    pub fn difference(&self, run: &RunIdentity) -> Option<String> {
        self.fields().into_iter().zip(run.fields()).find(|(a, b)| a.1 != b.1).map(|((name, was), (_, now))| {
            format!("was written for {name} {was}, this run has {name} {now}")
        })
    }
}

/// SHA-256 (hex) of the embeddings: each tensor's name, dtype, shape and bytes, in name order.
pub fn embeddings_sha256(embeddings: &Embeddings) -> String {
    let mut h = Sha256::new();
    for (name, t) in embeddings {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(t.dtype.to_string().as_bytes());
        for d in &t.dims {
            h.update(d.to_le_bytes());
        }
        h.update((t.data.len() as u64).to_le_bytes());
        h.update(&t.data);
    }
    hex::encode(h.finalize())
}

/// SHA-256 (hex) of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The state of a denoising loop after `steps_done` steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub run: RunIdentity,
    pub steps_done: usize,
    /// The latents the next step takes.
    pub latents: Vec<f32>,
    pub scheduler: SchedulerState,
    /// How the transformer was lowered (the pipeline options' description): a different lowering
    /// resumes, but its latents may differ in the last bits.
    pub lowering: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    File(#[from] SafetensorsError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The scheduler's metadata entry (its arrays are tensors).
#[derive(Serialize, Deserialize)]
struct SchedulerHeader {
    class: String,
    steps: usize,
    step_index: usize,
    counters: BTreeMap<String, u64>,
}

const SCHEDULER_PREFIX: &str = "scheduler.";

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let invalid = |message: String| CheckpointError::Invalid { path: path.into(), message };
        let shape = self.run.latent_shape.clone();
        let latents = HostTensor::from_f32(shape, &self.latents).map_err(|e| invalid(format!("latents: {e}")))?;
        let mut tensors = vec![("latents".to_string(), latents)];
        for (name, a) in &self.scheduler.arrays {
            let t = match a {
                StateArray::F32(v) => HostTensor::from_f32(vec![v.len() as i64], v),
                StateArray::F64(v) => HostTensor::from_f64(vec![v.len() as i64], v),
            };
            tensors.push((format!("{SCHEDULER_PREFIX}{name}"), t.expect("a 1-d tensor of its own length")));
        }
        let s = &self.scheduler;
        let header = SchedulerHeader { class: s.class.clone(), steps: s.steps, step_index: s.step_index, counters: s.counters.clone() };
        let metadata: BTreeMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("version", VERSION.to_string()),
            ("run", json(&self.run)),
            ("steps_done", self.steps_done.to_string()),
            ("scheduler", json(&header)),
            ("lowering", self.lowering.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(safetensors_io::save_with_metadata(path, &tensors, &metadata)?)
    }

    /// Reads a checkpoint written by [`save`](Checkpoint::save); errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let invalid = |message: String| CheckpointError::Invalid { path: path.into(), message };
        let (mut tensors, meta) = safetensors_io::load_with_metadata(path)?;
        let get = |k: &str| meta.get(k).ok_or_else(|| invalid(format!("no `{k}` in the header (not a vidlower stage-2 checkpoint)")));
        if get("format")? != FORMAT {
            return Err(invalid(format!("format `{}` is not {FORMAT}", get("format")?)));
        }
        let version = get("version")?;
        if version != &VERSION.to_string() {
            return Err(invalid(format!("checkpoint version {version} is not supported by this vidlower (it reads version {VERSION})")));
        }
        let run: RunIdentity = serde_json::from_str(get("run")?).map_err(|e| invalid(format!("`run`: {e}")))?;
        let header: SchedulerHeader = serde_json::from_str(get("scheduler")?).map_err(|e| invalid(format!("`scheduler`: {e}")))?;
        let steps_done: usize = get("steps_done")?.parse().map_err(|e| invalid(format!("`steps_done`: {e}")))?;
        let lowering = get("lowering")?.clone();
        let latents = tensors.remove("latents").ok_or_else(|| invalid("no tensor `latents`".into()))?;
        if latents.dims != run.latent_shape || latents.dtype != vidlower_ir::DType::F32 {
            return Err(invalid(format!(
                "`latents` is {} {:?}, expected f32 {:?}",
                latents.dtype, latents.dims, run.latent_shape
            )));
        }
        let mut scheduler = SchedulerState::new(&header.class, header.steps, header.step_index);
        scheduler.counters = header.counters;
        for (name, t) in tensors {
            let Some(key) = name.strip_prefix(SCHEDULER_PREFIX) else {
                return Err(invalid(format!("unexpected tensor `{name}`")));
            };
            let array = match t.dtype {
                vidlower_ir::DType::F32 => StateArray::F32(t.to_f32_vec()),
                vidlower_ir::DType::F64 => StateArray::F64(t.to_f64_vec()),
                other => return Err(invalid(format!("tensor `{name}` is {other}, expected f32 or f64"))),
            };
            scheduler.arrays.insert(key.to_string(), array);
        }
        if steps_done != scheduler.step_index || steps_done > run.steps {
            return Err(invalid(format!(
                "steps_done {steps_done} does not match the scheduler's step index {} of {} steps",
                scheduler.step_index, run.steps
            )));
        }
        Ok(Checkpoint { run, steps_done, latents: latents.to_f32_vec(), scheduler, lowering })
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

/// Removes `dir`'s checkpoint (after stage 2 wrote its latents, which supersede it), and any temp
/// file a process killed while writing one left; no error when there is none.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    let stale_prefix = format!(".{CHECKPOINT_FILE}.");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&stale_prefix) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    match std::fs::remove_file(dir.join(CHECKPOINT_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn identity() -> RunIdentity {
        RunIdentity {
            model: "wan2.1-tiny".into(),
            family: "wan".into(),
            height: 64,
            width: 96,
            frames: 9,
            latent_shape: vec![1, 2, 3],
            seed: 42,
            latents_in_sha256: None,
            steps: 8,
            guidance_scale: 5.0,
            flow_shift: Some(3.0),
            dynamic_cfg: false,
            dtype: "bf16".into(),
            scheduler_class: "UniPCMultistepScheduler".into(),
            scheduler_config_sha256: sha256(b"config"),
            embeddings_sha256: sha256(b"embeddings"),
            step_noise_sha256: None,
            lora: Vec::new(),
            window_size: None,
        }
    }

    #[test]
    fn round_trips_bit_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        let mut scheduler = SchedulerState::new("UniPCMultistepScheduler", 8, 3);
        scheduler.counters.insert("lower_order_nums".into(), 2);
        scheduler.arrays.insert("model_outputs.0".into(), StateArray::F64(vec![0.1, -1e-300, f64::MIN_POSITIVE]));
        scheduler.arrays.insert("last_sample".into(), StateArray::F32(vec![0.1, f32::NAN, -0.0]));
        let c = Checkpoint {
            run: identity(),
            steps_done: 3,
            latents: vec![0.1, 1e-40, -3.0e38, 7.0, -0.0, 1.0 / 3.0],
            scheduler,
            lowering: "attention auto".into(),
        };
        c.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.run, c.run);
        assert_eq!((back.steps_done, &back.lowering), (3, &c.lowering));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.latents), bits(&c.latents));
        assert_eq!(back.scheduler.arrays["model_outputs.0"], c.scheduler.arrays["model_outputs.0"]);
        match &back.scheduler.arrays["last_sample"] {
            StateArray::F32(v) => assert_eq!(bits(v), bits(&[0.1, f32::NAN, -0.0])),
            other => panic!("{other:?}"),
        }
        assert_eq!(back.scheduler.counters, c.scheduler.counters);
        // Only the checkpoint is in the directory (no temp file left).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(dir.path().join(format!(".{CHECKPOINT_FILE}.abc123.tmp")), b"half").unwrap();
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the checkpoint and a stale temp file are gone");
    }

    #[test]
    fn differences_name_the_flag_and_both_values() {
        let a = identity();
        assert_eq!(a.difference(&a.clone()), None);
        let b = RunIdentity { seed: 7, ..a.clone() };
        assert_eq!(a.difference(&b).unwrap(), "was written for --seed 42, this run has --seed 7");
        let c = RunIdentity { embeddings_sha256: sha256(b"other"), ..a.clone() };
        let msg = a.difference(&c).unwrap();
        assert!(msg.starts_with("was written for stage-1 embeddings with sha256 "), "{msg}");
        let d = RunIdentity { flow_shift: None, guidance_scale: 6.0, ..a.clone() };
        assert_eq!(a.difference(&d).unwrap(), "was written for --guidance-scale 5.0, this run has --guidance-scale 6.0");
        let e = RunIdentity { window_size: Some((4, 2)), ..a.clone() };
        assert_eq!(a.difference(&e).unwrap(), "was written for --window-size (none), this run has --window-size 4,2");
    }

    #[test]
    fn other_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        safetensors_io::save(&path, &[("latents".into(), HostTensor::from_f32(vec![1], &[0.0]).unwrap())]).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains(CHECKPOINT_FILE) && e.contains("not a vidlower stage-2 checkpoint"), "{e}");
    }
}
