//! `#[repr(C)]` declarations for the part of `pjrt_c_api.h` (PJRT C API 0.81) that vidlower uses.
//!
//! Declared by hand from the header rather than generated: bindgen would pull in a libclang build
//! dependency, and the subset we need is small. Field order and types follow the header exactly;
//! `layout_matches_the_c_header` below pins the sizes and offsets to values printed by a C compiler
//! from that header. Structs are only ever *appended to* within a major version, so a struct laid
//! out as in 0.81 is a valid prefix of the same struct in any later 0.x plugin.
//!
//! C enums are plain `i32`s here (not Rust enums) so that an all-zero struct is valid and an
//! unknown value coming back from a newer plugin is not undefined behaviour.

// Declarations mirror the header, so some exist only to keep layouts and numbering complete.
#![allow(non_snake_case, non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};

/// The major version this binding is written against; a plugin with another major is rejected.
pub const API_MAJOR: i32 = 0;
/// The minor version whose struct layouts are declared here.
pub const API_MINOR: i32 = 81;

macro_rules! opaque {
    ($($name:ident),* $(,)?) => {$(
        /// An opaque PJRT object, only ever handled by pointer.
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    ExtensionBase,
    Error,
    Event,
    Client,
    Device,
    DeviceDescription,
    Memory,
    Executable,
    LoadedExecutable,
    Buffer,
    SerializedExecutable,
    ExecuteContext,
    BufferMemoryLayout,
);

/// `PJRT_Error_Code`: absl status codes.
pub type ErrorCode = i32;
/// `PJRT_NamedValue_Type`.
pub type NamedValueType = i32;
pub const NAMED_VALUE_STRING: NamedValueType = 0;
pub const NAMED_VALUE_INT64: NamedValueType = 1;
pub const NAMED_VALUE_INT64_LIST: NamedValueType = 2;
pub const NAMED_VALUE_FLOAT: NamedValueType = 3;
pub const NAMED_VALUE_BOOL: NamedValueType = 4;

/// `PJRT_Buffer_Type`: element types, numbered as in the header.
pub type BufferType = i32;
pub const BUFFER_TYPE_INVALID: BufferType = 0;
pub const BUFFER_TYPE_PRED: BufferType = 1;
pub const BUFFER_TYPE_S8: BufferType = 2;
pub const BUFFER_TYPE_S32: BufferType = 4;
pub const BUFFER_TYPE_S64: BufferType = 5;
pub const BUFFER_TYPE_U8: BufferType = 6;
pub const BUFFER_TYPE_F16: BufferType = 10;
pub const BUFFER_TYPE_F32: BufferType = 11;
pub const BUFFER_TYPE_F64: BufferType = 12;
pub const BUFFER_TYPE_BF16: BufferType = 13;

/// `PJRT_HostBufferSemantics`.
pub type HostBufferSemantics = i32;
/// The runtime copies (or finishes reading) `data` before `BufferFromHostBuffer` returns.
pub const HOST_BUFFER_IMMUTABLE_ONLY_DURING_CALL: HostBufferSemantics = 0;
/// `BufferFromHostBuffer` may return before the copy; `data` must stay unchanged and alive until
/// the returned `done_with_host_buffer` event fires (so several transfers can run at once).
pub const HOST_BUFFER_IMMUTABLE_UNTIL_TRANSFER_COMPLETES: HostBufferSemantics = 1;

/// Every argument struct: a zeroed value with `struct_size` set, as the C API expects.
pub trait Args: Sized {
    /// `<struct>_STRUCT_SIZE` from the header: offset of the last field plus its size. This is
    /// what the plugin compares against, so it tells the plugin exactly which fields we know of.
    const STRUCT_SIZE: usize;
    /// All fields zero (null pointers, `false`, 0) and `struct_size` set.
    fn new() -> Self;
}

/// Size of a field named through a projection closure; lets `STRUCT_SIZE` be computed in a const.
const fn field_size<S, F>(_: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

/// Declares an argument struct: `struct_size` and `extension_start` are prepended, as every
/// PJRT argument struct starts with them, and `Args` is implemented with `last` as the last field.
macro_rules! args {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? } last $last:ident) => {
        #[doc = concat!("`PJRT_", stringify!($name), "` from `pjrt_c_api.h`.")]
        #[repr(C)]
        pub struct $name {
            pub struct_size: usize,
            pub extension_start: *mut ExtensionBase,
            $(pub $field: $ty,)*
        }
        impl Args for $name {
            const STRUCT_SIZE: usize =
                offset_of!($name, $last) + field_size(|s: &$name| &s.$last);
            fn new() -> Self {
                // SAFETY: every field is a raw pointer, integer, float, bool, union of those or
                // `Option<fn>`; all-zero is a valid value of each.
                let mut args: Self = unsafe { std::mem::zeroed() };
                args.struct_size = Self::STRUCT_SIZE;
                args
            }
        }
    };
}

args!(Api_Version { major_version: i32, minor_version: i32 } last minor_version);

args!(Error_Destroy_Args { error: *mut Error } last error);
args!(Error_Message_Args { error: *const Error, message: *const c_char, message_size: usize } last message_size);
args!(Error_GetCode_Args { error: *const Error, code: ErrorCode } last code);

/// The value of a `PJRT_NamedValue`, selected by its `type_`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NamedValueUnion {
    pub string_value: *const c_char,
    pub int64_value: i64,
    pub int64_array_value: *const i64,
    pub float_value: f32,
    pub bool_value: bool,
}

