//! The `exec` contract of HunyuanVideo-1.5's components: inputs named as diffusers' / transformers'
//! forward() arguments (`input_ids` + `attention_mask` for both encoders; `hidden_states`
//! [B, 2C+1, T, H, W] (latents, condition latents, mask), `timestep`, the two text states with
//! their masks for the transformer; `z` as passed to `vae.decode`), checked before any graph is
//! built, and seeded inputs for `bench`.

use super::family::HunyuanVideo15Model;
use crate::exec_inputs::{filled, random_float, random_token_ids, InputFile};
use crate::family::{Component, FamilyError, Sizes};
use std::collections::{BTreeMap, HashMap};
use vidlower_ir::{DType, HostTensor};

/// What component `c` takes, for error messages.
pub fn expected_inputs(m: &HunyuanVideo15Model, c: Component) -> String {
    let text = |e: FamilyError| e.to_string();
    match c {
        Component::TextEncoder | Component::TextEncoder2 => {
            "input_ids int64 [B, L], attention_mask int64 [B, L] (1 for a token, 0 for padding)".into()
        }
        Component::Transformer => m.transformer_config().map_or_else(text, |t| {
            format!(
                "hidden_states [B, {}, T, H, W] (latents, zero condition latents, zero mask), timestep [B] (float), \
                 encoder_hidden_states [B, L, {}], encoder_attention_mask [B, L], encoder_hidden_states_2 [B, L2, {}], \
                 encoder_attention_mask_2 [B, L2] (masks 0/1)",
                t.in_channels, t.text_embed_dim, t.text_embed_2_dim
            )
        }),
        Component::VaeDecoder => m
            .vae_config()
            .map_or_else(text, |v| format!("z [B, {}, T, h, w] (what the pipeline passes to vae.decode)", v.latent_channels)),
    }
}

/// Checks an inputs file against component `c`: the sizes to build the graph for, the inputs
/// converted to what it takes, and the names of tensors it does not take.
pub fn checked_inputs(
    m: &HunyuanVideo15Model,
    c: Component,
    file: BTreeMap<String, HostTensor>,
    dtype: DType,
    source: &str,
) -> Result<crate::family::CheckedInputs, FamilyError> {
    let wanted: &[&str] = match c {
        Component::TextEncoder | Component::TextEncoder2 => &["input_ids", "attention_mask"],
        Component::Transformer => &[
            "hidden_states",
            "timestep",
            "encoder_hidden_states",
            "encoder_attention_mask",
            "encoder_hidden_states_2",
            "encoder_attention_mask_2",
        ],
        Component::VaeDecoder => &["z"],
    };
    let (mut f, ignored) = InputFile::new(file, source, c, wanted, expected_inputs(m, c), dtype);
    let mut inputs = HashMap::new();
    let sizes = match c {
        Component::TextEncoder | Component::TextEncoder2 => {
            let vocab = if c == Component::TextEncoder { m.text_encoder_config()?.vocab_size } else { m.text_encoder_2_config()?.vocab_size };
            let ids = f.token_ids("input_ids", vocab)?;
            let (b, l) = (ids.dims[0], ids.dims[1]);
            let mask = f.mask("attention_mask", b, l)?.convert(DType::I64);
            inputs.insert("input_ids".to_string(), ids);
            inputs.insert("attention_mask".to_string(), mask);
            Sizes { batch: b, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l, text_len_2: l }
        }
        Component::Transformer => {
            let cfg = m.transformer_config()?;
            let p = cfg.patch_size;
            let hs = f.take("hidden_states")?;
            let d = hs.dims.clone();
            if d.len() != 5 || d[0] < 1 || d[1] != cfg.in_channels || d[2] < 1 || (3..5).any(|i| d[i] < 1 || d[i] % p != 0) {
                return Err(f.bad("hidden_states", &hs, format!("[B, {}, T, H, W] with H, W divisible by {p}", cfg.in_channels)));
            }
            let b = d[0];
            let text = f.text_states("encoder_hidden_states", b, cfg.text_embed_dim)?;
            let text_2 = f.text_states("encoder_hidden_states_2", b, cfg.text_embed_2_dim)?;
            let (l, l2) = (text.dims[1], text_2.dims[1]);
            inputs.insert("encoder_attention_mask".to_string(), f.mask("encoder_attention_mask", b, l)?);
            inputs.insert("encoder_attention_mask_2".to_string(), f.mask("encoder_attention_mask_2", b, l2)?);
            inputs.insert("timestep".to_string(), f.timestep("timestep", b)?);
            inputs.insert("hidden_states".to_string(), f.float("hidden_states", &hs, "[B, C, T, H, W]")?);
            inputs.insert("encoder_hidden_states".to_string(), text);
            inputs.insert("encoder_hidden_states_2".to_string(), text_2);
            Sizes { batch: b, latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: l, text_len_2: l2 }
        }
        Component::VaeDecoder => {
            let ch = m.vae_config()?.latent_channels;
            let z = f.take("z")?;
            let d = z.dims.clone();
            if d.len() != 5 || d[1] != ch || d.iter().any(|&n| n < 1) {
                return Err(f.bad("z", &z, format!("[B, {ch}, T, h, w]")));
            }
            inputs.insert("z".to_string(), f.float("z", &z, "[B, C, T, h, w]")?);
            Sizes { batch: d[0], latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: 1, text_len_2: 1 }
        }
    };
    Ok((sizes, inputs, ignored))
}

