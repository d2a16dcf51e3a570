//! A compiled graph: the executable plus the graph's signature, so inputs are bound by name and
//! checked against the IR types before every execute (the plugins check only byte sizes, and a
//! wrong dtype or a transposed shape of the same size would silently give wrong numbers).

use crate::pjrt::{Buffer, Client, Device, LoadedExecutable, PjrtError};
use crate::tensor::HostTensor;
use std::collections::HashMap;
use thiserror::Error;
use vidlower_ir::{Graph, Op, TensorType};

#[derive(Debug, Error)]
pub enum ProgramError {
    #[error("{kind} `{name}`: expected {expected}, got {got}")]
    Mismatch { kind: &'static str, name: String, expected: TensorType, got: String },
    #[error("{kind} `{name}` is missing (the graph takes {expected})")]
    Missing { kind: &'static str, name: String, expected: String },
    #[error(transparent)]
    Pjrt(#[from] PjrtError),
}

/// Why weights could not be uploaded from a store.
#[derive(Debug, Error)]
pub enum WeightUploadError {
    #[error(transparent)]
    Weights(crate::weights::WeightsError),
    #[error(transparent)]
    Program(ProgramError),
}

/// Whether a graph input is a weight or a plain input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Weight,
    Input,
}

impl ParamKind {
    fn name(self) -> &'static str {
        match self {
            ParamKind::Weight => "weight",
            ParamKind::Input => "input",
        }
    }
}

/// The executable's parameters and results, in order, with their IR types.
#[derive(Clone, Debug)]
pub struct Signature {
    pub params: Vec<(String, ParamKind, TensorType)>,
    pub results: Vec<(String, TensorType)>,
}

impl Signature {
    pub fn of(graph: &Graph) -> Self {
        let params = graph
            .inputs
            .iter()
            .map(|&v| {
                let (name, kind) = match &graph.node(v).op {
                    Op::Weight { name } => (name.clone(), ParamKind::Weight),
                    Op::Input { name } => (name.clone(), ParamKind::Input),
                    _ => unreachable!("graph inputs are input/weight nodes"),
                };
                (name, kind, graph.tensor_ty(v).clone())
            })
            .collect();
        let results = graph.outputs.iter().map(|o| (o.name.clone(), graph.tensor_ty(o.value).clone())).collect();
        Signature { params, results }
    }

    /// Checks `t` against parameter `i`.
    fn check(&self, i: usize, t: &HostTensor) -> Result<(), ProgramError> {
        let (name, kind, ty) = &self.params[i];
        if t.dtype != ty.dtype || t.dims != ty.shape {
            let got = TensorType::new(t.dtype, t.dims.clone()).to_string();
            return Err(ProgramError::Mismatch { kind: kind.name(), name: name.clone(), expected: ty.clone(), got });
        }
        Ok(())
    }
}

/// A single-device executable with its signature. Weights are uploaded once and kept on the
/// device; plain inputs are uploaded per call.
pub struct Program {
    pub executable: LoadedExecutable,
    pub signature: Signature,
    device: Device,
    resident: HashMap<usize, Buffer>,
}

impl Program {
    pub fn new(executable: LoadedExecutable, signature: Signature, client: &Client) -> Result<Self, ProgramError> {
        let device = client.addressable_devices()?.into_iter().next().ok_or(PjrtError::Usage("the client has no devices".into()))?;
        Ok(Program { executable, signature, device, resident: HashMap::new() })
    }

    /// Uploads every weight, looked up by name in `weights`; checked against the signature.
    pub fn upload_weights(&mut self, weights: &mut dyn FnMut(&str, &TensorType) -> Option<HostTensor>) -> Result<(), ProgramError> {
        let client = self.device.client();
        for (i, (name, kind, ty)) in self.signature.params.iter().enumerate() {
            if *kind != ParamKind::Weight {
                continue;
            }
            let t = weights(name, ty).ok_or_else(|| ProgramError::Missing {
                kind: "weight",
                name: name.clone(),
                expected: ty.to_string(),
            })?;
            self.signature.check(i, &t)?;
            self.resident.insert(i, client.buffer_from_host(&t, &self.device)?);
        }
        Ok(())
    }

