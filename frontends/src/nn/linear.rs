//! torch `nn.Linear`, the projection every family's blocks are made of.

use vidlower_ir::{Builder, DotDims, IrError, Result, TensorType, ValueId};

/// torch `nn.Linear`: weight `{prefix}.weight` [out, in] and, with `bias`, `{prefix}.bias`
/// [out], both in x's dtype; `x [..., in] -> [..., out]`. The weight is contracted as stored
/// (its dim 1 against x's last), so no transpose op appears.
pub fn linear(b: &mut Builder, x: ValueId, prefix: &str, out_features: i64, bias: bool) -> Result<ValueId> {
    let t = b.ty(x).clone();
    let Some(&in_features) = t.shape.last() else {
        return Err(IrError::Shape {
            op: "linear".into(),
            operands: t.to_string(),
            message: format!("{prefix}: input is a scalar"),
        });
    };
    let w = b.weight(&format!("{prefix}.weight"), TensorType::new(t.dtype, vec![out_features, in_features]))?;
    let dims = DotDims { lhs_contract: vec![t.rank() - 1], rhs_contract: vec![1], ..Default::default() };
    let y = b.dot_general(x, w, dims)?;
    if !bias {
        return Ok(y);
    }
    let bias = b.weight(&format!("{prefix}.bias"), TensorType::new(t.dtype, vec![out_features]))?;
    b.add(y, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::{DType, Op};

    #[test]
    fn weight_is_out_by_in_in_the_inputs_dtype_and_bias_is_optional() {
        let mut b = Builder::new("linear");
        let x = b.input("x", TensorType::new(DType::BF16, vec![2, 5, 8])).unwrap();
        let y = linear(&mut b, x, "proj", 4, true).unwrap();
        assert_eq!(b.ty(y), &TensorType::new(DType::BF16, vec![2, 5, 4]));
        let z = linear(&mut b, y, "out", 3, false).unwrap();
        assert_eq!(b.shape(z), [2, 5, 3]);
        let g = b.finish().unwrap();
        let weights: Vec<(String, String)> = g.weights().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        let want = [("proj.weight", "bf16[4,8]"), ("proj.bias", "bf16[4]"), ("out.weight", "bf16[3,4]")];
        assert_eq!(weights, want.map(|(n, t)| (n.to_string(), t.to_string())));
        assert!(g.nodes.iter().all(|n| !matches!(n.op, Op::Transpose { .. })), "the weight is used as stored");
    }

    #[test]
    fn a_scalar_input_or_a_clashing_weight_is_an_error_naming_it() {
        let mut b = Builder::new("bad");
        let s = b.input("s", TensorType::new(DType::F32, vec![])).unwrap();
        let e = linear(&mut b, s, "proj", 4, true).unwrap_err().to_string();
        assert!(e.contains("linear") && e.contains("proj: input is a scalar"), "{e}");
        let x = b.input("x", TensorType::new(DType::F32, vec![2, 3])).unwrap();
        linear(&mut b, x, "proj", 8, true).unwrap();
        let e = linear(&mut b, x, "proj", 9, true).unwrap_err().to_string();
        assert!(e.contains("proj.weight"), "{e}");
    }
}
