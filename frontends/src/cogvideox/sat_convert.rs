//! A whole SAT state dict to a diffusers component ([`super::sat_keys`] key by key), with the
//! `config.json` diffusers' `convert_cogvideox_to_diffusers.py` gives each released variant, and
//! the result checked against the graphs vidlower builds from that config: every weight present,
//! none left over, every shape as the model declares it.

use super::config::CogVideoXTransformerConfig;
use super::sat_keys::{apply, strip_prefixes, transformer_target, vae_target, vae_up_levels, SatTarget};
use super::transformer::{transformer, TransformerShape};
use super::vae::decoder_step;
use super::vae_config::CogVideoXVaeConfig;
use crate::nn::vae_decoder::VaeDecodeShape;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use vidlower_ir::host_tensor::HostTensor;
use vidlower_ir::DType;

/// The released text-to-video checkpoints a SAT checkpoint is converted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SatVariant {
    /// CogVideoX-2b: sincos positions.
    V2b,
    /// CogVideoX-5b: 3D RoPE.
    V5b,
    /// CogVideoX1.5-5B: 3D RoPE, temporal patches of 2, a Linear patch embedding.
    V15_5b,
}

impl SatVariant {
    pub const NAMES: [&'static str; 3] = ["2b", "5b", "1.5-5b"];

    pub fn name(self) -> &'static str {
        match self {
            SatVariant::V2b => "2b",
            SatVariant::V5b => "5b",
            SatVariant::V15_5b => "1.5-5b",
        }
    }

    /// `transformer/config.json`: `CogVideoXTransformer3DModel`'s defaults with what the script
    /// passes for the variant (`--num_layers`, `--num_attention_heads`,
    /// `--use_rotary_positional_embeddings`, and `get_transformer_init_kwargs(version)`), as the
    /// released repositories' configs read.
    pub fn transformer_config(self) -> Value {
        let (layers, heads, rope) = match self {
            SatVariant::V2b => (30, 30, false),
            SatVariant::V5b | SatVariant::V15_5b => (42, 48, true),
        };
        let (patch_t, patch_bias, h, w, f) = match self {
            SatVariant::V15_5b => (json!(2), false, 300, 300, 81),
            _ => (Value::Null, true, 60, 90, 49),
        };
        json!({
            "_class_name": "CogVideoXTransformer3DModel",
            "_diffusers_version": "0.42.1",
            "activation_fn": "gelu-approximate",
            "attention_bias": true,
            "attention_head_dim": 64,
            "dropout": 0.0,
            "flip_sin_to_cos": true,
            "freq_shift": 0,
            "in_channels": 16,
            "max_text_seq_length": 226,
            "norm_elementwise_affine": true,
            "norm_eps": 1e-5,
            "num_attention_heads": heads,
            "num_layers": layers,
            "ofs_embed_dim": null,
            "out_channels": 16,
            "patch_bias": patch_bias,
            "patch_size": 2,
            "patch_size_t": patch_t,
            "sample_frames": f,
            "sample_height": h,
            "sample_width": w,
            "spatial_interpolation_scale": 1.875,
            "temporal_compression_ratio": 4,
            "temporal_interpolation_scale": 1.0,
            "text_embed_dim": 4096,
            "time_embed_dim": 512,
            "timestep_activation_fn": "silu",
            "use_learned_positional_embeddings": false,
            "use_rotary_positional_embeddings": rope
        })
    }

    /// `vae/config.json`: `AutoencoderKLCogVideoX`'s defaults with the script's `--scaling_factor`
    /// (2b 1.15258426, 5b and 1.5 0.7) and, for 1.5, `invert_scale_latents`.
    pub fn vae_config(self) -> Value {
        let scaling = if self == SatVariant::V2b { 1.15258426 } else { 0.7 };
        let blocks = |t: &'static str| vec![t; 4];
        json!({
            "_class_name": "AutoencoderKLCogVideoX",
            "_diffusers_version": "0.42.1",
            "act_fn": "silu",
            "block_out_channels": [128, 256, 256, 512],
            "down_block_types": blocks("CogVideoXDownBlock3D"),
            "force_upcast": true,
            "in_channels": 3,
            "invert_scale_latents": self == SatVariant::V15_5b,
            "latent_channels": 16,
            "latents_mean": null,
            "latents_std": null,
            "layers_per_block": 3,
            "norm_eps": 1e-6,
            "norm_num_groups": 32,
            "out_channels": 3,
            "sample_height": 480,
            "sample_width": 720,
            "scaling_factor": scaling,
            "shift_factor": null,
            "temporal_compression_ratio": 4,
            "up_block_types": blocks("CogVideoXUpBlock3D"),
            "use_post_quant_conv": false,
            "use_quant_conv": false
        })
    }
}

