//! The cache key: a SHA-256 over everything that changes the compiled code.

use std::fmt;

use sha2::{Digest, Sha256};

/// Bumped when the meaning of a key changes, so old entries are simply never hit again.
const KEY_DOMAIN: &[u8] = b"vidlower-executable-key-v2";

/// Hex SHA-256 naming one compiled executable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// Hashes each input length-prefixed, so no two different input tuples share a byte stream.
    /// `platform_version` matters because a newer XLA can emit different code for the same module;
    /// `device_kind` and `device_count` because codegen targets the device and the partitioning.
    /// `compiler_flags` (the `XLA_FLAGS` the plugin's compiler reads from the environment) because
    /// they change codegen too (measured: a CPU step 37 vs 70 ms under one flag).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stablehlo_text: &str,
        compile_options: &[u8],
        platform_name: &str,
        platform_version: &str,
        api_version: (u32, u32),
        device_kind: &str,
        device_count: usize,
        compiler_flags: &str,
    ) -> Self {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(KEY_DOMAIN);
        field(stablehlo_text.as_bytes());
        field(compile_options);
        field(platform_name.as_bytes());
        field(platform_version.as_bytes());
        field(&api_version.0.to_le_bytes());
        field(&api_version.1.to_le_bytes());
        field(device_kind.as_bytes());
        field(&(device_count as u64).to_le_bytes());
        field(compiler_flags.as_bytes());
        CacheKey(hex::encode(hasher.finalize()))
    }

    /// A key typed back by a user (`vidlower cache rm KEY`): 64 hex digits, any case.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| CacheKey(text.to_ascii_lowercase()))
    }

    /// The 64 lower-case hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
