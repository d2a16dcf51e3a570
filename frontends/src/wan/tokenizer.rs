//! Wan's prompt tokenizer: the `tokenizer/` folder of a diffusers Wan checkpoint (UMT5's
//! `tokenizer.json`), called as `WanPipeline._get_t5_prompt_embeds` calls it:
//! `tokenizer(texts, padding="max_length", max_length=L, truncation=True,
//! add_special_tokens=True, return_attention_mask=True)`, after the pipeline's `prompt_clean`.

use tokenizers::{NormalizedString, Normalizer};

/// The tokenizer itself is the shared one (`tokenizer.json` + `tokenizer_config.json`).
pub use crate::nn::tokenizer::{Batch, Tokenizer, TokenizerError};

/// `prompt_clean` of diffusers' Wan pipeline: `whitespace_clean(basic_clean(text))`, where
/// `basic_clean` is `ftfy.fix_text`, `html.unescape` twice and `strip`.
///
/// Of ftfy's default fixes this does: C1 controls as Windows-1252, Latin ligatures, fullwidth
/// ASCII, curly quotes, ANSI terminal escapes, control characters, NFC. It does not repair
/// mojibake (ftfy's `fix_encoding`, "cafÃ©" -> "café"): such text is tokenized as given. Of
/// HTML it decodes numeric references and `&amp; &lt; &gt; &quot; &apos; &nbsp;`, not the other
/// HTML5 named entities.
pub fn prompt_clean(text: &str) -> String {
    let text = html_unescape(&html_unescape(&fix_text(text)));
    // Python's `re.sub(r"\s+", " ", t).strip()`, with `str.isspace`'s notion of whitespace.
    text.split(is_python_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `str.isspace`: Unicode White_Space plus the information separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The subset of `ftfy.fix_text` described at [`prompt_clean`], repeated until nothing changes
/// (as ftfy does).
fn fix_text(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            // remove_terminal_escapes: ESC [ digits-or-semicolons letter.
            if c == '\u{1b}' && chars.peek() == Some(&'[') {
                let rest: String = chars.clone().skip(1).take_while(|c| c.is_ascii_digit() || *c == ';').collect();
                let after = chars.clone().nth(1 + rest.chars().count());
                if after.is_some_and(|a| a.is_ascii_alphabetic()) {
                    for _ in 0..2 + rest.chars().count() {
                        chars.next();
                    }
                    continue;
                }
            }
            match c {
                '\u{80}'..='\u{9f}' => out.push(windows_1252(c as u32).unwrap_or(c)),
                '\u{FF01}'..='\u{FF5E}' => out.push(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)),
                '\u{3000}' => out.push(' '),
                '\u{02bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
                '\u{201c}'..='\u{201f}' => out.push('"'),
                '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
                | '\u{fff9}'..='\u{fffc}' => {}
                c => match ligature(c) {
                    Some(s) => out.push_str(s),
                    None => out.push(c),
                },
            }
        }
        let mut n = NormalizedString::from(out.as_str());
        if tokenizers::normalizers::unicode::NFC.normalize(&mut n).is_ok() {
            out = n.get().to_string();
        }
        if out == text {
            return out;
        }
        text = out;
    }
}

/// ftfy's `LIGATURES` table.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// Windows-1252's characters for bytes 0x80..0x9F (None where it defines none).
fn windows_1252(b: u32) -> Option<char> {
    const TABLE: [u16; 32] = [
        0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
        0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E,
        0x0178,
    ];
    let v = *TABLE.get(b.checked_sub(0x80)? as usize)?;
    if v == 0 {
        None
    } else {
        char::from_u32(v as u32)
    }
}

/// Python's `html.unescape` for numeric references and the common named entities (see
/// [`prompt_clean`]).
fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        match decode_reference(rest) {
            Some((decoded, used)) => {
                out.push_str(&decoded);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The reference at the start of `s` (which starts with '&'): its text and its length.
fn decode_reference(s: &str) -> Option<(String, usize)> {
    let body = &s[1..];
    if let Some(num) = body.strip_prefix('#') {
        let (hex, digits) = match num.strip_prefix(['x', 'X']) {
            Some(h) => (true, h),
            None => (false, num),
        };
        let len = digits.chars().take_while(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() }).count();
        if len == 0 {
            return None;
        }
        let value = u32::from_str_radix(&digits[..len], if hex { 16 } else { 10 }).unwrap_or(u32::MAX);
        let used = 2 + usize::from(hex) + len + usize::from(digits[len..].starts_with(';'));
        // Python's replacement rules: Windows-1252 for 0x80..0x9F, U+FFFD for NUL, surrogates
        // and out-of-range values.
        let c = match value {
            0x80..=0x9F => windows_1252(value).unwrap_or(char::from_u32(value).unwrap_or('\u{FFFD}')),
            0 | 0xD800..=0xDFFF | 0x110000.. => '\u{FFFD}',
            v => char::from_u32(v).unwrap_or('\u{FFFD}'),
        };
        return Some((c.to_string(), used));
    }
    // Entities Python also accepts without the semicolon (HTML's legacy ones) come first.
    const NAMED: [(&str, &str, bool); 6] =
        [("amp", "&", true), ("lt", "<", true), ("gt", ">", true), ("quot", "\"", true), ("nbsp", "\u{a0}", true), ("apos", "'", false)];
    for (name, value, legacy) in NAMED {
        if let Some(after) = body.strip_prefix(name) {
            if after.starts_with(';') {
                return Some((value.into(), 2 + name.len()));
            }
            if legacy {
                return Some((value.into(), 1 + name.len()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from diffusers' `prompt_clean` (ftfy 6.3.1, Python 3.11).
    #[test]
    fn prompt_clean_matches_diffusers() {
        let cases = [
            ("  A cat\t walks\n\non grass.  ", "A cat walks on grass."),
            ("“curly” ‘quotes’ &amp;amp; &lt;b&gt; &#233;&#x41;", "\"curly\" 'quotes' & <b> éA"),
            ("ﬁne ＦＵＬＬ\u{3000}width", "fine FULL width"),
            ("e\u{301}\u{1b}[31mred\u{1b}[0m\u{feff}", "éred"),
            ("caf\u{e9} \u{85}x", "café …x"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(prompt_clean(input), want, "{input:?}");
        }
    }
}
