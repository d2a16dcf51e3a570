//! vidlower's own binding of the PJRT C API (written against `pjrt_c_api.h` 0.81).
//!
//! A plugin is a shared library exporting `GetPjrtApi`; everything goes through its function table.
//! The layers mirror the C API's objects, each owning its PJRT handle and destroying it on drop:
//!
//! ```text
//! Plugin (dlopen, version check, initialize; never unloaded)
//!   └─ Client (create options such as cpu_device_count) ── Device
//!        ├─ LoadedExecutable  (compile StableHLO text, execute, serialize / deserialize)
//!        ├─ Buffer            (HostTensor -> device -> HostTensor)
//!        └─ PendingTransfer   (host bytes -> device, asynchronous, several in flight)
//! ```
//!
//! Every argument struct is declared in [`ffi`] with the 0.81 layout and carries its
//! `struct_size`, so one binding runs on plugins from 0.81 onwards (the C API only appends fields
//! within a major version). Calls are synchronous from the caller's point of view: transfers and
//! executions are awaited, and any error their completion events carry is returned; the one
//! exception, [`PendingTransfer`], owns its host bytes and awaits its event when finished or dropped.

/// The function-table entry `$name` of a [`Plugin`], or `Err(Unsupported)` if the plugin's
/// table is too short to have it or leaves it null.
macro_rules! pjrt_entry {
    ($plugin:expr, $name:ident) => {{
        let plugin: &$crate::pjrt::plugin::Plugin = &$plugin;
        plugin.entry(
            stringify!($name),
            ::std::mem::offset_of!($crate::pjrt::ffi::Api, $name),
            plugin.api().$name,
        )
    }};
}

/// Calls the entry `$name` of a [`Plugin`] with `$args`, turning a returned `PJRT_Error` into an
/// `Err` that names the call. Unsafe: the caller vouches for `$args`.
macro_rules! pjrt_call {
    ($plugin:expr, $name:ident, $args:expr) => {{
        let plugin: &$crate::pjrt::plugin::Plugin = &$plugin;
        plugin.call(stringify!($name), pjrt_entry!(plugin, $name), $args)
    }};
}

mod buffer;
mod client;
mod compile_options;
mod error;
mod event;
mod executable;
mod host_transfer;
pub(crate) mod ffi;
mod ffi_extension;
mod named_value;
mod plugin;
pub mod plugin_log;

pub use buffer::Buffer;
pub use client::{Client, Device};
pub use compile_options::CompileOptions;
pub use error::{ErrorCode, PjrtError, Result};
pub use executable::{CompiledMemoryStats, LoadedExecutable};
pub use host_transfer::{HostBytes, PendingTransfer};
pub use named_value::NamedValue;
pub use plugin::Plugin;

/// The C API version whose struct layouts this binding declares (`pjrt_c_api.h` 0.81). Plugins
/// with the same major and any minor from this one on are supported.
pub const BINDING_API_VERSION: (u32, u32) = (ffi::API_MAJOR as u32, ffi::API_MINOR as u32);
