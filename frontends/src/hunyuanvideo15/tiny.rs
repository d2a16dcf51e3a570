//! The `hunyuanvideo1.5-tiny` preset: HunyuanVideo-1.5 480p text-to-video at toy sizes (the golden
//! tests' tiny configs: a 4-layer Qwen2.5-VL text model of width 32 with a small byte-level BPE
//! tokenizer and Qwen's chat template, a 2-layer ByT5 of width 24, a 2-block transformer of 2 heads
//! x 16, a VAE with 8 latent channels and the real 16x/4x compression), with deterministic random
//! weights, so `generate` runs with nothing downloaded. Defaults: 64x96, 9 frames, 4 steps; the
//! Qwen text length stays the pipeline's 1000 tokens (padding is masked, so it costs time only).

use crate::family::Defaults;
use crate::registry::Preset;

pub fn presets() -> Vec<Preset> {
    vec![Preset {
        name: "hunyuanvideo1.5-tiny",
        family: "hunyuanvideo15",
        description: "HunyuanVideo-1.5 480p t2v at toy size (Qwen2.5-VL width 32 + ByT5 width 24; 2 double-stream blocks, 2 heads x 16; VAE 8 latent channels), random weights",
        defaults: Defaults {
            height: 64,
            width: 96,
            frames: 9,
            steps: 4,
            guidance_scale: 6.0,
            fps: 24,
            flow_shift: Some(5.0),
            max_sequence_length: 1000,
            seed: 42,
        },
        files: &[
            ("model_index.json", include_bytes!("tiny/model_index.json")),
            ("text_encoder/config.json", include_bytes!("tiny/text_encoder.json")),
            super::tiny_tokenizer::FILES[0],
            super::tiny_tokenizer::FILES[1],
            ("text_encoder_2/config.json", include_bytes!("tiny/text_encoder_2.json")),
            ("transformer/config.json", include_bytes!("tiny/transformer.json")),
            ("vae/config.json", include_bytes!("tiny/vae.json")),
            ("scheduler/scheduler_config.json", include_bytes!("tiny/scheduler.json")),
            ("guider/guider_config.json", include_bytes!("tiny/guider.json")),
        ],
        weight_seed: 2026,
    }]
}