impl FromStr for SatVariant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "2b" => Ok(SatVariant::V2b),
            "5b" => Ok(SatVariant::V5b),
            "1.5-5b" => Ok(SatVariant::V15_5b),
            _ => Err(format!(
                "unknown CogVideoX variant `{s}` (expected one of {}; image-to-video variants are not converted)",
                SatVariant::NAMES.join(", ")
            )),
        }
    }
}

/// One component converted.
pub struct Converted {
    /// diffusers name -> tensor, in name order.
    pub tensors: BTreeMap<String, HostTensor>,
    pub config: Value,
    /// SAT keys mapped to diffusers weights.
    pub converted: usize,
    /// SAT keys dropped on purpose, with why.
    pub dropped: Vec<(String, &'static str)>,
    /// SAT keys the map does not know (skipped when the caller allows it).
    pub unknown: Vec<String>,
}

/// A SAT state dict that cannot be converted; one line naming the key or field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SatError(pub String);

fn fail<T>(message: String) -> Result<T, SatError> {
    Err(SatError(message))
}

/// Maps every key with `target`; unknown keys are collected, not refused (the caller decides).
fn map_keys(
    sat: BTreeMap<String, HostTensor>,
    target: &dyn Fn(&str) -> Option<SatTarget>,
    progress: &mut dyn FnMut(),
) -> Result<Converted, SatError> {
    let mut out = Converted { tensors: BTreeMap::new(), config: Value::Null, converted: 0, dropped: Vec::new(), unknown: Vec::new() };
    for (key, t) in sat {
        progress();
        let Some(tg) = target(strip_prefixes(&key)) else {
            out.unknown.push(key);
            continue;
        };
        if let SatTarget::Drop(why) = tg {
            out.dropped.push((key, why));
            continue;
        }
        for (name, x) in apply(&key, &tg, t).map_err(SatError)? {
            if out.tensors.insert(name.clone(), x).is_some() {
                return fail(format!("`{key}`: a second SAT key maps to `{name}` (the state dict holds one weight twice)"));
            }
        }
        out.converted += 1;
    }
    Ok(out)
}

/// The shape of `name`, or an error saying the checkpoint lacks it.
fn shape<'a>(tensors: &'a BTreeMap<String, HostTensor>, name: &str, sat: &str) -> Result<&'a [i64], SatError> {
    match tensors.get(name) {
        Some(t) => Ok(&t.dims),
        None => fail(format!("the checkpoint has no `{sat}` (diffusers `{name}`), which every CogVideoX transformer has")),
    }
}

/// Sets `field` to `value`; a value the user's config already holds must agree.
fn set(config: &mut Map<String, Value>, from_user: bool, field: &str, value: Value) -> Result<(), SatError> {
    if from_user {
        if let Some(old) = config.get(field).filter(|v| **v != value) {
            return fail(format!("the given config says {field} {old}, the checkpoint's weights say {value}"));
        }
    }
    config.insert(field.into(), value);
    Ok(())
}

/// Every weight of the graphs and none else, each of the declared shape.
fn check_weights(
    component: &str,
    tensors: &BTreeMap<String, HostTensor>,
    graph_weights: &BTreeMap<String, Vec<i64>>,
    only_prefix: Option<&str>,
) -> Result<(), SatError> {
    for (name, dims) in graph_weights {
        match tensors.get(name) {
            None => return fail(format!("{component}: the checkpoint gives no `{name}` {dims:?}, which the model needs")),
            Some(t) if &t.dims != dims => {
                return fail(format!("{component}: `{name}` is {:?}, the model expects {dims:?}", t.dims))
            }
            Some(_) => {}
        }
    }
    let extra = tensors
        .keys()
        .filter(|n| only_prefix.is_none_or(|p| n.starts_with(p)))
        .find(|n| !graph_weights.contains_key(*n));
    match extra {
        Some(n) => fail(format!("{component}: `{n}` is not a weight of the model this config describes")),
        None => Ok(()),
    }
}

