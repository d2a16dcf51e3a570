//! Reading a safetensors header from untrusted bytes, with a message that says what is wrong
//! (the header length, the JSON, a tensor's dtype, shape or offsets, a truncated file) instead of
//! the `safetensors` crate's bare error names. Both the weight store and the stage files read
//! their headers through here, so a bad file gets the same words wherever it is opened.

use safetensors::tensor::Dtype;
use std::collections::BTreeMap;

/// The largest header accepted (the `safetensors` crate's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor's entry: offsets are absolute byte positions in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

/// A checked header: every tensor's bytes lie inside the file, none overlap, and each holds
/// exactly what its dtype and shape need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    pub tensors: BTreeMap<String, TensorEntry>,
    pub metadata: BTreeMap<String, String>,
}

/// The dtype names the format defines, with their element sizes in bytes.
const DTYPES: [(&str, Dtype, usize); 14] = [
    ("BOOL", Dtype::BOOL, 1),
    ("U8", Dtype::U8, 1),
    ("I8", Dtype::I8, 1),
    ("F8_E5M2", Dtype::F8_E5M2, 1),
    ("F8_E4M3", Dtype::F8_E4M3, 1),
    ("I16", Dtype::I16, 2),
    ("U16", Dtype::U16, 2),
    ("F16", Dtype::F16, 2),
    ("BF16", Dtype::BF16, 2),
    ("I32", Dtype::I32, 4),
    ("U32", Dtype::U32, 4),
    ("F32", Dtype::F32, 4),
    ("I64", Dtype::I64, 8),
    ("F64", Dtype::F64, 8),
];

/// Parses and checks the header of a safetensors file whose first bytes are `prefix` and whose
/// total length is `file_len` (`prefix` may be the whole file or just its start; it must hold
/// the header). The error is one sentence, without the file's name (the caller adds it).
pub fn parse(prefix: &[u8], file_len: u64) -> Result<Header, String> {
    if file_len < 8 || prefix.len() < 8 {
        return Err(format!("the file is {file_len} bytes, too short for the 8-byte header length (empty or truncated)"));
    }
    let n = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(format!("the header length says {n} bytes, over the {MAX_HEADER_BYTES}-byte limit (not a safetensors file?)"));
    }
    if n > file_len - 8 {
        return Err(format!("the header length says {n} bytes, but only {} follow it (truncated?)", file_len - 8));
    }
    let header_end = 8 + n as usize;
    let bytes = prefix.get(8..header_end).ok_or_else(|| "the header was not read whole".to_string())?;
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the header is not UTF-8 ({e})"))?;
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("the header JSON does not parse: {e}"))?;
    let serde_json::Value::Object(entries) = json else {
        return Err("the header JSON is not an object of tensors".into());
    };
    let mut header = Header::default();
    for (name, value) in entries {
        if name == "__metadata__" {
            header.metadata = metadata(&value)?;
            continue;
        }
        let entry = tensor(&name, &value, header_end)?;
        header.tensors.insert(name, entry);
    }
    check_layout(&header, header_end, file_len)?;
    Ok(header)
}

fn metadata(v: &serde_json::Value) -> Result<BTreeMap<String, String>, String> {
    let obj = v.as_object().ok_or("`__metadata__` is not an object of strings")?;
    obj.iter()
        .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())).ok_or(format!("`__metadata__` entry `{k}` is not a string")))
        .collect()
}

