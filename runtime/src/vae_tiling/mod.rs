//! Spatially tiled VAE decode, family-independent: diffusers' `tiled_decode` (`AutoencoderKLWan`'s,
//! `AutoencoderKLCogVideoX`'s: the same scheme once their knobs are reduced to a
//! [`TileGeometry`]) over a "decode this latent tile" closure. Each tile is decoded whole (all its frames, the closure carries the causal
//! caches), tiles overlap, are blended linearly with the tile above and the tile on the left over the
//! geometry's blend extents, then each keeps its top-left `keep` corner.
//!
//! Tiles are decoded row by row as diffusers does, but only the previous row of decoded tiles is
//! kept (blending reads the tile above, already blended itself, and nothing older), and each
//! tile's kept corner goes straight into the frame: host memory is the frame plus two rows of
//! tiles instead of every tile.

mod blend;
mod plan;

pub use blend::{blend_h, blend_v, paste, Images};
pub use plan::{Span, Tile, TilePlan};
pub use vidlower_frontends::nn::vae_decoder::{TileGeometry, TileKnobs};

use crate::tensor::HostTensor;

#[derive(Debug, thiserror::Error)]
pub enum TilingError {
    #[error("tile geometry {geometry:?} at spatial compression {ratio}: each tile must keep exactly its stride (keep = latent stride x {ratio}, 1 <= stride <= tile)")]
    Geometry { geometry: TileGeometry, ratio: i64 },
    #[error("latents {dims:?}: expected at least [..., H, W] with the plan's latent size {latent:?}")]
    Latents { dims: Vec<i64>, latent: (i64, i64) },
    #[error("tile (row {row}, col {col}): decoded to {got:?}, expected [{lead}, {height}, {width}]")]
    TileShape { row: usize, col: usize, got: Vec<i64>, lead: String, height: i64, width: i64 },
}

/// Decodes `z` [..., H, W] tile by tile with `decode(tile, z_tile)`, which must return the tile's
/// sample [..., h * ratio, w * ratio] (the same leading dims for every tile), and assembles the
/// blended frame [..., H * ratio, W * ratio] in f32. Nothing is clamped: diffusers clamps the
/// assembled frame, so `decode` must return the decoder's raw output.
pub fn decode_tiled<E: From<TilingError>>(
    plan: &TilePlan,
    z: &HostTensor,
    mut decode: impl FnMut(&Tile, HostTensor) -> Result<HostTensor, E>,
) -> Result<Images, E> {
    let rank = z.dims.len();
    if rank < 2 || (z.dims[rank - 2], z.dims[rank - 1]) != plan.latent {
        return Err(TilingError::Latents { dims: z.dims.clone(), latent: plan.latent }.into());
    }
    let (blend, keep) = ((plan.blend.0 as usize, plan.blend.1 as usize), (plan.keep.0 as usize, plan.keep.1 as usize));
    let mut frame: Option<Images> = None;
    let mut above: Vec<Images> = Vec::new();
    let mut current: Vec<Images> = Vec::with_capacity(plan.cols.len());
    for tile in plan.tiles() {
        let sample = decode(&tile, crop(z, tile.y, tile.x))?;
        let mut t = Images::from_tensor(&sample);
        let frame = frame.get_or_insert_with(|| {
            let mut dims = t.lead().to_vec();
            dims.extend([plan.sample_size().0, plan.sample_size().1]);
            Images::zeros(dims)
        });
        let (h, w) = (tile.y.len * plan.ratio, tile.x.len * plan.ratio);
        if t.dims.len() < 2 || t.lead() != frame.lead() || (t.height() as i64, t.width() as i64) != (h, w) {
            let lead = frame.lead().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
            return Err(TilingError::TileShape { row: tile.row, col: tile.col, got: t.dims, lead, height: h, width: w }.into());
        }
        if tile.row > 0 {
            blend_v(&above[tile.col], &mut t, blend.0);
        }
        if tile.col > 0 {
            blend_h(&current[tile.col - 1], &mut t, blend.1);
        }
        let origin = (tile.y.start * plan.ratio) as usize;
        paste(frame, &t, (origin, (tile.x.start * plan.ratio) as usize), keep);
        current.push(t);
        if tile.col + 1 == plan.cols.len() {
            above = std::mem::take(&mut current);
        }
    }
    frame.ok_or_else(|| TilingError::Latents { dims: z.dims.clone(), latent: plan.latent }.into())
}

