//! `PJRT_LoadedExecutable`: compiling StableHLO, executing, serializing and deserializing.

use std::ffi::c_char;
use std::fmt;
use std::ptr;
use std::sync::Arc;

use super::buffer::Buffer;
use super::client::{raw_list, ClientInner, Device};
use super::compile_options::CompileOptions;
use super::error::{ErrorCode, PjrtError, Result};
use super::event::Event;
use super::ffi::{self, Args};
use super::plugin::owned_string;
use super::Client;

/// The program format for StableHLO (or any MLIR the plugin accepts), as text or bytecode.
const MLIR_FORMAT: &str = "mlir";

/// A compiled program loaded onto its devices, ready to execute.
pub struct LoadedExecutable {
    client: Arc<ClientInner>,
    raw: *mut ffi::LoadedExecutable,
    num_outputs: usize,
    devices: Vec<Device>,
}

// SAFETY: `PjRtLoadedExecutable::Execute` may be called concurrently from several threads, and
// the wrapper's other state is immutable after creation.
unsafe impl Send for LoadedExecutable {}
unsafe impl Sync for LoadedExecutable {}

impl Drop for LoadedExecutable {
    fn drop(&mut self) {
        let mut args = ffi::LoadedExecutable_Destroy_Args::new();
        args.executable = self.raw;
        // SAFETY: owned, destroyed once; errors cannot leave drop (`check` frees them).
        let _ = unsafe { pjrt_call!(self.client.plugin, PJRT_LoadedExecutable_Destroy, &mut args) };
    }
}

impl fmt::Debug for LoadedExecutable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedExecutable")
            .field("num_outputs", &self.num_outputs)
            .field("devices", &self.devices)
            .finish()
    }
}

/// `xla::CompiledMemoryStats` (device memory space) of one executable, in bytes per device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompiledMemoryStats {
    /// The compiled code itself.
    pub generated_code: u64,
    /// Every parameter (weights and inputs), as the executable sees them.
    pub arguments: u64,
    /// Every result.
    pub outputs: u64,
    /// Bytes of results that reuse a parameter's buffer (counted in both of the above).
    pub alias: u64,
    /// Scratch the run allocates and frees: the activations.
    pub temp: u64,
}

/// The unloaded `PJRT_Executable` view of a loaded executable; destroyed on drop.
struct Executable<'a> {
    client: &'a ClientInner,
    raw: *mut ffi::Executable,
}

impl Drop for Executable<'_> {
    fn drop(&mut self) {
        let mut args = ffi::Executable_Destroy_Args::new();
        args.executable = self.raw;
        // SAFETY: `GetExecutable` hands the caller ownership; destroyed once.
        let _ = unsafe { pjrt_call!(self.client.plugin, PJRT_Executable_Destroy, &mut args) };
    }
}

impl Client {
    /// Compiles a StableHLO module (MLIR text, pretty or generic form) for this client's devices.
    pub fn compile(&self, mlir: &str, options: &CompileOptions) -> Result<LoadedExecutable> {
        let proto = options.to_proto_bytes();
        let mut program = ffi::Program::new();
        // The C API types `code` as mutable because other calls write through it; compile only reads.
        program.code = mlir.as_ptr() as *mut c_char;
        program.code_size = mlir.len();
        program.format = MLIR_FORMAT.as_ptr() as *const c_char;
        program.format_size = MLIR_FORMAT.len();
        let mut args = ffi::Client_Compile_Args::new();
        args.client = self.inner.raw;
        args.program = &program;
        args.compile_options = proto.as_ptr() as *const c_char;
        args.compile_options_size = proto.len();
        // SAFETY: program text, format and options outlive the call, which only reads them.
        unsafe {
            pjrt_call!(self.inner.plugin, PJRT_Client_Compile, &mut args)?;
            LoadedExecutable::from_raw(&self.inner, args.executable)
        }
    }

    /// Loads an executable produced by [`LoadedExecutable::serialize`] with the same plugin
    /// build, using the compile options stored in it.
    pub fn deserialize_executable(&self, bytes: &[u8]) -> Result<LoadedExecutable> {
        let mut args = ffi::Executable_DeserializeAndLoad_Args::new();
        args.client = self.inner.raw;
        args.serialized_executable = bytes.as_ptr() as *const c_char;
        args.serialized_executable_size = bytes.len();
        // SAFETY: the bytes outlive the call; null override options = keep the stored ones.
        unsafe {
            pjrt_call!(
                self.inner.plugin,
                PJRT_Executable_DeserializeAndLoad,
                &mut args
            )?;
            LoadedExecutable::from_raw(&self.inner, args.loaded_executable)
        }
    }
}