args!(NamedValue {
    name: *const c_char,
    name_size: usize,
    type_: NamedValueType,
    value: NamedValueUnion,
    value_size: usize,
} last value_size);

args!(Plugin_Initialize_Args {} last extension_start);
args!(Plugin_Attributes_Args { attributes: *const NamedValue, num_attributes: usize } last num_attributes);

args!(Event_Destroy_Args { event: *mut Event } last event);
args!(Event_IsReady_Args { event: *mut Event, is_ready: bool } last is_ready);
args!(Event_Await_Args { event: *mut Event } last event);

args!(Client_Create_Args {
    create_options: *const NamedValue,
    num_options: usize,
    kv_get_callback: *mut c_void,
    kv_get_user_arg: *mut c_void,
    kv_put_callback: *mut c_void,
    kv_put_user_arg: *mut c_void,
    client: *mut Client,
    kv_try_get_callback: *mut c_void,
    kv_try_get_user_arg: *mut c_void,
} last kv_try_get_user_arg);
args!(Client_Destroy_Args { client: *mut Client } last client);
args!(Client_PlatformName_Args {
    client: *mut Client,
    platform_name: *const c_char,
    platform_name_size: usize,
} last platform_name_size);
args!(Client_PlatformVersion_Args {
    client: *mut Client,
    platform_version: *const c_char,
    platform_version_size: usize,
} last platform_version_size);
args!(Client_Devices_Args { client: *mut Client, devices: *const *mut Device, num_devices: usize } last num_devices);
args!(Client_AddressableDevices_Args {
    client: *mut Client,
    addressable_devices: *const *mut Device,
    num_addressable_devices: usize,
} last num_addressable_devices);

args!(Program {
    code: *mut c_char,
    code_size: usize,
    format: *const c_char,
    format_size: usize,
} last format_size);
args!(Client_Compile_Args {
    client: *mut Client,
    program: *const Program,
    compile_options: *const c_char,
    compile_options_size: usize,
    executable: *mut LoadedExecutable,
} last executable);

args!(Client_BufferFromHostBuffer_Args {
    client: *mut Client,
    data: *const c_void,
    type_: BufferType,
    dims: *const i64,
    num_dims: usize,
    byte_strides: *const i64,
    num_byte_strides: usize,
    host_buffer_semantics: HostBufferSemantics,
    device: *mut Device,
    memory: *mut Memory,
    device_layout: *mut BufferMemoryLayout,
    done_with_host_buffer: *mut Event,
    buffer: *mut Buffer,
} last buffer);

