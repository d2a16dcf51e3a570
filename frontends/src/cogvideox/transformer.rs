//! `CogVideoXTransformer3DModel` (diffusers `models/transformers/cogvideox_transformer_3d.py`, 0.42.1)
//! as an IR graph, block by block, with diffusers' state-dict names as weight names. The positional
//! information is computed inside the graph as the pipeline computes it: the 3D sincos table of
//! `CogVideoXPatchEmbed` (2b) or the 3D rotary tables of `CogVideoXPipeline.
//! _prepare_rotary_positional_embeddings` (5b: "linspace" grid over the base-size crop region; 1.5:
//! "slice" grid), see [`super::embeddings`].
//!
//! Precision follows diffusers loaded with `torch_dtype=dtype` (the model has no fp32 modules): every
//! weight and activation is in `dtype`; the sinusoidal timestep features are f32 and rounded to
//! `dtype` (`t_emb.to(hidden_states.dtype)`); the sincos table is f64 rounded to `dtype`; the RoPE
//! tables and the rotation are f32 with q/k rounded back to `dtype`. At f32 all of this is exact math.

use crate::nn::linear::linear;
use super::config::CogVideoXTransformerConfig;
use super::embeddings::{resize_crop_region_for_grid, rotary_pos_embed_3d, sincos_pos_embed_3d, RopeGrid};
use crate::nn::attention::{Attention, QkNorm};
use crate::nn::norms::{layer_norm, modulate};
use crate::nn::rope::{apply_rotary_emb_interleaved, RopeTables};
use crate::nn::timestep_embedding::{timestep_embedding, Timesteps};
use vidlower_ir::{Builder, ConvAttrs, DType, GeluApprox, Graph, IrError, Result, TensorType, ValueId};

/// The sizes one graph is built for, in the pipeline's latent layout: `frames` latent frames (for
/// CogVideoX 1.5 already padded to a multiple of `patch_size_t`, as the pipeline pads), `height` and
/// `width` latent pixels (divisible by `patch_size`), `text_len` text tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformerShape {
    pub batch: i64,
    pub frames: i64,
    pub height: i64,
    pub width: i64,
    pub text_len: i64,
}

