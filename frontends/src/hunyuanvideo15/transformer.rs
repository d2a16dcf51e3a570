//! `HunyuanVideo15Transformer3DModel` (diffusers `models/transformers/transformer_hunyuan_video15.py`,
//! 0.42.1) for text-to-video, as an IR graph, module by module with diffusers' state-dict names.
//!
//! The text tokens. diffusers refines the MLLM states (`context_embedder`), projects the ByT5 states
//! (`context_embedder_2`) and the image embeddings (`image_embedder`), adds `cond_type_embed` rows 0,
//! 1, 2 to them, and then reorders each batch row's tokens, a data-dependent gather: [valid image,
//! valid ByT5, valid MLLM, invalid image, invalid ByT5 zeroed, invalid MLLM zeroed], masking the
//! invalid ones in every block's joint attention (`mask & mask^T`: padded keys and padded query rows).
//! Here the text sequence is `cat([ByT5 tokens, MLLM tokens])` in input order with their masks, the
//! invalid tokens zeroed as diffusers zeroes them:
//! - the order does not matter: every op but the attention is per token, RoPE touches only the video
//!   tokens, and masked attention is equivariant under a permutation of the tokens, so each token's
//!   value is the same wherever it sits (the goldens check this row by row in diffusers' order);
//! - text-to-video has no image tokens in effect: the pipeline passes all-zero `image_embeds`
//!   (729 x image_embed_dim), for which diffusers multiplies the image tokens by 0 and masks all of
//!   them out, so they reach no other token and no output. The graph leaves them out: no
//!   `image_embeds` input, and the `image_embedder.*` weights of the checkpoint are not used (nor
//!   `cond_type_embed` row 2).
//!
//! The masks. The attention op gets only the key mask (every video token and the valid text tokens),
//! so no query row is ever without a key and no lowering (dense, blockwise, cuDNN) meets a fully
//! masked row; the rows of padded text tokens are then set to 0, which is what torch's SDPA gives for
//! them (see [`crate::nn::padding_mask`]). The graph's output then matches diffusers on every element,
//! and no NaN appears even when a whole text (ByT5 without glyph text) is masked.
//!
//! Precision follows diffusers loaded with `torch_dtype=dtype` (the model has no fp32 modules):
//! every weight and activation in `dtype`; the sinusoidal timestep features are f32 rounded to
//! `dtype`; the refiner's mean pooling runs in f32 (the mask is float); the RoPE tables are f32
//! (`get_1d_rotary_pos_embed`'s default) and the rotation runs in f32 with q/k rounded back. Note
//! that diffusers' pipeline casts the timestep itself to the latents' dtype
//! (`t.expand(B).to(latent_model_input.dtype)`), so a bf16 run there embeds a bf16-rounded timestep;
//! this graph embeds the f32 `timestep` it is given (round it before, to reproduce that).

use super::rope::rotary_pos_embed;
use super::token_refiner::TokenRefiner;
use super::transformer_config::HunyuanVideo15TransformerConfig;
use crate::nn::attention::{Attention, QkNorm};
use crate::nn::linear::linear;
use crate::nn::norms::{layer_norm, modulate};
use crate::nn::padding_mask::{key_padding_mask, zero_padded_rows};
use crate::nn::rope::{apply_rotary_emb_interleaved, RopeTables};
use crate::nn::timestep_embedding::{timestep_embedding, Timesteps};
use vidlower_ir::{Builder, ConvAttrs, DType, GeluApprox, Graph, IrError, Result, TensorType, ValueId};

/// The sizes one graph is built for: `frames`, `height`, `width` in latent units (divisible by
/// `patch_size_t` / `patch_size`), `text_len` MLLM tokens (the pipeline's 1000) and `text_len_2`
/// ByT5 tokens (256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformerShape {
    pub batch: i64,
    pub frames: i64,
    pub height: i64,
    pub width: i64,
    pub text_len: i64,
    pub text_len_2: i64,
}

