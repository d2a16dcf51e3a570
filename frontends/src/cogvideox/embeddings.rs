//! CogVideoX's positional information, computed in the graph from `iota` as diffusers computes it
//! (`models/embeddings.py`, 0.42.1): the 3D sincos table that `CogVideoXPatchEmbed` adds to the video
//! tokens (CogVideoX-2b) and the 3D rotary tables that `CogVideoXPipeline` passes to the transformer
//! (`get_3d_rotary_pos_embed`, CogVideoX-5b and 1.5). Every step runs in the dtype torch uses, so the
//! tables match diffusers' to the last bit or so.

use crate::nn::rope::RopeTables;
use vidlower_ir::{BinaryOp, Builder, CompareDir, DType, IrError, Result, TensorType, ValueId};

/// `get_1d_sincos_pos_embed_from_grid(embed_dim, pos)`: `pos` [n] (f32) -> f64 [n, embed_dim] =
/// `[sin(pos * omega), cos(pos * omega)]` with `omega = 1 / 10000^(i / (embed_dim / 2))` in f64.
fn sincos_1d(b: &mut Builder, embed_dim: i64, pos: ValueId) -> Result<ValueId> {
    let n = b.shape(pos)[0];
    let half = embed_dim / 2;
    let omega = b.iota(TensorType::new(DType::F64, vec![half]), 0)?;
    let omega = b.binary_scalar(BinaryOp::Div, omega, half as f64)?;
    let base = b.scalar(10000.0, DType::F64)?;
    let denom = b.pow(base, omega)?;
    let one = b.scalar(1.0, DType::F64)?;
    let omega = b.div(one, denom)?;
    // torch.outer(pos, omega): f32 positions promoted to f64.
    let pos = b.convert(pos, DType::F64)?;
    let pos = b.broadcast_in_dim(pos, &[n, half], &[0])?;
    let omega = b.broadcast_in_dim(omega, &[n, half], &[1])?;
    let out = b.mul(pos, omega)?;
    let (sin, cos) = (b.sin(out)?, b.cos(out)?);
    b.concat(&[sin, cos], 1)
}

/// `torch.arange(n, dtype=float32) / scale` (an f32 division, as torch does it).
fn scaled_positions(b: &mut Builder, n: i64, scale: f64) -> Result<ValueId> {
    let i = b.iota(TensorType::new(DType::F32, vec![n]), 0)?;
    b.binary_scalar(BinaryOp::Div, i, scale)
}

/// Per-axis tables `tables[k]` [len_k, c_k] broadcast over the grid `len_0 x len_1 x ...` and
/// concatenated along channels: [prod(len), sum(c)], tokens row-major (first axis slowest).
fn grid_concat(b: &mut Builder, tables: &[ValueId]) -> Result<ValueId> {
    let grid: Vec<i64> = tables.iter().map(|&t| b.shape(t)[0]).collect();
    let n = tables.len();
    let mut parts = Vec::with_capacity(n);
    for (k, &t) in tables.iter().enumerate() {
        let mut shape = grid.clone();
        shape.push(b.shape(t)[1]);
        parts.push(b.broadcast_in_dim(t, &shape, &[k, n])?);
    }
    let cat = b.concat(&parts, n)?;
    let channels = b.shape(cat)[n];
    b.reshape(cat, &[grid.iter().product(), channels])
}

/// `CogVideoXPatchEmbed._get_positional_embeddings` for the video tokens of a `frames x height x
/// width` patch grid (`get_3d_sincos_pos_embed(embed_dim, (width, height), frames, ...)`, flattened):
/// f64 [frames * height * width, embed_dim], per token `[temporal (embed_dim/4), w (3/8), h (3/8)]`
/// (diffusers' `emb_h` is built from the column coordinate). diffusers keeps this table for the sample
/// size and recomputes it for any other; both are this function of the actual sizes.
pub fn sincos_pos_embed_3d(
    b: &mut Builder,
    embed_dim: i64,
    frames: i64,
    height: i64,
    width: i64,
    spatial_interpolation_scale: f64,
    temporal_interpolation_scale: f64,
) -> Result<ValueId> {
    if embed_dim % 16 != 0 {
        return Err(IrError::Value(format!("sincos 3D positions: embed_dim {embed_dim} must be a multiple of 16")));
    }
    let spatial = 3 * embed_dim / 4;
    let t = scaled_positions(b, frames, temporal_interpolation_scale)?;
    let t = sincos_1d(b, embed_dim / 4, t)?;
    let h = scaled_positions(b, height, spatial_interpolation_scale)?;
    let h = sincos_1d(b, spatial / 2, h)?;
    let w = scaled_positions(b, width, spatial_interpolation_scale)?;
    let w = sincos_1d(b, spatial / 2, w)?;
    // [F, H, W, .] with channels [t, w, h]: broadcast each over the grid, then concatenate.
    let grid = [frames, height, width];
    let parts = [(t, 0usize), (w, 2), (h, 1)].map(|(table, axis)| {
        let c = b.shape(table)[1];
        b.broadcast_in_dim(table, &[grid[0], grid[1], grid[2], c], &[axis, 3])
    });
    let [t, w, h] = parts;
    let cat = b.concat(&[t?, w?, h?], 3)?;
    b.reshape(cat, &[frames * height * width, embed_dim])
}

