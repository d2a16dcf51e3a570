//! The VAE decode loop on PJRT, family-neutral: a family's decoder comes as step graphs
//! ([`VaeDecoderGraphs`]), each step decoding one batch of latent frames with the causal-conv
//! caches of the previous step (Wan: one frame a step; CogVideoX: diffusers' frame batches).
//! One executable per distinct step (frames, first or not, latent tile shape) is compiled once
//! (through the executable cache), the weights are uploaded once and shared by all, and the
//! caches stay on the device from one step to the next. Matches diffusers' `vae.decode(z).sample`.
//!
//! With tiling (diffusers' `enable_tiling`, the knobs reduced by the family to a
//! [`TileGeometry`]) a frame larger than one tile is decoded tile by tile through
//! [`crate::vae_tiling`]: each tile runs all its steps from fresh caches, as `tiled_decode` does,
//! and the blended frame is clamped when the family's decode clamps.

use super::compiled::{compile_component, sharding_format, ComponentError, ComponentTimes};
use crate::cache::ExecutableCache;
use crate::compile::CompileSource;
use crate::pjrt::{Buffer, Client, PjrtError};
use crate::program::{ParamKind, Program, ProgramError};
use crate::tensor::HostTensor;
use crate::vae_tiling::{decode_tiled, TileGeometry, TileKnobs, TilePlan, TilingError};
use crate::weights::{WeightStore, WeightsError};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
pub use vidlower_frontends::nn::vae_decoder::{VaeDecodeShape, VaeDecoderGraphs};
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
    /// The family refused the tile knobs (the message names the flag).
    #[error("{COMPONENT}: {0}")]
    TileKnobs(String),
    #[error("{COMPONENT}: a tiled decoder ({tiles} tiles) cannot stream frames; use decode")]
    Streaming { tiles: usize },
    #[error("{COMPONENT}: latents have shape {got:?}, expected {expected}")]
    Latents { got: Vec<i64>, expected: String },
    #[error("{COMPONENT}: no executable for a {kind} step of {frames} latent frames (compiled: {compiled})")]
    NoStep { kind: &'static str, frames: i64, compiled: String },
}

impl From<ComponentError> for VaeDecodeError {
    fn from(e: ComponentError) -> Self {
        VaeDecodeError::Component(Box::new(e))
    }
}

/// What one step executable decodes: latent (height, width), latent frames, first step or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StepKey {
    pub hw: (i64, i64),
    pub frames: i64,
    pub first: bool,
}

impl StepKey {
    /// "first step", "later steps", with the frames when a step takes more than one.
    pub fn label(&self) -> String {
        let what = if self.first { "first step" } else { "later steps" };
        if self.frames == 1 {
            what.to_string()
        } else {
            format!("{what} ({} latent frames)", self.frames)
        }
    }
}

struct Step {
    program: Program,
    times: ComponentTimes,
}

/// A compiled VAE decoder for one latent shape [B, C, T, h, w] and dtype, untiled or tiled.
pub struct VaeDecoder {
    /// One executable per distinct step: one tile shape untiled, every tile shape tiled.
    steps: BTreeMap<StepKey, Step>,
    /// The tiles, when the decode is tiled.
    plan: Option<TilePlan>,
    /// Every weight any program takes, uploaded once.
    weights: HashMap<String, Buffer>,
    cache_names: Vec<String>,
    /// The caches the last step returned; `None` before a video's first step.
    cache: Option<Vec<Buffer>>,
    shape: VaeDecodeShape,
    latent_channels: i64,
    latent_frames: i64,
    /// Latent frames of each step, in order (the family's `step_frames(T)`).
    step_frames: Vec<i64>,
    decoded_frames: i64,
    clamps: bool,
    dtype: DType,
    /// The weight upload time (once, for every executable).
    pub weights_upload: Duration,
    step_times: Vec<Duration>,
}

/// How a VAE decoder is built: its dtype, its tiling and the pipeline it is lowered with.
#[derive(Clone, Debug)]
pub struct VaeDecodeSettings {
    pub dtype: DType,
    /// Spatial tiles (diffusers' `enable_tiling`, the user's knobs; the family fills in its
    /// defaults); `None` decodes whole frames.
    pub tiling: Option<TileKnobs>,
    /// The passes; a mesh in it is ignored: the VAE runs on one device (as the seeds run it,
    /// replicated), so its step loop keeps its caches on that device.
    pub pipeline: PipelineOptions,
}