/// The transformer's keys mapped (unknown ones collected); [`finish_transformer`] completes it.
pub fn map_transformer(sat: BTreeMap<String, HostTensor>, progress: &mut dyn FnMut()) -> Result<Converted, SatError> {
    map_keys(sat, &transformer_target, progress)
}

/// The mapped transformer's `config.json`, from the variant (or `user_config`, a
/// `transformer/config.json` to start from) with the sizes the weights give, and the weights
/// checked against the graph vidlower builds from it.
pub fn finish_transformer(mut out: Converted, variant: SatVariant, user_config: Option<Value>) -> Result<Converted, SatError> {
    let from_user = user_config.is_some();
    let mut config = match user_config.unwrap_or_else(|| variant.transformer_config()) {
        Value::Object(m) => m,
        _ => return fail("the transformer config is not a JSON object".into()),
    };
    let t = &out.tensors;
    let [inner, text_dim] = shape(t, "patch_embed.text_proj.weight", "mixins.patch_embed.text_proj.weight")?[..] else {
        return fail("`mixins.patch_embed.text_proj.weight` must be 2-D [inner, text_embed_dim]".into());
    };
    let time_dim = shape(t, "time_embedding.linear_1.weight", "time_embed.0.weight")?[0];
    let mut layers = 0;
    while t.contains_key(&format!("transformer_blocks.{layers}.attn1.to_q.weight")) {
        layers += 1;
    }
    if layers == 0 {
        return fail("the checkpoint has no `transformer.layers.0.attention.query_key_value.weight`".into());
    }
    let head_dim = match t.get("transformer_blocks.0.attn1.norm_q.weight") {
        Some(w) => w.dims[0],
        None => config.get("attention_head_dim").and_then(Value::as_i64).unwrap_or(64),
    };
    if head_dim <= 0 || inner % head_dim != 0 {
        return fail(format!("inner dim {inner} does not split into heads of {head_dim}"));
    }
    let (p, pt) = match variant {
        SatVariant::V15_5b => (2, 2),
        _ => (2, 1),
    };
    // SAT's current ImagePatchEmbeddingMixin is a Linear over (c, pt, p, p) patches for every
    // version; 1.0 checkpoints trained before it hold a Conv2d [inner, C, p, p]: the same numbers.
    let proj = shape(t, "patch_embed.proj.weight", "mixins.patch_embed.proj.weight")?.to_vec();
    let in_channels = match (variant, &proj[..]) {
        (_, [_, k]) if k % (pt * p * p) == 0 => k / (pt * p * p),
        (SatVariant::V2b | SatVariant::V5b, [_, c, kh, kw]) if *kh == p && *kw == p => *c,
        _ => {
            return fail(format!(
                "`mixins.patch_embed.proj.weight` is {proj:?}: expected [inner, C * {}] or, for CogVideoX 1.0, [inner, C, {p}, {p}]",
                pt * p * p
            ))
        }
    };
    if variant != SatVariant::V15_5b && proj.len() == 2 {
        let w = out.tensors.get_mut("patch_embed.proj.weight").expect("checked above");
        w.dims = vec![proj[0], in_channels, p, p];
    }
    let t = &out.tensors;
    let out_channels = shape(t, "proj_out.weight", "mixins.final_layer.linear.weight")?[0] / (pt * p * p);
    let ofs = t.get("ofs_embedding.linear_1.weight").map(|w| json!(w.dims[0])).unwrap_or(Value::Null);
    set(&mut config, from_user, "num_layers", json!(layers))?;
    set(&mut config, from_user, "num_attention_heads", json!(inner / head_dim))?;
    set(&mut config, from_user, "attention_head_dim", json!(head_dim))?;
    set(&mut config, from_user, "in_channels", json!(in_channels))?;
    set(&mut config, from_user, "out_channels", json!(out_channels))?;
    set(&mut config, from_user, "text_embed_dim", json!(text_dim))?;
    set(&mut config, from_user, "time_embed_dim", json!(time_dim))?;
    set(&mut config, from_user, "ofs_embed_dim", ofs)?;
    set(&mut config, from_user, "attention_bias", json!(t.contains_key("transformer_blocks.0.attn1.to_q.bias")))?;
    set(&mut config, from_user, "norm_elementwise_affine", json!(t.contains_key("norm_final.weight")))?;
    let config = Value::Object(config);
    let cfg: CogVideoXTransformerConfig =
        serde_json::from_value(config.clone()).map_err(|e| SatError(format!("transformer config: {e}")))?;
    if cfg.patch_size != p || cfg.temporal_patch() != pt {
        return fail(format!(
            "the config's patch_size {} / patch_size_t {:?} are not CogVideoX {}'s ({p} / {pt})",
            cfg.patch_size, cfg.patch_size_t, variant.name()
        ));
    }
    cfg.check().map_err(|e| SatError(e.to_string()))?;
    let shape = TransformerShape { batch: 1, frames: pt, height: p, width: p, text_len: 1 };
    let graph = transformer(&cfg, &shape, DType::F32).map_err(|e| SatError(format!("transformer: {e}")))?;
    let want: BTreeMap<String, Vec<i64>> = graph.weights().map(|(n, ty)| (n.to_string(), ty.shape.clone())).collect();
    check_weights("transformer", &out.tensors, &want, None)?;
    out.config = config;
    Ok(out)
}

