//! Tensor and value types. Shapes are static: every dim is a known non-negative size.

use crate::DType;
use std::fmt;

/// A ranked tensor type with a static shape (`f32[2,16,64]`; a scalar is `f32[]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<i64>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: impl Into<Vec<i64>>) -> Self {
        TensorType { dtype, shape: shape.into() }
    }

    pub fn scalar(dtype: DType) -> Self {
        TensorType { dtype, shape: vec![] }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn num_elements(&self) -> i64 {
        self.shape.iter().product()
    }

    pub fn size_in_bytes(&self) -> i64 {
        self.num_elements() * self.dtype.size_in_bytes() as i64
    }

    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType { dtype, shape: self.shape.clone() }
    }

    pub fn with_shape(&self, shape: impl Into<Vec<i64>>) -> Self {
        TensorType { dtype: self.dtype, shape: shape.into() }
    }

    /// `tensor<2x16x64xf32>`, the MLIR spelling.
    pub fn mlir(&self) -> String {
        let mut s = String::from("tensor<");
        for d in &self.shape {
            s.push_str(&d.to_string());
            s.push('x');
        }
        s.push_str(self.dtype.mlir_name());
        s.push('>');
        s
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of one SSA value: a tensor, or a tuple of tensors for ops with several results
/// (`while`, multi-result `custom_call`); a tuple is taken apart with `get`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Tensor(TensorType),
    Tuple(Vec<TensorType>),
}

impl Type {
    /// The tensor type, or `None` for a tuple.
    pub fn tensor(&self) -> Option<&TensorType> {
        match self {
            Type::Tensor(t) => Some(t),
            Type::Tuple(_) => None,
        }
    }

    /// The result types as a list: one for a tensor, each element for a tuple.
    pub fn flatten(&self) -> Vec<TensorType> {
        match self {
            Type::Tensor(t) => vec![t.clone()],
            Type::Tuple(ts) => ts.clone(),
        }
    }
}

impl From<TensorType> for Type {
    fn from(t: TensorType) -> Self {
        Type::Tensor(t)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Tensor(t) => write!(f, "{t}"),
            Type::Tuple(ts) => {
                f.write_str("(")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
        }
    }
}