args!(DeviceDescription_Id_Args { device_description: *mut DeviceDescription, id: i32 } last id);
args!(DeviceDescription_Kind_Args {
    device_description: *mut DeviceDescription,
    device_kind: *const c_char,
    device_kind_size: usize,
} last device_kind_size);
args!(Device_GetDescription_Args {
    device: *mut Device,
    device_description: *mut DeviceDescription,
} last device_description);
args!(Device_IsAddressable_Args { device: *mut Device, is_addressable: bool } last is_addressable);
args!(Device_LocalHardwareId_Args { device: *mut Device, local_hardware_id: i32 } last local_hardware_id);
// Each `_is_set` says whether the platform reports the value before it (the CPU plugin reports
// none of them; the GPU ones report `bytes_limit`, what the allocator may hand out).
args!(Device_MemoryStats_Args {
    device: *mut Device,
    bytes_in_use: i64,
    peak_bytes_in_use: i64,
    peak_bytes_in_use_is_set: bool,
    num_allocs: i64,
    num_allocs_is_set: bool,
    largest_alloc_size: i64,
    largest_alloc_size_is_set: bool,
    bytes_limit: i64,
    bytes_limit_is_set: bool,
    bytes_reserved: i64,
    bytes_reserved_is_set: bool,
    peak_bytes_reserved: i64,
    peak_bytes_reserved_is_set: bool,
    bytes_reservable_limit: i64,
    bytes_reservable_limit_is_set: bool,
    largest_free_block_bytes: i64,
    largest_free_block_bytes_is_set: bool,
} last largest_free_block_bytes_is_set);

args!(Executable_Destroy_Args { executable: *mut Executable } last executable);
args!(Executable_NumPartitions_Args { executable: *mut Executable, num_partitions: usize } last num_partitions);
args!(Executable_NumOutputs_Args { executable: *mut Executable, num_outputs: usize } last num_outputs);
// `xla::CompiledMemoryStats` of a compiled executable, in bytes, from buffer assignment: no
// execution needed. Device memory first, then the host-memory-space counterparts. Declared with
// the two fields later headers append (0.81's struct ends at `host_temp_size_in_bytes`, 104
// bytes): plugins take a larger struct than theirs but refuse a smaller one, and API 0.115's
// wants 112 ("expected 112, got 104").
args!(Executable_GetCompiledMemoryStats_Args {
    executable: *mut Executable,
    generated_code_size_in_bytes: i64,
    argument_size_in_bytes: i64,
    output_size_in_bytes: i64,
    alias_size_in_bytes: i64,
    temp_size_in_bytes: i64,
    host_generated_code_size_in_bytes: i64,
    host_argument_size_in_bytes: i64,
    host_output_size_in_bytes: i64,
    host_alias_size_in_bytes: i64,
    host_temp_size_in_bytes: i64,
    peak_memory_in_bytes: i64,
    total_size_in_bytes: i64,
} last total_size_in_bytes);
args!(Executable_Fingerprint_Args {
    executable: *mut Executable,
    executable_fingerprint: *const c_char,
    executable_fingerprint_size: usize,
} last executable_fingerprint_size);
args!(Executable_Serialize_Args {
    executable: *const Executable,
    serialized_bytes: *const c_char,
    serialized_bytes_size: usize,
    serialized_executable: *mut SerializedExecutable,
    serialized_executable_deleter: Option<unsafe extern "C" fn(*mut SerializedExecutable)>,
} last serialized_executable_deleter);
args!(Executable_DeserializeAndLoad_Args {
    client: *mut Client,
    serialized_executable: *const c_char,
    serialized_executable_size: usize,
    loaded_executable: *mut LoadedExecutable,
    overridden_serialized_compile_options: *const c_char,
    overridden_serialized_compile_options_size: usize,
} last overridden_serialized_compile_options_size);

