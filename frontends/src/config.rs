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
}

/// Reads and parses a JSON config file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Json { path: path.into(), source })
}
