//! CogVideoX SAT checkpoints (the CogVideo repository's `sat/` training code, SwissArmyTransformer
//! module names) in diffusers' names: the map of diffusers' `scripts/convert_cogvideox_to_diffusers.py`
//! for the transformer and the VAE, and of CogVideo's `tools/export_sat_lora_weight.py` for LoRA
//! factors, written out key by key so that a key neither map knows is reported, not carried along.
//!
//! Transformer (`DiffusionTransformer` of `sat/dit_video_concat.py`):
//! - `transformer.layers.N.{input_layernorm, attention.dense, post_attention_layernorm,
//!   mlp.dense_h_to_4h, mlp.dense_4h_to_h}` -> `transformer_blocks.N.{norm1.norm, attn1.to_out.0,
//!   norm2.norm, ff.net.0.proj, ff.net.2}`; `transformer.final_layernorm` -> `norm_final`;
//! - `attention.query_key_value` (q|k|v stacked on rows) -> `attn1.to_q`, `to_k`, `to_v`;
//! - `mixins.adaln_layer.adaLN_modulations.N.1` (12 chunks: shift, scale, gate of the attention
//!   and of the MLP for the video, then the same six for the text) -> `norm1.linear` (video
//!   attention chunks, then text attention chunks: 0-2, 6-8) and `norm2.linear` (3-5, 9-11), the
//!   order `CogVideoXLayerNormZero` chunks in;
//! - `mixins.adaln_layer.{query,key}_layernorm_list.N` -> `transformer_blocks.N.attn1.norm_{q,k}`;
//! - `mixins.patch_embed.{proj,text_proj}` -> `patch_embed.*`; `time_embed.{0,2}` /
//!   `ofs_embed.{0,2}` -> `time_embedding` / `ofs_embedding.linear_{1,2}`;
//! - `mixins.final_layer.{norm_final, linear, adaLN_modulation.1}` -> `norm_out.norm`, `proj_out`,
//!   `norm_out.linear` (SAT's `FinalLayerMixin` chunks (shift, scale) as `AdaLayerNorm(chunk_dim=1)`
//!   does, so no reorder);
//! - dropped, as the script drops them: the position tables (`mixins.pos_embed.*`: the 2b sincos
//!   table and the RoPE `freqs_sin`/`freqs_cos`, which the model recomputes) and SAT's unused
//!   token/position embeddings (`embed_tokens`, `position_embeddings`, `word_embeddings`).
//!
//! VAE (`sgm/modules/cp_enc_dec.py`): per dotted segment, `down.I` -> `down_blocks.I`, `up.I` ->
//! `up_blocks.(n-1-I)` (SAT lists the decoder's levels from the lowest resolution up, diffusers in
//! decoding order), `block.J` -> `resnets.J`, `mid.block_1|2` -> `mid_block.resnets.0|1`,
//! `downsample` / `upsample` -> `downsamplers.0` / `upsamplers.0`, `nin_shortcut` -> `conv_shortcut`;
//! `loss.*` (the discriminator and LPIPS of training) is dropped.

use vidlower_ir::host_tensor::HostTensor;

/// The prefixes a SAT state dict's keys may carry: the DeepSpeed wrapper's `module.` and the
/// diffusion engine's `model.diffusion_model.` (the transformer inside `SATVideoDiffusionEngine`).
const PREFIXES: [&str; 2] = ["module.", "model.diffusion_model."];

/// `key` without the SAT wrapper prefixes.
pub fn strip_prefixes(key: &str) -> &str {
    let mut k = key;
    for p in PREFIXES {
        k = k.strip_prefix(p).unwrap_or(k);
    }
    k
}

/// What becomes of one SAT tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum SatTarget {
    /// The same tensor under a diffusers name.
    Rename(String),
    /// Rows cut into `chunks` equal parts; each target is the concatenation of the listed parts.
    Split { chunks: usize, parts: Vec<(String, Vec<usize>)> },
    /// Not a weight of the diffusers model; why.
    Drop(&'static str),
}

fn weight_or_bias(s: &str) -> Option<&str> {
    matches!(s, "weight" | "bias").then_some(s)
}

fn index(s: &str) -> Option<usize> {
    s.parse().ok().filter(|_| !s.starts_with('+'))
}

