//! A prompt tokenizer called as the diffusers pipelines call transformers' tokenizers:
//! `tokenizer(texts, padding="max_length", max_length=L, truncation=True, add_special_tokens=True,
//! return_attention_mask=True)`. The model itself is a `tokenizers::Tokenizer`, read from a
//! `tokenizer.json` or built from a SentencePiece model (see [`super::sentencepiece`]); the
//! settings transformers keeps in `tokenizer_config.json` (pad token, padding and truncation
//! sides) come from [`TokenizerConfig`].

use std::path::{Path, PathBuf};
use tokenizers::{Encoding, PaddingDirection, PostProcessor, TruncationDirection};

/// A tokenizer file that could not be read or used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: the pad token `{token}` is not in the vocabulary", path.display())]
    MissingPad { path: PathBuf, token: String },
    #[error("{}: max_length {max_length} leaves no room for the {special} special token(s) the tokenizer adds", path.display())]
    TooShort { path: PathBuf, max_length: usize, special: usize },
    #[error("{}: encoding {text:?}: {message}", path.display())]
    Encode { path: PathBuf, text: String, message: String },
}

/// Token ids and attention masks, one row of `max_length` per text (1 = real token, 0 = pad).
pub type Batch = (Vec<Vec<i64>>, Vec<Vec<i64>>);

/// What transformers reads from `tokenizer_config.json` and we use: the special tokens (a
/// string or an `AddedToken` object `{"content": ...}` there), the padding and truncation
/// sides, and T5's `extra_ids`.
#[derive(Clone, Debug, Default)]
pub struct TokenizerConfig {
    /// The file it came from (None: transformers' defaults).
    pub path: Option<PathBuf>,
    json: serde_json::Value,
}

impl TokenizerConfig {
    /// `dir/tokenizer_config.json` when it is there, else the defaults.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join("tokenizer_config.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let err = |message: String| TokenizerError::Config { path: path.clone(), message };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
        if !json.is_object() {
            return Err(err("expected a JSON object".into()));
        }
        Ok(TokenizerConfig { path: Some(path), json })
    }

    /// A special token by key (`pad_token`, `eos_token`, `unk_token`, ...).
    pub fn token(&self, key: &str) -> Option<String> {
        token_text(self.json.get(key)?)
    }

    /// The tokens listed under `key` (`additional_special_tokens`, `extra_special_tokens`).
    pub fn token_list(&self, key: &str) -> Vec<String> {
        match self.json.get(key) {
            Some(serde_json::Value::Array(v)) => v.iter().filter_map(token_text).collect(),
            // transformers 5 may write named extra tokens as {"name": token}.
            Some(serde_json::Value::Object(m)) => m.values().filter_map(token_text).collect(),
            _ => Vec::new(),
        }
    }

    /// This config with `key` set to `token`: a class default the file did not give.
    pub fn with_token(mut self, key: &str, token: &str) -> Self {
        if !self.json.is_object() {
            self.json = serde_json::Value::Object(Default::default());
        }
        self.json[key] = token.into();
        self
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.json.get(key)?.as_i64()
    }

    fn left(&self, key: &str) -> bool {
        self.json.get(key).and_then(|v| v.as_str()) == Some("left")
    }
}

fn token_text(v: &serde_json::Value) -> Option<String> {
    v.as_str().or_else(|| v.get("content").and_then(|c| c.as_str())).map(str::to_string)
}