    /// Uploads every weight from `store` (converted to the graph's dtypes). A weight the store
    /// lacks, or has in another shape, is reported as the store's error, naming file and tensor.
    pub fn upload_weights_from(&mut self, store: &crate::weights::WeightStore) -> Result<(), WeightUploadError> {
        let mut failed = None;
        self.upload_weights(&mut |name, ty| match store.load(name, ty) {
            Ok(t) => Some(t),
            Err(e) => {
                failed.get_or_insert(e);
                None
            }
        })
        .map_err(|e| match failed.take() {
            Some(w) => WeightUploadError::Weights(w),
            None => WeightUploadError::Program(e),
        })
    }

    /// Runs once with the plain inputs given by name; returns the outputs by name, in order.
    pub fn run(&self, inputs: &HashMap<String, HostTensor>) -> Result<Vec<(String, HostTensor)>, ProgramError> {
        let client = self.device.client();
        let mut uploaded = Vec::new();
        for (i, (name, kind, ty)) in self.signature.params.iter().enumerate() {
            if *kind == ParamKind::Input {
                let t = inputs.get(name).ok_or_else(|| ProgramError::Missing {
                    kind: "input",
                    name: name.clone(),
                    expected: ty.to_string(),
                })?;
                self.signature.check(i, t)?;
                uploaded.push((i, client.buffer_from_host(t, &self.device)?));
            } else if !self.resident.contains_key(&i) {
                return Err(ProgramError::Missing { kind: "weight", name: name.clone(), expected: "an uploaded weight".into() });
            }
        }
        let args: Vec<&Buffer> = (0..self.signature.params.len())
            .map(|i| self.resident.get(&i).unwrap_or_else(|| &uploaded.iter().find(|(j, _)| *j == i).expect("uploaded above").1))
            .collect();
        let mut outs = self.executable.execute(&[args])?;
        let outs = outs.pop().unwrap_or_default();
        let mut results = Vec::with_capacity(outs.len());
        for ((name, _), buf) in self.signature.results.iter().zip(outs) {
            results.push((name.clone(), buf.to_host()?));
        }
        Ok(results)
    }

    /// Runs once with parameters given as device buffers, by name, and returns the outputs as
    /// device buffers (nothing is copied to or from the host). Each parameter is taken from
    /// this program's uploaded weights if it has it, else from `args`, which may hold inputs
    /// and weights (weights shared between programs) and more names than the program takes.
    /// Buffers are checked against the signature's dtype and shape.
    pub fn run_buffers(&self, args: &HashMap<&str, &Buffer>) -> Result<Vec<(String, Buffer)>, ProgramError> {
        let mut list: Vec<&Buffer> = Vec::with_capacity(self.signature.params.len());
        for (i, (name, kind, ty)) in self.signature.params.iter().enumerate() {
            let buf = match self.resident.get(&i) {
                Some(b) => b,
                None => *args.get(name.as_str()).ok_or_else(|| ProgramError::Missing {
                    kind: kind.name(),
                    name: name.clone(),
                    expected: ty.to_string(),
                })?,
            };
            if buf.dtype() != ty.dtype || buf.dims() != ty.shape.as_slice() {
                let got = TensorType::new(buf.dtype(), buf.dims().to_vec()).to_string();
                return Err(ProgramError::Mismatch { kind: kind.name(), name: name.clone(), expected: ty.clone(), got });
            }
            list.push(buf);
        }
        let mut outs = self.executable.execute(&[list])?;
        let outs = outs.pop().unwrap_or_default();
        Ok(self.signature.results.iter().map(|(name, _)| name.clone()).zip(outs).collect())
    }

    /// Copies `t` to this program's device (for [`run_buffers`](Self::run_buffers)).
    pub fn upload(&self, t: &HostTensor) -> Result<Buffer, ProgramError> {
        Ok(self.device.client().buffer_from_host(t, &self.device)?)
    }
}
