//! `PJRT_Buffer`: device memory holding one array, and transfers to and from [`HostTensor`].

use std::ffi::c_void;
use std::fmt;
use std::sync::Arc;

use vidlower_ir::DType;

use super::client::{ClientInner, Device};
use super::error::{PjrtError, Result};
use super::event::Event;
use super::ffi::{self, Args};
use super::Client;
use crate::tensor::HostTensor;

/// The PJRT element type of a dtype (i1 is PRED).
pub(crate) fn dtype_to_pjrt(dtype: DType) -> ffi::BufferType {
    match dtype {
        DType::F32 => ffi::BUFFER_TYPE_F32,
        DType::BF16 => ffi::BUFFER_TYPE_BF16,
        DType::F16 => ffi::BUFFER_TYPE_F16,
        DType::F64 => ffi::BUFFER_TYPE_F64,
        DType::I1 => ffi::BUFFER_TYPE_PRED,
        DType::I8 => ffi::BUFFER_TYPE_S8,
        DType::U8 => ffi::BUFFER_TYPE_U8,
        DType::I32 => ffi::BUFFER_TYPE_S32,
        DType::I64 => ffi::BUFFER_TYPE_S64,
    }
}

/// The dtype of a PJRT element type, if vidlower has one for it.
pub(crate) fn dtype_from_pjrt(ty: ffi::BufferType) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| dtype_to_pjrt(d) == ty)
}

/// An array on a device. Dtype and dims are read once when the buffer is created.
pub struct Buffer {
    client: Arc<ClientInner>,
    raw: *mut ffi::Buffer,
    dtype: DType,
    dims: Vec<i64>,
}

// SAFETY: `PjRtBuffer` is thread-safe by contract (JAX reads, copies and deletes buffers from
// several threads); the C wrapper adds only immutable data.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut args = ffi::Buffer_Destroy_Args::new();
        args.buffer = self.raw;
        // SAFETY: we own the buffer and destroy it once; the client outlives it (we hold it).
        let _ = unsafe { pjrt_call!(self.client.plugin, PJRT_Buffer_Destroy, &mut args) };
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffer({}{:?})", self.dtype, self.dims)
    }
}

impl Client {
    /// Copies a host tensor to `device`. Returns once the plugin no longer reads the host data.
    pub fn buffer_from_host(&self, tensor: &HostTensor, device: &Device) -> Result<Buffer> {
        tensor.validate()?;
        if !self.same_as(&device.client) {
            return Err(PjrtError::Usage(
                "buffer_from_host: the device belongs to another client".into(),
            ));
        }
        let plugin = &self.inner.plugin;
        let mut args = ffi::Client_BufferFromHostBuffer_Args::new();
        args.client = self.inner.raw;
        args.data = tensor.data.as_ptr() as *const c_void;
        args.type_ = dtype_to_pjrt(tensor.dtype);
        args.dims = tensor.dims.as_ptr();
        args.num_dims = tensor.dims.len();
        // Null strides and layout: dense row-major, the only layout HostTensor has.
        args.host_buffer_semantics = ffi::HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL;
        args.device = device.raw;
        // SAFETY: data, dims and device are valid for the call; with "immutable only during
        // call" the plugin copies (or finishes with) the host data before it returns.
        unsafe { pjrt_call!(plugin, PJRT_Client_BufferFromHostBuffer, &mut args)? };
        // SAFETY: both outputs are ours to own from here on; the event is taken first so that
        // it is destroyed even if reading the buffer's shape fails.
        let done = unsafe { Event::from_raw(plugin, args.done_with_host_buffer) };
        let buffer = unsafe { Buffer::from_raw(&self.inner, args.buffer)? };
        if let Some(done) = done {
            // The semantics above already promise this; awaiting also surfaces transfer errors.
            done.wait("PJRT_Client_BufferFromHostBuffer")?;
        }
        Ok(buffer)
    }
}

