//! The executables each stage runs, built exactly as the stage builds them and compiled through
//! the executable cache (so `plan` then `generate` compiles nothing twice), and the host
//! buffers each stage holds: the inputs of [`crate::memory_plan`].

use super::compiled::{compile_component, passes_for, sharding_format, use_stored_names};
use super::model::OpenedModel;
use super::vae_decode::{step_graphs, VaeDecodeSettings};
use crate::cache::ExecutableCache;
use crate::memory_plan::{mem_available, proc_status, Capacity, ExecutableMemory, MemoryPlan, StageMemory};
use crate::pjrt::Client;
use crate::program::Program;
use vidlower_frontends::family::{Component, VideoSize};
use vidlower_frontends::nn::vae_decoder::VaeDecodeShape;
use vidlower_ir::DType;
use vidlower_passes::pipeline_options::{AttentionLowering, PipelineOptions};
use vidlower_passes::Target;

/// What a run asks for, as the stage commands resolve their flags.
pub struct PlanRequest<'a> {
    pub video: VideoSize,
    /// Stage 1's tokens (`--max-sequence-length`).
    pub text_len: usize,
    /// Stages 1 and 2's compute dtype (`--dtype`).
    pub dtype: DType,
    /// Classifier-free guidance: the transformer runs the cond/uncond pair as batch 2.
    pub cfg: bool,
    pub pipeline: &'a PipelineOptions,
    pub decode: &'a VaeDecodeSettings,
    /// `--save-frames` (or a family that always writes them): one more f32 copy of the video.
    pub save_frames: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("memory plan: stage {stage}: {message}")]
pub struct PlanError {
    pub stage: u8,
    pub message: String,
}

fn fail(stage: u8) -> impl Fn(String) -> PlanError {
    move |message| PlanError { stage, message }
}

/// The plan of `stages` (1, 2, 3) of the run `r`, with the machine's capacity (or `limit`).
pub fn plan(
    model: &OpenedModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    r: &PlanRequest,
    stages: &[u8],
    limit: Option<u64>,
) -> Result<MemoryPlan, PlanError> {
    // Measured first: what the process holds before the stages' executables are loaded, with
    // the runtime's one-time costs (its thread pools, its code loader) already paid.
    warm_up(client, cache);
    let baseline = proc_status("VmRSS").unwrap_or(0);
    let unified = r.pipeline.target == Target::Cpu;
    let mut out = Vec::new();
    for &stage in stages {
        let before = proc_status("VmRSS");
        let (mut s, loaded) = match stage {
            1 => stage1(model, client, cache, r, unified)?,
            2 => stage2(model, client, cache, r, unified)?,
            _ => stage3(model, client, cache, r)?,
        };
        // Loading executables costs host memory beyond their buffers (the plugin's runtime and
        // the code: XLA CPU reports no code size), measured while they are loaded. After a
        // fresh compile this also holds what the compiler kept, an overestimate; from the
        // cache it is what the stage's own load costs.
        if let (Some(b), Some(a)) = (before, proc_status("VmRSS")) {
            s.host.push(("executables loaded (measured RSS growth)".to_string(), a.saturating_sub(b)));
        }
        drop(loaded);
        out.push(s);
    }
    Ok(MemoryPlan { stages: out, baseline, capacity: capacity(client, unified, limit) })
}

/// A 512x512 matmul loaded (through the cache, so that a compile's leftovers do not inflate
/// the baseline of a second run) and run once: the first execution in a process
/// starts the plugin's worker threads and its code loader, tens of MiB of RSS on XLA CPU that
/// buffer assignment does not count and every stage pays once. A failure only leaves that out
/// of the baseline.
fn warm_up(client: &Client, cache: Option<&ExecutableCache>) {
    const MODULE: &str = "func.func public @main(%a: tensor<512x512xf32>) -> tensor<512x512xf32> {
  %0 = stablehlo.dot_general %a, %a, contracting_dims = [1] x [0] : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
  %1 = stablehlo.exponential %0 : tensor<512x512xf32>
  return %1 : tensor<512x512xf32>
}";
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let options = crate::pjrt::CompileOptions::single_device();
        let exe = crate::compile::compile_cached(client, cache, MODULE, &options, "memory plan warm-up")?.executable;
        let device = exe.addressable_devices().first().cloned().ok_or("no device")?;
        let a = client.buffer_from_host(&crate::tensor::HostTensor::zeros(DType::F32, vec![512, 512])?, &device)?;
        exe.execute(&[vec![&a]])?;
        Ok(())
    };
    let _ = run();
}

