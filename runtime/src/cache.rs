//! On-disk cache of serialized PJRT executables, keyed by everything that changes the compiled code.
//!
//! One file per entry, `<dir>/<key>.vlxc` (format in `cache/entry.rs`), written to a temp file in the
//! same dir and renamed into place, so readers see a whole entry or none. Every read is checked
//! (length, magic, version, key, payload SHA-256) before its bytes go anywhere: a damaged executable
//! handed to a plugin can abort the process. A bad entry is deleted and reported as
//! [`Lookup::Corrupt`]; the caller recompiles and `put`s.

mod entry;
mod key;

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use entry::CorruptReason;
pub use key::CacheKey;

/// Environment variable overriding the root of vidlower's cache (executables, plugins).
pub const CACHE_DIR_ENV: &str = "VIDLOWER_CACHE_DIR";

const ENTRY_EXTENSION: &str = "vlxc";
const TEMP_PREFIX: &str = ".tmp-";

/// The root of vidlower's cache: `$VIDLOWER_CACHE_DIR`, else `<user cache dir>/vidlower`
/// (`~/.cache/vidlower` on Linux). `None` only when neither is known.
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os(CACHE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("vidlower")))
}

/// What `ls` shows about an entry, stored beside the payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Platform name the executable was compiled for (`cpu`, `cuda`, `tpu`).
    pub platform: String,
    /// What was compiled, for people: a graph or stage name.
    pub label: String,
    /// Size of the StableHLO text it was compiled from, in bytes.
    pub hlo_text_len: u64,
}

/// One entry as `list` sees it (header only; the payload checksum is checked by `get`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub key: CacheKey,
    /// File size in bytes, header included.
    pub size: u64,
    /// `None` when the header could not be read.
    pub created: Option<SystemTime>,
    pub meta: EntryMeta,
    /// Why the header is bad, if it is; such an entry is deleted by the next `get`.
    pub problem: Option<CorruptReason>,
}

