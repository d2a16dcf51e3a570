//! The `exec` contract of CogVideoX's components: inputs named as diffusers' forward()
//! arguments (`input_ids`; `hidden_states` [B, F, C, H, W], `timestep`, `encoder_hidden_states`,
//! the rotary embeddings computed inside as the pipeline computes them; `z` [B, C, F, h, w] as
//! passed to `vae.decode`), checked before any graph is built, and seeded inputs for `bench`.

use super::family::CogVideoXModel;
use crate::exec_inputs::{filled, random_float, random_token_ids, InputFile};
use crate::family::{Component, FamilyError, Sizes};
use std::collections::{BTreeMap, HashMap};
use vidlower_ir::{DType, HostTensor};

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
    file: BTreeMap<String, HostTensor>,
    dtype: DType,
    source: &str,
) -> Result<crate::family::CheckedInputs, FamilyError> {
    let wanted: &[&str] = match c {
        Component::TextEncoder => &["input_ids"],
        Component::Transformer => &["hidden_states", "timestep", "encoder_hidden_states"],
        Component::VaeDecoder => &["z"],
        Component::TextEncoder2 => return Err(FamilyError::Invalid("CogVideoX has no text_encoder_2".into())),
    };
    let (mut f, ignored) = InputFile::new(file, source, c, wanted, expected_inputs(m, c), dtype);
    let mut inputs = HashMap::new();
    let sizes = match c {
        Component::TextEncoder => {
            let ids = f.token_ids("input_ids", m.text_encoder_config()?.vocab_size)?;
            let (b, l) = (ids.dims[0], ids.dims[1]);
            inputs.insert("input_ids".to_string(), ids);
            Sizes { batch: b, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l, text_len_2: 0 }
        }
        Component::Transformer => {
            let cfg = m.transformer_config()?;
            let (p, pt) = (cfg.patch_size, cfg.temporal_patch());
            let hs = f.take("hidden_states")?;
            let d = hs.dims.clone();
            if d.len() != 5 || d[0] < 1 || d[2] != cfg.in_channels || d[1] < 1 || d[1] % pt != 0 || (3..5).any(|i| d[i] < 1 || d[i] % p != 0) {
                return Err(f.bad("hidden_states", &hs, format!("[B, F, {}, H, W] with F divisible by {pt} and H, W by {p}", cfg.in_channels)));
            }
            let b = d[0];
            let text = f.text_states("encoder_hidden_states", b, cfg.text_embed_dim)?;
            inputs.insert("timestep".to_string(), f.timestep("timestep", b)?);
            inputs.insert("hidden_states".to_string(), f.float("hidden_states", &hs, "[B, F, C, H, W]")?);
            if cfg.ofs_embed_dim.is_some() {
                inputs.insert("ofs".to_string(), filled(b, 2.0)?);
            }
            let sizes = Sizes { batch: b, latent_frames: d[1], latent_height: d[3], latent_width: d[4], text_len: text.dims[1], text_len_2: 0 };
            inputs.insert("encoder_hidden_states".to_string(), text);
            sizes
        }
        _ => {
            let ch = m.vae_config()?.latent_channels;
            let z = f.take("z")?;
            let d = z.dims.clone();
            if d.len() != 5 || d[1] != ch || d.iter().any(|&n| n < 1) {
                return Err(f.bad("z", &z, format!("[B, {ch}, F, h, w]")));
            }
            inputs.insert("z".to_string(), f.float("z", &z, "[B, C, F, h, w]")?);
            Sizes { batch: d[0], latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: 1, text_len_2: 0 }
        }
    };
    Ok((sizes, inputs, ignored))
}

/// Seeded inputs of the right sizes for timing: floats uniform in [-1, 1), timestep 999, token
/// ids spread over the vocabulary.
pub fn random_inputs(m: &CogVideoXModel, c: Component, s: &Sizes, dtype: DType, seed: u64) -> Result<HashMap<String, HostTensor>, FamilyError> {
    let (b, l) = (s.batch, s.text_len);
    let inputs = match c {
        Component::TextEncoder => vec![("input_ids".to_string(), random_token_ids(seed, b, l, m.text_encoder_config()?.vocab_size)?)],
        Component::Transformer => {
            let t = m.transformer_config()?;
            let mut v = vec![
                random_float(seed, "hidden_states", vec![b, s.latent_frames, t.in_channels, s.latent_height, s.latent_width], dtype)?,
                ("timestep".to_string(), filled(b, 999.0)?),
                random_float(seed, "encoder_hidden_states", vec![b, l, t.text_embed_dim], dtype)?,
            ];
            if t.ofs_embed_dim.is_some() {
                v.push(("ofs".to_string(), filled(b, 2.0)?));
            }
            v
        }
        Component::VaeDecoder => {
            vec![random_float(seed, "z", vec![b, m.vae_config()?.latent_channels, s.latent_frames, s.latent_height, s.latent_width], dtype)?]
        }
        Component::TextEncoder2 => return Err(FamilyError::Invalid("CogVideoX has no text_encoder_2".into())),
    };
    Ok(inputs.into_iter().collect())
}
