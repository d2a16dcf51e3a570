//! diffusers' channel-first RMS norm of the causal video VAEs (`WanRMS_norm`,
//! `HunyuanVideo15RMS_norm`, the same module): `F.normalize(x, dim=1) * sqrt(C) * gamma`.

use vidlower_ir::{Builder, DType, Result, TensorType, ValueId};

/// `F.normalize(x, dim=1) * dim**0.5 * gamma` on [B, C, ...], the normalize in f32 for bf16/f16
/// input as diffusers does (then rounded back to x's dtype). `gamma` (`{prefix}.gamma`) is stored
/// [C, 1, 1, 1] (`images=False`) or [C, 1, 1] (`images=True`); the decoders' norms have no bias.
pub fn channel_rms_norm(b: &mut Builder, x: ValueId, prefix: &str, images: bool) -> Result<ValueId> {
    let t = b.ty(x).clone();
    let c = t.shape[1];
    let xf = if matches!(t.dtype, DType::BF16 | DType::F16) { b.convert(x, DType::F32)? } else { x };
    let sq = b.mul(xf, xf)?;
    let ss = b.sum(sq, &[1])?;
    let norm = b.sqrt(ss)?;
    let eps = b.scalar(1e-12, b.dtype(norm))?;
    let norm = b.max(norm, eps)?; // `clamp_min(eps)` in F.normalize
    let keep: Vec<usize> = (0..t.rank()).filter(|&d| d != 1).collect();
    let norm = b.broadcast_in_dim(norm, &t.shape, &keep)?;
    let y = b.div(xf, norm)?;
    let y = b.convert(y, t.dtype)?;
    let y = b.mul_scalar(y, (c as f64).sqrt())?;
    let gshape = if images { vec![c, 1, 1] } else { vec![c, 1, 1, 1] };
    let gamma = b.weight(&format!("{prefix}.gamma"), TensorType::new(t.dtype, gshape))?;
    let gamma = b.reshape(gamma, &[c])?;
    let gamma = b.broadcast_in_dim(gamma, &t.shape, &[1])?;
    b.mul(y, gamma)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_shape_and_dtype() {
        for (images, dtype, gshape) in [(false, DType::BF16, vec![4, 1, 1, 1]), (true, DType::F32, vec![4, 1, 1])] {
            let mut b = Builder::new("norm");
            let x = b.input("x", TensorType::new(dtype, vec![1, 4, 2, 3, 3])).unwrap();
            let y = channel_rms_norm(&mut b, x, "norm1", images).unwrap();
            assert_eq!(b.ty(y), b.ty(x));
            b.output("y", y);
            let g = b.finish().unwrap();
            assert_eq!(g.weights().map(|(n, t)| (n.to_string(), t.clone())).collect::<Vec<_>>(), [("norm1.gamma".into(), TensorType::new(dtype, gshape))]);
        }
    }
}
