//! `PJRT_Client` and `PJRT_Device`: a plugin instance with its devices.

use std::fmt;
use std::ptr;
use std::sync::Arc;

use super::error::Result;
use super::ffi::{self, Args};
use super::named_value::{FfiNamedValues, NamedValue};
use super::plugin::{owned_string, Plugin};

/// The owned `PJRT_Client`, shared by everything created from it (devices, buffers, executables)
/// so that the client is destroyed only after the last of them.
pub(crate) struct ClientInner {
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) raw: *mut ffi::Client,
}

// SAFETY: `PjRtClient` is thread-safe by contract; the C API wraps it without adding state.
unsafe impl Send for ClientInner {}
unsafe impl Sync for ClientInner {}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let mut args = ffi::Client_Destroy_Args::new();
        args.client = self.raw;
        // SAFETY: the last reference is going away; nothing else uses `raw` after this. Errors
        // cannot be returned from drop, and `check` still frees the error object.
        let _ = unsafe { pjrt_call!(self.plugin, PJRT_Client_Destroy, &mut args) };
    }
}

/// A PJRT client: one instance of a plugin's runtime, owning its devices. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("plugin", &self.inner.plugin.path())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Creates a client with plugin-specific create options, e.g. `("cpu_device_count",
    /// NamedValue::Int64(4))` for four virtual CPU devices. Unknown options are the plugin's to
    /// reject or ignore.
    pub fn new(plugin: &Arc<Plugin>, options: &[(String, NamedValue)]) -> Result<Client> {
        let c_options = FfiNamedValues::new(options);
        let mut args = ffi::Client_Create_Args::new();
        args.create_options = c_options.as_ptr();
        args.num_options = c_options.len();
        // SAFETY: the options (and the strings and lists they point into) outlive the call; the
        // key-value callbacks stay null, which single-process clients allow.
        unsafe { pjrt_call!(plugin, PJRT_Client_Create, &mut args)? };
        let client = Client {
            inner: Arc::new(ClientInner {
                plugin: plugin.clone(),
                raw: args.client,
            }),
        };
        // Before anything is compiled: executables may call vidlower's CPU kernels.
        if client.platform_name()? == "cpu" {
            plugin.cpu_kernels_registered();
        }
        Ok(client)
    }

    /// Whether this client's executables can call vidlower's CPU kernels ([`crate::cpu_kernels`]):
    /// a CPU client whose plugin took their registration.
    pub fn has_cpu_kernels(&self) -> bool {
        self.platform_name().is_ok_and(|p| p == "cpu") && self.inner.plugin.cpu_kernels_registered()
    }

    /// The plugin this client runs on.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.inner.plugin
    }

    /// The platform name, e.g. `"cpu"`, `"cuda"`, `"tpu"`.
    pub fn platform_name(&self) -> Result<String> {
        let mut args = ffi::Client_PlatformName_Args::new();
        args.client = self.inner.raw;
        // SAFETY: the client is live; the returned string is owned by it and copied at once.
        unsafe {
            pjrt_call!(self.inner.plugin, PJRT_Client_PlatformName, &mut args)?;
            Ok(owned_string(args.platform_name, args.platform_name_size))
        }
    }

    /// Platform-specific version information (e.g. the CUDA or libtpu version; free text).
    pub fn platform_version(&self) -> Result<String> {
        let mut args = ffi::Client_PlatformVersion_Args::new();
        args.client = self.inner.raw;
        // SAFETY: as in `platform_name`.
        unsafe {
            pjrt_call!(self.inner.plugin, PJRT_Client_PlatformVersion, &mut args)?;
            Ok(owned_string(
                args.platform_version,
                args.platform_version_size,
            ))
        }
    }

    /// Every device the runtime knows of, addressable or not.
    pub fn devices(&self) -> Result<Vec<Device>> {
        let mut args = ffi::Client_Devices_Args::new();
        args.client = self.inner.raw;
        // SAFETY: the client is live; the returned array is owned by it and read at once.
        let raw = unsafe {
            pjrt_call!(self.inner.plugin, PJRT_Client_Devices, &mut args)?;
            raw_list(args.devices, args.num_devices)
        };
        raw.into_iter()
            .map(|d| Device::from_raw(&self.inner, d))
            .collect()
    }

    /// The devices this process can issue work to (all of them in a single-process setup).
    pub fn addressable_devices(&self) -> Result<Vec<Device>> {
        let mut args = ffi::Client_AddressableDevices_Args::new();
        args.client = self.inner.raw;
        // SAFETY: as in `devices`.
        let raw = unsafe {
            pjrt_call!(self.inner.plugin, PJRT_Client_AddressableDevices, &mut args)?;
            raw_list(args.addressable_devices, args.num_addressable_devices)
        };
        raw.into_iter()
            .map(|d| Device::from_raw(&self.inner, d))
            .collect()
    }

    /// Whether `other` is this very client (buffers and executables cannot cross clients).
    pub(crate) fn same_as(&self, other: &Arc<ClientInner>) -> bool {
        Arc::ptr_eq(&self.inner, other)
    }
}

