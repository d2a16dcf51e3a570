//! `WanTransformer3DModel` (diffusers `models/transformers/transformer_wan.py`, 0.42.1) as an IR
//! graph, block by block, with diffusers' state-dict names as weight names.
//!
//! Precision follows diffusers loaded with `torch_dtype=dtype`: the parameters its
//! `_keep_in_fp32_modules` covers (`time_embedder`, every `scale_shift_table`, `norm2`'s affine;
//! `rope`, `norm1` and `norm3` have none) are f32 weights; the modulation
//! (`scale_shift_table + temb.float()`), the norms and the gated residual adds run in f32 and are
//! rounded to `dtype` where diffusers calls `.type_as(hidden_states)`; RoPE tables are f32 (angles
//! in f64) and the rotation runs in f32. Everything else runs in `dtype`. At f32 all of this is
//! the identity.

use super::config::WanTransformerConfig;
use crate::nn::attention::{Attention, QkNorm};
use crate::nn::norms::{fp32_layer_norm, modulate};
use crate::nn::linear::linear;
use crate::nn::rope::{apply_rotary_emb_interleaved, axial_rope_tables, RopeAxis, RopeTables};
use crate::nn::timestep_embedding::{timestep_embedding, Timesteps};
use vidlower_ir::{AttentionKind, Builder, ConvAttrs, DType, GeluApprox, Graph, IrError, Result, TensorType, ValueId};

/// The sizes one graph is built for. `frames`, `height`, `width` are in latent units (the VAE's
/// output), each divisible by the matching `patch_size` entry; `text_len` is the text tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformerShape {
    pub batch: i64,
    pub frames: i64,
    pub height: i64,
    pub width: i64,
    pub text_len: i64,
}

/// The Wan 2.1 text-to-video transformer: inputs `hidden_states` [B, in_channels, T, H, W]
/// (`dtype`), `timestep` f32 [B] (integer timesteps as floats), `encoder_hidden_states`
/// [B, text_len, text_dim] (`dtype`); output `sample` [B, out_channels, T, H, W] (`dtype`).
pub fn transformer(cfg: &WanTransformerConfig, shape: &TransformerShape, dtype: DType) -> Result<Graph> {
    let dims = Dims::new(cfg, shape)?;
    let mut b = Builder::new("wan_transformer");
    let s = shape;
    let hidden_states =
        b.input("hidden_states", TensorType::new(dtype, vec![s.batch, cfg.in_channels, s.frames, s.height, s.width]))?;
    let timestep = b.input("timestep", TensorType::new(DType::F32, vec![s.batch]))?;
    let encoder_hidden_states =
        b.input("encoder_hidden_states", TensorType::new(dtype, vec![s.batch, s.text_len, cfg.text_dim]))?;

    // 1. Patch & position embedding: rotary_emb = self.rope(hidden_states)
    let rotary_emb = rope(&mut b, cfg, &dims)?;

    // hidden_states = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
    let patch = &cfg.patch_size;
    let attrs = ConvAttrs {
        strides: patch.clone(),
        padding: vec![(0, 0); 3],
        lhs_dilation: vec![1; 3],
        rhs_dilation: vec![1; 3],
        feature_group_count: 1,
    };
    let x = b.conv(hidden_states, "patch_embedding", dims.inner, patch, attrs, true)?;
    let x = b.reshape(x, &[s.batch, dims.inner, dims.tokens])?;
    let mut x = b.transpose(x, &[0, 2, 1])?;

    // 2. Condition embeddings
    let cond = condition_embedder(&mut b, cfg, &dims, timestep, encoder_hidden_states)?;
    // timestep_proj.unflatten(1, (6, -1))
    let timestep_proj = b.reshape(cond.timestep_proj, &[s.batch, 6, dims.inner])?;

    // 4. Transformer blocks
    for i in 0..cfg.num_layers {
        let prefix = format!("blocks.{i}");
        x = transformer_block(&mut b, &prefix, cfg, &dims, x, cond.encoder_hidden_states, timestep_proj, rotary_emb)?;
    }

    // 5. Output norm, projection & unpatchify
    // shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
    let table = b.weight("scale_shift_table", TensorType::new(DType::F32, vec![1, 2, dims.inner]))?;
    let temb = b.convert(cond.temb, DType::F32)?;
    let temb = b.reshape(temb, &[s.batch, 1, dims.inner])?;
    let mods = b.add(table, temb)?;
    let (shift, scale) = (chunk(&mut b, mods, 0)?, chunk(&mut b, mods, 1)?);
    // (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
    let x32 = b.convert(x, DType::F32)?;
    let h = fp32_layer_norm(&mut b, x32, cfg.eps, None)?;
    let h = modulate(&mut b, h, shift, scale)?;
    let h = b.convert(h, dtype)?;
    let h = linear(&mut b, h, "proj_out", dims.out_channels * dims.patch_volume(), true)?;

    // reshape(B, F, H, W, p_t, p_h, p_w, C).permute(0, 7, 1, 4, 2, 5, 3, 6), then flatten pairs
    let (pt, ph, pw) = (patch[0], patch[1], patch[2]);
    let h = b.reshape(h, &[s.batch, dims.ppf, dims.pph, dims.ppw, pt, ph, pw, dims.out_channels])?;
    let h = b.transpose(h, &[0, 7, 1, 4, 2, 5, 3, 6])?;
    let sample = b.reshape(h, &[s.batch, dims.out_channels, s.frames, s.height, s.width])?;
    b.output("sample", sample);
    b.finish()
}

