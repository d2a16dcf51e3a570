//! Where the tiles of a tiled VAE decode lie, as diffusers' `tiled_decode` walks them (Wan's and
//! CogVideoX's alike, from the family's [`TileGeometry`]): latent tile origins every latent
//! stride from 0 while inside the latent, each tile a latent tile wide or whatever is left at
//! the edge (so edge tiles are smaller, and a tile starts at every stride even when the previous
//! one already reached the edge).

use super::TilingError;
use vidlower_frontends::nn::vae_decoder::TileGeometry;

/// A run of latent rows or columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub len: i64,
}

/// One tile: its place in the grid and the latent region it decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub row: usize,
    pub col: usize,
    pub y: Span,
    pub x: Span,
}

impl Tile {
    /// The latent (height, width) of the tile: the shape its decoder is compiled for.
    pub fn latent_shape(&self) -> (i64, i64) {
        (self.y.len, self.x.len)
    }
}

/// The tiles of one latent frame size, and how their decoded samples are blended and cropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TilePlan {
    /// Spatial compression: sample pixels per latent pixel.
    pub ratio: i64,
    /// Latent (height, width) of the whole frame.
    pub latent: (i64, i64),
    pub rows: Vec<Span>,
    pub cols: Vec<Span>,
    /// Blend extent in sample pixels (tile - stride): rows blended with the tile above,
    /// columns with the tile on the left.
    pub blend: (i64, i64),
    /// Sample pixels each tile keeps (its top-left corner) after blending.
    pub keep: (i64, i64),
}

impl TilePlan {
    /// The plan for a latent frame of `latent_height` x `latent_width` with spatial compression
    /// `ratio`, or `None` when diffusers' `_decode` would not tile it: only a frame larger than
    /// one tile (in either direction) is tiled; a smaller one is decoded whole. A geometry whose
    /// kept parts do not tile the frame exactly (`keep != stride * ratio`, a stride of 0 or over
    /// the tile) is refused: the family should have refused its knobs.
    pub fn new(geometry: &TileGeometry, ratio: i64, latent_height: i64, latent_width: i64) -> Result<Option<Self>, TilingError> {
        let g = geometry;
        let pairs = [(g.latent_tile.0, g.latent_stride.0, g.keep.0, g.blend.0), (g.latent_tile.1, g.latent_stride.1, g.keep.1, g.blend.1)];
        if ratio < 1 || pairs.iter().any(|&(tile, stride, keep, blend)| stride < 1 || stride > tile || keep != stride * ratio || blend < 0) {
            return Err(TilingError::Geometry { geometry: *g, ratio });
        }
        if latent_height <= g.latent_tile.0 && latent_width <= g.latent_tile.1 {
            return Ok(None);
        }
        Ok(Some(TilePlan {
            ratio,
            latent: (latent_height, latent_width),
            rows: spans(latent_height, g.latent_tile.0, g.latent_stride.0),
            cols: spans(latent_width, g.latent_tile.1, g.latent_stride.1),
            blend: g.blend,
            keep: g.keep,
        }))
    }

    /// Every tile, row by row (the order diffusers decodes and blends them in).
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        self.rows.iter().enumerate().flat_map(move |(row, &y)| self.cols.iter().enumerate().map(move |(col, &x)| Tile { row, col, y, x }))
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    /// Whether the plan has no tiles (only for an empty latent).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct latent tile shapes, sorted: one compiled decoder each.
    pub fn tile_shapes(&self) -> Vec<(i64, i64)> {
        let mut shapes: Vec<(i64, i64)> = self.tiles().map(|t| t.latent_shape()).collect();
        shapes.sort_unstable();
        shapes.dedup();
        shapes
    }

    /// Sample (height, width) of the whole decoded frame.
    pub fn sample_size(&self) -> (i64, i64) {
        (self.latent.0 * self.ratio, self.latent.1 * self.ratio)
    }
}

