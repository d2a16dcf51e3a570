//! Graph -> passes -> StableHLO -> executable (through the cache) -> `Program` with its weights
//! uploaded: the one path every command and every stage takes to get a runnable component.

use crate::cache::ExecutableCache;
use crate::compile::{compile_cached, CompileSource};
use crate::pjrt::{Client, CompileOptions};
use crate::program::{Program, WeightUploadError};
use crate::weights::WeightStore;
use std::time::{Duration, Instant};
use vidlower_backends::ShardingFormat;
use vidlower_frontends::family::{Component, Model};
use vidlower_ir::Graph;
use vidlower_passes::pipeline_options::{AttentionLowering, PipelineOptions};
use vidlower_passes::{DumpAfter, PassManager, Target};

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
    #[error("{component}: {source}")]
    Lower { component: String, source: Box<crate::lowering::LowerError> },
    #[error("{component}: {source}")]
    Pjrt { component: String, source: crate::pjrt::PjrtError },
    #[error("{component}: {source}")]
    Program { component: String, source: crate::program::ProgramError },
    #[error("{component}: {source}")]
    Weights { component: String, source: crate::weights::WeightsError },
    #[error("{component}: {message}")]
    Target { component: String, message: String },
    #[error("{component}: --lora {message}; nothing was merged")]
    Lora { component: String, message: String },
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

/// The target the client's plugin runs on (its platform name), which the pipeline options
/// follow (`--attention auto`).
pub fn target_of(client: &Client) -> Result<Target, crate::pjrt::PjrtError> {
    let target = Target::from_platform(&client.platform_name()?);
    // A CPU plugin that did not take vidlower's kernels could not run their calls: it is
    // planned for as an unknown platform (XLA's own lowerings only).
    if target == Target::Cpu && !client.has_cpu_kernels() {
        return Ok(Target::Other);
    }
    Ok(target)
}

/// How the options ask shardings to be written (Shardy unless GSPMD was asked for).
pub fn sharding_format(options: &PipelineOptions) -> ShardingFormat {
    match &options.sharding {
        Some(s) if s.gspmd => ShardingFormat::Gspmd,
        _ => ShardingFormat::Shardy,
    }
}

/// The passes `options` select for component `c` of `model`: its family's built-in sharding
/// rules apply when no `--rules` were given.
pub fn passes_for(options: &PipelineOptions, model: &dyn Model, c: Component) -> PassManager {
    let name = match c {
        Component::TextEncoder => "built-in text_encoder rules",
        Component::TextEncoder2 => "built-in text_encoder_2 rules",
        Component::Transformer => "built-in transformer rules",
        Component::VaeDecoder => "built-in vae rules",
    };
    let built_in = model.sharding_rules(c).map(|t| vidlower_passes::sharding::ShardingRules::built_in(name, t));
    options.pipeline_for(built_in)
}

/// Lowers `graph` through `passes`, compiles it (cached) and uploads its weights from `weights`.
pub fn prepare(
    label: &str,
    graph: Graph,
    passes: PassManager,
    format: ShardingFormat,
    client: &Client,
    cache: Option<&ExecutableCache>,
    weights: &WeightStore,
) -> Result<(Program, ComponentTimes), ComponentError> {
    let c = || label.to_string();
    if let Some(lora) = weights.lora() {
        let used: std::collections::HashSet<&str> = graph.weights().map(|(n, _)| n).collect();
        if let Some(w) = lora.weights().find(|w| !used.contains(w)) {
            return Err(ComponentError::Lora { component: c(), message: format!("adapts `{w}`, which the checkpoint has but this graph does not use") });
        }
    }
    let (mut program, mut times) = compile_component(label, graph, passes, format, client, cache)?;
    let start = Instant::now();
    program.upload_weights_from(weights).map_err(|e| match e {
        WeightUploadError::Weights(source) => ComponentError::Weights { component: c(), source },
        WeightUploadError::Program(source) => ComponentError::Program { component: c(), source },
    })?;
    times.weights = start.elapsed();
    Ok((program, times))
}

/// Lowers (the one [`crate::lowering::lower`]) and compiles `graph` (cached) into a program
/// without its weights, for components that share one weight upload between several
/// executables (the VAE's steps and tiles). `label` names the cache entry and the errors.
pub fn compile_component(
    label: &str,
    graph: Graph,
    passes: PassManager,
    format: ShardingFormat,
    client: &Client,
    cache: Option<&ExecutableCache>,
) -> Result<(Program, ComponentTimes), ComponentError> {
    let c = || label.to_string();
    let start = Instant::now();
    let name = graph.name.clone();
    let lowered = crate::lowering::lower(graph, passes, format, DumpAfter::None, &mut |_, _| {})
        .map_err(|source| ComponentError::Lower { component: c(), source: Box::new(source) })?;
    let passes = start.elapsed();
    let spinner = indicatif::ProgressBar::with_draw_target(None, crate::pjrt::plugin_log::progress_target());
    spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    spinner.set_message(format!("compiling {label}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let cache_label = if label == name { name.clone() } else { format!("{label} ({name})") };
    let compiled = compile_cached(client, cache, &lowered.module, &CompileOptions::for_graph(&lowered.graph, format), &cache_label);
    spinner.finish_and_clear();
    let compiled = compiled.map_err(|source| ComponentError::Pjrt { component: c(), source })?;
    for w in &compiled.warnings {
        crate::user_eprintln!("warning: {label}: {w}");
    }
    let signature = crate::program::Signature::of(&lowered.graph);
    let program =
        Program::new(compiled.executable, signature, client).map_err(|source| ComponentError::Program { component: c(), source })?;
    let times = ComponentTimes { passes, compile: compiled.duration, source: compiled.source, weights: Duration::ZERO };
    Ok((program, times))
}

/// Renames graph weights a checkpoint stores under another name (`aliases` gives the
/// candidates: a tied embedding), so they load by the name the file has.
pub fn use_stored_names(graph: &mut Graph, weights: &WeightStore, aliases: &dyn Fn(&str) -> &'static [&'static str]) {
    let inputs = graph.inputs.clone();
    for v in inputs {
        if let vidlower_ir::Op::Weight { name } = &mut graph.nodes[v.index()].op {
            if !weights.contains(name) {
                if let Some(alias) = aliases(name).iter().find(|a| weights.contains(a)) {
                    *name = alias.to_string();
                }
            }
        }
    }
}