/// The HunyuanVideo-1.5 text-to-video transformer. Inputs (diffusers' `forward()` arguments):
/// - `hidden_states` [B, in_channels, T, H, W] (`dtype`): the latents, the conditioning latents
///   (zeros for t2v) and the mask channel (zeros), concatenated on channels as the pipeline does;
/// - `timestep` f32 [B]: the pipeline's float timesteps (flow-matching sigma * 1000);
/// - `encoder_hidden_states` [B, text_len, text_embed_dim] (`dtype`): the MLLM (Qwen2.5-VL) states;
/// - `encoder_attention_mask` f32 [B, text_len]: 1 for real tokens, 0 for padding;
/// - `encoder_hidden_states_2` [B, text_len_2, text_embed_2_dim] (`dtype`): the ByT5 states of the
///   quoted (glyph) text, zeros when the prompt has none;
/// - `encoder_attention_mask_2` f32 [B, text_len_2]: its mask, all 0 when there is no glyph text.
///
/// Output `sample` [B, out_channels, T, H, W] (`dtype`). `image_embeds` is not an input: see the
/// module docs.
pub fn transformer(cfg: &HunyuanVideo15TransformerConfig, shape: &TransformerShape, dtype: DType) -> Result<Graph> {
    build(cfg, shape, dtype, false)
}

/// [`transformer`] with the intermediate values as extra outputs, for per-block checks: `context_embedder`
/// [B, text_len, inner] (the token refiner's output), and per block `transformer_blocks.{i}.hidden_states`
/// [B, tokens, inner] and `transformer_blocks.{i}.encoder_hidden_states` [B, text_len_2 + text_len, inner]
/// (text in this graph's order: ByT5 tokens, then MLLM tokens).
pub fn transformer_with_block_outputs(
    cfg: &HunyuanVideo15TransformerConfig,
    shape: &TransformerShape,
    dtype: DType,
) -> Result<Graph> {
    build(cfg, shape, dtype, true)
}

