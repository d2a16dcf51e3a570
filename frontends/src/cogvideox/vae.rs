//! `AutoencoderKLCogVideoX`'s decoder (CogVideoX-2b, -5b, 1.5-5B), as diffusers 0.42.1 runs it in
//! `_decode`: the latent frames in batches of `num_latent_frames_batch_size` = 2, the remainder
//! in the first batch ([`frame_batches`]: 13 frames -> 3, 2, 2, 2, 2, 2), each batch one call of
//! `CogVideoXDecoder3D` with the causal convs' `conv_cache` of the previous call. The batches
//! matter beyond the caches: every GroupNorm normalises over (channels of its group, frames of
//! the batch, height, width), so a step must see exactly diffusers' batch.
//!
//! A step graph takes `z` [B, latent_channels, t, h, w] (t = the batch's frames; `z` is what the
//! pipeline passes to `vae.decode`: `latents.permute(0, 2, 1, 3, 4) / scaling_factor`) and,
//! except in the first step, the caches `cache.0..`; it returns `sample` [B, 3, t', 8h, 8w]
//! (t' = 1 for t = 1, else 4t for even t, 4t - 3 for odd t), unclamped (diffusers' decode does
//! not clamp; the pipeline's postprocessing does), then the caches under the same names. The
//! first step differs only in its missing caches: a causal conv without cache repeats the
//! input's first frame twice in front (`fake_context_parallel_forward`).
//!
//! `post_quant_conv` is absent in every CogVideoX checkpoint (`use_post_quant_conv` false).
//! Weight names are diffusers' (`decoder.up_blocks.0.resnets.0.conv1.conv.weight`, ...).

use super::vae_config::CogVideoXVaeConfig;
use crate::nn::causal_conv3d::{conv2d_per_frame, with_history, CacheSlot, FrameCache, CACHE_T};
use crate::nn::vae_decoder::{TileGeometry, TileKnobs, VaeDecodeShape, VaeDecoderGraphs};
use vidlower_ir::{Builder, ConvAttrs, DType, Graph, IrError, Result, TensorType, ValueId};

/// diffusers' `num_latent_frames_batch_size`: latent frames per decoder call.
pub const LATENT_FRAMES_BATCH: i64 = 2;

/// `CogVideoXSpatialNorm3D`'s GroupNorm eps (fixed; the config's `norm_eps` is not passed to it).
const SPATIAL_NORM_EPS: f64 = 1e-6;

/// The flags of `AutoencoderKLCogVideoX.enable_tiling`'s knobs.
const TILE_FLAGS: [&str; 4] =
    ["tile-sample-min-height", "tile-sample-min-width", "tile-overlap-factor-height", "tile-overlap-factor-width"];

/// `_decode`'s frame batches of `latent_frames`: `max(T // 2, 1)` batches of 2, the first also
/// taking the remainder `T % 2` (1 -> [1], 3 -> [3], 4 -> [2, 2], 13 -> [3, 2, 2, 2, 2, 2]).
pub fn frame_batches(latent_frames: i64) -> Vec<i64> {
    if latent_frames <= 0 {
        return Vec::new();
    }
    let n = LATENT_FRAMES_BATCH;
    let (batches, rem) = ((latent_frames / n).max(1), latent_frames % n);
    (0..batches)
        .map(|i| {
            let start = n * i + if i == 0 { 0 } else { rem };
            (n * (i + 1) + rem).min(latent_frames) - start
        })
        .collect()
}

/// Frames out of one `compress_time` upsampler for `t` frames in: an odd count keeps its first
/// frame single (1 + 2 (t - 1)), an even one doubles, a single frame stays single.
fn time_upsampled(t: i64) -> i64 {
    match t {
        1 => 1,
        t if t % 2 == 0 => 2 * t,
        t => 2 * t - 1,
    }
}

/// Video frames one decoder call on `frames` latent frames yields.
pub fn step_output_frames(cfg: &CogVideoXVaeConfig, frames: i64) -> i64 {
    (0..cfg.temporal_upsamples()).fold(frames, |t, _| time_upsampled(t))
}