/// The CogVideoX text-to-video transformer. Inputs (diffusers' `forward()` arguments):
/// `hidden_states` [B, F, in_channels, H, W] (`dtype`; CogVideoX's frames-first layout), `timestep`
/// f32 [B] (the pipeline's int64 timesteps as floats: diffusers embeds `timesteps.float()`),
/// `encoder_hidden_states` [B, text_len, text_embed_dim] (`dtype`), and `ofs` f32 [B] only when the
/// config has `ofs_embed_dim` (CogVideoX1.5 I2V's pipeline passes 2.0). Output `sample`
/// [B, F, out_channels, H, W] (`dtype`).
pub fn transformer(cfg: &CogVideoXTransformerConfig, shape: &TransformerShape, dtype: DType) -> Result<Graph> {
    let d = Dims::new(cfg, shape)?;
    let s = shape;
    let mut b = Builder::new("cogvideox_transformer");
    let hidden_states =
        b.input("hidden_states", TensorType::new(dtype, vec![s.batch, s.frames, cfg.in_channels, s.height, s.width]))?;
    let timestep = b.input("timestep", TensorType::new(DType::F32, vec![s.batch]))?;
    let encoder_hidden_states =
        b.input("encoder_hidden_states", TensorType::new(dtype, vec![s.batch, s.text_len, cfg.text_embed_dim]))?;
    let ofs = match cfg.ofs_embed_dim {
        Some(_) => Some(b.input("ofs", TensorType::new(DType::F32, vec![s.batch]))?),
        None => None,
    };

    // 1. Time embedding: t_emb = self.time_proj(timesteps).to(dtype); emb = self.time_embedding(t_emb)
    let time_proj = Timesteps::new(d.inner, cfg.flip_sin_to_cos, cfg.freq_shift);
    let t_emb = time_proj.forward(&mut b, timestep)?;
    let t_emb = b.convert(t_emb, dtype)?;
    let mut emb = timestep_embedding(&mut b, t_emb, "time_embedding", cfg.time_embed_dim)?;
    if let (Some(ofs), Some(ofs_dim)) = (ofs, cfg.ofs_embed_dim) {
        // ofs_emb = self.ofs_embedding(self.ofs_proj(ofs).to(dtype)); emb = emb + ofs_emb
        let ofs_emb = Timesteps::new(ofs_dim, cfg.flip_sin_to_cos, cfg.freq_shift).forward(&mut b, ofs)?;
        let ofs_emb = b.convert(ofs_emb, dtype)?;
        let ofs_emb = timestep_embedding(&mut b, ofs_emb, "ofs_embedding", ofs_dim)?;
        emb = b.add(emb, ofs_emb)?;
    }

    // 2. Patch embedding (+ sincos positions for 2b); text and video stay separate streams.
    let (mut encoder_hidden_states, mut hidden_states) =
        patch_embed(&mut b, cfg, &d, encoder_hidden_states, hidden_states)?;
    let image_rotary_emb = if cfg.use_rotary_positional_embeddings { Some(rotary_emb(&mut b, cfg, &d)?) } else { None };

    // 3. Transformer blocks
    for i in 0..cfg.num_layers {
        let prefix = format!("transformer_blocks.{i}");
        (hidden_states, encoder_hidden_states) =
            block(&mut b, &prefix, cfg, &d, hidden_states, encoder_hidden_states, emb, image_rotary_emb)?;
    }

    // 4. Final block: norm_final on the video tokens, then norm_out (AdaLayerNorm, chunk_dim=1: shift
    // first, then scale), proj_out.
    let affine = |name: &'static str| cfg.norm_elementwise_affine.then_some(name);
    let h = layer_norm(&mut b, hidden_states, cfg.norm_eps, affine("norm_final"))?;
    let act = b.silu(emb)?;
    let mods = linear(&mut b, act, "norm_out.linear", 2 * d.inner, true)?;
    let (shift, scale) = (chunk(&mut b, mods, 2, 0)?, chunk(&mut b, mods, 2, 1)?);
    let h = layer_norm(&mut b, h, cfg.norm_eps, affine("norm_out.norm"))?;
    let h = modulate(&mut b, h, shift, scale)?;
    let h = linear(&mut b, h, "proj_out", d.out_channels * d.pt * d.p * d.p, true)?;

    // 5. Unpatchify to [B, F, C, H, W].
    let (bs, c, p, pt) = (s.batch, d.out_channels, d.p, d.pt);
    let sample = if cfg.patch_size_t.is_none() {
        // reshape(B, F, H/p, W/p, C, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        let h = b.reshape(h, &[bs, s.frames, d.pph, d.ppw, c, p, p])?;
        b.transpose(h, &[0, 1, 4, 2, 5, 3, 6])?
    } else {
        // reshape(B, F/pt, H/p, W/p, C, pt, p, p).permute(0, 1, 5, 4, 2, 6, 3, 7)
        let h = b.reshape(h, &[bs, d.ppf, d.pph, d.ppw, c, pt, p, p])?;
        b.transpose(h, &[0, 1, 5, 4, 2, 6, 3, 7])?
    };
    let sample = b.reshape(sample, &[bs, s.frames, c, s.height, s.width])?;
    b.output("sample", sample);
    b.finish()
}

/// Sizes derived from the config and the shape, checked once.
struct Dims {
    inner: i64,
    heads: i64,
    head_dim: i64,
    out_channels: i64,
    p: i64,
    /// `patch_size_t`, 1 for CogVideoX 1.0.
    pt: i64,
    /// Patch grid: token frames, rows, columns.
    ppf: i64,
    pph: i64,
    ppw: i64,
}

