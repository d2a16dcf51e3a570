//! The `wan2.1-tiny` preset: Wan 2.1's architecture at toy sizes (the same configs and tokenizer
//! as the golden tests' tiny model), with deterministic random weights, so `generate` runs on a
//! fresh machine with nothing downloaded.

use crate::family::Defaults;
use crate::registry::Preset;

pub const NAME: &str = "wan2.1-tiny";

pub fn preset() -> Preset {
    Preset {
        name: NAME,
        family: "wan",
        description: "Wan 2.1 at toy size (2 layers, 2 heads x 12; VAE base dim 8; UMT5 d_model 32), random weights: a noise video, fast",
        defaults: Defaults {
            height: 64,
            width: 96,
            frames: 9,
            steps: 4,
            guidance_scale: 5.0,
            fps: 16,
            flow_shift: Some(3.0),
            max_sequence_length: 512,
            seed: 42,
        },
        files: &[
            ("model_index.json", include_bytes!("tiny/model_index.json")),
            ("transformer/config.json", include_bytes!("tiny/transformer.json")),
            ("vae/config.json", include_bytes!("tiny/vae.json")),
            ("text_encoder/config.json", include_bytes!("tiny/text_encoder.json")),
            ("scheduler/scheduler_config.json", include_bytes!("tiny/scheduler.json")),
            ("tokenizer/tokenizer_config.json", include_bytes!("tiny/tokenizer_config.json")),
            ("tokenizer/tokenizer.json", include_bytes!("tiny/tokenizer.json")),
        ],
        weight_seed: 2025,
    }
}
