//! Model weights from safetensors files, memory-mapped: one file, a directory of them, or a
//! sharded set named by `*.safetensors.index.json`. Tensors are read on demand and converted to
//! the compute dtype as they are uploaded, so a checkpoint is never held twice in memory; a
//! tensor stored in the compute dtype is handed to the device straight from the mapping
//! ([`WeightStore::host_bytes`]). With LoRAs attached ([`WeightStore::with_lora`]), the weights
//! they adapt are merged as they are read (and so never take the straight-from-the-mapping path).

use crate::lora::{LoraError, LoraSet};
use crate::pjrt::HostBytes;
use crate::tensor::HostTensor;
use memmap2::Mmap;
use safetensors::tensor::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use vidlower_ir::{DType, TensorType};

#[derive(Debug, Error)]
pub enum WeightsError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: broken sharded-checkpoint index: {message}", path.display())]
    Index { path: PathBuf, message: String },
    #[error("{}: no *.safetensors files (and no *.safetensors.index.json) found", path.display())]
    Empty { path: PathBuf },
    #[error("weight `{name}` is missing from {} (the model graph needs {expected})", dir.display())]
    Missing { name: String, dir: PathBuf, expected: TensorType },
    #[error("weight `{name}` in {}: expected shape {expected:?} (as the component's config.json implies), the file has {found:?}", path.display())]
    Shape { name: String, path: PathBuf, expected: Vec<i64>, found: Vec<i64> },
    #[error("weight `{name}` in {}: dtype {dtype} cannot be used (expected F32, BF16, F16 or F64)", path.display())]
    Dtype { name: String, path: PathBuf, dtype: String },
}

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<i64>,
    start: usize,
    end: usize,
}

/// The weights of one model component.
pub struct WeightStore {
    root: PathBuf,
    /// Shared with transfers still reading from a mapping.
    files: Vec<(PathBuf, Arc<Mmap>)>,
    entries: BTreeMap<String, Entry>,
    /// LoRAs merged into the weights they adapt as those are loaded.
    lora: Option<Arc<LoraSet>>,
}

