//! CogVideoX configs as diffusers writes them (`transformer/config.json`): unknown fields are ignored,
//! missing ones take diffusers' defaults (`CogVideoXTransformer3DModel.__init__`, 0.42.1).

use serde::Deserialize;

/// `CogVideoXTransformer3DModel` (diffusers `transformer/config.json`). Released text-to-video
/// checkpoints: CogVideoX-2b (sincos positions), CogVideoX-5b (3D RoPE) and CogVideoX1.5-5B (3D RoPE,
/// `patch_size_t` 2); [`CogVideoXTransformerConfig::check`] says which others are refused.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct CogVideoXTransformerConfig {
    pub num_attention_heads: i64,
    pub attention_head_dim: i64,
    pub in_channels: i64,
    pub out_channels: i64,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub time_embed_dim: i64,
    /// The "ofs" embedding of CogVideoX1.5-5B-I2V (its pipeline passes ofs = 2.0).
    pub ofs_embed_dim: Option<i64>,
    pub text_embed_dim: i64,
    pub num_layers: i64,
    pub attention_bias: bool,
    pub sample_width: i64,
    pub sample_height: i64,
    pub sample_frames: i64,
    pub patch_size: i64,
    /// `None` for CogVideoX 1.0 (a Conv2d patch embedding per frame), 2 for CogVideoX 1.5.
    pub patch_size_t: Option<i64>,
    pub temporal_compression_ratio: i64,
    pub max_text_seq_length: i64,
    pub activation_fn: String,
    pub timestep_activation_fn: String,
    pub norm_elementwise_affine: bool,
    pub norm_eps: f64,
    pub spatial_interpolation_scale: f64,
    pub temporal_interpolation_scale: f64,
    pub use_rotary_positional_embeddings: bool,
    pub use_learned_positional_embeddings: bool,
    /// Bias of the Conv2d patch embedding (1.0 only: the 1.5 `nn.Linear` always has one).
    pub patch_bias: bool,
}

impl Default for CogVideoXTransformerConfig {
    fn default() -> Self {
        CogVideoXTransformerConfig {
            num_attention_heads: 30,
            attention_head_dim: 64,
            in_channels: 16,
            out_channels: 16,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            time_embed_dim: 512,
            ofs_embed_dim: None,
            text_embed_dim: 4096,
            num_layers: 30,
            attention_bias: true,
            sample_width: 90,
            sample_height: 60,
            sample_frames: 49,
            patch_size: 2,
            patch_size_t: None,
            temporal_compression_ratio: 4,
            max_text_seq_length: 226,
            activation_fn: "gelu-approximate".into(),
            timestep_activation_fn: "silu".into(),
            norm_elementwise_affine: true,
            norm_eps: 1e-5,
            spatial_interpolation_scale: 1.875,
            temporal_interpolation_scale: 1.0,
            use_rotary_positional_embeddings: false,
            use_learned_positional_embeddings: false,
            patch_bias: true,
        }
    }
}

/// A config vidlower cannot build; names the field and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("CogVideoX transformer config: `{field}`: {message}")]
pub struct UnsupportedConfig {
    pub field: &'static str,
    pub message: String,
}

