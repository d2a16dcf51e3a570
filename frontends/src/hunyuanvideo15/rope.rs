//! `HunyuanVideo15RotaryPosEmbed`: 3D rotary tables for the video tokens (the text tokens get none),
//! computed in the graph. Positions `0..n` per axis of the patch grid (frames, rows, columns, tokens
//! row-major), `rope_axes_dim` channels per axis, theta `rope_theta` (256), everything in f32 as
//! `get_1d_rotary_pos_embed`'s default `freqs_dtype` does.

use super::transformer_config::HunyuanVideo15TransformerConfig;
use crate::nn::rope::{axial_rope_tables_in, RopeAxis, RopeTables};
use vidlower_ir::{Builder, DType, Result};

/// cos/sin f32 [frames * rows * columns, attention_head_dim / 2] for a `grid` of (frames, rows,
/// columns) patches; one entry per rotated pair (diffusers repeats each value twice).
pub fn rotary_pos_embed(b: &mut Builder, cfg: &HunyuanVideo15TransformerConfig, grid: [i64; 3]) -> Result<RopeTables> {
    let axes: Vec<RopeAxis> = cfg.rope_axes_dim.iter().zip(grid).map(|(&dim, len)| RopeAxis { dim, len }).collect();
    axial_rope_tables_in(b, &axes, cfg.rope_theta, DType::F32, DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_cover_the_head() {
        let mut b = Builder::new("rope");
        let cfg = HunyuanVideo15TransformerConfig::default();
        let t = rotary_pos_embed(&mut b, &cfg, [2, 3, 4]).unwrap();
        assert_eq!(b.shape(t.cos), vec![24, 64]);
        assert_eq!(b.dtype(t.sin), DType::F32);
        b.finish().unwrap();
    }
}
