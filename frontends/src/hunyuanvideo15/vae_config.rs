//! `AutoencoderKLHunyuanVideo15`'s `vae/config.json` as diffusers 0.42.1 writes it: missing fields
//! take `__init__`'s defaults (which are the 480p and 720p checkpoints' VAE), unknown ones are
//! kept so that [`HunyuanVideo15VaeConfig::check`] can refuse them by name.

use serde::Deserialize;
use std::collections::BTreeMap;

/// diffusers `AutoencoderKLHunyuanVideo15` config (`register_to_config` fields of `__init__`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct HunyuanVideo15VaeConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub latent_channels: i64,
    /// The encoder's widths; the decoder runs them reversed (1024, 1024, 512, 256, 128).
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: i64,
    pub spatial_compression_ratio: i64,
    pub temporal_compression_ratio: i64,
    pub downsample_match_channel: bool,
    pub upsample_match_channel: bool,
    /// The pipeline divides the latents by it before `vae.decode` (no shift).
    pub scaling_factor: f64,
    /// Every other key; [`check`](Self::check) refuses those without a leading `_`.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Default for HunyuanVideo15VaeConfig {
    fn default() -> Self {
        HunyuanVideo15VaeConfig {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 32,
            block_out_channels: vec![128, 256, 512, 1024, 1024],
            layers_per_block: 2,
            spatial_compression_ratio: 16,
            temporal_compression_ratio: 4,
            downsample_match_channel: true,
            upsample_match_channel: true,
            scaling_factor: 1.03682,
            other: BTreeMap::new(),
        }
    }
}

/// The decoder's up block `i` as `HunyuanVideo15Decoder3D.__init__` lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpBlockLayout {
    /// Channels into the block's first resnet.
    pub in_channels: i64,
    /// Channels of its resnets (`block_out_channels` reversed, `[i]`).
    pub out_channels: i64,
    /// The upsampler's output channels, `None` for a block without one.
    pub upsample_out: Option<i64>,
    /// Whether the upsampler also doubles time (all frames but the first).
    pub temporal: bool,
}

impl HunyuanVideo15VaeConfig {
    /// `block_out_channels` reversed: the decoder's widths from the mid block on.
    pub fn decoder_channels(&self) -> Vec<i64> {
        self.block_out_channels.iter().rev().copied().collect()
    }

    /// The decoder's up blocks: block `i` upsamples in space while `i < log2(spatial ratio)` and
    /// also in time while `i < log2(temporal ratio)`; each has `layers_per_block + 1` resnets.
    pub fn up_blocks(&self) -> Vec<UpBlockLayout> {
        let rev = self.decoder_channels();
        let (spatial, temporal) = (log2(self.spatial_compression_ratio), log2(self.temporal_compression_ratio));
        let mut input = rev.first().copied().unwrap_or(0);
        let mut blocks = Vec::with_capacity(rev.len());
        for (i, &out) in rev.iter().enumerate() {
            let upsamples = (i as i64) < spatial || (i as i64) < temporal;
            let upsample_out = upsamples.then(|| if self.upsample_match_channel { rev.get(i + 1).copied().unwrap_or(out) } else { out });
            blocks.push(UpBlockLayout { in_channels: input, out_channels: out, upsample_out, temporal: (i as i64) < temporal });
            input = upsample_out.unwrap_or(out);
        }
        blocks
    }

    /// Video frames decoded from `latent_frames`: the first latent frame gives one frame, every
    /// later one `temporal_compression_ratio` (1 + 4 (T - 1): 31 latent frames -> 121).
    pub fn decoded_frames_of(&self, latent_frames: i64) -> i64 {
        if latent_frames <= 0 {
            return 0;
        }
        1 + self.temporal_compression_ratio * (latent_frames - 1)
    }