impl WeightStore {
    /// Opens `path`: a `.safetensors` file, or a directory holding one or more (a sharded
    /// checkpoint's index file, when present, must agree with the files).
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| WeightsError::Io { path: p, source }
        };
        let mut paths = Vec::new();
        if path.is_dir() {
            for e in std::fs::read_dir(path).map_err(io(path))? {
                let p = e.map_err(io(path))?.path();
                if p.extension().is_some_and(|x| x == "safetensors") {
                    paths.push(p);
                }
            }
            paths.sort();
        } else {
            paths.push(path.to_path_buf());
        }
        if paths.is_empty() {
            return Err(WeightsError::Empty { path: path.into() });
        }
        let mut store = WeightStore { root: path.into(), files: Vec::new(), entries: BTreeMap::new(), lora: None };
        for p in paths {
            let file = std::fs::File::open(&p).map_err(io(&p))?;
            // SAFETY: the map is read-only; a checkpoint changing under a running process is a
            // user error that at worst gives wrong values, as any reader of that file would.
            let map = unsafe { Mmap::map(&file) }.map_err(io(&p))?;
            let header = crate::safetensors_header::parse(&map, map.len() as u64)
                .map_err(|message| WeightsError::Format { path: p.clone(), message })?;
            let index = store.files.len();
            for (name, t) in header.tensors {
                let shape = t.shape.iter().map(|&d| d as i64).collect();
                store.entries.insert(name, Entry { file: index, dtype: t.dtype, shape, start: t.start, end: t.end });
            }
            store.files.push((p, Arc::new(map)));
        }
        if path.is_dir() {
            store.check_indexes(path)?;
        }
        Ok(store)
    }

    /// This store with `lora` merged into every weight it adapts as [`load`](Self::load) reads it.
    /// Every LoRA key is checked first against the stored names and shapes (`component` names the
    /// store in errors): on an error nothing is attached.
    pub fn with_lora(mut self, lora: Arc<LoraSet>, component: &str) -> Result<Self, LoraError> {
        lora.check(component, &|name| self.shape_of(name).map(<[i64]>::to_vec))?;
        self.lora = Some(lora);
        Ok(self)
    }

    /// The LoRAs attached, if any.
    pub fn lora(&self) -> Option<&LoraSet> {
        self.lora.as_deref()
    }

    /// Every `*.safetensors.index.json` in `dir` agrees with the files: it parses, each shard it
    /// names is there, and each weight it maps is in the shard it names.
    fn check_indexes(&self, dir: &Path) -> Result<(), WeightsError> {
        let entries = std::fs::read_dir(dir).map_err(|source| WeightsError::Io { path: dir.into(), source })?;
        for e in entries.flatten() {
            let path = e.path();
            if !path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".safetensors.index.json")) {
                continue;
            }
            let bad = |message: String| WeightsError::Index { path: path.clone(), message };
            let text = std::fs::read_to_string(&path).map_err(|source| WeightsError::Io { path: path.clone(), source })?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("the JSON does not parse: {e}")))?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| bad("no `weight_map` object (expected {\"weight_map\": {\"<weight>\": \"<shard file>\"}})".into()))?;
            for (weight, shard) in map {
                let shard = shard.as_str().ok_or_else(|| bad(format!("`weight_map` entry `{weight}` is not a file name")))?;
                let Some(file) = self.files.iter().position(|(p, _)| p.file_name().is_some_and(|n| n == shard)) else {
                    return Err(bad(format!("weight `{weight}` is mapped to shard {shard}, which is not in {}", dir.display())));
                };
                if self.entries.get(weight).is_none_or(|e| e.file != file) {
                    return Err(bad(format!("weight `{weight}` is mapped to shard {shard}, which does not hold it")));
                }
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The shape weight `name` is stored with.
    pub fn shape_of(&self, name: &str) -> Option<&[i64]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// The dtype weight `name` is stored in, if it is stored in a float dtype vidlower reads.
    pub fn dtype_of(&self, name: &str) -> Option<DType> {
        self.entries.get(name).and_then(|e| float_dtype(e.dtype))
    }

    /// The float dtype most of the stored bytes are in (what the checkpoint was saved as; a few
    /// modules kept in f32 beside bf16 weights do not change it), or `None` if there is none.
    pub fn stored_dtype(&self) -> Option<DType> {
        let mut bytes: BTreeMap<DType, usize> = BTreeMap::new();
        for e in self.entries.values() {
            if let Some(d) = float_dtype(e.dtype) {
                *bytes.entry(d).or_default() += e.end - e.start;
            }
        }
        bytes.into_iter().max_by_key(|&(_, n)| n).map(|(d, _)| d)
    }

    /// Checks that weight `name` is stored with `ty`'s shape in a float dtype, without reading it
    /// (the pre-flight check of a model directory before any work).
    pub fn check(&self, name: &str, ty: &TensorType) -> Result<(), WeightsError> {
        self.checked_entry(name, ty).map(|_| ())
    }

    /// Weight `name` converted to `ty.dtype`, checked against `ty.shape`.
    pub fn load(&self, name: &str, ty: &TensorType) -> Result<HostTensor, WeightsError> {
        let (e, dtype) = self.checked_entry(name, ty)?;
        let path = &self.files[e.file].0;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let data = self.converted(name, e, dtype, ty.dtype, threads)?;
        HostTensor::new(ty.dtype, e.shape.clone(), data)
            .map_err(|err| WeightsError::Format { path: path.clone(), message: format!("tensor `{name}`: {err}") })
    }

    /// The stored bytes of `e`, checked to be as many as its dtype and shape take.
    fn checked_bytes(&self, name: &str, e: &Entry, dtype: DType) -> Result<&[u8], WeightsError> {
        let (path, map) = &self.files[e.file];
        let expected = e.shape.iter().product::<i64>() as usize * dtype.size_in_bytes();
        if e.end - e.start != expected {
            let message = format!("tensor `{name}`: {} bytes for {dtype}{:?}", e.end - e.start, e.shape);
            return Err(WeightsError::Format { path: path.clone(), message });
        }
        Ok(&map[e.start..e.end])
    }

    /// Weight `name` as the bytes of a `ty` tensor, for a device transfer: the mapped file bytes
    /// themselves when it is stored in `ty.dtype` and no LoRA touches it (no copy), else
    /// converted (and merged) on up to `threads` threads. Checked as
    /// [`load`](Self::load) checks, with the same values.
    pub fn host_bytes(&self, name: &str, ty: &TensorType, threads: usize) -> Result<HostBytes, WeightsError> {
        let (e, dtype) = self.checked_entry(name, ty)?;
        let touched = self.lora.as_ref().is_some_and(|l| l.touches(name));
        if dtype == ty.dtype && !touched {
            self.checked_bytes(name, e, dtype)?;
            return Ok(HostBytes::Mapped { map: self.files[e.file].1.clone(), range: e.start..e.end });
        }
        Ok(HostBytes::Owned(Arc::new(self.converted(name, e, dtype, ty.dtype, threads)?)))
    }

    /// The stored bytes of `e` as `to` elements: merged with the LoRAs that touch `name` (in f32
    /// whatever the stored and compute dtypes, then cast once, block by block: no weight-sized f32
    /// copy), else converted.
    fn converted(&self, name: &str, e: &Entry, dtype: DType, to: DType, threads: usize) -> Result<Vec<u8>, WeightsError> {
        let bytes = self.checked_bytes(name, e, dtype)?;
        Ok(match &self.lora {
            Some(lora) if lora.touches(name) => {
                let inp = e.shape.get(1).copied().unwrap_or(1) as usize;
                crate::lora_merge::merge_into_dtype(bytes, dtype, to, inp, &lora.terms(name), threads)
            }
            _ => crate::float_convert::convert_floats(bytes, dtype, to, threads),
        })
    }

    /// The files the store maps, in order (what a plain read of the checkpoint reads).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// Weight `name`'s entry and stored float dtype, checked against `ty`'s shape.
    fn checked_entry(&self, name: &str, ty: &TensorType) -> Result<(&Entry, DType), WeightsError> {
        let e = self.entries.get(name).ok_or_else(|| WeightsError::Missing {
            name: name.into(),
            dir: self.root.clone(),
            expected: ty.clone(),
        })?;
        let path = &self.files[e.file].0;
        if e.shape != ty.shape {
            return Err(WeightsError::Shape { name: name.into(), path: path.clone(), expected: ty.shape.clone(), found: e.shape.clone() });
        }
        let dtype = float_dtype(e.dtype)
            .ok_or_else(|| WeightsError::Dtype { name: name.into(), path: path.clone(), dtype: format!("{:?}", e.dtype) })?;
        Ok((e, dtype))
    }
}

