//! The `hunyuanvideo1.5-tiny` preset's Qwen tokenizer: a 607-token byte-level BPE in Qwen2's format
//! (NFC, Qwen2's split regex, ByteLevel; `<|endoftext|>` = 600 the pad token, `<|im_start|>` 601,
//! `<|im_end|>` 602, the vision tokens 603..606) with Qwen2.5-VL's chat template in
//! `tokenizer_config.json`. Built by `tools/golden/make_hunyuanvideo15_text_goldens.py` (BPE merges
//! trained deterministically on the prompt corpus); transformers' `AutoTokenizer` loads it too.
//! ByT5's tokenizer needs no files (see [`crate::nn::byt5_tokenizer`]).

/// (path in the model folder, contents): the `tokenizer/` folder.
pub const FILES: [(&str, &[u8]); 2] = [
    ("tokenizer/tokenizer.json", include_bytes!("tiny/tokenizer/tokenizer.json")),
    ("tokenizer/tokenizer_config.json", include_bytes!("tiny/tokenizer/tokenizer_config.json")),
];

/// The tokenizer's size (ids 0..607): the tiny text encoder's `vocab_size` (640) covers it.
pub const VOCAB_SIZE: usize = 607;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::chat_template::ChatMessage;
    use crate::nn::qwen2_tokenizer::Qwen2Tokenizer;

    #[test]
    fn loads_and_renders_the_qwen_chat() {
        let dir = std::env::temp_dir().join(format!("vidlower-hv15-tiny-tok-{}", std::process::id()));
        for (path, bytes) in FILES {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let tok = Qwen2Tokenizer::from_dir(&dir.join("tokenizer")).unwrap();
        assert_eq!((tok.vocab_size(), tok.pad_id()), (VOCAB_SIZE, 600));
        let chat = [ChatMessage::new("system", "S"), ChatMessage::new("user", "U")];
        assert_eq!(tok.render(&chat, true).unwrap(), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
        let (ids, mask) = tok.encode_chats(&[chat.to_vec()], true, 40).unwrap();
        assert_eq!((ids[0][0], ids[0].len(), mask[0].iter().sum::<i64>() < 40), (601, 40, true));
        assert_eq!(*ids[0].last().unwrap(), 600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
