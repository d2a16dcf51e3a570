//! Host tensors: a dtype, static dims and a dense row-major byte buffer in native byte order,
//! which is exactly what `PJRT_Client_BufferFromHostBuffer` reads and `PJRT_Buffer_ToHostBuffer`
//! writes when no strides or layout are given.

use half::{bf16, f16};
use crate::DType;

/// A malformed host tensor or a typed access that does not fit it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// A dimension below zero.
    #[error("invalid shape {dims:?}: dimensions must be >= 0")]
    NegativeDim {
        /// The offending shape.
        dims: Vec<i64>,
    },
    /// The element count does not fit in memory.
    #[error("shape {dims:?} is too large")]
    TooLarge {
        /// The offending shape.
        dims: Vec<i64>,
    },
    /// The byte buffer does not hold exactly the shape's elements.
    #[error("a {dtype}{dims:?} tensor needs {expected} bytes, got {actual}")]
    ByteSize {
        /// The tensor's dtype.
        dtype: DType,
        /// The tensor's shape.
        dims: Vec<i64>,
        /// Bytes the dtype and shape call for.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// A typed constructor got a different number of values than the shape holds.
    #[error("shape {dims:?} holds {expected} elements, got {actual} values")]
    ElementCount {
        /// The requested shape.
        dims: Vec<i64>,
        /// Elements the shape holds.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// A typed read asked for another element type than the tensor's.
    #[error("tensor has dtype {actual}, read as {requested}")]
    DType {
        /// The tensor's dtype.
        actual: DType,
        /// The dtype of the Rust type asked for.
        requested: DType,
    },
}

/// A Rust type that is the in-memory form of one [`DType`].
pub trait Element: Copy + sealed::Sealed {
    /// The dtype whose elements this type holds.
    const DTYPE: DType;
    /// Appends the native-endian bytes of `self`.
    fn write(self, out: &mut Vec<u8>);
    /// Reads one element from exactly `DTYPE.size_in_bytes()` native-endian bytes.
    fn read(bytes: &[u8]) -> Self;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! element {
    ($ty:ty, $dtype:expr, |$b:ident| $read:expr, |$v:ident| $bytes:expr) => {
        impl sealed::Sealed for $ty {}
        impl Element for $ty {
            const DTYPE: DType = $dtype;
            fn write(self, out: &mut Vec<u8>) {
                let $v = self;
                out.extend_from_slice(&$bytes);
            }
            fn read($b: &[u8]) -> Self {
                $read
            }
        }
    };
}

element!(
    f32,
    DType::F32,
    |b| f32::from_ne_bytes(b.try_into().unwrap()),
    |v| v.to_ne_bytes()
);
element!(
    f64,
    DType::F64,
    |b| f64::from_ne_bytes(b.try_into().unwrap()),
    |v| v.to_ne_bytes()
);
element!(
    bf16,
    DType::BF16,
    |b| bf16::from_bits(u16::from_ne_bytes(b.try_into().unwrap())),
    |v| v.to_bits().to_ne_bytes()
);
element!(
    f16,
    DType::F16,
    |b| f16::from_bits(u16::from_ne_bytes(b.try_into().unwrap())),
    |v| v.to_bits().to_ne_bytes()
);
// PRED is one byte per element; any non-zero byte reads as true, and true is written as 1.
element!(bool, DType::I1, |b| b[0] != 0, |v| [u8::from(v)]);
element!(i8, DType::I8, |b| b[0] as i8, |v| v.to_ne_bytes());
element!(u8, DType::U8, |b| b[0], |v| [v]);
element!(
    i32,
    DType::I32,
    |b| i32::from_ne_bytes(b.try_into().unwrap()),
    |v| v.to_ne_bytes()
);
element!(
    i64,
    DType::I64,
    |b| i64::from_ne_bytes(b.try_into().unwrap()),
    |v| v.to_ne_bytes()
);

/// A dense tensor in host memory.
///
/// The fields are public for cheap construction and destructuring; [`HostTensor::validate`]
/// (run by every constructor and by the runtime before a transfer) checks they agree.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Element type.
    pub dtype: DType,
    /// Static dimensions, outermost first; `[]` is a scalar.
    pub dims: Vec<i64>,
    /// `num_elements * dtype.size_in_bytes()` bytes, row-major, native byte order.
    pub data: Vec<u8>,
}

/// The element count of `dims`, or why it has none.
fn element_count(dims: &[i64]) -> Result<usize, TensorError> {
    dims.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d).map_err(|_| TensorError::NegativeDim {
            dims: dims.to_vec(),
        })?;
        acc.checked_mul(d).ok_or_else(|| TensorError::TooLarge {
            dims: dims.to_vec(),
        })
    })
}