/// One decoder call on `frames` latent frames: the video's first (no cache inputs) or a later one.
pub fn decoder_step(cfg: &CogVideoXVaeConfig, shape: &VaeDecodeShape, frames: i64, dtype: DType, first: bool) -> Result<Graph> {
    Ok(build(cfg, shape, frames, dtype, first)?.0)
}

/// The caches every step of `shape` takes (after the first) and returns, in order, each with the
/// conv it belongs to.
pub fn cache_signature(cfg: &CogVideoXVaeConfig, shape: &VaeDecodeShape, dtype: DType) -> Result<Vec<CacheSlot>> {
    Ok(build(cfg, shape, 1, dtype, false)?.1)
}

fn unsupported(message: String) -> IrError {
    IrError::Value(format!("AutoencoderKLCogVideoX decoder: {message}"))
}

fn check(cfg: &CogVideoXVaeConfig, frames: i64) -> Result<()> {
    if cfg.block_out_channels.is_empty() || cfg.up_block_types.len() != cfg.block_out_channels.len() {
        return Err(unsupported(format!(
            "up_block_types {:?} must name one block per block_out_channels {:?}",
            cfg.up_block_types, cfg.block_out_channels
        )));
    }
    if let Some(t) = cfg.up_block_types.iter().find(|t| *t != "CogVideoXUpBlock3D") {
        return Err(unsupported(format!("up block type {t:?} (only CogVideoXUpBlock3D exists)")));
    }
    if cfg.use_post_quant_conv {
        return Err(unsupported("use_post_quant_conv (no CogVideoX checkpoint has one) is not supported".into()));
    }
    if cfg.act_fn != "silu" && cfg.act_fn != "swish" {
        return Err(unsupported(format!("act_fn {:?} (expected silu)", cfg.act_fn)));
    }
    if let Some(c) = cfg.block_out_channels.iter().find(|&&c| cfg.norm_num_groups <= 0 || c % cfg.norm_num_groups != 0) {
        return Err(unsupported(format!("{c} channels do not split into norm_num_groups {}", cfg.norm_num_groups)));
    }
    if frames < 1 {
        return Err(unsupported(format!("a step needs at least one latent frame, got {frames}")));
    }
    Ok(())
}

fn build(cfg: &CogVideoXVaeConfig, shape: &VaeDecodeShape, frames: i64, dtype: DType, first: bool) -> Result<(Graph, Vec<CacheSlot>)> {
    check(cfg, frames)?;
    let kind = if first { "first" } else { "step" };
    let mut b = Builder::new(format!("cogvideox_vae_decode_{kind}_t{frames}"));
    let mut cache = FrameCache::new(first);
    let z = b.input("z", TensorType::new(dtype, vec![shape.batch, cfg.latent_channels, frames, shape.height, shape.width]))?;
    let x = decoder(&mut b, &mut cache, cfg, z)?;
    b.output("sample", x);
    let slots = cache.finish(&mut b)?;
    Ok((b.finish()?, slots))
}

/// `CogVideoXDecoder3D.forward`; `z` is also every spatial norm's `zq`.
fn decoder(b: &mut Builder, cache: &mut FrameCache, cfg: &CogVideoXVaeConfig, z: ValueId) -> Result<ValueId> {
    let rev: Vec<i64> = cfg.block_out_channels.iter().rev().copied().collect();
    let groups = cfg.norm_num_groups;
    let mut x = causal_conv(b, cache, z, "decoder.conv_in", rev[0])?;

    // CogVideoXMidBlock3D(num_layers=2).
    for j in 0..2 {
        x = resnet(b, cache, x, z, &format!("decoder.mid_block.resnets.{j}"), rev[0], groups)?;
    }

    // CogVideoXUpBlock3D i: layers_per_block + 1 resnets to rev[i] channels (the first from the
    // previous block's width), then an upsampler except in the last block.
    let blocks = rev.len();
    for (i, &channels) in rev.iter().enumerate() {
        let prefix = format!("decoder.up_blocks.{i}");
        for j in 0..=cfg.layers_per_block {
            x = resnet(b, cache, x, z, &format!("{prefix}.resnets.{j}"), channels, groups)?;
        }
        if i + 1 != blocks {
            x = upsample(b, x, &format!("{prefix}.upsamplers.0"), channels, i < cfg.temporal_upsamples())?;
        }
    }

    x = spatial_norm(b, x, z, "decoder.norm_out", groups)?;
    x = b.silu(x)?;
    causal_conv(b, cache, x, "decoder.conv_out", cfg.out_channels)
}

