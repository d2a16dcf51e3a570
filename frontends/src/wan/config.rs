//! Wan configs, read from each component's `config.json` as diffusers/transformers write them:
//! unknown fields are ignored, missing ones take diffusers' defaults.

use serde::Deserialize;

pub use crate::config::{read_json, ConfigError};

/// The largest size or factor a config may give: far above any real model, and small enough that
/// products of a few of them cannot overflow.
const MAX_SIZE: i64 = 1 << 20;

/// `WanTransformer3DModel` (diffusers `transformer/config.json`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct WanTransformerConfig {
    pub patch_size: Vec<i64>,
    pub num_attention_heads: i64,
    pub attention_head_dim: i64,
    pub in_channels: i64,
    pub out_channels: Option<i64>,
    pub text_dim: i64,
    pub freq_dim: i64,
    pub ffn_dim: i64,
    pub num_layers: i64,
    pub cross_attn_norm: bool,
    pub qk_norm: Option<String>,
    pub eps: f64,
    pub image_dim: Option<i64>,
    pub added_kv_proj_dim: Option<i64>,
    pub rope_max_seq_len: i64,
    pub pos_embed_seq_len: Option<i64>,
}

impl Default for WanTransformerConfig {
    fn default() -> Self {
        WanTransformerConfig {
            patch_size: vec![1, 2, 2],
            num_attention_heads: 40,
            attention_head_dim: 128,
            in_channels: 16,
            out_channels: Some(16),
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim: 13824,
            num_layers: 40,
            cross_attn_norm: true,
            qk_norm: Some("rms_norm_across_heads".into()),
            eps: 1e-6,
            image_dim: None,
            added_kv_proj_dim: None,
            rope_max_seq_len: 1024,
            pos_embed_seq_len: None,
        }
    }
}

impl WanTransformerConfig {
    /// Refuses sizes the layers cannot be built with: `(field, why)` of the first one found.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.patch_size.len() != 3 || self.patch_size.iter().any(|&p| !(1..=MAX_SIZE).contains(&p)) {
            return Err(("patch_size", format!("{:?}: expected three sizes [t, h, w] in 1..={MAX_SIZE}", self.patch_size)));
        }
        let positive = [
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels()),
            ("text_dim", self.text_dim),
            ("freq_dim", self.freq_dim),
            ("ffn_dim", self.ffn_dim),
            ("rope_max_seq_len", self.rope_max_seq_len),
        ];
        match positive.into_iter().find(|&(_, v)| !(1..=MAX_SIZE).contains(&v)) {
            Some((field, v)) => Err((field, format!("{v}: expected 1..={MAX_SIZE}"))),
            None if !(0..=MAX_SIZE).contains(&self.num_layers) => {
                Err(("num_layers", format!("{}: expected 0..={MAX_SIZE}", self.num_layers)))
            }
            None => Ok(()),
        }
    }

    pub fn inner_dim(&self) -> i64 {
        self.num_attention_heads * self.attention_head_dim
    }
    pub fn out_channels(&self) -> i64 {
        self.out_channels.unwrap_or(self.in_channels)
    }
}

/// `AutoencoderKLWan` (diffusers `vae/config.json`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct WanVaeConfig {
    pub base_dim: i64,
    pub decoder_base_dim: Option<i64>,
    pub z_dim: i64,
    pub dim_mult: Vec<i64>,
    pub num_res_blocks: i64,
    pub attn_scales: Vec<f64>,
    pub temperal_downsample: Vec<bool>,
    pub latents_mean: Vec<f64>,
    pub latents_std: Vec<f64>,
    pub is_residual: bool,
    pub in_channels: i64,
    pub out_channels: i64,
    pub patch_size: Option<i64>,
    pub scale_factor_temporal: Option<i64>,
    pub scale_factor_spatial: Option<i64>,
}

impl Default for WanVaeConfig {
    fn default() -> Self {
        WanVaeConfig {
            base_dim: 96,
            decoder_base_dim: None,
            z_dim: 16,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attn_scales: vec![],
            temperal_downsample: vec![false, true, true],
            latents_mean: vec![
                -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632,
                -0.1922, -0.9497, 0.2503, -0.2921,
            ],
            latents_std: vec![
                2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382,
                1.1253, 2.8251, 1.9160,
            ],
            is_residual: false,
            in_channels: 3,
            out_channels: 3,
            patch_size: None,
            scale_factor_temporal: Some(4),
            scale_factor_spatial: Some(8),
        }
    }
}

impl WanVaeConfig {
    /// Refuses compression factors no video size can be checked against: `(field, why)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, v) in [("scale_factor_temporal", self.scale_temporal()), ("scale_factor_spatial", self.scale_spatial())] {
            if !(1..=MAX_SIZE).contains(&v) {
                return Err((field, format!("{v}: expected 1..={MAX_SIZE}")));
            }
        }
        Ok(())
    }


    /// Latent frames -> video frames: 1 + 4 (T - 1).
    pub fn scale_temporal(&self) -> i64 {
        self.scale_factor_temporal.unwrap_or(4)
    }
    pub fn scale_spatial(&self) -> i64 {
        self.scale_factor_spatial.unwrap_or(8)
    }
}

/// transformers `UMT5EncoderModel` (`text_encoder/config.json`): the shared T5 config.
pub type Umt5Config = crate::nn::t5_encoder::T5Config;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_ignored_missing_defaulted() {
        let c: WanTransformerConfig =
            serde_json::from_str(r#"{"_class_name": "WanTransformer3DModel", "num_layers": 30, "num_attention_heads": 12}"#)
                .unwrap();
        assert_eq!((c.num_layers, c.num_attention_heads, c.attention_head_dim, c.inner_dim()), (30, 12, 128, 1536));
        let v: WanVaeConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(v.latents_std.len(), 16);
    }
}
