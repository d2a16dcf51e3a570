//! SentencePiece `*.model` files (T5's `spiece.model`) and the T5 tokenizer transformers builds
//! from one.
//!
//! The file is a protobuf `ModelProto` (sentencepiece_model.proto). Only the messages and fields
//! used here are declared, by hand, with their proto2 tags and defaults (no protoc); prost skips
//! the rest.
//!
//! transformers 5.23 loads a T5 `tokenizer/` folder without `tokenizer.json` by converting the
//! proto (`TokenizersBackend._convert_from_sentencepiece`, `T5Converter.convert_from_spm`,
//! `T5Tokenizer.__init__`): a `tokenizers` Unigram model over the pieces with their scores, then
//! `extra_ids` sentinels `<extra_id_{N-1}>` .. `<extra_id_0>` appended (so `<extra_id_0>` is the
//! last id), unk id 2 and no byte fallback; the normalizer is the proto's precompiled charsmap
//! (`nmt_nfkc` for T5); pre-tokenizer WhitespaceSplit then Metaspace(`▁`, prepend always, split);
//! `</s>` appended by a template. That pipeline ignores `add_dummy_prefix` and
//! `remove_extra_whitespaces` (the pre-tokenizer always splits on whitespace and prefixes `▁`),
//! which is what SentencePiece does with T5's settings too; the goldens compare both.

use super::tokenizer::{TokenizerConfig, TokenizerError};
use std::path::{Path, PathBuf};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper};

/// `ModelProto`: the pieces and the specs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<SentencePiece>,
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

/// `ModelProto.SentencePiece`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SentencePiece {
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// `Type`: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6.
    #[prost(int32, optional, tag = "3", default = "1")]
    pub r#type: Option<i32>,
}

/// `SentencePiece.Type` values.
pub mod piece_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
}

/// `TrainerSpec`, the fields a tokenizer needs (ids and pieces of the special tokens).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainerSpec {
    /// `ModelType`: UNIGRAM 1, BPE 2, WORD 3, CHAR 4.
    #[prost(int32, optional, tag = "3", default = "1")]
    pub model_type: Option<i32>,
    #[prost(int32, optional, tag = "4", default = "8000")]
    pub vocab_size: Option<i32>,
    #[prost(bool, optional, tag = "35", default = "false")]
    pub byte_fallback: Option<bool>,
    #[prost(int32, optional, tag = "40", default = "0")]
    pub unk_id: Option<i32>,
    #[prost(int32, optional, tag = "41", default = "1")]
    pub bos_id: Option<i32>,
    #[prost(int32, optional, tag = "42", default = "2")]
    pub eos_id: Option<i32>,
    #[prost(int32, optional, tag = "43", default = "-1")]
    pub pad_id: Option<i32>,
}

/// `NormalizerSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NormalizerSpec {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    #[prost(bool, optional, tag = "3", default = "true")]
    pub add_dummy_prefix: Option<bool>,
    #[prost(bool, optional, tag = "4", default = "true")]
    pub remove_extra_whitespaces: Option<bool>,
    #[prost(bool, optional, tag = "5", default = "true")]
    pub escape_whitespaces: Option<bool>,
}

/// A SentencePiece model read from a file.
#[derive(Clone, Debug)]
pub struct SentencePieceModel {
    pub proto: ModelProto,
    pub path: PathBuf,
}

const UNIGRAM: i32 = 1;