fn tensor(name: &str, v: &serde_json::Value, base: usize) -> Result<TensorEntry, String> {
    let field = |f: &str| v.get(f).ok_or(format!("tensor `{name}` has no `{f}` field"));
    let dtype_name = field("dtype")?.as_str().ok_or(format!("tensor `{name}`: `dtype` is not a string"))?;
    let (_, dtype, size) = DTYPES.iter().find(|(n, _, _)| *n == dtype_name).ok_or_else(|| {
        let known: Vec<_> = DTYPES.iter().map(|(n, _, _)| *n).collect();
        format!("tensor `{name}` has unknown dtype `{dtype_name}` (expected one of {})", known.join(", "))
    })?;
    let usize_of = |x: &serde_json::Value| x.as_u64().and_then(|x| usize::try_from(x).ok());
    let shape = field("shape")?
        .as_array()
        .and_then(|dims| dims.iter().map(usize_of).collect::<Option<Vec<_>>>())
        .ok_or(format!("tensor `{name}`: `shape` is not a list of non-negative integers"))?;
    let offsets = field("data_offsets")?
        .as_array()
        .filter(|o| o.len() == 2)
        .and_then(|o| Some((usize_of(&o[0])?, usize_of(&o[1])?)))
        .ok_or(format!("tensor `{name}`: `data_offsets` is not a pair of non-negative integers"))?;
    let (s, e) = offsets;
    if e < s {
        return Err(format!("tensor `{name}`: data_offsets [{s}, {e}] end before they start"));
    }
    let need = shape.iter().try_fold(*size, |a, &d| a.checked_mul(d));
    if need != Some(e - s) {
        let need = need.map_or("more than fits in memory".to_string(), |b| format!("{b} bytes"));
        return Err(format!("tensor `{name}`: data_offsets [{s}, {e}] hold {} bytes, but {dtype_name} {shape:?} needs {need}", e - s));
    }
    let abs = |x: usize| base.checked_add(x).ok_or(format!("tensor `{name}`: data_offsets [{s}, {e}] are past any file's end"));
    Ok(TensorEntry { dtype: *dtype, shape, start: abs(s)?, end: abs(e)? })
}

/// Every tensor inside the file and none overlapping (gaps are tolerated; the data must start
/// at the first byte after the header, as the format writes it, only in that nothing precedes it).
fn check_layout(h: &Header, header_end: usize, file_len: u64) -> Result<(), String> {
    let mut by_start: Vec<(&String, &TensorEntry)> = h.tensors.iter().collect();
    by_start.sort_by_key(|(n, t)| (t.start, t.end, n.as_str()));
    for pair in by_start.windows(2) {
        let ((a, ta), (b, tb)) = (pair[0], pair[1]);
        if tb.start < ta.end && tb.end > tb.start {
            let rel = |t: &TensorEntry| format!("[{}, {}]", t.start - header_end, t.end - header_end);
            return Err(format!("tensors `{a}` {} and `{b}` {} overlap", rel(ta), rel(tb)));
        }
    }
    let data_len = file_len - header_end as u64;
    if let Some((name, t)) = by_start.iter().max_by_key(|(_, t)| t.end) {
        if t.end as u64 > file_len {
            return Err(format!(
                "tensor `{name}` ends at data offset {}, past the end of the data ({data_len} bytes): the file is truncated",
                t.end - header_end
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.resize(b.len() + data, 0);
        b
    }

    fn err(bytes: &[u8]) -> String {
        parse(bytes, bytes.len() as u64).unwrap_err()
    }

    #[test]
    fn good_header_parses_and_bad_ones_are_named() {
        let ok = file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#, 8);
        let h = parse(&ok, ok.len() as u64).unwrap();
        assert_eq!(h.tensors["a"].shape, vec![2]);
        assert_eq!(h.tensors["a"].end - h.tensors["a"].start, 8);
        assert_eq!(h.metadata["k"], "v");
        assert!(err(b"").contains("0 bytes"));
        assert!(err(&[255; 16]).contains("header length says"));
        assert!(err(&ok[..ok.len() - 1]).contains("truncated"));
        assert!(err(&file("{nope", 0)).contains("JSON does not parse"));
        assert!(err(&file(r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, 8)).contains("unknown dtype `Q4`"));
        assert!(err(&file(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8)).contains("needs 12 bytes"));
        let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        assert!(err(&file(overlap, 12)).contains("overlap"));
        assert!(err(&file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, 8)).contains("past the end"));
    }
}