/// `CogVideoXCausalConv3d(kernel_size=3, pad_mode="first")`: two frames of history in front
/// (the `conv_cache`, or the first frame twice when there is none), zero padding 1 in H and W.
/// The cache handed on is the last two frames of that padded input. Weights `{prefix}.conv.*`.
fn causal_conv(b: &mut Builder, cache: &mut FrameCache, x: ValueId, prefix: &str, out_channels: i64) -> Result<ValueId> {
    let mut prev_shape = b.shape(x);
    prev_shape[2] = CACHE_T;
    let (slot, input) = cache.open(b, prefix, TensorType::new(b.dtype(x), prev_shape))?;
    // The first step's slot offers zeros (left for DCE); CogVideoX repeats the first frame instead.
    let prev = if cache.is_first() {
        let first = b.slice_axis(x, 2, 0, 1)?;
        b.concat(&[first, first], 2)?
    } else {
        input
    };
    let (joined, next) = with_history(b, prev, x)?;
    cache.set(slot, next);
    let mut attrs = ConvAttrs::simple(3, 0);
    attrs.padding = vec![(0, 0), (1, 1), (1, 1)];
    b.conv(joined, &format!("{prefix}.conv"), out_channels, &[3, 3, 3], attrs, true)
}

/// A 1x1x1 `nn.Conv3d` (weight `{prefix}.weight` [out, in, 1, 1, 1], bias).
fn conv1x1x1(b: &mut Builder, x: ValueId, prefix: &str, out_channels: i64) -> Result<ValueId> {
    b.conv(x, prefix, out_channels, &[1, 1, 1], ConvAttrs::simple(3, 0), true)
}

/// `CogVideoXResnetBlock3D` with spatial norms (temb_channels 0, conv_shortcut False): norm1,
/// SiLU, conv1, norm2, SiLU, conv2, plus the input (through a 1x1x1 `conv_shortcut` when the
/// width changes; dropout is identity at inference).
fn resnet(b: &mut Builder, cache: &mut FrameCache, x: ValueId, zq: ValueId, prefix: &str, out: i64, groups: i64) -> Result<ValueId> {
    let input = b.shape(x)[1];
    let mut h = spatial_norm(b, x, zq, &format!("{prefix}.norm1"), groups)?;
    h = b.silu(h)?;
    h = causal_conv(b, cache, h, &format!("{prefix}.conv1"), out)?;
    h = spatial_norm(b, h, zq, &format!("{prefix}.norm2"), groups)?;
    h = b.silu(h)?;
    h = causal_conv(b, cache, h, &format!("{prefix}.conv2"), out)?;
    let shortcut = if input != out { conv1x1x1(b, x, &format!("{prefix}.conv_shortcut"), out)? } else { x };
    b.add(h, shortcut)
}

