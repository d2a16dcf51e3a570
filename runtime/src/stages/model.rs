//! Which model a command runs: a diffusers-format directory (`--model-dir`) or a built-in preset
//! (`--model NAME`, materialised once into vidlower's cache dir as a model directory, so both
//! paths read the same files), opened through its family.

use crate::lora::{LoraError, LoraSet, LoraSpec};
use crate::weights::{WeightStore, WeightsError};
use std::path::PathBuf;
use std::sync::Arc;
use vidlower_frontends::family::{Component, Defaults, FamilyError, Model};
use vidlower_frontends::registry;

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
    Family(#[from] FamilyError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Lora(Box<LoraError>),
    #[error("materialising preset `{name}` into {}: {message}", dir.display())]
    Preset { name: String, dir: PathBuf, message: String },
}

/// A model opened through its family, with the defaults generation uses (a preset's own).
pub struct OpenedModel {
    pub spec: ModelSpec,
    pub model: Box<dyn Model>,
    pub defaults: Defaults,
    /// `--lora`: merged into the transformer's weights as they are uploaded.
    pub lora: Option<Arc<LoraSet>>,
}

impl std::ops::Deref for OpenedModel {
    type Target = dyn Model;
    fn deref(&self) -> &(dyn Model + 'static) {
        self.model.as_ref()
    }
}

impl OpenedModel {
    /// Opens the model `spec` names for `components` (materialising a preset on first use);
    /// only those components' files are read.
    pub fn open(spec: &ModelSpec, components: &[Component]) -> Result<Self, ModelError> {
        let (dir, preset_defaults) = match spec {
            ModelSpec::Preset(name) => {
                let preset = registry::preset(name).ok_or_else(|| ModelError::UnknownPreset {
                    name: name.clone(),
                    known: registry::presets().iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
                })?;
                (super::preset::materialise(&preset)?, Some(preset.defaults.clone()))
            }
            ModelSpec::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(ModelError::NotADir { path: dir.clone() });
                }
                (dir.clone(), None)
            }
        };
        let family = registry::detect(&dir)?;
        let model = family.open(&dir, components)?;
        let defaults = preset_defaults.unwrap_or_else(|| model.defaults());
        Ok(OpenedModel { spec: spec.clone(), model, defaults, lora: None })
    }

    /// Opens it for everything a generation runs.
    pub fn open_all(spec: &ModelSpec) -> Result<Self, ModelError> {
        Self::open(spec, &[Component::TextEncoder, Component::TextEncoder2, Component::Transformer, Component::VaeDecoder])
    }

    /// The weights of component `c` (its diffusers folder), with the LoRAs merged into the
    /// transformer's.
    pub fn weights(&self, c: Component) -> Result<WeightStore, ModelError> {
        let store = WeightStore::open(&self.model.dir().join(c.folder()))?;
        match (&self.lora, c) {
            (Some(lora), Component::Transformer) => store.with_lora(lora.clone(), c.name()).map_err(|e| ModelError::Lora(Box::new(e))),
            _ => Ok(store),
        }
    }

    /// Reads the `--lora` files and checks every key against the transformer's stored weights
    /// (names and shapes, headers only) before any work; none given: none attached.
    pub fn set_lora(&mut self, specs: &[LoraSpec]) -> Result<(), ModelError> {
        if specs.is_empty() {
            self.lora = None;
            return Ok(());
        }
        let lora = Arc::new(LoraSet::read(specs).map_err(|e| ModelError::Lora(Box::new(e)))?);
        self.lora = Some(lora);
        // Checked now (the store is opened again, with them, where the weights are uploaded).
        self.weights(Component::Transformer).map(|_| ()).inspect_err(|_| self.lora = None)
    }
}
