//! `AutoencoderKLHunyuanVideo15`'s decoder (HunyuanVideo-1.5 480p / 720p), as diffusers 0.42.1
//! runs it: `_decode` calls `HunyuanVideo15Decoder3D` once on the whole latent video, with no
//! frame batches and no caches. So the decode is one step of all `T` latent frames
//! ([`VaeDecoderGraphs::step_frames`] = `[T]`), and tiled, one step per tile.
//!
//! Why not one latent frame per step with caches, as Wan? The decoder is causal in time (its convs
//! pad the past with the first frame, everything else is per frame or looks back), so such steps
//! could be exact, but the mid block's attention lets every frame attend to all earlier frames:
//! a step would need the keys and values of every frame before it, a cache that grows each step
//! (a new executable per step) or one sized by the video's length (which a step graph does not
//! know). One step of all frames is what diffusers computes, with the same memory.
//!
//! The step graph takes `z` [B, latent_channels, T, h, w] (what the pipeline passes to
//! `vae.decode`: `latents.to(vae.dtype) / scaling_factor`, no shift) and returns `sample`
//! [B, 3, 1 + 4 (T - 1), 16 h, 16 w], unclamped (diffusers' decode does not clamp; the pipeline's
//! `postprocess_video` does), and no caches. There is no `post_quant_conv`. Weight names are the
//! checkpoint's (`decoder.up_blocks.0.upsamplers.0.conv.conv.weight`, ...), in torch layouts.

use super::vae_config::{HunyuanVideo15VaeConfig, UpBlockLayout};
use crate::nn::channel_rms_norm::channel_rms_norm;
use crate::nn::vae_decoder::{TileGeometry, TileKnobs, VaeDecodeShape, VaeDecoderGraphs};
use vidlower_ir::{AttentionKind, Builder, ConvAttrs, DType, DotDims, Graph, IrError, Result, TensorType, ValueId};

/// The flags of `AutoencoderKLHunyuanVideo15.enable_tiling`'s knobs (its `tile_latent_min_*`
/// follow from the sample sizes, as `__init__` derives them).
const TILE_FLAGS: [&str; 3] = ["tile-sample-min-height", "tile-sample-min-width", "tile-overlap-factor"];

/// `__init__`'s tiling defaults: 256-pixel tiles, a quarter blended.
const DEFAULT_TILE_SAMPLE_MIN: i64 = 256;
const DEFAULT_TILE_OVERLAP_FACTOR: f64 = 0.25;

/// The decode of `frames` latent frames in one call, as `vae.decode(z).sample`.
pub fn decoder_graph(cfg: &HunyuanVideo15VaeConfig, shape: &VaeDecodeShape, frames: i64, dtype: DType) -> Result<Graph> {
    build(cfg, shape, frames, dtype, false)
}

/// [`decoder_graph`] that also returns each block's output, for block-by-block comparisons:
/// `decoder.conv_in` (`conv_in(z)` plus the repeated `z`, the mid block's input),
/// `decoder.mid_block`, `decoder.up_blocks.{i}`, after `sample`.
pub fn decoder_probe_graph(cfg: &HunyuanVideo15VaeConfig, shape: &VaeDecodeShape, frames: i64, dtype: DType) -> Result<Graph> {
    build(cfg, shape, frames, dtype, true)
}

fn unsupported(message: String) -> IrError {
    IrError::Value(format!("AutoencoderKLHunyuanVideo15 decoder: {message}"))
}

fn build(cfg: &HunyuanVideo15VaeConfig, shape: &VaeDecodeShape, frames: i64, dtype: DType, probe: bool) -> Result<Graph> {
    cfg.check().map_err(unsupported)?;
    if frames < 1 {
        return Err(unsupported(format!("a decode needs at least one latent frame, got {frames}")));
    }
    let mut b = Builder::new(format!("hunyuanvideo15_vae_decode_t{frames}"));
    let z = b.input("z", TensorType::new(dtype, vec![shape.batch, cfg.latent_channels, frames, shape.height, shape.width]))?;
    let mut probes = Vec::new();
    let x = decoder(&mut b, cfg, z, &mut probes)?;
    b.output("sample", x);
    if probe {
        for (name, v) in probes {
            b.output(&name, v);
        }
    }
    b.finish()
}