args!(LoadedExecutable_Destroy_Args { executable: *mut LoadedExecutable } last executable);
args!(LoadedExecutable_GetExecutable_Args {
    loaded_executable: *mut LoadedExecutable,
    executable: *mut Executable,
} last executable);
args!(LoadedExecutable_AddressableDevices_Args {
    executable: *mut LoadedExecutable,
    addressable_devices: *const *mut Device,
    num_addressable_devices: usize,
} last num_addressable_devices);
args!(ExecuteOptions {
    send_callbacks: *mut c_void,
    recv_callbacks: *mut c_void,
    num_send_ops: usize,
    num_recv_ops: usize,
    launch_id: i32,
    non_donatable_input_indices: *const i64,
    num_non_donatable_input_indices: usize,
    context: *mut ExecuteContext,
    call_location: *const c_char,
    num_tasks: usize,
    task_ids: *mut i32,
    incarnation_ids: *mut i64,
} last incarnation_ids);
args!(LoadedExecutable_Execute_Args {
    executable: *mut LoadedExecutable,
    options: *mut ExecuteOptions,
    argument_lists: *const *const *mut Buffer,
    num_devices: usize,
    num_args: usize,
    output_lists: *const *mut *mut Buffer,
    device_complete_events: *mut *mut Event,
    execute_device: *mut Device,
} last execute_device);

args!(Buffer_Destroy_Args { buffer: *mut Buffer } last buffer);
args!(Buffer_ElementType_Args { buffer: *mut Buffer, type_: BufferType } last type_);
args!(Buffer_Dimensions_Args { buffer: *mut Buffer, dims: *const i64, num_dims: usize } last num_dims);
args!(Buffer_Device_Args { buffer: *mut Buffer, device: *mut Device } last device);
args!(Buffer_ToHostBuffer_Args {
    src: *mut Buffer,
    host_layout: *mut BufferMemoryLayout,
    dst: *mut c_void,
    dst_size: usize,
    event: *mut Event,
} last event);

/// A PJRT entry point: takes its argument struct, returns an owned error or null.
pub type PjrtFn<A> = Option<unsafe extern "C" fn(*mut A) -> *mut Error>;
/// A slot in the function table that vidlower does not call; declared to keep the offsets right.
pub type Unused = Option<unsafe extern "C" fn()>;

