//! Reading and writing tensors as safetensors files. Files are written to a temp name beside the
//! target and renamed into place, so a crash never leaves a half-written file.

use crate::tensor::HostTensor;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use vidlower_ir::DType;

#[derive(Debug, Error)]
pub enum SafetensorsError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: tensor `{name}` has dtype {dtype}, which vidlower does not handle (expected F32, BF16, F16, F64, BOOL, I8, U8, I32 or I64)", path.display())]
    Dtype { path: PathBuf, name: String, dtype: String },
}

fn to_st(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::BF16 => Dtype::BF16,
        DType::F16 => Dtype::F16,
        DType::F64 => Dtype::F64,
        DType::I1 => Dtype::BOOL,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
    }
}

fn from_st(d: Dtype) -> Option<DType> {
    DType::ALL.into_iter().find(|&x| to_st(x) == d)
}

/// Every tensor in the file at `path`, by name.
pub fn load(path: &Path) -> Result<Tensors, SafetensorsError> {
    load_with_metadata(path).map(|(tensors, _)| tensors)
}

/// Tensors by name.
pub type Tensors = BTreeMap<String, HostTensor>;

/// Every tensor in the file at `path`, by name, and the header's `__metadata__` strings.
pub fn load_with_metadata(path: &Path) -> Result<(Tensors, BTreeMap<String, String>), SafetensorsError> {
    let bytes = std::fs::read(path).map_err(|source| SafetensorsError::Io { path: path.into(), source })?;
    let header = crate::safetensors_header::parse(&bytes, bytes.len() as u64)
        .map_err(|message| SafetensorsError::Format { path: path.into(), message })?;
    let mut out = BTreeMap::new();
    for (name, e) in header.tensors {
        let dtype = from_st(e.dtype).ok_or_else(|| SafetensorsError::Dtype {
            path: path.into(),
            name: name.clone(),
            dtype: format!("{:?}", e.dtype),
        })?;
        let dims: Vec<i64> = e.shape.iter().map(|&d| d as i64).collect();
        let t = HostTensor::new(dtype, dims, bytes[e.start..e.end].to_vec())
            .map_err(|err| SafetensorsError::Format { path: path.into(), message: format!("tensor `{name}`: {err}") })?;
        out.insert(name, t);
    }
    let metadata = header.metadata;
    Ok((out, metadata))
}

/// Writes `tensors` to `path` atomically (temp file in the same dir, then rename).
pub fn save(path: &Path, tensors: &[(String, HostTensor)]) -> Result<(), SafetensorsError> {
    save_with_metadata(path, tensors, &BTreeMap::new())
}

/// [`save`] with `__metadata__` strings in the header (none when `metadata` is empty).
pub fn save_with_metadata(
    path: &Path,
    tensors: &[(String, HostTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), SafetensorsError> {
    let io = |source| SafetensorsError::Io { path: path.into(), source };
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, t)| {
            let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
            TensorView::new(to_st(t.dtype), shape, &t.data)
                .map(|v| (n.clone(), v))
                .map_err(|e| SafetensorsError::Format { path: path.into(), message: format!("tensor `{n}`: {e}") })
        })
        .collect::<Result<_, _>>()?;
    let info = (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    let bytes = safetensors::serialize(views, &info)
        .map_err(|e| SafetensorsError::Format { path: path.into(), message: e.to_string() })?;
    crate::atomic_file::write_atomic(path, |w| w.write_all(&bytes)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let a = HostTensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = HostTensor::scalar(7i32);
        save(&p, &[("a".into(), a.clone()), ("b".into(), b.clone())]).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back["a"], a);
        assert_eq!(back["b"], b);
        let meta: BTreeMap<String, String> = [("k".to_string(), "{\"v\": 1}".to_string())].into();
        save_with_metadata(&p, &[("a".into(), a.clone())], &meta).unwrap();
        assert_eq!(load_with_metadata(&p).unwrap(), ([("a".to_string(), a.clone())].into(), meta));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("not a valid safetensors file"));
        assert!(load(&dir.path().join("missing.safetensors")).unwrap_err().to_string().contains("missing.safetensors"));
    }
}
