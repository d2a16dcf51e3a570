//! Flags shared by several commands: which graph, which passes, which plugin and cache.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use vidlower_frontends::example::{example_block, ExampleConfig};
use vidlower_ir::{DType, Graph};

/// Which graph to work on.
#[derive(Args, Clone, Debug)]
pub struct GraphArgs {
    /// Built-in graph: `example` (an attention + MLP block).
    #[arg(long, default_value = "example")]
    pub model: String,
    /// A graph in the IR text form (as `dump-ir` prints it) instead of a built-in one.
    #[arg(long, value_name = "FILE")]
    pub ir: Option<PathBuf>,
    /// Compute dtype of the built-in graph: f32, bf16, f16.
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: DType,
    /// Batch size of the built-in graph.
    #[arg(long, default_value_t = 2)]
    pub batch: i64,
    /// Sequence length of the built-in graph.
    #[arg(long, default_value_t = 32)]
    pub seq: i64,
}

impl GraphArgs {
    /// Builds (or reads) the selected graph.
    pub fn graph(&self) -> Result<Graph> {
        if let Some(path) = &self.ir {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading IR file {}", path.display()))?;
            return vidlower_ir::text::parse(&text).with_context(|| format!("in IR file {}", path.display()));
        }
        match self.model.as_str() {
            "example" => {
                if self.batch < 1 || self.seq < 1 {
                    bail!("--batch and --seq must be at least 1 (got {} and {})", self.batch, self.seq);
                }
                let cfg = ExampleConfig { batch: self.batch, seq: self.seq, dtype: self.dtype, ..Default::default() };
                Ok(example_block(&cfg)?)
            }
            other => bail!("unknown --model `{other}`; built-in graphs: example"),
        }
    }
}

/// Which passes run.
#[derive(Args, Clone, Debug)]
pub struct PassArgs {
    /// Comma-separated pass pipeline (default: the standard pipeline; `none` for no passes).
    #[arg(long, value_delimiter = ',')]
    pub passes: Option<Vec<String>>,
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