impl Buffer {
    /// Takes ownership of a buffer returned by the plugin and reads its dtype and dims. On
    /// error the buffer is still destroyed.
    ///
    /// # Safety
    /// `raw` must be a live buffer of `client` that nothing else will destroy.
    pub(crate) unsafe fn from_raw(
        client: &Arc<ClientInner>,
        raw: *mut ffi::Buffer,
    ) -> Result<Buffer> {
        if raw.is_null() {
            return Err(PjrtError::Usage("the plugin returned a null buffer".into()));
        }
        // Owned first, so that an error below still destroys it.
        let mut buffer = Buffer {
            client: client.clone(),
            raw,
            dtype: DType::F32,
            dims: Vec::new(),
        };
        let plugin = &client.plugin;
        let mut ty = ffi::Buffer_ElementType_Args::new();
        ty.buffer = raw;
        pjrt_call!(plugin, PJRT_Buffer_ElementType, &mut ty)?;
        buffer.dtype = dtype_from_pjrt(ty.type_).ok_or_else(|| {
            PjrtError::Usage(format!(
                "buffer has PJRT element type {}, which vidlower has no dtype for",
                ty.type_
            ))
        })?;
        let mut dims = ffi::Buffer_Dimensions_Args::new();
        dims.buffer = raw;
        pjrt_call!(plugin, PJRT_Buffer_Dimensions, &mut dims)?;
        if !dims.dims.is_null() && dims.num_dims > 0 {
            buffer.dims = std::slice::from_raw_parts(dims.dims, dims.num_dims).to_vec();
        }
        Ok(buffer)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[i64] {
        &self.dims
    }

    /// The device holding the buffer.
    pub fn device(&self) -> Result<Device> {
        let mut args = ffi::Buffer_Device_Args::new();
        args.buffer = self.raw;
        // SAFETY: the buffer is live; the device is owned by the client.
        unsafe { pjrt_call!(self.client.plugin, PJRT_Buffer_Device, &mut args)? };
        Device::from_raw(&self.client, args.device)
    }

    /// Copies the buffer back into a new host tensor (waits for pending writes to it).
    pub fn to_host(&self) -> Result<HostTensor> {
        let plugin = &self.client.plugin;
        let mut tensor = HostTensor::zeros(self.dtype, self.dims.clone())?;

        // Ask for the size first: a plugin whose host layout is not dense row-major would need
        // another size, and writing past our allocation must never happen.
        let mut query = ffi::Buffer_ToHostBuffer_Args::new();
        query.src = self.raw;
        // SAFETY: null `dst` asks only for the size; a returned event is ours to destroy.
        unsafe {
            pjrt_call!(plugin, PJRT_Buffer_ToHostBuffer, &mut query)?;
            drop(Event::from_raw(plugin, query.event));
        }
        if query.dst_size != tensor.data.len() {
            return Err(PjrtError::Usage(format!(
                "PJRT_Buffer_ToHostBuffer wants {} bytes for {}{:?}, expected {} (non-dense host layout?)",
                query.dst_size,
                self.dtype,
                self.dims,
                tensor.data.len()
            )));
        }

        let mut args = ffi::Buffer_ToHostBuffer_Args::new();
        args.src = self.raw;
        // Never null, even when empty (then dangling, for 0 bytes): null would mean "size query".
        args.dst = tensor.data.as_mut_ptr() as *mut c_void;
        args.dst_size = tensor.data.len();
        // SAFETY: `dst` has `dst_size` writable bytes and stays alive until the event completes,
        // which we wait for before touching or returning the data.
        unsafe { pjrt_call!(plugin, PJRT_Buffer_ToHostBuffer, &mut args)? };
        if let Some(done) = unsafe { Event::from_raw(plugin, args.event) } {
            done.wait("PJRT_Buffer_ToHostBuffer")?;
        }
        Ok(tensor)
    }

    pub(crate) fn raw(&self) -> *mut ffi::Buffer {
        self.raw
    }

    pub(crate) fn client(&self) -> &Arc<ClientInner> {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_mapping_is_a_bijection_onto_the_header_values() {
        let expected = [
            (DType::F32, 11),
            (DType::BF16, 13),
            (DType::F16, 10),
            (DType::F64, 12),
            (DType::I1, 1),
            (DType::I8, 2),
            (DType::U8, 6),
            (DType::I32, 4),
            (DType::I64, 5),
        ];
        for (dtype, raw) in expected {
            assert_eq!(dtype_to_pjrt(dtype), raw, "{dtype}");
            assert_eq!(dtype_from_pjrt(raw), Some(dtype));
        }
        assert_eq!(dtype_from_pjrt(ffi::BUFFER_TYPE_INVALID), None);
    }
}
