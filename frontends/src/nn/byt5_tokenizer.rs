//! transformers' `ByT5Tokenizer` (byt5/tokenization_byt5.py, a Python tokenizer with no
//! `tokenizer.json`), called as `tokenizer(text, padding="max_length", max_length=L,
//! truncation=True, add_special_tokens=True)`:
//! - UTF-8 byte b is id b + 3; `<pad>` 0, `</s>` 1, `<unk>` 2; `<extra_id_i>` 259 + i
//!   (i < 125): 384 ids in all;
//! - the special-token strings in the text are those tokens (`tokens_trie.split`, longest match
//!   first); `<pad>`, `</s>` and `<unk>` strip the whitespace on both sides (their `AddedToken`s
//!   have lstrip/rstrip), `<extra_id_i>` strip nothing;
//! - truncation keeps the first `L - 1` ids, then `</s>` is appended unless the (truncated)
//!   ids already end with it (`_add_eos_if_not_present`); a multi-byte character may be cut;
//! - padding with `<pad>` on the right to L; the mask is 1 on every non-padding position.

/// `<pad>`.
pub const PAD_ID: i64 = 0;
/// `</s>`.
pub const EOS_ID: i64 = 1;
/// `<unk>`.
pub const UNK_ID: i64 = 2;
/// Ids 0..3 are the special tokens; byte b is b + OFFSET.
pub const OFFSET: i64 = 3;
/// `ByT5Tokenizer(extra_ids=125)`: `<extra_id_0>`..`<extra_id_124>`.
pub const EXTRA_IDS: i64 = 125;
/// All ids: 3 specials + 256 bytes + 125 sentinels (the encoder's `vocab_size`).
pub const VOCAB_SIZE: i64 = OFFSET + 256 + EXTRA_IDS;

/// A max length that leaves no room for `</s>`.
#[derive(Debug, thiserror::Error)]
#[error("ByT5 tokenizer: max_length must be at least 1 (room for </s>), got {0}")]
pub struct MaxLengthError(pub usize);

/// The ids of `text` with `</s>`, truncated and padded to `max_length`, and the attention mask.
pub fn encode(text: &str, max_length: usize) -> Result<(Vec<i64>, Vec<i64>), MaxLengthError> {
    if max_length < 1 {
        return Err(MaxLengthError(max_length));
    }
    let mut ids = tokenize(text);
    ids.truncate(max_length - 1);
    if ids.last() != Some(&EOS_ID) {
        ids.push(EOS_ID);
    }
    let mut mask = vec![1; ids.len()];
    ids.resize(max_length, PAD_ID);
    mask.resize(max_length, 0);
    Ok((ids, mask))
}

/// The ids of `text` without `</s>`: special-token strings as their ids, bytes as b + 3.
pub fn tokenize(text: &str) -> Vec<i64> {
    // Split on the special tokens, as (text piece, token) alternations.
    let mut pieces: Vec<Piece> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        match special_at(&text[i..]) {
            Some((len, id)) => {
                pieces.push(Piece::Text(&text[start..i]));
                pieces.push(Piece::Special(id));
                i += len;
                start = i;
            }
            None => i += text[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    pieces.push(Piece::Text(&text[start..]));
    // The stripping of `<pad>`, `</s>`, `<unk>`: the neighbouring pieces lose their whitespace.
    let mut texts: Vec<Option<String>> = pieces.iter().map(|p| if let Piece::Text(t) = p { Some(t.to_string()) } else { None }).collect();
    for (k, p) in pieces.iter().enumerate() {
        if let Piece::Special(id) = p {
            if *id <= UNK_ID {
                if let Some(Some(left)) = k.checked_sub(1).map(|l| texts[l].as_mut()) {
                    *left = left.trim_end_matches(is_python_space).to_string();
                }
                if let Some(Some(right)) = texts.get_mut(k + 1).map(Option::as_mut) {
                    *right = right.trim_start_matches(is_python_space).to_string();
                }
            }
        }
    }
    let mut ids = Vec::with_capacity(text.len());
    for (p, t) in pieces.iter().zip(&texts) {
        match (p, t) {
            (Piece::Special(id), _) => ids.push(*id),
            (Piece::Text(_), Some(t)) => ids.extend(t.bytes().map(|b| b as i64 + OFFSET)),
            (Piece::Text(_), None) => {}
        }
    }
    ids
}

enum Piece<'a> {
    Text(&'a str),
    Special(i64),
}

/// The longest special token at the start of `s`: (its length in bytes, its id).
fn special_at(s: &str) -> Option<(usize, i64)> {
    if !s.starts_with('<') {
        return None;
    }
    for (token, id) in [("<pad>", PAD_ID), ("</s>", EOS_ID), ("<unk>", UNK_ID)] {
        if s.starts_with(token) {
            return Some((token.len(), id));
        }
    }
    let digits = s.strip_prefix("<extra_id_")?;
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    // The longest `<extra_id_N>` that is a token: N in 0..125 written without a leading zero
    // (a leading zero makes no token: "<extra_id_01>" matches nothing).
    for len in (1..=n.min(3)).rev() {
        let (num, rest) = digits.split_at(len);
        if !rest.starts_with('>') || (len > 1 && num.starts_with('0')) {
            continue;
        }
        if let Ok(i) = num.parse::<i64>() {
            if i < EXTRA_IDS {
                return Some(("<extra_id_".len() + len + 1, OFFSET + 256 + i));
            }
        }
    }
    None
}

/// `str.isspace`: Unicode White_Space plus the information separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_eos_truncation_and_padding() {
        assert_eq!(encode("ab", 5).unwrap(), (vec![100, 101, 1, 0, 0], vec![1, 1, 1, 0, 0]));
        assert_eq!(encode("", 3).unwrap(), (vec![1, 0, 0], vec![1, 0, 0]));
        assert_eq!(encode("abc", 3).unwrap().0, vec![100, 101, 1]);
        // é is two bytes (0xc3 0xa9): a cut inside it keeps the first byte.
        assert_eq!(encode("é", 2).unwrap().0, vec![0xc3 + 3, 1]);
        assert!(encode("x", 0).unwrap_err().to_string().contains("at least 1"));
        assert_eq!(VOCAB_SIZE, 384);
    }

    #[test]
    fn special_token_strings() {
        // `</s>` at the end is the eos: no second one.
        assert_eq!(encode("a</s>", 4).unwrap().0, vec![100, 1, 0, 0]);
        assert_eq!(tokenize("a </s>  b <pad>\u{3000}c <unk>d"), vec![100, 1, 101, 0, 102, 2, 103]);
        assert_eq!(tokenize("<extra_id_0> <extra_id_124><extra_id_125><extra_id_01>"), {
            let mut v = vec![259, 35, 383];
            v.extend("<extra_id_125><extra_id_01>".bytes().map(|b| b as i64 + 3));
            v
        });
        assert_eq!(tokenize("<extra_id_12>"), vec![271]);
    }
}
