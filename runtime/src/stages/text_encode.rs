//! Prompts -> `prompt_embeds`, as diffusers' `WanPipeline._get_t5_prompt_embeds` computes them:
//! `prompt_clean`, the UMT5 tokenizer padded and truncated to `max_sequence_length`, the UMT5
//! encoder, then each row cut to its real tokens and zero-padded back to the full length.

use super::compiled::{prepare, ComponentError, ComponentTimes};
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use crate::program::{Program, ProgramError};
use crate::tensor::{HostTensor, TensorError};
use crate::weights::{WeightStore, WeightsError};
use std::collections::HashMap;
use std::path::Path;
use vidlower_frontends::wan::config::Umt5Config;
use vidlower_frontends::wan::text_encoder::{umt5_encoder, weight_aliases};
use vidlower_frontends::wan::tokenizer::{prompt_clean, Tokenizer, TokenizerError};
use vidlower_ir::{DType, Graph, Op};
use vidlower_passes::pipeline_options::PipelineOptions;

#[derive(Debug, thiserror::Error)]
pub enum TextEncodeError {
    #[error("text encoder: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Component(Box<ComponentError>),
    #[error("text encoder: {0}")]
    Weights(#[from] WeightsError),
    #[error("text encoder: {0}")]
    Program(#[from] ProgramError),
    #[error("text encoder: {0}")]
    Tensor(#[from] TensorError),
    #[error("text encoder: compiled for max_sequence_length {compiled}, asked for {asked}")]
    Length { compiled: usize, asked: usize },
    #[error("text encoder: the program returned {got}, expected last_hidden_state {expected}")]
    Output { got: String, expected: String },
}

impl From<ComponentError> for TextEncodeError {
    fn from(e: ComponentError) -> Self {
        TextEncodeError::Component(Box::new(e))
    }
}

/// The tokenizer and the compiled UMT5 encoder, its weights on the device.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    program: Program,
    batch: usize,
    max_sequence_length: usize,
    times: ComponentTimes,
}

impl TextEncoder {
    /// A diffusers `tokenizer/` directory and `text_encoder/` directory (config `cfg`), compiled
    /// for `batch` prompts of `max_sequence_length` tokens in `dtype` (the dtype the pipeline
    /// loads the encoder in).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        tokenizer_dir: &Path,
        text_encoder_dir: &Path,
        cfg: &Umt5Config,
        client: &Client,
        cache: Option<&ExecutableCache>,
        batch: usize,
        max_sequence_length: usize,
        dtype: DType,
        pipeline: &PipelineOptions,
    ) -> Result<Self, TextEncodeError> {
        let weights = WeightStore::open(text_encoder_dir)?;
        let tokenizer = Tokenizer::from_dir(tokenizer_dir)?;
        Self::from_parts(tokenizer, cfg, &weights, client, cache, batch, max_sequence_length, dtype, pipeline)
    }

    #[allow(clippy::too_many_arguments)]
    fn from_parts(
        tokenizer: Tokenizer,
        cfg: &Umt5Config,
        weights: &WeightStore,
        client: &Client,
        cache: Option<&ExecutableCache>,
        batch: usize,
        max_sequence_length: usize,
        dtype: DType,
        pipeline: &PipelineOptions,
    ) -> Result<Self, TextEncodeError> {
        let component = "text_encoder";
        let mut graph = umt5_encoder(cfg, batch as i64, max_sequence_length as i64, dtype)
            .map_err(|source| ComponentError::Graph { component: component.into(), source })?;
        use_stored_names(&mut graph, weights);
        let (program, times) = prepare(component, graph, pipeline, client, cache, weights)?;
        Ok(TextEncoder { tokenizer, program, batch, max_sequence_length, times })
    }

    /// How long passes, compile (or cache load) and the weight upload took.
    pub fn times(&self) -> &ComponentTimes {
        &self.times
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// `prompt_embeds` [prompts.len(), max_sequence_length, d_model] in the encoder's dtype:
    /// the encoder's output for each prompt's real tokens, zeros after them. Any number of
    /// prompts: they run in batches of the compiled size, the last one filled with empty prompts.
    pub fn encode_prompts(&self, prompts: &[&str], max_sequence_length: usize) -> Result<HostTensor, TextEncodeError> {
        if max_sequence_length != self.max_sequence_length {
            return Err(TextEncodeError::Length { compiled: self.max_sequence_length, asked: max_sequence_length });
        }
        let cleaned: Vec<String> = prompts.iter().map(|p| prompt_clean(p)).collect();
        let mut out: Option<HostTensor> = None;
        for chunk in cleaned.chunks(self.batch.max(1)) {
            let mut texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
            texts.resize(self.batch, "");
            let embeds = self.run_batch(&texts)?;
            let keep = chunk.len() * embeds.data.len() / self.batch;
            out = Some(match out {
                None => HostTensor { dtype: embeds.dtype, dims: embeds.dims.clone(), data: embeds.data[..keep].to_vec() },
                Some(mut acc) => {
                    acc.data.extend_from_slice(&embeds.data[..keep]);
                    acc
                }
            });
        }
        let mut out = match out {
            Some(t) => t,
            None => return Ok(HostTensor::zeros(self.output_dtype(), [0, max_sequence_length as i64, self.d_model()])?),
        };
        out.dims[0] = prompts.len() as i64;
        out.validate()?;
        Ok(out)
    }

    /// One compiled batch: tokenize, run, zero each row after its real tokens.
    fn run_batch(&self, texts: &[&str]) -> Result<HostTensor, TextEncodeError> {
        let (l, b) = (self.max_sequence_length, self.batch);
        let (ids, mask) = self.tokenizer.encode(texts, l)?;
        let seq_lens: Vec<usize> = mask.iter().map(|row| row.iter().filter(|&&m| m > 0).count()).collect();
        let flat = |rows: Vec<Vec<i64>>| rows.into_iter().flatten().collect::<Vec<i64>>();
        let inputs = HashMap::from([
            ("input_ids".to_string(), HostTensor::from_slice([b as i64, l as i64], &flat(ids))?),
            ("attention_mask".to_string(), HostTensor::from_slice([b as i64, l as i64], &flat(mask))?),
        ]);
        let mut outs = self.program.run(&inputs)?;
        let (_, mut hidden) = outs.pop().filter(|(name, _)| name == "last_hidden_state").ok_or_else(|| TextEncodeError::Output {
            got: format!("{} output(s)", self.program.signature.results.len()),
            expected: format!("[{b}, {l}, d_model]"),
        })?;
        if hidden.dims.len() != 3 || hidden.dims[..2] != [b as i64, l as i64] {
            return Err(TextEncodeError::Output { got: format!("{:?}", hidden.dims), expected: format!("[{b}, {l}, d_model]") });
        }
        // `prompt_embeds[i][:seq_len]` then `new_zeros` up to max_sequence_length: all-zero bytes
        // are +0.0 in every float dtype.
        let row = hidden.dims[2] as usize * hidden.dtype.size_in_bytes();
        for (i, &n) in seq_lens.iter().enumerate() {
            hidden.data[(i * l + n) * row..(i + 1) * l * row].fill(0);
        }
        Ok(hidden)
    }

    fn output_dtype(&self) -> DType {
        self.program.signature.results.first().map_or(DType::F32, |(_, t)| t.dtype)
    }

    fn d_model(&self) -> i64 {
        self.program.signature.results.first().map_or(0, |(_, t)| t.shape[2])
    }
}

/// Renames graph weights a checkpoint stores under a tied alias (`encoder.embed_tokens.weight`
/// for `shared.weight`), so they load by the name the file has.
pub fn use_stored_names(graph: &mut Graph, weights: &WeightStore) {
    let inputs = graph.inputs.clone();
    for v in inputs {
        if let Op::Weight { name } = &mut graph.nodes[v.index()].op {
            if !weights.contains(name) {
                if let Some(alias) = weight_aliases(name).iter().find(|a| weights.contains(a)) {
                    *name = alias.to_string();
                }
            }
        }
    }
}
