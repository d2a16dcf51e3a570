//! The family seam: everything model-specific sits behind [`Family`] (how to recognise and open
//! a diffusers directory, the presets) and [`Model`] (one opened directory: its components'
//! graphs, shape rules, prompt encoding, transformer inputs and guidance, the VAE, sharding
//! rules). The stages and the CLI are generic drivers over these two traits; adding a family is
//! one folder under `frontends/src/` that implements them plus one entry in
//! [`crate::registry::FAMILIES`].
//!
//! Traits rather than an enum: a family's data (its configs, tokenizers) stays private to its
//! folder, and nothing outside the folder has a `match` to extend when a family is added.
//! The runtime is reached back through [`ComponentRunner`], so a family writes its pipeline
//! logic (diffusers' `encode_prompt`) as the pipeline reads, without depending on PJRT.

use crate::nn::vae_decoder::VaeDecoderGraphs;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vidlower_ir::{DType, Graph, HostTensor};

/// A compiled part of a pipeline, typed (never a folder-name string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// The (first) text encoder: UMT5 for Wan, T5 for CogVideoX, Qwen2.5-VL for HunyuanVideo-1.5.
    TextEncoder,
    /// A second text encoder (HunyuanVideo-1.5's ByT5 glyph encoder).
    TextEncoder2,
    /// The denoiser.
    Transformer,
    /// The VAE decoder (run as step graphs that carry their caches).
    VaeDecoder,
}

impl Component {
    /// The name `--component` takes and summaries print.
    pub fn name(self) -> &'static str {
        match self {
            Component::TextEncoder => "text_encoder",
            Component::TextEncoder2 => "text_encoder_2",
            Component::Transformer => "transformer",
            Component::VaeDecoder => "vae_decoder",
        }
    }

    /// The diffusers folder holding its config and weights.
    pub fn folder(self) -> &'static str {
        match self {
            Component::TextEncoder => "text_encoder",
            Component::TextEncoder2 => "text_encoder_2",
            Component::Transformer => "transformer",
            Component::VaeDecoder => "vae",
        }
    }

    /// Parses [`Component::name`].
    pub fn from_name(name: &str) -> Option<Component> {
        [Component::TextEncoder, Component::TextEncoder2, Component::Transformer, Component::VaeDecoder]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// Default generation settings of a model or preset (what `vidlower models` shows).
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub height: i64,
    pub width: i64,
    pub frames: i64,
    pub steps: usize,
    pub guidance_scale: f64,
    pub fps: u32,
    /// The flow-matching shift, for families whose scheduler has one.
    pub flow_shift: Option<f64>,
    pub max_sequence_length: usize,
    pub seed: u64,
}

/// A video request in pixels and frames, as the user gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoSize {
    pub height: i64,
    pub width: i64,
    pub frames: i64,
}

/// The sizes a component's graph is built for. Latent sizes are in the transformer's input
/// layout units (latent frames, including any frames the pipeline pads), text lengths in tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub batch: i64,
    pub latent_frames: i64,
    pub latent_height: i64,
    pub latent_width: i64,
    pub text_len: i64,
    /// The second text encoder's length (0 when the family has none).
    pub text_len_2: i64,
}

/// A graph and what to call it (`vae_decoder (first step)`).
pub struct NamedGraph {
    pub label: String,
    pub graph: Graph,
}