impl VaeDecodeSettings {
    /// Untiled, in `dtype`, with the standard pipeline.
    pub fn untiled(dtype: DType) -> Self {
        VaeDecodeSettings { dtype, tiling: None, pipeline: PipelineOptions::default() }
    }
}

impl VaeDecoder {
    /// Builds, compiles (through `cache`) and uploads the decoder `graphs` for latents of
    /// `shape` with `latent_frames` frames: one executable per distinct step of the family's
    /// frame batches, per tile shape when the settings ask for tiles and the frame is larger
    /// than one tile (diffusers decodes a frame that fits in a tile whole, tiling enabled or not).
    pub fn new(
        client: &Client,
        cache: Option<&ExecutableCache>,
        graphs: &dyn VaeDecoderGraphs,
        shape: VaeDecodeShape,
        latent_frames: i64,
        weights: &WeightStore,
        settings: &VaeDecodeSettings,
    ) -> Result<Self, VaeDecodeError> {
        let dtype = settings.dtype;
        let (plan, step_graphs) = step_graphs(graphs, shape, latent_frames, settings)?;
        let step_frames = graphs.step_frames(latent_frames);
        let options = PipelineOptions { sharding: None, ..settings.pipeline.clone() };
        let mut steps = BTreeMap::new();
        for (key, graph) in step_graphs {
            let (program, times) = compile_component(COMPONENT, graph, options.pipeline_for(None), sharding_format(&options), client, cache)?;
            steps.insert(key, Step { program, times });
        }

        let start = Instant::now();
        let mut uploaded = HashMap::new();
        for step in steps.values() {
            for (name, kind, ty) in &step.program.signature.params {
                if *kind == ParamKind::Weight && !uploaded.contains_key(name) {
                    let t = weights.load(name, ty)?;
                    uploaded.insert(name.clone(), step.program.upload(&t)?);
                }
            }
        }
        let any = steps.values().next().expect("at least one step");
        let cache_names: Vec<String> = any.program.signature.results.iter().skip(1).map(|(n, _)| n.clone()).collect();
        Ok(VaeDecoder {
            steps,
            plan,
            weights: uploaded,
            cache_names,
            cache: None,
            shape,
            latent_channels: graphs.latent_channels(),
            latent_frames,
            decoded_frames: graphs.decoded_frames(latent_frames),
            step_frames,
            clamps: graphs.clamps_sample(),
            dtype,
            weights_upload: start.elapsed(),
            step_times: Vec::new(),
        })
    }

    /// `vae.decode(z).sample`: `z` [B, C, T, h, w] (converted to the decoder's dtype) ->
    /// [B, 3, F, scale h, scale w] in the decoder's dtype, F = the family's decoded frames.
    pub fn decode(&mut self, z: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        let s = self.shape;
        let dims = &z.dims;
        let want = [s.batch, self.latent_channels, self.latent_frames, s.height, s.width];
        if dims[..] != want[..] {
            return Err(VaeDecodeError::Latents { got: dims.clone(), expected: format!("{want:?}") });
        }
        let z = z.convert(self.dtype);
        self.reset();
        let Some(plan) = self.plan.take() else {
            return self.decode_steps((s.height, s.width), &z);
        };
        let tiled = decode_tiled(&plan, &z, |tile, z_tile| self.decode_steps(tile.latent_shape(), &z_tile));
        self.plan = Some(plan);
        let mut video = tiled?;
        // diffusers clamps the blended frame (when it clamps at all), not the tiles.
        if self.clamps {
            video.data.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        }
        Ok(video.into_tensor().convert(self.dtype))
    }

    /// Every step of `z` [B, C, T, h, w] (the whole latent or one tile) through the executables
    /// compiled for (h, w), starting from empty caches; the steps' samples concatenated in time.
    fn decode_steps(&mut self, hw: (i64, i64), z: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        self.cache = None;
        let mut start = 0;
        let mut chunks = Vec::with_capacity(self.step_frames.len());
        for f in self.step_frames.clone() {
            chunks.push(self.step(hw, &frames(z, start, f))?);
            start += f;
        }
        Ok(concat_frames(&chunks))
    }