fn build(cfg: &HunyuanVideo15TransformerConfig, shape: &TransformerShape, dtype: DType, taps: bool) -> Result<Graph> {
    let d = Dims::new(cfg, shape)?;
    let s = shape;
    let mut b = Builder::new("hunyuanvideo15_transformer");
    let hidden_states =
        b.input("hidden_states", TensorType::new(dtype, vec![s.batch, cfg.in_channels, s.frames, s.height, s.width]))?;
    let timestep = b.input("timestep", TensorType::new(DType::F32, vec![s.batch]))?;
    let encoder_hidden_states =
        b.input("encoder_hidden_states", TensorType::new(dtype, vec![s.batch, s.text_len, cfg.text_embed_dim]))?;
    let encoder_attention_mask = b.input("encoder_attention_mask", TensorType::new(DType::F32, vec![s.batch, s.text_len]))?;
    let encoder_hidden_states_2 =
        b.input("encoder_hidden_states_2", TensorType::new(dtype, vec![s.batch, s.text_len_2, cfg.text_embed_2_dim]))?;
    let encoder_attention_mask_2 =
        b.input("encoder_attention_mask_2", TensorType::new(DType::F32, vec![s.batch, s.text_len_2]))?;

    // 1. RoPE
    let image_rotary_emb = rotary_pos_embed(&mut b, cfg, [d.ppf, d.pph, d.ppw])?;

    // 2. Conditional embeddings: temb = self.time_embed(timestep) (HunyuanVideo15TimeEmbedding;
    // timesteps_proj.to(timestep.dtype), which is the model dtype in the pipeline)
    let t = Timesteps::new(256, true, 0.0).forward(&mut b, timestep)?;
    let t = b.convert(t, dtype)?;
    let temb = timestep_embedding(&mut b, t, "time_embed.timestep_embedder", d.inner)?;

    // x_embedder: Conv3d(kernel = stride = (pt, p, p)), flatten(2).transpose(1, 2)
    let patch = [cfg.patch_size_t, cfg.patch_size, cfg.patch_size];
    let attrs = ConvAttrs {
        strides: patch.to_vec(),
        padding: vec![(0, 0); 3],
        lhs_dilation: vec![1; 3],
        rhs_dilation: vec![1; 3],
        feature_group_count: 1,
    };
    let x = b.conv(hidden_states, "x_embedder.proj", d.inner, &patch, attrs, true)?;
    let x = b.reshape(x, &[s.batch, d.inner, d.tokens()])?;
    let mut hidden_states = b.transpose(x, &[0, 2, 1])?;

    // MLLM text: the token refiner, then + cond_type_embed[0]
    let refiner = TokenRefiner {
        prefix: "context_embedder",
        heads: d.heads,
        head_dim: d.head_dim,
        num_layers: cfg.num_refiner_layers,
        mlp_hidden: d.mlp_hidden,
    };
    let refined = refiner.forward(&mut b, encoder_hidden_states, timestep, encoder_attention_mask)?;
    if taps {
        b.output("context_embedder", refined);
    }
    let cond_type_embed = b.weight("cond_type_embed.weight", TensorType::new(dtype, vec![3, d.inner]))?;
    let cond = |b: &mut Builder, row: i64| b.slice_axis(cond_type_embed, 0, row, 1);
    let mllm_type = cond(&mut b, 0)?;
    let mllm = b.add(refined, mllm_type)?;

    // ByT5 text: context_embedder_2, then + cond_type_embed[1]
    let byt5 = byt5_text_projection(&mut b, cfg, d.inner, encoder_hidden_states_2)?;
    let byt5_type = cond(&mut b, 1)?;
    let byt5 = b.add(byt5, byt5_type)?;

    // The text stream: [ByT5, MLLM] with the invalid tokens zeroed (torch.zeros_like(text[~mask])).
    let byt5 = zero_padded_rows(&mut b, byt5, encoder_attention_mask_2)?;
    let mllm = zero_padded_rows(&mut b, mllm, encoder_attention_mask)?;
    let mut encoder_hidden_states = b.concat(&[byt5, mllm], 1)?;
    let text_mask = b.concat(&[encoder_attention_mask_2, encoder_attention_mask], 1)?;
    // The joint sequence's key mask: F.pad(mask, (video tokens, 0), value=True)
    let video_valid = b.full(1.0, TensorType::new(DType::F32, vec![s.batch, d.tokens()]))?;
    let joint_mask = b.concat(&[video_valid, text_mask], 1)?;
    let joint_key_mask = key_padding_mask(&mut b, joint_mask)?;
    let masks = JointMasks { key: joint_key_mask, text: text_mask };

    // 4. Transformer blocks
    for i in 0..cfg.num_layers {
        let prefix = format!("transformer_blocks.{i}");
        (hidden_states, encoder_hidden_states) =
            transformer_block(&mut b, &prefix, &d, hidden_states, encoder_hidden_states, temb, masks, image_rotary_emb)?;
        if taps {
            b.output(&format!("{prefix}.hidden_states"), hidden_states);
            b.output(&format!("{prefix}.encoder_hidden_states"), encoder_hidden_states);
        }
    }

    // 5. Output projection: norm_out = AdaLayerNormContinuous(inner, inner, elementwise_affine=False,
    // eps=1e-6): emb = linear(silu(temb)); scale, shift = chunk(2) (scale first)
    let act = b.silu(temb)?;
    let mods = linear(&mut b, act, "norm_out.linear", 2 * d.inner, true)?;
    let mods = b.reshape(mods, &[s.batch, 2, d.inner])?;
    let scale = b.slice_axis(mods, 1, 0, 1)?;
    let shift = b.slice_axis(mods, 1, 1, 1)?;
    let h = layer_norm(&mut b, hidden_states, 1e-6, None)?;
    let h = modulate(&mut b, h, shift, scale)?;
    let h = linear(&mut b, h, "proj_out", d.pt * d.p * d.p * d.out_channels, true)?;

    // reshape(B, T', H', W', C, pt, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7), flatten the pairs
    let h = b.reshape(h, &[s.batch, d.ppf, d.pph, d.ppw, d.out_channels, d.pt, d.p, d.p])?;
    let h = b.transpose(h, &[0, 4, 1, 5, 2, 6, 3, 7])?;
    let sample = b.reshape(h, &[s.batch, d.out_channels, s.frames, s.height, s.width])?;
    b.output("sample", sample);
    b.finish()
}

