//! Which model a stage runs: a diffusers-format directory (`--model-dir`) or a built-in preset
//! (`--model NAME`, materialised once into vidlower's cache dir as a model directory, so both
//! paths read the same files).

use crate::weights::{WeightStore, WeightsError};
use std::path::{Path, PathBuf};
use vidlower_frontends::registry::{self, Defaults, Family};
use vidlower_frontends::wan::config::{read_json, ConfigError, Umt5Config, UniPcConfig, WanTransformerConfig, WanVaeConfig};

/// What the user named.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    Preset(String),
    Dir(PathBuf),
}

impl ModelSpec {
    /// The id written to `generation_config.json`: the preset name, or the directory.
    pub fn id(&self) -> String {
        match self {
            ModelSpec::Preset(n) => n.clone(),
            ModelSpec::Dir(d) => d.display().to_string(),
        }
    }

    /// Reads back an id written by [`ModelSpec::id`].
    pub fn from_id(id: &str) -> ModelSpec {
        if registry::preset(id).is_some() {
            ModelSpec::Preset(id.to_string())
        } else {
            ModelSpec::Dir(PathBuf::from(id))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model `{name}`; built-in presets: {known} (or give a diffusers directory with --model-dir)")]
    UnknownPreset { name: String, known: String },
    #[error("--model-dir {}: not a directory", path.display())]
    NotADir { path: PathBuf },
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("materialising preset `{name}` into {}: {message}", dir.display())]
    Preset { name: String, dir: PathBuf, message: String },
}

/// A Wan model: its directory, configs and the defaults for generation.
#[derive(Clone, Debug)]
pub struct WanModel {
    pub spec: ModelSpec,
    pub dir: PathBuf,
    pub defaults: Defaults,
    pub transformer: WanTransformerConfig,
    pub vae: WanVaeConfig,
    pub text_encoder: Umt5Config,
    pub scheduler: UniPcConfig,
}

impl WanModel {
    /// Opens the model `spec` names (materialising a preset on first use).
    pub fn open(spec: &ModelSpec) -> Result<Self, ModelError> {
        let (dir, defaults) = match spec {
            ModelSpec::Preset(name) => {
                let preset = registry::preset(name).ok_or_else(|| ModelError::UnknownPreset {
                    name: name.clone(),
                    known: registry::presets().iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
                })?;
                (super::preset::materialise(&preset)?, preset.defaults.clone())
            }
            ModelSpec::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(ModelError::NotADir { path: dir.clone() });
                }
                let family = registry::detect(dir)?;
                (dir.clone(), family.defaults())
            }
        };
        debug_assert_eq!(registry::detect(&dir).ok(), Some(Family::Wan));
        Ok(WanModel {
            spec: spec.clone(),
            transformer: read_json(&dir.join("transformer/config.json"))?,
            vae: read_json(&dir.join("vae/config.json"))?,
            text_encoder: read_json(&dir.join("text_encoder/config.json"))?,
            scheduler: read_json(&dir.join("scheduler/scheduler_config.json"))?,
            dir,
            defaults,
        })
    }

    pub fn component_dir(&self, component: &str) -> PathBuf {
        self.dir.join(component)
    }

    pub fn weights(&self, component: &str) -> Result<WeightStore, ModelError> {
        Ok(WeightStore::open(&self.component_dir(component))?)
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer/tokenizer.json")
    }
}

/// The directory a preset is materialised into.
pub fn preset_dir(name: &str) -> Option<PathBuf> {
    crate::cache::cache_root().map(|r| r.join("presets").join(name))
}

/// Whether `dir` holds a model directory (it has a model_index.json).
pub fn is_model_dir(dir: &Path) -> bool {
    dir.join("model_index.json").is_file()
}
