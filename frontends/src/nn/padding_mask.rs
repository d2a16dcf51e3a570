//! Token padding masks as diffusers' HunyuanVideo blocks apply them: a [B, S] 0/1 mask `m` becomes
//! the SDPA mask `m[:, None, None, :] & m[:, None, :, None]`, so padded keys are ignored and padded
//! query rows have no key at all; torch's SDPA (`_safe_softmax`, torch >= 2.5) gives 0 for such a
//! row.
//!
//! Here the attention op gets only the key half, [`key_padding_mask`] [B, 1, 1, S], so every row
//! keeps at least the valid keys (none of dense, blockwise or cuDNN then meets a row without a key:
//! dense and blockwise give NaN there, cuDNN an average of the values), and [`zero_padded_rows`]
//! sets the padded rows of the output to diffusers' 0 afterwards. The valid rows see the same keys
//! either way.

use vidlower_ir::{Builder, CompareDir, IrError, Result, ValueId};

/// The attention op's mask for a float 0/1 `mask` [B, S]: i1 [B, 1, 1, S], true where key j is a
/// real token (`mask > 0.5`).
pub fn key_padding_mask(b: &mut Builder, mask: ValueId) -> Result<ValueId> {
    let [bs, s] = b.shape(mask)[..] else {
        return Err(IrError::Value(format!("padding mask: expected [B, S], got {}", b.ty(mask))));
    };
    let valid = is_valid(b, mask)?;
    b.reshape(valid, &[bs, 1, 1, s])
}

/// `x` with the rows of padded tokens set to 0: `x` is [B, H, S, D] (an attention output) or
/// [B, S, C] (tokens), `mask` the float 0/1 [B, S].
pub fn zero_padded_rows(b: &mut Builder, x: ValueId, mask: ValueId) -> Result<ValueId> {
    let shape = b.shape(x);
    let ms = b.shape(mask);
    let valid = is_valid(b, mask)?;
    let valid = match shape[..] {
        [bs, _, s, _] if ms == [bs, s] => b.broadcast_in_dim(valid, &shape, &[0, 2])?,
        [bs, s, _] if ms == [bs, s] => b.broadcast_in_dim(valid, &shape, &[0, 1])?,
        _ => {
            return Err(IrError::Value(format!(
                "padding mask {} does not fit rows of {} ([B, H, S, D] or [B, S, C])",
                b.ty(mask),
                b.ty(x)
            )))
        }
    };
    let zero = b.scalar(0.0, b.dtype(x))?;
    b.select(valid, x, zero)
}

fn is_valid(b: &mut Builder, mask: ValueId) -> Result<ValueId> {
    if !b.dtype(mask).is_float() {
        return Err(IrError::Value(format!("padding mask: expected a float 0/1 tensor, got {}", b.ty(mask))));
    }
    let half = b.scalar(0.5, b.dtype(mask))?;
    b.compare(CompareDir::Gt, mask, half)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::{DType, TensorType};

    #[test]
    fn shapes_and_refusals() {
        let mut b = Builder::new("mask");
        let m = b.input("mask", TensorType::new(DType::F32, vec![2, 5])).unwrap();
        let k = key_padding_mask(&mut b, m).unwrap();
        assert_eq!(b.ty(k), &TensorType::new(DType::I1, vec![2, 1, 1, 5]));
        let o = b.input("o", TensorType::new(DType::BF16, vec![2, 3, 5, 4])).unwrap();
        let zo = zero_padded_rows(&mut b, o, m).unwrap();
        assert_eq!(b.shape(zo), vec![2, 3, 5, 4]);
        let x = b.input("x", TensorType::new(DType::F32, vec![2, 5, 8])).unwrap();
        let zx = zero_padded_rows(&mut b, x, m).unwrap();
        assert_eq!(b.shape(zx), vec![2, 5, 8]);
        let wrong = b.input("wrong", TensorType::new(DType::F32, vec![2, 6, 8])).unwrap();
        assert!(zero_padded_rows(&mut b, wrong, m).unwrap_err().to_string().contains("does not fit"));
        let flat = b.input("flat", TensorType::new(DType::F32, vec![10])).unwrap();
        assert!(key_padding_mask(&mut b, flat).unwrap_err().to_string().contains("[B, S]"));
        b.finish().unwrap();
    }
}
