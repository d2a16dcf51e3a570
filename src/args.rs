//! Flags shared by several commands: which graph, which passes, which plugin and cache.

use crate::components::{ComponentArg, ComponentGraph, Sizes};
use crate::stage_args::ModelArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use vidlower_frontends::example::{example_block, ExampleConfig};
use vidlower_ir::{DType, Graph};
use vidlower_frontends::family::{Component, VideoSize};
use vidlower_runtime::stages::model::OpenedModel;
use vidlower_runtime::weights::WeightStore;

/// The name `--model` gives the built-in example graph.
pub const EXAMPLE: &str = "example";

/// Which graph to work on: the built-in example block (the default, `--model example`), a model
/// component (`--model NAME` or `--model-dir DIR` with `--component`), or an IR file (`--ir`).
#[derive(Args, Clone, Debug)]
#[command(mut_arg("model", |a| a.help("A built-in model (see `vidlower models`), e.g. wan2.1-tiny, or `example`: the built-in example block (the default)")))]
pub struct GraphArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Which part of the model (exec and bench need one; compile and dump-ir without it take
    /// text_encoder, transformer and vae_decoder).
    #[arg(long, value_enum)]
    pub component: Option<ComponentArg>,
    /// A graph in the IR text form (as `dump-ir` prints it) instead of a built-in one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "model_dir", "component"])]
    pub ir: Option<PathBuf>,
    /// Compute dtype: f32, bf16, f16 (default: the dtype the component's weights are stored in;
    /// f32 for the example graph). The stages default to bf16.
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<DType>,
    #[command(flatten)]
    pub shape: ShapeArgs,
    #[command(flatten)]
    pub lora: crate::stage_args::LoraArgs,
}

/// The sizes a graph is built for. Model components take the video size in pixels, as the
/// stages do; unset values come from the model's defaults (see `vidlower models`).
#[derive(Args, Clone, Debug, Default)]
pub struct ShapeArgs {
    /// Video height in pixels, a multiple of 16 (default: the model's): transformer, VAE decoder.
    #[arg(long)]
    pub height: Option<i64>,
    /// Video width in pixels, a multiple of 16 (default: the model's): transformer, VAE decoder.
    #[arg(long)]
    pub width: Option<i64>,
    /// Video frames, 4n+1 (default: the model's): the transformer's latent frames (the VAE
    /// step graphs take one frame whatever the video's length).
    #[arg(long, alias = "num_frames")]
    pub frames: Option<i64>,
    /// Batch size (default: 2 for the example graph, the text encoder (prompt and negative
    /// prompt) and the transformer (classifier-free guidance); 1 for the VAE decoder).
    #[arg(long)]
    pub batch: Option<i64>,
    /// Text tokens (default: the model's, 512 for Wan): the text encoder's sequence and the
    /// transformer's text length.
    #[arg(long, alias = "max_sequence_length")]
    pub max_sequence_length: Option<i64>,
    /// Sequence length of the example graph (default 32).
    #[arg(long)]
    pub seq: Option<i64>,
}

/// The largest `--batch`, `--seq` or `--max-sequence-length` taken: past these the random
/// inputs alone would not fit in memory (refused with a line, not an allocation abort).
const MAX_BATCH: i64 = 4096;
const MAX_TOKENS: i64 = 1 << 20;

fn check_upper(flags: &[(&str, Option<i64>)]) -> Result<()> {
    for &(flag, v) in flags {
        let max = if flag == "--batch" { MAX_BATCH } else { MAX_TOKENS };
        if let Some(v) = v.filter(|&v| v > max) {
            bail!("{flag} {v}: larger than vidlower accepts (at most {max})");
        }
    }
    Ok(())
}

/// What the flags select.
pub enum Selection {
    /// The example graph or an IR file.
    Graph(Graph),
    /// Components of a model.
    Model(Box<ModelSelection>),
}

/// Components of a model, with the flags that size them.
pub struct ModelSelection {
    pub model: OpenedModel,
    pub components: Vec<ComponentArg>,
    dtype: Option<DType>,
    shape: ShapeArgs,
}

