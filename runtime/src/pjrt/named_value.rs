//! `PJRT_NamedValue`: the key-value pairs of client create options and plugin attributes.

use std::ffi::c_char;
use std::fmt;
use std::marker::PhantomData;

use super::ffi::{self, Args};
use super::plugin::owned_string;

/// An owned option or attribute value, one variant per `PJRT_NamedValue_Type`.
#[derive(Clone, Debug, PartialEq)]
pub enum NamedValue {
    /// `PJRT_NamedValue_kInt64`, e.g. the CPU client's `cpu_device_count`.
    Int64(i64),
    /// `PJRT_NamedValue_kInt64List`, e.g. the GPU client's `visible_devices`.
    Int64List(Vec<i64>),
    /// `PJRT_NamedValue_kString`.
    Str(String),
    /// `PJRT_NamedValue_kBool`.
    Bool(bool),
    /// `PJRT_NamedValue_kFloat` (a C `float`), e.g. the GPU client's `memory_fraction`.
    Float(f32),
}

impl fmt::Display for NamedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamedValue::Int64(v) => write!(f, "{v}"),
            NamedValue::Int64List(v) => write!(f, "{v:?}"),
            NamedValue::Str(v) => write!(f, "{v:?}"),
            NamedValue::Bool(v) => write!(f, "{v}"),
            NamedValue::Float(v) => write!(f, "{v}"),
        }
    }
}

impl NamedValue {
    /// Copies a plugin-owned value. Unknown value types (a newer plugin) are skipped, not guessed.
    ///
    /// # Safety
    /// `v` must be a valid `PJRT_NamedValue` whose pointers are live for the call.
    pub(crate) unsafe fn from_ffi(v: &ffi::NamedValue) -> Option<(String, NamedValue)> {
        let name = owned_string(v.name, v.name_size);
        let value = match v.type_ {
            ffi::NAMED_VALUE_INT64 => NamedValue::Int64(v.value.int64_value),
            ffi::NAMED_VALUE_INT64_LIST => {
                let ptr = v.value.int64_array_value;
                if ptr.is_null() || v.value_size == 0 {
                    NamedValue::Int64List(Vec::new())
                } else {
                    NamedValue::Int64List(std::slice::from_raw_parts(ptr, v.value_size).to_vec())
                }
            }
            ffi::NAMED_VALUE_STRING => {
                NamedValue::Str(owned_string(v.value.string_value, v.value_size))
            }
            ffi::NAMED_VALUE_BOOL => NamedValue::Bool(v.value.bool_value),
            ffi::NAMED_VALUE_FLOAT => NamedValue::Float(v.value.float_value),
            _ => return None,
        };
        Some((name, value))
    }
}

/// C views of a slice of owned options, borrowing their strings and lists for the duration of
/// one PJRT call (the plugin copies what it keeps).
pub(crate) struct FfiNamedValues<'a> {
    values: Vec<ffi::NamedValue>,
    _borrow: PhantomData<&'a [(String, NamedValue)]>,
}

impl<'a> FfiNamedValues<'a> {
    pub(crate) fn new(options: &'a [(String, NamedValue)]) -> Self {
        let values = options
            .iter()
            .map(|(name, value)| {
                let mut v = ffi::NamedValue::new();
                v.name = name.as_ptr() as *const c_char;
                v.name_size = name.len();
                // value_size is the element count for strings and lists and 1 for scalars.
                v.value_size = 1;
                match value {
                    NamedValue::Int64(x) => {
                        v.type_ = ffi::NAMED_VALUE_INT64;
                        v.value.int64_value = *x;
                    }
                    NamedValue::Int64List(xs) => {
                        v.type_ = ffi::NAMED_VALUE_INT64_LIST;
                        v.value.int64_array_value = xs.as_ptr();
                        v.value_size = xs.len();
                    }
                    NamedValue::Str(s) => {
                        v.type_ = ffi::NAMED_VALUE_STRING;
                        v.value.string_value = s.as_ptr() as *const c_char;
                        v.value_size = s.len();
                    }
                    NamedValue::Bool(b) => {
                        v.type_ = ffi::NAMED_VALUE_BOOL;
                        v.value.bool_value = *b;
                    }
                    NamedValue::Float(f) => {
                        v.type_ = ffi::NAMED_VALUE_FLOAT;
                        v.value.float_value = *f;
                    }
                }
                v
            })
            .collect();
        FfiNamedValues {
            values,
            _borrow: PhantomData,
        }
    }

    pub(crate) fn as_ptr(&self) -> *const ffi::NamedValue {
        self.values.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_c_view() {
        let opts = vec![
            ("cpu_device_count".to_string(), NamedValue::Int64(4)),
            ("ids".to_string(), NamedValue::Int64List(vec![1, 2, 3])),
            ("name".to_string(), NamedValue::Str("hé".into())),
            ("flag".to_string(), NamedValue::Bool(true)),
            ("fraction".to_string(), NamedValue::Float(0.75)),
        ];
        let view = FfiNamedValues::new(&opts);
        assert_eq!(view.len(), opts.len());
        for (i, expected) in opts.iter().enumerate() {
            // SAFETY: the view borrows `opts`, which is alive.
            let back = unsafe { NamedValue::from_ffi(&*view.as_ptr().add(i)) }.unwrap();
            assert_eq!(&back, expected);
        }
    }
}
