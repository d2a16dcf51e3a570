//! Element types of IR tensors, and their spellings in the IR text, StableHLO and safetensors.

use std::fmt;
use std::str::FromStr;

/// An element type. Shapes are static, so a tensor type is a dtype plus a list of dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    BF16,
    F16,
    F64,
    /// Booleans (comparison results, masks).
    I1,
    I8,
    U8,
    I32,
    I64,
}

impl DType {
    pub const ALL: [DType; 9] = [
        DType::F32,
        DType::BF16,
        DType::F16,
        DType::F64,
        DType::I1,
        DType::I8,
        DType::U8,
        DType::I32,
        DType::I64,
    ];

    /// Bytes per element in a dense host buffer (i1 is stored as one byte, as PJRT and safetensors do).
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::I1 | DType::I8 | DType::U8 => 1,
            DType::BF16 | DType::F16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::BF16 | DType::F16 | DType::F64)
    }

    pub fn is_integer(self) -> bool {
        matches!(self, DType::I8 | DType::U8 | DType::I32 | DType::I64)
    }

    pub fn is_unsigned(self) -> bool {
        matches!(self, DType::U8 | DType::I1)
    }

    /// The short name used in the IR text form (`f32[2,3]`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::F64 => "f64",
            DType::I1 => "i1",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }

    /// The MLIR element type (`tensor<2x3xbf16>`). StableHLO spells unsigned ints `ui8`.
    pub fn mlir_name(self) -> &'static str {
        match self {
            DType::U8 => "ui8",
            other => other.name(),
        }
    }

    /// The safetensors header spelling (`"BF16"`); i1 has none and is stored as `BOOL`.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::F64 => "F64",
            DType::I1 => "BOOL",
            DType::I8 => "I8",
            DType::U8 => "U8",
            DType::I32 => "I32",
            DType::I64 => "I64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown dtype `{s}` (expected one of f32, bf16, f16, f64, i1, i8, u8, i32, i64)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert!("f8".parse::<DType>().is_err());
    }
}
