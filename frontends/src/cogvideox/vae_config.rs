//! `AutoencoderKLCogVideoX`'s `vae/config.json` as diffusers 0.42.1 writes it: unknown fields are
//! ignored, missing ones take `__init__`'s defaults (CogVideoX-2b's VAE).

use serde::Deserialize;

/// diffusers `AutoencoderKLCogVideoX` config. The three checkpoints differ only in
/// `scaling_factor` (2b 1.15258426, 5b and 1.5-5B 0.7) and `invert_scale_latents` (1.5: true,
/// used only when image-to-video encodes its image; decoding never reads it).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct CogVideoXVaeConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<i64>,
    pub latent_channels: i64,
    pub layers_per_block: i64,
    pub act_fn: String,
    pub norm_eps: f64,
    pub norm_num_groups: i64,
    pub temporal_compression_ratio: f64,
    pub sample_height: i64,
    pub sample_width: i64,
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
    pub latents_mean: Option<Vec<f64>>,
    pub latents_std: Option<Vec<f64>>,
    pub force_upcast: bool,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub invert_scale_latents: bool,
}

impl Default for CogVideoXVaeConfig {
    fn default() -> Self {
        let blocks = |kind: &str| vec![kind.to_string(); 4];
        CogVideoXVaeConfig {
            in_channels: 3,
            out_channels: 3,
            down_block_types: blocks("CogVideoXDownBlock3D"),
            up_block_types: blocks("CogVideoXUpBlock3D"),
            block_out_channels: vec![128, 256, 256, 512],
            latent_channels: 16,
            layers_per_block: 3,
            act_fn: "silu".into(),
            norm_eps: 1e-6,
            norm_num_groups: 32,
            temporal_compression_ratio: 4.0,
            sample_height: 480,
            sample_width: 720,
            scaling_factor: 1.15258426,
            shift_factor: None,
            latents_mean: None,
            latents_std: None,
            force_upcast: true,
            use_quant_conv: false,
            use_post_quant_conv: false,
            invert_scale_latents: false,
        }
    }
}

impl CogVideoXVaeConfig {
    /// Sample pixels per latent pixel: one 2x upsampler per up block but the last
    /// (`2 ** (len(block_out_channels) - 1)`, as `enable_tiling` computes its latent tiles).
    pub fn scale_spatial(&self) -> i64 {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// Up blocks whose upsampler also doubles time (`compress_time`): the first
    /// `int(log2(temporal_compression_ratio))` of those that have an upsampler.
    pub fn temporal_upsamples(&self) -> usize {
        let level = self.temporal_compression_ratio.log2().floor().max(0.0) as usize;
        level.min(self.block_out_channels.len().saturating_sub(1))
    }

    /// Latent frames -> video frames of the pipeline's latent count (odd T): 4 (T - 1) + 1.
    pub fn scale_temporal(&self) -> i64 {
        1 << self.temporal_upsamples()
    }

    /// `enable_tiling`'s defaults: half the trained sample size, overlaps 1/6 (height), 1/5 (width).
    pub fn default_tile_sample_min(&self) -> (i64, i64) {
        (self.sample_height / 2, self.sample_width / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_diffusers_config() {
        // CogVideoX1.5-5B's vae/config.json (the fields the decoder reads, plus unknown ones).
        let text = r#"{"_class_name": "AutoencoderKLCogVideoX", "_diffusers_version": "0.32.0.dev0",
            "block_out_channels": [128, 256, 256, 512], "latent_channels": 16, "layers_per_block": 3,
            "norm_num_groups": 32, "scaling_factor": 0.7, "invert_scale_latents": true,
            "temporal_compression_ratio": 4, "sample_height": 480, "sample_width": 720}"#;
        let cfg: CogVideoXVaeConfig = serde_json::from_str(text).unwrap();
        assert_eq!(cfg.scaling_factor, 0.7);
        assert!(cfg.invert_scale_latents);
        assert_eq!((cfg.scale_spatial(), cfg.scale_temporal(), cfg.default_tile_sample_min()), (8, 4, (240, 360)));
        assert_eq!(CogVideoXVaeConfig::default().scaling_factor, 1.15258426);
    }
}