impl LoadedExecutable {
    /// Takes ownership and reads the output count and devices once.
    ///
    /// # Safety
    /// `raw` must be a live loaded executable of `client` that nothing else will destroy.
    unsafe fn from_raw(client: &Arc<ClientInner>, raw: *mut ffi::LoadedExecutable) -> Result<Self> {
        if raw.is_null() {
            return Err(PjrtError::Usage(
                "the plugin returned a null executable".into(),
            ));
        }
        // Owned first, so that an error below still destroys it.
        let mut exe = LoadedExecutable {
            client: client.clone(),
            raw,
            num_outputs: 0,
            devices: Vec::new(),
        };
        let mut outputs = ffi::Executable_NumOutputs_Args::new();
        {
            let view = exe.executable()?;
            outputs.executable = view.raw;
            pjrt_call!(client.plugin, PJRT_Executable_NumOutputs, &mut outputs)?;
        }
        exe.num_outputs = outputs.num_outputs;

        let mut devices = ffi::LoadedExecutable_AddressableDevices_Args::new();
        devices.executable = raw;
        pjrt_call!(
            client.plugin,
            PJRT_LoadedExecutable_AddressableDevices,
            &mut devices
        )?;
        exe.devices = raw_list(devices.addressable_devices, devices.num_addressable_devices)
            .into_iter()
            .map(|d| Device::from_raw(client, d))
            .collect::<Result<_>>()?;
        Ok(exe)
    }