/// Sizes derived from the config and the shape, checked once.
struct Dims {
    inner: i64,
    heads: i64,
    head_dim: i64,
    mlp_hidden: i64,
    out_channels: i64,
    p: i64,
    pt: i64,
    ppf: i64,
    pph: i64,
    ppw: i64,
}

impl Dims {
    fn new(cfg: &HunyuanVideo15TransformerConfig, shape: &TransformerShape) -> Result<Self> {
        cfg.check().map_err(|e| IrError::Value(e.to_string()))?;
        let fail = |m: String| Err(IrError::Value(format!("hunyuanvideo15 transformer: {m}")));
        let (p, pt) = (cfg.patch_size, cfg.patch_size_t);
        let (f, h, w) = (shape.frames, shape.height, shape.width);
        if f <= 0 || h <= 0 || w <= 0 || f % pt != 0 || h % p != 0 || w % p != 0 {
            return fail(format!(
                "latent size {f}x{h}x{w} (frames x height x width) must be positive and divisible by patch_size_t \
                 {pt} and patch_size {p}"
            ));
        }
        if shape.batch <= 0 || shape.text_len <= 0 || shape.text_len_2 <= 0 {
            return fail(format!(
                "batch {}, text_len {} and text_len_2 {} must be positive",
                shape.batch, shape.text_len, shape.text_len_2
            ));
        }
        Ok(Dims {
            inner: cfg.inner_dim(),
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
            mlp_hidden: cfg.mlp_hidden_dim(),
            out_channels: cfg.out_channels(),
            p,
            pt,
            ppf: f / pt,
            pph: h / p,
            ppw: w / p,
        })
    }

    fn tokens(&self) -> i64 {
        self.ppf * self.pph * self.ppw
    }
}

/// `HunyuanVideo15ByT5TextProjection` (`context_embedder_2`): LayerNorm (eps 1e-5, affine),
/// linear_1, GELU, linear_2, GELU, linear_3 (exact GELU).
fn byt5_text_projection(
    b: &mut Builder,
    cfg: &HunyuanVideo15TransformerConfig,
    inner: i64,
    x: ValueId,
) -> Result<ValueId> {
    let p = "context_embedder_2";
    let hidden = cfg.byt5_projection_hidden_size;
    let h = layer_norm(b, x, 1e-5, Some(&format!("{p}.norm")))?;
    let h = linear(b, h, &format!("{p}.linear_1"), hidden, true)?;
    let h = b.gelu(h, GeluApprox::Erf)?;
    let h = linear(b, h, &format!("{p}.linear_2"), hidden, true)?;
    let h = b.gelu(h, GeluApprox::Erf)?;
    linear(b, h, &format!("{p}.linear_3"), inner, true)
}

/// The masks every block uses: the joint sequence's key mask i1 [B, 1, 1, tokens + text] and the
/// text tokens' float 0/1 mask [B, text] (whose padded rows are zeroed after the attention).
#[derive(Clone, Copy)]
struct JointMasks {
    key: ValueId,
    text: ValueId,
}