    /// Decodes the next step's latent frames `z_step` [B, C, f, h, w] of a video (the first
    /// after [`reset`](Self::reset) or construction), for callers that consume frames as they
    /// come; `f` must be the frames of that step in [`step_frames`](Self::step_frames). Untiled
    /// decoders only: a tiled one decodes each tile's steps in turn, so it has no whole frame
    /// before the last tile.
    pub fn decode_step(&mut self, z_step: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        if let Some(plan) = &self.plan {
            return Err(VaeDecodeError::Streaming { tiles: plan.len() });
        }
        self.step((self.shape.height, self.shape.width), z_step)
    }

    /// One step of the executables for latent size `hw`: the first after a reset, else a later one.
    fn step(&mut self, hw: (i64, i64), z: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        let start = Instant::now();
        let key = StepKey { hw, frames: z.dims.get(2).copied().unwrap_or(0), first: self.cache.is_none() };
        let Some(step) = self.steps.get(&key) else {
            let compiled = self.steps.keys().map(StepKey::label).collect::<Vec<_>>().join(", ");
            let kind = if key.first { "first" } else { "later" };
            return Err(VaeDecodeError::NoStep { kind, frames: key.frames, compiled });
        };
        let program = &step.program;
        let z = z.convert(self.dtype);
        let z_buf = program.upload(&z)?;
        let mut args: HashMap<&str, &Buffer> = self.weights.iter().map(|(k, v)| (k.as_str(), v)).collect();
        args.insert("z", &z_buf);
        if let Some(bufs) = &self.cache {
            for (name, buf) in self.cache_names.iter().zip(bufs) {
                args.insert(name.as_str(), buf);
            }
        }
        let mut outs: HashMap<String, Buffer> = program.run_buffers(&args)?.into_iter().collect();
        drop(args);
        let sample = outs.remove("sample").expect("the step graph returns `sample`").to_host()?;
        let cache = self.cache_names.iter().map(|n| outs.remove(n).expect("the step graph returns every cache")).collect();
        self.cache = Some(cache);
        self.step_times.push(start.elapsed());
        Ok(sample)
    }

    /// Forgets the caches: the next step decoded is a video's first.
    pub fn reset(&mut self) {
        self.cache = None;
        self.step_times.clear();
    }

    /// Wall time of each step since the last reset (upload, execute, sample download).
    pub fn frame_times(&self) -> &[Duration] {
        &self.step_times
    }

    /// The cache tensors' names, in order (`cache.0`, ...).
    pub fn cache_names(&self) -> &[String] {
        &self.cache_names
    }

    /// Latent frames of each step, in order.
    pub fn step_frames(&self) -> &[i64] {
        &self.step_frames
    }

    /// Video frames [`decode`](Self::decode) returns.
    pub fn decoded_frames(&self) -> i64 {
        self.decoded_frames
    }

    /// The tiles, when the decode is tiled.
    pub fn plan(&self) -> Option<&TilePlan> {
        self.plan.as_ref()
    }

    /// Each executable with what it decodes (`first step`, `later steps (2 latent frames)`,
    /// tiled: with the latent tile size).
    pub fn executables(&self) -> Vec<(String, &ComponentTimes)> {
        let tiled = self.plan.is_some();
        self.ordered()
            .into_iter()
            .map(|(k, s)| {
                let label = if tiled { format!("{} of a {}x{} tile", k.label(), k.hw.0, k.hw.1) } else { k.label() };
                (label, &s.times)
            })
            .collect()
    }

    /// The steps by tile shape, the first step before the later ones.
    fn ordered(&self) -> Vec<(&StepKey, &Step)> {
        let mut steps: Vec<_> = self.steps.iter().collect();
        steps.sort_by_key(|(k, _)| (k.hw, !k.first, k.frames));
        steps
    }

    /// How the executables were obtained: untiled, each step's passes and compile
    /// (`first step ...; later steps ...`); tiled, the totals over every tile shape's steps
    /// (`4 tile shapes, 8 executables: passes 40 ms, 8 compiled / 0 cache hits in 20 s`).
    pub fn describe_executables(&self) -> String {
        if self.plan.is_none() {
            return self.ordered().into_iter().map(|(k, s)| format!("{} {}", k.label(), s.times.describe())).collect::<Vec<_>>().join("; ");
        }
        let times: Vec<&ComponentTimes> = self.steps.values().map(|s| &s.times).collect();
        let shapes = self.plan.as_ref().map_or(0, |p| p.tile_shapes().len());
        let hits = times.iter().filter(|t| t.source == CompileSource::CacheHit).count();
        let f = crate::timing::format_duration;
        format!(
            "{shapes} tile shapes, {} executables: passes {}, {} compiled / {hits} cache hits in {}",
            times.len(),
            f(times.iter().map(|t| t.passes).sum()),
            times.len() - hits,
            f(times.iter().map(|t| t.compile).sum())
        )
    }
}

