//! `HunyuanVideo15Transformer3DModel`'s config as diffusers writes it (`transformer/config.json`):
//! unknown fields are ignored, missing ones take diffusers' defaults (`__init__`, 0.42.1).

use serde::Deserialize;

/// `HunyuanVideo15Transformer3DModel` (diffusers `transformer/config.json`). The released
/// text-to-video checkpoints (HunyuanVideo-1.5 480p / 720p t2v) are what vidlower builds;
/// [`HunyuanVideo15TransformerConfig::check`] says which others are refused.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct HunyuanVideo15TransformerConfig {
    /// Latent channels + conditioning latent channels + 1 mask channel (65 = 32 + 32 + 1).
    pub in_channels: i64,
    /// `None` (null) means `in_channels`, as diffusers' `out_channels or in_channels`.
    pub out_channels: Option<i64>,
    pub num_attention_heads: i64,
    pub attention_head_dim: i64,
    pub num_layers: i64,
    pub num_refiner_layers: i64,
    pub mlp_ratio: f64,
    pub patch_size: i64,
    pub patch_size_t: i64,
    pub qk_norm: String,
    /// The MLLM (Qwen2.5-VL) hidden size.
    pub text_embed_dim: i64,
    /// The ByT5 encoder's d_model (glyph text).
    pub text_embed_2_dim: i64,
    /// The SigLIP image embedding size (image-to-video; unused by the t2v graph).
    pub image_embed_dim: i64,
    pub rope_theta: f64,
    pub rope_axes_dim: Vec<i64>,
    /// The pipeline's base resolution in pixels (640 for 480p, 960 for 720p); not used by the graph.
    pub target_size: i64,
    /// "t2v" or "i2v"; diffusers' default is "i2v".
    pub task_type: String,
    /// MeanFlow step-distilled checkpoints (a second timestep `timestep_r`).
    pub use_meanflow: bool,
    /// Not a diffusers field: the hidden width of `HunyuanVideo15ByT5TextProjection`, which diffusers
    /// fixes at 2048. The tiny golden checkpoint sets it smaller (a 2048 x 2048 f32 `linear_2` alone is
    /// 16 MB); real checkpoints leave it out.
    pub byt5_projection_hidden_size: i64,
}

impl Default for HunyuanVideo15TransformerConfig {
    fn default() -> Self {
        HunyuanVideo15TransformerConfig {
            in_channels: 65,
            out_channels: Some(32),
            num_attention_heads: 16,
            attention_head_dim: 128,
            num_layers: 54,
            num_refiner_layers: 2,
            mlp_ratio: 4.0,
            patch_size: 1,
            patch_size_t: 1,
            qk_norm: "rms_norm".into(),
            text_embed_dim: 3584,
            text_embed_2_dim: 1472,
            image_embed_dim: 1152,
            rope_theta: 256.0,
            rope_axes_dim: vec![16, 56, 56],
            target_size: 640,
            task_type: "i2v".into(),
            use_meanflow: false,
            byt5_projection_hidden_size: 2048,
        }
    }
}

/// A config vidlower cannot build; names the field and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("HunyuanVideo-1.5 transformer config: `{field}`: {message}")]
pub struct UnsupportedConfig {
    pub field: &'static str,
    pub message: String,
}

