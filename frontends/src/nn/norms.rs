//! Normalization layers as diffusers/torch define them, with their state-dict names, and the adaptive
//! LayerNorm modulation `x * (1 + scale) + shift` that the DiT-style blocks (Wan, CogVideoX) share.

use vidlower_ir::{Builder, DType, IrError, Result, TensorType, ValueId};

/// The size of `x`'s last axis (what every norm here normalizes over).
fn last_dim(b: &Builder, x: ValueId, what: &str) -> Result<i64> {
    b.shape(x).last().copied().ok_or_else(|| IrError::Value(format!("{what}: input is a scalar")))
}

/// `torch.nn.RMSNorm(dim, eps, elementwise_affine=True)` over the last axis; weight `{prefix}.weight`
/// [dim] in x's dtype.
pub fn rms_norm(b: &mut Builder, x: ValueId, eps: f64, prefix: &str) -> Result<ValueId> {
    let dim = last_dim(b, x, prefix)?;
    let w = b.weight(&format!("{prefix}.weight"), TensorType::new(b.dtype(x), vec![dim]))?;
    b.rms_norm(x, eps, Some(w))
}

/// `torch.nn.LayerNorm(dim, eps, elementwise_affine)` over the last axis, computed in x's dtype: no
/// affine when `affine` is `None`, else `{prefix}.weight` and `{prefix}.bias` [dim] in x's dtype.
pub fn layer_norm(b: &mut Builder, x: ValueId, eps: f64, affine: Option<&str>) -> Result<ValueId> {
    let Some(prefix) = affine else {
        return b.layer_norm(x, eps, None, None);
    };
    let dim = last_dim(b, x, prefix)?;
    let ty = TensorType::new(b.dtype(x), vec![dim]);
    let w = b.weight(&format!("{prefix}.weight"), ty.clone())?;
    let bias = b.weight(&format!("{prefix}.bias"), ty)?;
    b.layer_norm(x, eps, Some(w), Some(bias))
}

/// diffusers `FP32LayerNorm` on an input already converted to f32: its affine parameters (when
/// `affine` names them) are f32 weights, whatever the model's dtype. The caller rounds the result
/// back where diffusers does (`.to(origin_dtype)` / `.type_as`).
pub fn fp32_layer_norm(b: &mut Builder, x32: ValueId, eps: f64, affine: Option<&str>) -> Result<ValueId> {
    if b.dtype(x32) != DType::F32 {
        return Err(IrError::Value(format!("FP32LayerNorm expects an f32 input, got {}", b.ty(x32))));
    }
    layer_norm(b, x32, eps, affine)
}

/// Adaptive LayerNorm modulation `x * (1 + scale) + shift`, in x's dtype, with `shift`/`scale`
/// broadcast against x (e.g. [B, 1, dim] over the tokens of [B, S, dim]).
pub fn modulate(b: &mut Builder, x: ValueId, shift: ValueId, scale: ValueId) -> Result<ValueId> {
    let one_plus = b.add_scalar(scale, 1.0)?;
    let x = b.mul(x, one_plus)?;
    b.add(x, shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_names_dtypes_and_shapes() {
        let mut b = Builder::new("norms");
        let x = b.input("x", TensorType::new(DType::BF16, vec![2, 5, 8])).unwrap();
        let r = rms_norm(&mut b, x, 1e-6, "norm_q").unwrap();
        let l = layer_norm(&mut b, r, 1e-5, Some("norm1.norm")).unwrap();
        let plain = layer_norm(&mut b, l, 1e-5, None).unwrap();
        let x32 = b.convert(plain, DType::F32).unwrap();
        let f = fp32_layer_norm(&mut b, x32, 1e-6, Some("norm2")).unwrap();
        let mods = b.input("mods", TensorType::new(DType::F32, vec![2, 1, 8])).unwrap();
        let y = modulate(&mut b, f, mods, mods).unwrap();
        assert_eq!(b.ty(y), &TensorType::new(DType::F32, vec![2, 5, 8]));
        assert!(fp32_layer_norm(&mut b, x, 1e-6, None).unwrap_err().to_string().contains("f32"));
        let g = b.finish().unwrap();
        let w: Vec<(&str, &TensorType)> = g.weights().collect();
        let t = |d, n| TensorType::new(d, vec![n]);
        assert_eq!(
            w,
            vec![
                ("norm_q.weight", &t(DType::BF16, 8)),
                ("norm1.norm.weight", &t(DType::BF16, 8)),
                ("norm1.norm.bias", &t(DType::BF16, 8)),
                ("norm2.weight", &t(DType::F32, 8)),
                ("norm2.bias", &t(DType::F32, 8)),
            ]
        );
    }
}