/// A decode's tile plan and its step graphs, keyed by what each decodes.
pub type StepGraphs = (Option<TilePlan>, Vec<(StepKey, vidlower_ir::Graph)>);

/// The tile plan (when `settings` tile and the frame is larger than one tile) and every
/// distinct step graph a decode of `latent_frames` frames of `shape` runs, keyed by what it
/// decodes: what [`VaeDecoder::new`] compiles, and what the memory plan measures.
pub fn step_graphs(
    graphs: &dyn VaeDecoderGraphs,
    shape: VaeDecodeShape,
    latent_frames: i64,
    settings: &VaeDecodeSettings,
) -> Result<StepGraphs, VaeDecodeError> {
    let plan = match &settings.tiling {
        Some(knobs) => {
            let geometry = graphs.tile_geometry(knobs).map_err(VaeDecodeError::TileKnobs)?;
            TilePlan::new(&geometry, graphs.spatial_scale(), shape.height, shape.width)?
        }
        None => None,
    };
    let step_frames = graphs.step_frames(latent_frames);
    if step_frames.is_empty() {
        return Err(VaeDecodeError::Latents { got: vec![latent_frames], expected: "at least one latent frame".into() });
    }
    let hws = plan.as_ref().map_or_else(|| vec![(shape.height, shape.width)], TilePlan::tile_shapes);
    let mut out: Vec<(StepKey, vidlower_ir::Graph)> = Vec::new();
    for &hw in &hws {
        let s = VaeDecodeShape { batch: shape.batch, height: hw.0, width: hw.1 };
        for (i, &frames) in step_frames.iter().enumerate() {
            let key = StepKey { hw, frames, first: i == 0 };
            if out.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let graph = graphs
                .step_graph(&s, frames, key.first, plan.is_some(), settings.dtype)
                .map_err(|source| ComponentError::Graph { component: COMPONENT.into(), source })?;
            out.push((key, graph));
        }
    }
    Ok((plan, out))
}

/// `(tile) 256x256 every 192x192` pixels: what a geometry means in sample space.
pub fn describe_geometry(g: &TileGeometry, ratio: i64) -> String {
    let (t, s) = (g.latent_tile, g.latent_stride);
    format!("{}x{} every {}x{}", t.0 * ratio, t.1 * ratio, s.0 * ratio, s.1 * ratio)
}

/// Frames `start .. start + n` of `z` [B, C, T, H, W] as [B, C, n, H, W].
fn frames(z: &HostTensor, start: i64, n: i64) -> HostTensor {
    let d = &z.dims;
    let plane = (d[3] * d[4]) as usize * z.dtype.size_in_bytes();
    let mut data = Vec::with_capacity((d[0] * d[1] * n) as usize * plane);
    for bc in 0..(d[0] * d[1]) as usize {
        let at = (bc * d[2] as usize + start as usize) * plane;
        data.extend_from_slice(&z.data[at..at + n as usize * plane]);
    }
    HostTensor::new(z.dtype, vec![d[0], d[1], n, d[3], d[4]], data).expect("sizes computed from the dims")
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
        let parts: Vec<HostTensor> = (0..4).map(|t| frames(&z, t, 1)).collect();
        assert_eq!(parts[1].to_f32_vec()[..4], [4.0, 5.0, 6.0, 7.0]);
        assert_eq!(concat_frames(&parts), z);
        let joined = concat_frames(&[frames(&z, 0, 1), concat_frames(&[frames(&z, 1, 1), frames(&z, 2, 1), frames(&z, 3, 1)])]);
        assert_eq!(joined, z);
        // CogVideoX's batches: [3, 1] frames.
        let (a, b) = (frames(&z, 0, 3), frames(&z, 3, 1));
        assert_eq!(a.dims, [2, 3, 3, 2, 2]);
        assert_eq!(a.to_f32_vec()[12..16], [16.0, 17.0, 18.0, 19.0], "batch 0, channel 1 starts at its frame 0");
        assert_eq!(concat_frames(&[a, b]), z);
    }
}