impl GraphArgs {
    /// Checks the flags (before any work: a preset is not materialised, nothing is built when a
    /// flag is wrong) and opens what they name.
    pub fn select(&self) -> Result<Selection> {
        let lora = !self.lora.lora.is_empty();
        if let Some(path) = &self.ir {
            self.refuse(&[("--lora", lora)], "to an IR file (it applies to a model's transformer)")?;
            self.refuse(&[("--dtype", self.dtype.is_some())], "to an IR file (it fixes them)")?;
            self.refuse(&self.shape.given(), "to an IR file (it fixes them)")?;
            let text = std::fs::read_to_string(path).with_context(|| format!("reading IR file {}", path.display()))?;
            // One line: the file, then the line and column (or the op) the parser or verifier names.
            let graph = vidlower_ir::text::parse(&text).map_err(|e| anyhow::anyhow!("IR file {}: {e}", path.display()))?;
            return Ok(Selection::Graph(graph));
        }
        let example = self.model.model_dir.is_none() && self.model.model.as_deref().is_none_or(|m| m == EXAMPLE);
        let s = &self.shape;
        if example {
            self.refuse(&[("--component", self.component.is_some())], "to the example graph (it is one block)")?;
            self.refuse(&[("--lora", lora)], "to the example graph (it applies to a model's transformer)")?;
            let pixels = [("--height", s.height.is_some()), ("--width", s.width.is_some()), ("--frames", s.frames.is_some())];
            self.refuse(&pixels, "to the example graph: it takes --batch and --seq")?;
            self.refuse(&[("--max-sequence-length", s.max_sequence_length.is_some())], "to the example graph: it takes --seq")?;
            let (batch, seq) = (s.batch.unwrap_or(2), s.seq.unwrap_or(32));
            if batch < 1 || seq < 1 {
                bail!("--batch and --seq must be at least 1 (got {batch} and {seq})");
            }
            check_upper(&[("--batch", Some(batch)), ("--seq", Some(seq))])?;
            let cfg = ExampleConfig { batch, seq, dtype: self.dtype.unwrap_or(DType::F32), ..Default::default() };
            return Ok(Selection::Graph(example_block(&cfg)?));
        }
        self.refuse(&[("--seq", s.seq.is_some())], "to a model (it is the example graph's; use --max-sequence-length)")?;
        if self.component.is_some_and(|c| matches!(c.component(), Component::TextEncoder | Component::TextEncoder2)) {
            let pixels = [("--height", s.height.is_some()), ("--width", s.width.is_some()), ("--frames", s.frames.is_some())];
            self.refuse(&pixels, "to the text encoder (it takes --batch and --max-sequence-length)")?;
        }
        for (flag, v) in [("--batch", s.batch), ("--max-sequence-length", s.max_sequence_length)] {
            if v.is_some_and(|v| v < 1) {
                bail!("{flag} must be at least 1 (got {})", v.unwrap_or_default());
            }
        }
        check_upper(&[("--batch", s.batch), ("--max-sequence-length", s.max_sequence_length)])?;
        // Only the components asked for are opened (a directory with just `transformer/` can
        // run the transformer).
        if let Some(c) = self.component.filter(|c| lora && c.component() != Component::Transformer) {
            bail!("--lora applies to the transformer's weights, not the {}", c.name());
        }
        let spec = self.model.spec(None)?;
        let mut model = match self.component {
            Some(c) => OpenedModel::open(&spec, &[c.component()])?,
            None => OpenedModel::open_all(&spec)?,
        };
        // Read and checked against the transformer's weights now, before anything is built.
        model.set_lora(&self.lora.lora)?;
        let components = match self.component {
            Some(c) => vec![c],
            None => model.components().into_iter().map(component_arg).collect(),
        };
        // The given sizes, checked now against the model's rules.
        if c_needs_video(self.component) && (s.height.is_some() || s.width.is_some() || s.frames.is_some()) {
            let d = &model.defaults;
            let v = VideoSize { height: s.height.unwrap_or(d.height), width: s.width.unwrap_or(d.width), frames: s.frames.unwrap_or(d.frames) };
            vidlower_runtime::stages::request_bounds::check(&model, &v).map_err(anyhow::Error::msg)?;
            model.check_video(&v)?;
        }
        Ok(Selection::Model(Box::new(ModelSelection { model, components, dtype: self.dtype, shape: s.clone() })))
    }

    fn refuse(&self, flags: &[(&str, bool)], context: &str) -> Result<()> {
        match flags.iter().find(|(_, given)| *given) {
            Some((flag, _)) => bail!("{flag} does not apply {context}"),
            None => Ok(()),
        }
    }
}

impl Selection {
    /// The selected graphs, at the sizes the flags give.
    pub fn graphs(&self) -> Result<Vec<ComponentGraph>> {
        match self {
            Selection::Graph(graph) => Ok(vec![ComponentGraph { label: graph.name.clone(), graph: graph.clone(), rules: None }]),
            Selection::Model(m) => m.graphs(),
        }
    }

    /// For a model: one line naming it, and one per component with its dtype and sizes.
    pub fn describe(&self) -> Result<Vec<String>> {
        let Selection::Model(m) = self else { return Ok(Vec::new()) };
        let mut lines = vec![format!("model: {} ({}, {})", m.model.spec.id(), m.model.family().name(), m.model.dir().display())];
        for &c in &m.components {
            let weights = m.weights(c)?;
            lines.push(format!("{}: {}, {}", c.name(), m.dtype(&weights), m.model.describe_sizes(c.component(), &m.sizes(c)?)));
        }
        if let Some(lora) = &m.model.lora {
            lines.push(format!("lora: {} (checked; merged into the weights at upload, the executable does not change)", lora.describe()));
        }
        Ok(lines)
    }
}

