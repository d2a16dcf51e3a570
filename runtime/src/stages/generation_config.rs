//! `generation_config.json`, written by stage 1 and completed by the later stages: what was asked
//! for, so each stage can be re-run alone and a run can be reproduced.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings of one generation. Stage 1 fills the prompt fields; later stages add theirs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GenerationConfig {
    pub prompt: String,
    pub negative_prompt: String,
    /// The preset name or model directory given to stage 1.
    pub model_id: String,
    pub max_sequence_length: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_shift: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_dynamic_cfg: Option<bool>,
    /// `--scheduler`: the scheduler class run instead of the config's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Where the initial noise came from: `seed` or a `--latents-in` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latents_in: Option<PathBuf>,
    /// `--lora`: each LoRA stage 2 merged, as "file-name xscale sha256 PREFIX".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lora: Vec<String>,
    /// `--window-size` [left, right]: it changes what the model computes, so a rerun needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_size: Option<(i64, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_video: Option<PathBuf>,
}

/// The first field of a JSON object `text` that the config cannot take, with serde's reason
/// (serde's own error gives a line and column, not the name): each field is tried alone on
/// top of the defaults.
fn bad_field(text: &str) -> Option<(String, String)> {
    let serde_json::Value::Object(fields) = serde_json::from_str(text).ok()? else { return None };
    let base = serde_json::to_value(GenerationConfig::default()).ok()?;
    fields.into_iter().find_map(|(k, v)| {
        let mut one = base.clone();
        one.as_object_mut()?.insert(k.clone(), v);
        serde_json::from_value::<GenerationConfig>(one).err().map(|e| (k, e.to_string()))
    })
}

#[derive(Debug, thiserror::Error)]
pub enum GenerationConfigError {
    #[error("{}: {source} (run stage 1 first, or point --input-dir at its output)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not a valid generation config: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{}: field `{field}`: {message}", path.display())]
    Field { path: PathBuf, field: String, message: String },
    #[error("{}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

pub const FILE_NAME: &str = "generation_config.json";

impl GenerationConfig {
    pub fn read(dir: &Path) -> Result<Self, GenerationConfigError> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|source| GenerationConfigError::Read { path: path.clone(), source })?;
        serde_json::from_str(&text).map_err(|source| match bad_field(&text) {
            Some((field, message)) => GenerationConfigError::Field { path, field, message },
            None => GenerationConfigError::Parse { path, source },
        })
    }

    /// Writes atomically (temp file + rename).
    pub fn write(&self, dir: &Path) -> Result<(), GenerationConfigError> {
        let path = dir.join(FILE_NAME);
        let err = |source| GenerationConfigError::Write { path: path.clone(), source };
        let text = serde_json::to_string_pretty(self).expect("plain data serializes");
        crate::atomic_file::write_atomic(&path, |w| std::io::Write::write_all(w, text.as_bytes())).map_err(err)
    }
}
