//! The `exec` contract of Wan's components: inputs named as diffusers' forward() arguments,
//! checked against the configs before any graph is built, and seeded inputs for `bench`.

use super::family::WanModel;
use crate::exec_inputs::{filled, random_float, random_token_ids, InputFile};
use crate::family::{Component, FamilyError, Sizes};
use std::collections::{BTreeMap, HashMap};
use vidlower_ir::{DType, HostTensor};

/// What component `c` takes, for error messages.
pub fn expected_inputs(m: &WanModel, c: Component) -> String {
    let text = |e: FamilyError| e.to_string();
    match c {
        Component::TextEncoder => "input_ids int64 [B, L], attention_mask int64 [B, L] (optional: all ones)".into(),
        Component::Transformer => m.transformer_config().map_or_else(text, |t| {
            format!(
                "hidden_states [B, {}, T, H, W], timestep [B] (int64 or float), encoder_hidden_states [B, L, {}]",
                t.in_channels, t.text_dim
            )
        }),
        Component::VaeDecoder => m.vae_config().map_or_else(text, |v| format!("z [B, {}, T, h, w] (what the pipeline passes to vae.decode)", v.z_dim)),
        Component::TextEncoder2 => "nothing: Wan has no text_encoder_2".into(),
    }
}

/// Checks an inputs file against component `c`: the sizes to build the graph for, the inputs
/// converted to what it takes (floats to `dtype`, timesteps to f32, token ids to int64), and
/// the names of tensors it does not take.
pub fn checked_inputs(
    m: &WanModel,
    c: Component,
    file: BTreeMap<String, HostTensor>,
    dtype: DType,
    source: &str,
) -> Result<crate::family::CheckedInputs, FamilyError> {
    let wanted: &[&str] = match c {
        Component::TextEncoder => &["input_ids", "attention_mask"],
        Component::Transformer => &["hidden_states", "timestep", "encoder_hidden_states"],
        Component::VaeDecoder => &["z"],
        Component::TextEncoder2 => return Err(FamilyError::Invalid("Wan has no text_encoder_2".into())),
    };
    let (mut f, ignored) = InputFile::new(file, source, c, wanted, expected_inputs(m, c), dtype);
    let mut inputs = HashMap::new();
    let sizes = match c {
        Component::TextEncoder => {
            let ids = f.token_ids("input_ids", m.text_encoder_config()?.vocab_size)?;
            let (b, l) = (ids.dims[0], ids.dims[1]);
            let mask = match f.take("attention_mask") {
                Ok(mk) if mk.dims == ids.dims && !mk.dtype.is_float() => mk.convert(DType::I64),
                Ok(mk) => return Err(f.bad("attention_mask", &mk, format!("int64 [{b}, {l}] (the shape of input_ids)"))),
                Err(_) => HostTensor::from_slice([b, l], &vec![1i64; (b * l) as usize]).map_err(|e| FamilyError::Invalid(e.to_string()))?,
            };
            inputs.insert("input_ids".to_string(), ids);
            inputs.insert("attention_mask".to_string(), mask);
            Sizes { batch: b, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l, text_len_2: 0 }
        }
        Component::Transformer => {
            let cfg = m.transformer_config()?;
            let p = &cfg.patch_size;
            let hs = f.take("hidden_states")?;
            let d = hs.dims.clone();
            if d.len() != 5 || d[0] < 1 || d[1] != cfg.in_channels || (2..5).any(|i| d[i] < 1 || d[i] % p[i - 2] != 0) {
                return Err(f.bad("hidden_states", &hs, format!("[B, {}, T, H, W] with T, H, W divisible by the patch size {p:?}", cfg.in_channels)));
            }
            let b = d[0];
            let text = f.text_states("encoder_hidden_states", b, cfg.text_dim)?;
            inputs.insert("timestep".to_string(), f.timestep("timestep", b)?);
            inputs.insert("hidden_states".to_string(), f.float("hidden_states", &hs, "[B, C, T, H, W]")?);
            let sizes = Sizes { batch: b, latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: text.dims[1], text_len_2: 0 };
            inputs.insert("encoder_hidden_states".to_string(), text);
            sizes
        }
        _ => {
            let z_dim = m.vae_config()?.z_dim;
            let z = f.take("z")?;
            let d = z.dims.clone();
            if d.len() != 5 || d[1] != z_dim || d.iter().any(|&n| n < 1) {
                return Err(f.bad("z", &z, format!("[B, {z_dim}, T, h, w]")));
            }
            inputs.insert("z".to_string(), f.float("z", &z, "[B, C, T, h, w]")?);
            Sizes { batch: d[0], latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: 1, text_len_2: 0 }
        }
    };
    Ok((sizes, inputs, ignored))
}

/// Seeded inputs of the right sizes for timing (values do not matter for speed): floats uniform
/// in [-1, 1), timestep 999, token ids spread over the vocabulary, a full attention mask.
pub fn random_inputs(m: &WanModel, c: Component, s: &Sizes, dtype: DType, seed: u64) -> Result<HashMap<String, HostTensor>, FamilyError> {
    let (b, l) = (s.batch, s.text_len);
    let inputs = match c {
        Component::TextEncoder => {
            let mask = HostTensor::from_slice([b, l], &vec![1i64; (b * l) as usize]).map_err(|e| FamilyError::Invalid(e.to_string()))?;
            vec![
                ("input_ids".to_string(), random_token_ids(seed, b, l, m.text_encoder_config()?.vocab_size)?),
                ("attention_mask".to_string(), mask),
            ]
        }
        Component::Transformer => {
            let t = m.transformer_config()?;
            vec![
                random_float(seed, "hidden_states", vec![b, t.in_channels, s.latent_frames, s.latent_height, s.latent_width], dtype)?,
                ("timestep".to_string(), filled(b, 999.0)?),
                random_float(seed, "encoder_hidden_states", vec![b, l, t.text_dim], dtype)?,
            ]
        }
        Component::VaeDecoder => {
            vec![random_float(seed, "z", vec![b, m.vae_config()?.z_dim, s.latent_frames, s.latent_height, s.latent_width], dtype)?]
        }
        Component::TextEncoder2 => return Err(FamilyError::Invalid("Wan has no text_encoder_2".into())),
    };
    Ok(inputs.into_iter().collect())
}
