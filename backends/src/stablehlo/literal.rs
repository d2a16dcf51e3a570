//! Constant values as MLIR dense-elements text.

use vidlower_ir::{DType, Literal, LiteralData, TensorType};

/// `dense<...> : tensor<...>` for a literal: a splat is one value, dense data is nested per dim.
pub fn dense_attr(lit: &Literal) -> String {
    let body = match &lit.data {
        LiteralData::Splat(v) => scalar(*v, lit.ty.dtype),
        LiteralData::Dense(values) if lit.ty.shape.is_empty() => scalar(values[0], lit.ty.dtype),
        LiteralData::Dense(values) => {
            let mut out = String::new();
            nested(&mut out, values, &lit.ty.shape, lit.ty.dtype);
            out
        }
    };
    format!("dense<{body}> : {}", lit.ty.mlir())
}

/// A splat constant of `value` (reduction inits, padding values).
pub fn splat_attr(value: f64, ty: &TensorType) -> String {
    format!("dense<{}> : {}", scalar(value, ty.dtype), ty.mlir())
}

fn nested(out: &mut String, values: &[f64], shape: &[i64], dtype: DType) {
    if shape.is_empty() {
        out.push_str(&scalar(values[0], dtype));
        return;
    }
    let inner: usize = shape[1..].iter().product::<i64>() as usize;
    out.push('[');
    for i in 0..shape[0] as usize {
        if i > 0 {
            out.push_str(", ");
        }
        nested(out, &values[i * inner..(i + 1) * inner], &shape[1..], dtype);
    }
    out.push(']');
}

/// One element in MLIR's literal syntax for `dtype`.
pub fn scalar(v: f64, dtype: DType) -> String {
    match dtype {
        DType::I1 => (v != 0.0).to_string(),
        d if d.is_integer() => format!("{}", v.trunc() as i64),
        _ if !v.is_finite() => hex_float(v, dtype),
        _ => {
            // MLIR float literals need a `.`: `1e-5` is rejected, `1.0e-5` is not.
            let s = format!("{v:e}");
            match s.find('e') {
                Some(i) if !s[..i].contains('.') => format!("{}.0{}", &s[..i], &s[i..]),
                _ => s,
            }
        }
    }
}

/// Non-finite values have no decimal spelling in MLIR: write the bit pattern of the dtype.
fn hex_float(v: f64, dtype: DType) -> String {
    match dtype {
        DType::F64 => format!("0x{:016X}", v.to_bits()),
        DType::BF16 => format!("0x{:04X}", vidlower_ir::float_round::bf16_from_f64(v).to_bits()),
        DType::F16 => format!("0x{:04X}", vidlower_ir::float_round::f16_from_f64(v).to_bits()),
        _ => format!("0x{:08X}", (v as f32).to_bits()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(scalar(1.0, DType::F32), "1.0e0");
        assert_eq!(scalar(1e-5, DType::F32), "1.0e-5");
        assert_eq!(scalar(0.125, DType::BF16), "1.25e-1");
        assert_eq!(scalar(f64::NEG_INFINITY, DType::F32), "0xFF800000");
        assert_eq!(scalar(f64::INFINITY, DType::BF16), "0x7F80");
        assert_eq!(scalar(3.0, DType::I32), "3");
        assert_eq!(scalar(1.0, DType::I1), "true");
        let lit = Literal {
            ty: TensorType::new(DType::F32, vec![2, 2]),
            data: LiteralData::Dense(vec![1.0, 2.0, 3.0, 4.0]),
        };
        assert_eq!(dense_attr(&lit), "dense<[[1.0e0, 2.0e0], [3.0e0, 4.0e0]]> : tensor<2x2xf32>");
    }
}