impl SentencePieceModel {
    /// Reads and decodes `path` (a `*.model` file).
    pub fn open(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|e| load_err(path, format!("cannot read the SentencePiece model: {e}")))?;
        Self::from_bytes(&bytes, path)
    }

    /// Decodes a serialized `ModelProto`; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, TokenizerError> {
        let proto: ModelProto = prost::Message::decode(bytes)
            .map_err(|e| load_err(path, format!("not a SentencePiece ModelProto: {e}")))?;
        if proto.pieces.is_empty() {
            return Err(load_err(path, "the SentencePiece model has no pieces".into()));
        }
        Ok(SentencePieceModel { proto, path: path.into() })
    }

    pub fn trainer_spec(&self) -> TrainerSpec {
        self.proto.trainer_spec.clone().unwrap_or_default()
    }

    pub fn normalizer_spec(&self) -> NormalizerSpec {
        self.proto.normalizer_spec.clone().unwrap_or_default()
    }

    /// The precompiled normalization table, when the model has one.
    pub fn precompiled_charsmap(&self) -> Option<&[u8]> {
        self.proto.normalizer_spec.as_ref()?.precompiled_charsmap.as_deref().filter(|m| !m.is_empty())
    }

    /// (piece, score) in id order.
    pub fn vocab(&self) -> Vec<(String, f64)> {
        self.proto.pieces.iter().map(|p| (p.piece().to_string(), p.score() as f64)).collect()
    }

    /// transformers' `T5Tokenizer` built from this model, as described in the module docs:
    /// `config` gives `extra_ids` (default 100) and the special tokens (`<pad>`, `</s>`,
    /// `<unk>` by default).
    pub fn t5_tokenizer(&self, config: &TokenizerConfig) -> Result<tokenizers::Tokenizer, TokenizerError> {
        let path = &self.path;
        let spec = self.trainer_spec();
        if spec.model_type() != UNIGRAM {
            return Err(load_err(path, format!("trainer_spec.model_type is {}, a T5 tokenizer needs a Unigram model (1)", spec.model_type())));
        }
        let extra_ids = config.int("extra_ids").unwrap_or(100);
        let extra_ids = usize::try_from(extra_ids).map_err(|_| config_err(config, path, format!("extra_ids is {extra_ids}")))?;
        let mut vocab = self.vocab();
        vocab.extend((0..extra_ids).rev().map(|i| (format!("<extra_id_{i}>"), 0.0)));
        // T5Tokenizer hard-codes unk_id 2 (T5's spiece.model has it there); the piece there
        // must be the unknown piece or Unigram would emit something else for unknown text.
        const UNK_ID: usize = 2;
        let unk = config.token("unk_token").unwrap_or_else(|| "<unk>".into());
        if vocab.get(UNK_ID).map(|v| v.0.as_str()) != Some(unk.as_str()) {
            return Err(load_err(path, format!("piece {UNK_ID} is {:?}, T5Tokenizer expects the unknown token `{unk}` there", vocab.get(UNK_ID).map(|v| &v.0))));
        }
        let model = Unigram::from(vocab, Some(UNK_ID), false).map_err(|e| load_err(path, format!("Unigram model: {e}")))?;

        let mut tok = tokenizers::Tokenizer::new(model);
        if let Some(map) = self.precompiled_charsmap() {
            let normalizer = Precompiled::from(map).map_err(|e| load_err(path, format!("normalizer_spec.precompiled_charsmap: {e}")))?;
            tok.with_normalizer(Some(NormalizerWrapper::Precompiled(normalizer)))
                .map_err(|e| load_err(path, e.to_string()))?;
        }
        tok.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::WhitespaceSplit(WhitespaceSplit),
            PreTokenizerWrapper::Metaspace(Metaspace::new('▁', PrependScheme::Always, true)),
        ]))));
        tok.with_decoder(Some(DecoderWrapper::Metaspace(Metaspace::new('▁', PrependScheme::Always, true))));

        // Added tokens, matched in the raw text before normalization: SentencePiece's control
        // and user-defined pieces, the configured special tokens, the sentinels.
        let special = |t: &str| AddedToken::from(t.to_string(), true).normalized(false);
        let mut specials: Vec<AddedToken> = Vec::new();
        let mut user: Vec<AddedToken> = Vec::new();
        for p in &self.proto.pieces {
            match p.r#type() {
                piece_type::CONTROL => specials.push(special(p.piece())),
                piece_type::USER_DEFINED => user.push(AddedToken::from(p.piece().to_string(), false).normalized(false)),
                _ => {}
            }
        }
        let eos = config.token("eos_token").unwrap_or_else(|| "</s>".into());
        let pad = config.token("pad_token").unwrap_or_else(|| "<pad>".into());
        for t in [pad, eos.clone(), unk] {
            specials.push(special(&t));
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            specials.extend(config.token_list(key).iter().map(|t| special(t)));
        }
        specials.extend((0..extra_ids).map(|i| special(&format!("<extra_id_{i}>"))));
        tok.add_tokens(user).map_err(|e| load_err(path, e.to_string()))?;
        tok.add_special_tokens(specials).map_err(|e| load_err(path, e.to_string()))?;

        let eos_id = tok.token_to_id(&eos).ok_or_else(|| load_err(path, format!("the eos token `{eos}` is not in the vocabulary")))?;
        let template = TemplateProcessing::builder()
            .try_single(format!("$A {eos}"))
            .and_then(|b| b.try_pair(format!("$A {eos} $B {eos}")))
            .map_err(|e| load_err(path, format!("template: {e}")))?
            .special_tokens(vec![(eos.as_str(), eos_id)])
            .build()
            .map_err(|e| load_err(path, format!("template: {e}")))?;
        tok.with_post_processor(Some(template));
        Ok(tok)
    }
}

