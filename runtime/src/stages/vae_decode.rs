//! The Wan VAE decode loop on PJRT: two executables (the first latent frame, and every later
//! one) compiled once, the weights uploaded once and shared by both, and the causal-conv caches
//! kept on the device from one frame to the next. Matches diffusers' `vae.decode(z).sample`:
//! `z` [B, 16, T, h, w] -> [B, 3, 1 + 4 (T - 1), 8h, 8w], clamped to [-1, 1].
//!
//! With tiling (diffusers' `enable_tiling`) a frame larger than one tile is decoded tile by tile
//! through [`crate::vae_tiling`]: each distinct tile shape gets its own pair of executables
//! (through the executable cache), all of them sharing the one upload of the weights, and each
//! tile runs all its frames with fresh caches, as `tiled_decode` does.

use super::compiled::{compile_component, sharding_format, ComponentError, ComponentTimes};
use crate::cache::ExecutableCache;
use crate::compile::CompileSource;
use crate::pjrt::{Buffer, Client, PjrtError};
use crate::program::{ParamKind, Program, ProgramError};
use crate::tensor::HostTensor;
use crate::vae_tiling::{decode_tiled, TileConfig, TilePlan, TilingError};
use crate::weights::{WeightStore, WeightsError};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use vidlower_frontends::wan::config::WanVaeConfig;
use vidlower_frontends::wan::vae::{decoder_step, decoder_tile_step, frames_per_step, VaeDecodeShape};
use vidlower_ir::DType;
use vidlower_passes::pipeline_options::PipelineOptions;

const COMPONENT: &str = "vae_decoder";