/// The answer to [`ExecutableCache::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Verified executable bytes.
    Hit(Vec<u8>),
    Miss,
    /// The entry was bad and has been deleted.
    Corrupt {
        reason: CorruptReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set {CACHE_DIR_ENV} or pass --cache-dir")]
    NoCacheDir,
    #[error("executable cache: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("executable cache: corrupt entry {} ({reason}) could not be deleted: {source}", path.display())]
    CorruptNotRemoved {
        path: PathBuf,
        reason: CorruptReason,
        source: std::io::Error,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A directory of compiled executables.
#[derive(Clone, Debug)]
pub struct ExecutableCache {
    dir: PathBuf,
}

impl ExecutableCache {
    /// `<cache root>/executables` (see [`cache_root`]); the CLI's `--cache-dir` replaces it.
    pub fn default_dir() -> Result<PathBuf, CacheError> {
        cache_root()
            .map(|r| r.join("executables"))
            .ok_or(CacheError::NoCacheDir)
    }

    /// Opens (creating if needed) the cache in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(ExecutableCache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an entry lives in.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{key}.{ENTRY_EXTENSION}"))
    }

    /// The verified executable for `key`, `Miss`, or `Corrupt` (entry deleted). A bad or unreadable
    /// entry is never an `Err`: only failing to delete one is.
    pub fn get(&self, key: &CacheKey) -> Result<Lookup, CacheError> {
        let path = self.entry_path(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            Err(e) => return self.discard(&path, None, CorruptReason::Unreadable(e.to_string())),
        };
        let checked = file
            .metadata()
            .map_err(|e| CorruptReason::Unreadable(e.to_string()))
            .and_then(|m| entry::read_verified(&mut BufReader::new(&file), m.len(), key));
        match checked {
            Ok(payload) => Ok(Lookup::Hit(payload)),
            Err(reason) => self.discard(&path, Some(&file), reason),
        }
    }

    /// Deletes a bad entry, unless a writer has meanwhile renamed a fresh one over it.
    fn discard(
        &self,
        path: &Path,
        read: Option<&File>,
        reason: CorruptReason,
    ) -> Result<Lookup, CacheError> {
        if read.is_some_and(|f| !same_file(f, path)) {
            return Ok(Lookup::Corrupt { reason });
        }
        // Something that is not a file under an entry's name is as bad as a damaged file.
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match removed {
            Ok(()) => Ok(Lookup::Corrupt { reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lookup::Corrupt { reason }),
            Err(source) => Err(CacheError::CorruptNotRemoved {
                path: path.to_path_buf(),
                reason,
                source,
            }),
        }
    }

    /// Stores `executable` under `key`, replacing any entry there, atomically: concurrent writers of
    /// one key each rename a whole file into place and the last one wins. Returns the entry's path.
    pub fn put(
        &self,
        key: &CacheKey,
        executable: &[u8],
        meta: &EntryMeta,
    ) -> Result<PathBuf, CacheError> {
        let path = self.entry_path(key);
        let header = entry::encode_header(key, SystemTime::now(), meta, executable);
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(io_err("creating a temp file in", &self.dir))?;
        let write = |f: &mut File| -> std::io::Result<()> {
            f.write_all(&header)?;
            f.write_all(executable)?;
            // Durable before visible: a crash after the rename must not leave a short file.
            f.sync_all()
        };
        write(temp.as_file_mut()).map_err(io_err("writing", temp.path()))?;
        temp.persist(&path).map_err(|e| CacheError::Io {
            action: "renaming into place",
            path: path.clone(),
            source: e.error,
        })?;
        Ok(path)
    }

    /// Every entry, oldest first. Reads headers only.
    pub fn list(&self) -> Result<Vec<EntryInfo>, CacheError> {
        let mut entries = Vec::new();
        for (key, path) in self.entry_files()? {
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(size) = file.metadata().map(|m| m.len()) else {
                continue;
            };
            let info = match entry::read_header(&mut BufReader::new(&file), size) {
                Ok(h) if h.key == key.as_str() => EntryInfo {
                    key,
                    size,
                    created: Some(h.created),
                    meta: h.meta,
                    problem: None,
                },
                Ok(h) => EntryInfo {
                    key,
                    size,
                    created: Some(h.created),
                    meta: h.meta,
                    problem: Some(CorruptReason::KeyMismatch { found: h.key }),
                },
                Err(reason) => EntryInfo {
                    key,
                    size,
                    created: None,
                    meta: EntryMeta::default(),
                    problem: Some(reason),
                },
            };
            entries.push(info);
        }
        entries.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
        Ok(entries)
    }

    /// Deletes the entry for `key`; `false` if there was none.
    pub fn remove(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let path = self.entry_path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CacheError::Io {
                action: "removing",
                path,
                source,
            }),
        }
    }

    /// Deletes every entry and any temp file left by an interrupted write; returns (entries, bytes)
    /// removed, temp files counted in bytes only.
    pub fn clear(&self) -> Result<(usize, u64), CacheError> {
        let (mut count, mut bytes) = (0, 0);
        for (path, is_entry) in self.owned_files()? {
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    count += usize::from(is_entry);
                    bytes += size;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CacheError::Io {
                        action: "removing",
                        path,
                        source,
                    })
                }
            }
        }
        Ok((count, bytes))
    }

    /// Bytes on disk in entries and temp files.
    pub fn total_size(&self) -> Result<u64, CacheError> {
        Ok(self
            .owned_files()?
            .iter()
            .filter_map(|(path, _)| std::fs::metadata(path).ok())
            .map(|m| m.len())
            .sum())
    }

    /// Entry files, with the key their name gives.
    fn entry_files(&self) -> Result<Vec<(CacheKey, PathBuf)>, CacheError> {
        Ok(self
            .owned_files()?
            .into_iter()
            .filter(|(_, is_entry)| *is_entry)
            .filter_map(|(path, _)| {
                let key = CacheKey::parse(path.file_stem()?.to_str()?)?;
                Some((key, path))
            })
            .collect())
    }

    /// Files this cache wrote: entries (`true`) and temp files (`false`). Anything else in the dir is
    /// left alone.
    fn owned_files(&self) -> Result<Vec<(PathBuf, bool)>, CacheError> {
        let dir = std::fs::read_dir(&self.dir).map_err(io_err("reading", &self.dir))?;
        let mut files = Vec::new();
        for item in dir {
            let item = item.map_err(io_err("reading", &self.dir))?;
            if !item.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = item.path();
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) {
                files.push((path, false));
            } else if path.extension().is_some_and(|e| e == ENTRY_EXTENSION)
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(CacheKey::parse)
                    .is_some()
            {
                files.push((path, true));
            }
        }
        files.sort();
        Ok(files)
    }
}

/// Whether `path` still names the file `file` was opened from.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => true,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    true
}
