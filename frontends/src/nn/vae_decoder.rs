//! The seam a video VAE decoder is run through, family-neutral: a family describes its decoder
//! as step graphs that carry their causal-conv caches (how many latent frames each step takes,
//! what each step yields), and how its diffusers `enable_tiling` knobs place the spatial tiles.
//! The runtime's decode loop (`vidlower_runtime::stages::vae_decode`) knows no family.
//!
//! Both diffusers decoders reduce to the same loop: latent frames in batches (Wan: one frame at a
//! time, `first_chunk` for the first; CogVideoX: `num_latent_frames_batch_size` frames, the
//! remainder in the first batch), each batch one call of the decoder with the caches of the
//! previous call, the results concatenated in time. Tiled, every tile runs that loop from fresh
//! caches and the tiles are blended (`blend_v`, `blend_h`) and cropped.

use vidlower_ir::{DType, Graph, Result};

/// The latent size one step decodes: batch and latent height/width (the video is
/// [`VaeDecoderGraphs::spatial_scale`] times larger).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaeDecodeShape {
    pub batch: i64,
    pub height: i64,
    pub width: i64,
}

/// The user's tiling knobs (the CLI's flags), every family's, each optional: a family takes
/// its own, fills the rest from its diffusers defaults and refuses the others' (naming them).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TileKnobs {
    /// Tile size in sample pixels (every family's `enable_tiling`).
    pub tile_sample_min_height: Option<i64>,
    pub tile_sample_min_width: Option<i64>,
    /// Pixels between tile origins (`AutoencoderKLWan`).
    pub tile_sample_stride_height: Option<i64>,
    pub tile_sample_stride_width: Option<i64>,
    /// Fraction of a tile blended with its neighbour (`AutoencoderKLCogVideoX`).
    pub tile_overlap_factor_height: Option<f64>,
    pub tile_overlap_factor_width: Option<f64>,
    /// Fraction of a tile blended with its neighbours, both directions
    /// (`AutoencoderKLHunyuanVideo15`'s one `tile_overlap_factor`).
    pub tile_overlap_factor: Option<f64>,
}

impl TileKnobs {
    /// The flags (kebab-case, without `--`) of the knobs that are set.
    pub fn given(&self) -> Vec<&'static str> {
        let set = [
            ("tile-sample-min-height", self.tile_sample_min_height.is_some()),
            ("tile-sample-min-width", self.tile_sample_min_width.is_some()),
            ("tile-sample-stride-height", self.tile_sample_stride_height.is_some()),
            ("tile-sample-stride-width", self.tile_sample_stride_width.is_some()),
            ("tile-overlap-factor-height", self.tile_overlap_factor_height.is_some()),
            ("tile-overlap-factor-width", self.tile_overlap_factor_width.is_some()),
            ("tile-overlap-factor", self.tile_overlap_factor.is_some()),
        ];
        set.into_iter().filter(|(_, s)| *s).map(|(f, _)| f).collect()
    }

    /// Refuses a knob outside `own` (the flags `vae` takes), naming it and the ones it takes.
    pub fn refuse_others(&self, vae: &str, own: &[&str]) -> std::result::Result<(), String> {
        match self.given().into_iter().find(|f| !own.contains(f)) {
            None => Ok(()),
            Some(flag) => {
                let takes = own.iter().map(|f| format!("--{f}")).collect::<Vec<_>>().join(", ");
                Err(format!("--{flag} does not apply to {vae} (its tiling takes {takes})"))
            }
        }
    }
}

/// Where the tiles of a tiled decode lie, what both diffusers `tiled_decode`s reduce to: latent
/// tiles of `latent_tile` (cut at the edges) starting every `latent_stride` latent pixels from 0;
/// each decoded tile blends its first `blend` sample rows/columns with the tile above/left and
/// keeps its top-left `keep` sample pixels (diffusers' `row_limit` / `tile_sample_stride`).
/// A family only returns geometries whose kept parts tile the frame exactly
/// (`keep == latent_stride * spatial_scale`), so the video has the latents' size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGeometry {
    /// Latent (height, width) of a full tile.
    pub latent_tile: (i64, i64),
    /// Latent (rows, columns) between tile origins.
    pub latent_stride: (i64, i64),
    /// Sample pixels blended with the tile above (height) and on the left (width).
    pub blend: (i64, i64),
    /// Sample (height, width) each tile keeps after blending.
    pub keep: (i64, i64),
}