/// `PJRT_Api`: the function table `GetPjrtApi` returns. Declared up to the last entry we call;
/// the plugin's table is longer, and `struct_size` says how much of ours it actually provides.
#[repr(C)]
pub struct Api {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub pjrt_api_version: Api_Version,
    pub PJRT_Error_Destroy: Option<unsafe extern "C" fn(*mut Error_Destroy_Args)>,
    pub PJRT_Error_Message: Option<unsafe extern "C" fn(*mut Error_Message_Args)>,
    pub PJRT_Error_GetCode: PjrtFn<Error_GetCode_Args>,
    pub PJRT_Plugin_Initialize: PjrtFn<Plugin_Initialize_Args>,
    pub PJRT_Plugin_Attributes: PjrtFn<Plugin_Attributes_Args>,
    pub PJRT_Event_Destroy: PjrtFn<Event_Destroy_Args>,
    pub PJRT_Event_IsReady: PjrtFn<Event_IsReady_Args>,
    pub PJRT_Event_Error: Unused,
    pub PJRT_Event_Await: PjrtFn<Event_Await_Args>,
    pub PJRT_Event_OnReady: Unused,
    pub PJRT_Client_Create: PjrtFn<Client_Create_Args>,
    pub PJRT_Client_Destroy: PjrtFn<Client_Destroy_Args>,
    pub PJRT_Client_PlatformName: PjrtFn<Client_PlatformName_Args>,
    pub PJRT_Client_ProcessIndex: Unused,
    pub PJRT_Client_PlatformVersion: PjrtFn<Client_PlatformVersion_Args>,
    pub PJRT_Client_Devices: PjrtFn<Client_Devices_Args>,
    pub PJRT_Client_AddressableDevices: PjrtFn<Client_AddressableDevices_Args>,
    pub PJRT_Client_LookupDevice: Unused,
    pub PJRT_Client_LookupAddressableDevice: Unused,
    pub PJRT_Client_AddressableMemories: Unused,
    pub PJRT_Client_Compile: PjrtFn<Client_Compile_Args>,
    pub PJRT_Client_DefaultDeviceAssignment: Unused,
    pub PJRT_Client_BufferFromHostBuffer: PjrtFn<Client_BufferFromHostBuffer_Args>,
    pub PJRT_DeviceDescription_Id: PjrtFn<DeviceDescription_Id_Args>,
    pub PJRT_DeviceDescription_ProcessIndex: Unused,
    pub PJRT_DeviceDescription_Attributes: Unused,
    pub PJRT_DeviceDescription_Kind: PjrtFn<DeviceDescription_Kind_Args>,
    pub PJRT_DeviceDescription_DebugString: Unused,
    pub PJRT_DeviceDescription_ToString: Unused,
    pub PJRT_Device_GetDescription: PjrtFn<Device_GetDescription_Args>,
    pub PJRT_Device_IsAddressable: PjrtFn<Device_IsAddressable_Args>,
    pub PJRT_Device_LocalHardwareId: PjrtFn<Device_LocalHardwareId_Args>,
    pub PJRT_Device_AddressableMemories: Unused,
    pub PJRT_Device_DefaultMemory: Unused,
    pub PJRT_Device_MemoryStats: PjrtFn<Device_MemoryStats_Args>,
    pub PJRT_Memory_Id: Unused,
    pub PJRT_Memory_Kind: Unused,
    pub PJRT_Memory_DebugString: Unused,
    pub PJRT_Memory_ToString: Unused,
    pub PJRT_Memory_AddressableByDevices: Unused,
    pub PJRT_Executable_Destroy: PjrtFn<Executable_Destroy_Args>,
    pub PJRT_Executable_Name: Unused,
    pub PJRT_Executable_NumReplicas: Unused,
    pub PJRT_Executable_NumPartitions: PjrtFn<Executable_NumPartitions_Args>,
    pub PJRT_Executable_NumOutputs: PjrtFn<Executable_NumOutputs_Args>,
    pub PJRT_Executable_SizeOfGeneratedCodeInBytes: Unused,
    pub PJRT_Executable_GetCostAnalysis: Unused,
    pub PJRT_Executable_OutputMemoryKinds: Unused,
    pub PJRT_Executable_OptimizedProgram: Unused,
    pub PJRT_Executable_Serialize: PjrtFn<Executable_Serialize_Args>,
    pub PJRT_LoadedExecutable_Destroy: PjrtFn<LoadedExecutable_Destroy_Args>,
    pub PJRT_LoadedExecutable_GetExecutable: PjrtFn<LoadedExecutable_GetExecutable_Args>,
    pub PJRT_LoadedExecutable_AddressableDevices: PjrtFn<LoadedExecutable_AddressableDevices_Args>,
    pub PJRT_LoadedExecutable_Delete: Unused,
    pub PJRT_LoadedExecutable_IsDeleted: Unused,
    pub PJRT_LoadedExecutable_Execute: PjrtFn<LoadedExecutable_Execute_Args>,
    pub PJRT_Executable_DeserializeAndLoad: PjrtFn<Executable_DeserializeAndLoad_Args>,
    pub PJRT_LoadedExecutable_Fingerprint: Unused,
    pub PJRT_Buffer_Destroy: PjrtFn<Buffer_Destroy_Args>,
    pub PJRT_Buffer_ElementType: PjrtFn<Buffer_ElementType_Args>,
    pub PJRT_Buffer_Dimensions: PjrtFn<Buffer_Dimensions_Args>,
    pub PJRT_Buffer_UnpaddedDimensions: Unused,
    pub PJRT_Buffer_DynamicDimensionIndices: Unused,
    pub PJRT_Buffer_GetMemoryLayout: Unused,
    pub PJRT_Buffer_OnDeviceSizeInBytes: Unused,
    pub PJRT_Buffer_Device: PjrtFn<Buffer_Device_Args>,
    pub PJRT_Buffer_Memory: Unused,
    pub PJRT_Buffer_Delete: Unused,
    pub PJRT_Buffer_IsDeleted: Unused,
    pub PJRT_Buffer_CopyToDevice: Unused,
    pub PJRT_Buffer_ToHostBuffer: PjrtFn<Buffer_ToHostBuffer_Args>,
    pub PJRT_Buffer_IsOnCpu: Unused,
    pub PJRT_Buffer_ReadyEvent: Unused,
    pub PJRT_Buffer_UnsafePointer: Unused,
    pub PJRT_Buffer_IncreaseExternalReferenceCount: Unused,
    pub PJRT_Buffer_DecreaseExternalReferenceCount: Unused,
    pub PJRT_Buffer_OpaqueDeviceMemoryDataPointer: Unused,
    pub PJRT_CopyToDeviceStream_Destroy: Unused,
    pub PJRT_CopyToDeviceStream_AddChunk: Unused,
    pub PJRT_CopyToDeviceStream_TotalBytes: Unused,
    pub PJRT_CopyToDeviceStream_GranuleSize: Unused,
    pub PJRT_CopyToDeviceStream_CurrentBytes: Unused,
    pub PJRT_TopologyDescription_Create: Unused,
    pub PJRT_TopologyDescription_Destroy: Unused,
    pub PJRT_TopologyDescription_PlatformName: Unused,
    pub PJRT_TopologyDescription_PlatformVersion: Unused,
    pub PJRT_TopologyDescription_GetDeviceDescriptions: Unused,
    pub PJRT_TopologyDescription_Serialize: Unused,
    pub PJRT_TopologyDescription_Attributes: Unused,
    pub PJRT_Compile: Unused,
    pub PJRT_Executable_OutputElementTypes: Unused,
    pub PJRT_Executable_OutputDimensions: Unused,
    pub PJRT_Buffer_CopyToMemory: Unused,
    pub PJRT_Client_CreateViewOfDeviceBuffer: Unused,
    pub PJRT_Executable_Fingerprint: PjrtFn<Executable_Fingerprint_Args>,
    pub PJRT_Client_TopologyDescription: Unused,
    pub PJRT_Executable_GetCompiledMemoryStats: PjrtFn<Executable_GetCompiledMemoryStats_Args>,
}

