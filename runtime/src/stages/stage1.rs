//! Stage 1: prompt (+ negative prompt) -> `stage1_embeddings.safetensors` (`prompt_embeds`,
//! `negative_prompt_embeds`, what diffusers' `encode_prompt` returns, stored in their own dtype)
//! and `generation_config.json`.

use super::model::WanModel;
use super::text_encode::TextEncoder;
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use crate::tensor::HostTensor;
use std::path::Path;
use vidlower_ir::DType;
use vidlower_passes::pipeline_options::PipelineOptions;

pub const EMBEDDINGS_FILE: &str = "stage1_embeddings.safetensors";

/// What stage 1 encodes, and how.
pub struct Stage1Settings<'a> {
    pub prompt: &'a str,
    pub negative_prompt: &'a str,
    pub max_sequence_length: usize,
    pub dtype: DType,
    pub pipeline: &'a PipelineOptions,
}

/// Encodes the prompt and the negative prompt (batched as one call); returns (prompt_embeds,
/// negative_prompt_embeds), each [1, max_sequence_length, d_model], and a timing summary.
pub fn run_stage1(
    model: &WanModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    s: &Stage1Settings,
) -> Result<(HostTensor, HostTensor, String), Box<dyn std::error::Error + Send + Sync>> {
    let (max_sequence_length, dtype, pipeline) = (s.max_sequence_length, s.dtype, s.pipeline);
    let encoder = TextEncoder::open(
        &model.component_dir("tokenizer"),
        &model.component_dir("text_encoder"),
        &model.text_encoder,
        client,
        cache,
        2,
        max_sequence_length,
        dtype,
        pipeline,
    )?;
    let start = std::time::Instant::now();
    let embeds = encoder.encode_prompts(&[s.prompt, s.negative_prompt], max_sequence_length)?;
    let run = start.elapsed();
    let (p, n) = split_batch(&embeds);
    Ok((p, n, format!("text encoder: {}; encoded in {}", encoder.times().describe(), crate::timing::format_duration(run))))
}

/// Writes the embeddings file atomically.
pub fn save_embeddings(dir: &Path, prompt: &HostTensor, negative: &HostTensor) -> Result<(), crate::safetensors_io::SafetensorsError> {
    crate::safetensors_io::save(
        &dir.join(EMBEDDINGS_FILE),
        &[("prompt_embeds".into(), prompt.clone()), ("negative_prompt_embeds".into(), negative.clone())],
    )
}

/// Reads the embeddings file; errors name the file and the missing key.
pub fn load_embeddings(dir: &Path) -> Result<(HostTensor, HostTensor), String> {
    let path = dir.join(EMBEDDINGS_FILE);
    let mut f = crate::safetensors_io::load(&path).map_err(|e| format!("{e} (run stage 1 first, or point --input-dir at its output)"))?;
    let mut take = |k: &str| f.remove(k).ok_or_else(|| format!("{}: no tensor named `{k}`", path.display()));
    Ok((take("prompt_embeds")?, take("negative_prompt_embeds")?))
}

/// [2, ...] -> two [1, ...].
fn split_batch(t: &HostTensor) -> (HostTensor, HostTensor) {
    let half = t.data.len() / 2;
    let mut dims = t.dims.clone();
    dims[0] = 1;
    (
        HostTensor { dtype: t.dtype, dims: dims.clone(), data: t.data[..half].to_vec() },
        HostTensor { dtype: t.dtype, dims, data: t.data[half..].to_vec() },
    )
}
