//! Flags of the stage commands (`stage1|2|3`, `generate`). Kebab-case, with the seeds'
//! snake_case spellings as aliases; unset values fall back to generation_config.json, then to
//! the model's defaults.

use crate::args::parse_dtype;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use vidlower_ir::DType;
use vidlower_runtime::stages::model::ModelSpec;
use vidlower_frontends::nn::vae_decoder::TileKnobs;

/// Which model: a diffusers directory or a built-in preset.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelArgs {
    /// A built-in model (see `vidlower models`), e.g. wan2.1-tiny.
    #[arg(long, conflicts_with = "model_dir")]
    pub model: Option<String>,
    /// A diffusers-format model directory (model_index.json + component folders).
    #[arg(long, alias = "model_dir", alias = "model_id", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
}

impl ModelArgs {
    /// The model named by the flags, or by `fallback_id` (from generation_config.json).
    pub fn spec(&self, fallback_id: Option<&str>) -> Result<ModelSpec> {
        Ok(match (&self.model, &self.model_dir, fallback_id) {
            (Some(name), _, _) => ModelSpec::Preset(name.clone()),
            (None, Some(dir), _) => ModelSpec::Dir(dir.clone()),
            (None, None, Some(id)) => ModelSpec::from_id(id),
            (None, None, None) => bail!("no model given: pass --model NAME (see `vidlower models`) or --model-dir DIR"),
        })
    }
}

/// `--lora`: LoRAs merged into the transformer's weights at upload (stage2, generate, compile,
/// exec, bench; the executable is the same with and without them).
#[derive(Args, Clone, Debug, Default)]
pub struct LoraArgs {
    /// A LoRA to merge into the transformer's weights, with its strength (default 1): a
    /// .safetensors file or a directory holding one (diffusers' pytorch_lora_weights.safetensors, or
    /// PEFT's adapter_model.safetensors with adapter_config.json). Keys as diffusers'
    /// load_lora_weights reads them: `transformer.<module>.lora_A/lora_B.weight` (also lora_down/up,
    /// lora.down/up, `.alpha`) and Wan's original `diffusion_model.blocks.N.self_attn.q...` names.
    /// Repeatable; merged as W + scale * (alpha / r) * B @ A in f32.
    #[arg(long = "lora", value_name = "FILE_OR_DIR[:SCALE]")]
    pub lora: Vec<vidlower_runtime::lora::LoraSpec>,
}

/// Stage 1 flags.
#[derive(Args, Clone, Debug)]
pub struct PromptArgs {
    /// The text prompt.
    #[arg(long, value_parser = Utf8Text)]
    pub prompt: String,
    /// What to steer away from (classifier-free guidance).
    #[arg(long, alias = "negative_prompt", default_value = "", value_parser = Utf8Text)]
    pub negative_prompt: String,
    /// Text tokens (the pipeline's max_sequence_length; default 512).
    #[arg(long, alias = "max_sequence_length")]
    pub max_sequence_length: Option<usize>,
}

/// A text flag's value as UTF-8, refused naming the flag and the first bad byte (clap's own
/// message names neither).
#[derive(Clone)]
struct Utf8Text;

impl clap::builder::TypedValueParser for Utf8Text {
    type Value = String;

    fn parse_ref(&self, _: &clap::Command, arg: Option<&clap::Arg>, value: &std::ffi::OsStr) -> Result<String, clap::Error> {
        let bytes = value.as_encoded_bytes();
        std::str::from_utf8(bytes).map(str::to_string).map_err(|e| {
            let flag = arg.and_then(|a| a.get_long()).map(|l| format!("--{l}")).unwrap_or_else(|| "the value".into());
            let at = e.valid_up_to();
            let message = format!("{flag}: not valid UTF-8 (byte {at} is 0x{:02x}); give the text in UTF-8\n", bytes[at]);
            clap::Error::raw(clap::error::ErrorKind::InvalidUtf8, message)
        })
    }
}

/// Stage 2 flags.
#[derive(Args, Clone, Debug, Default)]
pub struct DenoiseArgs {
    #[arg(long, alias = "num_inference_steps", alias = "steps")]
    pub num_inference_steps: Option<usize>,
    /// Video height in pixels (a multiple of 16).
    #[arg(long)]
    pub height: Option<i64>,
    /// Video width in pixels (a multiple of 16).
    #[arg(long)]
    pub width: Option<i64>,
    /// Number of frames (4n+1).
    #[arg(long, alias = "num_frames")]
    pub frames: Option<i64>,
    #[arg(long, alias = "guidance_scale")]
    pub guidance_scale: Option<f64>,
    /// CogVideoX's guidance schedule: the scale rises from 1 with a cosine over the steps (the
    /// pipeline's `use_dynamic_cfg`).
    #[arg(long, alias = "use_dynamic_cfg")]
    pub use_dynamic_cfg: bool,
    /// Scheduler class to run instead of the one `scheduler_config.json` names, with that
    /// config's values (diffusers' `Class.from_config(pipe.scheduler.config)`): e.g.
    /// CogVideoXDPMScheduler for the CogVideoX-5B checkpoints, as their authors run them.
    #[arg(long, value_name = "CLASS")]
    pub scheduler: Option<String>,
    /// Seed of the initial noise.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Flow-matching shift of the scheduler's sigmas (5.0 for 720p, 3.0 for 480p).
    #[arg(long, alias = "flow_shift")]
    pub flow_shift: Option<f64>,
    /// Initial noise from a safetensors file (key `latents`) instead of --seed.
    #[arg(long, alias = "latents_in", value_name = "FILE")]
    pub latents_in: Option<PathBuf>,
    /// Transformer calls to run (and time) before the loop.
    #[arg(long, alias = "warmup_steps", default_value_t = 0)]
    pub warmup_steps: usize,
}

