//! A compiled graph: the executable plus the graph's signature, so inputs are bound by name and
//! checked against the IR types before every execute (the plugins check only byte sizes, and a
//! wrong dtype or a transposed shape of the same size would silently give wrong numbers).
//!
//! A graph with a mesh compiles to one executable over the mesh's devices. Its program keeps
//! each weight as per-device pieces, cuts plain inputs the same way on every run and joins the
//! outputs back, so callers see whole host tensors exactly as with a single-device program.

use crate::pjrt::{Buffer, Client, Device, LoadedExecutable, PjrtError};
use crate::shard::{piece_holders, shard_of, unshard, ShardError};
use crate::tensor::HostTensor;
use crate::weight_upload::{upload_from_store, UploadOptions, WeightParam};
use std::collections::HashMap;
use thiserror::Error;
use vidlower_ir::{Graph, Mesh, Op, Sharding, TensorType};

#[derive(Debug, Error)]
pub enum ProgramError {
    #[error("{kind} `{name}`: expected {expected}, got {got}")]
    Mismatch { kind: &'static str, name: String, expected: TensorType, got: String },
    #[error("{kind} `{name}` is missing (the graph takes {expected})")]
    Missing { kind: &'static str, name: String, expected: String },
    #[error("{kind} `{name}`: {source}")]
    Shard { kind: &'static str, name: String, source: Box<ShardError> },
    #[error("the executable runs on {got} device(s) but the graph's mesh {mesh} has {expected}; compile it with CompileOptions::for_graph")]
    Devices { mesh: String, expected: u32, got: usize },
    #[error("{call} takes one buffer per parameter, but this program is sharded over mesh {mesh}; use `run`")]
    Sharded { call: &'static str, mesh: String },
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
    /// How parameters and results lie over the mesh, for a graph with one.
    pub layout: Option<Layout>,
    /// Host bytes vidlower's own CPU kernels allocate during a run beside XLA's buffers: the
    /// largest call's (the CPU attention copies k as k^T). 0 without such calls.
    pub kernel_scratch: u64,
}

/// The largest scratch a CPU kernel call of `graph` allocates (see [`Signature::kernel_scratch`]).
fn kernel_scratch(graph: &Graph) -> u64 {
    let attention = vidlower_passes::cpu_attention::CPU_ATTENTION_TARGET;
    graph
        .nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::CustomCall { target, .. } if target == attention))
        .map(|n| graph.tensor_ty(n.operands[1]).size_in_bytes().max(0) as u64)
        .max()
        .unwrap_or(0)
}

/// The mesh of a sharded program and the sharding of each parameter and result, in order.
/// Unannotated ones are replicated, as the backend pins them at the function boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub mesh: Mesh,
    pub params: Vec<Sharding>,
    pub results: Vec<Sharding>,
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
        let sharding = |v: vidlower_ir::ValueId| {
            graph.node(v).sharding.clone().unwrap_or_else(|| Sharding::replicated(graph.tensor_ty(v).rank()))
        };
        let layout = graph.mesh.as_ref().map(|mesh| Layout {
            mesh: mesh.clone(),
            params: graph.inputs.iter().map(|&v| sharding(v)).collect(),
            results: graph.outputs.iter().map(|o| sharding(o.value)).collect(),
        });
        Signature { params, results, layout, kernel_scratch: kernel_scratch(graph) }
    }

