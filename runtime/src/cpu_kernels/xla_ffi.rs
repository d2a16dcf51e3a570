//! The XLA FFI C API (`xla/ffi/api/c_api.h`) as far as vidlower's CPU kernels use it: a typed
//! handler's call frame, its buffers, error creation and the metadata query XLA makes when a
//! handler is registered. Declared by hand like the PJRT binding (`pjrt/ffi.rs`); field order and
//! sizes follow the header.

use std::ffi::{c_char, c_void, CString};

/// `XLA_FFI_Extension_Metadata`: the extension XLA passes when it asks a handler for its API
/// version instead of running it.
pub const EXTENSION_METADATA: i32 = 1;
/// `XLA_FFI_ExecutionStage_EXECUTE`: the stage that computes (instantiate, prepare and
/// initialize have nothing to do for these kernels).
pub const STAGE_EXECUTE: i32 = 3;
/// `XLA_FFI_ArgType_BUFFER` / `XLA_FFI_RetType_BUFFER`.
pub const BUFFER: i32 = 1;
/// `XLA_FFI_DataType_F32`.
pub const F32: i32 = 11;
/// `XLA_FFI_Error_Code_INVALID_ARGUMENT` and `_INTERNAL`.
pub const INVALID_ARGUMENT: i32 = 3;
pub const INTERNAL: i32 = 13;
/// The FFI API version these declarations are written against (`XLA_FFI_API_MAJOR/MINOR`).
pub const API_MAJOR: i32 = 0;
pub const API_MINOR: i32 = 1;

#[repr(C)]
pub struct ExtensionBase {
    pub struct_size: usize,
    pub type_: i32,
    pub next: *mut ExtensionBase,
}

#[repr(C)]
pub struct ApiVersion {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub major_version: i32,
    pub minor_version: i32,
}

/// `XLA_FFI_Error`: opaque, created by the framework's `XLA_FFI_Error_Create`.
#[repr(C)]
pub struct Error {
    _private: [u8; 0],
}

#[repr(C)]
pub struct ErrorCreateArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub message: *const c_char,
    pub errc: i32,
}

/// `XLA_FFI_Api`, up to the one entry used (`XLA_FFI_Error_Create`, the first).
#[repr(C)]
pub struct Api {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub api_version: ApiVersion,
    pub internal_api: *mut c_void,
    pub error_create: Option<unsafe extern "C" fn(*mut ErrorCreateArgs) -> *mut Error>,
}

#[repr(C)]
pub struct Buffer {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub dtype: i32,
    pub data: *mut c_void,
    pub rank: i64,
    pub dims: *const i64,
}

/// `XLA_FFI_Args` and `XLA_FFI_Rets` (the same layout).
#[repr(C)]
pub struct Values {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub size: i64,
    pub types: *const i32,
    pub values: *const *mut c_void,
}

#[repr(C)]
pub struct Attrs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub size: i64,
    pub types: *const i32,
    pub names: *const *const c_void,
    pub attrs: *const *mut c_void,
}

#[repr(C)]
pub struct CallFrame {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub api: *const Api,
    pub ctx: *mut c_void,
    pub stage: i32,
    pub args: Values,
    pub rets: Values,
    pub attrs: Attrs,
    pub future: *mut c_void,
}

#[repr(C)]
pub struct Metadata {
    pub struct_size: usize,
    pub api_version: ApiVersion,
    pub traits: u32,
}

#[repr(C)]
pub struct MetadataExtension {
    pub extension_base: ExtensionBase,
    pub metadata: *mut Metadata,
}

/// `XLA_FFI_Handler`.
pub type Handler = unsafe extern "C" fn(*mut CallFrame) -> *mut Error;

/// Answers XLA's metadata query if `frame` is one: returns true when it was (the handler must
/// then return without running).
///
/// # Safety
/// `frame` must be the call frame XLA passed to the handler.
pub unsafe fn answer_metadata_query(frame: &CallFrame) -> bool {
    let ext = frame.extension_start;
    if ext.is_null() || (*ext).type_ != EXTENSION_METADATA {
        return false;
    }
    let metadata = (*(ext as *mut MetadataExtension)).metadata;
    if !metadata.is_null() {
        (*metadata).api_version = ApiVersion {
            struct_size: std::mem::size_of::<ApiVersion>(),
            extension_start: std::ptr::null_mut(),
            major_version: API_MAJOR,
            minor_version: API_MINOR,
        };
        (*metadata).traits = 0;
    }
    true
}

/// A view of one buffer argument or result: f32 data and its dims.
pub struct BufferView {
    pub data: *mut f32,
    pub dims: Vec<usize>,
}

/// Buffer `i` of `values` (the call's arguments or results), checked to be an f32 buffer.
///
/// # Safety
/// `values` must be a call frame's args or rets.
pub unsafe fn f32_buffer(values: &Values, i: usize, what: &str) -> Result<BufferView, String> {
    if i as i64 >= values.size {
        return Err(format!("{what}: missing (the call has {})", values.size));
    }
    if *values.types.add(i) != BUFFER {
        return Err(format!("{what}: not a buffer"));
    }
    let buffer = &*(*values.values.add(i) as *const Buffer);
    if buffer.dtype != F32 {
        return Err(format!("{what}: element type {} (XLA_FFI_DataType), expected F32 ({F32})", buffer.dtype));
    }
    let dims = std::slice::from_raw_parts(buffer.dims, buffer.rank as usize);
    Ok(BufferView { data: buffer.data as *mut f32, dims: dims.iter().map(|&d| d as usize).collect() })
}

/// An `XLA_FFI_Error` with `message`, made by the framework that called the handler.
///
/// # Safety
/// `frame` must be the call frame XLA passed to the handler.
pub unsafe fn error(frame: &CallFrame, code: i32, message: &str) -> *mut Error {
    let message = CString::new(message.replace('\0', " ")).expect("NULs replaced");
    let create = (*frame.api).error_create.expect("XLA_FFI_Error_Create is always set");
    let mut args = ErrorCreateArgs {
        struct_size: std::mem::size_of::<ErrorCreateArgs>(),
        extension_start: std::ptr::null_mut(),
        message: message.as_ptr(),
        errc: code,
    };
    // The framework copies the message into the error it returns.
    create(&mut args)
}
