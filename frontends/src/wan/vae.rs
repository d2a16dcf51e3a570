//! `AutoencoderKLWan`'s decoder (Wan 2.1), as diffusers 0.42.1 runs it in `_decode`: one latent
//! frame per step, with the causal convs' frame caches as explicit state (see
//! [`crate::nn::causal_conv3d`]), so one executable serves every frame after the first.
//!
//! A step graph takes `z` [B, z_dim, 1, h, w] (one frame of what the pipeline passes to
//! `vae.decode`) and, except in the first step, the caches `cache.0..cache.{n-1}`; it returns
//! `sample` [B, 3, f, 8h, 8w], clamped to [-1, 1], then the next caches under the same names.
//! The first step (`first_chunk` in diffusers) differs: every temporal upsample meets an empty
//! cache ("Rep"), skips its `time_conv` and keeps one frame, so it yields 1 frame; later steps
//! yield 4. Concatenated: 1 + 4 (T - 1) frames, as `vae.decode(z).sample`.
//!
//! Weight names are diffusers' state-dict keys (`post_quant_conv.weight`,
//! `decoder.up_blocks.0.upsamplers.0.time_conv.weight`, ...), in torch layouts as stored.

use super::config::WanVaeConfig;
use crate::nn::causal_conv3d::{causal_conv3d, conv2d_per_frame, CacheSlot, FrameCache};
use crate::nn::channel_rms_norm::channel_rms_norm;
pub use crate::nn::vae_decoder::VaeDecodeShape;
use crate::nn::vae_decoder::{TileGeometry, TileKnobs, VaeDecoderGraphs};
use vidlower_ir::{AttentionKind, Builder, DType, DotDims, Graph, IrError, Result, TensorType, ValueId};

/// One decode step: the first (`first_chunk`, no cache inputs) or a later one.
pub fn decoder_step(cfg: &WanVaeConfig, shape: &VaeDecodeShape, dtype: DType, first: bool) -> Result<Graph> {
    Ok(build(cfg, shape, dtype, first, true)?.0)
}

/// One decode step of a spatial tile: [`decoder_step`] without the final clamp, since diffusers'
/// `tiled_decode` blends the tiles' raw outputs and clamps the assembled frame.
pub fn decoder_tile_step(cfg: &WanVaeConfig, shape: &VaeDecodeShape, dtype: DType, first: bool) -> Result<Graph> {
    Ok(build(cfg, shape, dtype, first, false)?.0)
}

/// The cache signature shared by both step graphs: inputs of later steps and outputs of every
/// step, in order (diffusers' `feat_idx` order), each with the conv it belongs to.
pub fn cache_signature(cfg: &WanVaeConfig, shape: &VaeDecodeShape, dtype: DType) -> Result<Vec<CacheSlot>> {
    Ok(build(cfg, shape, dtype, false, true)?.1)
}

/// The cache tensors' names, `cache.0`, `cache.1`, ...
pub fn cache_names(cfg: &WanVaeConfig, shape: &VaeDecodeShape, dtype: DType) -> Result<Vec<String>> {
    Ok(cache_signature(cfg, shape, dtype)?.into_iter().map(|s| s.name).collect())
}

/// Video frames one step yields: 1 for the first, 2^(temporal upsamples) (4 for Wan 2.1) later.
pub fn frames_per_step(cfg: &WanVaeConfig, first: bool) -> i64 {
    if first {
        return 1;
    }
    let n = cfg.dim_mult.len().saturating_sub(1);
    1 << temporal_upsample(cfg).iter().take(n).filter(|&&t| t).count()
}

/// Video frames decoded from `latent_frames` latent frames: 1 + 4 (T - 1) for Wan 2.1.
pub fn decoded_frames(cfg: &WanVaeConfig, latent_frames: i64) -> i64 {
    if latent_frames <= 0 {
        return 0;
    }
    1 + frames_per_step(cfg, false) * (latent_frames - 1)
}

/// The flags of `AutoencoderKLWan.enable_tiling`'s knobs.
const WAN_TILE_FLAGS: [&str; 4] = ["tile-sample-min-height", "tile-sample-min-width", "tile-sample-stride-height", "tile-sample-stride-width"];