/// On XLA CPU a dense attention's [Sq, Sk] scores take about one more f32 copy than buffer
/// assignment reports (measured on wan2.1-tiny's transformer at 512x512x9, 3072 tokens: peak RSS
/// 411 MiB against 292 MiB predicted without this term, 150 MiB with `--attention blockwise`
/// against 149 MiB): the largest dense attention's f32 scores, B x H x Sq x Sk x 4 bytes.
fn dense_scores(options: &PipelineOptions, model: &OpenedModel, c: Component, graph: &vidlower_ir::Graph) -> Option<(String, u64)> {
    if options.target != Target::Cpu {
        return None;
    }
    let rules = model.sharding_rules(c).map(|t| vidlower_passes::sharding::ShardingRules::built_in("built-in rules", t));
    let plan = options.attention_plan(graph.clone(), rules).ok()?;
    let bytes = plan
        .iter()
        .filter(|p| p.decision.lowered == vidlower_passes::attention_plan::Lowered::Dense)
        .map(|p| {
            let (q, k) = (&p.site.q.shape, &p.site.k.shape);
            (q[0] * q[1] * q[2] * k[2]).max(0) as u64 * 4
        })
        .max()?;
    Some(("dense attention scores beyond buffer assignment (XLA CPU)".to_string(), bytes))
}

/// What this machine offers: `limit` for host and every device when given; else the host's
/// MemAvailable plus what this process already holds, and each device's allocator limit where
/// the plugin reports one.
pub fn capacity(client: &Client, unified: bool, limit: Option<u64>) -> Capacity {
    if let Some(l) = limit {
        return Capacity { host: Some(l), device: (!unified).then_some(l), unified, limited: true };
    }
    let host = mem_available().map(|a| a + proc_status("VmRSS").unwrap_or(0));
    let device = if unified {
        None
    } else {
        client.addressable_devices().ok().and_then(|d| d.first().and_then(|d| d.memory_limit()))
    };
    Capacity { host, device, unified, limited: false }
}

/// Bytes of the component's checkpoint files: mapped for the upload, so they count in RSS.
fn mapped_files(model: &OpenedModel, c: Component) -> Result<u64, String> {
    let store = model.weights(c).map_err(|e| e.to_string())?;
    Ok(store.files().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum())
}

fn compiled(
    model: &OpenedModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    options: &PipelineOptions,
    c: Component,
    label: &str,
    graph: vidlower_ir::Graph,
) -> Result<(ExecutableMemory, Program), String> {
    let passes = passes_for(options, model.model.as_ref(), c);
    let (program, _) = compile_component(label, graph, passes, sharding_format(options), client, cache).map_err(|e| e.to_string())?;
    Ok((ExecutableMemory::of(label, &program), program))
}

fn stage1(model: &OpenedModel, client: &Client, cache: Option<&ExecutableCache>, r: &PlanRequest, unified: bool) -> Result<(StageMemory, Vec<Program>), PlanError> {
    let e = fail(1);
    let (mut executables, mut loaded) = (Vec::new(), Vec::new());
    let mut host = Vec::new();
    for c in model.components().into_iter().filter(|c| matches!(c, Component::TextEncoder | Component::TextEncoder2)) {
        let sizes = model.sizes(c, &r.video, model.default_batch(c), r.text_len as i64);
        let weights = model.weights(c).map_err(|x| e(x.to_string()))?;
        for g in model.graphs(c, &sizes, r.dtype).map_err(|x| e(x.to_string()))? {
            let mut graph = g.graph;
            // As the stage runner names them, so the module (and its cache key) is the same.
            use_stored_names(&mut graph, &weights, &|name| model.weight_aliases(c, name));
            host.extend(dense_scores(r.pipeline, model, c, &graph));
            let (exe, program) = compiled(model, client, cache, r.pipeline, c, c.name(), graph).map_err(&e)?;
            loaded.push(program);
            // The hidden states come back to the host and are split into the two embeddings.
            host.push((format!("{} outputs and the embeddings", c.name()), 2 * exe.outputs));
            executables.push(exe);
        }
        host.push((format!("{} checkpoint (mapped)", c.name()), mapped_files(model, c).map_err(&e)?));
    }
    let mut remedies = Vec::new();
    if r.dtype == DType::F32 {
        remedies.push("--dtype bf16".to_string());
    }
    remedies.push("a smaller --max-sequence-length".into());
    if !unified && r.pipeline.sharding.is_none() {
        remedies.push("--mesh (shards the text encoder's weights)".into());
    }
    Ok((StageMemory { stage: 1, executables, host, remedies }, loaded))
}

