//! Where the tiles of a tiled VAE decode lie, as diffusers' `tiled_decode` walks them: latent
//! tile origins every `stride / ratio` rows and columns from 0 while inside the latent, each
//! tile `tile / ratio` wide or whatever is left at the edge (so edge tiles are smaller, and a
//! tile starts at every stride even when the previous one already reached the edge).

use super::TilingError;

/// The tile sizes in sample (pixel) space, as `AutoencoderKLWan.enable_tiling` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    pub tile_sample_min_height: i64,
    pub tile_sample_min_width: i64,
    pub tile_sample_stride_height: i64,
    pub tile_sample_stride_width: i64,
}

impl Default for TileConfig {
    /// diffusers' `AutoencoderKLWan` defaults: 256 x 256 tiles every 192 pixels (64 blended).
    fn default() -> Self {
        TileConfig {
            tile_sample_min_height: 256,
            tile_sample_min_width: 256,
            tile_sample_stride_height: 192,
            tile_sample_stride_width: 192,
        }
    }
}

impl TileConfig {
    /// Checks the sizes for a VAE with spatial compression `ratio`: every size a positive
    /// multiple of `ratio` (diffusers floors them to latent pixels, which would silently move the
    /// tiles against the blend extent computed in pixels) and each stride at most its tile (a
    /// larger stride leaves rows and columns that no tile decodes).
    pub fn validate(&self, ratio: i64) -> Result<(), TilingError> {
        let sizes = [
            ("tile-sample-min-height", self.tile_sample_min_height),
            ("tile-sample-min-width", self.tile_sample_min_width),
            ("tile-sample-stride-height", self.tile_sample_stride_height),
            ("tile-sample-stride-width", self.tile_sample_stride_width),
        ];
        for (flag, value) in sizes {
            if value <= 0 || value % ratio != 0 {
                return Err(TilingError::NotMultiple { flag, value, ratio });
            }
        }
        let pairs = [
            ("tile-sample-stride-height", self.tile_sample_stride_height, "tile-sample-min-height", self.tile_sample_min_height),
            ("tile-sample-stride-width", self.tile_sample_stride_width, "tile-sample-min-width", self.tile_sample_min_width),
        ];
        for (stride_flag, stride, tile_flag, tile) in pairs {
            if stride > tile {
                return Err(TilingError::StrideOverTile { stride_flag, stride, tile_flag, tile });
            }
        }
        Ok(())
    }
}

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
    /// The plan for a latent frame of `latent_height` x `latent_width`, or `None` when diffusers'
    /// `_decode` would not tile it: only a frame larger than one tile (in either direction) is
    /// tiled; a smaller one is decoded whole.
    pub fn new(cfg: &TileConfig, ratio: i64, latent_height: i64, latent_width: i64) -> Result<Option<Self>, TilingError> {
        cfg.validate(ratio)?;
        let (tile_h, tile_w) = (cfg.tile_sample_min_height / ratio, cfg.tile_sample_min_width / ratio);
        if latent_height <= tile_h && latent_width <= tile_w {
            return Ok(None);
        }
        let (stride_h, stride_w) = (cfg.tile_sample_stride_height, cfg.tile_sample_stride_width);
        Ok(Some(TilePlan {
            ratio,
            latent: (latent_height, latent_width),
            rows: spans(latent_height, tile_h, stride_h / ratio),
            cols: spans(latent_width, tile_w, stride_w / ratio),
            blend: (cfg.tile_sample_min_height - stride_h, cfg.tile_sample_min_width - stride_w),
            keep: (stride_h, stride_w),
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

    fn cfg(tile: (i64, i64), stride: (i64, i64)) -> TileConfig {
        TileConfig {
            tile_sample_min_height: tile.0,
            tile_sample_min_width: tile.1,
            tile_sample_stride_height: stride.0,
            tile_sample_stride_width: stride.1,
        }
    }

    #[test]
    fn wan_480x832_defaults() {
        let plan = TilePlan::new(&TileConfig::default(), 8, 60, 104).unwrap().expect("480x832 is larger than a tile");
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
    fn small_frames_are_not_tiled() {
        assert_eq!(TilePlan::new(&TileConfig::default(), 8, 32, 32).unwrap(), None);
        // Only one direction larger: tiled, and the other direction still gets a tile at
        // every stride (diffusers' loop does not stop when a tile reaches the edge).
        let plan = TilePlan::new(&TileConfig::default(), 8, 32, 33).unwrap().unwrap();
        assert_eq!(plan.rows, [Span { start: 0, len: 32 }, Span { start: 24, len: 8 }]);
        assert_eq!(plan.cols, [Span { start: 0, len: 32 }, Span { start: 24, len: 9 }]);
    }

    #[test]
    fn stride_equal_to_tile_blends_nothing() {
        let plan = TilePlan::new(&cfg((32, 32), (32, 32)), 8, 8, 9).unwrap().unwrap();
        assert_eq!(plan.blend, (0, 0));
        assert_eq!(plan.cols, [Span { start: 0, len: 4 }, Span { start: 4, len: 4 }, Span { start: 8, len: 1 }]);
    }

    #[test]
    fn bad_sizes_are_named() {
        let e = TileConfig { tile_sample_stride_width: 100, ..Default::default() }.validate(8).unwrap_err();
        assert!(e.to_string().contains("--tile-sample-stride-width is 100"), "{e}");
        let e = TileConfig { tile_sample_min_height: 0, ..Default::default() }.validate(8).unwrap_err();
        assert!(e.to_string().contains("--tile-sample-min-height"), "{e}");
        let e = cfg((64, 64), (72, 32)).validate(8).unwrap_err();
        assert!(e.to_string().contains("--tile-sample-stride-height 72 exceeds --tile-sample-min-height 64"), "{e}");
        assert!(TilePlan::new(&cfg((64, 64), (64, 72)), 8, 100, 100).is_err());
    }
}
