//! Errors from the PJRT binding: the plugin's own errors (with the call that failed) and ours.

use std::fmt;
use std::path::PathBuf;

use crate::tensor::TensorError;

/// A `PJRT_Error_Code`: the absl status code the plugin attached to an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The operation was cancelled.
    Cancelled,
    /// Unclassified; XLA uses it for most compile failures (MLIR parse or verify errors).
    Unknown,
    /// The call's arguments were wrong (argument counts, sizes, options).
    InvalidArgument,
    /// A timeout expired.
    DeadlineExceeded,
    /// A named entity (device, key) does not exist.
    NotFound,
    /// An entity to create exists already.
    AlreadyExists,
    /// Not allowed.
    PermissionDenied,
    /// Out of memory (device or host) or another quota.
    ResourceExhausted,
    /// The object is not in a state that allows the call (e.g. a deleted buffer).
    FailedPrecondition,
    /// Aborted, typically by a concurrent conflict.
    Aborted,
    /// An index or size beyond the valid range.
    OutOfRange,
    /// The plugin does not implement this call or option.
    Unimplemented,
    /// An invariant inside the plugin broke (also: undecodable serialized executables).
    Internal,
    /// The device or service is (temporarily) unavailable.
    Unavailable,
    /// Unrecoverable data loss or corruption.
    DataLoss,
    /// Missing or invalid credentials.
    Unauthenticated,
    /// A code this binding does not know (a newer plugin), or `OK` on an error object.
    Other(i32),
}

impl ErrorCode {
    /// Maps the raw C enum value; unknown values are kept rather than rejected.
    pub fn from_raw(code: i32) -> Self {
        use ErrorCode::*;
        match code {
            1 => Cancelled,
            2 => Unknown,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            other => Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    /// Prints the absl spelling (`INVALID_ARGUMENT`), as the plugins' own logs do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorCode::*;
        let name = match self {
            Cancelled => "CANCELLED",
            Unknown => "UNKNOWN",
            InvalidArgument => "INVALID_ARGUMENT",
            DeadlineExceeded => "DEADLINE_EXCEEDED",
            NotFound => "NOT_FOUND",
            AlreadyExists => "ALREADY_EXISTS",
            PermissionDenied => "PERMISSION_DENIED",
            ResourceExhausted => "RESOURCE_EXHAUSTED",
            FailedPrecondition => "FAILED_PRECONDITION",
            Aborted => "ABORTED",
            OutOfRange => "OUT_OF_RANGE",
            Unimplemented => "UNIMPLEMENTED",
            Internal => "INTERNAL",
            Unavailable => "UNAVAILABLE",
            DataLoss => "DATA_LOSS",
            Unauthenticated => "UNAUTHENTICATED",
            Other(code) => return write!(f, "code {code}"),
        };
        f.write_str(name)
    }
}

/// Everything that can go wrong between vidlower and a PJRT plugin.
#[derive(Debug, thiserror::Error)]
pub enum PjrtError {
    /// `dlopen` failed (missing file, wrong architecture, unresolved dependency).
    #[error("cannot load PJRT plugin {path}: {source}")]
    Load {
        /// The library that failed to load.
        path: PathBuf,
        /// The loader's reason.
        #[source]
        source: libloading::Error,
    },
    /// The library loaded but is not a PJRT plugin.
    #[error("{path} is not a PJRT plugin: no `GetPjrtApi` symbol ({source})")]
    NoEntryPoint {
        /// The library without the symbol.
        path: PathBuf,
        /// The loader's reason.
        #[source]
        source: libloading::Error,
    },
    /// `GetPjrtApi` returned null.
    #[error("PJRT plugin {path}: GetPjrtApi returned null")]
    NullApi {
        /// The plugin.
        path: PathBuf,
    },
    /// The plugin speaks another major version of the C API, so no struct layout can be trusted.
    #[error(
        "PJRT plugin {path} implements C API {major}.{minor}; vidlower needs C API {expected}.{} or a later {expected}.x (a newer plugin: `vidlower plugin install`)", crate::pjrt::ffi::API_MINOR
    )]
    Version {
        /// The plugin.
        path: PathBuf,
        /// The plugin's C API major version.
        major: i32,
        /// The plugin's C API minor version.
        minor: i32,
        /// The major version this binding speaks.
        expected: i32,
    },
    /// The plugin's function table is too old (or has a null entry) for a call we need.
    #[error("PJRT plugin (C API {major}.{minor}) does not provide {call}")]
    Unsupported {
        /// The missing entry, e.g. `PJRT_Executable_Fingerprint`.
        call: &'static str,
        /// The plugin's C API major version.
        major: i32,
        /// The plugin's C API minor version.
        minor: i32,
    },
    /// The plugin returned a `PJRT_Error`.
    #[error("{call} failed ({code}): {message}")]
    Plugin {
        /// The C API function whose (possibly asynchronous) work failed.
        call: &'static str,
        /// The plugin's status code.
        code: ErrorCode,
        /// The plugin's message, verbatim.
        message: String,
    },
    /// Misuse caught before reaching the plugin (wrong argument counts, mixed clients...).
    #[error("{0}")]
    Usage(String),
    /// A host tensor was malformed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

impl PjrtError {
    /// The plugin's error code, when the plugin produced this error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            PjrtError::Plugin { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Result alias for the binding.
pub type Result<T, E = PjrtError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_like_absl() {
        assert_eq!(ErrorCode::from_raw(3).to_string(), "INVALID_ARGUMENT");
        assert_eq!(ErrorCode::from_raw(12).to_string(), "UNIMPLEMENTED");
        assert_eq!(ErrorCode::from_raw(99), ErrorCode::Other(99));
        let e = PjrtError::Plugin {
            call: "PJRT_Client_Compile",
            code: ErrorCode::InvalidArgument,
            message: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "PJRT_Client_Compile failed (INVALID_ARGUMENT): bad"
        );
    }
}