/// `HunyuanVideo15Decoder3D.forward`; each block's output is pushed onto `probes`.
fn decoder(b: &mut Builder, cfg: &HunyuanVideo15VaeConfig, z: ValueId, probes: &mut Vec<(String, ValueId)>) -> Result<ValueId> {
    let width = cfg.decoder_channels()[0];
    // conv_in plus the latent channels repeated up to its width (`repeat_interleave`).
    let conv = causal_conv(b, z, "decoder.conv_in", width)?;
    let shortcut = repeat_channels(b, z, width / cfg.latent_channels)?;
    let mut x = b.add(conv, shortcut)?;
    probes.push(("decoder.conv_in".into(), x));

    // HunyuanVideo15MidBlock(num_layers=1): resnet, attention, resnet.
    x = resnet(b, x, "decoder.mid_block.resnets.0", width)?;
    x = attention(b, x, "decoder.mid_block.attentions.0")?;
    x = resnet(b, x, "decoder.mid_block.resnets.1", width)?;
    probes.push(("decoder.mid_block".into(), x));

    let blocks = cfg.up_blocks();
    let last = blocks.len() - 1;
    for (i, block) in blocks.iter().enumerate() {
        let prefix = format!("decoder.up_blocks.{i}");
        x = up_block(b, x, &prefix, cfg.layers_per_block, block)?;
        if i != last {
            probes.push((prefix, x));
        }
    }

    x = channel_rms_norm(b, x, "decoder.norm_out", false)?;
    x = b.silu(x)?;
    causal_conv(b, x, "decoder.conv_out", cfg.out_channels)
}

/// `HunyuanVideo15UpBlock3D`: `layers_per_block + 1` resnets to the block's width, then its
/// upsampler if it has one.
fn up_block(b: &mut Builder, x: ValueId, prefix: &str, layers_per_block: i64, block: &UpBlockLayout) -> Result<ValueId> {
    let got = b.shape(x)[1];
    if got != block.in_channels {
        return Err(unsupported(format!("{prefix}: expected {} input channels, got {got}", block.in_channels)));
    }
    let mut x = x;
    for j in 0..=layers_per_block {
        x = resnet(b, x, &format!("{prefix}.resnets.{j}"), block.out_channels)?;
    }
    match block.upsample_out {
        Some(out) => upsample(b, x, &format!("{prefix}.upsamplers.0"), out, block.temporal),
        None => Ok(x),
    }
}

/// `HunyuanVideo15CausalConv3d(kernel_size=3)`: `F.pad(x, (1, 1, 1, 1, 2, 0), mode="replicate")`
/// (the first frame twice in front, edge rows and columns repeated), then a valid 3x3x3 conv.
/// Weights `{prefix}.conv.weight` [out, in, 3, 3, 3] and `.bias`.
fn causal_conv(b: &mut Builder, x: ValueId, prefix: &str, out_channels: i64) -> Result<ValueId> {
    let x = replicate_pad(b, x, 2, 2, 0)?;
    let x = replicate_pad(b, x, 3, 1, 1)?;
    let x = replicate_pad(b, x, 4, 1, 1)?;
    b.conv(x, &format!("{prefix}.conv"), out_channels, &[3, 3, 3], ConvAttrs::simple(3, 0), true)
}

/// Replicate padding of one axis: its first element `low` times in front, its last `high` times
/// behind (padding the axes one after another is torch's 3-d replicate padding, corners included).
fn replicate_pad(b: &mut Builder, x: ValueId, axis: usize, low: i64, high: i64) -> Result<ValueId> {
    let n = b.shape(x)[axis];
    let mut parts = Vec::new();
    let edge = |b: &mut Builder, at: i64, times: i64| -> Result<ValueId> {
        let e = b.slice_axis(x, axis, at, 1)?;
        let mut shape = b.shape(e);
        shape[axis] = times;
        b.broadcast_to(e, &shape)
    };
    if low > 0 {
        parts.push(edge(b, 0, low)?);
    }
    parts.push(x);
    if high > 0 {
        parts.push(edge(b, n - 1, high)?);
    }
    b.concat(&parts, axis)
}