    /// Every parameter and result divides into the pieces its sharding asks for, so host
    /// tensors can be cut and joined (checked once, before anything is uploaded).
    fn check_layout(&self) -> Result<(), ProgramError> {
        let Some(layout) = &self.layout else { return Ok(()) };
        let params = self.params.iter().map(|(n, k, t)| (k.name(), n, t)).zip(&layout.params);
        let results = self.results.iter().map(|(n, t)| ("result", n, t)).zip(&layout.results);
        for ((kind, name, ty), sharding) in params.chain(results) {
            if sharding.shard_shape(&layout.mesh, &ty.shape).is_none() {
                let source = ShardError::NotDivisible {
                    dims: ty.shape.clone(),
                    sharding: sharding.to_string(),
                    mesh: layout.mesh.to_string(),
                };
                return Err(ProgramError::Shard { kind, name: name.clone(), source: Box::new(source) });
            }
        }
        Ok(())
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

/// An executable with its signature. Weights are uploaded once and kept on the device(s);
/// plain inputs are uploaded per call.
pub struct Program {
    pub executable: LoadedExecutable,
    pub signature: Signature,
    /// Mesh device `d` is `devices[d]` (the executable's partition `d`); one without a mesh.
    devices: Vec<Device>,
    /// Uploaded weights by parameter index, one buffer per device.
    resident: HashMap<usize, Vec<Buffer>>,
}

impl Program {
    /// Binds `executable` to `signature`. With a layout, the executable must span the mesh
    /// (compiled with `CompileOptions::for_graph`) and every parameter and result must divide.
    pub fn new(executable: LoadedExecutable, signature: Signature, client: &Client) -> Result<Self, ProgramError> {
        let devices = match &signature.layout {
            None => vec![client
                .addressable_devices()?
                .into_iter()
                .next()
                .ok_or(PjrtError::Usage("the client has no devices".into()))?],
            Some(layout) => {
                let devices = executable.addressable_devices().to_vec();
                let expected = layout.mesh.device_count();
                if devices.len() != expected as usize {
                    return Err(ProgramError::Devices { mesh: layout.mesh.to_string(), expected, got: devices.len() });
                }
                devices
            }
        };
        signature.check_layout()?;
        Ok(Program { executable, signature, devices, resident: HashMap::new() })
    }

    /// The devices the program runs on, in mesh order.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Parameter `i`'s value `t` on every device: whole, or the piece its sharding gives.
    fn put(&self, i: usize, t: &HostTensor) -> Result<Vec<Buffer>, ProgramError> {
        let client = self.devices[0].client();
        let Some(layout) = &self.signature.layout else { return Ok(vec![client.buffer_from_host(t, &self.devices[0])?]) };
        let sharding = &layout.params[i];
        let mut out = Vec::with_capacity(self.devices.len());
        for (d, device) in self.devices.iter().enumerate() {
            if sharding.is_replicated() {
                out.push(client.buffer_from_host(t, device)?);
                continue;
            }
            let piece = shard_of(t, sharding, &layout.mesh, d as u32).map_err(|source| {
                let (name, kind, _) = &self.signature.params[i];
                ProgramError::Shard { kind: kind.name(), name: name.clone(), source: Box::new(source) }
            })?;
            out.push(client.buffer_from_host(&piece, device)?);
        }
        Ok(out)
    }

    /// Result `r` as one host tensor, from `outs[device][r]`: read from one device, or joined
    /// from the devices that hold its distinct pieces.
    fn gather(&self, r: usize, outs: &[Vec<Buffer>]) -> Result<HostTensor, ProgramError> {
        let Some(layout) = &self.signature.layout else { return Ok(outs[0][r].to_host()?) };
        let sharding = &layout.results[r];
        let pieces = piece_holders(sharding, &layout.mesh)
            .into_iter()
            .map(|d| Ok((d, outs[d as usize][r].to_host()?)))
            .collect::<Result<Vec<_>, ProgramError>>()?;
        let (name, ty) = &self.signature.results[r];
        unshard(&pieces, sharding, &layout.mesh, &ty.shape)
            .map_err(|source| ProgramError::Shard { kind: "result", name: name.clone(), source: Box::new(source) })
    }

    /// The error for single-device calls on a sharded program.
    fn single_device_only(&self, call: &'static str) -> Result<(), ProgramError> {
        match &self.signature.layout {
            Some(layout) => Err(ProgramError::Sharded { call, mesh: layout.mesh.to_string() }),
            None => Ok(()),
        }
    }

    /// Uploads every weight, looked up by name in `weights`; checked against the signature.
    /// On a mesh, each device gets its piece.
    pub fn upload_weights(&mut self, weights: &mut dyn FnMut(&str, &TensorType) -> Option<HostTensor>) -> Result<(), ProgramError> {
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
            let buffers = self.put(i, &t)?;
            self.resident.insert(i, buffers);
        }
        Ok(())
    }

    /// Uploads every weight from `store` (converted to the graph's dtypes), several transfers at
    /// a time, straight from the file's mapping where the dtype matches
    /// ([`crate::weight_upload`]). A weight the store lacks, or has in another shape, is
    /// reported as the store's error, naming file and tensor.
    pub fn upload_weights_from(&mut self, store: &crate::weights::WeightStore) -> Result<(), WeightUploadError> {
        let layout = self.signature.layout.as_ref();
        let (indices, params): (Vec<usize>, Vec<WeightParam>) = self
            .signature
            .params
            .iter()
            .enumerate()
            .filter(|(_, (_, kind, _))| *kind == ParamKind::Weight)
            .map(|(i, (name, _, ty))| (i, WeightParam { name, ty, sharding: layout.map(|l| (&l.params[i], &l.mesh)) }))
            .unzip();
        let buffers = upload_from_store(store, &params, &self.devices, &UploadOptions::default())?;
        self.resident.extend(indices.into_iter().zip(buffers));
        Ok(())
    }

    /// Runs once with the plain inputs given by name; returns the outputs by name, in order.
    /// On a mesh, inputs are cut into their pieces and outputs joined back.
    pub fn run(&self, inputs: &HashMap<String, HostTensor>) -> Result<Vec<(String, HostTensor)>, ProgramError> {
        let mut uploaded = Vec::new();
        for (i, (name, kind, ty)) in self.signature.params.iter().enumerate() {
            if *kind == ParamKind::Input {
                let t = inputs.get(name).ok_or_else(|| ProgramError::Missing {
                    kind: "input",
                    name: name.clone(),
                    expected: ty.to_string(),
                })?;
                self.signature.check(i, t)?;
                uploaded.push((i, self.put(i, t)?));
            } else if !self.resident.contains_key(&i) {
                return Err(ProgramError::Missing { kind: "weight", name: name.clone(), expected: "an uploaded weight".into() });
            }
        }
        let param = |i: usize| -> &Vec<Buffer> {
            self.resident.get(&i).unwrap_or_else(|| &uploaded.iter().find(|(j, _)| *j == i).expect("uploaded above").1)
        };
        let args: Vec<Vec<&Buffer>> =
            (0..self.devices.len()).map(|d| (0..self.signature.params.len()).map(|i| &param(i)[d]).collect()).collect();
        let outs = self.executable.execute(&args)?;
        let mut results = Vec::with_capacity(self.signature.results.len());
        for (r, (name, _)) in self.signature.results.iter().enumerate() {
            results.push((name.clone(), self.gather(r, &outs)?));
        }
        Ok(results)
    }

    /// Runs once with parameters given as device buffers, by name, and returns the outputs as
    /// device buffers (nothing is copied to or from the host). Each parameter is taken from
    /// this program's uploaded weights if it has it, else from `args`, which may hold inputs
    /// and weights (weights shared between programs) and more names than the program takes.
    /// Buffers are checked against the signature's dtype and shape. Single-device programs only.
    pub fn run_buffers(&self, args: &HashMap<&str, &Buffer>) -> Result<Vec<(String, Buffer)>, ProgramError> {
        self.single_device_only("run_buffers")?;
        let mut list: Vec<&Buffer> = Vec::with_capacity(self.signature.params.len());
        for (i, (name, kind, ty)) in self.signature.params.iter().enumerate() {
            let buf = match self.resident.get(&i) {
                Some(b) => &b[0],
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
        self.single_device_only("upload")?;
        Ok(self.devices[0].client().buffer_from_host(t, &self.devices[0])?)
    }
}