impl Dims {
    fn new(cfg: &CogVideoXTransformerConfig, shape: &TransformerShape) -> Result<Self> {
        cfg.check().map_err(|e| IrError::Value(e.to_string()))?;
        let fail = |m: String| Err(IrError::Value(format!("cogvideox transformer: {m}")));
        let (p, pt) = (cfg.patch_size, cfg.temporal_patch());
        let (f, h, w) = (shape.frames, shape.height, shape.width);
        if f <= 0 || h <= 0 || w <= 0 || f % pt != 0 || h % p != 0 || w % p != 0 {
            return fail(format!(
                "latent size {f}x{h}x{w} (frames x height x width) must be positive and divisible by patch_size_t {pt} \
                 (the pipeline pads the frames) and patch_size {p}"
            ));
        }
        if shape.batch <= 0 || shape.text_len <= 0 {
            return fail(format!("batch {} and text_len {} must be positive", shape.batch, shape.text_len));
        }
        let (ppf, pph, ppw) = (f / pt, h / p, w / p);
        if cfg.patch_size_t.is_some() && cfg.use_rotary_positional_embeddings {
            // The "slice" grid takes the first rows/columns of a sample-size table; diffusers fails past it.
            let (max_h, max_w) = (cfg.sample_height / p, cfg.sample_width / p);
            if pph > max_h || ppw > max_w {
                return fail(format!(
                    "{pph}x{ppw} patches exceed the RoPE grid sample_height/patch_size x sample_width/patch_size = {max_h}x{max_w}"
                ));
            }
        }
        Ok(Dims {
            inner: cfg.inner_dim(),
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
            out_channels: cfg.out_channels,
            p,
            pt,
            ppf,
            pph,
            ppw,
        })
    }

    fn video_tokens(&self) -> i64 {
        self.ppf * self.pph * self.ppw
    }
}

/// `CogVideoXPatchEmbed`: `text_proj` of the text, the patch projection of the video (a Conv2d per
/// frame for 1.0, a Linear over (C, pt, p, p) patches for 1.5), tokens ordered (frame, row, column);
/// with sincos positions the table is added to the video tokens (diffusers adds a joint table whose
/// text rows are zero, which needs `text_len == max_text_seq_length` there; here any length works).
/// Returns (text [B, L, inner], video [B, tokens, inner]).
fn patch_embed(
    b: &mut Builder,
    cfg: &CogVideoXTransformerConfig,
    d: &Dims,
    text_embeds: ValueId,
    image_embeds: ValueId,
) -> Result<(ValueId, ValueId)> {
    let dtype = b.dtype(image_embeds);
    let text = linear(b, text_embeds, "patch_embed.text_proj", d.inner, true)?;
    let [bs, f, c, h, w] = b.shape(image_embeds)[..] else { unreachable!("input declared rank 5") };
    let (p, pt) = (d.p, d.pt);
    let video = if cfg.patch_size_t.is_none() {
        // reshape(-1, C, H, W) -> Conv2d(kernel p, stride p) -> [B*F, inner, H/p, W/p] -> tokens
        let x = b.reshape(image_embeds, &[bs * f, c, h, w])?;
        let attrs = ConvAttrs {
            strides: vec![p, p],
            padding: vec![(0, 0); 2],
            lhs_dilation: vec![1; 2],
            rhs_dilation: vec![1; 2],
            feature_group_count: 1,
        };
        let x = b.conv(x, "patch_embed.proj", d.inner, &[p, p], attrs, cfg.patch_bias)?;
        let x = b.reshape(x, &[bs, f, d.inner, d.pph * d.ppw])?;
        let x = b.transpose(x, &[0, 1, 3, 2])?;
        b.reshape(x, &[bs, d.video_tokens(), d.inner])?
    } else {
        // permute to [B, F/pt, H/p, W/p, C, pt, p, p], flatten (C, pt, p, p), nn.Linear (always biased)
        let x = b.reshape(image_embeds, &[bs, d.ppf, pt, c, d.pph, p, d.ppw, p])?;
        let x = b.transpose(x, &[0, 1, 4, 6, 3, 2, 5, 7])?;
        let x = b.reshape(x, &[bs, d.video_tokens(), c * pt * p * p])?;
        linear(b, x, "patch_embed.proj", d.inner, true)?
    };
    if cfg.use_rotary_positional_embeddings {
        return Ok((text, video));
    }
    let pos = sincos_pos_embed_3d(
        b,
        d.inner,
        d.ppf,
        d.pph,
        d.ppw,
        cfg.spatial_interpolation_scale,
        cfg.temporal_interpolation_scale,
    )?;
    // pos_embedding.to(dtype=embeds.dtype); embeds + pos_embedding
    let pos = b.convert(pos, dtype)?;
    Ok((text, b.add(video, pos)?))
}

