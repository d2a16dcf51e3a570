//! Rotary position embeddings (diffusers `get_1d_rotary_pos_embed` with `use_real=True,
//! repeat_interleave_real=True`), per axis for N-d positions (video: frames, rows, columns).
//!
//! The angles are computed in the graph from `iota`, never stored: a 720p Wan video has 75,600
//! tokens, and the tables are built per axis ([len, dim/2], a few KB) in the dtype diffusers uses
//! for them (`freqs_dtype`: f64 for Wan, f32, the default, for HunyuanVideo), then broadcast over
//! the other axes.

use vidlower_ir::{BinaryOp, Builder, DType, Result, TensorType, ValueId};

/// One axis of an N-d rotary embedding: `dim` channels of the head (`dim / 2` rotated pairs),
/// positions `0..len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeAxis {
    pub dim: i64,
    pub len: i64,
}

/// cos and sin of the rotation angles, [S, D/2]: one entry per token (axes flattened row-major,
/// first axis slowest) and rotated pair (axes' pairs concatenated in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeTables {
    pub cos: ValueId,
    pub sin: ValueId,
}

/// The angle table of one axis, [len, dim/2] in `freqs_dtype` (f64 or f32): `pos / theta^(2i / dim)`,
/// the steps of `get_1d_rotary_pos_embed(freqs_dtype=...)`: `arange(0, dim, 2) / dim` and
/// `1 / theta^e` in that dtype, then the outer product with the positions. The power is taken in
/// f64 and rounded once, which is what torch's f32 `pow` gives for these exponents.
fn axis_angles(b: &mut Builder, axis: RopeAxis, theta: f64, freqs_dtype: DType) -> Result<ValueId> {
    let ty = TensorType::new(freqs_dtype, vec![axis.len, axis.dim / 2]);
    let pos = b.iota(ty.clone(), 0)?;
    let i = b.iota(ty, 1)?;
    let two_i = b.mul_scalar(i, 2.0)?;
    let exponent = b.binary_scalar(BinaryOp::Div, two_i, axis.dim as f64)?;
    let exponent = b.convert(exponent, DType::F64)?;
    let theta = b.scalar(theta, DType::F64)?;
    let denom = b.pow(theta, exponent)?;
    let denom = b.convert(denom, freqs_dtype)?;
    let one = b.scalar(1.0, freqs_dtype)?;
    let freqs = b.div(one, denom)?;
    b.mul(pos, freqs)
}

/// Tables for `axes` (the tokens are the grid `axes[0].len x axes[1].len x ...`), angles in f64
/// as Wan's `get_1d_rotary_pos_embed(freqs_dtype=torch.float64)`, cos/sin rounded to `dtype`
/// (diffusers: f32).
pub fn axial_rope_tables(b: &mut Builder, axes: &[RopeAxis], theta: f64, dtype: DType) -> Result<RopeTables> {
    axial_rope_tables_in(b, axes, theta, DType::F64, dtype)
}

/// [`axial_rope_tables`] with the angles (and cos/sin) computed in `freqs_dtype`, f64 or f32
/// (`get_1d_rotary_pos_embed`'s default, f32 positions and frequencies), then rounded to `dtype`.
pub fn axial_rope_tables_in(
    b: &mut Builder,
    axes: &[RopeAxis],
    theta: f64,
    freqs_dtype: DType,
    dtype: DType,
) -> Result<RopeTables> {
    if !matches!(freqs_dtype, DType::F32 | DType::F64) {
        return Err(vidlower_ir::IrError::Value(format!("rope: freqs dtype {freqs_dtype:?} must be f32 or f64")));
    }
    for a in axes {
        if a.dim % 2 != 0 || a.dim <= 0 {
            return Err(vidlower_ir::IrError::Value(format!("rope: axis dim {} must be even and positive", a.dim)));
        }
    }
    let grid: Vec<i64> = axes.iter().map(|a| a.len).collect();
    let tokens: i64 = grid.iter().product();
    let pairs: i64 = axes.iter().map(|a| a.dim / 2).sum();
    let n = axes.len();
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for (k, &axis) in axes.iter().enumerate() {
        let angles = axis_angles(b, axis, theta, freqs_dtype)?;
        let mut shape = grid.clone();
        shape.push(axis.dim / 2);
        for (f, out) in [(b.cos(angles)?, &mut cos), (b.sin(angles)?, &mut sin)] {
            let f = b.convert(f, dtype)?;
            out.push(b.broadcast_in_dim(f, &shape, &[k, n])?);
        }
    }
    let cos = b.concat(&cos, n)?;
    let sin = b.concat(&sin, n)?;
    Ok(RopeTables { cos: b.reshape(cos, &[tokens, pairs])?, sin: b.reshape(sin, &[tokens, pairs])? })
}