impl HunyuanVideo15TransformerConfig {
    pub fn inner_dim(&self) -> i64 {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn out_channels(&self) -> i64 {
        self.out_channels.filter(|&c| c != 0).unwrap_or(self.in_channels)
    }

    /// `FeedForward(dim, mult=mlp_ratio)`'s hidden width, `int(dim * mult)`.
    pub fn mlp_hidden_dim(&self) -> i64 {
        (self.inner_dim() as f64 * self.mlp_ratio) as i64
    }

    /// Refuses what vidlower does not build: image-to-video (`task_type` "i2v": the image tokens
    /// take part in the attention), MeanFlow step-distilled variants (`use_meanflow`: a second
    /// timestep input), other q/k norms, and sizes the layers cannot split.
    pub fn check(&self) -> Result<(), UnsupportedConfig> {
        let fail = |field, message: String| Err(UnsupportedConfig { field, message });
        if self.task_type != "t2v" {
            return fail(
                "task_type",
                format!(
                    "{:?}: only text-to-video (\"t2v\") is supported; image-to-video checkpoints attend to the image \
                     tokens",
                    self.task_type
                ),
            );
        }
        if self.use_meanflow {
            return fail(
                "use_meanflow",
                "true: MeanFlow step-distilled checkpoints (timestep_r, time_embed.timestep_embedder_r) are not \
                 supported"
                    .into(),
            );
        }
        if self.qk_norm != "rms_norm" {
            return fail("qk_norm", format!("{:?}: only \"rms_norm\" is supported", self.qk_norm));
        }
        let positive = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels()),
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("num_refiner_layers", self.num_refiner_layers),
            ("patch_size", self.patch_size),
            ("patch_size_t", self.patch_size_t),
            ("text_embed_dim", self.text_embed_dim),
            ("text_embed_2_dim", self.text_embed_2_dim),
            ("byt5_projection_hidden_size", self.byt5_projection_hidden_size),
        ];
        for (field, v) in positive {
            if v <= 0 {
                return fail(field, format!("{v} must be positive"));
            }
        }
        if self.num_layers < 0 {
            return fail("num_layers", format!("{} must not be negative", self.num_layers));
        }
        if self.mlp_hidden_dim() <= 0 {
            return fail("mlp_ratio", format!("{} gives no feed-forward width", self.mlp_ratio));
        }
        let axes = &self.rope_axes_dim;
        if axes.len() != 3 || axes.iter().any(|&d| d <= 0 || d % 2 != 0) {
            return fail("rope_axes_dim", format!("{axes:?}: expected 3 positive even sizes (frames, rows, columns)"));
        }
        if axes.iter().sum::<i64>() != self.attention_head_dim {
            return fail(
                "rope_axes_dim",
                format!("{axes:?} sums to {}, not attention_head_dim {}", axes.iter().sum::<i64>(), self.attention_head_dim),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v `transformer/config.json`.
    const REAL_480P_T2V: &str = r#"{
        "_class_name": "HunyuanVideo15Transformer3DModel", "_diffusers_version": "0.36.0.dev0",
        "attention_head_dim": 128, "image_embed_dim": 1152, "in_channels": 65, "mlp_ratio": 4.0,
        "num_attention_heads": 16, "num_layers": 54, "num_refiner_layers": 2, "out_channels": 32,
        "patch_size": 1, "patch_size_t": 1, "qk_norm": "rms_norm", "rope_axes_dim": [16, 56, 56],
        "rope_theta": 256.0, "target_size": 640, "task_type": "t2v", "text_embed_2_dim": 1472,
        "text_embed_dim": 3584, "use_meanflow": false
    }"#;

    #[test]
    fn the_real_480p_t2v_config_parses_and_passes() {
        let c: HunyuanVideo15TransformerConfig = serde_json::from_str(REAL_480P_T2V).unwrap();
        assert_eq!(c, HunyuanVideo15TransformerConfig { task_type: "t2v".into(), ..Default::default() });
        c.check().unwrap();
        assert_eq!((c.inner_dim(), c.mlp_hidden_dim(), c.out_channels()), (2048, 8192, 32));
    }

    #[test]
    fn unsupported_variants_name_the_field() {
        let t2v = HunyuanVideo15TransformerConfig { task_type: "t2v".into(), ..Default::default() };
        let cases = [
            (HunyuanVideo15TransformerConfig::default(), "task_type"),
            (HunyuanVideo15TransformerConfig { use_meanflow: true, ..t2v.clone() }, "use_meanflow"),
            (HunyuanVideo15TransformerConfig { qk_norm: "layer_norm".into(), ..t2v.clone() }, "qk_norm"),
            (HunyuanVideo15TransformerConfig { rope_axes_dim: vec![16, 56, 58], ..t2v.clone() }, "rope_axes_dim"),
            (HunyuanVideo15TransformerConfig { rope_axes_dim: vec![64, 64], ..t2v.clone() }, "rope_axes_dim"),
            (HunyuanVideo15TransformerConfig { patch_size: 0, ..t2v.clone() }, "patch_size"),
        ];
        for (cfg, field) in cases {
            let e = cfg.check().unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
        }
        let null_out: HunyuanVideo15TransformerConfig = serde_json::from_str(r#"{"out_channels": null}"#).unwrap();
        assert_eq!(null_out.out_channels(), 65);
    }
}