/// The target of one SAT transformer key (prefixes already stripped); `None` for a key the map
/// does not know.
pub fn transformer_target(key: &str) -> Option<SatTarget> {
    use SatTarget::{Drop, Rename, Split};
    let parts: Vec<&str> = key.split('.').collect();
    let recomputed = "a position table the model recomputes";
    if key.starts_with("mixins.pos_embed.") {
        return Some(Drop(recomputed));
    }
    if matches!(parts[0], "first_stage_model" | "conditioner") {
        return Some(Drop("the diffusion engine's VAE or text encoder, not the transformer (--vae converts a SAT VAE)"));
    }
    if parts.iter().any(|p| matches!(*p, "embed_tokens" | "position_embeddings" | "word_embeddings")) {
        return Some(Drop("a SAT token/position embedding CogVideoX does not use"));
    }
    let wb = weight_or_bias(parts.last()?)?;
    let rename = |name: String| Some(Rename(format!("{name}.{wb}")));
    match parts[..] {
        ["transformer", "final_layernorm", _] => rename("norm_final".into()),
        ["transformer", "layers", n, ref rest @ .., _] => {
            let n = index(n)?;
            let block = format!("transformer_blocks.{n}");
            let sub = match rest {
                ["input_layernorm"] => "norm1.norm",
                ["post_attention_layernorm"] => "norm2.norm",
                ["attention", "dense"] => "attn1.to_out.0",
                ["mlp", "dense_h_to_4h"] => "ff.net.0.proj",
                ["mlp", "dense_4h_to_h"] => "ff.net.2",
                ["attention", "query_key_value"] => {
                    let parts = ["to_q", "to_k", "to_v"]
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (format!("{block}.attn1.{p}.{wb}"), vec![i]))
                        .collect();
                    return Some(Split { chunks: 3, parts });
                }
                _ => return None,
            };
            rename(format!("{block}.{sub}"))
        }
        [emb @ ("time_embed" | "ofs_embed"), i @ ("0" | "2"), _] => {
            let name = if emb == "time_embed" { "time_embedding" } else { "ofs_embedding" };
            rename(format!("{name}.linear_{}", if i == "0" { 1 } else { 2 }))
        }
        ["mixins", "patch_embed", p @ ("proj" | "text_proj"), _] => rename(format!("patch_embed.{p}")),
        ["mixins", "final_layer", "norm_final", _] => rename("norm_out.norm".into()),
        ["mixins", "final_layer", "linear", _] => rename("proj_out".into()),
        ["mixins", "final_layer", "adaLN_modulation", "1", _] => rename("norm_out.linear".into()),
        ["mixins", "adaln_layer", "adaLN_modulations", n, "1", _] => {
            let n = index(n)?;
            let parts = vec![
                (format!("transformer_blocks.{n}.norm1.linear.{wb}"), vec![0, 1, 2, 6, 7, 8]),
                (format!("transformer_blocks.{n}.norm2.linear.{wb}"), vec![3, 4, 5, 9, 10, 11]),
            ];
            Some(Split { chunks: 12, parts })
        }
        ["mixins", "adaln_layer", list @ ("query_layernorm_list" | "key_layernorm_list"), n, _] => {
            let norm = if list == "query_layernorm_list" { "norm_q" } else { "norm_k" };
            rename(format!("transformer_blocks.{}.attn1.{norm}", index(n)?))
        }
        _ => None,
    }
}