/// Sizes derived from the config and the shape, checked once.
struct Dims {
    inner: i64,
    heads: i64,
    head_dim: i64,
    out_channels: i64,
    ppf: i64,
    pph: i64,
    ppw: i64,
    tokens: i64,
    patch: [i64; 3],
}

impl Dims {
    fn new(cfg: &WanTransformerConfig, shape: &TransformerShape) -> Result<Self> {
        let fail = |m: String| Err(IrError::Value(format!("wan transformer: {m}")));
        if cfg.image_dim.is_some() || cfg.added_kv_proj_dim.is_some() {
            return fail(format!(
                "image-to-video configs (image_dim {:?}, added_kv_proj_dim {:?}) are not supported; only text-to-video",
                cfg.image_dim, cfg.added_kv_proj_dim
            ));
        }
        let &[pt, ph, pw] = &cfg.patch_size[..] else {
            return fail(format!("patch_size must have 3 entries, got {:?}", cfg.patch_size));
        };
        let (f, h, w) = (shape.frames, shape.height, shape.width);
        if pt <= 0 || ph <= 0 || pw <= 0 || f % pt != 0 || h % ph != 0 || w % pw != 0 {
            return fail(format!("latent size {f}x{h}x{w} must be divisible by patch_size {:?}", cfg.patch_size));
        }
        let (ppf, pph, ppw) = (f / pt, h / ph, w / pw);
        if ppf.max(pph).max(ppw) > cfg.rope_max_seq_len {
            return fail(format!("{ppf}x{pph}x{ppw} patches exceed rope_max_seq_len {}", cfg.rope_max_seq_len));
        }
        if cfg.attention_head_dim % 2 != 0 {
            return fail(format!("attention_head_dim {} must be even for rotary embeddings", cfg.attention_head_dim));
        }
        if shape.batch <= 0 || shape.text_len <= 0 {
            return fail(format!("batch {} and text_len {} must be positive", shape.batch, shape.text_len));
        }
        Ok(Dims {
            inner: cfg.inner_dim(),
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
            out_channels: cfg.out_channels(),
            ppf,
            pph,
            ppw,
            tokens: ppf * pph * ppw,
            patch: [pt, ph, pw],
        })
    }

    fn patch_volume(&self) -> i64 {
        self.patch.iter().product()
    }
}

/// `WanRotaryPosEmbed`: head_dim split into t/h/w parts (h = w = 2 * (head_dim // 6), t the
/// rest), theta 10000, angles in f64 and cos/sin kept in f32 (the module is in diffusers'
/// `_keep_in_fp32_modules`).
fn rope(b: &mut Builder, cfg: &WanTransformerConfig, d: &Dims) -> Result<RopeTables> {
    let h_dim = 2 * (cfg.attention_head_dim / 6);
    let t_dim = cfg.attention_head_dim - 2 * h_dim;
    let axes = [
        RopeAxis { dim: t_dim, len: d.ppf },
        RopeAxis { dim: h_dim, len: d.pph },
        RopeAxis { dim: h_dim, len: d.ppw },
    ];
    axial_rope_tables(b, &axes, 10000.0, DType::F32)
}

/// What `WanTimeTextImageEmbedding` returns (text-to-video: no image embedding).
struct Conditioning {
    /// [B, inner] in the compute dtype.
    temb: ValueId,
    /// [B, 6 * inner] in the compute dtype.
    timestep_proj: ValueId,
    /// [B, L, inner] in the compute dtype.
    encoder_hidden_states: ValueId,
}