/// The RoPE tables the pipeline passes as `image_rotary_emb` (`_prepare_rotary_positional_embeddings`):
/// the grid is the patch grid; 1.0 spreads it over the crop region of the base grid
/// (`sample_height/width // patch_size`) with `linspace`, 1.5 takes positions `0..n` ("slice").
fn rotary_emb(b: &mut Builder, cfg: &CogVideoXTransformerConfig, d: &Dims) -> Result<RopeTables> {
    let (base_h, base_w) = (cfg.sample_height / d.p, cfg.sample_width / d.p);
    let grid = if cfg.patch_size_t.is_none() {
        let (start, stop) = resize_crop_region_for_grid((d.pph, d.ppw), base_w, base_h);
        RopeGrid::Linspace { start, stop }
    } else {
        RopeGrid::Slice
    };
    // 1.0: temporal_size = latent frames; 1.5: base_num_frames = ceil(frames / patch_size_t).
    rotary_pos_embed_3d(b, d.head_dim, grid, d.ppf, d.pph, d.ppw)
}

/// `CogVideoXLayerNormZero`: `linear(silu(temb))` chunked into (shift, scale, gate, enc_shift,
/// enc_scale, enc_gate), one LayerNorm (`{prefix}.norm`) shared by both streams.
/// Returns (norm_hidden_states, norm_encoder_hidden_states, gate, enc_gate), gates [B, 1, inner].
fn layer_norm_zero(
    b: &mut Builder,
    prefix: &str,
    cfg: &CogVideoXTransformerConfig,
    d: &Dims,
    hidden_states: ValueId,
    encoder_hidden_states: ValueId,
    temb: ValueId,
) -> Result<[ValueId; 4]> {
    let act = b.silu(temb)?;
    let mods = linear(b, act, &format!("{prefix}.linear"), 6 * d.inner, true)?;
    let [shift, scale, gate, enc_shift, enc_scale, enc_gate] = [0, 1, 2, 3, 4, 5].map(|i| chunk(b, mods, 6, i));
    let norm = format!("{prefix}.norm");
    let affine = cfg.norm_elementwise_affine.then_some(norm.as_str());
    let h = layer_norm(b, hidden_states, cfg.norm_eps, affine)?;
    let h = modulate(b, h, shift?, scale?)?;
    let e = layer_norm(b, encoder_hidden_states, cfg.norm_eps, affine)?;
    let e = modulate(b, e, enc_shift?, enc_scale?)?;
    Ok([h, e, gate?, enc_gate?])
}

/// `CogVideoXBlock.forward`. Returns (hidden_states, encoder_hidden_states).
#[allow(clippy::too_many_arguments)]
fn block(
    b: &mut Builder,
    prefix: &str,
    cfg: &CogVideoXTransformerConfig,
    d: &Dims,
    hidden_states: ValueId,
    encoder_hidden_states: ValueId,
    temb: ValueId,
    image_rotary_emb: Option<RopeTables>,
) -> Result<(ValueId, ValueId)> {
    let text_len = b.shape(encoder_hidden_states)[1];
    let norm1 = format!("{prefix}.norm1");
    let [norm_h, norm_e, gate_msa, enc_gate_msa] =
        layer_norm_zero(b, &norm1, cfg, d, hidden_states, encoder_hidden_states, temb)?;

    // attention (joint over [text, video])
    let attn1 = format!("{prefix}.attn1");
    let (attn_h, attn_e) = attention(b, &attn1, cfg, d, norm_h, norm_e, image_rotary_emb)?;
    let gated = b.mul(gate_msa, attn_h)?;
    let hidden_states = b.add(hidden_states, gated)?;
    let gated = b.mul(enc_gate_msa, attn_e)?;
    let encoder_hidden_states = b.add(encoder_hidden_states, gated)?;

    // feed-forward on cat([text, video]): FeedForward(dim, activation_fn="gelu-approximate"),
    // net.0 = GELU(dim, 4 * dim, approximate="tanh").proj, net.2 = Linear(4 * dim, dim)
    let norm2 = format!("{prefix}.norm2");
    let [norm_h, norm_e, gate_ff, enc_gate_ff] =
        layer_norm_zero(b, &norm2, cfg, d, hidden_states, encoder_hidden_states, temb)?;
    let x = b.concat(&[norm_e, norm_h], 1)?;
    let ff = linear(b, x, &format!("{prefix}.ff.net.0.proj"), 4 * d.inner, true)?;
    let ff = b.gelu(ff, GeluApprox::Tanh)?;
    let ff = linear(b, ff, &format!("{prefix}.ff.net.2"), d.inner, true)?;
    let ff_e = b.slice_axis(ff, 1, 0, text_len)?;
    let ff_h = b.slice_axis(ff, 1, text_len, d.video_tokens())?;
    let gated = b.mul(gate_ff, ff_h)?;
    let hidden_states = b.add(hidden_states, gated)?;
    let gated = b.mul(enc_gate_ff, ff_e)?;
    let encoder_hidden_states = b.add(encoder_hidden_states, gated)?;
    Ok((hidden_states, encoder_hidden_states))
}

