//! Reading diffusers/transformers `config.json` files, shared by every family: unknown fields are
//! ignored by the families' serde structs, missing ones take the library's defaults.

use serde::Deserialize;
use std::path::Path;

/// A config file that could not be read or parsed; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Json { path: std::path::PathBuf, source: serde_json::Error },
    #[error("{}: field `{field}`: {source}", path.display())]
    Field { path: std::path::PathBuf, field: String, source: serde_json::Error },
}

/// Reads and parses a JSON config file; a field of the wrong type is named.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|source| match field_at(&text, &source) {
        Some(field) => ConfigError::Field { path: path.into(), field, source },
        None => ConfigError::Json { path: path.into(), source },
    })
}

/// The key whose value a data error (a wrong type or value, not a syntax error) points into:
/// the nearest `"key":` before the error's line and column. serde names the expected type but
/// not the field; a user needs the field.
fn field_at(text: &str, e: &serde_json::Error) -> Option<String> {
    let names_itself = ["missing field", "unknown field", "duplicate field"].iter().any(|m| e.to_string().starts_with(m));
    if e.classify() != serde_json::error::Category::Data || e.line() == 0 || names_itself {
        return None;
    }
    let line_start: usize = text.split_inclusive('\n').take(e.line() - 1).map(str::len).sum();
    let before = text.get(..(line_start + e.column()).min(text.len()))?;
    let colon = before.rfind("\":")?;
    let open = before[..colon].rfind('"')?;
    Some(before[open + 1..colon].to_string())
}