/// A weight sharding rule table as data: (regex over weight names, per-dim mesh axis).
pub type RuleTable = &'static [(&'static str, [Option<&'static str>; 2])];

/// Errors of the family layer; each names the file, field, flag or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{component}: building the graph: {source}")]
    Graph { component: &'static str, source: vidlower_ir::IrError },
    /// A request the model cannot take (a frame count, a flag, an input tensor).
    #[error("{0}")]
    Invalid(String),
    /// A directory this family cannot run (a variant, a missing file).
    #[error("{0}")]
    Unsupported(String),
    /// Running a component failed (the runtime's error, as text).
    #[error("{component}: {message}")]
    Run { component: &'static str, message: String },
}

impl FamilyError {
    /// The graph-building error of `component`, for `map_err`.
    pub fn graph(component: Component) -> impl Fn(vidlower_ir::IrError) -> FamilyError {
        move |source| FamilyError::Graph { component: component.name(), source }
    }
}

/// How the runtime runs a component for a family's pipeline logic (stage 1's encoders): the
/// graph goes through the standard passes and the executable cache, the weights come from the
/// component's folder, and a graph already prepared is reused.
pub trait ComponentRunner {
    fn run(
        &mut self,
        component: Component,
        graph: Graph,
        inputs: &HashMap<String, HostTensor>,
    ) -> Result<Vec<(String, HostTensor)>, FamilyError>;
}

/// What stage 1 encodes.
#[derive(Clone, Debug)]
pub struct PromptRequest<'a> {
    pub prompt: &'a str,
    pub negative_prompt: &'a str,
    /// The first text encoder's tokens (the pipeline's `max_sequence_length`).
    pub max_sequence_length: usize,
    pub dtype: DType,
}

/// What [`Model::checked_inputs`] returns: the sizes to build for, the inputs by name, and the
/// names of the file's tensors the component does not take.
pub type CheckedInputs = (Sizes, HashMap<String, HostTensor>, Vec<String>);

/// Stage 1's tensors by diffusers' names (`prompt_embeds`, `negative_prompt_embeds`, ...).
pub type Embeddings = BTreeMap<String, HostTensor>;

/// Denoising choices a family may or may not take (each checked by [`Model::check_denoise`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DenoiseKnobs {
    /// `--flow-shift`: the flow-matching shift (families with a flow scheduler).
    pub flow_shift: Option<f64>,
    /// `--use-dynamic-cfg`: CogVideoX's cosine guidance schedule.
    pub dynamic_cfg: bool,
}

/// A model family: recognises its directories and opens them.
pub trait Family: Sync {
    /// Short name (`wan`, `cogvideox`).
    fn name(&self) -> &'static str;
    /// The diffusers pipeline classes (`model_index.json`'s `_class_name`) this family runs.
    fn pipeline_classes(&self) -> &'static [&'static str];
    /// Pipeline classes of this family it recognises but refuses, with the reason
    /// (image-to-video, control variants).
    fn refused_classes(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// The family's built-in presets.
    fn presets(&self) -> Vec<crate::registry::Preset>;
    /// Opens `dir` (a diffusers directory of this family), reading the configs of `components`
    /// only (plus the scheduler's and the tokenizer's when `components` holds the text encoder or
    /// the transformer), so a directory with just `transformer/` can run the transformer.
    fn open(&self, dir: &Path, components: &[Component]) -> Result<Box<dyn Model>, FamilyError>;
}

/// One opened model directory.
pub trait Model: Send + Sync {
    fn family(&self) -> &'static dyn Family;
    fn dir(&self) -> &Path;
    /// The model's own defaults (size, frames, steps, guidance, fps).
    fn defaults(&self) -> Defaults;
    /// The compiled components a generation runs, in pipeline order.
    fn components(&self) -> Vec<Component>;

    // ---- shapes ----
    /// Refuses a video size the model cannot take, naming the flag (`--frames 10: must be 4n+1`).
    fn check_video(&self, v: &VideoSize) -> Result<(), FamilyError>;
    /// The latents stage 2 writes (the pipeline's layout, padded frames included).
    fn latent_shape(&self, v: &VideoSize) -> Vec<i64>;
    /// The sizes component `c` is built for to generate `v` (the stages' sizes), with `batch`
    /// and the text lengths.
    fn sizes(&self, c: Component, v: &VideoSize, batch: i64, text_len: i64) -> Sizes;
    /// The stages' batch for `c` (2 for the CFG pair / the prompt pair, 1 for the VAE).
    fn default_batch(&self, c: Component) -> i64 {
        match c {
            Component::VaeDecoder => 1,
            _ => 2,
        }
    }
    /// "batch 2, latents 5x16x16 (320 tokens), 512 text tokens".
    fn describe_sizes(&self, c: Component, s: &Sizes) -> String;