/// The signature of the one symbol a plugin exports.
pub type GetPjrtApiFn = unsafe extern "C" fn() -> *const Api;

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! assert_struct_sizes {
        ($($name:ident = $c:expr),* $(,)?) => {$(
            assert_eq!($name::STRUCT_SIZE, $c, concat!("PJRT_", stringify!($name), "_STRUCT_SIZE"));
        )*};
    }

    macro_rules! assert_api_offsets {
        ($($field:ident = $c:expr),* $(,)?) => {$(
            assert_eq!(offset_of!(Api, $field), $c, concat!("offsetof(PJRT_Api, ", stringify!($field), ")"));
        )*};
    }

    /// Sizes and offsets printed by gcc from the 0.81 `pjrt_c_api.h` (`<name>_STRUCT_SIZE` and
    /// `offsetof(PJRT_Api, ...)`), so a mistyped field here fails a test instead of corrupting
    /// memory inside the plugin.
    #[test]
    fn layout_matches_the_c_header() {
        assert_struct_sizes!(
            Api_Version = 24,
            Error_Destroy_Args = 24,
            Error_Message_Args = 40,
            Error_GetCode_Args = 28,
            NamedValue = 56,
            Plugin_Initialize_Args = 16,
            Plugin_Attributes_Args = 32,
            Event_Destroy_Args = 24,
            Event_IsReady_Args = 25,
            Event_Await_Args = 24,
            Client_Create_Args = 88,
            Client_Destroy_Args = 24,
            Client_PlatformName_Args = 40,
            Client_PlatformVersion_Args = 40,
            Client_Devices_Args = 40,
            Client_AddressableDevices_Args = 40,
            Program = 48,
            Client_Compile_Args = 56,
            Client_BufferFromHostBuffer_Args = 120,
            DeviceDescription_Id_Args = 28,
            DeviceDescription_Kind_Args = 40,
            Device_GetDescription_Args = 32,
            Device_IsAddressable_Args = 25,
            Device_LocalHardwareId_Args = 28,
            Executable_Destroy_Args = 24,
            Executable_NumPartitions_Args = 32,
            Executable_NumOutputs_Args = 32,
            Executable_Fingerprint_Args = 40,
            Executable_GetCompiledMemoryStats_Args = 120,
            Device_MemoryStats_Args = 153,
            Executable_Serialize_Args = 56,
            Executable_DeserializeAndLoad_Args = 64,
            LoadedExecutable_Destroy_Args = 24,
            LoadedExecutable_GetExecutable_Args = 32,
            LoadedExecutable_AddressableDevices_Args = 40,
            ExecuteOptions = 112,
            LoadedExecutable_Execute_Args = 80,
            Buffer_Destroy_Args = 24,
            Buffer_ElementType_Args = 28,
            Buffer_Dimensions_Args = 40,
            Buffer_Device_Args = 32,
            Buffer_ToHostBuffer_Args = 56,
        );
        // Every entry we call (the `Unused` slots between them only need to count right).
        assert_api_offsets!(
            PJRT_Error_Destroy = 40,
            PJRT_Error_Message = 48,
            PJRT_Error_GetCode = 56,
            PJRT_Plugin_Initialize = 64,
            PJRT_Plugin_Attributes = 72,
            PJRT_Event_Destroy = 80,
            PJRT_Event_IsReady = 88,
            PJRT_Event_Await = 104,
            PJRT_Client_Create = 120,
            PJRT_Client_Destroy = 128,
            PJRT_Client_PlatformName = 136,
            PJRT_Client_PlatformVersion = 152,
            PJRT_Client_Devices = 160,
            PJRT_Client_AddressableDevices = 168,
            PJRT_Client_Compile = 200,
            PJRT_Client_BufferFromHostBuffer = 216,
            PJRT_DeviceDescription_Id = 224,
            PJRT_DeviceDescription_Kind = 248,
            PJRT_Device_GetDescription = 272,
            PJRT_Device_IsAddressable = 280,
            PJRT_Device_LocalHardwareId = 288,
            PJRT_Executable_Destroy = 360,
            PJRT_Executable_NumPartitions = 384,
            PJRT_Executable_NumOutputs = 392,
            PJRT_Executable_Serialize = 432,
            PJRT_LoadedExecutable_Destroy = 440,
            PJRT_LoadedExecutable_GetExecutable = 448,
            PJRT_LoadedExecutable_AddressableDevices = 456,
            PJRT_LoadedExecutable_Execute = 480,
            PJRT_Executable_DeserializeAndLoad = 488,
            PJRT_Buffer_Destroy = 504,
            PJRT_Buffer_ElementType = 512,
            PJRT_Buffer_Dimensions = 520,
            PJRT_Buffer_Device = 560,
            PJRT_Buffer_ToHostBuffer = 600,
            PJRT_Executable_Fingerprint = 792,
            PJRT_Device_MemoryStats = 312,
            PJRT_Executable_GetCompiledMemoryStats = 808,
        );
    }
}