impl ShapeArgs {
    /// Each size flag and whether it was given.
    pub fn given(&self) -> [(&'static str, bool); 6] {
        [
            ("--height", self.height.is_some()),
            ("--width", self.width.is_some()),
            ("--frames", self.frames.is_some()),
            ("--batch", self.batch.is_some()),
            ("--max-sequence-length", self.max_sequence_length.is_some()),
            ("--seq", self.seq.is_some()),
        ]
    }
}

impl ModelSelection {
    /// The one component a command that runs a component needs.
    pub fn single(&self, command: &str) -> Result<ComponentArg> {
        match self.components[..] {
            [c] => Ok(c),
            _ => {
                let names: Vec<&str> = self.model.components().iter().map(|c| c.name()).collect();
                bail!("{command} needs --component: {}", names.join(", "))
            }
        }
    }

    pub fn weights(&self, c: ComponentArg) -> Result<WeightStore> {
        Ok(self.model.weights(c.component())?)
    }

    /// `--dtype`, else the dtype `weights` are stored in.
    pub fn dtype(&self, weights: &WeightStore) -> DType {
        self.dtype.or_else(|| weights.stored_dtype()).unwrap_or(DType::F32)
    }

    /// The explicitly given size flags (commands that take sizes from elsewhere refuse them).
    pub fn size_flags_given(&self) -> Option<&'static str> {
        self.shape.given().into_iter().find(|(_, g)| *g).map(|(f, _)| f)
    }

    /// The sizes of component `c` from the flags and the model's defaults.
    pub fn sizes(&self, c: ComponentArg) -> Result<Sizes> {
        let (s, d) = (&self.shape, &self.model.defaults);
        let v = VideoSize { height: s.height.unwrap_or(d.height), width: s.width.unwrap_or(d.width), frames: s.frames.unwrap_or(d.frames) };
        vidlower_runtime::stages::request_bounds::check(&self.model, &v).map_err(anyhow::Error::msg)?;
        self.model.check_video(&v)?;
        let batch = s.batch.unwrap_or(self.model.default_batch(c.component()));
        let text_len = s.max_sequence_length.unwrap_or(d.max_sequence_length as i64);
        Ok(self.model.sizes(c.component(), &v, batch, text_len))
    }

    /// Every selected component's graphs.
    pub fn graphs(&self) -> Result<Vec<ComponentGraph>> {
        let mut out = Vec::new();
        for &c in &self.components {
            let weights = self.weights(c)?;
            out.extend(crate::components::graphs(&self.model, &weights, c, &self.sizes(c)?, self.dtype(&weights))?);
        }
        Ok(out)
    }
}

/// Which passes run: the standard pipeline shaped by the pipeline flags, or an explicit list.
#[derive(Args, Clone, Debug)]
pub struct PassArgs {
    /// Comma-separated pass pipeline instead of the standard one (`none` for no passes).
    #[arg(long, value_delimiter = ',')]
    pub passes: Option<Vec<String>>,
    #[command(flatten)]
    pub pipeline: crate::pipeline_args::PipelineArgs,
}

/// Which PJRT plugin, devices and cache.
#[derive(Args, Clone, Debug)]
pub struct RuntimeArgs {
    /// PJRT plugin: cpu, cuda, tpu, or a path to a plugin .so (default: found automatically).
    #[arg(long)]
    pub plugin: Option<String>,
    /// Directory of the executable cache (default: the user cache dir, vidlower/executables).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile without reading or writing the executable cache.
    #[arg(long)]
    pub no_cache: bool,
    /// CUDA: fraction of GPU memory the client may use (the plugin's `memory_fraction`).
    #[arg(long, value_name = "F", value_parser = parse_fraction)]
    pub gpu_memory_fraction: Option<f32>,
    /// CUDA: reserve that memory up front (the plugin's `preallocate`).
    #[arg(long, value_name = "BOOL")]
    pub gpu_preallocate: Option<bool>,
}

fn parse_fraction(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("expected a fraction in (0, 1], got `{s}`")),
    }
}

pub fn parse_dtype(s: &str) -> Result<DType, String> {
    s.parse()
}

/// The `--component` value of a family component.
fn component_arg(c: Component) -> ComponentArg {
    match c {
        Component::TextEncoder => ComponentArg::TextEncoder,
        Component::TextEncoder2 => ComponentArg::TextEncoder2,
        Component::Transformer => ComponentArg::Transformer,
        Component::VaeDecoder => ComponentArg::VaeDecoder,
    }
}

/// Whether the selected component is sized by a video (not a text encoder alone).
fn c_needs_video(c: Option<ComponentArg>) -> bool {
    !c.is_some_and(|c| matches!(c.component(), Component::TextEncoder | Component::TextEncoder2))
}