/// Stage 3 flags.
#[derive(Args, Clone, Debug)]
pub struct DecodeArgs {
    /// Where to write the mp4 (default: <dir>/output_video.mp4).
    #[arg(long, alias = "output_video", value_name = "FILE")]
    pub output_video: Option<PathBuf>,
    #[arg(long)]
    pub fps: Option<u32>,
    /// Also write stage3_frames.safetensors (`frames`, float, [-1, 1]).
    #[arg(long, alias = "save_frames")]
    pub save_frames: bool,
    /// VAE compute dtype; f32 by default, as Wan's diffusers example loads the VAE.
    #[arg(long, alias = "vae_dtype", default_value = "f32", value_parser = parse_dtype)]
    pub vae_dtype: DType,
    #[command(flatten)]
    pub tiling: TileArgs,
}

/// VAE tiling (diffusers' `enable_tiling`), for stage 3 and for `exec`/`bench` of the
/// `vae_decoder`. Each family takes its own VAE's knobs and refuses the others', naming them.
#[derive(Args, Clone, Debug, Default)]
pub struct TileArgs {
    /// Decode in overlapping spatial tiles blended linearly, as diffusers' `enable_tiling`:
    /// less memory, slightly different frames where tiles overlap. Frames no larger than a tile
    /// are decoded whole.
    #[arg(long, alias = "enable_tiling")]
    pub vae_tiling: bool,
    /// Tile height in pixels (Wan: a multiple of the VAE's spatial compression 8, default 256;
    /// CogVideoX: default half the VAE's sample height, 240).
    #[arg(long, alias = "tile_sample_min_height", requires = "vae_tiling")]
    pub tile_sample_min_height: Option<i64>,
    /// Tile width in pixels (Wan default 256; CogVideoX half the sample width, 360).
    #[arg(long, alias = "tile_sample_min_width", requires = "vae_tiling")]
    pub tile_sample_min_width: Option<i64>,
    /// Wan: pixels between the tops of vertically adjacent tiles (at most the tile height; the
    /// rest is blended; default 192).
    #[arg(long, alias = "tile_sample_stride_height", requires = "vae_tiling")]
    pub tile_sample_stride_height: Option<i64>,
    /// Wan: pixels between the left edges of horizontally adjacent tiles (default 192).
    #[arg(long, alias = "tile_sample_stride_width", requires = "vae_tiling")]
    pub tile_sample_stride_width: Option<i64>,
    /// CogVideoX: fraction of a tile's height blended with the tile above (default 1/6).
    #[arg(long, alias = "tile_overlap_factor_height", requires = "vae_tiling")]
    pub tile_overlap_factor_height: Option<f64>,
    /// CogVideoX: fraction of a tile's width blended with the tile on the left (default 1/5).
    #[arg(long, alias = "tile_overlap_factor_width", requires = "vae_tiling")]
    pub tile_overlap_factor_width: Option<f64>,
    /// HunyuanVideo-1.5: fraction of a tile blended with the tiles above and on the left
    /// (default 0.25; tiles 256x256 pixels by default, a multiple of the spatial compression 16).
    #[arg(long, alias = "tile_overlap_factor", requires = "vae_tiling")]
    pub tile_overlap_factor: Option<f64>,
}

impl TileArgs {
    /// The tile knobs, when --vae-tiling is on (checked against the VAE by its `tile_geometry`).
    pub fn knobs(&self) -> Option<TileKnobs> {
        self.vae_tiling.then_some(TileKnobs {
            tile_sample_min_height: self.tile_sample_min_height,
            tile_sample_min_width: self.tile_sample_min_width,
            tile_sample_stride_height: self.tile_sample_stride_height,
            tile_sample_stride_width: self.tile_sample_stride_width,
            tile_overlap_factor_height: self.tile_overlap_factor_height,
            tile_overlap_factor_width: self.tile_overlap_factor_width,
            tile_overlap_factor: self.tile_overlap_factor,
        })
    }
}

/// Compute dtype of the stages.
#[derive(Args, Clone, Debug)]
pub struct DtypeArg {
    /// Compute dtype: bf16 (default) or f32.
    #[arg(long, default_value = "bf16", value_parser = parse_dtype)]
    pub dtype: DType,
}


/// Stage 2's checkpoints (`stage2`, `generate`).
#[derive(Args, Clone, Debug)]
pub struct CheckpointArgs {
    /// Write the denoising state to stage2_checkpoint.safetensors every N steps (atomically; 0:
    /// only when interrupted). SIGINT/SIGTERM always write one before stopping.
    #[arg(long, alias = "checkpoint_every", value_name = "N", default_value_t = 5)]
    pub checkpoint_every: usize,
    /// Continue an interrupted run: stage 2 from its checkpoint (refused, naming the setting, when
    /// it was written for other settings); `generate` also reuses stage files whose recorded
    /// settings match. Without a checkpoint, stage 2 starts at step 0.
    #[arg(long)]
    pub resume: bool,
}