/// `x.repeat_interleave(repeats, dim=1)` on [B, C, ...]: channel `k` of the result is `k / repeats`.
fn repeat_channels(b: &mut Builder, x: ValueId, repeats: i64) -> Result<ValueId> {
    if repeats == 1 {
        return Ok(x);
    }
    let s = b.shape(x);
    let mut wide = vec![s[0], s[1], repeats];
    wide.extend_from_slice(&s[2..]);
    let dims: Vec<usize> = (0..s.len()).map(|d| if d < 2 { d } else { d + 1 }).collect();
    let y = b.broadcast_in_dim(x, &wide, &dims)?;
    let mut shape = s.clone();
    shape[1] *= repeats;
    b.reshape(y, &shape)
}

/// `HunyuanVideo15ResnetBlock` (SiLU): norm1, SiLU, conv1, norm2, SiLU, conv2, plus the input
/// (through the 1x1x1 `conv_shortcut` when the width changes).
fn resnet(b: &mut Builder, x: ValueId, prefix: &str, out: i64) -> Result<ValueId> {
    let input = b.shape(x)[1];
    let mut h = channel_rms_norm(b, x, &format!("{prefix}.norm1"), false)?;
    h = b.silu(h)?;
    h = causal_conv(b, h, &format!("{prefix}.conv1"), out)?;
    h = channel_rms_norm(b, h, &format!("{prefix}.norm2"), false)?;
    h = b.silu(h)?;
    h = causal_conv(b, h, &format!("{prefix}.conv2"), out)?;
    let shortcut = if input != out {
        b.conv(x, &format!("{prefix}.conv_shortcut"), out, &[1, 1, 1], ConvAttrs::simple(3, 0), true)?
    } else {
        x
    };
    b.add(h, shortcut)
}

/// `HunyuanVideo15AttnBlock`: one head over all pixels of all frames, where a pixel of frame `t`
/// attends to the pixels of frames `0..=t` (`prepare_causal_attention_mask`), plus the input. The
/// 1x1x1 convs `to_q`, `to_k`, `to_v`, `proj_out` run as matmuls on the channels. The mask is
/// built as one attention per frame, its pixels' queries over the keys of the frames up to it:
/// the same softmax (masked keys weigh 0), without a [T h w]^2 mask or the masked half of the
/// scores. Each is a cross attention in the IR's terms (keys from another sequence than the
/// queries, the frames so far), so no pass takes the queries' positions for the keys'.
fn attention(b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
    let s = b.shape(x);
    let (bsz, c, t, h, w) = (s[0], s[1], s[2], s[3], s[4]);
    let hw = h * w;
    let y = channel_rms_norm(b, x, &format!("{prefix}.norm"), false)?;
    // [B, C, T, H, W] -> [B, 1, T*H*W, C]: tokens in (frame, row, column) order, one head.
    let y = b.transpose(y, &[0, 2, 3, 4, 1])?;
    let y = b.reshape(y, &[bsz, 1, t * hw, c])?;
    let q = channel_linear(b, y, &format!("{prefix}.to_q"))?;
    let k = channel_linear(b, y, &format!("{prefix}.to_k"))?;
    let v = channel_linear(b, y, &format!("{prefix}.to_v"))?;
    let scale = 1.0 / (c as f64).sqrt();
    let mut frames = Vec::with_capacity(t as usize);
    for f in 0..t {
        let qf = b.slice_axis(q, 2, f * hw, hw)?;
        let kf = b.slice_axis(k, 2, 0, (f + 1) * hw)?;
        let vf = b.slice_axis(v, 2, 0, (f + 1) * hw)?;
        frames.push(b.attention(AttentionKind::Cross, qf, kf, vf, scale, None, None)?);
    }
    let a = if frames.len() == 1 { frames[0] } else { b.concat(&frames, 2)? };
    let o = channel_linear(b, a, &format!("{prefix}.proj_out"))?;
    let o = b.reshape(o, &[bsz, t, h, w, c])?;
    let o = b.transpose(o, &[0, 4, 1, 2, 3])?;
    b.add(o, x)
}