    // ---- graphs ----
    /// The graphs of component `c` at `s` in `dtype`, exactly as the stages build them (so
    /// `vidlower compile` fills the cache the stages hit). The VAE decoder's are its step graphs.
    fn graphs(&self, c: Component, s: &Sizes, dtype: DType) -> Result<Vec<NamedGraph>, FamilyError>;
    /// Built-in weight sharding rules of component `c` (`None`: replicated).
    fn sharding_rules(&self, c: Component) -> Option<RuleTable>;
    /// Weight names the checkpoint may store a graph weight under (tied embeddings).
    fn weight_aliases(&self, _c: Component, _name: &str) -> &'static [&'static str] {
        &[]
    }

    // ---- stage 1 ----
    /// Stage 1's tensor names, in the order they are written.
    fn embedding_names(&self) -> Vec<&'static str>;
    /// diffusers' `encode_prompt` for the prompt and the negative prompt: tokenizers, encoders
    /// (through `runner`) and the pipeline's post-processing. Returns [`Self::embedding_names`].
    fn encode_prompts(&self, request: &PromptRequest, runner: &mut dyn ComponentRunner) -> Result<Embeddings, FamilyError>;

    // ---- stage 2 ----
    /// The scheduler's `scheduler_config.json`.
    fn scheduler_config(&self) -> PathBuf {
        self.dir().join("scheduler/scheduler_config.json")
    }
    /// Refuses denoising knobs the family does not take.
    fn check_denoise(&self, knobs: &DenoiseKnobs) -> Result<(), FamilyError>;
    /// The transformer's sizes for the stage-1 embeddings and latents of `latent_shape`.
    fn transformer_sizes(&self, latent_shape: &[i64], embeddings: &Embeddings, batch: i64) -> Result<Sizes, FamilyError>;
    /// The transformer inputs that stay the same for every step (the text conditioning,
    /// batched as the pipeline batches classifier-free guidance when `cfg`), computed once.
    fn conditioning_inputs(&self, embeddings: &Embeddings, cfg: bool, dtype: DType) -> Result<HashMap<String, HostTensor>, FamilyError>;
    /// The inputs of one step: `hidden_states` (`latents`, the pipeline's layout, batch 1,
    /// repeated for the CFG pair) and `timestep` `t` for every row, as diffusers'
    /// `t.expand(batch)` embedded as float.
    fn step_inputs(&self, latents: &HostTensor, t: f64, cfg: bool, dtype: DType) -> Result<HashMap<String, HostTensor>, FamilyError> {
        let hidden = if cfg { concat_batch(&[latents, latents]) } else { latents.clone() };
        let b = hidden.dims[0];
        let timestep = HostTensor::from_f32(vec![b], &vec![t as f32; b as usize]).map_err(|e| FamilyError::Invalid(e.to_string()))?;
        Ok(HashMap::from([("hidden_states".to_string(), hidden.convert(dtype)), ("timestep".to_string(), timestep)]))
    }
    /// The noise prediction after guidance, from the transformer's output `sample` (batch 2 when
    /// `cfg`, in the order [`Self::conditioning_inputs`] batched it) at step `step` of `steps`.
    fn guide(&self, sample: &[f32], cfg: bool, guidance: &GuidanceAt) -> Vec<f32>;

    // ---- stage 3 ----
    /// The VAE decoder's step graphs (the decode loop the runtime runs for every family).
    fn vae_decoder(&self) -> Result<Box<dyn VaeDecoderGraphs>, FamilyError>;
    /// Stage 2's latents -> what the pipeline passes to `vae.decode` ([B, C, T, h, w], unscaled,
    /// padding frames dropped); `video` is the request stage 2 ran.
    fn vae_input(&self, latents: &HostTensor, video: &VideoSize) -> Result<HostTensor, FamilyError>;
    /// Whether stage 3 writes `stage3_frames.safetensors` without `--save-frames` (the family's
    /// seed pipeline always wrote it, and its users read it).
    fn writes_frames_file(&self) -> bool {
        false
    }
    /// The frame rate of the model's videos.
    fn fps(&self) -> u32 {
        self.defaults().fps
    }

    // ---- the exec contract ----
    /// The inputs `exec --component c` takes, named as diffusers' forward() arguments
    /// ("hidden_states [B, 16, T, H, W], ...").
    fn expected_inputs(&self, c: Component) -> String;
    /// Checks a file's tensors against component `c`: the sizes to build it for, and the
    /// inputs converted to what the graph takes. Unknown tensors are returned as ignored.
    fn checked_inputs(
        &self,
        c: Component,
        file: BTreeMap<String, HostTensor>,
        dtype: DType,
        source: &str,
    ) -> Result<CheckedInputs, FamilyError>;
    /// Seeded inputs of the right sizes for timing.
    fn random_inputs(&self, c: Component, s: &Sizes, dtype: DType, seed: u64) -> Result<HashMap<String, HostTensor>, FamilyError>;
}

/// The guidance of one denoising step.
#[derive(Clone, Copy, Debug)]
pub struct GuidanceAt {
    pub scale: f64,
    /// The step's timestep, its index and the number of steps (for schedules such as
    /// CogVideoX's dynamic CFG).
    pub t: f64,
    pub step: usize,
    pub steps: usize,
    pub dynamic: bool,
}