fn stage2(model: &OpenedModel, client: &Client, cache: Option<&ExecutableCache>, r: &PlanRequest, unified: bool) -> Result<(StageMemory, Vec<Program>), PlanError> {
    let e = fail(2);
    let c = Component::Transformer;
    let shape = model.latent_shape(&r.video);
    let batch = if r.cfg { 2 } else { 1 };
    // Stage 2 sizes the transformer from stage 1's embeddings; they are `text_len` tokens.
    let sizes = model.sizes(c, &r.video, batch, r.text_len as i64);
    let graph = model.graphs(c, &sizes, r.dtype).map_err(|x| e(x.to_string()))?.remove(0).graph;
    let scores = dense_scores(r.pipeline, model, c, &graph);
    let (exe, program) = compiled(model, client, cache, r.pipeline, c, c.name(), graph).map_err(&e)?;
    let latents = shape.iter().product::<i64>().max(0) as u64 * 4;
    let mut host = vec![
        (format!("{} checkpoint (mapped)", c.name()), mapped_files(model, c).map_err(&e)?),
        // Stage 1's embeddings as read, and the batched, converted conditioning inputs.
        ("transformer inputs (embeddings and the batched copy)".to_string(), 2 * exe.inputs),
        ("transformer output on the host".to_string(), exe.outputs),
        // The latents, a step's f32 copy of its output and the guided prediction, the
        // scheduler's history (multistep solvers keep a few), the next latents.
        ("latents and scheduler state (8 x f32 latents)".to_string(), 8 * latents),
    ];
    host.extend(scores);
    let mut remedies = Vec::new();
    if r.dtype == DType::F32 {
        remedies.push("--dtype bf16".to_string());
    }
    if r.pipeline.attention == AttentionLowering::Dense {
        remedies.push("--attention blockwise".into());
    }
    if !unified && r.pipeline.sharding.is_none() {
        remedies.push("--mesh (shards the transformer's weights and attention)".into());
    }
    remedies.push("fewer --frames or a smaller --height/--width".into());
    Ok((StageMemory { stage: 2, executables: vec![exe], host, remedies }, vec![program]))
}

fn stage3(model: &OpenedModel, client: &Client, cache: Option<&ExecutableCache>, r: &PlanRequest) -> Result<(StageMemory, Vec<Program>), PlanError> {
    let e = fail(3);
    let c = Component::VaeDecoder;
    let s = model.sizes(c, &r.video, 1, 0);
    let graphs = model.vae_decoder().map_err(|x| e(x.to_string()))?;
    let shape = VaeDecodeShape { batch: 1, height: s.latent_height, width: s.latent_width };
    let (plan, steps) = step_graphs(graphs.as_ref(), shape, s.latent_frames, r.decode).map_err(|x| e(x.to_string()))?;
    // The VAE runs on one device, its weights replicated (see `VaeDecodeSettings::pipeline`).
    let options = PipelineOptions { sharding: None, ..r.decode.pipeline.clone() };
    let (mut executables, mut loaded) = (Vec::new(), Vec::new());
    for (key, graph) in steps {
        let what = if plan.is_some() { format!("{} of a {}x{} tile", key.label(), key.hw.0, key.hw.1) } else { key.label() };
        let label = format!("vae_decoder ({what})");
        let passes = options.pipeline_for(None);
        let (program, _) = compile_component("vae_decoder", graph, passes, sharding_format(&options), client, cache).map_err(|x| e(x.to_string()))?;
        executables.push(ExecutableMemory::of(&label, &program));
        loaded.push(program);
    }
    let ratio = graphs.spatial_scale();
    let frames = graphs.decoded_frames(s.latent_frames) as u64;
    let (h, w) = ((s.latent_height * ratio) as u64, (s.latent_width * ratio) as u64);
    let video = 3 * frames * h * w * 4;
    let z = (graphs.latent_channels() * s.latent_frames * s.latent_height * s.latent_width) as u64 * 4;
    let mut host = vec![
        (format!("{} checkpoint (mapped)", c.folder()), mapped_files(model, c).map_err(&e)?),
        ("latents".to_string(), z),
        // The steps' samples while they are joined, the joined video, its channels-last copy.
        ("decoded frames (3 x f32 video)".to_string(), 3 * video),
        ("frames as bytes for the encoder".to_string(), video / 4),
    ];
    if r.save_frames {
        host.push(("frames file (f32)".to_string(), video));
    }
    let mut remedies = Vec::new();
    match &r.decode.tiling {
        None => remedies.push("--vae-tiling".to_string()),
        Some(_) => remedies.push("smaller --tile-sample-min-height/--tile-sample-min-width".to_string()),
    }
    if r.decode.dtype == DType::F32 {
        remedies.push("--vae-dtype bf16".into());
    }
    remedies.push("fewer --frames".into());
    Ok((StageMemory { stage: 3, executables, host, remedies }, loaded))
}