/// A 1x1x1 `nn.Conv3d` from C to C channels (weight [C, C, 1, 1, 1] as stored, bias) on a
/// channels-last `x` [..., C].
fn channel_linear(b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
    let shape = b.shape(x);
    let (rank, dtype) = (shape.len(), b.dtype(x));
    let c = shape[rank - 1];
    let wt = b.weight(&format!("{prefix}.weight"), TensorType::new(dtype, vec![c, c, 1, 1, 1]))?;
    let wt = b.reshape(wt, &[c, c])?;
    let dims = DotDims { lhs_contract: vec![rank - 1], rhs_contract: vec![1], ..Default::default() };
    let y = b.dot_general(x, wt, dims)?;
    let bias = b.weight(&format!("{prefix}.bias"), TensorType::new(dtype, vec![c]))?;
    let bias = b.broadcast_in_dim(bias, &shape, &[rank - 1])?;
    b.add(y, bias)
}

/// `HunyuanVideo15Upsample`: a causal conv to `factor * out` channels (factor 4 = 2x2 pixels, 8 =
/// also 2 frames) folded into space (and time) by `_dcae_upsample_rearrange`, plus the input
/// folded the same way with its channels repeated. With `temporal`, the first frame is folded
/// into space only (its conv output keeps the first `out` of 2 `out` channels, its shortcut is
/// repeated half as often), so T frames become 1 + 2 (T - 1).
fn upsample(b: &mut Builder, x: ValueId, prefix: &str, out: i64, temporal: bool) -> Result<ValueId> {
    let s = b.shape(x);
    let (inp, t) = (s[1], s[2]);
    let factor = if temporal { 8 } else { 4 };
    let h = causal_conv(b, x, &format!("{prefix}.conv"), factor * out)?;
    let repeats = factor * out / inp;
    if !temporal {
        let h = to_space(b, h, 1)?;
        let shortcut = repeat_channels(b, x, repeats)?;
        let shortcut = to_space(b, shortcut, 1)?;
        return b.add(h, shortcut);
    }
    let h_first = b.slice_axis(h, 2, 0, 1)?;
    let h_first = to_space(b, h_first, 1)?;
    let h_first = b.slice_axis(h_first, 1, 0, out)?;
    let x_first = b.slice_axis(x, 2, 0, 1)?;
    let x_first = to_space(b, x_first, 1)?;
    let x_first = repeat_channels(b, x_first, repeats / 2)?;
    let (mut hs, mut xs) = (vec![h_first], vec![x_first]);
    if t > 1 {
        let h_next = b.slice_axis(h, 2, 1, t - 1)?;
        hs.push(to_space(b, h_next, 2)?);
        let x_next = b.slice_axis(x, 2, 1, t - 1)?;
        let x_next = to_space(b, x_next, 2)?;
        xs.push(repeat_channels(b, x_next, repeats)?);
    }
    let h = b.concat(&hs, 2)?;
    let shortcut = b.concat(&xs, 2)?;
    b.add(h, shortcut)
}

/// `_dcae_upsample_rearrange(x, r1, 2, 2)`: [B, r1*2*2*C, F, H, W] -> [B, C, r1 F, 2H, 2W], channel
/// `((i * 2 + j) * 2 + k) * C + c` going to frame `r1 f + i`, row `2y + j`, column `2x + k`.
fn to_space(b: &mut Builder, x: ValueId, r1: i64) -> Result<ValueId> {
    let s = b.shape(x);
    let (bsz, packed, f, h, w) = (s[0], s[1], s[2], s[3], s[4]);
    let c = packed / (r1 * 4);
    let y = b.reshape(x, &[bsz, r1, 2, 2, c, f, h, w])?;
    let y = b.transpose(y, &[0, 4, 5, 1, 6, 2, 7, 3])?;
    b.reshape(y, &[bsz, c, f * r1, 2 * h, 2 * w])
}