/// `range(0, extent, stride)`, each span `tile` long or cut at `extent`.
fn spans(extent: i64, tile: i64, stride: i64) -> Vec<Span> {
    (0..extent).step_by(stride as usize).map(|start| Span { start, len: tile.min(extent - start) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wan's geometry for sample tiles and strides (blend = tile - stride, keep = stride).
    pub(crate) fn wan(tile: (i64, i64), stride: (i64, i64)) -> TileGeometry {
        TileGeometry {
            latent_tile: (tile.0 / 8, tile.1 / 8),
            latent_stride: (stride.0 / 8, stride.1 / 8),
            blend: (tile.0 - stride.0, tile.1 - stride.1),
            keep: stride,
        }
    }

    #[test]
    fn wan_480x832_defaults() {
        let plan = TilePlan::new(&wan((256, 256), (192, 192)), 8, 60, 104).unwrap().expect("480x832 is larger than a tile");
        let starts = |s: &[Span]| s.iter().map(|s| (s.start, s.len)).collect::<Vec<_>>();
        assert_eq!(starts(&plan.rows), [(0, 32), (24, 32), (48, 12)]);
        assert_eq!(starts(&plan.cols), [(0, 32), (24, 32), (48, 32), (72, 32), (96, 8)]);
        assert_eq!(plan.len(), 15);
        assert_eq!(plan.tile_shapes(), [(12, 8), (12, 32), (32, 8), (32, 32)]);
        assert_eq!((plan.blend, plan.keep, plan.sample_size()), ((64, 64), (192, 192), (480, 832)));
        let last = plan.tiles().last().unwrap();
        assert_eq!((last.row, last.col, last.latent_shape()), (2, 4, (12, 8)));
    }

    #[test]
    fn cogvideox_480x720_defaults() {
        // enable_tiling's defaults for sample 480x720: 240x360 tiles, overlap 1/6 and 1/5.
        let g = TileGeometry { latent_tile: (30, 45), latent_stride: (25, 36), blend: (40, 72), keep: (200, 288) };
        let plan = TilePlan::new(&g, 8, 60, 90).unwrap().unwrap();
        let starts = |s: &[Span]| s.iter().map(|s| (s.start, s.len)).collect::<Vec<_>>();
        assert_eq!(starts(&plan.rows), [(0, 30), (25, 30), (50, 10)]);
        assert_eq!(starts(&plan.cols), [(0, 45), (36, 45), (72, 18)]);
        assert_eq!(plan.sample_size(), (480, 720));
    }

    #[test]
    fn small_frames_are_not_tiled() {
        let g = wan((256, 256), (192, 192));
        assert_eq!(TilePlan::new(&g, 8, 32, 32).unwrap(), None);
        // Only one direction larger: tiled, and the other direction still gets a tile at
        // every stride (diffusers' loop does not stop when a tile reaches the edge).
        let plan = TilePlan::new(&g, 8, 32, 33).unwrap().unwrap();
        assert_eq!(plan.rows, [Span { start: 0, len: 32 }, Span { start: 24, len: 8 }]);
        assert_eq!(plan.cols, [Span { start: 0, len: 32 }, Span { start: 24, len: 9 }]);
    }

    #[test]
    fn stride_equal_to_tile_blends_nothing() {
        let plan = TilePlan::new(&wan((32, 32), (32, 32)), 8, 8, 9).unwrap().unwrap();
        assert_eq!(plan.blend, (0, 0));
        assert_eq!(plan.cols, [Span { start: 0, len: 4 }, Span { start: 4, len: 4 }, Span { start: 8, len: 1 }]);
    }

    #[test]
    fn inconsistent_geometries_are_refused() {
        let g = wan((48, 40), (40, 32));
        assert!(TilePlan::new(&g, 8, 20, 20).is_ok());
        for bad in [
            TileGeometry { keep: (40, 40), ..g },
            TileGeometry { latent_stride: (0, 4), keep: (0, 32), ..g },
            TileGeometry { latent_stride: (7, 4), keep: (56, 32), ..g },
        ] {
            let e = TilePlan::new(&bad, 8, 20, 20).unwrap_err();
            assert!(e.to_string().contains("tile geometry"), "{e}");
        }
    }
}
