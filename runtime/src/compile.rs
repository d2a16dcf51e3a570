//! Compiling StableHLO through the executable cache: a hit deserializes instead of compiling; a
//! corrupt entry is reported, deleted and recompiled; a fresh compile is stored atomically.

use crate::cache::{CacheKey, EntryMeta, ExecutableCache, Lookup};
use crate::pjrt::{Client, CompileOptions, LoadedExecutable, PjrtError};
use std::time::{Duration, Instant};

/// Where an executable came from.
#[derive(Clone, Debug, PartialEq)]
pub enum CompileSource {
    /// Compiled now (cache disabled, or a miss).
    Compiled,
    /// Deserialized from the cache; no compile happened.
    CacheHit,
    /// The cache entry was corrupt (`reason`); it was deleted and the module recompiled.
    Healed { reason: String },
}

/// A loaded executable and how long getting it took.
pub struct Compiled {
    pub executable: LoadedExecutable,
    pub source: CompileSource,
    pub key: CacheKey,
    /// Compile time, or deserialize time on a hit.
    pub duration: Duration,
    /// Problems with the cache that did not stop the compile (unwritable dir and the like).
    pub warnings: Vec<String>,
}

impl Compiled {
    /// "cache hit (12.3 ms)" / "compiled (1.234 s)" for people.
    pub fn describe(&self) -> String {
        let t = crate::timing::format_duration(self.duration);
        match &self.source {
            CompileSource::Compiled => format!("compiled in {t}"),
            CompileSource::CacheHit => format!("cache hit, loaded in {t}"),
            CompileSource::Healed { reason } => format!("compiled in {t} (the cached entry was corrupt: {reason}; replaced)"),
        }
    }
}

/// The cache key of `module` compiled with `options` by `client`'s plugin and devices.
pub fn cache_key(client: &Client, module: &str, options: &CompileOptions) -> Result<CacheKey, PjrtError> {
    let devices = client.addressable_devices()?;
    let kind = devices.first().map(|d| d.kind().to_string()).unwrap_or_default();
    Ok(CacheKey::new(
        module,
        &options.to_proto_bytes(),
        &client.platform_name()?,
        &client.platform_version()?,
        client.plugin().api_version(),
        &kind,
        devices.len(),
        // Read by the plugin's XLA when it compiles: part of what decides the code.
        &std::env::var("XLA_FLAGS").unwrap_or_default(),
    ))
}

/// Compiles `module`, going through `cache` when given. Cache problems never fail the compile:
/// they come back as warnings.
pub fn compile_cached(
    client: &Client,
    cache: Option<&ExecutableCache>,
    module: &str,
    options: &CompileOptions,
    label: &str,
) -> Result<Compiled, PjrtError> {
    let key = cache_key(client, module, options)?;
    let mut warnings = Vec::new();
    let mut source = CompileSource::Compiled;
    if let Some(cache) = cache {
        match cache.get(&key) {
            Ok(Lookup::Hit(bytes)) => {
                let start = Instant::now();
                match client.deserialize_executable(&bytes) {
                    Ok(executable) => {
                        return Ok(Compiled { executable, source: CompileSource::CacheHit, key, duration: start.elapsed(), warnings })
                    }
                    // Verified bytes the plugin still refuses (another plugin build wrote them, say).
                    Err(e) => {
                        let _ = cache.remove(&key);
                        source = CompileSource::Healed { reason: format!("the plugin could not load it: {e}") };
                    }
                }
            }
            Ok(Lookup::Miss) => {}
            Ok(Lookup::Corrupt { reason }) => source = CompileSource::Healed { reason: reason.to_string() },
            Err(e) => warnings.push(e.to_string()),
        }
    }
    let start = Instant::now();
    let executable = client.compile(module, options)?;
    let duration = start.elapsed();
    if let Some(cache) = cache {
        let meta = EntryMeta { platform: client.platform_name()?, label: label.to_string(), hlo_text_len: module.len() as u64 };
        match executable.serialize() {
            Ok(bytes) => {
                if let Err(e) = cache.put(&key, &bytes, &meta) {
                    warnings.push(format!("could not store the executable in the cache: {e}"));
                }
            }
            Err(e) => warnings.push(format!("the plugin could not serialize the executable, so it is not cached: {e}")),
        }
    }
    Ok(Compiled { executable, source, key, duration, warnings })
}