/// The VAE's keys mapped (unknown ones collected); [`finish_vae`] completes it.
pub fn map_vae(sat: BTreeMap<String, HostTensor>, progress: &mut dyn FnMut()) -> Result<Converted, SatError> {
    let levels = vae_up_levels(sat.keys().map(String::as_str));
    if levels == 0 {
        return fail("the VAE checkpoint has no `decoder.up.N.*` keys: not a CogVideoX SAT VAE".into());
    }
    map_keys(sat, &|k| vae_target(k, levels), progress)
}

/// The mapped VAE's `config.json`, from the variant (or `user_config`) with the sizes the weights
/// give (`norm_num_groups` is not in the weights: the variant's 32 unless the config says
/// otherwise); the decoder checked against vidlower's decoder graph, the encoder carried over.
pub fn finish_vae(mut out: Converted, variant: SatVariant, user_config: Option<Value>) -> Result<Converted, SatError> {
    let levels = (0..).take_while(|j| out.tensors.contains_key(&format!("decoder.up_blocks.{j}.resnets.0.conv1.conv.weight"))).count();
    if levels == 0 {
        return fail("the VAE checkpoint has no `decoder.up.N.block.0.conv1.conv.weight`".into());
    }
    let from_user = user_config.is_some();
    let mut config = match user_config.unwrap_or_else(|| variant.vae_config()) {
        Value::Object(m) => m,
        _ => return fail("the VAE config is not a JSON object".into()),
    };
    let t = &out.tensors;
    let vae_shape = |name: &str, sat: &str| match t.get(name) {
        Some(x) => Ok(x.dims.clone()),
        None => fail(format!("the VAE checkpoint has no `{sat}` (diffusers `{name}`)")),
    };
    let mut channels = Vec::new();
    for j in (0..levels).rev() {
        let name = format!("decoder.up_blocks.{j}.resnets.0.conv1.conv.weight");
        channels.push(vae_shape(&name, &format!("decoder.up.{}.block.0.conv1.conv.weight", levels - 1 - j))?[0]);
    }
    let mut resnets = 0;
    while t.contains_key(&format!("decoder.up_blocks.0.resnets.{resnets}.conv1.conv.weight")) {
        resnets += 1;
    }
    let latent = vae_shape("decoder.conv_in.conv.weight", "decoder.conv_in.conv.weight")?[1];
    let out_ch = vae_shape("decoder.conv_out.conv.weight", "decoder.conv_out.conv.weight")?[0];
    set(&mut config, from_user, "block_out_channels", json!(channels))?;
    set(&mut config, from_user, "layers_per_block", json!(resnets - 1))?;
    set(&mut config, from_user, "latent_channels", json!(latent))?;
    set(&mut config, from_user, "out_channels", json!(out_ch))?;
    if let Some(w) = t.get("encoder.conv_in.conv.weight") {
        set(&mut config, from_user, "in_channels", json!(w.dims[1]))?;
    }
    if !from_user {
        config.insert("down_block_types".into(), json!(vec!["CogVideoXDownBlock3D"; levels]));
        config.insert("up_block_types".into(), json!(vec!["CogVideoXUpBlock3D"; levels]));
    }
    let config = Value::Object(config);
    let cfg: CogVideoXVaeConfig = serde_json::from_value(config.clone()).map_err(|e| SatError(format!("VAE config: {e}")))?;
    let shape = VaeDecodeShape { batch: 1, height: 2, width: 2 };
    let graph = decoder_step(&cfg, &shape, 1, DType::F32, true).map_err(|e| SatError(e.to_string()))?;
    let want: BTreeMap<String, Vec<i64>> = graph.weights().map(|(n, ty)| (n.to_string(), ty.shape.clone())).collect();
    check_weights("VAE decoder", &out.tensors, &want, Some("decoder."))?;
    out.config = config;
    Ok(out)
}

