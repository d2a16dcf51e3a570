//! What every family's `exec` contract shares: reading a component's inputs from a safetensors
//! file with errors that name the file, the tensor and what was expected, and seeded inputs for
//! `bench`. The families say which tensors and shapes (`wan/exec_inputs.rs`, ...).

use crate::family::{Component, FamilyError};
use crate::random_weights::random_input;
use std::collections::BTreeMap;
use vidlower_ir::{DType, HostTensor, TensorType};

/// An inputs file being checked against one component.
pub struct InputFile<'a> {
    file: BTreeMap<String, HostTensor>,
    source: &'a str,
    component: Component,
    expected: String,
    dtype: DType,
}

impl<'a> InputFile<'a> {
    /// `file` (read from `source`) for component `c`, which takes `wanted` (described by
    /// `expected`); floats are converted to `dtype`. Returns the tensors it does not take too.
    pub fn new(
        file: BTreeMap<String, HostTensor>,
        source: &'a str,
        component: Component,
        wanted: &[&str],
        expected: String,
        dtype: DType,
    ) -> (Self, Vec<String>) {
        let ignored = file.keys().filter(|k| !wanted.contains(&k.as_str())).cloned().collect();
        (InputFile { file, source, component, expected, dtype }, ignored)
    }

    /// The tensor `name`, or an error naming the file and what the component takes.
    pub fn take(&mut self, name: &str) -> Result<HostTensor, FamilyError> {
        self.file.remove(name).ok_or_else(|| {
            FamilyError::Invalid(format!("{} has no tensor `{name}`; the {} takes {}", self.source, self.component.name(), self.expected))
        })
    }

    /// "input `name` in FILE: expected WANT, got TYPE".
    pub fn bad(&self, name: &str, t: &HostTensor, want: String) -> FamilyError {
        FamilyError::Invalid(format!("input `{name}` in {}: expected {want}, got {}", self.source, TensorType::new(t.dtype, t.dims.clone())))
    }

    /// A float tensor converted to the compute dtype.
    pub fn float(&self, name: &str, t: &HostTensor, want: &str) -> Result<HostTensor, FamilyError> {
        if !t.dtype.is_float() {
            return Err(self.bad(name, t, format!("a float tensor {want}")));
        }
        Ok(t.convert(self.dtype))
    }

    /// Token ids `name`: integers [B, L] inside the vocabulary, as int64.
    pub fn token_ids(&mut self, name: &str, vocab: i64) -> Result<HostTensor, FamilyError> {
        let ids = self.take(name)?;
        if ids.dims.len() != 2 || ids.dims.contains(&0) || ids.dtype.is_float() || ids.dtype == DType::I1 {
            return Err(self.bad(name, &ids, "int64 [B, L]".into()));
        }
        let ids = ids.convert(DType::I64);
        let values = ids.to_vec::<i64>().map_err(|e| FamilyError::Invalid(e.to_string()))?;
        if let Some(id) = values.into_iter().find(|&id| id < 0 || id >= vocab) {
            return Err(FamilyError::Invalid(format!("input `{name}` in {}: token id {id} is outside the vocabulary [0, {vocab})", self.source)));
        }
        Ok(ids)
    }

    /// Text states `name` [batch, L, dim] (L >= 1), converted to the compute dtype.
    pub fn text_states(&mut self, name: &str, batch: i64, dim: i64) -> Result<HostTensor, FamilyError> {
        let t = self.take(name)?;
        if t.dims.len() != 3 || t.dims[0] != batch || t.dims[1] < 1 || t.dims[2] != dim {
            return Err(self.bad(name, &t, format!("[{batch}, L, {dim}] (B from hidden_states)")));
        }
        self.float(name, &t, "[B, L, D]")
    }

    /// An attention mask `name` [batch, len] of 0/1 (bool, integer or float), as f32 0/1.
    pub fn mask(&mut self, name: &str, batch: i64, len: i64) -> Result<HostTensor, FamilyError> {
        let t = self.take(name)?;
        if t.dims != [batch, len] {
            return Err(self.bad(name, &t, format!("[{batch}, {len}] of 0/1 (one per text token)")));
        }
        let m = t.convert(DType::F32);
        if let Some(v) = m.to_f32_vec().into_iter().find(|&v| v != 0.0 && v != 1.0) {
            return Err(FamilyError::Invalid(format!("input `{name}` in {}: mask value {v}; expected 0 or 1", self.source)));
        }
        Ok(m)
    }

    /// A `timestep` [B] (int64 as the pipelines pass it, or float) as f32, as diffusers embeds
    /// `timestep.float()`.
    pub fn timestep(&mut self, name: &str, batch: i64) -> Result<HostTensor, FamilyError> {
        let t = self.take(name)?;
        if t.dims != [batch] || t.dtype == DType::I1 {
            return Err(self.bad(name, &t, format!("[{batch}] (one per batch row; int64 as the pipeline passes, or float)")));
        }
        Ok(t.convert(DType::F32))
    }
}

/// A seeded float input in [-1, 1) of `dims`, in `dtype`.
pub fn random_float(seed: u64, name: &str, dims: Vec<i64>, dtype: DType) -> Result<(String, HostTensor), FamilyError> {
    let ty = TensorType::new(DType::F32, dims.clone());
    let t = HostTensor::from_f32(dims, &random_input(seed, name, &ty)).map_err(|e| FamilyError::Invalid(e.to_string()))?;
    Ok((name.to_string(), t.convert(dtype)))
}

/// Seeded token ids [B, L] spread over the vocabulary.
pub fn random_token_ids(seed: u64, b: i64, l: i64, vocab: i64) -> Result<HostTensor, FamilyError> {
    let ty = TensorType::new(DType::F32, vec![b, l]);
    let ids: Vec<i64> = random_input(seed, "input_ids", &ty).iter().map(|u| ((u + 1.0) * 0.5 * (vocab as f32 - 1.0)) as i64).collect();
    HostTensor::from_slice([b, l], &ids).map_err(|e| FamilyError::Invalid(e.to_string()))
}

/// A [B] tensor of `value`.
pub fn filled(b: i64, value: f32) -> Result<HostTensor, FamilyError> {
    HostTensor::from_f32(vec![b], &vec![value; b as usize]).map_err(|e| FamilyError::Invalid(e.to_string()))
}