/// The decode loop's view of the HunyuanVideo-1.5 decoder: the whole latent video in one step (see
/// the module doc), tiles as `AutoencoderKLHunyuanVideo15.tiled_decode` places them, no clamp.
impl VaeDecoderGraphs for HunyuanVideo15VaeConfig {
    fn class_name(&self) -> &'static str {
        "AutoencoderKLHunyuanVideo15"
    }

    fn latent_channels(&self) -> i64 {
        self.latent_channels
    }

    fn spatial_scale(&self) -> i64 {
        self.spatial_compression_ratio
    }

    fn step_frames(&self, latent_frames: i64) -> Vec<i64> {
        if latent_frames <= 0 {
            return Vec::new();
        }
        vec![latent_frames]
    }

    /// 1 + 4 (T - 1) for the (only) first step; a later step (never asked for) would add 4 per frame.
    fn step_output_frames(&self, frames: i64, first: bool) -> i64 {
        if first {
            self.decoded_frames_of(frames)
        } else {
            self.temporal_compression_ratio * frames
        }
    }

    /// The same graph tiled or not: diffusers clamps neither. Only a first step exists.
    fn step_graph(&self, shape: &VaeDecodeShape, frames: i64, first: bool, _tiled: bool, dtype: DType) -> Result<Graph> {
        if !first {
            return Err(unsupported(format!(
                "the decoder runs on the whole latent video in one step; a later step of {frames} frames does not exist"
            )));
        }
        decoder_graph(self, shape, frames, dtype)
    }

    /// `__init__`'s defaults (256-pixel tiles, `tile_overlap_factor` 0.25) for the knobs not given,
    /// reduced as `tiled_decode` does: latent tile `tile / 16` (what `__init__` derives; diffusers'
    /// `enable_tiling` takes `tile_latent_min_*` separately, and only this choice assembles a video
    /// of the latents' size for every tile), latent stride `int(latent_tile * (1 - factor))`, blend
    /// `int(tile * factor)` pixels, each tile keeping `tile - blend`. Knobs for which the kept part
    /// differs from the stride are refused, as are tiles that are not a multiple of 16.
    fn tile_geometry(&self, knobs: &TileKnobs) -> std::result::Result<TileGeometry, String> {
        knobs.refuse_others(self.class_name(), &TILE_FLAGS)?;
        let ratio = self.spatial_compression_ratio;
        let tiles = [
            knobs.tile_sample_min_height.unwrap_or(DEFAULT_TILE_SAMPLE_MIN),
            knobs.tile_sample_min_width.unwrap_or(DEFAULT_TILE_SAMPLE_MIN),
        ];
        let factor = knobs.tile_overlap_factor.unwrap_or(DEFAULT_TILE_OVERLAP_FACTOR);
        let factor_flag = TILE_FLAGS[2];
        let mut g = [(0, 0, 0, 0); 2];
        for (i, what) in ["rows", "columns"].into_iter().enumerate() {
            let (tile, tile_flag) = (tiles[i], TILE_FLAGS[i]);
            if tile <= 0 || tile % ratio != 0 {
                return Err(format!("--{tile_flag} is {tile}: expected a positive multiple of the VAE's spatial compression {ratio}"));
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

    fn tiny() -> HunyuanVideo15VaeConfig {
        HunyuanVideo15VaeConfig { latent_channels: 8, block_out_channels: vec![4, 4, 8, 8, 16], layers_per_block: 1, ..Default::default() }
    }

    #[test]
    fn one_step_of_all_frames() {
        let cfg = tiny();
        assert_eq!((cfg.step_frames(0), cfg.step_frames(3)), (vec![], vec![3]));
        assert_eq!([1, 2, 3, 31].map(|t| cfg.decoded_frames(t)), [1, 5, 9, 121]);
        let shape = VaeDecodeShape { batch: 1, height: 2, width: 3 };
        for t in [1, 2, 3] {
            let g = cfg.step_graph(&shape, t, true, false, DType::F32).unwrap();
            assert_eq!(g.outputs.len(), 1, "no caches");
            assert_eq!(g.tensor_ty(g.outputs[0].value).shape, vec![1, 3, 1 + 4 * (t - 1), 32, 48]);
            assert_eq!(g.op_counts().get("attention").copied(), Some(t as usize), "one attention per frame");
        }
        let e = cfg.step_graph(&shape, 2, false, false, DType::F32).unwrap_err().to_string();
        assert!(e.contains("whole latent video in one step"), "{e}");
        let e = cfg.step_graph(&shape, 0, true, false, DType::F32).unwrap_err().to_string();
        assert!(e.contains("at least one latent frame"), "{e}");
    }

    #[test]
    fn weights_are_the_checkpoints() {
        let cfg = tiny();
        let g = decoder_probe_graph(&cfg, &VaeDecodeShape { batch: 1, height: 2, width: 2 }, 2, DType::F32).unwrap();
        let w: std::collections::BTreeMap<String, Vec<i64>> = g.weights().map(|(n, t)| (n.to_string(), t.shape.clone())).collect();
        assert_eq!(w["decoder.conv_in.conv.weight"], [16, 8, 3, 3, 3]);
        assert_eq!(w["decoder.mid_block.attentions.0.to_q.weight"], [16, 16, 1, 1, 1]);
        assert_eq!(w["decoder.mid_block.attentions.0.norm.gamma"], [16, 1, 1, 1]);
        assert_eq!(w["decoder.up_blocks.0.upsamplers.0.conv.conv.weight"], [64, 16, 3, 3, 3]);
        assert_eq!(w["decoder.up_blocks.2.upsamplers.0.conv.conv.weight"], [16, 8, 3, 3, 3]);
        assert_eq!(w["decoder.up_blocks.4.resnets.1.conv2.conv.bias"], [4]);
        assert_eq!(w["decoder.conv_out.conv.weight"], [3, 4, 3, 3, 3]);
        assert!(!w.keys().any(|k| k.contains("post_quant_conv") || k.contains("conv_shortcut") || k.contains("up_blocks.4.upsamplers")));
        // 2 mid resnets + attention (4 convs + norm) + 5 up blocks x 2 resnets + 4 upsamplers, conv_in/out, norm_out.
        assert_eq!(w.len(), 2 * 6 + 9 + 10 * 6 + 4 * 2 + 2 * 2 + 1);
        let names: Vec<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            ["sample", "decoder.conv_in", "decoder.mid_block", "decoder.up_blocks.0", "decoder.up_blocks.1", "decoder.up_blocks.2", "decoder.up_blocks.3"]
        );
        let shapes: Vec<Vec<i64>> = g.outputs.iter().map(|o| g.tensor_ty(o.value).shape.clone()).collect();
        assert_eq!(shapes[3], [1, 8, 3, 4, 4], "up block 0 doubles time (1 + 2 (T - 1)) and space");
        assert_eq!(shapes[6], [1, 4, 5, 32, 32]);
    }

    #[test]
    fn tile_geometry_as_tiled_decode_computes_it() {
        let cfg = HunyuanVideo15VaeConfig::default();
        let g = cfg.tile_geometry(&TileKnobs::default()).unwrap();
        assert_eq!(g, TileGeometry { latent_tile: (16, 16), latent_stride: (12, 12), blend: (64, 64), keep: (192, 192) });
        let knobs = TileKnobs { tile_sample_min_height: Some(32), tile_sample_min_width: Some(64), tile_overlap_factor: Some(0.5), ..Default::default() };
        let g = cfg.tile_geometry(&knobs).unwrap();
        assert_eq!(g, TileGeometry { latent_tile: (2, 4), latent_stride: (1, 2), blend: (16, 32), keep: (16, 32) });
        let bad = |k: TileKnobs| cfg.tile_geometry(&k).unwrap_err();
        let e = bad(TileKnobs { tile_overlap_factor: Some(0.3), ..knobs });
        assert!(e.starts_with("--tile-sample-min-height 32 with --tile-overlap-factor 0.3: tiles start every 1 latent rows (16 pixels) but each keeps 23 pixels"), "{e}");
        let e = bad(TileKnobs { tile_sample_min_width: Some(40), ..knobs });
        assert!(e.contains("--tile-sample-min-width is 40: expected a positive multiple of the VAE's spatial compression 16"), "{e}");
        let e = bad(TileKnobs { tile_overlap_factor: Some(1.0), ..knobs });
        assert!(e.contains("--tile-overlap-factor is 1"), "{e}");
        let e = bad(TileKnobs { tile_sample_min_height: Some(16), ..knobs });
        assert!(e.contains("stride 0"), "{e}");
        let e = bad(TileKnobs { tile_overlap_factor_height: Some(0.2), ..Default::default() });
        assert!(e.starts_with("--tile-overlap-factor-height does not apply to AutoencoderKLHunyuanVideo15"), "{e}");
        assert!(!cfg.clamps_sample());
    }

    #[test]
    fn unsupported_configs_are_named() {
        let shape = VaeDecodeShape { batch: 1, height: 2, width: 2 };
        let cfg = HunyuanVideo15VaeConfig { upsample_match_channel: false, ..tiny() };
        let e = decoder_graph(&cfg, &shape, 1, DType::F32).unwrap_err().to_string();
        assert!(e.contains("AutoencoderKLHunyuanVideo15 decoder: upsample_match_channel false"), "{e}");
    }
}
