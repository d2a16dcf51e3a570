//! CogVideoX's prompt tokenizer: the `tokenizer/` folder of a diffusers CogVideoX checkpoint
//! (T5's `spiece.model` and json configs; no `tokenizer.json` in the released repositories),
//! called as `CogVideoXPipeline._get_t5_prompt_embeds` calls it: `tokenizer(prompt,
//! padding="max_length", max_length=226, truncation=True, add_special_tokens=True)`.
//!
//! Unlike Wan, the pipeline does not clean the prompt, and it does not pass the attention mask
//! to the encoder (padding tokens are attended to); the mask is returned anyway.

use crate::nn::sentencepiece::SentencePieceModel;
use crate::nn::tokenizer::{Batch, Tokenizer, TokenizerConfig, TokenizerError};
use std::path::Path;

/// CogVideoX's `max_sequence_length` (the pipelines' default, and `tokenizer_config.json`'s
/// `model_max_length`).
pub const MAX_SEQUENCE_LENGTH: usize = 226;

/// transformers' `T5Tokenizer` from a `tokenizer/` folder.
pub struct T5Tokenizer {
    inner: Tokenizer,
}

impl T5Tokenizer {
    /// Loads `dir/tokenizer.json` when it is there (as transformers prefers it), else builds the
    /// tokenizer from `dir/spiece.model` as transformers converts it; `dir/tokenizer_config.json`
    /// (optional) gives the special tokens, `extra_ids` and the padding/truncation sides.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let config = TokenizerConfig::from_dir(dir)?;
        let json = dir.join("tokenizer.json");
        let inner = if json.is_file() {
            Tokenizer::from_json_file(&json, &config)?
        } else {
            let spiece = dir.join("spiece.model");
            if !spiece.is_file() {
                return Err(TokenizerError::Load {
                    path: spiece,
                    message: "no such file (a T5 tokenizer folder needs spiece.model or tokenizer.json)".into(),
                });
            }
            let model = SentencePieceModel::open(&spiece)?;
            Tokenizer::from_parts(model.t5_tokenizer(&config)?, &spiece, &config)?
        };
        Ok(T5Tokenizer { inner })
    }

    /// Token ids and attention masks, each row padded (and truncated) to `max_length` with
    /// `</s>` kept: what the pipeline feeds the encoder ([`MAX_SEQUENCE_LENGTH`] by default).
    pub fn encode(&self, texts: &[&str], max_length: usize) -> Result<Batch, TokenizerError> {
        self.inner.encode(texts, max_length)
    }

    /// The file the tokenizer came from (`tokenizer.json` or `spiece.model`).
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The vocabulary size including the added tokens (the sentinels): the encoder's
    /// `vocab_size` must be at least this.
    pub fn vocab_size(&self) -> usize {
        self.inner.inner().get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.inner.pad_id()
    }

    /// The shared padded tokenizer underneath.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_folder_names_spiece_model() {
        let e = T5Tokenizer::from_dir(Path::new("/nonexistent/tok")).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/tok/spiece.model") && e.contains("tokenizer.json"), "{e}");
    }
}