/// The decode loop's view of the Wan decoder: one latent frame per step, the first one
/// `first_chunk`; tiles as `AutoencoderKLWan.tiled_decode` places them.
impl VaeDecoderGraphs for WanVaeConfig {
    fn class_name(&self) -> &'static str {
        "AutoencoderKLWan"
    }

    fn latent_channels(&self) -> i64 {
        self.z_dim
    }

    fn spatial_scale(&self) -> i64 {
        self.scale_spatial()
    }

    fn step_frames(&self, latent_frames: i64) -> Vec<i64> {
        vec![1; latent_frames.max(0) as usize]
    }

    fn step_output_frames(&self, _frames: i64, first: bool) -> i64 {
        frames_per_step(self, first)
    }

    fn step_graph(&self, shape: &VaeDecodeShape, frames: i64, first: bool, tiled: bool, dtype: DType) -> Result<Graph> {
        if frames != 1 {
            return Err(unsupported(format!("a step decodes one latent frame, not {frames}")));
        }
        if tiled {
            decoder_tile_step(self, shape, dtype, first)
        } else {
            decoder_step(self, shape, dtype, first)
        }
    }

    /// diffusers' defaults (256 x 256 tiles every 192 pixels) for the knobs not given. Every size
    /// must be a positive multiple of the spatial compression (diffusers floors them to latent
    /// pixels, which would silently move the tiles against the blend extent computed in pixels)
    /// and each stride at most its tile (a larger stride leaves rows no tile decodes).
    fn tile_geometry(&self, knobs: &TileKnobs) -> std::result::Result<TileGeometry, String> {
        knobs.refuse_others(self.class_name(), &WAN_TILE_FLAGS)?;
        let ratio = self.scale_spatial();
        let tile = (knobs.tile_sample_min_height.unwrap_or(256), knobs.tile_sample_min_width.unwrap_or(256));
        let stride = (knobs.tile_sample_stride_height.unwrap_or(192), knobs.tile_sample_stride_width.unwrap_or(192));
        for (flag, value) in WAN_TILE_FLAGS.into_iter().zip([tile.0, tile.1, stride.0, stride.1]) {
            if value <= 0 || value % ratio != 0 {
                return Err(format!("--{flag} is {value}: expected a positive multiple of the VAE's spatial compression {ratio}"));
            }
        }
        for (i, (t, s)) in [(tile.0, stride.0), (tile.1, stride.1)].into_iter().enumerate() {
            if s > t {
                let (sf, tf) = (WAN_TILE_FLAGS[2 + i], WAN_TILE_FLAGS[i]);
                return Err(format!("--{sf} {s} exceeds --{tf} {t}: the tiles would leave gaps"));
            }
        }
        Ok(TileGeometry {
            latent_tile: (tile.0 / ratio, tile.1 / ratio),
            latent_stride: (stride.0 / ratio, stride.1 / ratio),
            blend: (tile.0 - stride.0, tile.1 - stride.1),
            keep: stride,
        })
    }

    fn clamps_sample(&self) -> bool {
        true
    }
}

/// diffusers' `temperal_upsample`: the encoder's `temperal_downsample` reversed.
fn temporal_upsample(cfg: &WanVaeConfig) -> Vec<bool> {
    cfg.temperal_downsample.iter().rev().copied().collect()
}

fn unsupported(message: String) -> IrError {
    IrError::Value(format!("AutoencoderKLWan decoder: {message}"))
}

fn build(cfg: &WanVaeConfig, shape: &VaeDecodeShape, dtype: DType, first: bool, clamped: bool) -> Result<(Graph, Vec<CacheSlot>)> {
    if cfg.is_residual {
        return Err(unsupported("is_residual (the Wan 2.2 VAE: WanResidualUpBlock, DupUp3D) is not supported".into()));
    }
    if cfg.patch_size.is_some_and(|p| p != 1) {
        return Err(unsupported(format!("patch_size {:?} (unpatchify) is not supported", cfg.patch_size)));
    }
    if cfg.dim_mult.is_empty() || cfg.temperal_downsample.len() + 1 < cfg.dim_mult.len() {
        return Err(unsupported(format!(
            "dim_mult {:?} needs {} temperal_downsample entries, got {:?}",
            cfg.dim_mult,
            cfg.dim_mult.len().saturating_sub(1),
            cfg.temperal_downsample
        )));
    }
    let name = match (first, clamped) {
        (true, true) => "wan_vae_decode_first",
        (false, true) => "wan_vae_decode_step",
        (true, false) => "wan_vae_decode_tile_first",
        (false, false) => "wan_vae_decode_tile_step",
    };
    let mut b = Builder::new(name);
    let mut cache = FrameCache::new(first);
    let z = b.input("z", TensorType::new(dtype, vec![shape.batch, cfg.z_dim, 1, shape.height, shape.width]))?;
    // `post_quant_conv` is 1x1x1, so applying it per frame equals diffusers' whole-`z` call.
    let x = causal_conv3d(&mut b, &mut cache, z, "post_quant_conv", cfg.z_dim, [1, 1, 1], [0, 0, 0])?;
    let x = decoder(&mut b, &mut cache, cfg, x)?;
    let x = if clamped { clamp(&mut b, x, -1.0, 1.0)? } else { x };
    b.output("sample", x);
    let slots = cache.finish(&mut b)?;
    Ok((b.finish()?, slots))
}