#[derive(Debug, thiserror::Error)]
pub enum VaeDecodeError {
    #[error(transparent)]
    Component(Box<ComponentError>),
    #[error("{COMPONENT}: {0}")]
    Program(#[from] ProgramError),
    #[error("{COMPONENT}: {0}")]
    Pjrt(#[from] PjrtError),
    #[error("{COMPONENT}: {0}")]
    Weights(#[from] WeightsError),
    #[error("{COMPONENT}: tiling: {0}")]
    Tiling(#[from] TilingError),
    #[error("{COMPONENT}: a tiled decoder ({tiles} tiles) cannot stream frames; use decode")]
    Streaming { tiles: usize },
    #[error("{COMPONENT}: latents have shape {got:?}, expected {expected}")]
    Latents { got: Vec<i64>, expected: String },
}

impl From<ComponentError> for VaeDecodeError {
    fn from(e: ComponentError) -> Self {
        VaeDecodeError::Component(Box::new(e))
    }
}

/// The two step executables for one latent (height, width): the whole frame, or a tile.
struct Steps {
    first: Program,
    next: Program,
    times_first: ComponentTimes,
    times_next: ComponentTimes,
}

/// A compiled Wan VAE decoder for one latent size and dtype, untiled or tiled.
pub struct VaeDecoder {
    /// The step executables by latent (height, width): one entry untiled, one per tile shape tiled.
    steps: BTreeMap<(i64, i64), Steps>,
    /// The tiles, when the decode is tiled.
    plan: Option<TilePlan>,
    /// Every weight any program takes, uploaded once.
    weights: HashMap<String, Buffer>,
    cache_names: Vec<String>,
    /// The caches the last step returned; `None` before the first frame.
    cache: Option<Vec<Buffer>>,
    shape: VaeDecodeShape,
    z_dim: i64,
    dtype: DType,
    frames_first: i64,
    frames_next: i64,
    /// How the first pair of executables was obtained (untiled: the only pair; tiled: the first
    /// tile shape's; [`describe_executables`](Self::describe_executables) has all), and the weight upload time.
    pub times_first: ComponentTimes,
    pub times_next: ComponentTimes,
    pub weights_upload: Duration,
    frame_times: Vec<Duration>,
}

/// How a VAE decoder is built: its dtype, its tiling and the pipeline it is lowered with.
#[derive(Clone, Debug)]
pub struct VaeDecodeSettings {
    pub dtype: DType,
    /// Spatial tiles (diffusers' `enable_tiling`); `None` decodes whole frames.
    pub tiling: Option<TileConfig>,
    /// The passes; a mesh in it is ignored: the VAE runs on one device (as the seeds run it,
    /// replicated), so its frame loop keeps its caches on that device.
    pub pipeline: PipelineOptions,
}

impl VaeDecodeSettings {
    /// Untiled, in `dtype`, with the standard pipeline.
    pub fn untiled(dtype: DType) -> Self {
        VaeDecodeSettings { dtype, tiling: None, pipeline: PipelineOptions::default() }
    }
}

impl VaeDecoder {
    /// Builds, compiles (through `cache`) and uploads the decoder for latents of `shape`, tiled
    /// when the settings ask for tiles and the frame is larger than one tile (diffusers decodes a
    /// frame that fits in a tile whole, tiling enabled or not).
    pub fn new(
        client: &Client,
        cache: Option<&ExecutableCache>,
        cfg: &WanVaeConfig,
        shape: VaeDecodeShape,
        weights: &WeightStore,
        settings: &VaeDecodeSettings,
    ) -> Result<Self, VaeDecodeError> {
        let (dtype, tiling) = (settings.dtype, settings.tiling.as_ref());
        let options = PipelineOptions { sharding: None, ..settings.pipeline.clone() };
        let compile = |graph| compile_component(COMPONENT, graph, options.pipeline_for(None), sharding_format(&options), client, cache);
        let plan = match tiling {
            Some(t) => TilePlan::new(t, cfg.scale_spatial(), shape.height, shape.width)?,
            None => None,
        };
        let shapes = plan.as_ref().map_or_else(|| vec![(shape.height, shape.width)], TilePlan::tile_shapes);
        let mut steps = BTreeMap::new();
        for (height, width) in shapes {
            let s = VaeDecodeShape { batch: shape.batch, height, width };
            let step = if plan.is_some() { decoder_tile_step } else { decoder_step };
            let graph = |first| step(cfg, &s, dtype, first).map_err(|source| ComponentError::Graph { component: COMPONENT.into(), source });
            let (first, times_first) = compile(graph(true)?)?;
            let (next, times_next) = compile(graph(false)?)?;
            steps.insert((height, width), Steps { first, next, times_first, times_next });
        }

        let start = Instant::now();
        let mut uploaded = HashMap::new();
        for program in steps.values().flat_map(|s| [&s.first, &s.next]) {
            for (name, kind, ty) in &program.signature.params {
                if *kind == ParamKind::Weight && !uploaded.contains_key(name) {
                    let t = weights.load(name, ty)?;
                    uploaded.insert(name.clone(), program.upload(&t)?);
                }
            }
        }
        let any = steps.values().next().expect("at least one shape");
        let cache_names: Vec<String> = any.next.signature.results.iter().skip(1).map(|(n, _)| n.clone()).collect();
        let (times_first, times_next) = (any.times_first.clone(), any.times_next.clone());
        Ok(VaeDecoder {
            steps,
            plan,
            weights: uploaded,
            cache_names,
            cache: None,
            shape,
            z_dim: cfg.z_dim,
            dtype,
            frames_first: frames_per_step(cfg, true),
            frames_next: frames_per_step(cfg, false),
            times_first,
            times_next,
            weights_upload: start.elapsed(),
            frame_times: Vec::new(),
        })
    }

    /// `vae.decode(z).sample`: `z` [B, z_dim, T, h, w] (converted to the decoder's dtype) ->
    /// [B, 3, 1 + 4 (T - 1), 8h, 8w] in the decoder's dtype.
    pub fn decode(&mut self, z: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        let s = self.shape;
        let dims = &z.dims;
        if dims.len() != 5 || dims[0] != s.batch || dims[1] != self.z_dim || dims[2] < 1 || dims[3] != s.height || dims[4] != s.width {
            return Err(VaeDecodeError::Latents {
                got: dims.clone(),
                expected: format!("[{}, {}, T >= 1, {}, {}]", s.batch, self.z_dim, s.height, s.width),
            });
        }
        let z = z.convert(self.dtype);
        self.reset();
        let Some(plan) = self.plan.take() else {
            return self.decode_frames((s.height, s.width), &z);
        };
        let tiled = decode_tiled(&plan, &z, |tile, z_tile| self.decode_frames(tile.latent_shape(), &z_tile));
        self.plan = Some(plan);
        // diffusers clamps the blended frame, not the tiles.
        let mut video = tiled?;
        video.data.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        Ok(video.into_tensor().convert(self.dtype))
    }

    /// Every frame of `z` [B, C, T, h, w] (the whole latent or one tile) through the steps
    /// compiled for (h, w), starting from empty caches.
    fn decode_frames(&mut self, hw: (i64, i64), z: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        self.cache = None;
        let chunks = (0..z.dims[2]).map(|i| self.step(hw, &frame(z, i))).collect::<Result<Vec<_>, _>>()?;
        Ok(concat_frames(&chunks))
    }

    /// Decodes the next latent frame `z_t` [B, z_dim, 1, h, w] of a video (the first after
    /// [`reset`](Self::reset) or construction yields 1 frame, later ones 4), for callers that
    /// consume frames as they come. Untiled decoders only: a tiled one decodes each tile's
    /// frames in turn, so it has no whole frame before the last tile.
    pub fn decode_frame(&mut self, z_t: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        if let Some(plan) = &self.plan {
            return Err(VaeDecodeError::Streaming { tiles: plan.len() });
        }
        self.step((self.shape.height, self.shape.width), z_t)
    }

    /// One step of the executables for latent size `hw`: the first after a reset, else a later one.
    fn step(&mut self, hw: (i64, i64), z_t: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        let start = Instant::now();
        let steps = &self.steps[&hw];
        let z_t = z_t.convert(self.dtype);
        let z_buf = steps.first.upload(&z_t)?;
        let mut args: HashMap<&str, &Buffer> = self.weights.iter().map(|(k, v)| (k.as_str(), v)).collect();
        args.insert("z", &z_buf);
        let program = match &self.cache {
            None => &steps.first,
            Some(bufs) => {
                for (name, buf) in self.cache_names.iter().zip(bufs) {
                    args.insert(name.as_str(), buf);
                }
                &steps.next
            }
        };
        let mut outs: HashMap<String, Buffer> = program.run_buffers(&args)?.into_iter().collect();
        drop(args);
        let sample = outs.remove("sample").expect("the step graph returns `sample`").to_host()?;
        let cache = self.cache_names.iter().map(|n| outs.remove(n).expect("the step graph returns every cache")).collect();
        self.cache = Some(cache);
        self.frame_times.push(start.elapsed());
        Ok(sample)
    }

    /// Forgets the caches: the next frame decoded is a video's first.
    pub fn reset(&mut self) {
        self.cache = None;
        self.frame_times.clear();
    }

    /// Wall time of each step since the last reset (upload, execute, sample download).
    pub fn frame_times(&self) -> &[Duration] {
        &self.frame_times
    }

    /// The cache tensors' names, in order (`cache.0`, ...).
    pub fn cache_names(&self) -> &[String] {
        &self.cache_names
    }

    /// Video frames the first step and later steps yield.
    pub fn frames_per_step(&self) -> (i64, i64) {
        (self.frames_first, self.frames_next)
    }

    /// The programs for the first and later steps (tiled: of the first tile shape).
    pub fn programs(&self) -> (&Program, &Program) {
        let s = self.steps.values().next().expect("at least one shape");
        (&s.first, &s.next)
    }

    /// The tiles, when the decode is tiled.
    pub fn plan(&self) -> Option<&TilePlan> {
        self.plan.as_ref()
    }

    /// How the executables were obtained: untiled, each step's passes and compile; tiled, the
    /// totals over every tile shape's pair (`4 tile shapes, 8 executables: passes 40 ms,
    /// 8 compiled / 0 cache hits in 20 s`).
    pub fn describe_executables(&self) -> String {
        if self.plan.is_none() {
            return format!("first step {}; later steps {}", self.times_first.describe(), self.times_next.describe());
        }
        let times: Vec<&ComponentTimes> = self.steps.values().flat_map(|s| [&s.times_first, &s.times_next]).collect();
        let hits = times.iter().filter(|t| t.source == CompileSource::CacheHit).count();
        let f = crate::timing::format_duration;
        format!(
            "{} tile shapes, {} executables: passes {}, {} compiled / {hits} cache hits in {}",
            self.steps.len(),
            times.len(),
            f(times.iter().map(|t| t.passes).sum()),
            times.len() - hits,
            f(times.iter().map(|t| t.compile).sum())
        )
    }
}


/// Frame `t` of `z` [B, C, T, H, W] as [B, C, 1, H, W].
fn frame(z: &HostTensor, t: i64) -> HostTensor {
    let d = &z.dims;
    let plane = (d[3] * d[4]) as usize * z.dtype.size_in_bytes();
    let mut data = Vec::with_capacity((d[0] * d[1]) as usize * plane);
    for bc in 0..(d[0] * d[1]) as usize {
        let at = (bc * d[2] as usize + t as usize) * plane;
        data.extend_from_slice(&z.data[at..at + plane]);
    }
    HostTensor::new(z.dtype, vec![d[0], d[1], 1, d[3], d[4]], data).expect("sizes computed from the dims")
}

/// `torch.cat(chunks, dim=2)` for [B, C, f_i, H, W] chunks.
fn concat_frames(chunks: &[HostTensor]) -> HostTensor {
    let d = &chunks[0].dims;
    let (bc, plane) = ((d[0] * d[1]) as usize, (d[3] * d[4]) as usize * chunks[0].dtype.size_in_bytes());
    let total: i64 = chunks.iter().map(|c| c.dims[2]).sum();
    let mut data = Vec::with_capacity(bc * total as usize * plane);
    for i in 0..bc {
        for c in chunks {
            let f = c.dims[2] as usize;
            data.extend_from_slice(&c.data[i * f * plane..(i + 1) * f * plane]);
        }
    }
    HostTensor::new(chunks[0].dtype, vec![d[0], d[1], total, d[3], d[4]], data).expect("sizes computed from the dims")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_and_join() {
        let v: Vec<f32> = (0..2 * 3 * 4 * 2 * 2).map(|i| i as f32).collect();
        let z = HostTensor::from_f32(vec![2, 3, 4, 2, 2], &v).unwrap();
        let parts: Vec<HostTensor> = (0..4).map(|t| frame(&z, t)).collect();
        assert_eq!(parts[1].to_f32_vec()[..4], [4.0, 5.0, 6.0, 7.0]);
        assert_eq!(concat_frames(&parts), z);
        let joined = concat_frames(&[frame(&z, 0), concat_frames(&[frame(&z, 1), frame(&z, 2), frame(&z, 3)])]);
        assert_eq!(joined, z);
    }
}
