//! Materialising a built-in preset as a diffusers-format model directory in vidlower's cache
//! (`<cache>/presets/<name>-<hash>/`): the configs and tokenizer files compiled into vidlower,
//! and deterministic random weights for every weight the family's component graphs take.
//! Written to a temp dir and renamed, so a half-written preset is never used; the hash changes
//! with the files.

use super::model::ModelError;
use crate::tensor::HostTensor;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vidlower_frontends::family::{Component, VideoSize};
use vidlower_frontends::random_weights::random_weight;
use vidlower_frontends::registry::{self, Preset};
use vidlower_ir::{DType, TensorType};

/// The directory of `preset`, created on first use.
pub fn materialise(preset: &Preset) -> Result<PathBuf, ModelError> {
    let mut h = Sha256::new();
    for (name, bytes) in preset.files {
        h.update(name.as_bytes());
        h.update(bytes);
    }
    h.update(preset.weight_seed.to_le_bytes());
    let tag = hex::encode(&h.finalize()[..6]);
    let root = crate::cache::cache_root().ok_or_else(|| ModelError::Preset {
        name: preset.name.into(),
        dir: PathBuf::from("?"),
        message: "no cache directory: set VIDLOWER_CACHE_DIR".into(),
    })?;
    let dir = root.join("presets").join(format!("{}-{tag}", preset.name));
    if dir.join("model_index.json").is_file() {
        return Ok(dir);
    }
    let fail = |message: String| ModelError::Preset { name: preset.name.into(), dir: dir.clone(), message };
    std::fs::create_dir_all(root.join("presets")).map_err(|e| fail(e.to_string()))?;
    let tmp = tempfile::Builder::new().prefix(".tmp-preset-").tempdir_in(root.join("presets")).map_err(|e| fail(e.to_string()))?;
    write_preset(preset, tmp.path()).map_err(fail)?;
    let staged = tmp.keep();
    if let Err(e) = std::fs::rename(&staged, &dir) {
        // Another process finished first: use its copy.
        let _ = std::fs::remove_dir_all(&staged);
        if !dir.join("model_index.json").is_file() {
            return Err(fail(e.to_string()));
        }
    }
    Ok(dir)
}

fn write_preset(preset: &Preset, dir: &Path) -> Result<(), String> {
    for (name, bytes) in preset.files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("component/file")).map_err(|e| e.to_string())?;
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let family = registry::family(preset.family).ok_or_else(|| format!("unknown family `{}`", preset.family))?;
    let model = family.open(dir, &[Component::TextEncoder, Component::TextEncoder2, Component::Transformer, Component::VaeDecoder])
        .map_err(|e| e.to_string())?;
    // The preset's own size, with one text token: weights do not depend on shapes.
    let d = &preset.defaults;
    let video = VideoSize { height: d.height, width: d.width, frames: d.frames };
    for c in model.components() {
        let sizes = model.sizes(c, &video, 1, 1);
        let graphs = model.graphs(c, &sizes, DType::F32).map_err(|e| e.to_string())?;
        let mut weights: BTreeMap<String, TensorType> = BTreeMap::new();
        for g in &graphs {
            for (name, ty) in g.graph.weights() {
                weights.insert(name.to_string(), ty.with_dtype(DType::F32));
            }
        }
        // transformers names its files model.safetensors, diffusers diffusion_pytorch_model.
        let file = match c {
            Component::TextEncoder | Component::TextEncoder2 => "model.safetensors",
            _ => "diffusion_pytorch_model.safetensors",
        };
        write_weights(&dir.join(c.folder()).join(file), weights, preset.weight_seed)?;
    }
    Ok(())
}

/// Random values for `weights`, as one f32 safetensors file.
fn write_weights(path: &Path, weights: BTreeMap<String, TensorType>, seed: u64) -> Result<(), String> {
    let tensors: Vec<(String, HostTensor)> = weights
        .into_iter()
        .map(|(name, ty)| {
            let values = random_weight(seed, &name, &ty);
            let t = HostTensor::from_f32(ty.shape.clone(), &values).expect("sizes match");
            (name, t)
        })
        .collect();
    crate::safetensors_io::save(path, &tensors).map_err(|e| e.to_string())
}