impl CogVideoXTransformerConfig {
    pub fn inner_dim(&self) -> i64 {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Latent frames per token: `patch_size_t`, or 1 for CogVideoX 1.0.
    pub fn temporal_patch(&self) -> i64 {
        self.patch_size_t.unwrap_or(1)
    }

    /// Refuses what vidlower does not build: image-to-video and control variants (CogVideoX-5b-I2V and
    /// 1.5-5B-I2V concatenate the image latents: `in_channels` 32 for 16 out; the CogVideoX-Fun
    /// InP/Pose/Control models do the same with 33/32/48), learned positional embeddings (5b-I2V),
    /// other activations, and sizes the layers cannot split.
    pub fn check(&self) -> Result<(), UnsupportedConfig> {
        let fail = |field, message: String| Err(UnsupportedConfig { field, message });
        if self.in_channels != self.out_channels {
            return fail(
                "in_channels",
                format!(
                    "{} in for {} out: image-to-video (or Fun inpaint/control: conditioning latents concatenated \
                     to the noise) is not supported; only text-to-video",
                    self.in_channels, self.out_channels
                ),
            );
        }
        if self.use_learned_positional_embeddings {
            return fail(
                "use_learned_positional_embeddings",
                "learned positional embeddings (CogVideoX-5b-I2V) are not supported; image-to-video is not \
                 supported"
                    .into(),
            );
        }
        if self.activation_fn != "gelu-approximate" {
            return fail("activation_fn", format!("{:?}: only \"gelu-approximate\" is supported", self.activation_fn));
        }
        if self.timestep_activation_fn != "silu" {
            return fail(
                "timestep_activation_fn",
                format!("{:?}: only \"silu\" is supported", self.timestep_activation_fn),
            );
        }
        let positive = [
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("in_channels", self.in_channels),
            ("time_embed_dim", self.time_embed_dim),
            ("text_embed_dim", self.text_embed_dim),
            ("patch_size", self.patch_size),
            ("patch_size_t", self.temporal_patch()),
            ("temporal_compression_ratio", self.temporal_compression_ratio),
        ];
        for (field, v) in positive {
            if v <= 0 {
                return fail(field, format!("{v} must be positive"));
            }
        }
        if let Some(ofs) = self.ofs_embed_dim {
            if ofs != self.time_embed_dim {
                return fail(
                    "ofs_embed_dim",
                    format!(
                        "{ofs}: the ofs embedding is added to the time embedding, so it must equal time_embed_dim {}",
                        self.time_embed_dim
                    ),
                );
            }
        }
        if self.use_rotary_positional_embeddings {
            // get_3d_rotary_pos_embed: t/h/w get head_dim/4, 3*head_dim/8, 3*head_dim/8 channels, each
            // an even number (rotated pairs).
            if self.attention_head_dim % 16 != 0 {
                return fail(
                    "attention_head_dim",
                    format!("{}: 3D RoPE needs a multiple of 16", self.attention_head_dim),
                );
            }
        } else {
            // get_3d_sincos_pos_embed: inner/4 temporal and 3*inner/4 spatial channels, sin/cos halves.
            if self.inner_dim() % 16 != 0 {
                return fail(
                    "attention_head_dim",
                    format!("inner dim {}: sincos 3D positions need a multiple of 16", self.inner_dim()),
                );
            }
            if self.patch_size_t.is_some() {
                return fail(
                    "patch_size_t",
                    "sincos positional embeddings with a temporal patch (diffusers builds the table for \
                     unpatched frames, which does not fit) are not supported"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_ignores_unknown_fields() {
        let c: CogVideoXTransformerConfig = serde_json::from_str(
            r#"{"_class_name": "CogVideoXTransformer3DModel", "num_layers": 2, "patch_size_t": null}"#,
        )
        .unwrap();
        assert_eq!(c, CogVideoXTransformerConfig { num_layers: 2, ..Default::default() });
        assert_eq!(c.inner_dim(), 1920);
        c.check().unwrap();
    }

    #[test]
    fn image_to_video_and_other_variants_are_refused() {
        let i2v = CogVideoXTransformerConfig { in_channels: 32, ..Default::default() };
        let e = i2v.check().unwrap_err();
        assert_eq!(e.field, "in_channels");
        assert!(e.to_string().contains("image-to-video") && e.to_string().contains("not supported"), "{e}");
        let learned = CogVideoXTransformerConfig {
            use_rotary_positional_embeddings: true,
            use_learned_positional_embeddings: true,
            ..Default::default()
        };
        assert_eq!(learned.check().unwrap_err().field, "use_learned_positional_embeddings");
        let gelu = CogVideoXTransformerConfig { activation_fn: "gelu".into(), ..Default::default() };
        assert_eq!(gelu.check().unwrap_err().field, "activation_fn");
        let ofs = CogVideoXTransformerConfig { ofs_embed_dim: Some(256), ..Default::default() };
        assert_eq!(ofs.check().unwrap_err().field, "ofs_embed_dim");
        let t = CogVideoXTransformerConfig { patch_size_t: Some(2), ..Default::default() };
        assert_eq!(t.check().unwrap_err().field, "patch_size_t");
    }
}
