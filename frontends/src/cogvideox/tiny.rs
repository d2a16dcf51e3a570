//! The `cogvideox-tiny` and `cogvideox1.5-tiny` presets: CogVideoX-5b's and CogVideoX1.5-5B's
//! architectures at toy sizes (the golden tests' tiny configs: 2 layers, 2 heads x 16, VAE
//! channels 8/16, T5 d_model 32; a SentencePiece `spiece.model`, as the released repositories
//! ship their tokenizer), with deterministic random weights, so `generate` runs with nothing
//! downloaded.

use crate::family::Defaults;
use crate::registry::Preset;

const COMMON: [(&str, &[u8]); 4] = [
    ("model_index.json", include_bytes!("tiny/model_index.json")),
    ("text_encoder/config.json", include_bytes!("tiny/text_encoder.json")),
    ("tokenizer/spiece.model", include_bytes!("tiny/spiece.model")),
    ("tokenizer/tokenizer_config.json", include_bytes!("tiny/tokenizer_config.json")),
];

const FILES_5B: [(&str, &[u8]); 7] = [
    COMMON[0],
    COMMON[1],
    COMMON[2],
    COMMON[3],
    ("transformer/config.json", include_bytes!("tiny/transformer_5b.json")),
    ("vae/config.json", include_bytes!("tiny/vae_5b.json")),
    ("scheduler/scheduler_config.json", include_bytes!("tiny/scheduler_5b.json")),
];

const FILES_15: [(&str, &[u8]); 7] = [
    COMMON[0],
    COMMON[1],
    COMMON[2],
    COMMON[3],
    ("transformer/config.json", include_bytes!("tiny/transformer_1.5.json")),
    ("vae/config.json", include_bytes!("tiny/vae_1.5.json")),
    ("scheduler/scheduler_config.json", include_bytes!("tiny/scheduler_1.5.json")),
];

fn defaults(fps: u32) -> Defaults {
    Defaults {
        height: 48,
        width: 64,
        frames: 9,
        steps: 4,
        guidance_scale: 6.0,
        fps,
        flow_shift: None,
        max_sequence_length: 226,
        seed: 42,
    }
}

pub fn presets() -> Vec<Preset> {
    vec![
        Preset {
            name: "cogvideox-tiny",
            family: "cogvideox",
            description: "CogVideoX-5b at toy size (3D RoPE, DPM scheduler; 2 layers, 2 heads x 16; T5 d_model 32), random weights",
            defaults: defaults(8),
            files: &FILES_5B,
            weight_seed: 2026,
        },
        Preset {
            name: "cogvideox1.5-tiny",
            family: "cogvideox",
            description: "CogVideoX1.5-5B at toy size (temporal patches of 2, padded latent frames), random weights",
            defaults: defaults(16),
            files: &FILES_15,
            weight_seed: 2026,
        },
    ]
}
