//! The model families vidlower knows, chosen from a model directory's `model_index.json`
//! (`_class_name`), and the built-in presets (tiny models with deterministic random weights).

use serde::Deserialize;
use std::path::Path;

/// A pipeline family. Each has one folder under `frontends/src/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `WanPipeline`: UMT5 + WanTransformer3DModel + AutoencoderKLWan, UniPC.
    Wan,
}

/// Default generation settings of a family or preset (what `vidlower models` shows).
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub height: i64,
    pub width: i64,
    pub frames: i64,
    pub steps: usize,
    pub guidance_scale: f64,
    pub fps: u32,
    pub flow_shift: f64,
    pub max_sequence_length: usize,
    pub seed: u64,
}

impl Family {
    pub const ALL: [Family; 1] = [Family::Wan];

    pub fn name(self) -> &'static str {
        match self {
            Family::Wan => "wan",
        }
    }

    /// The diffusers pipeline class names of this family.
    pub fn pipeline_classes(self) -> &'static [&'static str] {
        match self {
            Family::Wan => &["WanPipeline"],
        }
    }

    /// The seeds' stage-script defaults (Wan: 1280x720, 81 frames, 50 steps, CFG 5, 16 fps, shift 5).
    pub fn defaults(self) -> Defaults {
        match self {
            Family::Wan => Defaults {
                height: 720,
                width: 1280,
                frames: 81,
                steps: 50,
                guidance_scale: 5.0,
                fps: 16,
                flow_shift: 5.0,
                max_sequence_length: 512,
                seed: 42,
            },
        }
    }
}

/// A built-in model: configs compiled into vidlower, weights drawn from a seed.
#[derive(Clone, Debug)]
pub struct Preset {
    pub name: &'static str,
    pub family: Family,
    pub description: &'static str,
    pub defaults: Defaults,
    /// Component name -> its `config.json` text.
    pub configs: &'static [(&'static str, &'static str)],
    /// The tokenizer's `tokenizer.json`.
    pub tokenizer_json: &'static str,
    pub weight_seed: u64,
}

/// The presets, by name.
pub fn presets() -> Vec<Preset> {
    vec![crate::wan::tiny::preset()]
}

pub fn preset(name: &str) -> Option<Preset> {
    presets().into_iter().find(|p| p.name == name)
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Config(#[from] crate::wan::config::ConfigError),
    #[error("{}: `_class_name` is {class:?}; vidlower knows {known}", path.display())]
    UnknownPipeline { path: std::path::PathBuf, class: String, known: String },
}

#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
}

/// The family of the diffusers model directory `dir`, from its `model_index.json`.
pub fn detect(dir: &Path) -> Result<Family, RegistryError> {
    let path = dir.join("model_index.json");
    let index: ModelIndex = crate::wan::config::read_json(&path)?;
    Family::ALL
        .into_iter()
        .find(|f| f.pipeline_classes().contains(&index.class_name.as_str()))
        .ok_or_else(|| RegistryError::UnknownPipeline {
            path,
            class: index.class_name,
            known: Family::ALL.iter().flat_map(|f| f.pipeline_classes()).copied().collect::<Vec<_>>().join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_wan_from_model_index_and_refuses_others() {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/wan/model");
        assert_eq!(detect(&golden).unwrap(), Family::Wan);
        let dir = std::env::temp_dir().join(format!("vidlower-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "FluxPipeline"}"#).unwrap();
        let e = detect(&dir).unwrap_err().to_string();
        assert!(e.contains("FluxPipeline") && e.contains("WanPipeline") && e.contains("model_index.json"), "{e}");
        std::fs::remove_file(dir.join("model_index.json")).unwrap();
        assert!(detect(&dir).unwrap_err().to_string().contains("model_index.json"));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn the_tiny_preset_parses() {
        let p = preset("wan2.1-tiny").unwrap();
        for (name, text) in p.configs {
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{name}");
        }
        assert!(p.tokenizer_json.contains("\"model\""));
        assert!(preset("nope").is_none());
    }
}