/// A `tokenizers::Tokenizer` with the padding and truncation settings transformers applies.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    pad_id: u32,
    pad_token: String,
    pad_left: bool,
    truncate_left: bool,
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`, with the pad token and padding/truncation sides from
    /// `dir/tokenizer_config.json` when it is there (transformers' defaults otherwise:
    /// `<pad>`, right, right).
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let config = TokenizerConfig::from_dir(dir)?;
        Self::from_json_file(&dir.join("tokenizer.json"), &config)
    }

    /// Loads a `tokenizer.json` alone, with transformers' default pad token `<pad>` and
    /// right-side padding and truncation.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        Self::from_json_file(path, &TokenizerConfig::default())
    }

    /// Loads a `tokenizer.json` with the settings of `config`.
    pub fn from_json_file(path: &Path, config: &TokenizerConfig) -> Result<Self, TokenizerError> {
        if !path.is_file() {
            return Err(TokenizerError::Load { path: path.into(), message: "no such file (a tokenizer.json is needed)".into() });
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Load { path: path.into(), message: format!("not a usable tokenizer.json: {e}") })?;
        Self::from_parts(inner, path, config)
    }

    /// A tokenizer built elsewhere (`path` names its source in errors), with the settings of
    /// `config`. A padding or truncation set on `inner` is dropped: transformers decides both
    /// per call, and so does [`Tokenizer::encode`].
    pub fn from_parts(mut inner: tokenizers::Tokenizer, path: &Path, config: &TokenizerConfig) -> Result<Self, TokenizerError> {
        let file_pad = inner.get_padding().map(|p| p.pad_token.clone());
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::Load { path: path.into(), message: e.to_string() })?;
        let pad_token = config.token("pad_token").or(file_pad).unwrap_or_else(|| "<pad>".into());
        let pad_id = inner
            .token_to_id(&pad_token)
            .ok_or_else(|| TokenizerError::MissingPad { path: path.into(), token: pad_token.clone() })?;
        Ok(Tokenizer {
            inner,
            path: path.into(),
            pad_id,
            pad_token,
            pad_left: config.left("padding_side"),
            truncate_left: config.left("truncation_side"),
        })
    }

    /// The file this tokenizer came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The `tokenizers` model, normaliser and pre-/post-processors.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Each text tokenized with special tokens, truncated to `max_length` (the special tokens
    /// kept) and padded to it: transformers' `padding="max_length", truncation=True`.
    pub fn encode(&self, texts: &[&str], max_length: usize) -> Result<Batch, TokenizerError> {
        let special = self.inner.get_post_processor().map_or(0, |p| p.added_tokens(false));
        if max_length < special {
            return Err(TokenizerError::TooShort { path: self.path.clone(), max_length, special });
        }
        let (mut ids, mut masks) = (Vec::with_capacity(texts.len()), Vec::with_capacity(texts.len()));
        for &text in texts {
            let e = self.encode_one(text, max_length, special).map_err(|e| TokenizerError::Encode {
                path: self.path.clone(),
                text: text.into(),
                message: e.to_string(),
            })?;
            ids.push(e.get_ids().iter().map(|&i| i as i64).collect());
            masks.push(e.get_attention_mask().iter().map(|&m| m as i64).collect());
        }
        Ok((ids, masks))
    }

    /// How many tokens `text` takes, special tokens included, before any truncation (to say
    /// when a prompt is truncated).
    pub fn count(&self, text: &str) -> Result<usize, TokenizerError> {
        let special = self.inner.get_post_processor().map_or(0, |p| p.added_tokens(false));
        let e = self.inner.encode(text, false).map_err(|e| TokenizerError::Encode {
            path: self.path.clone(),
            text: text.into(),
            message: e.to_string(),
        })?;
        Ok(e.len() + special)
    }

    /// What the tokenizers library does for one sequence with LongestFirst truncation and
    /// fixed-length padding: truncate to leave room for the special tokens, add them, pad.
    fn encode_one(&self, text: &str, max_length: usize, special: usize) -> tokenizers::Result<Encoding> {
        let mut e = self.inner.encode(text, false)?;
        let direction = if self.truncate_left { TruncationDirection::Left } else { TruncationDirection::Right };
        if e.len() > max_length - special {
            e.truncate(max_length - special, 0, direction);
        }
        let mut e = self.inner.post_process(e, None, true)?;
        let direction = if self.pad_left { PaddingDirection::Left } else { PaddingDirection::Right };
        e.pad(max_length, self.pad_id, 0, &self.pad_token, direction);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_it() {
        let e = Tokenizer::from_dir(Path::new("/nonexistent/tok")).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/tok/tokenizer.json"), "{e}");
    }

    #[test]
    fn config_reads_strings_and_added_token_objects() {
        let dir = std::env::temp_dir().join(format!("vidlower-tokcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"pad_token": {"content": "<pad>", "__type": "AddedToken"}, "eos_token": "</s>",
                "additional_special_tokens": ["<a>", {"content": "<b>"}], "extra_ids": 3, "padding_side": "left"}"#,
        )
        .unwrap();
        let c = TokenizerConfig::from_dir(&dir).unwrap();
        assert_eq!((c.token("pad_token"), c.token("eos_token"), c.token("unk_token")), (Some("<pad>".into()), Some("</s>".into()), None));
        assert_eq!(c.token_list("additional_special_tokens"), ["<a>", "<b>"]);
        assert_eq!((c.int("extra_ids"), c.left("padding_side"), c.left("truncation_side")), (Some(3), true, false));
        std::fs::write(dir.join("tokenizer_config.json"), "[1, 2").unwrap();
        let e = TokenizerConfig::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("tokenizer_config.json") && e.contains("not JSON"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
