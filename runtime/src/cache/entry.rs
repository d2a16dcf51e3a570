//! The entry file format, one file per executable, so that one rename publishes it whole.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "VLXC"
//!      4     4  format version, u32 LE
//!      8     8  payload length, u64 LE
//!     16    32  SHA-256 of the payload
//!     48     4  metadata length m, u32 LE
//!     52     m  metadata: key, created (unix s, u64), hlo text length (u64), platform, label;
//!               strings as u32 LE length + UTF-8
//!   52+m     n  payload: the serialized executable
//! ```
//! The file must be exactly `52 + m + n` bytes. The payload checksum is what stands between a damaged
//! file and a plugin that might abort the process on bad bytes.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{CacheKey, EntryMeta};

pub(super) const MAGIC: &[u8; 4] = b"VLXC";
pub(super) const FORMAT_VERSION: u32 = 1;
pub(super) const FIXED_HEADER_LEN: u64 = 52;
/// Metadata is a few strings; a larger length means a damaged header, not a reason to allocate.
const MAX_METADATA_LEN: u32 = 64 * 1024;

/// Why an entry was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("truncated: {actual} bytes, header says {expected}")]
    Truncated { expected: u64, actual: u64 },
    #[error("{actual} bytes, header says {expected}: trailing bytes")]
    TrailingBytes { expected: u64, actual: u64 },
    #[error("bad magic {0:02x?}, expected \"VLXC\"")]
    BadMagic([u8; 4]),
    #[error("format version {0}, this vidlower reads {FORMAT_VERSION}")]
    UnsupportedVersion(u32),
    #[error("bad metadata: {0}")]
    BadMetadata(String),
    #[error("entry holds key {found}, not the key it is filed under")]
    KeyMismatch { found: String },
    #[error("payload SHA-256 mismatch")]
    ChecksumMismatch,
}

/// Everything before the payload.
#[derive(Clone, Debug)]
pub(super) struct Header {
    pub payload_len: u64,
    pub payload_sha256: [u8; 32],
    pub key: String,
    pub created: SystemTime,
    pub meta: EntryMeta,
}

/// Header bytes for an entry holding `payload`.
pub(super) fn encode_header(
    key: &CacheKey,
    created: SystemTime,
    meta: &EntryMeta,
    payload: &[u8],
) -> Vec<u8> {
    let mut metadata = Vec::new();
    put_str(&mut metadata, key.as_str());
    let created_secs = created
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metadata.extend_from_slice(&created_secs.to_le_bytes());
    metadata.extend_from_slice(&meta.hlo_text_len.to_le_bytes());
    put_str(&mut metadata, &meta.platform);
    put_str(&mut metadata, &meta.label);

    let mut header = Vec::with_capacity(FIXED_HEADER_LEN as usize + metadata.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&Sha256::digest(payload));
    header.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    header.extend_from_slice(&metadata);
    header
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads and checks the header of a file of `file_len` bytes, leaving `reader` at the payload.
/// Checks lengths against the file size before allocating anything.
pub(super) fn read_header(reader: &mut impl Read, file_len: u64) -> Result<Header, CorruptReason> {
    if file_len < FIXED_HEADER_LEN {
        return Err(CorruptReason::Truncated {
            expected: FIXED_HEADER_LEN,
            actual: file_len,
        });
    }
    let mut fixed = [0u8; FIXED_HEADER_LEN as usize];
    reader.read_exact(&mut fixed).map_err(unreadable)?;
    let magic: [u8; 4] = fixed[0..4].try_into().expect("4 bytes");
    if &magic != MAGIC {
        return Err(CorruptReason::BadMagic(magic));
    }
    let version = u32::from_le_bytes(fixed[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(CorruptReason::UnsupportedVersion(version));
    }
    let payload_len = u64::from_le_bytes(fixed[8..16].try_into().expect("8 bytes"));
    let payload_sha256: [u8; 32] = fixed[16..48].try_into().expect("32 bytes");
    let metadata_len = u32::from_le_bytes(fixed[48..52].try_into().expect("4 bytes"));
    if metadata_len > MAX_METADATA_LEN {
        return Err(CorruptReason::BadMetadata(format!(
            "length {metadata_len} over {MAX_METADATA_LEN}"
        )));
    }
    let expected = FIXED_HEADER_LEN
        .checked_add(u64::from(metadata_len))
        .and_then(|n| n.checked_add(payload_len))
        .ok_or(CorruptReason::BadMetadata(format!(
            "payload length {payload_len} overflows"
        )))?;
    if file_len < expected {
        return Err(CorruptReason::Truncated {
            expected,
            actual: file_len,
        });
    }
    if file_len > expected {
        return Err(CorruptReason::TrailingBytes {
            expected,
            actual: file_len,
        });
    }

    let mut metadata = vec![0u8; metadata_len as usize];
    reader.read_exact(&mut metadata).map_err(unreadable)?;
    let mut fields = Fields(&metadata);
    let key = fields.string("key")?;
    let created = UNIX_EPOCH
        .checked_add(Duration::from_secs(fields.u64("created")?))
        .ok_or_else(|| CorruptReason::BadMetadata("created time out of range".to_string()))?;
    let hlo_text_len = fields.u64("hlo text length")?;
    let platform = fields.string("platform")?;
    let label = fields.string("label")?;
    if !fields.0.is_empty() {
        return Err(CorruptReason::BadMetadata(format!(
            "{} unexpected bytes at the end",
            fields.0.len()
        )));
    }
    Ok(Header {
        payload_len,
        payload_sha256,
        key,
        created,
        meta: EntryMeta {
            platform,
            label,
            hlo_text_len,
        },
    })
}

/// Reads the whole entry and returns its payload only if every check passes.
pub(super) fn read_verified(
    reader: &mut impl Read,
    file_len: u64,
    key: &CacheKey,
) -> Result<Vec<u8>, CorruptReason> {
    let header = read_header(reader, file_len)?;
    if header.key != key.as_str() {
        return Err(CorruptReason::KeyMismatch { found: header.key });
    }
    let mut payload = vec![0u8; header.payload_len as usize];
    reader.read_exact(&mut payload).map_err(unreadable)?;
    if Sha256::digest(&payload).as_slice() != header.payload_sha256 {
        return Err(CorruptReason::ChecksumMismatch);
    }
    Ok(payload)
}

fn unreadable(e: std::io::Error) -> CorruptReason {
    CorruptReason::Unreadable(e.to_string())
}

/// A cursor over metadata bytes.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], CorruptReason> {
        if self.0.len() < n {
            return Err(CorruptReason::BadMetadata(format!(
                "{what} runs past the metadata"
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self, what: &str) -> Result<u64, CorruptReason> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, what: &str) -> Result<String, CorruptReason> {
        let len = u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")) as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CorruptReason::BadMetadata(format!("{what} is not UTF-8")))
    }
}
