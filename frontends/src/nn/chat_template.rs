//! A tokenizer's chat template, rendered as transformers' `apply_chat_template` renders it: a
//! jinja2 sandbox with `trim_blocks` and `lstrip_blocks`, the globals `raise_exception`,
//! `namespace` and `dict`, the filter `tojson` as `json.dumps(ensure_ascii=False)`, and the
//! variables `messages`, `add_generation_prompt`, `tools`/`documents` (none) and the special
//! tokens (`bos_token`, `eos_token`, ...). Rendered with `minijinja`.
//!
//! Where a tokenizer folder keeps it, in transformers' order of preference:
//! `chat_template.jinja`, then `tokenizer_config.json`'s `chat_template` (a string, or a list of
//! `{name, template}` of which `default` is used), then a processor's `chat_template.json`.

use super::tokenizer::{TokenizerConfig, TokenizerError};
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value as JinjaValue};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One chat message: `{"role": ..., "content": ...}` with text content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A chat template and the file it came from.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    path: PathBuf,
}

/// The special-token variables transformers passes to the template (`special_tokens_map`).
const SPECIAL_TOKEN_KEYS: [&str; 7] = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

impl ChatTemplate {
    /// A template from its source; `path` names it in errors.
    pub fn new(source: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        ChatTemplate { source: source.into(), path: path.into() }
    }

    /// The template of the tokenizer folder `dir` (see the module doc for where it is looked
    /// for); an error naming the folder when there is none.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            let source = std::fs::read_to_string(&jinja).map_err(|e| TokenizerError::Load { path: jinja.clone(), message: e.to_string() })?;
            return Ok(ChatTemplate::new(source, jinja));
        }
        let config = dir.join("tokenizer_config.json");
        if let Some(source) = read_key(&config, "chat_template")? {
            return Ok(ChatTemplate::new(source, config));
        }
        let processor = dir.join("chat_template.json");
        if let Some(source) = read_key(&processor, "chat_template")? {
            return Ok(ChatTemplate::new(source, processor));
        }
        Err(TokenizerError::Load {
            path: dir.into(),
            message: "no chat template (looked for chat_template.jinja, tokenizer_config.json's `chat_template`, chat_template.json)".into(),
        })
    }

    /// The file the template came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// `apply_chat_template(messages, add_generation_prompt=..., tokenize=False)`, with the
    /// special tokens of `config` as variables.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool, config: &TokenizerConfig) -> Result<String, TokenizerError> {
        let err = |e: JinjaError| TokenizerError::Config { path: self.path.clone(), message: format!("chat template: {}", describe(&e)) };
        let env = environment();
        let template = env.template_from_str(&self.source).map_err(err)?;
        let mut ctx = std::collections::BTreeMap::new();
        ctx.insert("messages".to_string(), JinjaValue::from_serialize(messages));
        ctx.insert("add_generation_prompt".to_string(), JinjaValue::from(add_generation_prompt));
        ctx.insert("tools".to_string(), JinjaValue::from(()));
        ctx.insert("documents".to_string(), JinjaValue::from(()));
        for key in SPECIAL_TOKEN_KEYS {
            if let Some(token) = config.token(key) {
                ctx.insert(key.to_string(), JinjaValue::from(token));
            }
        }
        template.render(JinjaValue::from_serialize(&ctx)).map_err(err)
    }
}