/// One axis of an overlap-factor tiling (`AutoencoderKLCogVideoX`, `AutoencoderKLHunyuanVideo15`)
/// reduced as their `tiled_decode`s do: latent tile `tile / ratio`, latent stride
/// `int(latent_tile * (1 - factor))`, blend `int(tile * factor)` sample pixels, each tile keeping
/// `tile - blend`; as (latent tile, latent stride, blend, keep). Knobs for which the kept part
/// differs from the stride are refused, naming both flags: diffusers would assemble a video of
/// another size than the latents'. `what` is "rows" or "columns".
pub fn overlap_tile_axis(
    tile: i64,
    factor: f64,
    ratio: i64,
    (tile_flag, factor_flag): (&str, &str),
    what: &str,
) -> std::result::Result<(i64, i64, i64, i64), String> {
    if !(factor > 0.0 && factor < 1.0) {
        return Err(format!("--{factor_flag} is {factor}: expected a fraction between 0 and 1"));
    }
    let latent_tile = tile / ratio;
    let stride = (latent_tile as f64 * (1.0 - factor)) as i64;
    let blend = (tile as f64 * factor) as i64;
    let keep = tile - blend;
    if stride < 1 {
        return Err(format!("--{tile_flag} {tile} with --{factor_flag} {factor}: tiles of {latent_tile} latent {what} overlap entirely (stride 0)"));
    }
    if keep != stride * ratio {
        return Err(format!(
            "--{tile_flag} {tile} with --{factor_flag} {factor}: tiles start every {stride} latent {what} ({} pixels) but each keeps \
             {keep} pixels ({tile} - int({tile} * {factor})), so diffusers' tiled_decode would assemble a video of another size \
             than the latents'; choose values for which the two agree (the defaults do)",
            stride * ratio
        ));
    }
    Ok((latent_tile, stride, blend, keep))
}

/// A family's VAE decoder as step graphs (see the module doc). Implemented by the VAE config
/// (`WanVaeConfig`, `CogVideoXVaeConfig`).
pub trait VaeDecoderGraphs: Send + Sync {
    /// The diffusers class, for messages (`AutoencoderKLWan`).
    fn class_name(&self) -> &'static str;
    /// Channels of `z`.
    fn latent_channels(&self) -> i64;
    /// Sample pixels per latent pixel (8 for Wan and CogVideoX).
    fn spatial_scale(&self) -> i64;
    /// Latent frames each step decodes, in order (Wan: 1, 1, 1, ...; CogVideoX: diffusers' frame
    /// batches, the remainder in the first).
    fn step_frames(&self, latent_frames: i64) -> Vec<i64>;
    /// Video frames a step of `frames` latent frames yields (`first`: the video's first step).
    fn step_output_frames(&self, frames: i64, first: bool) -> i64;
    /// Video frames decoded from `latent_frames`: the steps' outputs concatenated.
    fn decoded_frames(&self, latent_frames: i64) -> i64 {
        let steps = self.step_frames(latent_frames);
        steps.iter().enumerate().map(|(i, &f)| self.step_output_frames(f, i == 0)).sum()
    }
    /// One step: inputs `z` [B, C, frames, h, w] and, unless `first`, the caches `cache.0`, ...
    /// a previous step returned; outputs `sample` [B, 3, f, scale h, scale w], then the caches
    /// under the same names and types (the same for every step of one (h, w)). `tiled`: the
    /// graph each tile runs (no final clamp where diffusers clamps the blended frame instead).
    fn step_graph(&self, shape: &VaeDecodeShape, frames: i64, first: bool, tiled: bool, dtype: DType) -> Result<Graph>;
    /// The tile geometry for the user's knobs, or an error naming the flag at fault.
    fn tile_geometry(&self, knobs: &TileKnobs) -> std::result::Result<TileGeometry, String>;
    /// Whether diffusers clamps the decoded video to [-1, 1] (Wan does, in `_decode` and after
    /// `tiled_decode`; CogVideoX does not: its pipeline's postprocessing clamps).
    fn clamps_sample(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_knobs_are_named() {
        let k = TileKnobs { tile_sample_min_height: Some(64), tile_overlap_factor_width: Some(0.2), ..Default::default() };
        assert_eq!(k.given(), ["tile-sample-min-height", "tile-overlap-factor-width"]);
        let e = k.refuse_others("AutoencoderKLWan", &["tile-sample-min-height", "tile-sample-stride-height"]).unwrap_err();
        assert_eq!(e, "--tile-overlap-factor-width does not apply to AutoencoderKLWan (its tiling takes --tile-sample-min-height, --tile-sample-stride-height)");
        assert!(TileKnobs::default().refuse_others("x", &[]).is_ok());
        let k = TileKnobs { tile_overlap_factor: Some(0.5), ..Default::default() };
        assert_eq!(k.given(), ["tile-overlap-factor"]);
    }
}