/// Seeded inputs of the right sizes for timing: floats uniform in [-1, 1), timestep 999, token
/// ids spread over the vocabulary, masks with the first half of the text valid.
pub fn random_inputs(m: &HunyuanVideo15Model, c: Component, s: &Sizes, dtype: DType, seed: u64) -> Result<HashMap<String, HostTensor>, FamilyError> {
    let b = s.batch;
    let half_mask = |l: i64| -> Result<HostTensor, FamilyError> {
        let v: Vec<f32> = (0..b).flat_map(|_| (0..l).map(move |i| if i < (l + 1) / 2 { 1.0 } else { 0.0 })).collect();
        HostTensor::from_f32(vec![b, l], &v).map_err(|e| FamilyError::Invalid(e.to_string()))
    };
    let inputs: Vec<(String, HostTensor)> = match c {
        Component::TextEncoder | Component::TextEncoder2 => {
            let vocab = if c == Component::TextEncoder { m.text_encoder_config()?.vocab_size } else { m.text_encoder_2_config()?.vocab_size };
            vec![
                ("input_ids".to_string(), random_token_ids(seed, b, s.text_len, vocab)?),
                ("attention_mask".to_string(), half_mask(s.text_len)?.convert(DType::I64)),
            ]
        }
        Component::Transformer => {
            let t = m.transformer_config()?;
            vec![
                random_float(seed, "hidden_states", vec![b, t.in_channels, s.latent_frames, s.latent_height, s.latent_width], dtype)?,
                ("timestep".to_string(), filled(b, 999.0)?),
                random_float(seed, "encoder_hidden_states", vec![b, s.text_len, t.text_embed_dim], dtype)?,
                ("encoder_attention_mask".to_string(), half_mask(s.text_len)?),
                random_float(seed, "encoder_hidden_states_2", vec![b, s.text_len_2, t.text_embed_2_dim], dtype)?,
                ("encoder_attention_mask_2".to_string(), half_mask(s.text_len_2)?),
            ]
        }
        Component::VaeDecoder => {
            vec![random_float(seed, "z", vec![b, m.vae_config()?.latent_channels, s.latent_frames, s.latent_height, s.latent_width], dtype)?]
        }
    };
    Ok(inputs.into_iter().collect())
}

/// `torch.cat([latents, zeros_like(latents), zeros(B, 1, T, H, W)], dim=1)`: [1, C, T, H, W] ->
/// [1, 2C + 1, T, H, W] (batch 1, so the channels are contiguous).
pub fn model_input(latents: &HostTensor) -> Result<HostTensor, String> {
    let d = &latents.dims;
    if d.len() != 5 || d[0] != 1 {
        return Err(format!("latents {d:?}: expected [1, C, T, H, W]"));
    }
    let per_channel = (d[2] * d[3] * d[4]) as usize * latents.dtype.size_in_bytes();
    let mut data = latents.data.clone();
    data.resize(data.len() + (d[1] as usize + 1) * per_channel, 0);
    Ok(HostTensor { dtype: latents.dtype, dims: vec![1, 2 * d[1] + 1, d[2], d[3], d[4]], data })
}
