//! The `exec` contract of CogVideoX's components: inputs named as diffusers' forward()
//! arguments (`input_ids`; `hidden_states` [B, F, C, H, W], `timestep`, `encoder_hidden_states`,
//! the rotary embeddings computed inside as the pipeline computes them; `z` [B, C, F, h, w] as
//! passed to `vae.decode`), checked before any graph is built, and seeded inputs for `bench`.

use super::family::CogVideoXModel;
use crate::family::{Component, FamilyError, Sizes};
use crate::random_weights::random_input;
use std::collections::{BTreeMap, HashMap};
use vidlower_ir::{DType, HostTensor, TensorType};

fn invalid(m: String) -> FamilyError {
    FamilyError::Invalid(m)
}

/// What component `c` takes, for error messages.
pub fn expected_inputs(m: &CogVideoXModel, c: Component) -> String {
    let text = |e: FamilyError| e.to_string();
    match c {
        Component::TextEncoder => "input_ids int64 [B, L] (the pipeline passes no attention mask)".into(),
        Component::Transformer => m.transformer_config().map_or_else(text, |t| {
            format!(
                "hidden_states [B, F, {}, H, W], timestep [B] (int64 or float), encoder_hidden_states [B, L, {}]",
                t.in_channels, t.text_embed_dim
            )
        }),
        Component::VaeDecoder => {
            m.vae_config().map_or_else(text, |v| format!("z [B, {}, F, h, w] (what the pipeline passes to vae.decode)", v.latent_channels))
        }
        Component::TextEncoder2 => "nothing: CogVideoX has no text_encoder_2".into(),
    }
}

/// Checks an inputs file against component `c`: the sizes to build the graph for, the inputs
/// converted to what it takes, and the names of tensors it does not take.
pub fn checked_inputs(
    m: &CogVideoXModel,
    c: Component,
    mut file: BTreeMap<String, HostTensor>,
    dtype: DType,
    source: &str,
) -> Result<(Sizes, HashMap<String, HostTensor>, Vec<String>), FamilyError> {
    let wanted: &[&str] = match c {
        Component::TextEncoder => &["input_ids"],
        Component::Transformer => &["hidden_states", "timestep", "encoder_hidden_states"],
        Component::VaeDecoder => &["z"],
        Component::TextEncoder2 => return Err(invalid("CogVideoX has no text_encoder_2".into())),
    };
    let ignored: Vec<String> = file.keys().filter(|k| !wanted.contains(&k.as_str())).cloned().collect();
    let expected = expected_inputs(m, c);
    let mut take =
        |name: &str| file.remove(name).ok_or_else(|| invalid(format!("{source} has no tensor `{name}`; the {} takes {expected}", c.name())));
    let bad = |name: &str, t: &HostTensor, want: String| {
        invalid(format!("input `{name}` in {source}: expected {want}, got {}", TensorType::new(t.dtype, t.dims.clone())))
    };
    let float = |name: &str, t: &HostTensor, want: &str| -> Result<HostTensor, FamilyError> {
        if !t.dtype.is_float() {
            return Err(bad(name, t, format!("a float tensor {want}")));
        }
        Ok(t.convert(dtype))
    };
    let mut inputs = HashMap::new();
    let sizes = match c {
        Component::TextEncoder => {
            let ids = take("input_ids")?;
            let vocab = m.text_encoder_config()?.vocab_size;
            if ids.dims.len() != 2 || ids.dims.contains(&0) || ids.dtype.is_float() || ids.dtype == DType::I1 {
                return Err(bad("input_ids", &ids, "int64 [B, L]".into()));
            }
            let ids = ids.convert(DType::I64);
            let values = ids.to_vec::<i64>().map_err(|e| invalid(e.to_string()))?;
            if let Some(id) = values.into_iter().find(|&id| id < 0 || id >= vocab) {
                return Err(invalid(format!("input `input_ids` in {source}: token id {id} is outside the vocabulary [0, {vocab})")));
            }
            let (b, l) = (ids.dims[0], ids.dims[1]);
            inputs.insert("input_ids".to_string(), ids);
            Sizes { batch: b, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l, text_len_2: 0 }
        }
        Component::Transformer => {
            let cfg = m.transformer_config()?;
            let (p, pt) = (cfg.patch_size, cfg.temporal_patch());
            let hs = take("hidden_states")?;
            let d = hs.dims.clone();
            let want = format!("[B, F, {}, H, W] with F divisible by {pt} and H, W by {p}", cfg.in_channels);
            if d.len() != 5 || d[0] < 1 || d[2] != cfg.in_channels || d[1] < 1 || d[1] % pt != 0 || (3..5).any(|i| d[i] < 1 || d[i] % p != 0) {
                return Err(bad("hidden_states", &hs, want));
            }
            let b = d[0];
            let text = take("encoder_hidden_states")?;
            if text.dims.len() != 3 || text.dims[0] != b || text.dims[1] < 1 || text.dims[2] != cfg.text_embed_dim {
                return Err(bad("encoder_hidden_states", &text, format!("[{b}, L, {}] (B from hidden_states)", cfg.text_embed_dim)));
            }
            let t = take("timestep")?;
            if t.dims != [b] || t.dtype == DType::I1 {
                return Err(bad("timestep", &t, format!("[{b}] (one per batch row; int64 as the pipeline passes, or float)")));
            }
            let l = text.dims[1];
            inputs.insert("hidden_states".to_string(), float("hidden_states", &hs, "[B, F, C, H, W]")?);
            inputs.insert("encoder_hidden_states".to_string(), float("encoder_hidden_states", &text, "[B, L, D]")?);
            inputs.insert("timestep".to_string(), t.convert(DType::F32));
            if cfg.ofs_embed_dim.is_some() {
                inputs.insert("ofs".to_string(), HostTensor::from_f32(vec![b], &vec![2.0; b as usize]).map_err(|e| invalid(e.to_string()))?);
            }
            Sizes { batch: b, latent_frames: d[1], latent_height: d[3], latent_width: d[4], text_len: l, text_len_2: 0 }
        }
        _ => {
            let ch = m.vae_config()?.latent_channels;
            let z = take("z")?;
            let d = z.dims.clone();
            if d.len() != 5 || d[1] != ch || d.iter().any(|&n| n < 1) {
                return Err(bad("z", &z, format!("[B, {ch}, F, h, w]")));
            }
            inputs.insert("z".to_string(), float("z", &z, "[B, C, F, h, w]")?);
            Sizes { batch: d[0], latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: 1, text_len_2: 0 }
        }
    };
    Ok((sizes, inputs, ignored))
}

