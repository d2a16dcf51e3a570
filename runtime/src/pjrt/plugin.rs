//! Loading a PJRT plugin: `dlopen`, `GetPjrtApi`, version check, `PJRT_Plugin_Initialize`.

use std::collections::HashMap;
use std::ffi::c_char;
use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::{ErrorCode, PjrtError, Result};
use super::ffi::{self, Args};
use super::named_value::NamedValue;

/// A loaded PJRT plugin: the shared library and its `PJRT_Api` function table.
///
/// Plugins are loaded at most once per path and never unloaded: `PJRT_Plugin_Initialize` may only
/// run once per process, and XLA plugins start threads and register process-wide state (LLVM
/// options, absl flags) that does not survive `dlclose`. Loading two *different* copies of the same
/// XLA build into one process can clash on that state, so pick one plugin per process.
pub struct Plugin {
    path: PathBuf,
    api: *const ffi::Api,
    /// How many bytes of the table the plugin provides; entries past this are not read.
    api_size: usize,
    version: (u32, u32),
    attributes: Vec<(String, NamedValue)>,
    /// Whether vidlower's CPU kernels are registered (set by the first CPU client).
    pub(crate) cpu_kernels: std::sync::OnceLock<bool>,
    _library: libloading::Library,
}

// SAFETY: the function table is immutable after `GetPjrtApi`, and the PJRT C API functions are
// callable from any thread; the library handle is only held to keep the code mapped.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("api_version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Plugins loaded so far, by canonical path; see [`Plugin`] for why they are kept forever.
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Plugin>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Plugin>>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Plugin {
    /// Loads (or returns the already loaded) plugin at `path`, checks that it speaks C API
    /// major version 0 and initializes it.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<Plugin>> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            // dlopen("") would hand back the running program itself.
            return Err(PjrtError::Usage("PJRT plugin path is empty".into()));
        }
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        // Held across dlopen and initialize so two threads cannot initialize the same plugin.
        let mut loaded = registry()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(plugin) = loaded.get(&key) {
            return Ok(plugin.clone());
        }
        let plugin = Arc::new(Self::open(&key)?);
        loaded.insert(key, plugin.clone());
        Ok(plugin)
    }

    fn open(path: &Path) -> Result<Plugin> {
        // SAFETY: loading a library runs its initializers; a PJRT plugin is built to be dlopened.
        let library =
            unsafe { libloading::Library::new(path) }.map_err(|source| PjrtError::Load {
                path: path.to_path_buf(),
                source,
            })?;
        // SAFETY: `GetPjrtApi` has this signature in every PJRT plugin.
        let get_api: ffi::GetPjrtApiFn = unsafe {
            *library
                .get::<ffi::GetPjrtApiFn>(b"GetPjrtApi\0")
                .map_err(|source| PjrtError::NoEntryPoint {
                    path: path.to_path_buf(),
                    source,
                })?
        };
        // SAFETY: no arguments; returns a pointer to a static table or null.
        let api = unsafe { get_api() };
        if api.is_null() {
            return Err(PjrtError::NullApi {
                path: path.to_path_buf(),
            });
        }
        // SAFETY: non-null and static for the life of the library, which `Plugin` owns.
        let table = unsafe { &*api };
        let (major, minor) = (
            table.pjrt_api_version.major_version,
            table.pjrt_api_version.minor_version,
        );
        // Older minors lay out the argument structs differently (0.54's client args are 72 bytes
        // to 0.81's 88), so nothing could be called safely.
        if major != ffi::API_MAJOR || minor < ffi::API_MINOR {
            return Err(PjrtError::Version {
                path: path.to_path_buf(),
                major,
                minor,
                expected: ffi::API_MAJOR,
            });
        }
        let mut plugin = Plugin {
            path: path.to_path_buf(),
            api,
            api_size: table.struct_size,
            version: (major as u32, minor as u32),
            attributes: Vec::new(),
            cpu_kernels: Default::default(),
            _library: library,
        };
        // Error handling itself must be present before anything else can report a failure.
        pjrt_entry!(plugin, PJRT_Error_Destroy)?;
        pjrt_entry!(plugin, PJRT_Error_Message)?;
        pjrt_entry!(plugin, PJRT_Error_GetCode)?;

        let mut init = ffi::Plugin_Initialize_Args::new();
        // SAFETY: the args struct is fully initialized and lives across the call.
        unsafe { pjrt_call!(plugin, PJRT_Plugin_Initialize, &mut init)? };
        plugin.attributes = plugin.read_attributes();
        Ok(plugin)
    }

    /// Attributes are informational (`xla_version`, `stablehlo_current_version`...); a plugin that
    /// cannot report them is still usable, so a failure here yields an empty list.
    fn read_attributes(&self) -> Vec<(String, NamedValue)> {
        let mut args = ffi::Plugin_Attributes_Args::new();
        // SAFETY: the args struct is fully initialized and lives across the call.
        if unsafe { pjrt_call!(self, PJRT_Plugin_Attributes, &mut args) }.is_err()
            || args.attributes.is_null()
        {
            return Vec::new();
        }
        // SAFETY: the plugin returned `num_attributes` values that live as long as the process.
        let raw = unsafe { std::slice::from_raw_parts(args.attributes, args.num_attributes) };
        raw.iter()
            .filter_map(|v| unsafe { NamedValue::from_ffi(v) })
            .collect()
    }

    /// The path the plugin was loaded from (canonicalized).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The C API version the plugin was built with, `(major, minor)`; major is always 0.
    pub fn api_version(&self) -> (u32, u32) {
        self.version
    }

    /// The plugin's attributes (`xla_version`, `stablehlo_current_version`, ...), if it reports any.
    pub fn attributes(&self) -> &[(String, NamedValue)] {
        &self.attributes
    }

    /// The attribute called `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&NamedValue> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    pub(crate) fn api(&self) -> &ffi::Api {
        // SAFETY: checked non-null at load; the table lives as long as the library we own.
        unsafe { &*self.api }
    }

    /// A function-table entry, if the plugin's table is long enough to hold it and it is set.
    pub(crate) fn entry<F>(&self, name: &'static str, offset: usize, f: Option<F>) -> Result<F> {
        if offset + size_of::<usize>() > self.api_size {
            return Err(self.unsupported(name));
        }
        f.ok_or_else(|| self.unsupported(name))
    }

    fn unsupported(&self, call: &'static str) -> PjrtError {
        PjrtError::Unsupported {
            call,
            major: self.version.0 as i32,
            minor: self.version.1 as i32,
        }
    }

    /// Calls a PJRT entry point and turns a returned `PJRT_Error` into [`PjrtError::Plugin`].
    /// Use through `pjrt_call!`, which looks the entry up and names the call.
    ///
    /// # Safety
    /// `args` must be a correctly filled argument struct for `f`: every pointer in it valid for
    /// what the C API says the plugin does with it during the call.
    pub(crate) unsafe fn call<A>(
        &self,
        name: &'static str,
        f: Result<unsafe extern "C" fn(*mut A) -> *mut ffi::Error>,
        args: &mut A,
    ) -> Result<()> {
        let error = f?(args);
        self.check(name, error)
    }

    /// Converts a `PJRT_Error*` (null = success) into a result, destroying the error object.
    pub(crate) fn check(&self, call: &'static str, error: *mut ffi::Error) -> Result<()> {
        if error.is_null() {
            return Ok(());
        }
        let api = self.api();
        let mut message_args = ffi::Error_Message_Args::new();
        message_args.error = error;
        let mut code_args = ffi::Error_GetCode_Args::new();
        code_args.error = error;
        // SAFETY: the three error entries were checked present at load; `error` is a live
        // plugin-allocated error that we own and destroy exactly once, after copying the message
        // (whose lifetime is that of the error).
        let (message, code) = unsafe {
            (api.PJRT_Error_Message.unwrap())(&mut message_args);
            let message = owned_string(message_args.message, message_args.message_size);
            let code_error = (api.PJRT_Error_GetCode.unwrap())(&mut code_args);
            let code = if code_error.is_null() {
                ErrorCode::from_raw(code_args.code)
            } else {
                self.destroy_error(code_error);
                ErrorCode::Unknown
            };
            self.destroy_error(error);
            (message, code)
        };
        Err(PjrtError::Plugin {
            call,
            code,
            message,
        })
    }

    /// # Safety
    /// `error` must be a live `PJRT_Error` from this plugin, not used afterwards.
    unsafe fn destroy_error(&self, error: *mut ffi::Error) {
        let mut args = ffi::Error_Destroy_Args::new();
        args.error = error;
        (self.api().PJRT_Error_Destroy.unwrap())(&mut args);
    }
}

/// Copies a (pointer, length) string owned by the plugin; null or invalid UTF-8 never fails.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes.
pub(crate) unsafe fn owned_string(ptr: *const c_char, len: usize) -> String {
    if ptr.is_null() || len == 0 {
        return String::new();
    }
    String::from_utf8_lossy(std::slice::from_raw_parts(ptr as *const u8, len)).into_owned()
}