/// `WanDecoder3d.forward` on one step's frames.
fn decoder(b: &mut Builder, cache: &mut FrameCache, cfg: &WanVaeConfig, x: ValueId) -> Result<ValueId> {
    let dim = cfg.decoder_base_dim.unwrap_or(cfg.base_dim);
    let mults: Vec<i64> = std::iter::once(*cfg.dim_mult.last().expect("checked")).chain(cfg.dim_mult.iter().rev().copied()).collect();
    let dims: Vec<i64> = mults.iter().map(|m| dim * m).collect();
    let temporal = temporal_upsample(cfg);

    let mut x = causal_conv3d(b, cache, x, "decoder.conv_in", dims[0], [3, 3, 3], [1, 1, 1])?;

    // WanMidBlock(num_layers=1): resnet, attention, resnet.
    let mid = "decoder.mid_block";
    x = residual_block(b, cache, x, &format!("{mid}.resnets.0"), dims[0], dims[0])?;
    x = attention_block(b, x, &format!("{mid}.attentions.0"))?;
    x = residual_block(b, cache, x, &format!("{mid}.resnets.1"), dims[0], dims[0])?;

    let blocks = cfg.dim_mult.len();
    for i in 0..blocks {
        let prefix = format!("decoder.up_blocks.{i}");
        // Wan 2.1: every upsampler halves the channels, so later blocks take dims[i] / 2.
        let mut in_dim = if i > 0 { dims[i] / 2 } else { dims[i] };
        let out_dim = dims[i + 1];
        for j in 0..=cfg.num_res_blocks {
            x = residual_block(b, cache, x, &format!("{prefix}.resnets.{j}"), in_dim, out_dim)?;
            in_dim = out_dim;
        }
        if i != blocks - 1 {
            x = upsample(b, cache, x, &format!("{prefix}.upsamplers.0"), out_dim, temporal[i])?;
        }
    }

    x = channel_rms_norm(b, x, "decoder.norm_out", false)?;
    x = b.silu(x)?;
    causal_conv3d(b, cache, x, "decoder.conv_out", cfg.out_channels, [3, 3, 3], [1, 1, 1])
}

/// `WanResidualBlock`: shortcut (1x1x1 conv when the width changes), then norm, SiLU, causal conv,
/// twice (dropout is identity at inference).
fn residual_block(b: &mut Builder, cache: &mut FrameCache, x: ValueId, prefix: &str, in_dim: i64, out_dim: i64) -> Result<ValueId> {
    let got = b.shape(x)[1];
    if got != in_dim {
        return Err(unsupported(format!("{prefix}: expected {in_dim} input channels, got {got}")));
    }
    let h =
        if in_dim != out_dim { causal_conv3d(b, cache, x, &format!("{prefix}.conv_shortcut"), out_dim, [1, 1, 1], [0, 0, 0])? } else { x };
    let mut y = channel_rms_norm(b, x, &format!("{prefix}.norm1"), false)?;
    y = b.silu(y)?;
    y = causal_conv3d(b, cache, y, &format!("{prefix}.conv1"), out_dim, [3, 3, 3], [1, 1, 1])?;
    y = channel_rms_norm(b, y, &format!("{prefix}.norm2"), false)?;
    y = b.silu(y)?;
    y = causal_conv3d(b, cache, y, &format!("{prefix}.conv2"), out_dim, [3, 3, 3], [1, 1, 1])?;
    b.add(y, h)
}

/// `WanAttentionBlock`: single-head self-attention over the pixels of each frame, with 1x1
/// convs (`to_qkv`, `proj`) as matmuls on the channel axis, plus the identity.
fn attention_block(b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
    let s = b.shape(x);
    let (bsz, c, t, h, w) = (s[0], s[1], s[2], s[3], s[4]);
    let dtype = b.dtype(x);
    let y = channel_rms_norm(b, x, &format!("{prefix}.norm"), true)?;
    // [B, C, T, H, W] -> [B*T, 1, H*W, C]: one batch entry per frame, one head.
    let y = b.transpose(y, &[0, 2, 3, 4, 1])?;
    let y = b.reshape(y, &[bsz * t, 1, h * w, c])?;
    let qkv = conv1x1(b, y, &format!("{prefix}.to_qkv"), 3 * c, dtype)?;
    let q = b.slice_axis(qkv, 3, 0, c)?;
    let k = b.slice_axis(qkv, 3, c, c)?;
    let v = b.slice_axis(qkv, 3, 2 * c, c)?;
    let a = b.attention(AttentionKind::SelfAttention, q, k, v, 1.0 / (c as f64).sqrt(), None, None)?;
    let o = conv1x1(b, a, &format!("{prefix}.proj"), c, dtype)?;
    let o = b.reshape(o, &[bsz, t, h, w, c])?;
    let o = b.transpose(o, &[0, 4, 1, 2, 3])?;
    b.add(o, x)
}

