//! Asynchronous host-to-device transfers: the plugin may still be reading the host bytes when
//! `PJRT_Client_BufferFromHostBuffer` returns ("immutable until transfer completes"), so several
//! transfers can be in flight at once and a memory-mapped checkpoint can be handed over without
//! an intermediate copy. A [`PendingTransfer`] owns its host bytes until the plugin's
//! `done_with_host_buffer` event fires: dropping or leaking it can never free bytes the plugin
//! still reads.

use std::ffi::c_void;
use std::ops::Range;
use std::sync::Arc;

use memmap2::Mmap;
use vidlower_ir::DType;

use super::buffer::{dtype_to_pjrt, Buffer};
use super::client::Device;
use super::error::{PjrtError, Result};
use super::event::Event;
use super::ffi::{self, Args};
use super::Client;

/// Host bytes for a transfer, owned so that they outlive it: a converted copy, or a range of a
/// memory-mapped file (shared with the weight store that mapped it). Cloning shares the bytes,
/// for one value sent to several devices.
#[derive(Clone)]
pub enum HostBytes {
    Owned(Arc<Vec<u8>>),
    Mapped { map: Arc<Mmap>, range: Range<usize> },
}

impl HostBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            HostBytes::Owned(v) => v.as_slice(),
            HostBytes::Mapped { map, range } => &map[range.clone()],
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are a copy held in memory (as opposed to the file's own pages).
    pub fn is_owned(&self) -> bool {
        matches!(self, HostBytes::Owned(_))
    }
}

/// A transfer the plugin may still be running. [`finish`](Self::finish) waits for it and
/// returns the buffer; dropping it waits too (ignoring the transfer's error), so the host bytes
/// are released only once the plugin is done with them.
pub struct PendingTransfer {
    done: Option<Event>,
    buffer: Option<Buffer>,
    host: HostBytes,
}

impl Client {
    /// Starts copying `host` (dense row-major `dtype` elements of shape `dims`) to `device` and
    /// returns without waiting for the copy.
    pub fn start_buffer_from_host(
        &self,
        dtype: DType,
        dims: &[i64],
        host: HostBytes,
        device: &Device,
    ) -> Result<PendingTransfer> {
        let elements = dims.iter().try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)));
        if elements.and_then(|n| n.checked_mul(dtype.size_in_bytes())) != Some(host.len()) {
            return Err(PjrtError::Usage(format!(
                "start_buffer_from_host: {} bytes given for {dtype}{dims:?}",
                host.len()
            )));
        }
        if !self.same_as(&device.client) {
            return Err(PjrtError::Usage("start_buffer_from_host: the device belongs to another client".into()));
        }
        let plugin = &self.inner.plugin;
        let mut args = ffi::Client_BufferFromHostBuffer_Args::new();
        args.client = self.inner.raw;
        args.data = host.as_slice().as_ptr() as *const c_void;
        args.type_ = dtype_to_pjrt(dtype);
        args.dims = dims.as_ptr();
        args.num_dims = dims.len();
        args.host_buffer_semantics = ffi::HOST_BUFFER_IMMUTABLE_UNTIL_TRANSFER_COMPLETES;
        args.device = device.raw;
        // SAFETY: dims and device are valid for the call; the host bytes live in `host`, whose
        // heap allocation or mapping does not move when `host` is moved into the pending
        // transfer below, and which is kept until the done event has fired.
        unsafe { pjrt_call!(plugin, PJRT_Client_BufferFromHostBuffer, &mut args)? };
        // The event first, so that the bytes are held until it fires whatever happens next.
        let mut pending = PendingTransfer {
            done: unsafe { Event::from_raw(plugin, args.done_with_host_buffer) },
            buffer: None,
            host,
        };
        // SAFETY: the buffer is ours to own from here on.
        pending.buffer = Some(unsafe { Buffer::from_raw(&self.inner, args.buffer)? });
        Ok(pending)
    }
}

impl PendingTransfer {
    /// The host bytes this transfer holds until it is done.
    pub fn host(&self) -> &HostBytes {
        &self.host
    }

    /// Waits until the plugin is done with the host bytes, returning the transfer's error if it
    /// failed, and hands back the device buffer.
    pub fn finish(mut self) -> Result<Buffer> {
        if let Some(done) = self.done.take() {
            done.wait("PJRT_Client_BufferFromHostBuffer")?;
        }
        Ok(self.buffer.take().expect("set when the transfer started"))
    }
}

impl Drop for PendingTransfer {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // Only the wait matters here (the host bytes must outlive the copy); an error of a
            // transfer nobody finishes has no one to report to.
            let _ = done.wait("PJRT_Client_BufferFromHostBuffer");
        }
    }
}