/// The IR dtype of a stored float dtype (the ones weights may have).
fn float_dtype(d: Dtype) -> Option<DType> {
    match d {
        Dtype::F32 => Some(DType::F32),
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F16 => Some(DType::F16),
        Dtype::F64 => Some(DType::F64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors_io::save;

    #[test]
    fn sharded_dir_loads_and_converts() {
        let dir = tempfile::tempdir().unwrap();
        let a = HostTensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.5]).unwrap();
        let b = HostTensor::from_f32(vec![3], &[0.5, -1.0, 2.0]).unwrap().convert(DType::BF16);
        save(&dir.path().join("model-00001-of-00002.safetensors"), &[("a".into(), a.clone())]).unwrap();
        save(&dir.path().join("model-00002-of-00002.safetensors"), &[("b".into(), b)]).unwrap();
        let store = WeightStore::open(dir.path()).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.load("a", &TensorType::new(DType::F32, vec![2, 2])).unwrap(), a);
        let b32 = store.load("b", &TensorType::new(DType::F32, vec![3])).unwrap();
        assert_eq!(b32.to_f32_vec(), vec![0.5, -1.0, 2.0]);
        let e = store.load("a", &TensorType::new(DType::F32, vec![4])).unwrap_err().to_string();
        assert!(e.contains("`a`") && e.contains("[4]") && e.contains("[2, 2]"), "{e}");
        let e = store.load("c", &TensorType::new(DType::F32, vec![1])).unwrap_err().to_string();
        assert!(e.contains("`c` is missing"), "{e}");
        assert!(WeightStore::open(&dir.path().join("none")).is_err());
        assert_eq!((store.dtype_of("a"), store.dtype_of("b"), store.dtype_of("c")), (Some(DType::F32), Some(DType::BF16), None));
        // 16 bytes of f32 against 6 of bf16.
        assert_eq!(store.stored_dtype(), Some(DType::F32));
    }
}
