//! Stage 1: prompt (+ negative prompt) -> `stage1_embeddings.safetensors` (the tensors the
//! family's `encode_prompt` returns, under diffusers' names, stored in their own dtype) and
//! `generation_config.json`.

use super::model::OpenedModel;
use super::runner::StageRunner;
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use std::path::Path;
use vidlower_frontends::family::{Embeddings, PromptRequest};
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

/// Encodes the prompt and the negative prompt; returns the embeddings and a timing summary.
pub fn run_stage1(
    model: &OpenedModel,
    client: &Client,
    cache: Option<&ExecutableCache>,
    s: &Stage1Settings,
) -> Result<(Embeddings, String), Box<dyn std::error::Error + Send + Sync>> {
    let mut runner = StageRunner::new(model.model.as_ref(), client, cache, s.pipeline);
    let request = PromptRequest {
        prompt: s.prompt,
        negative_prompt: s.negative_prompt,
        max_sequence_length: s.max_sequence_length,
        dtype: s.dtype,
    };
    let embeddings = model.encode_prompts(&request, &mut runner)?;
    let summary = format!("{}; encoded in {}", runner.describe(), crate::timing::format_duration(runner.run_time));
    Ok((embeddings, summary))
}

/// A note when `text` is longer than the `max_sequence_length` tokens the text encoder takes
/// (counted with the model's `tokenizer/`, special tokens included): diffusers truncates such a
/// prompt silently; vidlower truncates it the same way and says so. None when it fits or the
/// model has no `tokenizer/tokenizer.json` to count with.
pub fn truncation_note(model_dir: &Path, flag: &str, text: &str, max_sequence_length: usize) -> Option<String> {
    let tokenizer = vidlower_frontends::nn::tokenizer::Tokenizer::from_dir(&model_dir.join("tokenizer")).ok()?;
    let tokens = tokenizer.count(text).ok()?;
    (tokens > max_sequence_length).then(|| {
        format!("{flag} is {tokens} tokens, more than the {max_sequence_length} the text encoder takes (--max-sequence-length): the first {max_sequence_length} are used, as diffusers does")
    })
}

/// The header key that records which family's stage 1 wrote the embeddings.
const FAMILY_KEY: &str = "vidlower.family";

/// Writes the embeddings file atomically, recording `family` (the family's name) in its header.
pub fn save_embeddings(dir: &Path, embeddings: &Embeddings, family: &str) -> Result<(), crate::safetensors_io::SafetensorsError> {
    let tensors: Vec<_> = embeddings.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let metadata = [(FAMILY_KEY.to_string(), family.to_string())].into();
    crate::safetensors_io::save_with_metadata(&dir.join(EMBEDDINGS_FILE), &tensors, &metadata)
}

/// Reads the embeddings file: the tensors `names`, written for `family` (files from before
/// the family was recorded are taken as they are); errors name the file and what is wrong.
pub fn load_embeddings(dir: &Path, names: &[&str], family: &str) -> Result<Embeddings, String> {
    let path = dir.join(EMBEDDINGS_FILE);
    let (mut f, metadata) = crate::safetensors_io::load_with_metadata(&path)
        .map_err(|e| format!("{e} (run stage 1 first, or point --input-dir at its output)"))?;
    if let Some(written) = metadata.get(FAMILY_KEY).filter(|w| w.as_str() != family) {
        return Err(format!(
            "{}: written by stage 1 of a {written} model, but this is a {family} model (run stage 1 with this model, or name stage 1's model)",
            path.display()
        ));
    }
    names
        .iter()
        .map(|&k| {
            let t = f.remove(k).ok_or_else(|| format!("{}: no tensor named `{k}` (written for another model?)", path.display()))?;
            Ok((k.to_string(), t))
        })
        .collect()
}
