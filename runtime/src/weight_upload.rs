//! Uploading a component's weights from a [`WeightStore`] at disk speed: a weight stored in the
//! graph's dtype goes from the file's mapping straight to the device (no host copy), one in
//! another dtype is converted on a few threads first, and several transfers are kept in flight
//! (PJRT's asynchronous host-buffer semantics) rather than one weight at a time.

use crate::pjrt::{Buffer, Client, Device, HostBytes, PendingTransfer};
use crate::program::{ProgramError, WeightUploadError};
use crate::shard::shard_of;
use crate::tensor::HostTensor;
use crate::weights::WeightStore;
use std::collections::VecDeque;
use vidlower_ir::{Mesh, Sharding, TensorType};

/// How much may be in flight at once.
#[derive(Clone, Copy, Debug)]
pub struct UploadOptions {
    /// Transfers started and not yet finished.
    pub max_in_flight: usize,
    /// Converted (owned) host bytes held by transfers in flight; mapped bytes cost no memory of
    /// their own and do not count.
    pub max_owned_bytes: usize,
    /// Threads converting a weight whose stored dtype is not the graph's.
    pub convert_threads: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        UploadOptions { max_in_flight: 16, max_owned_bytes: 1 << 30, convert_threads: cores.min(8) }
    }
}

/// One weight parameter: its name and graph type, and how it lies over the devices (`None`:
/// whole on each device).
pub struct WeightParam<'a> {
    pub name: &'a str,
    pub ty: &'a TensorType,
    pub sharding: Option<(&'a Sharding, &'a Mesh)>,
}

/// Uploads `params` from `store` to `devices` (mesh order); returns, per parameter, one buffer
/// per device. Errors name the weight (and, for the store's errors, the file).
pub fn upload_from_store(
    store: &WeightStore,
    params: &[WeightParam],
    devices: &[Device],
    options: &UploadOptions,
) -> Result<Vec<Vec<Buffer>>, WeightUploadError> {
    let client = devices.first().map(Device::client).ok_or_else(|| {
        WeightUploadError::Program(ProgramError::Pjrt(crate::pjrt::PjrtError::Usage("no devices to upload weights to".into())))
    })?;
    let mut queue = InFlight { pending: VecDeque::new(), owned_bytes: 0, options: *options };
    let mut out: Vec<Vec<Option<Buffer>>> = params.iter().map(|_| (0..devices.len()).map(|_| None).collect()).collect();
    let program = WeightUploadError::Program;
    for (i, p) in params.iter().enumerate() {
        let bytes = store.host_bytes(p.name, p.ty, options.convert_threads).map_err(WeightUploadError::Weights)?;
        for (d, device) in devices.iter().enumerate() {
            let (host, dims) = match p.sharding {
                Some((sharding, mesh)) if !sharding.is_replicated() => {
                    let piece = shard_piece(&bytes, p, sharding, mesh, d as u32).map_err(program)?;
                    (HostBytes::Owned(std::sync::Arc::new(piece.data)), piece.dims)
                }
                _ => (bytes.clone(), p.ty.shape.clone()),
            };
            let transfer = client.start_buffer_from_host(p.ty.dtype, &dims, host, device).map_err(|e| program(e.into()))?;
            for (j, e, buffer) in queue.push(i, d, transfer).map_err(program)? {
                out[j][e] = Some(buffer);
            }
        }
    }
    for (j, e, buffer) in queue.drain().map_err(program)? {
        out[j][e] = Some(buffer);
    }
    Ok(out.into_iter().map(|bs| bs.into_iter().map(|b| b.expect("every transfer finished")).collect()).collect())
}

/// Device `d`'s piece of a sharded weight (the whole value is needed on the host to cut it).
fn shard_piece(bytes: &HostBytes, p: &WeightParam, sharding: &Sharding, mesh: &Mesh, d: u32) -> Result<HostTensor, ProgramError> {
    let shard = |source| ProgramError::Shard { kind: "weight", name: p.name.to_string(), source: Box::new(source) };
    let whole = HostTensor::new(p.ty.dtype, p.ty.shape.clone(), bytes.as_slice().to_vec())
        .map_err(|e| ProgramError::Pjrt(crate::pjrt::PjrtError::Usage(format!("weight `{}`: {e}", p.name))))?;
    shard_of(&whole, sharding, mesh, d).map_err(shard)
}

/// Transfers in flight, oldest first, as (parameter, device, transfer).
struct InFlight {
    pending: VecDeque<(usize, usize, PendingTransfer)>,
    owned_bytes: usize,
    options: UploadOptions,
}

type Finished = Vec<(usize, usize, Buffer)>;

impl InFlight {
    /// Adds a transfer, then finishes the oldest ones until the bounds hold again.
    fn push(&mut self, param: usize, device: usize, t: PendingTransfer) -> Result<Finished, ProgramError> {
        if t.host().is_owned() {
            self.owned_bytes += t.host().len();
        }
        self.pending.push_back((param, device, t));
        let mut done = Vec::new();
        while self.pending.len() > self.options.max_in_flight
            || (self.owned_bytes > self.options.max_owned_bytes && self.pending.len() > 1)
        {
            done.push(self.finish_oldest()?);
        }
        Ok(done)
    }

    fn finish_oldest(&mut self) -> Result<(usize, usize, Buffer), ProgramError> {
        let (param, device, t) = self.pending.pop_front().expect("called with transfers pending");
        if t.host().is_owned() {
            self.owned_bytes -= t.host().len();
        }
        Ok((param, device, t.finish()?))
    }

    fn drain(&mut self) -> Result<Finished, ProgramError> {
        (0..self.pending.len()).map(|_| self.finish_oldest()).collect()
    }
}

/// The one-weight-at-a-time upload the runtime used before (read into a host tensor, convert,
/// copy, wait), kept as the reference that benchmarks and tests compare the fast path against.
pub fn upload_one_at_a_time(store: &WeightStore, params: &[WeightParam], client: &Client, device: &Device) -> Result<Vec<Buffer>, WeightUploadError> {
    params
        .iter()
        .map(|p| {
            let t = store.load(p.name, p.ty).map_err(WeightUploadError::Weights)?;
            client.buffer_from_host(&t, device).map_err(|e| WeightUploadError::Program(e.into()))
        })
        .collect()
}