/// `AdaLayerNormZero(norm_type="layer_norm")`: `linear(silu(temb))` chunked into (shift_msa,
/// scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp), each [B, 1, inner], and the modulated
/// `norm(x)` (LayerNorm without affine, eps 1e-6). Returns (normed, [the six]).
fn ada_layer_norm_zero(
    b: &mut Builder,
    prefix: &str,
    d: &Dims,
    x: ValueId,
    temb: ValueId,
) -> Result<(ValueId, [ValueId; 6])> {
    let act = b.silu(temb)?;
    let mods = linear(b, act, &format!("{prefix}.linear"), 6 * d.inner, true)?;
    let bs = b.shape(mods)[0];
    let mods = b.reshape(mods, &[bs, 6, d.inner])?;
    let chunk = |b: &mut Builder, i: i64| b.slice_axis(mods, 1, i, 1);
    let six = [chunk(b, 0)?, chunk(b, 1)?, chunk(b, 2)?, chunk(b, 3)?, chunk(b, 4)?, chunk(b, 5)?];
    let h = layer_norm(b, x, 1e-6, None)?;
    Ok((modulate(b, h, six[0], six[1])?, six))
}

/// `FeedForward(inner, mult=mlp_ratio, activation_fn="gelu-approximate")`: net.0.proj, tanh GELU, net.2.
fn feed_forward(b: &mut Builder, prefix: &str, d: &Dims, x: ValueId) -> Result<ValueId> {
    let h = linear(b, x, &format!("{prefix}.net.0.proj"), d.mlp_hidden, true)?;
    let h = b.gelu(h, GeluApprox::Tanh)?;
    linear(b, h, &format!("{prefix}.net.2"), d.inner, true)
}

/// `HunyuanVideo15TransformerBlock.forward`. Returns (hidden_states, encoder_hidden_states).
#[allow(clippy::too_many_arguments)]
fn transformer_block(
    b: &mut Builder,
    prefix: &str,
    d: &Dims,
    hidden_states: ValueId,
    encoder_hidden_states: ValueId,
    temb: ValueId,
    masks: JointMasks,
    freqs_cis: RopeTables,
) -> Result<(ValueId, ValueId)> {
    // 1. Input normalization
    let (norm_h, [_, _, gate_msa, shift_mlp, scale_mlp, gate_mlp]) =
        ada_layer_norm_zero(b, &format!("{prefix}.norm1"), d, hidden_states, temb)?;
    let (norm_e, [_, _, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp]) =
        ada_layer_norm_zero(b, &format!("{prefix}.norm1_context"), d, encoder_hidden_states, temb)?;

    // 2. Joint attention
    let (attn_output, context_attn_output) =
        joint_attention(b, &format!("{prefix}.attn"), d, norm_h, norm_e, masks, freqs_cis)?;

    // 3. Modulation and residual connection
    let gated = b.mul(attn_output, gate_msa)?;
    let hidden_states = b.add(hidden_states, gated)?;
    let gated = b.mul(context_attn_output, c_gate_msa)?;
    let encoder_hidden_states = b.add(encoder_hidden_states, gated)?;
    // norm2 / norm2_context: LayerNorm(elementwise_affine=False, eps=1e-6)
    let norm_h = layer_norm(b, hidden_states, 1e-6, None)?;
    let norm_h = modulate(b, norm_h, shift_mlp, scale_mlp)?;
    let norm_e = layer_norm(b, encoder_hidden_states, 1e-6, None)?;
    let norm_e = modulate(b, norm_e, c_shift_mlp, c_scale_mlp)?;

    // 4. Feed-forward
    let ff = feed_forward(b, &format!("{prefix}.ff"), d, norm_h)?;
    let context_ff = feed_forward(b, &format!("{prefix}.ff_context"), d, norm_e)?;
    let gated = b.mul(gate_mlp, ff)?;
    let hidden_states = b.add(hidden_states, gated)?;
    let gated = b.mul(c_gate_mlp, context_ff)?;
    let encoder_hidden_states = b.add(encoder_hidden_states, gated)?;
    Ok((hidden_states, encoder_hidden_states))
}