/// A 1x1 `nn.Conv2d` (weight [out, in, 1, 1] as stored) on a channels-last `x` [..., in].
fn conv1x1(b: &mut Builder, x: ValueId, prefix: &str, out: i64, dtype: DType) -> Result<ValueId> {
    let shape = b.shape(x);
    let rank = shape.len();
    let inp = shape[rank - 1];
    let wt = b.weight(&format!("{prefix}.weight"), TensorType::new(dtype, vec![out, inp, 1, 1]))?;
    let wt = b.reshape(wt, &[out, inp])?;
    let dims = DotDims { lhs_contract: vec![rank - 1], rhs_contract: vec![1], ..Default::default() };
    let y = b.dot_general(x, wt, dims)?;
    let bias = b.weight(&format!("{prefix}.bias"), TensorType::new(dtype, vec![out]))?;
    b.add(y, bias)
}

/// `WanResample` in mode `upsample3d` (`temporal`) or `upsample2d`: for 3d, the causal
/// `time_conv` doubles the channels, which become two frames per frame; then each frame is
/// upsampled 2x (nearest) and goes through a 3x3 conv to `dim / 2` channels.
///
/// In the first step diffusers finds the cache empty, marks it "Rep" and skips `time_conv`: one
/// frame stays one frame, and the next step's `time_conv` sees zeros as history. Here the slot
/// simply passes its zeros on.
fn upsample(b: &mut Builder, cache: &mut FrameCache, x: ValueId, prefix: &str, dim: i64, temporal: bool) -> Result<ValueId> {
    let mut x = x;
    if temporal {
        let time_conv = format!("{prefix}.time_conv");
        if cache.is_first() {
            let mut prev = b.shape(x);
            prev[2] = crate::nn::causal_conv3d::CACHE_T;
            let (slot, zeros) = cache.open(b, &time_conv, TensorType::new(b.dtype(x), prev))?;
            cache.set(slot, zeros);
        } else {
            let s = b.shape(x);
            let (bsz, c, t, h, w) = (s[0], s[1], s[2], s[3], s[4]);
            let y = causal_conv3d(b, cache, x, &time_conv, 2 * dim, [3, 1, 1], [1, 0, 0])?;
            // [B, 2C, T] -> [B, 2, C, T] -> [B, C, T, 2] -> [B, C, 2T]: frame 2t + k is half k of t.
            let y = b.reshape(y, &[bsz, 2, c, t, h, w])?;
            let y = b.transpose(y, &[0, 2, 3, 1, 4, 5])?;
            x = b.reshape(y, &[bsz, c, 2 * t, h, w])?;
        }
    }
    // nearest(-exact) 2x in H and W: every pixel becomes a 2x2 block.
    let s = b.shape(x);
    let (bsz, c, t, h, w) = (s[0], s[1], s[2], s[3], s[4]);
    let up = b.broadcast_in_dim(x, &[bsz, c, t, h, 2, w, 2], &[0, 1, 2, 3, 5])?;
    let up = b.reshape(up, &[bsz, c, t, 2 * h, 2 * w])?;
    conv2d_per_frame(b, up, &format!("{prefix}.resample.1"), dim / 2, 3, 1)
}