    /// The `PJRT_Executable` behind this loaded executable (a new handle each time).
    fn executable(&self) -> Result<Executable<'_>> {
        let mut args = ffi::LoadedExecutable_GetExecutable_Args::new();
        args.loaded_executable = self.raw;
        // SAFETY: live executable; the returned handle is owned by the `Executable` guard.
        unsafe {
            pjrt_call!(
                self.client.plugin,
                PJRT_LoadedExecutable_GetExecutable,
                &mut args
            )?
        };
        Ok(Executable {
            client: &self.client,
            raw: args.executable,
        })
    }

    /// Outputs per device (the program's results, untupled).
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    /// The devices the executable runs on, in partition order: argument list `i` of
    /// [`execute`](Self::execute) must live on `addressable_devices()[i]`.
    pub fn addressable_devices(&self) -> &[Device] {
        &self.devices
    }

    /// The number of SPMD partitions it was compiled for.
    pub fn num_partitions(&self) -> Result<usize> {
        let exe = self.executable()?;
        let mut args = ffi::Executable_NumPartitions_Args::new();
        args.executable = exe.raw;
        // SAFETY: `exe` is live for the call.
        unsafe { pjrt_call!(self.client.plugin, PJRT_Executable_NumPartitions, &mut args)? };
        Ok(args.num_partitions)
    }

    /// What buffer assignment reserved for one run of this executable, per device, in bytes
    /// (`PJRT_Executable_GetCompiledMemoryStats`): no execution needed. `Err` where the plugin
    /// lacks the call or refuses it; callers say "unknown" rather than fail.
    pub fn compiled_memory_stats(&self) -> Result<CompiledMemoryStats> {
        let exe = self.executable()?;
        let mut args = ffi::Executable_GetCompiledMemoryStats_Args::new();
        args.executable = exe.raw;
        // SAFETY: `exe` is live for the call; the plugin only writes the integer fields.
        unsafe { pjrt_call!(self.client.plugin, PJRT_Executable_GetCompiledMemoryStats, &mut args)? };
        let b = |v: i64| v.max(0) as u64;
        Ok(CompiledMemoryStats {
            generated_code: b(args.generated_code_size_in_bytes),
            arguments: b(args.argument_size_in_bytes),
            outputs: b(args.output_size_in_bytes),
            alias: b(args.alias_size_in_bytes),
            temp: b(args.temp_size_in_bytes),
        })
    }

    /// Runs the program once on every device and waits for it to finish.
    ///
    /// `args[d]` are the arguments for device `d` (see [`addressable_devices`](Self::addressable_devices));
    /// the result is indexed the same way, `[device][output]`. Inputs are borrowed: they are
    /// marked non-donatable, so they stay valid whatever aliasing the program declares.
    pub fn execute(&self, args: &[Vec<&Buffer>]) -> Result<Vec<Vec<Buffer>>> {
        let num_devices = self.devices.len();
        if args.len() != num_devices {
            return Err(PjrtError::Usage(format!(
                "execute: the executable runs on {num_devices} device(s), got {} argument list(s)",
                args.len()
            )));
        }
        let num_args = args.first().map_or(0, Vec::len);
        if let Some(bad) = args.iter().position(|a| a.len() != num_args) {
            return Err(PjrtError::Usage(format!(
                "execute: argument list {bad} has {} buffers, list 0 has {num_args}",
                args[bad].len()
            )));
        }
        if args
            .iter()
            .flatten()
            .any(|b| !Arc::ptr_eq(b.client(), &self.client))
        {
            return Err(PjrtError::Usage(
                "execute: an argument buffer belongs to another client".into(),
            ));
        }

        let arg_ptrs: Vec<Vec<*mut ffi::Buffer>> = args
            .iter()
            .map(|list| list.iter().map(|b| b.raw()).collect())
            .collect();
        let arg_lists: Vec<*const *mut ffi::Buffer> = arg_ptrs.iter().map(|l| l.as_ptr()).collect();
        let mut outputs: Vec<Vec<*mut ffi::Buffer>> =
            vec![vec![ptr::null_mut(); self.num_outputs]; num_devices];
        let output_lists: Vec<*mut *mut ffi::Buffer> =
            outputs.iter_mut().map(|l| l.as_mut_ptr()).collect();
        let mut events: Vec<*mut ffi::Event> = vec![ptr::null_mut(); num_devices];
        let non_donatable: Vec<i64> = (0..num_args as i64).collect();

        let mut options = ffi::ExecuteOptions::new();
        options.non_donatable_input_indices = non_donatable.as_ptr();
        options.num_non_donatable_input_indices = non_donatable.len();
        let mut exec = ffi::LoadedExecutable_Execute_Args::new();
        exec.executable = self.raw;
        exec.options = &mut options;
        exec.argument_lists = arg_lists.as_ptr();
        exec.num_devices = num_devices;
        exec.num_args = num_args;
        exec.output_lists = output_lists.as_ptr();
        exec.device_complete_events = events.as_mut_ptr();
        let plugin = &self.client.plugin;
        // SAFETY: every list has the length we pass; the plugin fills `outputs` and `events`
        // (both sized [num_devices] x [num_outputs] / [num_devices]) and reads the rest.
        unsafe { pjrt_call!(plugin, PJRT_LoadedExecutable_Execute, &mut exec)? };

        // Take ownership of every output and event before anything can fail, so none leak.
        let events: Vec<Event> = events
            .into_iter()
            .filter_map(|e| unsafe { Event::from_raw(plugin, e) })
            .collect();
        let owned: Vec<Vec<Result<Buffer>>> = outputs
            .into_iter()
            .map(|list| {
                list.into_iter()
                    .map(|b| unsafe { Buffer::from_raw(&self.client, b) })
                    .collect()
            })
            .collect();
        for event in events {
            event.wait("PJRT_LoadedExecutable_Execute")?;
        }
        owned
            .into_iter()
            .map(|list| list.into_iter().collect())
            .collect()
    }

    /// A plugin-specific serialization, loadable with [`Client::deserialize_executable`] by the
    /// same plugin build (not stable across versions).
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let exe = self.executable()?;
        let mut args = ffi::Executable_Serialize_Args::new();
        args.executable = exe.raw;
        // SAFETY: `exe` is live; the bytes live until the deleter runs, which follows the copy.
        unsafe {
            pjrt_call!(self.client.plugin, PJRT_Executable_Serialize, &mut args)?;
            let bytes = if args.serialized_bytes.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(
                    args.serialized_bytes as *const u8,
                    args.serialized_bytes_size,
                )
                .to_vec()
            };
            if let Some(deleter) = args.serialized_executable_deleter {
                deleter(args.serialized_executable);
            }
            Ok(bytes)
        }
    }

    /// The plugin's fingerprint of the compiled program, or `None` where the plugin does not
    /// implement fingerprints.
    pub fn fingerprint(&self) -> Result<Option<String>> {
        let exe = self.executable()?;
        let mut args = ffi::Executable_Fingerprint_Args::new();
        args.executable = exe.raw;
        // SAFETY: `exe` is live; the fingerprint string lives as long as `exe` and is copied.
        match unsafe { pjrt_call!(self.client.plugin, PJRT_Executable_Fingerprint, &mut args) } {
            Ok(()) => {
                let fp = unsafe {
                    owned_string(
                        args.executable_fingerprint,
                        args.executable_fingerprint_size,
                    )
                };
                Ok((!fp.is_empty()).then_some(fp))
            }
            Err(PjrtError::Unsupported { .. }) => Ok(None),
            Err(e) if e.code() == Some(ErrorCode::Unimplemented) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