/// `CogVideoXSpatialNorm3D`: `GroupNorm(f) * conv_y(zq) + conv_b(zq)`, `zq` resized (nearest) to
/// f's frames, height and width, with the first frame resized on its own when f has an odd
/// frame count above 1. The 1x1x1 convs run before the resize: a nearest resize only repeats
/// pixels, so the result is the same at a fraction of the cost.
fn spatial_norm(b: &mut Builder, f: ValueId, zq: ValueId, prefix: &str, groups: i64) -> Result<ValueId> {
    let shape = b.shape(f);
    let (channels, dtype) = (shape[1], b.dtype(f));
    let target = [shape[2], shape[3], shape[4]];
    let y = conv1x1x1(b, zq, &format!("{prefix}.conv_y.conv"), channels)?;
    let y = resize_zq(b, y, target)?;
    let bias = conv1x1x1(b, zq, &format!("{prefix}.conv_b.conv"), channels)?;
    let bias = resize_zq(b, bias, target)?;
    let w = b.weight(&format!("{prefix}.norm_layer.weight"), TensorType::new(dtype, vec![channels]))?;
    let beta = b.weight(&format!("{prefix}.norm_layer.bias"), TensorType::new(dtype, vec![channels]))?;
    let norm = b.group_norm(f, groups, SPATIAL_NORM_EPS, Some((w, beta)))?;
    let norm = b.mul(norm, y)?;
    b.add(norm, bias)
}

/// `F.interpolate(zq, size=(t, h, w))` (nearest), or for odd `t > 1` the first frame to
/// (1, h, w) and the rest to (t - 1, h, w), concatenated.
fn resize_zq(b: &mut Builder, zq: ValueId, [t, h, w]: [i64; 3]) -> Result<ValueId> {
    let zt = b.shape(zq)[2];
    if t > 1 && t % 2 == 1 && zt > 1 {
        let first = b.slice_axis(zq, 2, 0, 1)?;
        let first = nearest(b, first, [1, h, w])?;
        let rest = b.slice_axis(zq, 2, 1, zt - 1)?;
        let rest = nearest(b, rest, [t - 1, h, w])?;
        return b.concat(&[first, rest], 2);
    }
    nearest(b, zq, [t, h, w])
}

/// Nearest resize of [B, C, T, H, W] to whole multiples of its size: every element repeated
/// (torch's `nearest` picks `floor(dst * in / out)`, which for a whole ratio is a repeat).
fn nearest(b: &mut Builder, x: ValueId, size: [i64; 3]) -> Result<ValueId> {
    let s = b.shape(x);
    let from = [s[2], s[3], s[4]];
    if from.iter().zip(&size).any(|(&f, &t)| f < 1 || t % f != 0) {
        return Err(unsupported(format!("nearest resize from {from:?} to {size:?} is not a whole upsampling")));
    }
    if from == size {
        return Ok(x);
    }
    let r = [size[0] / from[0], size[1] / from[1], size[2] / from[2]];
    let y = b.broadcast_in_dim(x, &[s[0], s[1], s[2], r[0], s[3], r[1], s[4], r[2]], &[0, 1, 2, 4, 6])?;
    b.reshape(y, &[s[0], s[1], size[0], size[1], size[2]])
}

/// `CogVideoXUpsample3D`: nearest 2x in H and W (with `compress_time`, also 2x in time, except
/// a single frame and the first frame of an odd count), then a 3x3 `Conv2d` per frame.
fn upsample(b: &mut Builder, x: ValueId, prefix: &str, channels: i64, compress_time: bool) -> Result<ValueId> {
    let s = b.shape(x);
    let (t, h, w) = (s[2], s[3], s[4]);
    let x = if compress_time && t > 1 && t % 2 == 1 {
        let first = b.slice_axis(x, 2, 0, 1)?;
        let first = nearest(b, first, [1, 2 * h, 2 * w])?;
        let rest = b.slice_axis(x, 2, 1, t - 1)?;
        let rest = nearest(b, rest, [2 * (t - 1), 2 * h, 2 * w])?;
        b.concat(&[first, rest], 2)?
    } else if compress_time && t > 1 {
        nearest(b, x, [2 * t, 2 * h, 2 * w])?
    } else {
        nearest(b, x, [t, 2 * h, 2 * w])?
    };
    conv2d_per_frame(b, x, &format!("{prefix}.conv"), channels, 3, 1)
}