/// A SAT LoRA converted: PEFT-named factors, one rank.
pub struct ConvertedLora {
    /// `transformer.transformer_blocks.N.attn1.to_q.lora_A.weight` -> tensor.
    pub tensors: BTreeMap<String, HostTensor>,
    pub rank: i64,
    /// The adapted modules, without the `transformer.` prefix.
    pub modules: Vec<String>,
    /// Tensors of the base model the SAT checkpoint also holds, skipped.
    pub base: usize,
    /// `matrix_A` / `matrix_B` keys the map does not know (the caller refuses them).
    pub unknown: Vec<String>,
}

/// The factors of a SAT LoRA checkpoint (`export_sat_lora_weight.py`'s map): each module's A
/// [r, in] and B [out, r], both present, one rank throughout (SAT's `LoraMixin` has one `r`).
pub fn convert_lora(sat: BTreeMap<String, HostTensor>) -> Result<ConvertedLora, SatError> {
    use super::sat_keys::{lora_key, SatLoraKey};
    let mut out = ConvertedLora { tensors: BTreeMap::new(), rank: 0, modules: Vec::new(), base: 0, unknown: Vec::new() };
    let mut sat_names = BTreeMap::new();
    for (key, t) in sat {
        match lora_key(strip_prefixes(&key)) {
            SatLoraKey::Base => out.base += 1,
            SatLoraKey::Unknown => out.unknown.push(key),
            SatLoraKey::Factor(name) => {
                if t.dims.len() != 2 {
                    return fail(format!("`{key}`: a LoRA factor is 2-D ([r, in] or [out, r]), this is {:?}", t.dims));
                }
                if let Some(other) = sat_names.insert(name.clone(), key.clone()) {
                    return fail(format!("`{key}` and `{other}` both map to `{name}`"));
                }
                out.tensors.insert(name, t);
            }
        }
    }
    for (name, key) in &sat_names {
        let Some(module) = name.strip_suffix(".lora_A.weight") else { continue };
        let b_name = format!("{module}.lora_B.weight");
        let Some(b) = out.tensors.get(&b_name) else {
            return fail(format!("`{key}` has no matrix_B partner (`{b_name}`)"));
        };
        let r = out.tensors[name].dims[0];
        if b.dims[1] != r {
            return fail(format!("`{key}` has rank {r}, its matrix_B `{}` is {:?}", sat_names[&b_name], b.dims));
        }
        if out.rank != 0 && out.rank != r {
            return fail(format!("`{key}` has rank {r}, other factors rank {}; SAT LoRA uses one rank", out.rank));
        }
        out.rank = r;
        out.modules.push(module.strip_prefix("transformer.").unwrap_or(module).to_string());
    }
    if let Some((name, key)) = sat_names.iter().find(|(n, _)| n.ends_with(".lora_B.weight") && !out.tensors.contains_key(&n.replace(".lora_B.", ".lora_A."))) {
        return fail(format!("`{key}` has no matrix_A partner (`{}`)", name.replace(".lora_B.", ".lora_A.")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_configs_parse_and_pass_the_checks() {
        for name in SatVariant::NAMES {
            let v: SatVariant = name.parse().unwrap();
            assert_eq!(v.name(), name);
            let c: CogVideoXTransformerConfig = serde_json::from_value(v.transformer_config()).unwrap();
            c.check().unwrap();
            let vae: CogVideoXVaeConfig = serde_json::from_value(v.vae_config()).unwrap();
            assert_eq!(vae.invert_scale_latents, v == SatVariant::V15_5b);
        }
        let c: CogVideoXTransformerConfig = serde_json::from_value(SatVariant::V15_5b.transformer_config()).unwrap();
        assert_eq!((c.patch_size_t, c.patch_bias, c.sample_height, c.num_layers), (Some(2), false, 300, 42));
        let c: CogVideoXTransformerConfig = serde_json::from_value(SatVariant::V2b.transformer_config()).unwrap();
        assert!(!c.use_rotary_positional_embeddings && c.num_attention_heads == 30);
        assert!("3b".parse::<SatVariant>().unwrap_err().contains("2b, 5b, 1.5-5b"));
    }
}