/// `Attention(qk_norm="layer_norm", eps=1e-6, bias=attention_bias, out_bias=True)` with
/// `CogVideoXAttnProcessor2_0`: one sequence `cat([text, video])`, per-head LayerNorm of q and k,
/// RoPE on the video part of q and k only, SDPA, `to_out.0`, split back.
/// Returns (video [B, tokens, inner], text [B, L, inner]).
fn attention(
    b: &mut Builder,
    prefix: &str,
    cfg: &CogVideoXTransformerConfig,
    d: &Dims,
    hidden_states: ValueId,
    encoder_hidden_states: ValueId,
    image_rotary_emb: Option<RopeTables>,
) -> Result<(ValueId, ValueId)> {
    let text_len = b.shape(encoder_hidden_states)[1];
    let attn = Attention {
        prefix,
        heads: d.heads,
        head_dim: d.head_dim,
        qk_norm: QkNorm::LayerNormPerHead { eps: 1e-6 },
        bias: cfg.attention_bias,
        out_bias: true,
    };
    let x = b.concat(&[encoder_hidden_states, hidden_states], 1)?;
    let mut qkv = attn.project_qkv(b, x, x)?;
    if let Some(tables) = image_rotary_emb {
        // query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
        let rotate_video = |b: &mut Builder, x: ValueId| -> Result<ValueId> {
            let text = b.slice_axis(x, 1, 0, text_len)?;
            let video = b.slice_axis(x, 1, text_len, d.video_tokens())?;
            let video = apply_rotary_emb_interleaved(b, video, tables)?;
            b.concat(&[text, video], 1)
        };
        qkv.query = rotate_video(b, qkv.query)?;
        qkv.key = rotate_video(b, qkv.key)?;
    }
    let [query, key, value] = qkv.heads_first(b)?;
    // Joint: text and video tokens in one sequence (text first); the video tokens are where a
    // `--window-size` window applies.
    let video_span = (text_len, text_len + d.video_tokens());
    let out = b.joint_attention(query, key, value, attn.scale(), None, video_span)?;
    let out = attn.project_out(b, out)?;
    let text = b.slice_axis(out, 1, 0, text_len)?;
    let video = b.slice_axis(out, 1, text_len, d.video_tokens())?;
    Ok((video, text))
}