impl HostTensor {
    /// Wraps raw bytes, checking that they hold exactly the shape's elements.
    pub fn new(
        dtype: DType,
        dims: impl Into<Vec<i64>>,
        data: Vec<u8>,
    ) -> Result<Self, TensorError> {
        let tensor = HostTensor {
            dtype,
            dims: dims.into(),
            data,
        };
        tensor.validate()?;
        Ok(tensor)
    }

    /// A tensor of zeros (`false` for i1).
    pub fn zeros(dtype: DType, dims: impl Into<Vec<i64>>) -> Result<Self, TensorError> {
        let dims = dims.into();
        let n = element_count(&dims)?;
        let bytes = n
            .checked_mul(dtype.size_in_bytes())
            .ok_or_else(|| TensorError::TooLarge { dims: dims.clone() })?;
        Ok(HostTensor {
            dtype,
            dims,
            data: vec![0; bytes],
        })
    }

    /// A tensor of `T::DTYPE` from values in row-major order.
    pub fn from_slice<T: Element>(
        dims: impl Into<Vec<i64>>,
        values: &[T],
    ) -> Result<Self, TensorError> {
        let dims = dims.into();
        let expected = element_count(&dims)?;
        if values.len() != expected {
            return Err(TensorError::ElementCount {
                dims,
                expected,
                actual: values.len(),
            });
        }
        let mut data = Vec::with_capacity(expected * T::DTYPE.size_in_bytes());
        for &v in values {
            v.write(&mut data);
        }
        Ok(HostTensor {
            dtype: T::DTYPE,
            dims,
            data,
        })
    }

    /// An f32 tensor from values in row-major order.
    pub fn from_f32(dims: impl Into<Vec<i64>>, values: &[f32]) -> Result<Self, TensorError> {
        Self::from_slice(dims, values)
    }