/// Copies a plugin-owned `(T* const*, n)` array.
///
/// # Safety
/// `ptr` must be null (then `n` is ignored) or point to `n` readable pointers.
pub(crate) unsafe fn raw_list<T>(ptr: *const *mut T, n: usize) -> Vec<*mut T> {
    if ptr.is_null() || n == 0 {
        return Vec::new();
    }
    std::slice::from_raw_parts(ptr, n).to_vec()
}

/// A device of a client. Holds the client alive; the `PJRT_Device` itself is owned by the client.
#[derive(Clone)]
pub struct Device {
    pub(crate) client: Arc<ClientInner>,
    pub(crate) raw: *mut ffi::Device,
    id: i32,
    local_hardware_id: i32,
    kind: String,
    addressable: bool,
}

// SAFETY: a device is an immutable description owned by a thread-safe client.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

impl Device {
    /// Wraps a device pointer of `client`, reading its (immutable) description once.
    pub(crate) fn from_raw(client: &Arc<ClientInner>, raw: *mut ffi::Device) -> Result<Device> {
        let plugin = &client.plugin;
        let mut desc = ffi::Device_GetDescription_Args::new();
        desc.device = raw;
        let mut id = ffi::DeviceDescription_Id_Args::new();
        let mut kind = ffi::DeviceDescription_Kind_Args::new();
        let mut addressable = ffi::Device_IsAddressable_Args::new();
        addressable.device = raw;
        let mut hw = ffi::Device_LocalHardwareId_Args::new();
        hw.device = raw;
        // SAFETY: `raw` came from this client, which is alive; the description and the kind
        // string are owned by the device and copied before returning.
        unsafe {
            pjrt_call!(plugin, PJRT_Device_GetDescription, &mut desc)?;
            id.device_description = desc.device_description;
            kind.device_description = desc.device_description;
            pjrt_call!(plugin, PJRT_DeviceDescription_Id, &mut id)?;
            pjrt_call!(plugin, PJRT_DeviceDescription_Kind, &mut kind)?;
            pjrt_call!(plugin, PJRT_Device_IsAddressable, &mut addressable)?;
            // Only meaningful for addressable devices; -1 where the platform has none.
            if pjrt_call!(plugin, PJRT_Device_LocalHardwareId, &mut hw).is_err() {
                hw.local_hardware_id = -1;
            }
            Ok(Device {
                client: client.clone(),
                raw,
                id: id.id,
                local_hardware_id: hw.local_hardware_id,
                kind: owned_string(kind.device_kind, kind.device_kind_size),
                addressable: addressable.is_addressable,
            })
        }
    }

    /// The memory the device's allocator may hand out (`bytes_limit` of
    /// `PJRT_Device_MemoryStats`), where the plugin reports it (GPU plugins do; the CPU one
    /// does not: its device memory is the host's). `None` when unknown.
    pub fn memory_limit(&self) -> Option<u64> {
        let mut args = ffi::Device_MemoryStats_Args::new();
        args.device = self.raw;
        // SAFETY: the device is owned by a live client; the plugin only writes the out fields.
        let ok = unsafe { pjrt_call!(self.client.plugin, PJRT_Device_MemoryStats, &mut args) }.is_ok();
        (ok && args.bytes_limit_is_set && args.bytes_limit > 0).then_some(args.bytes_limit as u64)
    }

    /// The global device id (unique across processes), as used in device assignments.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The platform's hardware id (e.g. the CUDA ordinal); -1 if undefined.
    pub fn local_hardware_id(&self) -> i32 {
        self.local_hardware_id
    }

    /// The device kind, e.g. `"cpu"` or `"NVIDIA H100 80GB HBM3"`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether this process can issue work to the device.
    pub fn is_addressable(&self) -> bool {
        self.addressable
    }

    /// A handle to the client owning this device.
    pub fn client(&self) -> Client {
        Client {
            inner: self.client.clone(),
        }
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.raw, other.raw)
    }
}

impl Eq for Device {}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish()
    }
}