    /// The configurations the decoder graph supports, or what is not, with the field named.
    pub fn check(&self) -> Result<(), String> {
        if let Some(key) = self.other.keys().find(|k| !k.starts_with('_')) {
            return Err(format!("unknown field `{key}` (AutoencoderKLHunyuanVideo15 in diffusers 0.42.1 has no such option)"));
        }
        if self.out_channels != 3 {
            return Err(format!("out_channels {} (the decode loop expects RGB, 3)", self.out_channels));
        }
        if !self.upsample_match_channel {
            return Err("upsample_match_channel false (no released checkpoint uses it) is not supported".into());
        }
        let rev = self.decoder_channels();
        let n = rev.len() as i64;
        let (s, t) = (self.spatial_compression_ratio, self.temporal_compression_ratio);
        if n < 1 || s < 1 || t < 1 || s.count_ones() != 1 || t.count_ones() != 1 || t > s || log2(s) > n - 1 {
            return Err(format!(
                "spatial_compression_ratio {s} and temporal_compression_ratio {t} must be powers of 2 with temporal <= spatial <= \
                 2^(len(block_out_channels) - 1) (block_out_channels {:?})",
                self.block_out_channels
            ));
        }
        if self.latent_channels < 1 || rev[0] % self.latent_channels != 0 {
            return Err(format!(
                "block_out_channels[-1] {} is not a multiple of latent_channels {} (conv_in's shortcut repeats the latent channels)",
                rev[0], self.latent_channels
            ));
        }
        if self.layers_per_block < 0 {
            return Err(format!("layers_per_block {} is negative", self.layers_per_block));
        }
        for (i, block) in self.up_blocks().iter().enumerate() {
            let Some(out) = block.upsample_out else { continue };
            let (inp, factor) = (block.out_channels, if block.temporal { 8 } else { 4 });
            // The conv's output and the shortcut's input fold into `factor` sub-pixels; the
            // shortcut then repeats each channel `factor * out / in` times (half for a first frame).
            let repeats = factor * out / inp.max(1);
            if inp % factor != 0 || (factor * out) % inp != 0 || (block.temporal && repeats % 2 != 0) {
                return Err(format!(
                    "block_out_channels {:?}: up block {i}'s upsampler from {inp} to {out} channels does not fold into {factor} sub-pixels",
                    self.block_out_channels
                ));
            }
        }
        Ok(())
    }
}

/// `log2` of a power of two (the callers check the power), as diffusers' `np.log2` comparisons use it.
fn log2(x: i64) -> i64 {
    if x < 1 {
        return 0;
    }
    63 - x.leading_zeros() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_480p_t2v_config() {
        // The shipped vae/config.json (diffusers' conversion writes __init__'s arguments).
        let text = r#"{"_class_name": "AutoencoderKLHunyuanVideo15", "_diffusers_version": "0.36.0.dev0",
            "block_out_channels": [128, 256, 512, 1024, 1024], "downsample_match_channel": true, "in_channels": 3,
            "latent_channels": 32, "layers_per_block": 2, "out_channels": 3, "scaling_factor": 1.03682,
            "spatial_compression_ratio": 16, "temporal_compression_ratio": 4, "upsample_match_channel": true}"#;
        let cfg: HunyuanVideo15VaeConfig = serde_json::from_str(text).unwrap();
        assert_eq!(cfg.other.len(), 2);
        assert_eq!(HunyuanVideo15VaeConfig { other: BTreeMap::new(), ..cfg.clone() }, HunyuanVideo15VaeConfig::default());
        cfg.check().unwrap();
        assert_eq!(cfg.decoded_frames_of(31), 121);
        let blocks = cfg.up_blocks();
        let layout: Vec<_> = blocks.iter().map(|b| (b.in_channels, b.out_channels, b.upsample_out, b.temporal)).collect();
        assert_eq!(
            layout,
            [
                (1024, 1024, Some(1024), true),
                (1024, 1024, Some(512), true),
                (512, 512, Some(256), false),
                (256, 256, Some(128), false),
                (128, 128, None, false)
            ]
        );
    }

    #[test]
    fn unsupported_fields_are_named() {
        let bad = |text: &str| serde_json::from_str::<HunyuanVideo15VaeConfig>(text).unwrap().check().unwrap_err();
        assert!(bad(r#"{"use_post_quant_conv": true}"#).contains("unknown field `use_post_quant_conv`"));
        assert!(bad(r#"{"upsample_match_channel": false}"#).contains("upsample_match_channel"));
        assert!(bad(r#"{"out_channels": 4}"#).contains("out_channels 4"));
        assert!(bad(r#"{"latent_channels": 48}"#).contains("latent_channels 48"));
        assert!(bad(r#"{"temporal_compression_ratio": 3}"#).contains("temporal_compression_ratio 3"));
        assert!(bad(r#"{"spatial_compression_ratio": 32}"#).contains("spatial_compression_ratio 32"));
        assert!(bad(r#"{"block_out_channels": [128, 256, 512, 1000, 1024]}"#).contains("up block 0's upsampler from 1024 to 1000 channels does not fold"));
    }
}
