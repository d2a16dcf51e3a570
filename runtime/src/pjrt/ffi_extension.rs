//! The plugin's FFI extension (`pjrt_c_api_ffi_extension.h`): how vidlower's own kernels
//! ([`crate::cpu_kernels`]) become custom call targets of a plugin's XLA.
//!
//! `PJRT_FFI_Register_Handler_Args` changed layout between releases: older ones are
//! `{struct_size, target_name, target_name_size, handler, platform_name, platform_name_size,
//! traits}` (52 bytes), newer ones put `int api_version` (1 = typed FFI) after the target name
//! (60 bytes). Neither has `extension_start`. The plugin checks `struct_size` before reading
//! anything else, so a call with `struct_size` 8 is refused with the size it expects, and that
//! picks the layout; any other size is not registered (a wrong layout would hand XLA a garbage
//! handler pointer).

use std::ffi::{c_char, c_void};

use super::error::{PjrtError, Result};
use super::ffi;
use super::plugin::Plugin;
use crate::cpu_kernels::xla_ffi::Handler;

/// `PJRT_Extension_Type_FFI`.
const EXTENSION_TYPE_FFI: i32 = 5;

/// `PJRT_Extension_Base`.
#[repr(C)]
struct ExtensionBase {
    struct_size: usize,
    type_: i32,
    next: *const ExtensionBase,
}

type RegisterHandlerFn = unsafe extern "C" fn(*mut c_void) -> *mut ffi::Error;

/// `PJRT_FFI_Extension`.
#[repr(C)]
struct FfiExtension {
    base: ExtensionBase,
    type_register: *const c_void,
    user_data_add: *const c_void,
    register_handler: Option<RegisterHandlerFn>,
}

/// The older `PJRT_FFI_Register_Handler_Args` (no `api_version`; typed handlers only).
#[repr(C)]
struct RegisterArgsTypedOnly {
    struct_size: usize,
    target_name: *const c_char,
    target_name_size: usize,
    handler: *const c_void,
    platform_name: *const c_char,
    platform_name_size: usize,
    traits: u32,
}

/// The newer `PJRT_FFI_Register_Handler_Args` (`api_version` 1 = typed).
#[repr(C)]
struct RegisterArgsVersioned {
    struct_size: usize,
    target_name: *const c_char,
    target_name_size: usize,
    api_version: i32,
    handler: *const c_void,
    platform_name: *const c_char,
    platform_name_size: usize,
    traits: u32,
}

/// `XLA_STRUCT_SIZE`: offset of `traits` plus its size (the C headers' `_STRUCT_SIZE`).
const TYPED_ONLY_SIZE: usize = std::mem::offset_of!(RegisterArgsTypedOnly, traits) + 4;
const VERSIONED_SIZE: usize = std::mem::offset_of!(RegisterArgsVersioned, traits) + 4;

/// Which argument layout the plugin takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    TypedOnly,
    Versioned,
}

impl Plugin {
    /// The plugin's FFI extension, if its extension chain has one with `register_handler`.
    fn ffi_register_handler(&self) -> Option<RegisterHandlerFn> {
        let mut ext = self.api().extension_start as *const ExtensionBase;
        while !ext.is_null() {
            // SAFETY: the chain is the plugin's static list of extensions, each starting with
            // `PJRT_Extension_Base`; a node of type FFI is a `PJRT_FFI_Extension`, whose
            // `struct_size` says whether `register_handler` is there.
            unsafe {
                if (*ext).type_ == EXTENSION_TYPE_FFI {
                    let size = (*ext).struct_size;
                    if size < std::mem::size_of::<FfiExtension>() {
                        return None;
                    }
                    return (*(ext as *const FfiExtension)).register_handler;
                }
                ext = (*ext).next;
            }
        }
        None
    }

    /// The register-handler argument layout, asked before each registration (see the module doc).
    fn register_layout(&self, register: RegisterHandlerFn) -> Option<Layout> {
        let mut probe = [0usize; 8];
        probe[0] = std::mem::size_of::<usize>();
        // SAFETY: the plugin reads `struct_size` (8), finds it smaller than its own and returns
        // an error without reading further; the buffer is larger than any layout anyway.
        let error = unsafe { register(probe.as_mut_ptr() as *mut c_void) };
        let message = match self.check("PJRT_FFI_Register_Handler", error) {
            Ok(()) => return None,
            Err(e) => e.to_string(),
        };
        match expected_struct_size(&message)? {
            TYPED_ONLY_SIZE => Some(Layout::TypedOnly),
            VERSIONED_SIZE => Some(Layout::Versioned),
            _ => None,
        }
    }

    /// Registers `handler` as the typed FFI custom call target `target` on `platform`, once per
    /// process and plugin (XLA's registry refuses a second registration of a name). Fails if
    /// the plugin has no FFI extension or takes a register layout this binding does not know.
    pub fn register_ffi_handler(&self, target: &str, handler: Handler, platform: &str) -> Result<()> {
        let unsupported = |why: &str| PjrtError::Usage(format!("cannot register custom call `{target}` with {}: {why}", self.path().display()));
        let register = self.ffi_register_handler().ok_or_else(|| unsupported("the plugin has no FFI extension"))?;
        let layout = self.register_layout(register).ok_or_else(|| unsupported("unknown PJRT_FFI_Register_Handler_Args layout"))?;
        let (name, plat, handler) = (target.as_ptr() as *const c_char, platform.as_ptr() as *const c_char, handler as *const c_void);
        let error = match layout {
            Layout::TypedOnly => {
                let mut args = RegisterArgsTypedOnly {
                    struct_size: TYPED_ONLY_SIZE,
                    target_name: name,
                    target_name_size: target.len(),
                    handler,
                    platform_name: plat,
                    platform_name_size: platform.len(),
                    traits: 0,
                };
                // SAFETY: the layout the plugin asked for; the strings outlive the call (XLA copies them).
                unsafe { register(&mut args as *mut _ as *mut c_void) }
            }
            Layout::Versioned => {
                let mut args = RegisterArgsVersioned {
                    struct_size: VERSIONED_SIZE,
                    target_name: name,
                    target_name_size: target.len(),
                    api_version: 1,
                    handler,
                    platform_name: plat,
                    platform_name_size: platform.len(),
                    traits: 0,
                };
                // SAFETY: as above.
                unsafe { register(&mut args as *mut _ as *mut c_void) }
            }
        };
        self.check("PJRT_FFI_Register_Handler", error)
    }

    /// Whether vidlower's CPU kernels are registered with this plugin: registers them on the
    /// first call (the caller has a CPU client of this plugin) and remembers the answer.
    pub fn cpu_kernels_registered(&self) -> bool {
        *self.cpu_kernels.get_or_init(|| {
            crate::cpu_kernels::handlers().into_iter().all(|(target, handler)| {
                self.register_ffi_handler(target, handler, crate::cpu_kernels::PLATFORM).is_ok()
            })
        })
    }
}

/// The size a plugin's struct-size error asks for: "Unexpected X size: expected 52, got 8. ...".
fn expected_struct_size(message: &str) -> Option<usize> {
    message.split("size: expected ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_layouts_and_the_probe_answer() {
        assert_eq!((TYPED_ONLY_SIZE, VERSIONED_SIZE), (52, 60));
        let answer = "PJRT_FFI_Register_Handler failed (INVALID_ARGUMENT): Unexpected PJRT_FFI_Register_Handler_Args \
                      size: expected 52, got 8. The plugin is likely built with a later version than the framework.";
        assert_eq!(expected_struct_size(answer), Some(52));
        assert_eq!(expected_struct_size("Unexpected size"), None);
    }
}