fn load_err(path: &Path, message: String) -> TokenizerError {
    TokenizerError::Load { path: path.into(), message }
}

fn config_err(config: &TokenizerConfig, fallback: &Path, message: String) -> TokenizerError {
    TokenizerError::Config { path: config.path.clone().unwrap_or_else(|| fallback.into()), message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn piece(p: &str, score: f32, kind: i32) -> SentencePiece {
        SentencePiece { piece: Some(p.into()), score: Some(score), r#type: Some(kind) }
    }

    fn tiny(model_type: Option<i32>) -> Vec<u8> {
        let pieces = vec![
            piece("<pad>", 0.0, piece_type::CONTROL),
            piece("</s>", 0.0, piece_type::CONTROL),
            piece("<unk>", 0.0, piece_type::UNKNOWN),
            piece("▁", -2.0, piece_type::NORMAL),
            piece("▁a", -1.0, piece_type::NORMAL),
            piece("b", -3.0, piece_type::NORMAL),
        ];
        let trainer_spec = TrainerSpec { model_type, unk_id: Some(2), eos_id: Some(1), pad_id: Some(0), bos_id: Some(-1), ..Default::default() };
        ModelProto { pieces, trainer_spec: Some(trainer_spec), normalizer_spec: None }.encode_to_vec()
    }

    #[test]
    fn proto_defaults_are_sentencepieces() {
        let m = SentencePieceModel::from_bytes(&tiny(None), Path::new("x.model")).unwrap();
        let t = m.trainer_spec();
        assert_eq!((t.model_type(), t.unk_id(), t.bos_id(), t.eos_id(), t.pad_id()), (1, 2, -1, 1, 0));
        let empty = TrainerSpec::default();
        assert_eq!((empty.unk_id(), empty.bos_id(), empty.eos_id(), empty.pad_id(), empty.vocab_size()), (0, 1, 2, -1, 8000));
        let n = m.normalizer_spec();
        assert!(n.add_dummy_prefix() && n.remove_extra_whitespaces() && n.escape_whitespaces());
        assert_eq!(m.proto.pieces[5].r#type(), piece_type::NORMAL);
    }

    #[test]
    fn t5_tokenizer_appends_sentinels_and_eos() {
        let m = SentencePieceModel::from_bytes(&tiny(Some(1)), Path::new("x.model")).unwrap();
        let tok = m.t5_tokenizer(&TokenizerConfig::default()).unwrap();
        assert_eq!(tok.get_vocab_size(true), 6 + 100);
        assert_eq!(tok.token_to_id("<extra_id_0>"), Some(105));
        assert_eq!(tok.token_to_id("<extra_id_99>"), Some(6));
        let e = tok.encode("a  b <extra_id_0>", true).unwrap();
        assert_eq!(e.get_ids(), [4, 3, 5, 105, 1]);
    }

    #[test]
    fn bad_files_are_named() {
        let e = SentencePieceModel::from_bytes(b"\xff\xff\xff", Path::new("/d/spiece.model")).unwrap_err().to_string();
        assert!(e.contains("/d/spiece.model") && e.contains("ModelProto"), "{e}");
        let m = SentencePieceModel::from_bytes(&tiny(Some(2)), Path::new("/d/spiece.model")).unwrap();
        let e = m.t5_tokenizer(&TokenizerConfig::default()).unwrap_err().to_string();
        assert!(e.contains("/d/spiece.model") && e.contains("Unigram"), "{e}");
        let e = SentencePieceModel::open(Path::new("/nonexistent/spiece.model")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/spiece.model"), "{e}");
    }
}
