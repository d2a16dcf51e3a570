//! The Wan VAE decode loop on PJRT: two executables (the first latent frame, and every later
//! one) compiled once, the weights uploaded once and shared by both, and the causal-conv caches
//! kept on the device from one frame to the next. Matches diffusers' `vae.decode(z).sample`:
//! `z` [B, 16, T, h, w] -> [B, 3, 1 + 4 (T - 1), 8h, 8w], clamped to [-1, 1].

use super::compiled::{ComponentError, ComponentTimes};
use crate::cache::ExecutableCache;
use crate::compile::compile_cached;
use crate::pjrt::{Buffer, Client, CompileOptions, PjrtError};
use crate::program::{ParamKind, Program, ProgramError, Signature};
use crate::tensor::HostTensor;
use crate::weights::{WeightStore, WeightsError};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use vidlower_frontends::wan::config::WanVaeConfig;
use vidlower_frontends::wan::vae::{decoder_step, frames_per_step, VaeDecodeShape};
use vidlower_ir::{DType, Graph};

const COMPONENT: &str = "vae decoder";

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
    #[error("{COMPONENT}: latents have shape {got:?}, expected {expected}")]
    Latents { got: Vec<i64>, expected: String },
}

impl From<ComponentError> for VaeDecodeError {
    fn from(e: ComponentError) -> Self {
        VaeDecodeError::Component(Box::new(e))
    }
}

/// A compiled Wan VAE decoder for one latent size and dtype.
pub struct VaeDecoder {
    first: Program,
    next: Program,
    /// Every weight either program takes, uploaded once.
    weights: HashMap<String, Buffer>,
    cache_names: Vec<String>,
    /// The caches the last step returned; `None` before the first frame.
    cache: Option<Vec<Buffer>>,
    shape: VaeDecodeShape,
    z_dim: i64,
    dtype: DType,
    frames_first: i64,
    frames_next: i64,
    /// How the two executables were obtained, and the weight upload time.
    pub times_first: ComponentTimes,
    pub times_next: ComponentTimes,
    pub weights_upload: Duration,
    frame_times: Vec<Duration>,
}

impl VaeDecoder {
    /// Builds, compiles (through `cache`) and uploads the decoder for latents of `shape`.
    pub fn new(
        client: &Client,
        cache: Option<&ExecutableCache>,
        cfg: &WanVaeConfig,
        shape: VaeDecodeShape,
        dtype: DType,
        weights: &WeightStore,
    ) -> Result<Self, VaeDecodeError> {
        let graph =
            |first| decoder_step(cfg, &shape, dtype, first).map_err(|source| ComponentError::Graph { component: COMPONENT.into(), source });
        let (first, times_first) = compile(graph(true)?, client, cache)?;
        let (next, times_next) = compile(graph(false)?, client, cache)?;

        let start = Instant::now();
        let mut uploaded = HashMap::new();
        for program in [&first, &next] {
            for (name, kind, ty) in &program.signature.params {
                if *kind == ParamKind::Weight && !uploaded.contains_key(name) {
                    let t = weights.load(name, ty)?;
                    uploaded.insert(name.clone(), program.upload(&t)?);
                }
            }
        }
        let cache_names: Vec<String> = next.signature.results.iter().skip(1).map(|(n, _)| n.clone()).collect();
        Ok(VaeDecoder {
            first,
            next,
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
        let t = dims[2];
        self.reset();
        let mut chunks = Vec::with_capacity(t as usize);
        for i in 0..t {
            chunks.push(self.decode_frame(&frame(&z, i))?);
        }
        Ok(concat_frames(&chunks))
    }

    /// Decodes the next latent frame `z_t` [B, z_dim, 1, h, w] of a video (the first after
    /// [`reset`](Self::reset) or construction yields 1 frame, later ones 4), for callers that
    /// consume frames as they come.
    pub fn decode_frame(&mut self, z_t: &HostTensor) -> Result<HostTensor, VaeDecodeError> {
        let start = Instant::now();
        let z_t = z_t.convert(self.dtype);
        let z_buf = self.first.upload(&z_t)?;
        let mut args: HashMap<&str, &Buffer> = self.weights.iter().map(|(k, v)| (k.as_str(), v)).collect();
        args.insert("z", &z_buf);
        let program = match &self.cache {
            None => &self.first,
            Some(bufs) => {
                for (name, buf) in self.cache_names.iter().zip(bufs) {
                    args.insert(name.as_str(), buf);
                }
                &self.next
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

    /// The programs for the first and later steps.
    pub fn programs(&self) -> (&Program, &Program) {
        (&self.first, &self.next)
    }
}

/// Default passes, StableHLO, cached compile; no weights (they are shared, see [`VaeDecoder`]).
fn compile(graph: Graph, client: &Client, cache: Option<&ExecutableCache>) -> Result<(Program, ComponentTimes), ComponentError> {
    let c = || COMPONENT.to_string();
    let start = Instant::now();
    let run = vidlower_passes::default_pipeline().run(graph).map_err(|source| ComponentError::Passes { component: c(), source })?;
    let module = vidlower_backends::emit_module(&run.graph, &Default::default())
        .map_err(|source| ComponentError::Emit { component: c(), source })?;
    let passes = start.elapsed();
    let label = format!("{COMPONENT} ({})", run.graph.name);
    let compiled = compile_cached(client, cache, &module, &CompileOptions::single_device(), &label)
        .map_err(|source| ComponentError::Pjrt { component: c(), source })?;
    for w in &compiled.warnings {
        eprintln!("warning: {COMPONENT}: {w}");
    }
    let program = Program::new(compiled.executable, Signature::of(&run.graph), client)
        .map_err(|source| ComponentError::Program { component: c(), source })?;
    let times = ComponentTimes { passes, compile: compiled.duration, source: compiled.source, weights: Duration::ZERO };
    Ok((program, times))
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
