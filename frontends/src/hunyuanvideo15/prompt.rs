//! HunyuanVideo-1.5's prompt handling (diffusers `pipeline_hunyuan_video1_5.py`): what each of the
//! two text encoders is fed for one prompt.
//!
//! - Qwen2.5-VL ([`mllm_tokens`], `_get_mllm_prompt_embeds`): the prompt as the user turn of a
//!   chat with the pipeline's [`SYSTEM_MESSAGE`] (`format_text_input`: an empty prompt becomes
//!   " "), rendered by the tokenizer's chat template with the generation prompt, padded and
//!   truncated to `tokenizer_max_length + crop_start` (1000 + 108). The encoder's
//!   `hidden_states[-3]` and the mask are then cropped to `[:, crop_start:]` ([`MllmLengths`]).
//! - ByT5 ([`byt5_tokens`], `_get_byt5_prompt_embeds`): the quoted texts of the prompt
//!   ([`extract_glyph_texts`]) as `Text "..". ` sentences, byte-tokenized to 256; with no quoted
//!   text the pipeline skips the encoder and uses zero embeddings and a zero mask.
//!
//! A family's `encode_prompt` is then, per prompt: `mllm_tokens` -> Qwen graph
//! ([`crate::nn::qwen2_5_vl_text::text_encoder_with`] with `hidden_states_index` -3 and
//! `crop_start`) -> (prompt_embeds, mask[crop_start..]); `byt5_tokens` -> `Some`: T5 graph
//! (`crate::nn::t5_encoder`, ByT5 config, with mask) -> (prompt_embeds_2, mask_2), `None`: zeros
//! [256, d_model] and a zero mask. The pipeline returns both masks in the text encoder's dtype.

use crate::nn::byt5_tokenizer;
use crate::nn::chat_template::ChatMessage;
use crate::nn::qwen2_tokenizer::Qwen2Tokenizer;
use crate::nn::tokenizer::TokenizerError;
use std::sync::OnceLock;

/// `HunyuanVideo15Pipeline.system_message`, as the Python literal with backslash continuations
/// makes it: each continuation keeps the next line's 8 spaces of indentation, so the numbered
/// points are separated by 9 spaces.
pub const SYSTEM_MESSAGE: &str = "You are a helpful assistant. Describe the video by detailing the following aspects:         \
1. The main content and theme of the video.         \
2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects.         \
3. Actions, events, behaviors temporal relationships, physical movement changes of the objects.         \
4. background environment, light, style and atmosphere.         \
5. camera angles, movements, and transitions used in the video.";

/// `tokenizer_max_length` (the Qwen tokens kept after the crop).
pub const TOKENIZER_MAX_LENGTH: usize = 1000;
/// `prompt_template_encode_start_idx`: the leading positions (the system turn) dropped.
pub const PROMPT_TEMPLATE_ENCODE_START_IDX: usize = 108;
/// `tokenizer_2_max_length`: ByT5's length.
pub const TOKENIZER_2_MAX_LENGTH: usize = 256;
/// `num_hidden_layers_to_skip` + 1 from the end: the Qwen hidden state used.
pub const HIDDEN_STATES_INDEX: i64 = -3;

/// One prompt's token ids and attention mask (1 = real token), of equal length.
pub type Tokens = (Vec<i64>, Vec<i64>);

/// The Qwen side's lengths: tokenized to `max_length + crop_start`, the first `crop_start`
/// positions of the embeddings and the mask dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MllmLengths {
    pub max_length: usize,
    pub crop_start: usize,
}

impl Default for MllmLengths {
    /// The pipeline's: 1000 + 108.
    fn default() -> Self {
        MllmLengths { max_length: TOKENIZER_MAX_LENGTH, crop_start: PROMPT_TEMPLATE_ENCODE_START_IDX }
    }
}

impl MllmLengths {
    /// The tokenized (and encoded) length, `max_length + crop_start`.
    pub fn tokenized(&self) -> usize {
        self.max_length + self.crop_start
    }
}

/// `format_text_input([prompt], system_message)[0]`: the system turn and the user turn, an empty
/// prompt replaced by " ".
pub fn format_text_input(prompt: &str, system_message: &str) -> Vec<ChatMessage> {
    let content = if prompt.is_empty() { " " } else { prompt };
    vec![ChatMessage::new("system", system_message), ChatMessage::new("user", content)]
}