/// The config of component `c` from an `Option` a model was opened with, or an error saying the
/// model in `dir` was opened without it.
pub fn opened<'a, T>(config: &'a Option<T>, dir: &Path, c: Component) -> Result<&'a T, FamilyError> {
    config.as_ref().ok_or_else(|| FamilyError::Invalid(format!("{}: the model was opened without its {}", dir.display(), c.name())))
}

/// `uncond + g * (cond - uncond)` over two halves of a batch-2 output, `cond_first` saying which
/// half is the conditional one.
pub fn classifier_free_guidance(sample: &[f32], scale: f64, cond_first: bool) -> Vec<f32> {
    let n = sample.len() / 2;
    let (cond, uncond) = if cond_first { (&sample[..n], &sample[n..]) } else { (&sample[n..], &sample[..n]) };
    let g = scale as f32;
    cond.iter().zip(uncond).map(|(&c, &u)| u + g * (c - u)).collect()
}

/// The step graphs of a VAE decoder that carries caches between steps of several latent frames
/// (`VaeDecoderGraphs::step_frames`): the first step's graph and one graph for each other frame
/// count the decode runs, as the stages build them.
pub fn vae_step_graphs(vae: &dyn VaeDecoderGraphs, s: &Sizes, dtype: DType) -> Result<Vec<NamedGraph>, FamilyError> {
    let err = FamilyError::graph(Component::VaeDecoder);
    let shape = crate::nn::vae_decoder::VaeDecodeShape { batch: s.batch, height: s.latent_height, width: s.latent_width };
    let steps = vae.step_frames(s.latent_frames);
    let mut out = Vec::new();
    for (i, &frames) in steps.iter().enumerate() {
        let first = i == 0;
        if !first && steps[1..i].contains(&frames) {
            continue;
        }
        let label = if first { format!("vae_decoder (first step, {frames} frames)") } else { format!("vae_decoder (later steps, {frames} frames)") };
        out.push(NamedGraph { label, graph: vae.step_graph(&shape, frames, first, false, dtype).map_err(&err)? });
    }
    Ok(out)
}

/// Tensors of the same shape [1, ...] stacked along the batch dim.
pub fn concat_batch(ts: &[&HostTensor]) -> HostTensor {
    let mut dims = ts[0].dims.clone();
    dims[0] = ts.iter().map(|t| t.dims[0]).sum();
    let data = ts.iter().flat_map(|t| t.data.iter().copied()).collect();
    HostTensor { dtype: ts[0].dtype, dims, data }
}

/// The stage-1 tensor `name`, or an error naming it.
pub fn embedding<'a>(e: &'a Embeddings, name: &str) -> Result<&'a HostTensor, FamilyError> {
    e.get(name).ok_or_else(|| FamilyError::Invalid(format!("stage 1 embeddings have no tensor `{name}`")))
}

/// The output `name` of a component run, or an error naming what came back.
pub fn take_output(outs: Vec<(String, HostTensor)>, name: &str, c: Component) -> Result<HostTensor, FamilyError> {
    let got: Vec<String> = outs.iter().map(|(n, _)| n.clone()).collect();
    outs.into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| FamilyError::Run { component: c.name(), message: format!("expected output `{name}`, got {got:?}") })
}

/// [2, ...] -> two [1, ...].
pub fn split_batch(t: &HostTensor) -> (HostTensor, HostTensor) {
    let half = t.data.len() / 2;
    let mut dims = t.dims.clone();
    dims[0] = 1;
    (
        HostTensor { dtype: t.dtype, dims: dims.clone(), data: t.data[..half].to_vec() },
        HostTensor { dtype: t.dtype, dims, data: t.data[half..].to_vec() },
    )
}

impl std::fmt::Debug for dyn Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Family({})", self.name())
    }
}

impl std::fmt::Debug for dyn Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({}, {})", self.family().name(), self.dir().display())
    }
}

/// The text length of a `prompt_embeds` / `negative_prompt_embeds` pair, each checked to be
/// [1, L, `text_dim`] with the same L (the stage-1 files of families with one T5-style encoder).
pub fn prompt_pair_len(e: &Embeddings, text_dim: i64) -> Result<i64, FamilyError> {
    let p = embedding(e, "prompt_embeds")?;
    for name in ["prompt_embeds", "negative_prompt_embeds"] {
        let t = embedding(e, name)?;
        if t.dims.len() != 3 || t.dims[0] != 1 || t.dims[2] != text_dim || t.dims[1] != p.dims[1] {
            return Err(FamilyError::Invalid(format!("{name}: expected [1, L, {text_dim}] (L as prompt_embeds), got {:?}", t.dims)));
        }
    }
    Ok(p.dims[1])
}
