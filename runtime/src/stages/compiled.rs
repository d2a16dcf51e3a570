//! Graph -> the standard passes (as the options shape them) -> StableHLO -> executable (through the cache) -> `Program` with its
//! weights uploaded: the one path every stage takes to get a runnable component.

use crate::cache::ExecutableCache;
use crate::compile::{compile_cached, CompileSource};
use crate::pjrt::{Client, CompileOptions};
use crate::program::{Program, WeightUploadError};
use crate::weights::WeightStore;
use std::time::{Duration, Instant};
use vidlower_backends::{EmitOptions, ShardingFormat};
use vidlower_ir::Graph;
use vidlower_frontends::wan::sharding::{TRANSFORMER_RULES, UMT5_RULES};
use vidlower_passes::pipeline_options::{AttentionLowering, PipelineOptions};
use vidlower_passes::ShardingRules;

/// Timings of getting a component ready, for the stage summaries.
#[derive(Clone, Debug)]
pub struct ComponentTimes {
    pub passes: Duration,
    pub compile: Duration,
    pub source: CompileSource,
    pub weights: Duration,
}

impl ComponentTimes {
    pub fn describe(&self) -> String {
        let f = crate::timing::format_duration;
        let what = match &self.source {
            CompileSource::CacheHit => format!("cache hit {}", f(self.compile)),
            CompileSource::Compiled => format!("compiled {}", f(self.compile)),
            CompileSource::Healed { .. } => format!("recompiled {} (corrupt cache entry replaced)", f(self.compile)),
        };
        // Components that upload their weights themselves (the VAE shares them between two
        // executables) report the upload separately.
        if self.weights.is_zero() {
            return format!("passes {}, {what}", f(self.passes));
        }
        format!("passes {}, {what}, weights {}", f(self.passes), f(self.weights))
    }
}

/// Errors of getting a component ready; each names the component.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("{component}: building the graph: {source}")]
    Graph { component: String, source: vidlower_ir::IrError },
    #[error("{component}: passes: {source}")]
    Passes { component: String, source: vidlower_passes::PassError },
    #[error("{component}: emitting StableHLO: {source}")]
    Emit { component: String, source: vidlower_backends::EmitError },
    #[error("{component}: {source}")]
    Pjrt { component: String, source: crate::pjrt::PjrtError },
    #[error("{component}: {source}")]
    Program { component: String, source: crate::program::ProgramError },
    #[error("{component}: {source}")]
    Weights { component: String, source: crate::weights::WeightsError },
    #[error("{component}: {message}")]
    Target { component: String, message: String },
}

/// Refuses options the target cannot run: cuDNN attention is a CUDA custom call, which every
/// other plugin rejects at compile time with a message that does not name the flag.
pub fn check_target(attention: AttentionLowering, client: &Client) -> Result<(), String> {
    let platform = client.platform_name().map_err(|e| e.to_string())?;
    if attention == AttentionLowering::Cudnn && !platform.eq_ignore_ascii_case("cuda") {
        return Err(format!("--attention cudnn needs the CUDA plugin; this is the {platform} plugin (use auto, dense or blockwise)"));
    }
    Ok(())
}

/// How the options ask shardings to be written (Shardy unless GSPMD was asked for).
pub fn sharding_format(options: &PipelineOptions) -> ShardingFormat {
    match &options.sharding {
        Some(s) if s.gspmd => ShardingFormat::Gspmd,
        _ => ShardingFormat::Shardy,
    }
}

/// Lowers `graph` with the pipeline `options` select, compiles it (cached) and uploads its
/// weights from `weights`.
pub fn prepare(
    component: &str,
    graph: Graph,
    options: &PipelineOptions,
    client: &Client,
    cache: Option<&ExecutableCache>,
    weights: &WeightStore,
) -> Result<(Program, ComponentTimes), ComponentError> {
    let c = || component.to_string();
    let (mut program, mut times) = compile_component(component, graph, options, client, cache)?;
    let start = Instant::now();
    program.upload_weights_from(weights).map_err(|e| match e {
        WeightUploadError::Weights(source) => ComponentError::Weights { component: c(), source },
        WeightUploadError::Program(source) => ComponentError::Program { component: c(), source },
    })?;
    times.weights = start.elapsed();
    Ok((program, times))
}

/// The built-in sharding rules of a Wan component, by the stages' component name
/// (`transformer`, `text_encoder`; the VAE has none: replicated). A stand-in until the model
/// family picks its own table: only Wan's components reach it.
pub fn wan_built_in_rules(component: &str) -> Option<ShardingRules> {
    match component {
        "transformer" => Some(ShardingRules::built_in("wan transformer rules", TRANSFORMER_RULES)),
        "text_encoder" => Some(ShardingRules::built_in("umt5 encoder rules", UMT5_RULES)),
        _ => None,
    }
}

/// Lowers and compiles `graph` (cached) into a program without its weights, for components that
/// share one weight upload between several executables (the VAE's steps and tiles).
/// `component` names the built-in sharding rules (`transformer`, `text_encoder`) and the errors.
pub fn compile_component(
    component: &str,
    graph: Graph,
    options: &PipelineOptions,
    client: &Client,
    cache: Option<&ExecutableCache>,
) -> Result<(Program, ComponentTimes), ComponentError> {
    let c = || component.to_string();
    check_target(options.attention, client).map_err(|message| ComponentError::Target { component: c(), message })?;
    let start = Instant::now();
    let run = options.pipeline_for(wan_built_in_rules(component)).run(graph).map_err(|source| ComponentError::Passes { component: c(), source })?;
    let format = sharding_format(options);
    let module = vidlower_backends::emit_module(&run.graph, &EmitOptions { sharding: format })
        .map_err(|source| ComponentError::Emit { component: c(), source })?;
    let passes = start.elapsed();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    spinner.set_message(format!("compiling {component}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let compiled = compile_cached(client, cache, &module, &CompileOptions::for_graph(&run.graph, format), &format!("{component} ({})", run.graph.name));
    spinner.finish_and_clear();
    let compiled = compiled.map_err(|source| ComponentError::Pjrt { component: c(), source })?;
    for w in &compiled.warnings {
        eprintln!("warning: {component}: {w}");
    }
    let signature = crate::program::Signature::of(&run.graph);
    let program =
        Program::new(compiled.executable, signature, client).map_err(|source| ComponentError::Program { component: c(), source })?;
    let times = ComponentTimes { passes, compile: compiled.duration, source: compiled.source, weights: Duration::ZERO };
    Ok((program, times))
}