/// The decode loop's view of the CogVideoX decoder: diffusers' frame batches, tiles as
/// `AutoencoderKLCogVideoX.tiled_decode` places them, no clamp.
impl VaeDecoderGraphs for CogVideoXVaeConfig {
    fn class_name(&self) -> &'static str {
        "AutoencoderKLCogVideoX"
    }

    fn latent_channels(&self) -> i64 {
        self.latent_channels
    }

    fn spatial_scale(&self) -> i64 {
        self.scale_spatial()
    }

    fn step_frames(&self, latent_frames: i64) -> Vec<i64> {
        frame_batches(latent_frames)
    }

    fn step_output_frames(&self, frames: i64, _first: bool) -> i64 {
        step_output_frames(self, frames)
    }

    /// The same graph tiled or not: diffusers clamps neither.
    fn step_graph(&self, shape: &VaeDecodeShape, frames: i64, first: bool, _tiled: bool, dtype: DType) -> Result<Graph> {
        decoder_step(self, shape, frames, dtype, first)
    }

    /// `enable_tiling`'s defaults (half of `sample_height` x `sample_width`, overlaps 1/6 and 1/5)
    /// for the knobs not given, reduced as `tiled_decode` does: latent tile `int(tile / 8)`,
    /// latent stride `int(latent_tile * (1 - factor))`, blend `int(tile * factor)` pixels, each
    /// tile keeping `tile - blend`. Knobs for which the kept part differs from the stride are
    /// refused: diffusers would assemble a video of another size than the latents' (e.g. 48 with
    /// 0.1667 keeps 40 pixels every 32).
    fn tile_geometry(&self, knobs: &TileKnobs) -> std::result::Result<TileGeometry, String> {
        knobs.refuse_others(self.class_name(), &TILE_FLAGS)?;
        let ratio = self.scale_spatial();
        let (dh, dw) = self.default_tile_sample_min();
        let tiles = [knobs.tile_sample_min_height.unwrap_or(dh), knobs.tile_sample_min_width.unwrap_or(dw)];
        let factors = [knobs.tile_overlap_factor_height.unwrap_or(1.0 / 6.0), knobs.tile_overlap_factor_width.unwrap_or(1.0 / 5.0)];
        let mut g = [(0, 0, 0, 0); 2];
        for (i, what) in ["rows", "columns"].into_iter().enumerate() {
            let (tile, factor, tile_flag, factor_flag) = (tiles[i], factors[i], TILE_FLAGS[i], TILE_FLAGS[2 + i]);
            if tile < ratio {
                return Err(format!("--{tile_flag} is {tile}: expected at least the VAE's spatial compression {ratio}"));
            }
            g[i] = crate::nn::vae_decoder::overlap_tile_axis(tile, factor, ratio, (tile_flag, factor_flag), what)?;
        }
        Ok(TileGeometry { latent_tile: (g[0].0, g[1].0), latent_stride: (g[0].1, g[1].1), blend: (g[0].2, g[1].2), keep: (g[0].3, g[1].3) })
    }

    fn clamps_sample(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> CogVideoXVaeConfig {
        CogVideoXVaeConfig {
            block_out_channels: vec![8, 8, 8, 16],
            latent_channels: 8,
            layers_per_block: 1,
            norm_num_groups: 4,
            ..Default::default()
        }
    }

    #[test]
    fn frame_batches_follow_decode() {
        let cases: [(i64, &[i64]); 7] = [(0, &[]), (1, &[1]), (2, &[2]), (3, &[3]), (4, &[2, 2]), (5, &[3, 2]), (13, &[3, 2, 2, 2, 2, 2])];
        for (t, want) in cases {
            assert_eq!(frame_batches(t), want, "T = {t}");
        }
        let cfg = tiny();
        // diffusers' comment: 13 latent frames -> 49 video frames, 12 -> 48.
        assert_eq!([1, 2, 3, 4, 5, 12, 13].map(|t| cfg.decoded_frames(t)), [1, 8, 9, 16, 17, 48, 49]);
    }

    #[test]
    fn steps_share_the_cache_signature() {
        let cfg = tiny();
        let shape = VaeDecodeShape { batch: 1, height: 2, width: 3 };
        let slots = cache_signature(&cfg, &shape, DType::F32).unwrap();
        // conv_in, 2 mid resnets x 2, 4 up blocks x 2 resnets x 2, conv_out.
        assert_eq!(slots.len(), 1 + 4 + 16 + 1);
        assert_eq!((slots[0].layer.as_str(), slots[0].ty.shape.clone()), ("decoder.conv_in", vec![1, 8, 2, 2, 3]));
        assert_eq!(slots.last().unwrap().ty.shape, vec![1, 8, 2, 16, 24]);
        for (frames, first) in [(1, true), (2, true), (3, true), (2, false)] {
            let g = decoder_step(&cfg, &shape, frames, DType::F32, first).unwrap();
            let out = g.tensor_ty(g.outputs[0].value).shape.clone();
            assert_eq!(out, vec![1, 3, step_output_frames(&cfg, frames), 16, 24]);
            let outs: Vec<_> = g.outputs[1..].iter().map(|o| (o.name.clone(), g.tensor_ty(o.value).clone())).collect();
            let want: Vec<_> = slots.iter().map(|s| (s.name.clone(), s.ty.clone())).collect();
            assert_eq!(outs, want);
            assert_eq!(slots.iter().filter(|s| g.find_input(&s.name).is_some()).count(), if first { 0 } else { slots.len() });
        }
    }

    #[test]
    fn tile_geometry_as_tiled_decode_computes_it() {
        let cfg = CogVideoXVaeConfig::default();
        // 480x720 defaults: 240x360 tiles (30x45 latent) every 25x36 latent, 40/72 pixels blended.
        let g = cfg.tile_geometry(&TileKnobs::default()).unwrap();
        assert_eq!(g, TileGeometry { latent_tile: (30, 45), latent_stride: (25, 36), blend: (40, 72), keep: (200, 288) });
        let knobs = TileKnobs {
            tile_sample_min_height: Some(48),
            tile_sample_min_width: Some(40),
            tile_overlap_factor_height: Some(1.0 / 6.0),
            tile_overlap_factor_width: Some(0.2),
            ..Default::default()
        };
        let g = cfg.tile_geometry(&knobs).unwrap();
        assert_eq!(g, TileGeometry { latent_tile: (6, 5), latent_stride: (5, 4), blend: (8, 8), keep: (40, 32) });
        let e = cfg.tile_geometry(&TileKnobs { tile_overlap_factor_height: Some(0.1667), ..knobs }).unwrap_err();
        assert!(e.starts_with("--tile-sample-min-height 48 with --tile-overlap-factor-height 0.1667: tiles start every 4 latent rows (32 pixels) but each keeps 40 pixels"), "{e}");
        let e = cfg.tile_geometry(&TileKnobs { tile_overlap_factor_width: Some(1.0), ..knobs }).unwrap_err();
        assert!(e.contains("--tile-overlap-factor-width is 1"), "{e}");
        let e = cfg.tile_geometry(&TileKnobs { tile_sample_min_width: Some(4), ..knobs }).unwrap_err();
        assert!(e.contains("--tile-sample-min-width is 4"), "{e}");
        let e = cfg.tile_geometry(&TileKnobs { tile_sample_stride_width: Some(32), ..knobs }).unwrap_err();
        assert!(e.starts_with("--tile-sample-stride-width does not apply to AutoencoderKLCogVideoX"), "{e}");
    }

    #[test]
    fn unsupported_configs_are_named() {
        let shape = VaeDecodeShape { batch: 1, height: 2, width: 2 };
        let cfg = CogVideoXVaeConfig { use_post_quant_conv: true, ..tiny() };
        assert!(decoder_step(&cfg, &shape, 1, DType::F32, true).unwrap_err().to_string().contains("use_post_quant_conv"));
        let cfg = CogVideoXVaeConfig { norm_num_groups: 3, ..tiny() };
        assert!(decoder_step(&cfg, &shape, 1, DType::F32, true).unwrap_err().to_string().contains("norm_num_groups 3"));
    }
}