/// Chunk `i` of `n` of `mods` [B, n * inner] along dim 1, as [B, 1, inner] (`chunk(n, dim=1)` then
/// `[:, None, :]`).
fn chunk(b: &mut Builder, mods: ValueId, n: i64, i: i64) -> Result<ValueId> {
    let [bs, width] = b.shape(mods)[..] else {
        return Err(IrError::Value(format!("chunk: expected [B, n * inner], got {:?}", b.shape(mods))));
    };
    let part = b.slice_axis(mods, 1, i * width / n, width / n)?;
    b.reshape(part, &[bs, 1, width / n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> CogVideoXTransformerConfig {
        CogVideoXTransformerConfig {
            num_attention_heads: 2,
            attention_head_dim: 16,
            in_channels: 8,
            out_channels: 8,
            time_embed_dim: 16,
            text_embed_dim: 32,
            num_layers: 2,
            sample_height: 8,
            sample_width: 12,
            sample_frames: 9,
            ..Default::default()
        }
    }

    #[test]
    fn tiny_graphs_types_and_weights() {
        let shape = TransformerShape { batch: 2, frames: 4, height: 8, width: 12, text_len: 5 };
        let g = transformer(&tiny(), &shape, DType::BF16).unwrap();
        assert_eq!(g.tensor_ty(g.outputs[0].value), &TensorType::new(DType::BF16, vec![2, 4, 8, 8, 12]));
        let w: std::collections::HashMap<&str, &TensorType> = g.weights().collect();
        assert_eq!(w.len(), 24 * 2 + 16);
        assert_eq!(w["patch_embed.proj.weight"], &TensorType::new(DType::BF16, vec![32, 8, 2, 2]));
        assert_eq!(w["transformer_blocks.1.attn1.norm_k.weight"], &TensorType::new(DType::BF16, vec![16]));
        assert_eq!(w["transformer_blocks.0.norm1.linear.weight"], &TensorType::new(DType::BF16, vec![192, 16]));
        assert_eq!(w["proj_out.weight"], &TensorType::new(DType::BF16, vec![32, 32]));
        // Each block's attention is joint, text first: its video tokens (4 frames of 4x6
        // patches after 5 text tokens) are where a window applies.
        let spans: Vec<_> = g
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                vidlower_ir::Op::Attention { kind, window_span, .. } => Some((kind, window_span)),
                _ => None,
            })
            .collect();
        assert_eq!(spans, vec![(vidlower_ir::AttentionKind::Joint, Some((5, 5 + 4 * 4 * 6))); 2]);

        // 1.5: Linear patch embedding with bias, temporal patches, ofs branch
        let v15 = CogVideoXTransformerConfig {
            patch_size_t: Some(2),
            patch_bias: false,
            use_rotary_positional_embeddings: true,
            ofs_embed_dim: Some(16),
            sample_height: 24,
            sample_width: 24,
            ..tiny()
        };
        let g = transformer(&v15, &shape, DType::F32).unwrap();
        let w: std::collections::HashMap<&str, &TensorType> = g.weights().collect();
        assert_eq!(w.len(), 24 * 2 + 20);
        assert_eq!(w["patch_embed.proj.weight"], &TensorType::new(DType::F32, vec![32, 64]));
        assert!(w.contains_key("patch_embed.proj.bias") && w.contains_key("ofs_embedding.linear_2.bias"));
        assert_eq!(w["proj_out.weight"], &TensorType::new(DType::F32, vec![64, 32]));
        assert!(g.find_input("ofs").is_some());

        let no_affine = CogVideoXTransformerConfig { norm_elementwise_affine: false, attention_bias: false, ..tiny() };
        let g = transformer(&no_affine, &shape, DType::F32).unwrap();
        // per block: 8 LayerNorm and 3 q/k/v bias tensors fewer; top: norm_final, norm_out.norm
        assert_eq!(g.weights().count(), (24 - 7) * 2 + 12);
    }

    #[test]
    fn bad_sizes_and_configs_are_refused() {
        let shape = TransformerShape { batch: 1, frames: 3, height: 8, width: 12, text_len: 5 };
        let i2v = CogVideoXTransformerConfig { in_channels: 16, ..tiny() };
        let e = transformer(&i2v, &shape, DType::F32).unwrap_err().to_string();
        assert!(e.contains("image-to-video") && e.contains("in_channels"), "{e}");
        let odd = TransformerShape { width: 7, ..shape };
        assert!(transformer(&tiny(), &odd, DType::F32).unwrap_err().to_string().contains("divisible"));
        let v15 =
            CogVideoXTransformerConfig { patch_size_t: Some(2), use_rotary_positional_embeddings: true, ..tiny() };
        // 3 latent frames: the pipeline pads to 4 first
        assert!(transformer(&v15, &shape, DType::F32).unwrap_err().to_string().contains("patch_size_t 2"));
        // 1.5's RoPE grid is the sample size / patch (here 4x6 patches)
        let wide = TransformerShape { frames: 2, width: 14, ..shape };
        let e = transformer(&v15, &wide, DType::F32).unwrap_err().to_string();
        assert!(e.contains("exceed the RoPE grid"), "{e}");
    }
}