/// Rotates interleaved pairs `(x[2j], x[2j+1])` of `x` [B, S, H, D] by the angles of `tables`:
/// `(x1 cos - x2 sin, x1 sin + x2 cos)`, as diffusers' Wan/Flux-style `apply_rotary_emb` does.
/// Computed in the tables' dtype (torch promotes bf16 * f32 to f32) and rounded back to x's.
pub fn apply_rotary_emb_interleaved(b: &mut Builder, x: ValueId, tables: RopeTables) -> Result<ValueId> {
    let shape = b.shape(x);
    let (bsz, s, h, d) = match shape[..] {
        [bsz, s, h, d] => (bsz, s, h, d),
        _ => return Err(vidlower_ir::IrError::Value(format!("rope: expected x [B, S, H, D], got {shape:?}"))),
    };
    if b.shape(tables.cos) != [s, d / 2] {
        return Err(vidlower_ir::IrError::Value(format!(
            "rope: tables are {:?}, x {shape:?} needs [{s}, {}]",
            b.shape(tables.cos),
            d / 2
        )));
    }
    let dtype = b.dtype(x);
    let x = b.convert(x, b.dtype(tables.cos))?;
    let pairs = [bsz, s, h, d / 2, 1];
    let x = b.reshape(x, &[bsz, s, h, d / 2, 2])?;
    let x1 = b.slice_axis(x, 4, 0, 1)?;
    let x2 = b.slice_axis(x, 4, 1, 1)?;
    let cos = b.broadcast_in_dim(tables.cos, &pairs, &[1, 3])?;
    let sin = b.broadcast_in_dim(tables.sin, &pairs, &[1, 3])?;
    let (x1c, x2s) = (b.mul(x1, cos)?, b.mul(x2, sin)?);
    let even = b.sub(x1c, x2s)?;
    let (x1s, x2c) = (b.mul(x1, sin)?, b.mul(x2, cos)?);
    let odd = b.add(x1s, x2c)?;
    let out = b.concat(&[even, odd], 4)?;
    let out = b.reshape(out, &shape)?;
    b.convert(out, dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_cover_the_grid_and_all_pairs() {
        let mut b = Builder::new("rope");
        let axes = [RopeAxis { dim: 44, len: 3 }, RopeAxis { dim: 42, len: 4 }, RopeAxis { dim: 42, len: 5 }];
        let t = axial_rope_tables(&mut b, &axes, 10000.0, DType::F32).unwrap();
        assert_eq!(b.shape(t.cos), vec![60, 64]);
        let x = b.input("x", TensorType::new(DType::BF16, vec![2, 60, 3, 128])).unwrap();
        let y = apply_rotary_emb_interleaved(&mut b, x, t).unwrap();
        assert_eq!(b.ty(y), &TensorType::new(DType::BF16, vec![2, 60, 3, 128]));
        let t32 = axial_rope_tables_in(&mut b, &axes, 256.0, DType::F32, DType::F32).unwrap();
        assert_eq!(b.ty(t32.sin), &TensorType::new(DType::F32, vec![60, 64]));
        assert!(axial_rope_tables_in(&mut b, &axes, 256.0, DType::BF16, DType::F32).is_err());
        b.finish().unwrap();
    }
}
