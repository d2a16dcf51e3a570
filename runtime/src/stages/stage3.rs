//! Stage 3: latents -> VAE decode -> `output_video.mp4` (and, with --save-frames,
//! `stage3_frames.safetensors`: `frames` [1, F, H, W, 3] in [-1, 1]). The latents are unscaled
//! once (`latents * std + mean` per channel, as WanPipeline does before `vae.decode`) and the
//! frames mapped to bytes once (the seeds' CogVideoX stage 3 scaled them twice).

use super::model::WanModel;
use super::vae_decode::{describe_geometry, VaeDecodeSettings, VaeDecoder};
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use crate::tensor::HostTensor;
use crate::vae_tiling::TilePlan;
use crate::video::{write_mp4, VideoFrames};
use std::path::Path;
use vidlower_frontends::nn::vae_decoder::{VaeDecodeShape, VaeDecoderGraphs};

pub const LATENTS_FILE: &str = "stage2_latents.safetensors";
pub const FRAMES_FILE: &str = "stage3_frames.safetensors";

/// `latents` [1, C, T, h, w] -> what the pipeline passes to `vae.decode`.
pub fn unscale_latents(model: &WanModel, latents: &HostTensor) -> Result<HostTensor, String> {
    let (mean, std) = (&model.vae.latents_mean, &model.vae.latents_std);
    let c = latents.dims.get(1).copied().unwrap_or(0) as usize;
    if latents.dims.len() != 5 || c != mean.len() || c != std.len() {
        return Err(format!("latents {:?}: expected [B, {}, T, H, W]", latents.dims, mean.len()));
    }
    let per_channel: usize = latents.dims[2..].iter().product::<i64>() as usize;
    let v = latents.to_f32_vec();
    let out: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let ch = (i / per_channel) % c;
            (x as f64 * std[ch] + mean[ch]) as f32
        })
        .collect();
    Ok(HostTensor::from_f32(latents.dims.clone(), &out).expect("same size"))
}

/// Where stage 3 writes, and at what frame rate.
pub struct Stage3Outputs<'a> {
    pub video: &'a Path,
    pub fps: u32,
    /// `stage3_frames.safetensors`, when asked for.
    pub frames_file: Option<&'a Path>,
}

/// Decodes `latents` as `settings` say (dtype, tiling, passes) and writes the video (and
/// frames); returns (frames written, summary).
pub fn run_stage3(
    model: &WanModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    latents: &HostTensor,
    settings: &VaeDecodeSettings,
    out: &Stage3Outputs,
) -> Result<(usize, String), Box<dyn std::error::Error + Send + Sync>> {
    let (output_video, fps, frames_file) = (out.video, out.fps, out.frames_file);
    let z = unscale_latents(model, latents)?;
    let shape = VaeDecodeShape { batch: 1, height: z.dims[3], width: z.dims[4] };
    let weights = model.weights("vae")?;
    let graphs: &dyn VaeDecoderGraphs = &model.vae;
    let mut decoder = VaeDecoder::new(client, cache, graphs, shape, z.dims[2], &weights, settings)?;
    let start = std::time::Instant::now();
    let video = decoder.decode(&z)?; // [1, 3, F, H, W] in [-1, 1]
    let decode_time = start.elapsed();
    let (f, h, w) = (video.dims[2] as usize, video.dims[3] as usize, video.dims[4] as usize);
    let channels_last = to_channels_last(&video.to_f32_vec(), f, h, w);
    if let Some(path) = frames_file {
        let frames = HostTensor::from_f32(vec![1, f as i64, h as i64, w as i64, 3], &channels_last)?;
        crate::safetensors_io::save(path, &[("frames".into(), frames)])?;
    }
    let stats = write_mp4(output_video, &VideoFrames::from_unit_range(&channels_last, f, h, w)?, fps)?;
    let summary = format!(
        "vae: {}; {}; weights {}; decoded {f} frames in {}; mp4 {}x{} {} frames encoded in {}",
        describe_tiling(graphs, decoder.plan(), settings),
        decoder.describe_executables(),
        crate::timing::format_duration(decoder.weights_upload),
        crate::timing::format_duration(decode_time),
        stats.width,
        stats.height,
        stats.frames,
        crate::timing::format_duration(stats.encode_time)
    );
    Ok((f, summary))
}

/// `untiled`, or `tiled: 15 tiles (256x256 every 192x192)`.
fn describe_tiling(graphs: &dyn VaeDecoderGraphs, plan: Option<&TilePlan>, settings: &VaeDecodeSettings) -> String {
    let geometry = settings.tiling.as_ref().and_then(|k| graphs.tile_geometry(k).ok());
    match (plan, geometry) {
        (Some(p), Some(g)) => format!("tiled: {} tiles ({})", p.len(), describe_geometry(&g, p.ratio)),
        (None, Some(_)) => "untiled (the frame fits in one tile)".into(),
        _ => "untiled".into(),
    }
}

/// [3, F, H, W] (batch 1) -> [F, H, W, 3].
fn to_channels_last(v: &[f32], f: usize, h: usize, w: usize) -> Vec<f32> {
    let plane = f * h * w;
    let mut out = vec![0.0; plane * 3];
    for c in 0..3 {
        for i in 0..plane {
            out[i * 3 + c] = v[c * plane + i];
        }
    }
    out
}