/// The jinja environment of transformers' `_compile_jinja_template`.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.add_function("raise_exception", |message: String| -> Result<JinjaValue, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, format!("raise_exception: {message}")))
    });
    env.add_function("strftime_now", |_format: String| -> Result<JinjaValue, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, "strftime_now (the current date) is not available: outputs must be reproducible"))
    });
    env.add_filter("tojson", tojson);
    env
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=...)`,
/// with Python's separators (", " and ": "; "," at line ends when indented), maps in their
/// insertion order, and no HTML escaping.
fn tojson(value: JinjaValue, kwargs: minijinja::value::Kwargs) -> Result<String, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    python_dumps(&value, indent, sort_keys.unwrap_or(false), 0, &mut out)?;
    Ok(out)
}

fn python_dumps(v: &JinjaValue, indent: Option<usize>, sort: bool, depth: usize, out: &mut String) -> Result<(), JinjaError> {
    use minijinja::value::ValueKind;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String => out.push_str(&quote(v.as_str().unwrap_or_default())),
        ValueKind::Map => {
            let mut keys: Vec<JinjaValue> = v.try_iter()?.collect();
            if sort {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                out.push_str(if i > 0 { sep } else { "" });
                newline(out, depth + 1);
                out.push_str(&quote(&k.to_string()));
                out.push_str(": ");
                python_dumps(&v.get_item(k)?, indent, sort, depth + 1, out)?;
            }
            if !keys.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<JinjaValue> = v.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i > 0 { sep } else { "" });
                newline(out, depth + 1);
                python_dumps(item, indent, sort, depth + 1, out)?;
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        _ => return Err(JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: {v} is not JSON serializable"))),
    }
    Ok(())
}

/// The error with the template's line and the chain of causes.
fn describe(e: &JinjaError) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        s.push_str(&format!(" (template line {line})"));
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

/// `key` of the JSON object in `path` as a template: a string, or the `default` entry of a list
/// of `{name, template}`. None when the file or the key is absent.
fn read_key(path: &Path, key: &str) -> Result<Option<String>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let err = |message: String| TokenizerError::Config { path: path.into(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let default = list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some("default"));
            default
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| err(format!("`{key}` is a list without a `default` template")))
        }
        Some(other) => Err(err(format!("`{key}` must be a string or a list of {{name, template}}, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[ChatMessage], gen: bool) -> Result<String, TokenizerError> {
        ChatTemplate::new(source, "test.jinja").render(messages, gen, &TokenizerConfig::default())
    }

    #[test]
    fn trim_and_lstrip_blocks_as_transformers() {
        // jinja2 with trim_blocks + lstrip_blocks drops the newline after a block tag and the
        // indentation before one.
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}GEN{% endif %}\n";
        let msgs = [ChatMessage::new("system", "s"), ChatMessage::new("user", "u")];
        assert_eq!(render(src, &msgs, true).unwrap(), "[u]\nGEN");
        assert_eq!(render(src, &msgs, false).unwrap(), "[u]\n");
    }

    #[test]
    fn raise_exception_names_the_file_and_message() {
        let e = render("{{ raise_exception('only user and assistant roles') }}", &[], false).unwrap_err().to_string();
        assert!(e.contains("test.jinja") && e.contains("only user and assistant roles"), "{e}");
    }

    #[test]
    fn namespace_and_tojson_as_python() {
        let src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }} {{ messages[0] | tojson }} {{ {'a': [1, 'é<']} | tojson(indent=2) }}";
        let out = render(src, &[ChatMessage::new("user", "x")], false).unwrap();
        assert_eq!(out, "1 {\"role\": \"user\", \"content\": \"x\"} {\n  \"a\": [\n    1,\n    \"é<\"\n  ]\n}");
    }

    #[test]
    fn finds_the_template_in_each_place() {
        let dir = tempfile_dir("find");
        assert!(ChatTemplate::from_dir(&dir).unwrap_err().to_string().contains("no chat template"));
        std::fs::write(dir.join("chat_template.json"), r#"{"chat_template": "P"}"#).unwrap();
        assert_eq!(ChatTemplate::from_dir(&dir).unwrap().source(), "P");
        std::fs::write(dir.join("tokenizer_config.json"), r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#).unwrap();
        assert_eq!(ChatTemplate::from_dir(&dir).unwrap().source(), "D");
        std::fs::write(dir.join("chat_template.jinja"), "J").unwrap();
        let t = ChatTemplate::from_dir(&dir).unwrap();
        assert_eq!((t.source(), t.path().ends_with("chat_template.jinja")), ("J", true));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vidlower-chat-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