/// How `get_3d_rotary_pos_embed` places the positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeGrid {
    /// CogVideoX 1.0 (`grid_type="linspace"`): rows `linspace(top, bottom * (h-1)/h, h)`, columns
    /// likewise over the crop region (`(top, left), (bottom, right)`), frames `linspace(0, T-1, T)`.
    Linspace { start: (i64, i64), stop: (i64, i64) },
    /// CogVideoX 1.5 (`grid_type="slice"`): positions `0..n` on every axis.
    Slice,
}

/// `get_resize_crop_region_for_grid(src=(h, w), tgt_width, tgt_height)` of `pipeline_cogvideox.py`:
/// the part of the base grid that a `h x w` grid of the same aspect ratio covers, centred. Python's
/// `round` (half to even) on f64, as the pipeline computes it.
pub fn resize_crop_region_for_grid(src: (i64, i64), tgt_width: i64, tgt_height: i64) -> ((i64, i64), (i64, i64)) {
    let (tw, th) = (tgt_width as f64, tgt_height as f64);
    let (h, w) = (src.0 as f64, src.1 as f64);
    let (resize_height, resize_width) = if h / w > th / tw {
        (tgt_height, (th / h * w).round_ties_even() as i64)
    } else {
        ((tw / w * h).round_ties_even() as i64, tgt_width)
    };
    let crop_top = ((tgt_height - resize_height) as f64 / 2.0).round_ties_even() as i64;
    let crop_left = ((tgt_width - resize_width) as f64 / 2.0).round_ties_even() as i64;
    ((crop_top, crop_left), (crop_top + resize_height, crop_left + resize_width))
}

/// `torch.linspace(start, end, n, dtype=float32)` as torch computes it on the CPU: `step = (end -
/// start) / (n - 1)` in f32, then `start + step * i` for the first half and `end - step * (n - 1 - i)`
/// for the rest, each rounded once (a fused multiply-add). Computed in f64, where the product and the
/// sum are exact for grid-sized n, then rounded to f32.
fn linspace_f32(b: &mut Builder, start: f64, end: f64, n: i64) -> Result<ValueId> {
    let (start, end) = (start as f32, end as f32);
    if n == 1 {
        return b.full(start as f64, TensorType::new(DType::F32, vec![1]));
    }
    let step = (end - start) / (n - 1) as f32;
    let i = b.iota(TensorType::new(DType::F64, vec![n]), 0)?;
    let lo = b.mul_scalar(i, step as f64)?;
    let lo = b.add_scalar(lo, start as f64)?;
    let back = b.mul_scalar(i, -1.0)?;
    let back = b.add_scalar(back, (n - 1) as f64)?;
    let back = b.mul_scalar(back, step as f64)?;
    let end_v = b.scalar(end as f64, DType::F64)?;
    let hi = b.sub(end_v, back)?;
    let half = b.scalar((n / 2) as f64, DType::F64)?;
    let first_half = b.compare(CompareDir::Lt, i, half)?;
    let v = b.select(first_half, lo, hi)?;
    b.convert(v, DType::F32)
}

