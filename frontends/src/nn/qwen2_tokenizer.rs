//! transformers' `Qwen2Tokenizer` (a byte-level BPE `tokenizer.json`) with its chat template, called
//! as `tokenizer.apply_chat_template(conversations, add_generation_prompt=..., tokenize=True,
//! padding="max_length", max_length=L, truncation=True)`: each conversation rendered by the
//! template, then tokenized without adding special tokens (the template writes `<|im_start|>`
//! and `<|im_end|>` itself; special-token strings in a user's text are special tokens too, as
//! transformers' default `sanitize_control_tokens=False` leaves them), truncated on the right
//! and padded with `<|endoftext|>` to L (the sides `tokenizer_config.json` names; right by default).

use super::chat_template::{ChatMessage, ChatTemplate};
use super::tokenizer::{Batch, Tokenizer, TokenizerConfig, TokenizerError};
use std::path::Path;

/// A Qwen2 tokenizer folder: `tokenizer.json`, `tokenizer_config.json` and the chat template.
pub struct Qwen2Tokenizer {
    inner: Tokenizer,
    config: TokenizerConfig,
    template: ChatTemplate,
}

impl Qwen2Tokenizer {
    /// Loads `dir/tokenizer.json` (pad token `<|endoftext|>` unless `tokenizer_config.json`
    /// names another) and the folder's chat template (see [`ChatTemplate::from_dir`]).
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let mut config = TokenizerConfig::from_dir(dir)?;
        if config.token("pad_token").is_none() {
            // Qwen2Tokenizer's own default.
            config = config.with_token("pad_token", "<|endoftext|>");
        }
        let inner = Tokenizer::from_json_file(&dir.join("tokenizer.json"), &config)?;
        let template = ChatTemplate::from_dir(dir)?;
        Ok(Qwen2Tokenizer { inner, config, template })
    }

    /// `apply_chat_template(messages, add_generation_prompt=..., tokenize=False)`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TokenizerError> {
        self.template.render(messages, add_generation_prompt, &self.config)
    }

    /// Each conversation rendered (with the generation prompt when asked) and tokenized to
    /// exactly `max_length` ids and mask entries: see the module doc.
    pub fn encode_chats(&self, conversations: &[Vec<ChatMessage>], add_generation_prompt: bool, max_length: usize) -> Result<Batch, TokenizerError> {
        let texts = conversations.iter().map(|c| self.render(c, add_generation_prompt)).collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.inner.encode(&texts, max_length)
    }

    /// The padded tokenizer underneath (`tokenizer.json`).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    pub fn pad_id(&self) -> u32 {
        self.inner.pad_id()
    }

    /// The vocabulary size including the added tokens: the text model's `vocab_size` must be at
    /// least this.
    pub fn vocab_size(&self) -> usize {
        self.inner.inner().get_vocab_size(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_tokenizer_json_is_named() {
        let e = Qwen2Tokenizer::from_dir(Path::new("/nonexistent/qwen")).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/qwen/tokenizer.json"), "{e}");
    }
}