    /// An f64 tensor from values in row-major order.
    pub fn from_f64(dims: impl Into<Vec<i64>>, values: &[f64]) -> Result<Self, TensorError> {
        Self::from_slice(dims, values)
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(value: T) -> Self {
        let mut data = Vec::with_capacity(T::DTYPE.size_in_bytes());
        value.write(&mut data);
        HostTensor {
            dtype: T::DTYPE,
            dims: Vec::new(),
            data,
        }
    }

    /// Checks that the dims are non-negative and `data` holds exactly their elements.
    pub fn validate(&self) -> Result<(), TensorError> {
        let n = element_count(&self.dims)?;
        let expected =
            n.checked_mul(self.dtype.size_in_bytes())
                .ok_or_else(|| TensorError::TooLarge {
                    dims: self.dims.clone(),
                })?;
        if self.data.len() != expected {
            return Err(TensorError::ByteSize {
                dtype: self.dtype,
                dims: self.dims.clone(),
                expected,
                actual: self.data.len(),
            });
        }
        Ok(())
    }

    /// The number of elements (1 for a scalar). Negative dims count as 0.
    pub fn num_elements(&self) -> usize {
        self.dims
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .product()
    }

    /// The size of `data` a valid tensor of this dtype and shape has.
    pub fn byte_size(&self) -> usize {
        self.num_elements() * self.dtype.size_in_bytes()
    }

    /// The elements as `T`, which must be the tensor's own element type (no conversion).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        if self.dtype != T::DTYPE {
            return Err(TensorError::DType {
                actual: self.dtype,
                requested: T::DTYPE,
            });
        }
        Ok(self
            .data
            .chunks_exact(T::DTYPE.size_in_bytes())
            .map(T::read)
            .collect())
    }

    /// The elements converted to f64, from any dtype (i1 gives 0 or 1). Exact for every dtype
    /// except i64 beyond 2^53.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let width = self.dtype.size_in_bytes();
        let chunks = self.data.chunks_exact(width);
        match self.dtype {
            DType::F32 => chunks.map(|b| f64::from(f32::read(b))).collect(),
            DType::F64 => chunks.map(f64::read).collect(),
            DType::BF16 => chunks.map(|b| bf16::read(b).to_f64()).collect(),
            DType::F16 => chunks.map(|b| f16::read(b).to_f64()).collect(),
            DType::I1 => chunks.map(|b| f64::from(u8::from(bool::read(b)))).collect(),
            DType::I8 => chunks.map(|b| f64::from(i8::read(b))).collect(),
            DType::U8 => chunks.map(|b| f64::from(u8::read(b))).collect(),
            DType::I32 => chunks.map(|b| f64::from(i32::read(b))).collect(),
            DType::I64 => chunks.map(|b| i64::read(b) as f64).collect(),
        }
    }

    /// The tensor with its elements converted to `dtype` (round to nearest for floats, saturating
    /// truncation for integers, nonzero -> true for i1), as StableHLO's `convert` does.
    pub fn convert(&self, dtype: DType) -> HostTensor {
        if dtype == self.dtype {
            return self.clone();
        }
        let values = self.to_f64_vec();
        let mut data = Vec::with_capacity(values.len() * dtype.size_in_bytes());
        for v in values {
            match dtype {
                DType::F32 => (v as f32).write(&mut data),
                DType::F64 => v.write(&mut data),
                DType::BF16 => crate::float_round::bf16_from_f64(v).write(&mut data),
                DType::F16 => crate::float_round::f16_from_f64(v).write(&mut data),
                DType::I1 => (v != 0.0).write(&mut data),
                DType::I8 => (v as i8).write(&mut data),
                DType::U8 => (v as u8).write(&mut data),
                DType::I32 => (v as i32).write(&mut data),
                DType::I64 => (v as i64).write(&mut data),
            }
        }
        HostTensor { dtype, dims: self.dims.clone(), data }
    }

    /// The elements converted to f32, from any dtype (i1 gives 0 or 1). Rounds f64 and large
    /// integers to nearest, as `as f32` does.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let width = self.dtype.size_in_bytes();
        let chunks = self.data.chunks_exact(width);
        match self.dtype {
            DType::F32 => chunks.map(f32::read).collect(),
            DType::F64 => chunks.map(|b| f64::read(b) as f32).collect(),
            DType::BF16 => chunks.map(|b| bf16::read(b).to_f32()).collect(),
            DType::F16 => chunks.map(|b| f16::read(b).to_f32()).collect(),
            DType::I1 => chunks.map(|b| f32::from(u8::from(bool::read(b)))).collect(),
            DType::I8 => chunks.map(|b| f32::from(i8::read(b))).collect(),
            DType::U8 => chunks.map(|b| f32::from(u8::read(b))).collect(),
            DType::I32 => chunks.map(|b| i32::read(b) as f32).collect(),
            DType::I64 => chunks.map(|b| i64::read(b) as f32).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trip_and_shape_checks() {
        let t = HostTensor::from_f32([2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.num_elements(), 6);
        assert_eq!(t.data.len(), 24);
        let b = t.convert(DType::BF16);
        assert_eq!((b.dtype, b.data.len()), (DType::BF16, 12));
        assert_eq!(b.convert(DType::F32), t, "small integers are exact in bf16");
        assert_eq!(t.convert(DType::I32).to_vec::<i32>().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(t.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            t.to_vec::<i32>().unwrap_err(),
            TensorError::DType {
                actual: DType::F32,
                requested: DType::I32
            }
        );

        let err = HostTensor::from_f32([2, 2], &[1.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape [2, 2] holds 4 elements, got 1 values"
        );
        let err = HostTensor::new(DType::BF16, [3], vec![0; 4]).unwrap_err();
        assert_eq!(err.to_string(), "a bf16[3] tensor needs 6 bytes, got 4");
        assert!(matches!(
            HostTensor::zeros(DType::F32, [-1, 2]),
            Err(TensorError::NegativeDim { .. })
        ));
        assert!(matches!(
            HostTensor::zeros(DType::F32, [i64::MAX, 4]),
            Err(TensorError::TooLarge { .. })
        ));
    }

    #[test]
    fn scalars_and_empty_tensors() {
        let s = HostTensor::scalar(7i64);
        assert_eq!(
            (s.dims.len(), s.num_elements(), s.to_f32_vec()),
            (0, 1, vec![7.0])
        );
        let e = HostTensor::zeros(DType::F16, [0, 5]).unwrap();
        assert_eq!((e.num_elements(), e.data.len()), (0, 0));
        assert!(e.to_f32_vec().is_empty());
    }

    #[test]
    fn every_dtype_converts_to_float() {
        let cases: Vec<(HostTensor, Vec<f32>)> = vec![
            (
                HostTensor::from_slice([3], &[1.5f32, -2.0, 0.25]).unwrap(),
                vec![1.5, -2.0, 0.25],
            ),
            (
                HostTensor::from_slice([3], &[1.5f64, -2.0, 0.25]).unwrap(),
                vec![1.5, -2.0, 0.25],
            ),
            (
                HostTensor::from_slice(
                    [3],
                    &[
                        bf16::from_f32(1.5),
                        bf16::from_f32(-2.0),
                        bf16::from_f32(0.25),
                    ],
                )
                .unwrap(),
                vec![1.5, -2.0, 0.25],
            ),
            (
                HostTensor::from_slice(
                    [3],
                    &[f16::from_f32(1.5), f16::from_f32(-2.0), f16::from_f32(0.25)],
                )
                .unwrap(),
                vec![1.5, -2.0, 0.25],
            ),
            (
                HostTensor::from_slice([3], &[true, false, true]).unwrap(),
                vec![1.0, 0.0, 1.0],
            ),
            (
                HostTensor::from_slice([3], &[-128i8, 0, 127]).unwrap(),
                vec![-128.0, 0.0, 127.0],
            ),
            (
                HostTensor::from_slice([3], &[0u8, 1, 255]).unwrap(),
                vec![0.0, 1.0, 255.0],
            ),
            (
                HostTensor::from_slice([3], &[-7i32, 0, 1 << 20]).unwrap(),
                vec![-7.0, 0.0, 1048576.0],
            ),
            (
                HostTensor::from_slice([3], &[-7i64, 0, 1 << 40]).unwrap(),
                vec![-7.0, 0.0, 1099511627776.0],
            ),
        ];
        let mut seen: Vec<DType> = Vec::new();
        for (tensor, expected) in cases {
            tensor.validate().unwrap();
            assert_eq!(tensor.to_f32_vec(), expected, "{}", tensor.dtype);
            let as_f64: Vec<f64> = expected.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(tensor.to_f64_vec(), as_f64, "{}", tensor.dtype);
            seen.push(tensor.dtype);
        }
        let mut all = DType::ALL.to_vec();
        seen.sort();
        all.sort();
        assert_eq!(seen, all, "every dtype is covered");
    }

    #[test]
    fn bf16_bits_are_native_endian_u16() {
        let t = HostTensor::from_slice([1], &[bf16::from_f32(1.0)]).unwrap();
        assert_eq!(t.data, 0x3f80u16.to_ne_bytes());
        assert_eq!(t.to_vec::<bf16>().unwrap()[0].to_f32(), 1.0);
    }
}