/// Seeded inputs of the right sizes for timing: floats uniform in [-1, 1), timestep 999, token
/// ids spread over the vocabulary.
pub fn random_inputs(m: &CogVideoXModel, c: Component, s: &Sizes, dtype: DType, seed: u64) -> Result<HashMap<String, HostTensor>, FamilyError> {
    let tensor_err = |e: vidlower_ir::TensorError| invalid(e.to_string());
    let float = |name: &str, dims: Vec<i64>| -> Result<(String, HostTensor), FamilyError> {
        let ty = TensorType::new(DType::F32, dims.clone());
        Ok((name.to_string(), HostTensor::from_f32(dims, &random_input(seed, name, &ty)).map_err(tensor_err)?.convert(dtype)))
    };
    let (b, l) = (s.batch, s.text_len);
    let inputs = match c {
        Component::TextEncoder => {
            let vocab = m.text_encoder_config()?.vocab_size as f32;
            let ty = TensorType::new(DType::F32, vec![b, l]);
            let ids: Vec<i64> = random_input(seed, "input_ids", &ty).iter().map(|u| ((u + 1.0) * 0.5 * (vocab - 1.0)) as i64).collect();
            vec![("input_ids".to_string(), HostTensor::from_slice([b, l], &ids).map_err(tensor_err)?)]
        }
        Component::Transformer => {
            let t = m.transformer_config()?;
            let mut v = vec![
                float("hidden_states", vec![b, s.latent_frames, t.in_channels, s.latent_height, s.latent_width])?,
                ("timestep".to_string(), HostTensor::from_f32(vec![b], &vec![999.0; b as usize]).map_err(tensor_err)?),
                float("encoder_hidden_states", vec![b, l, t.text_embed_dim])?,
            ];
            if t.ofs_embed_dim.is_some() {
                v.push(("ofs".to_string(), HostTensor::from_f32(vec![b], &vec![2.0; b as usize]).map_err(tensor_err)?));
            }
            v
        }
        Component::VaeDecoder => {
            vec![float("z", vec![b, m.vae_config()?.latent_channels, s.latent_frames, s.latent_height, s.latent_width])?]
        }
        Component::TextEncoder2 => return Err(invalid("CogVideoX has no text_encoder_2".into())),
    };
    Ok(inputs.into_iter().collect())
}