/// `torch.clamp(x, lo, hi)`.
fn clamp(b: &mut Builder, x: ValueId, lo: f64, hi: f64) -> Result<ValueId> {
    let dt = b.dtype(x);
    let (l, h) = (b.scalar(lo, dt)?, b.scalar(hi, dt)?);
    let y = b.max(x, l)?;
    b.min(y, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WanVaeConfig {
        WanVaeConfig { base_dim: 8, num_res_blocks: 1, ..Default::default() }
    }

    #[test]
    fn step_graphs_share_the_cache_signature() {
        let shape = VaeDecodeShape { batch: 1, height: 4, width: 4 };
        let cfg = tiny();
        let slots = cache_signature(&cfg, &shape, DType::F32).unwrap();
        // conv_in, 2 mid resnets x 2, 4 up blocks x 2 resnets x 2, 2 time_convs, conv_out.
        assert_eq!(slots.len(), 1 + 4 + 16 + 2 + 1);
        assert_eq!(slots[0].layer, "decoder.conv_in");
        assert_eq!(slots.last().unwrap().ty.shape, vec![1, 8, 2, 32, 32]);
        for first in [true, false] {
            let g = decoder_step(&cfg, &shape, DType::F32, first).unwrap();
            let f = frames_per_step(&cfg, first);
            assert_eq!(g.tensor_ty(g.outputs[0].value).shape, vec![1, 3, f, 32, 32]);
            let outs: Vec<_> = g.outputs[1..].iter().map(|o| (o.name.clone(), g.tensor_ty(o.value).clone())).collect();
            let want: Vec<_> = slots.iter().map(|s| (s.name.clone(), s.ty.clone())).collect();
            assert_eq!(outs, want);
            let cache_inputs = slots.iter().filter(|s| g.find_input(&s.name).is_some()).count();
            assert_eq!(cache_inputs, if first { 0 } else { slots.len() });
        }
        assert_eq!(decoded_frames(&cfg, 3), 9);
        // The tile step is the same graph without the final clamp (max, min).
        let (full, tile) =
            (decoder_step(&cfg, &shape, DType::F32, false).unwrap(), decoder_tile_step(&cfg, &shape, DType::F32, false).unwrap());
        let count = |g: &Graph, op: &str| g.op_counts().get(op).copied().unwrap_or(0);
        assert_eq!(count(&full, "min"), count(&tile, "min") + 1, "the clamp's min");
        assert_eq!(full.outputs.len(), tile.outputs.len());
    }

    #[test]
    fn tile_geometry_from_the_knobs() {
        let cfg = tiny();
        let g = cfg.tile_geometry(&TileKnobs::default()).unwrap();
        assert_eq!(g, TileGeometry { latent_tile: (32, 32), latent_stride: (24, 24), blend: (64, 64), keep: (192, 192) });
        let knobs = TileKnobs { tile_sample_min_width: Some(40), tile_sample_stride_width: Some(16), ..Default::default() };
        let g = cfg.tile_geometry(&knobs).unwrap();
        assert_eq!((g.latent_tile, g.latent_stride, g.blend, g.keep), ((32, 5), (24, 2), (64, 24), (192, 16)));
        let bad = |k: TileKnobs| cfg.tile_geometry(&k).unwrap_err();
        let e = bad(TileKnobs { tile_sample_stride_width: Some(100), ..Default::default() });
        assert!(e.contains("--tile-sample-stride-width is 100: expected a positive multiple of the VAE's spatial compression 8"), "{e}");
        let e = bad(TileKnobs { tile_sample_min_height: Some(0), ..Default::default() });
        assert!(e.contains("--tile-sample-min-height"), "{e}");
        let e = bad(TileKnobs { tile_sample_min_height: Some(64), tile_sample_stride_height: Some(72), ..Default::default() });
        assert!(e.contains("--tile-sample-stride-height 72 exceeds --tile-sample-min-height 64"), "{e}");
        let e = bad(TileKnobs { tile_overlap_factor_height: Some(0.2), ..Default::default() });
        assert!(e.starts_with("--tile-overlap-factor-height does not apply to AutoencoderKLWan"), "{e}");
    }

    #[test]
    fn one_latent_frame_per_step() {
        let cfg = tiny();
        assert_eq!(cfg.step_frames(3), [1, 1, 1]);
        assert_eq!(VaeDecoderGraphs::decoded_frames(&cfg, 3), decoded_frames(&cfg, 3));
        assert_eq!(VaeDecoderGraphs::decoded_frames(&cfg, 1), 1);
        let shape = VaeDecodeShape { batch: 1, height: 2, width: 2 };
        assert!(cfg.step_graph(&shape, 2, false, false, DType::F32).unwrap_err().to_string().contains("one latent frame, not 2"));
        assert_eq!(cfg.step_graph(&shape, 1, true, true, DType::F32).unwrap().name, "wan_vae_decode_tile_first");
    }

    #[test]
    fn residual_vae_is_refused() {
        let cfg = WanVaeConfig { is_residual: true, ..tiny() };
        let e = decoder_step(&cfg, &VaeDecodeShape { batch: 1, height: 2, width: 2 }, DType::F32, true).unwrap_err();
        assert!(e.to_string().contains("is_residual"), "{e}");
    }
}