/// `condition_embedder` (`WanTimeTextImageEmbedding`).
fn condition_embedder(
    b: &mut Builder,
    cfg: &WanTransformerConfig,
    d: &Dims,
    timestep: ValueId,
    encoder_hidden_states: ValueId,
) -> Result<Conditioning> {
    let dtype = b.dtype(encoder_hidden_states);
    // timesteps_proj = Timesteps(freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0): f32.
    let t = Timesteps::new(cfg.freq_dim, true, 0.0).forward(b, timestep)?;
    // time_embedder is kept in f32; `.type_as(encoder_hidden_states)` after it.
    let temb = timestep_embedding(b, t, "condition_embedder.time_embedder", d.inner)?;
    let temb = b.convert(temb, dtype)?;
    // timestep_proj = self.time_proj(self.act_fn(temb))
    let act = b.silu(temb)?;
    let timestep_proj = linear(b, act, "condition_embedder.time_proj", 6 * d.inner, true)?;
    // text_embedder = PixArtAlphaTextProjection(text_dim, inner, act_fn="gelu_tanh")
    let e = linear(b, encoder_hidden_states, "condition_embedder.text_embedder.linear_1", d.inner, true)?;
    let e = b.gelu(e, GeluApprox::Tanh)?;
    let e = linear(b, e, "condition_embedder.text_embedder.linear_2", d.inner, true)?;
    Ok(Conditioning { temb, timestep_proj, encoder_hidden_states: e })
}

/// `WanTransformerBlock.forward` for a [B, 6, inner] `temb` (Wan 2.1 / 2.2 14B).
#[allow(clippy::too_many_arguments)]
fn transformer_block(
    b: &mut Builder,
    prefix: &str,
    cfg: &WanTransformerConfig,
    d: &Dims,
    hidden_states: ValueId,
    encoder_hidden_states: ValueId,
    temb: ValueId,
    rotary_emb: RopeTables,
) -> Result<ValueId> {
    let dtype = b.dtype(hidden_states);
    // shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa =
    //     (self.scale_shift_table + temb.float()).chunk(6, dim=1)
    let table = b.weight(&format!("{prefix}.scale_shift_table"), TensorType::new(DType::F32, vec![1, 6, d.inner]))?;
    let temb = b.convert(temb, DType::F32)?;
    let mods = b.add(table, temb)?;
    let [shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa] =
        [0, 1, 2, 3, 4, 5].map(|i| chunk(b, mods, i));
    let x32 = b.convert(hidden_states, DType::F32)?;

    // 1. Self-attention
    let h = fp32_layer_norm(b, x32, cfg.eps, None)?;
    let h = modulate(b, h, shift_msa?, scale_msa?)?;
    let norm_hidden_states = b.convert(h, dtype)?;
    let attn_output = attention(b, &format!("{prefix}.attn1"), cfg, d, norm_hidden_states, None, Some(rotary_emb))?;
    // (hidden_states.float() + attn_output * gate_msa).type_as(hidden_states)
    let attn_output = b.convert(attn_output, DType::F32)?;
    let gated = b.mul(attn_output, gate_msa?)?;
    let x = b.add(x32, gated)?;
    let hidden_states = b.convert(x, dtype)?;

    // 2. Cross-attention: norm2 is FP32LayerNorm with affine when cross_attn_norm, else Identity.
    let norm_hidden_states = if cfg.cross_attn_norm {
        let x32 = b.convert(hidden_states, DType::F32)?;
        let h = fp32_layer_norm(b, x32, cfg.eps, Some(&format!("{prefix}.norm2")))?;
        b.convert(h, dtype)?
    } else {
        hidden_states
    };
    let attn2 = format!("{prefix}.attn2");
    let attn_output = attention(b, &attn2, cfg, d, norm_hidden_states, Some(encoder_hidden_states), None)?;
    let hidden_states = b.add(hidden_states, attn_output)?;

    // 3. Feed-forward
    let x32 = b.convert(hidden_states, DType::F32)?;
    let h = fp32_layer_norm(b, x32, cfg.eps, None)?;
    let h = modulate(b, h, c_shift_msa?, c_scale_msa?)?;
    let norm_hidden_states = b.convert(h, dtype)?;
    // FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate"): net.0 = GELU(proj), net.2 = Linear
    let ff = linear(b, norm_hidden_states, &format!("{prefix}.ffn.net.0.proj"), cfg.ffn_dim, true)?;
    let ff = b.gelu(ff, GeluApprox::Tanh)?;
    let ff = linear(b, ff, &format!("{prefix}.ffn.net.2"), d.inner, true)?;
    // (hidden_states.float() + ff_output.float() * c_gate_msa).type_as(hidden_states)
    let ff = b.convert(ff, DType::F32)?;
    let gated = b.mul(ff, c_gate_msa?)?;
    let x = b.add(x32, gated)?;
    b.convert(x, dtype)
}

