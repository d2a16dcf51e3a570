//! The model families vidlower knows, chosen from a model directory's `model_index.json`
//! (`_class_name`), and the built-in presets (tiny models with deterministic random weights).
//! Adding a family: its folder implements [`crate::family::Family`], and it gets one line in
//! [`FAMILIES`].

use crate::family::{Defaults, Family};
use serde::Deserialize;
use std::path::Path;

/// Every family, in the order `vidlower models` lists them.
pub static FAMILIES: &[&dyn Family] = &[&crate::wan::family::FAMILY, &crate::cogvideox::family::FAMILY, &crate::hunyuanvideo15::family::FAMILY];

/// A built-in model: configs and tokenizer files compiled into vidlower, weights drawn from a seed.
#[derive(Clone, Debug)]
pub struct Preset {
    pub name: &'static str,
    pub family: &'static str,
    pub description: &'static str,
    pub defaults: Defaults,
    /// Path in the model directory -> contents: `model_index.json`, every component's config,
    /// the tokenizer's files.
    pub files: &'static [(&'static str, &'static [u8])],
    pub weight_seed: u64,
}

/// The presets of every family.
pub fn presets() -> Vec<Preset> {
    FAMILIES.iter().flat_map(|f| f.presets()).collect()
}

pub fn preset(name: &str) -> Option<Preset> {
    presets().into_iter().find(|p| p.name == name)
}

/// The family named `name` (`wan`).
pub fn family(name: &str) -> Option<&'static dyn Family> {
    FAMILIES.iter().copied().find(|f| f.name() == name)
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{}: `_class_name` is {class:?}; vidlower knows {known}", path.display())]
    UnknownPipeline { path: std::path::PathBuf, class: String, known: String },
    #[error("{}: `_class_name` is {class:?}: {reason}", path.display())]
    Refused { path: std::path::PathBuf, class: String, reason: &'static str },
}

#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: String,
}

/// The family of the diffusers model directory `dir`, from its `model_index.json`; a pipeline
/// class a family knows but does not run yet is refused with its reason.
pub fn detect(dir: &Path) -> Result<&'static dyn Family, RegistryError> {
    let path = dir.join("model_index.json");
    let index: ModelIndex = crate::config::read_json(&path)?;
    let class = index.class_name.as_str();
    if let Some(f) = FAMILIES.iter().find(|f| f.pipeline_classes().contains(&class)) {
        return Ok(*f);
    }
    if let Some((_, reason)) = FAMILIES.iter().flat_map(|f| f.refused_classes()).find(|(c, _)| *c == class) {
        return Err(RegistryError::Refused { path, class: index.class_name, reason });
    }
    Err(RegistryError::UnknownPipeline {
        path,
        class: index.class_name,
        known: FAMILIES.iter().flat_map(|f| f.pipeline_classes()).copied().collect::<Vec<_>>().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_wan_from_model_index_and_refuses_others() {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/wan/model");
        assert_eq!(detect(&golden).unwrap().name(), "wan");
        let dir = std::env::temp_dir().join(format!("vidlower-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "FluxPipeline"}"#).unwrap();
        let e = detect(&dir).unwrap_err().to_string();
        assert!(e.contains("FluxPipeline") && e.contains("WanPipeline") && e.contains("model_index.json"), "{e}");
        std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "WanImageToVideoPipeline"}"#).unwrap();
        let e = detect(&dir).unwrap_err().to_string();
        assert!(e.contains("image-to-video"), "{e}");
        std::fs::remove_file(dir.join("model_index.json")).unwrap();
        assert!(detect(&dir).unwrap_err().to_string().contains("model_index.json"));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn every_preset_parses_and_names_its_family() {
        for p in presets() {
            assert!(family(p.family).is_some(), "{}", p.name);
            for (name, bytes) in p.files {
                if name.ends_with(".json") {
                    assert!(serde_json::from_slice::<serde_json::Value>(bytes).is_ok(), "{}: {name}", p.name);
                }
            }
        }
        assert!(preset("wan2.1-tiny").is_some());
        assert!(preset("nope").is_none());
    }
}