/// `get_1d_rotary_pos_embed(dim, pos, theta=10000, use_real=True)` before its repeat-interleave: the
/// angles `pos * 1 / 10000^(2k / dim)` [n, dim/2], all f32 as in torch (`10000 ** e` rounded from f64,
/// which is what torch's f32 pow gives for these exponents).
fn rope_angles(b: &mut Builder, pos: ValueId, dim: i64) -> Result<ValueId> {
    let n = b.shape(pos)[0];
    let k = b.iota(TensorType::new(DType::F32, vec![dim / 2]), 0)?;
    let two_k = b.mul_scalar(k, 2.0)?;
    let e = b.binary_scalar(BinaryOp::Div, two_k, dim as f64)?;
    let e = b.convert(e, DType::F64)?;
    let theta = b.scalar(10000.0, DType::F64)?;
    let p = b.pow(theta, e)?;
    let p = b.convert(p, DType::F32)?;
    let one = b.scalar(1.0, DType::F32)?;
    let freqs = b.div(one, p)?;
    let pos = b.broadcast_in_dim(pos, &[n, dim / 2], &[0])?;
    let freqs = b.broadcast_in_dim(freqs, &[n, dim / 2], &[1])?;
    b.mul(pos, freqs)
}

/// `get_3d_rotary_pos_embed(head_dim, crops_coords, (grid_h, grid_w), frames, use_real=True, grid_type)`
/// as f32 cos/sin [frames * grid_h * grid_w, head_dim / 2], one entry per rotated pair (diffusers
/// repeats each twice), pairs `[t (head_dim/8), h (3 head_dim/16), w (3 head_dim/16)]`.
pub fn rotary_pos_embed_3d(
    b: &mut Builder,
    head_dim: i64,
    grid: RopeGrid,
    frames: i64,
    grid_h: i64,
    grid_w: i64,
) -> Result<RopeTables> {
    if head_dim % 16 != 0 {
        return Err(IrError::Value(format!("3D RoPE: head_dim {head_dim} must be a multiple of 16")));
    }
    let (dim_t, dim_hw) = (head_dim / 4, head_dim / 8 * 3);
    let (t, h, w) = match grid {
        RopeGrid::Linspace { start, stop } => {
            // stop * (n - 1) / n in Python (an int product, then a true division), then f32.
            let end = |stop: i64, n: i64| (stop * (n - 1)) as f64 / n as f64;
            (
                linspace_f32(b, 0.0, end(frames, frames), frames)?,
                linspace_f32(b, start.0 as f64, end(stop.0, grid_h), grid_h)?,
                linspace_f32(b, start.1 as f64, end(stop.1, grid_w), grid_w)?,
            )
        }
        RopeGrid::Slice => {
            let arange = |b: &mut Builder, n| b.iota(TensorType::new(DType::F32, vec![n]), 0);
            (arange(b, frames)?, arange(b, grid_h)?, arange(b, grid_w)?)
        }
    };
    let angles = [rope_angles(b, t, dim_t)?, rope_angles(b, h, dim_hw)?, rope_angles(b, w, dim_hw)?];
    let cos = angles.map(|a| b.cos(a));
    let sin = angles.map(|a| b.sin(a));
    let [c0, c1, c2] = cos;
    let [s0, s1, s2] = sin;
    Ok(RopeTables { cos: grid_concat(b, &[c0?, c1?, c2?])?, sin: grid_concat(b, &[s0?, s1?, s2?])? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_region_matches_the_pipeline() {
        // 5b at its sample size (480x720 -> 30x45 patches): the whole base grid.
        assert_eq!(resize_crop_region_for_grid((30, 45), 45, 30), ((0, 0), (30, 45)));
        // 768x1360 on the 30x45 base: 45 wide, round(25.41) = 25 high, top round(2.5) = 2 (half to even).
        assert_eq!(resize_crop_region_for_grid((48, 85), 45, 30), ((2, 0), (27, 45)));
        // taller than the base: full height, centred columns.
        assert_eq!(resize_crop_region_for_grid((4, 4), 6, 4), ((0, 1), (4, 5)));
    }

    #[test]
    fn table_shapes() {
        let mut b = Builder::new("pos");
        let p = sincos_pos_embed_3d(&mut b, 32, 3, 4, 6, 1.875, 1.0).unwrap();
        assert_eq!(b.ty(p), &TensorType::new(DType::F64, vec![72, 32]));
        let grid = RopeGrid::Linspace { start: (0, 1), stop: (4, 5) };
        let t = rotary_pos_embed_3d(&mut b, 64, grid, 2, 4, 4).unwrap();
        assert_eq!(b.ty(t.cos), &TensorType::new(DType::F32, vec![32, 32]));
        let t = rotary_pos_embed_3d(&mut b, 16, RopeGrid::Slice, 1, 1, 3).unwrap();
        assert_eq!(b.shape(t.sin), vec![3, 8]);
        assert!(rotary_pos_embed_3d(&mut b, 24, RopeGrid::Slice, 1, 1, 3).is_err());
        b.finish().unwrap();
    }
}