/// `WanAttention` with `WanAttnProcessor` (text-to-video): q/k/v projections, RMSNorm of q and k
/// over the whole inner dim before the heads are split (`norm_q`/`norm_k`, present whatever
/// `qk_norm` says), RoPE on q and k for self-attention, SDPA with scale 1/sqrt(head_dim), `to_out.0`.
fn attention(
    b: &mut Builder,
    prefix: &str,
    cfg: &WanTransformerConfig,
    d: &Dims,
    hidden_states: ValueId,
    encoder_hidden_states: Option<ValueId>,
    rotary_emb: Option<RopeTables>,
) -> Result<ValueId> {
    let attn = Attention {
        prefix,
        heads: d.heads,
        head_dim: d.head_dim,
        qk_norm: QkNorm::RmsAcrossHeads { eps: cfg.eps },
        bias: true,
        out_bias: true,
    };
    let context = encoder_hidden_states.unwrap_or(hidden_states);
    let mut qkv = attn.project_qkv(b, hidden_states, context)?;
    if let Some(tables) = rotary_emb {
        qkv.query = apply_rotary_emb_interleaved(b, qkv.query, tables)?;
        qkv.key = apply_rotary_emb_interleaved(b, qkv.key, tables)?;
    }
    let [query, key, value] = qkv.heads_first(b)?;
    // attn1 attends over the video tokens, attn2 over the text (`encoder_hidden_states`).
    let kind = if encoder_hidden_states.is_some() { AttentionKind::Cross } else { AttentionKind::SelfAttention };
    let out = b.attention(kind, query, key, value, attn.scale(), None, None)?;
    attn.project_out(b, out)
}

/// Chunk `i` of `mods` [B, n, inner] along dim 1, as [B, 1, inner].
fn chunk(b: &mut Builder, mods: ValueId, i: i64) -> Result<ValueId> {
    b.slice_axis(mods, 1, i, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WanTransformerConfig {
        WanTransformerConfig {
            num_attention_heads: 2,
            attention_head_dim: 12,
            text_dim: 32,
            freq_dim: 16,
            ffn_dim: 48,
            num_layers: 2,
            ..Default::default()
        }
    }

    #[test]
    fn tiny_graph_types_and_weight_names() {
        let shape = TransformerShape { batch: 2, frames: 3, height: 4, width: 6, text_len: 16 };
        let g = transformer(&tiny(), &shape, DType::BF16).unwrap();
        let out = g.tensor_ty(g.outputs[0].value);
        assert_eq!(out, &TensorType::new(DType::BF16, vec![2, 16, 3, 4, 6]));
        let w: std::collections::HashMap<&str, &TensorType> = g.weights().collect();
        assert_eq!(w.len(), 27 * 2 + 15);
        assert_eq!(w["patch_embedding.weight"], &TensorType::new(DType::BF16, vec![24, 16, 1, 2, 2]));
        assert_eq!(w["blocks.1.scale_shift_table"], &TensorType::new(DType::F32, vec![1, 6, 24]));
        assert_eq!(w["condition_embedder.time_embedder.linear_1.weight"], &TensorType::new(DType::F32, vec![24, 16]));
        assert_eq!(w["blocks.0.norm2.weight"].dtype, DType::F32);
        assert_eq!(w["blocks.0.attn1.norm_q.weight"], &TensorType::new(DType::BF16, vec![24]));
        assert_eq!(w["proj_out.weight"], &TensorType::new(DType::BF16, vec![64, 24]));
    }

    #[test]
    fn image_to_video_and_bad_sizes_are_refused() {
        let shape = TransformerShape { batch: 1, frames: 3, height: 4, width: 6, text_len: 8 };
        let i2v = WanTransformerConfig { image_dim: Some(1280), ..tiny() };
        assert!(transformer(&i2v, &shape, DType::F32).unwrap_err().to_string().contains("image-to-video"));
        let odd = TransformerShape { width: 5, ..shape };
        assert!(transformer(&tiny(), &odd, DType::F32).unwrap_err().to_string().contains("divisible"));
    }
}