/// The number of decoder levels (`decoder.up.I`) among SAT VAE keys, which `up.I` needs.
pub fn vae_up_levels<'a>(keys: impl IntoIterator<Item = &'a str>) -> usize {
    keys.into_iter()
        .map(strip_prefixes)
        .filter_map(|k| k.strip_prefix(ENGINE_VAE).unwrap_or(k).strip_prefix("decoder.up."))
        .filter_map(|rest| rest.split('.').next().and_then(index))
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

/// The prefix of the VAE inside a whole SAT diffusion engine's state dict.
const ENGINE_VAE: &str = "first_stage_model.";

/// The target of one SAT VAE key (prefixes already stripped; a whole engine's
/// `first_stage_model.` too), `up_levels` from [`vae_up_levels`].
pub fn vae_target(key: &str, up_levels: usize) -> Option<SatTarget> {
    let key = key.strip_prefix(ENGINE_VAE).unwrap_or(key);
    let parts: Vec<&str> = key.split('.').collect();
    match parts.first() {
        Some(&"loss") => return Some(SatTarget::Drop("a training loss module (discriminator, LPIPS)")),
        Some(&("encoder" | "decoder")) => {}
        _ => return None,
    }
    weight_or_bias(parts.last()?)?;
    let mut out: Vec<String> = Vec::with_capacity(parts.len() + 2);
    let mut i = 0;
    while i < parts.len() {
        let next = parts.get(i + 1).copied();
        match (parts[i], next) {
            ("down", Some(n)) => {
                out.push(format!("down_blocks.{}", index(n)?));
                i += 1;
            }
            ("up", Some(n)) => {
                let n = index(n)?;
                out.push(format!("up_blocks.{}", up_levels.checked_sub(n + 1)?));
                i += 1;
            }
            ("block", Some(n)) => {
                out.push(format!("resnets.{}", index(n)?));
                i += 1;
            }
            ("mid", Some(b @ ("block_1" | "block_2"))) => {
                out.push(format!("mid_block.resnets.{}", if b == "block_1" { 0 } else { 1 }));
                i += 1;
            }
            ("downsample", _) => out.push("downsamplers.0".into()),
            ("upsample", _) => out.push("upsamplers.0".into()),
            ("nin_shortcut", _) => out.push("conv_shortcut".into()),
            (p, _) => out.push(p.into()),
        }
        i += 1;
    }
    Some(SatTarget::Rename(out.join(".")))
}

/// One SAT LoRA key (`sat.model.finetune.lora2.LoraMixin`), prefixes already stripped.
#[derive(Clone, Debug, PartialEq)]
pub enum SatLoraKey {
    /// A factor, with its diffusers / PEFT name (`transformer.transformer_blocks.N.attn1.to_q.lora_A.weight`).
    Factor(String),
    /// A `matrix_A` / `matrix_B` the map does not know.
    Unknown,
    /// Not a LoRA factor (a SAT LoRA checkpoint also holds the base model).
    Base,
}

/// `...layers.N.attention.query_key_value.matrix_A.I` (I = 0, 1, 2 for q, k, v) and
/// `...attention.dense.matrix_A.0` (and `matrix_B`), as `export_sat_lora_weight.py` maps them.
pub fn lora_key(key: &str) -> SatLoraKey {
    let parts: Vec<&str> = key.split('.').collect();
    let Some(m) = parts.iter().position(|p| matches!(*p, "matrix_A" | "matrix_B")) else {
        return SatLoraKey::Base;
    };
    let ab = if parts[m] == "matrix_A" { "lora_A" } else { "lora_B" };
    let module = match (&parts[..m], &parts[m + 1..]) {
        (["transformer", "layers", n, "attention", "query_key_value"], [i]) => {
            match (index(n), ["to_q", "to_k", "to_v"].get(index(i).unwrap_or(usize::MAX))) {
                (Some(n), Some(p)) => format!("transformer_blocks.{n}.attn1.{p}"),
                _ => return SatLoraKey::Unknown,
            }
        }
        (["transformer", "layers", n, "attention", "dense"], ["0"]) => match index(n) {
            Some(n) => format!("transformer_blocks.{n}.attn1.to_out.0"),
            None => return SatLoraKey::Unknown,
        },
        _ => return SatLoraKey::Unknown,
    };
    SatLoraKey::Factor(format!("transformer.{module}.{ab}.weight"))
}

/// Applies a [`SatTarget`] to a tensor: the (name, tensor) pairs it becomes (none for a drop).
/// Errors name the key and the shape expected.
pub fn apply(key: &str, target: &SatTarget, t: HostTensor) -> Result<Vec<(String, HostTensor)>, String> {
    match target {
        SatTarget::Drop(_) => Ok(Vec::new()),
        SatTarget::Rename(name) => Ok(vec![(name.clone(), t)]),
        SatTarget::Split { chunks, parts } => {
            let rows = t.dims.first().copied().unwrap_or(0);
            if t.dims.is_empty() || rows % *chunks as i64 != 0 {
                return Err(format!(
                    "`{key}` is {:?}; its first dimension must split into {chunks} equal parts",
                    t.dims
                ));
            }
            // Row-major: a block of rows is a contiguous byte range.
            let step = t.data.len() / chunks;
            parts
                .iter()
                .map(|(name, idx)| {
                    let mut data = Vec::with_capacity(step * idx.len());
                    for &i in idx {
                        data.extend_from_slice(&t.data[i * step..(i + 1) * step]);
                    }
                    let mut dims = t.dims.clone();
                    dims[0] = rows / *chunks as i64 * idx.len() as i64;
                    HostTensor::new(t.dtype, dims, data).map(|x| (name.clone(), x)).map_err(|e| format!("`{key}`: {e}"))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rename(s: &str) -> Option<SatTarget> {
        Some(SatTarget::Rename(s.into()))
    }

    #[test]
    fn transformer_keys() {
        let t = |k| transformer_target(strip_prefixes(k));
        assert_eq!(t("model.diffusion_model.transformer.layers.3.input_layernorm.weight"), rename("transformer_blocks.3.norm1.norm.weight"));
        assert_eq!(t("module.model.diffusion_model.transformer.layers.0.mlp.dense_4h_to_h.bias"), rename("transformer_blocks.0.ff.net.2.bias"));
        assert_eq!(t("transformer.final_layernorm.bias"), rename("norm_final.bias"));
        assert_eq!(t("mixins.final_layer.adaLN_modulation.1.weight"), rename("norm_out.linear.weight"));
        assert_eq!(t("mixins.adaln_layer.key_layernorm_list.7.bias"), rename("transformer_blocks.7.attn1.norm_k.bias"));
        assert_eq!(t("ofs_embed.2.weight"), rename("ofs_embedding.linear_2.weight"));
        let Some(SatTarget::Split { chunks: 12, parts }) = t("mixins.adaln_layer.adaLN_modulations.1.1.bias") else { panic!() };
        assert_eq!(parts[1], ("transformer_blocks.1.norm2.linear.bias".to_string(), vec![3, 4, 5, 9, 10, 11]));
        assert!(matches!(t("mixins.pos_embed.freqs_sin"), Some(SatTarget::Drop(_))));
        assert!(matches!(t("first_stage_model.decoder.conv_in.conv.weight"), Some(SatTarget::Drop(_))));
        for unknown in ["transformer.layers.0.attention.query_key_value.matrix_A.0", "transformer.layers.x.input_layernorm.weight", "foo.weight", "time_embed.1.weight"] {
            assert_eq!(t(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn vae_and_lora_keys() {
        assert_eq!(vae_up_levels(["decoder.up.3.block.0.conv1.conv.weight", "decoder.up.0.upsample.conv.bias"]), 4);
        assert_eq!(vae_target("decoder.up.0.upsample.conv.bias", 4), rename("decoder.up_blocks.3.upsamplers.0.conv.bias"));
        assert_eq!(vae_target("encoder.mid.block_2.nin_shortcut.weight", 4), rename("encoder.mid_block.resnets.1.conv_shortcut.weight"));
        assert_eq!(vae_target("encoder.down.1.block.0.norm1.weight", 4), rename("encoder.down_blocks.1.resnets.0.norm1.weight"));
        assert_eq!(vae_target("decoder.up.4.block.0.conv1.conv.weight", 4), None);
        assert_eq!(vae_up_levels(["first_stage_model.decoder.up.1.block.0.conv1.conv.weight"]), 2);
        assert_eq!(vae_target("first_stage_model.decoder.up.1.block.0.conv1.conv.weight", 2), rename("decoder.up_blocks.0.resnets.0.conv1.conv.weight"));
        assert!(matches!(vae_target("loss.discriminator.main.0.weight", 4), Some(SatTarget::Drop(_))));
        assert_eq!(
            lora_key("transformer.layers.2.attention.query_key_value.matrix_B.1"),
            SatLoraKey::Factor("transformer.transformer_blocks.2.attn1.to_k.lora_B.weight".into())
        );
        assert_eq!(lora_key("transformer.layers.2.attention.query_key_value.matrix_B.3"), SatLoraKey::Unknown);
        assert_eq!(lora_key("transformer.layers.2.mlp.dense_h_to_4h.matrix_A.0"), SatLoraKey::Unknown);
        assert_eq!(lora_key("transformer.layers.2.attention.dense.original.weight"), SatLoraKey::Base);
    }

    #[test]
    fn split_takes_row_blocks() {
        let t = HostTensor::from_f32(vec![12, 1], &(0..12).map(|i| i as f32).collect::<Vec<_>>()).unwrap();
        let target = transformer_target("mixins.adaln_layer.adaLN_modulations.0.1.weight").unwrap();
        let out = apply("k", &target, t).unwrap();
        assert_eq!(out[0].1.to_f32_vec(), vec![0.0, 1.0, 2.0, 6.0, 7.0, 8.0]);
        assert_eq!(out[1].1.dims, vec![6, 1]);
        let odd = HostTensor::from_f32(vec![5], &[0.0; 5]).unwrap();
        assert!(apply("k", &target, odd).unwrap_err().contains("12 equal parts"));
    }
}
