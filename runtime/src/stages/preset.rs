//! Materialising a built-in preset as a diffusers-format model directory in vidlower's cache
//! (`<cache>/presets/<name>-<hash>/`): the configs and tokenizer compiled into vidlower, and
//! deterministic random weights for every weight the component graphs take. Written to a temp
//! dir and renamed, so a half-written preset is never used; the hash changes with the configs.

use super::model::ModelError;
use crate::tensor::HostTensor;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use vidlower_frontends::random_weights::random_weight;
use vidlower_frontends::registry::Preset;
use vidlower_frontends::wan::config::{Umt5Config, WanTransformerConfig, WanVaeConfig};
use vidlower_frontends::wan::{text_encoder, transformer, vae};
use vidlower_ir::{DType, Graph, TensorType};

/// The directory of `preset`, created on first use.
pub fn materialise(preset: &Preset) -> Result<PathBuf, ModelError> {
    let mut h = Sha256::new();
    for (name, text) in preset.configs {
        h.update(name.as_bytes());
        h.update(text.as_bytes());
    }
    h.update(preset.tokenizer_json.as_bytes());
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

fn write_preset(preset: &Preset, dir: &std::path::Path) -> Result<(), String> {
    for (name, text) in preset.configs {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("component/file")).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::write(dir.join("tokenizer/tokenizer.json"), preset.tokenizer_json).map_err(|e| e.to_string())?;
    let config = |name: &str| -> &str {
        preset.configs.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap_or("{}")
    };
    let parse_err = |e: serde_json::Error| e.to_string();
    let t: WanTransformerConfig = serde_json::from_str(config("transformer/config.json")).map_err(parse_err)?;
    let v: WanVaeConfig = serde_json::from_str(config("vae/config.json")).map_err(parse_err)?;
    let u: Umt5Config = serde_json::from_str(config("text_encoder/config.json")).map_err(parse_err)?;
    let ir = |e: vidlower_ir::IrError| e.to_string();

    // The smallest shapes the graphs take: weights do not depend on shapes.
    let shape = transformer::TransformerShape { batch: 1, frames: 1, height: 2, width: 2, text_len: 1 };
    let graphs = [transformer::transformer(&t, &shape, DType::F32).map_err(ir)?];
    write_weights(dir, "transformer/diffusion_pytorch_model.safetensors", &graphs, preset.weight_seed)?;
    let vshape = vae::VaeDecodeShape { batch: 1, height: 1, width: 1 };
    let graphs = [
        vae::decoder_step(&v, &vshape, DType::F32, true).map_err(ir)?,
        vae::decoder_step(&v, &vshape, DType::F32, false).map_err(ir)?,
    ];
    write_weights(dir, "vae/diffusion_pytorch_model.safetensors", &graphs, preset.weight_seed)?;
    let graphs = [text_encoder::umt5_encoder(&u, 1, 1, DType::F32).map_err(ir)?];
    write_weights(dir, "text_encoder/model.safetensors", &graphs, preset.weight_seed)?;
    Ok(())
}

/// Random values for the union of the graphs' weights, as one f32 safetensors file.
fn write_weights(dir: &std::path::Path, file: &str, graphs: &[Graph], seed: u64) -> Result<(), String> {
    let mut weights: BTreeMap<String, TensorType> = BTreeMap::new();
    for g in graphs {
        for (name, ty) in g.weights() {
            weights.insert(name.to_string(), ty.with_dtype(DType::F32));
        }
    }
    let tensors: Vec<(String, HostTensor)> = weights
        .into_iter()
        .map(|(name, ty)| {
            let values = random_weight(seed, &name, &ty);
            let t = HostTensor::from_f32(ty.shape.clone(), &values).expect("sizes match");
            (name, t)
        })
        .collect();
    crate::safetensors_io::save(&dir.join(file), &tensors).map_err(|e| e.to_string())
}