/// The Qwen input for one prompt: `input_ids` and `attention_mask`, each
/// `lengths.tokenized()` long (uncropped: the encoder sees the whole chat; crop its output and
/// this mask by `lengths.crop_start`).
pub fn mllm_tokens(tokenizer: &Qwen2Tokenizer, prompt: &str, lengths: MllmLengths) -> Result<Tokens, TokenizerError> {
    let chat = format_text_input(prompt, SYSTEM_MESSAGE);
    let (mut ids, mut masks) = tokenizer.encode_chats(&[chat], true, lengths.tokenized())?;
    Ok((ids.remove(0), masks.remove(0)))
}

/// `extract_glyph_texts(prompt)`: the texts between `"..."` or `“...”` (regex
/// `"(.*?)"|“(.*?)”`, leftmost first, not across a newline), de-duplicated in first-seen order
/// when there is more than one, each written `Text "{t}"` and joined by ". " with a final ". ";
/// None when the prompt quotes nothing.
pub fn extract_glyph_texts(prompt: &str) -> Option<String> {
    static PATTERN: OnceLock<regex::Regex> = OnceLock::new();
    let re = PATTERN.get_or_init(|| regex::Regex::new(r#""(.*?)"|“(.*?)”"#).expect("a valid regex"));
    let mut found: Vec<&str> = re
        .captures_iter(prompt)
        .map(|c| {
            // `match[0] or match[1]`: the first group when it is non-empty.
            let first = c.get(1).map_or("", |m| m.as_str());
            if first.is_empty() {
                c.get(2).map_or("", |m| m.as_str())
            } else {
                first
            }
        })
        .collect();
    if found.len() > 1 {
        let mut seen = std::collections::HashSet::new();
        found.retain(|t| seen.insert(*t));
    }
    if found.is_empty() {
        return None;
    }
    let sentences: Vec<String> = found.iter().map(|t| format!("Text \"{t}\"")).collect();
    Some(sentences.join(". ") + ". ")
}

/// The ByT5 input for one prompt: `Some((input_ids, attention_mask))`, each `max_length` (256)
/// long, when the prompt has glyph text; `None` when it has none (then the pipeline's
/// `prompt_embeds_2` is zeros [max_length, d_model] and its mask zeros).
pub fn byt5_tokens(prompt: &str, max_length: usize) -> Result<Option<Tokens>, byt5_tokenizer::MaxLengthError> {
    extract_glyph_texts(prompt).map(|glyph| byt5_tokenizer::encode(&glyph, max_length)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyph_texts_as_the_pipeline() {
        assert_eq!(extract_glyph_texts("no quotes"), None);
        assert_eq!(extract_glyph_texts(""), None);
        assert_eq!(extract_glyph_texts("a \"sign\""), Some("Text \"sign\". ".into()));
        assert_eq!(extract_glyph_texts("“a” \"b\" “a”"), Some("Text \"a\". Text \"b\". ".into()));
        // An empty first group falls through to the (empty) second: "".
        assert_eq!(extract_glyph_texts("\"\" and \"x\""), Some("Text \"\". Text \"x\". ".into()));
        // `.` does not cross a newline: the first pair fails, the quote after "b" opens the next.
        assert_eq!(extract_glyph_texts("\"a\nb\" \"c\""), Some("Text \" \". ".into()));
    }

    #[test]
    fn system_message_is_the_pipelines() {
        assert!(SYSTEM_MESSAGE.contains("aspects:         1. The main"));
        assert!(SYSTEM_MESSAGE.ends_with("used in the video."));
        assert_eq!(format_text_input("", "s")[1].content, " ");
        assert_eq!(MllmLengths::default().tokenized(), 1108);
    }

    #[test]
    fn byt5_tokens_only_with_glyph_text() {
        assert_eq!(byt5_tokens("a cat", 256).unwrap(), None);
        let (ids, mask) = byt5_tokens("a \"hi\"", 16).unwrap().unwrap();
        // `Text "hi". ` + </s>
        assert_eq!(mask.iter().sum::<i64>(), 12);
        assert_eq!(&ids[..4], &[87, 104, 123, 119]);
    }
}