/// `Attention(added_kv_proj_dim=inner, qk_norm="rms_norm", eps=1e-6, bias=True, context_pre_only=False)`
/// with `HunyuanVideo15AttnProcessor2_0`: q/k/v of the video and `add_*_proj` of the text, per-head
/// RMSNorm of q and k in both streams, RoPE on the video q and k, one masked attention over
/// `cat([video, text])`, then `to_out.0` on the video rows and `to_add_out` on the text rows.
/// Returns (video [B, tokens, inner], text [B, text, inner]).
fn joint_attention(
    b: &mut Builder,
    prefix: &str,
    d: &Dims,
    hidden_states: ValueId,
    encoder_hidden_states: ValueId,
    masks: JointMasks,
    freqs_cis: RopeTables,
) -> Result<(ValueId, ValueId)> {
    let attn = Attention {
        prefix,
        heads: d.heads,
        head_dim: d.head_dim,
        qk_norm: QkNorm::RmsPerHead { eps: 1e-6 },
        bias: true,
        out_bias: true,
    };
    let mut video = attn.project_qkv(b, hidden_states, hidden_states)?;
    video.query = apply_rotary_emb_interleaved(b, video.query, freqs_cis)?;
    video.key = apply_rotary_emb_interleaved(b, video.key, freqs_cis)?;
    let text = attn.project_added_qkv(b, encoder_hidden_states)?;
    let [vq, vk, vv] = video.heads_first(b)?;
    let [tq, tk, tv] = text.heads_first(b)?;
    let query = b.concat(&[vq, tq], 2)?;
    let key = b.concat(&[vk, tk], 2)?;
    let value = b.concat(&[vv, tv], 2)?;
    // Joint: video and text tokens in one sequence (video first); padded text keys masked out.
    // The video tokens are where a `--window-size` window applies.
    let out = b.joint_attention(query, key, value, attn.scale(), Some(masks.key), (0, d.tokens()))?;
    let text_len = b.shape(encoder_hidden_states)[1];
    let video_out = b.slice_axis(out, 2, 0, d.tokens())?;
    let text_out = b.slice_axis(out, 2, d.tokens(), text_len)?;
    // Padded text rows: torch's SDPA gives 0 for a query row whose keys are all masked.
    let text_out = zero_padded_rows(b, text_out, masks.text)?;
    Ok((attn.project_out(b, video_out)?, attn.project_added_out(b, text_out)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::AttentionKind;
    use std::collections::HashMap;

    fn tiny() -> HunyuanVideo15TransformerConfig {
        HunyuanVideo15TransformerConfig {
            in_channels: 17,
            out_channels: Some(8),
            num_attention_heads: 2,
            attention_head_dim: 16,
            num_layers: 2,
            num_refiner_layers: 1,
            text_embed_dim: 32,
            text_embed_2_dim: 24,
            image_embed_dim: 16,
            rope_axes_dim: vec![4, 6, 6],
            task_type: "t2v".into(),
            byt5_projection_hidden_size: 64,
            ..Default::default()
        }
    }

    const SHAPE: TransformerShape = TransformerShape { batch: 2, frames: 3, height: 4, width: 6, text_len: 20, text_len_2: 12 };

    #[test]
    fn tiny_graph_types_and_weights() {
        let g = transformer(&tiny(), &SHAPE, DType::BF16).unwrap();
        assert_eq!(g.outputs.len(), 1);
        assert_eq!(g.tensor_ty(g.outputs[0].value), &TensorType::new(DType::BF16, vec![2, 8, 3, 4, 6]));
        let w: HashMap<&str, &TensorType> = g.weights().collect();
        // x_embedder 2, time_embed 4, refiner 10 + 18 per layer, context_embedder_2 8, cond_type_embed 1,
        // per block 32 (norm1(_context).linear 4, attn 20, ff(_context) 8), norm_out 2, proj_out 2
        assert_eq!(w.len(), 2 + 4 + 28 + 8 + 1 + 2 * 32 + 4);
        let t = |s: &[i64]| TensorType::new(DType::BF16, s.to_vec());
        assert_eq!(w["x_embedder.proj.weight"], &t(&[32, 17, 1, 1, 1]));
        assert_eq!(w["cond_type_embed.weight"], &t(&[3, 32]));
        assert_eq!(w["context_embedder_2.linear_2.weight"], &t(&[64, 64]));
        assert_eq!(w["transformer_blocks.1.norm1_context.linear.weight"], &t(&[192, 32]));
        assert_eq!(w["transformer_blocks.0.attn.norm_added_k.weight"], &t(&[16]));
        assert_eq!(w["transformer_blocks.0.attn.to_add_out.weight"], &t(&[32, 32]));
        assert_eq!(w["transformer_blocks.0.ff_context.net.0.proj.weight"], &t(&[128, 32]));
        assert_eq!(w["norm_out.linear.weight"], &t(&[64, 32]));
        assert!(!w.keys().any(|n| n.starts_with("image_embedder")));
        let inputs: Vec<&str> = g.inputs.iter().filter_map(|&v| g.input_name(v)).filter(|n| !w.contains_key(n)).collect();
        assert_eq!(
            inputs,
            [
                "hidden_states",
                "timestep",
                "encoder_hidden_states",
                "encoder_attention_mask",
                "encoder_hidden_states_2",
                "encoder_attention_mask_2"
            ]
        );
        let taps = transformer_with_block_outputs(&tiny(), &SHAPE, DType::F32).unwrap();
        let names: Vec<&str> = taps.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names[0], "context_embedder");
        assert_eq!(names.last(), Some(&"sample"));
        assert_eq!(names.len(), 1 + 2 * 2 + 1);
    }

    #[test]
    fn every_attention_is_masked_and_the_block_ones_are_joint_windowable_over_the_video() {
        let g = transformer(&tiny(), &SHAPE, DType::F32).unwrap();
        type Site = (AttentionKind, bool, Option<(i64, i64)>);
        let kinds: Vec<Site> = g
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                vidlower_ir::Op::Attention { kind, has_mask, window_span, .. } => Some((kind, has_mask, window_span)),
                _ => None,
            })
            .collect();
        // The refiner's self-attention over text; the blocks' joint attention, video tokens first.
        let video = Some((0, Dims::new(&tiny(), &SHAPE).unwrap().tokens()));
        let want = [(AttentionKind::SelfAttention, true, None), (AttentionKind::Joint, true, video), (AttentionKind::Joint, true, video)];
        assert_eq!(kinds, want);
    }

    #[test]
    fn bad_sizes_and_configs_are_refused() {
        let i2v = HunyuanVideo15TransformerConfig { task_type: "i2v".into(), ..tiny() };
        let e = transformer(&i2v, &SHAPE, DType::F32).unwrap_err().to_string();
        assert!(e.contains("task_type") && e.contains("text-to-video"), "{e}");
        let meanflow = HunyuanVideo15TransformerConfig { use_meanflow: true, ..tiny() };
        assert!(transformer(&meanflow, &SHAPE, DType::F32).unwrap_err().to_string().contains("use_meanflow"));
        let patched = HunyuanVideo15TransformerConfig { patch_size: 2, ..tiny() };
        let odd = TransformerShape { height: 3, ..SHAPE };
        assert!(transformer(&patched, &odd, DType::F32).unwrap_err().to_string().contains("divisible"));
        let no_text = TransformerShape { text_len_2: 0, ..SHAPE };
        assert!(transformer(&tiny(), &no_text, DType::F32).unwrap_err().to_string().contains("text_len_2"));
    }
}