/// `z[..., y.start : y.start + y.len, x.start : x.start + x.len]`, any dtype.
pub fn crop(z: &HostTensor, y: Span, x: Span) -> HostTensor {
    let rank = z.dims.len();
    let (h, w) = (z.dims[rank - 2] as usize, z.dims[rank - 1] as usize);
    let planes: usize = z.dims[..rank - 2].iter().product::<i64>() as usize;
    let size = z.dtype.size_in_bytes();
    let (y0, x0, th, tw) = (y.start as usize, x.start as usize, y.len as usize, x.len as usize);
    let mut data = Vec::with_capacity(planes * th * tw * size);
    for p in 0..planes {
        for r in y0..y0 + th {
            let at = ((p * h + r) * w + x0) * size;
            data.extend_from_slice(&z.data[at..at + tw * size]);
        }
    }
    let mut dims = z.dims.clone();
    dims[rank - 2] = y.len;
    dims[rank - 1] = x.len;
    HostTensor::new(z.dtype, dims, data).expect("sizes computed from the dims")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// diffusers' `tiled_decode` after the decoder, literally: every tile kept, blended in place
    /// in row order, cropped, concatenated, cropped to the frame.
    fn reference(plan: &TilePlan, tiles: &mut [Vec<Images>]) -> Images {
        let (blend, keep) = ((plan.blend.0 as usize, plan.blend.1 as usize), (plan.keep.0 as usize, plan.keep.1 as usize));
        for i in 0..tiles.len() {
            for j in 0..tiles[i].len() {
                let mut t = tiles[i][j].clone();
                if i > 0 {
                    blend_v(&tiles[i - 1][j], &mut t, blend.0);
                }
                if j > 0 {
                    blend_h(&tiles[i][j - 1], &mut t, blend.1);
                }
                tiles[i][j] = t;
            }
        }
        // Concatenate the kept corners row by row, then crop.
        let lead = tiles[0][0].lead().to_vec();
        let planes = lead.iter().product::<i64>() as usize;
        let mut rows: Vec<Vec<Vec<f32>>> = Vec::new(); // [plane][row] -> pixels
        for row in tiles.iter() {
            let kh = keep.0.min(row[0].height());
            for r in 0..kh {
                let mut line_per_plane = Vec::new();
                for p in 0..planes {
                    let mut line = Vec::new();
                    for t in row {
                        let (th, tw) = (t.height(), t.width());
                        let start = (p * th + r) * tw;
                        line.extend_from_slice(&t.data[start..start + keep.1.min(tw)]);
                    }
                    line_per_plane.push(line);
                }
                rows.push(line_per_plane);
            }
        }
        let (sh, sw) = (plan.sample_size().0 as usize, plan.sample_size().1 as usize);
        let mut data = Vec::new();
        for p in 0..planes {
            for line in rows.iter().take(sh) {
                data.extend_from_slice(&line[p][..sw]);
            }
        }
        let mut dims = lead;
        dims.extend([sh as i64, sw as i64]);
        Images { dims, data }
    }

    /// A fake "decoder": 2x nearest upsampling plus a per-tile offset, so overlaps disagree.
    fn fake_decode(tile: &Tile, z: &HostTensor) -> Images {
        let z = Images::from_tensor(z);
        let (h, w) = (z.height(), z.width());
        let mut dims = z.lead().to_vec();
        dims.extend([2 * h as i64, 2 * w as i64]);
        let mut out = Images::zeros(dims);
        let planes = out.data.len() / (4 * h * w);
        for p in 0..planes {
            for y in 0..2 * h {
                for x in 0..2 * w {
                    let v = z.data[(p * h + y / 2) * w + x / 2];
                    out.data[(p * 2 * h + y) * 2 * w + x] = v + 0.1 * (tile.row * 3 + tile.col) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn streaming_assembly_matches_diffusers_loop() {
        for (lat, tile, stride) in [((5, 7), (4, 6), (2, 4)), ((4, 9), (4, 4), (2, 2)), ((9, 4), (6, 2), (4, 2)), ((3, 3), (2, 2), (2, 2))]
        {
            let geometry = TileGeometry {
                latent_tile: (tile.0 / 2, tile.1 / 2),
                latent_stride: (stride.0 / 2, stride.1 / 2),
                blend: (tile.0 - stride.0, tile.1 - stride.1),
                keep: stride,
            };
            let plan = TilePlan::new(&geometry, 2, lat.0, lat.1).unwrap().unwrap();
            let n = 2 * 3 * lat.0 * lat.1;
            let z = HostTensor::from_f32(vec![2, 3, lat.0, lat.1], &(0..n).map(|i| (i as f32 * 0.77).sin()).collect::<Vec<_>>()).unwrap();
            let mut seen = Vec::new();
            let got = decode_tiled::<TilingError>(&plan, &z, |t, zt| {
                seen.push((t.row, t.col));
                Ok(fake_decode(t, &zt).into_tensor())
            })
            .unwrap();
            assert_eq!(seen, plan.tiles().map(|t| (t.row, t.col)).collect::<Vec<_>>());
            let mut tiles: Vec<Vec<Images>> = plan
                .rows
                .iter()
                .map(|&y| plan.cols.iter().map(|&x| (y, x)).collect::<Vec<_>>())
                .enumerate()
                .map(|(row, r)| {
                    r.into_iter().enumerate().map(|(col, (y, x))| fake_decode(&Tile { row, col, y, x }, &crop(&z, y, x))).collect()
                })
                .collect();
            let want = reference(&plan, &mut tiles);
            assert_eq!(got, want, "latent {lat:?} tile {tile:?} stride {stride:?}");
        }
    }

    #[test]
    fn wrong_tile_output_is_named() {
        let wan = TileGeometry { latent_tile: (32, 32), latent_stride: (24, 24), blend: (64, 64), keep: (192, 192) };
        let plan = TilePlan::new(&wan, 8, 40, 40).unwrap().unwrap();
        let z = HostTensor::zeros(vidlower_ir::DType::F32, vec![1, 2, 40, 40]).unwrap();
        let e = decode_tiled::<TilingError>(&plan, &z, |_, zt| Ok(zt)).unwrap_err();
        assert!(e.to_string().contains("tile (row 0, col 0): decoded to [1, 2, 32, 32], expected [1, 2, 256, 256]"), "{e}");
        let e = decode_tiled::<TilingError>(&plan, &HostTensor::zeros(vidlower_ir::DType::F32, vec![2, 40, 41]).unwrap(), |_, zt| Ok(zt));
        assert!(e.unwrap_err().to_string().contains("latent size (40, 40)"));
    }

    #[test]
    fn crop_takes_the_region_in_any_dtype() {
        let v: Vec<f32> = (0..2 * 4 * 5).map(|i| i as f32).collect();
        let z = HostTensor::from_f32(vec![2, 4, 5], &v).unwrap().convert(vidlower_ir::DType::BF16);
        let c = crop(&z, Span { start: 1, len: 2 }, Span { start: 3, len: 2 });
        assert_eq!(c.dims, [2, 2, 2]);
        assert_eq!(c.to_f32_vec(), [8.0, 9.0, 13.0, 14.0, 28.0, 29.0, 33.0, 34.0]);
    }
}
