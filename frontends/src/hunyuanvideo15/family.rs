//! HunyuanVideo-1.5 behind the family seam: `HunyuanVideo15Pipeline` (text-to-video, 480p and
//! 720p checkpoints). Stage 1 runs two encoders (Qwen2.5-VL's text model on the chat-templated
//! prompt, `hidden_states[-3]`, the first 108 positions cropped; ByT5 on the quoted glyph text,
//! zeros without one); stage 2 feeds the transformer `[latents, zero condition latents, zero
//! mask]` with float timesteps in the transformer's dtype and the guider's classifier-free
//! guidance (cond and uncond batched as [cond, uncond]); stage 3 divides by the VAE's
//! `scaling_factor` before `vae.decode`.

use super::guider::GuiderConfig;
use super::prompt::{byt5_tokens, mllm_tokens, MllmLengths, HIDDEN_STATES_INDEX, PROMPT_TEMPLATE_ENCODE_START_IDX, TOKENIZER_2_MAX_LENGTH};
use super::transformer::{transformer, TransformerShape};
use super::transformer_config::HunyuanVideo15TransformerConfig;
use super::vae_config::HunyuanVideo15VaeConfig;
use crate::config::read_json;
use crate::family::{
    embedding, split_batch, take_output, vae_step_graphs, Component, ComponentRunner, Defaults, DenoiseKnobs, Embeddings, Family,
    FamilyError, GuidanceAt, Model, NamedGraph, PromptRequest, RuleTable, Sizes, VideoSize,
};
use crate::nn::qwen2_5_vl_text::{text_encoder_with as qwen_text_encoder, Qwen2_5VlTextConfig, Qwen2_5VlTextOptions};
use crate::nn::qwen2_tokenizer::Qwen2Tokenizer;
use crate::nn::t5_encoder::{t5_encoder, T5Config, T5EncoderOptions};
use crate::nn::vae_decoder::VaeDecoderGraphs;
use crate::registry::Preset;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vidlower_ir::{DType, HostTensor};

/// The HunyuanVideo-1.5 family.
pub struct HunyuanVideo15Family;

pub static FAMILY: HunyuanVideo15Family = HunyuanVideo15Family;

/// The pipeline's factors when no VAE config is open (`vae_scale_factor_*`'s fallbacks).
const SPATIAL: i64 = 16;
const TEMPORAL: i64 = 4;
/// The stage-1 tensors, diffusers' names.
const EMBEDDINGS: [&str; 8] = [
    "prompt_embeds",
    "prompt_embeds_mask",
    "prompt_embeds_2",
    "prompt_embeds_mask_2",
    "negative_prompt_embeds",
    "negative_prompt_embeds_mask",
    "negative_prompt_embeds_2",
    "negative_prompt_embeds_mask_2",
];

impl Family for HunyuanVideo15Family {
    fn name(&self) -> &'static str {
        "hunyuanvideo15"
    }

    fn pipeline_classes(&self) -> &'static [&'static str] {
        &["HunyuanVideo15Pipeline"]
    }

    fn refused_classes(&self) -> &'static [(&'static str, &'static str)] {
        &[(
            "HunyuanVideo15ImageToVideoPipeline",
            "HunyuanVideo-1.5 image-to-video is not supported yet; only text-to-video (HunyuanVideo15Pipeline)",
        )]
    }

    fn presets(&self) -> Vec<Preset> {
        super::tiny::presets()
    }

    fn open(&self, dir: &Path, components: &[Component]) -> Result<Box<dyn Model>, FamilyError> {
        let wants = |c: Component| components.contains(&c);
        let config = |folder: &str| dir.join(folder).join("config.json");
        // Stage 1 runs both encoders, so asking for either opens both.
        let text = wants(Component::TextEncoder) || wants(Component::TextEncoder2);
        let text_encoder = if text {
            let tokenizer = dir.join("tokenizer/tokenizer.json");
            if !tokenizer.is_file() {
                return Err(FamilyError::Unsupported(format!("{}: missing (Qwen2 tokenizer expected)", tokenizer.display())));
            }
            Some(read_json::<Qwen2_5VlTextConfig>(&config("text_encoder"))?)
        } else {
            None
        };
        let text_encoder_2 = if text { Some(read_json::<T5Config>(&config("text_encoder_2"))?) } else { None };
        let transformer = if wants(Component::Transformer) {
            let t: HunyuanVideo15TransformerConfig = read_json(&config("transformer"))?;
            t.check().map_err(|e| FamilyError::Unsupported(format!("{}: {e}", config("transformer").display())))?;
            Some(t)
        } else {
            None
        };
        let vae = if wants(Component::VaeDecoder) {
            let v: HunyuanVideo15VaeConfig = read_json(&config("vae"))?;
            v.check().map_err(|e| FamilyError::Unsupported(format!("{}: {e}", config("vae").display())))?;
            Some(v)
        } else {
            None
        };
        // The guider and the scheduler's shift give the defaults; a directory without them (a
        // lone transformer/ for `exec`) gets `ClassifierFreeGuidance`'s.
        let guider_path = dir.join("guider/guider_config.json");
        let guider = if guider_path.is_file() { GuiderConfig::read(&guider_path)? } else { GuiderConfig::default() };
        let scheduler_shift = read_json::<serde_json::Value>(&dir.join("scheduler/scheduler_config.json"))
            .ok()
            .and_then(|v| v.get("shift").and_then(|s| s.as_f64()));
        Ok(Box::new(HunyuanVideo15Model { dir: dir.to_path_buf(), text_encoder, text_encoder_2, transformer, vae, guider, scheduler_shift }))
    }
}

/// An opened HunyuanVideo-1.5 directory; configs of the components it was opened for.
pub struct HunyuanVideo15Model {
    dir: PathBuf,
    text_encoder: Option<Qwen2_5VlTextConfig>,
    text_encoder_2: Option<T5Config>,
    transformer: Option<HunyuanVideo15TransformerConfig>,
    vae: Option<HunyuanVideo15VaeConfig>,
    guider: GuiderConfig,
    scheduler_shift: Option<f64>,
}

impl HunyuanVideo15Model {
    fn cfg<'a, T>(&self, c: &'a Option<T>, component: Component) -> Result<&'a T, FamilyError> {
        crate::family::opened(c, &self.dir, component)
    }

    pub(super) fn transformer_config(&self) -> Result<&HunyuanVideo15TransformerConfig, FamilyError> {
        self.cfg(&self.transformer, Component::Transformer)
    }

    pub(super) fn text_encoder_config(&self) -> Result<&Qwen2_5VlTextConfig, FamilyError> {
        self.cfg(&self.text_encoder, Component::TextEncoder)
    }

    pub(super) fn text_encoder_2_config(&self) -> Result<&T5Config, FamilyError> {
        self.cfg(&self.text_encoder_2, Component::TextEncoder2)
    }

    pub(super) fn vae_config(&self) -> Result<&HunyuanVideo15VaeConfig, FamilyError> {
        self.cfg(&self.vae, Component::VaeDecoder)
    }

    fn spatial(&self) -> i64 {
        self.vae.as_ref().map_or(SPATIAL, |v| v.spatial_compression_ratio)
    }

    fn temporal(&self) -> i64 {
        self.vae.as_ref().map_or(TEMPORAL, |v| v.temporal_compression_ratio)
    }

    fn latent_channels(&self) -> i64 {
        match (&self.vae, &self.transformer) {
            (Some(v), _) => v.latent_channels,
            (None, Some(t)) => t.out_channels(),
            _ => 32,
        }
    }

    /// The ByT5 embeddings of one prompt: the encoder's output for its glyph text, or zeros (and a
    /// zero mask) without quoted text, as `_get_byt5_prompt_embeds` does.
    fn glyph_embeddings(
        &self,
        prompts: [&str; 2],
        dtype: DType,
        runner: &mut dyn ComponentRunner,
    ) -> Result<[(HostTensor, HostTensor); 2], FamilyError> {
        let c = Component::TextEncoder2;
        let cfg = self.text_encoder_2_config()?;
        let l = TOKENIZER_2_MAX_LENGTH;
        let tokens = [byt5_tokens(prompts[0], l).map_err(invalid)?, byt5_tokens(prompts[1], l).map_err(invalid)?];
        let zeros = || -> Result<(HostTensor, HostTensor), FamilyError> {
            Ok((
                HostTensor::from_f32(vec![1, l as i64, cfg.d_model], &vec![0.0; l * cfg.d_model as usize]).map_err(invalid)?.convert(dtype),
                HostTensor::from_f32(vec![1, l as i64], &vec![0.0; l]).map_err(invalid)?,
            ))
        };
        if tokens.iter().all(Option::is_none) {
            return Ok([zeros()?, zeros()?]);
        }
        // One batch of 2; a prompt without glyph text runs on `</s>` alone and is replaced by zeros.
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for t in &tokens {
            let (i, m) = t.clone().unwrap_or_else(|| {
                let mut i = vec![0i64; l];
                let mut m = vec![0i64; l];
                (i[0], m[0]) = (1, 1);
                (i, m)
            });
            ids.extend(i);
            mask.extend(m);
        }
        let dims = [2, l as i64];
        let mask_f: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
        let inputs = HashMap::from([
            ("input_ids".to_string(), HostTensor::from_slice(dims, &ids).map_err(invalid)?),
            ("attention_mask".to_string(), HostTensor::from_slice(dims, &mask).map_err(invalid)?),
        ]);
        let sizes = Sizes { batch: 2, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l as i64, text_len_2: l as i64 };
        let graph = self.graphs(c, &sizes, dtype)?.remove(0).graph;
        let hidden = take_output(runner.run(c, graph, &inputs)?, "last_hidden_state", c)?;
        let (h0, h1) = split_batch(&hidden);
        let (m0, m1) = split_batch(&HostTensor::from_f32(dims.to_vec(), &mask_f).map_err(invalid)?);
        let keep = |t: &Option<(Vec<i64>, Vec<i64>)>, h: HostTensor, m: HostTensor| if t.is_some() { Ok((h, m)) } else { zeros() };
        Ok([keep(&tokens[0], h0, m0)?, keep(&tokens[1], h1, m1)?])
    }
}

/// An error of building a host tensor, as a family error.
fn invalid(e: impl std::fmt::Display) -> FamilyError {
    FamilyError::Invalid(e.to_string())
}

/// The pipeline's default size: `calculate_default_height_width(9, 16, target_size)` of
/// `HunyuanVideo15ImageProcessor`, the bucket of `generate_crop_size_list(target_size, 16)`
/// closest to 16:9 (480x848 for 640, 720x1280 for 960).
pub fn default_height_width(target_size: i64, patch: i64) -> (i64, i64) {
    let num_patches = ((target_size as f64 / patch as f64).powi(2)).round() as i64;
    let (mut wp, mut hp) = (num_patches, 1);
    let mut buckets = Vec::new();
    while wp > 0 {
        if (wp.max(hp) as f64) / (wp.min(hp) as f64) <= 4.0 {
            buckets.push((wp * patch, hp * patch));
        }
        if (hp + 1) * wp <= num_patches {
            hp += 1;
        } else {
            wp -= 1;
        }
    }
    // `get_closest_ratio(height=9, width=16)`: ratio < 1, so among buckets whose rounded ratio is
    // >= 9/16, the closest; the first on ties (`min` keeps the first).
    let aspect = 9.0 / 16.0;
    let round5 = |x: f64| (x * 1e5).round() / 1e5;
    let mut best: Option<(f64, (i64, i64))> = None;
    for &(h, w) in &buckets {
        let diff = round5(h as f64 / w as f64) - aspect;
        if diff >= 0.0 && best.is_none_or(|(d, _)| diff.abs() < d) {
            best = Some((diff.abs(), (h, w)));
        }
    }
    best.map_or((target_size, target_size), |(_, hw)| hw)
}

impl Model for HunyuanVideo15Model {
    fn family(&self) -> &'static dyn Family {
        &FAMILY
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pipeline's own: the default size of the transformer's `target_size` (480p: 480x848,
    /// 720p: 720x1280), 121 frames at 24 fps, 50 steps, the guider's scale, the scheduler's shift,
    /// 1000 Qwen tokens.
    fn defaults(&self) -> Defaults {
        let target = self.transformer.as_ref().map_or(640, |t| t.target_size);
        let (height, width) = default_height_width(target, SPATIAL);
        Defaults {
            height,
            width,
            frames: 121,
            steps: 50,
            guidance_scale: self.guider.guidance_scale,
            fps: 24,
            flow_shift: self.scheduler_shift,
            max_sequence_length: 1000,
            seed: 42,
        }
    }

    fn components(&self) -> Vec<Component> {
        vec![Component::TextEncoder, Component::TextEncoder2, Component::Transformer, Component::VaeDecoder]
    }

    /// Frames 4n+1 (the causal VAE) and sizes multiples of 16 (the VAE's 16x and 1x1 patches).
    fn check_video(&self, v: &VideoSize) -> Result<(), FamilyError> {
        let t = self.temporal();
        if v.frames < 1 || (v.frames - 1) % t != 0 {
            return Err(FamilyError::Invalid(format!("--frames {}: must be {t}n+1 (HunyuanVideo-1.5: 121)", v.frames)));
        }
        let multiple = self.spatial() * self.transformer.as_ref().map_or(1, |t| t.patch_size);
        for (flag, x) in [("--height", v.height), ("--width", v.width)] {
            if x < multiple || x % multiple != 0 {
                return Err(FamilyError::Invalid(format!("{flag} {x}: must be a positive multiple of {multiple}")));
            }
        }
        Ok(())
    }

    /// `prepare_latents`: [1, C, (F - 1) / 4 + 1, H / 16, W / 16].
    fn latent_shape(&self, v: &VideoSize) -> Vec<i64> {
        let s = self.spatial();
        vec![1, self.latent_channels(), (v.frames - 1) / self.temporal() + 1, v.height / s, v.width / s]
    }

    /// The Qwen encoder runs `text_len` + the 108 template tokens the pipeline crops; ByT5 its 256.
    fn sizes(&self, c: Component, v: &VideoSize, batch: i64, text_len: i64) -> Sizes {
        let l = self.latent_shape(v);
        let text_len = match c {
            Component::TextEncoder => text_len + PROMPT_TEMPLATE_ENCODE_START_IDX as i64,
            Component::TextEncoder2 => TOKENIZER_2_MAX_LENGTH as i64,
            _ => text_len,
        };
        Sizes { batch, latent_frames: l[2], latent_height: l[3], latent_width: l[4], text_len, text_len_2: TOKENIZER_2_MAX_LENGTH as i64 }
    }

    fn describe_sizes(&self, c: Component, s: &Sizes) -> String {
        match c {
            Component::TextEncoder | Component::TextEncoder2 => format!("batch {}, {} tokens", s.batch, s.text_len),
            Component::Transformer => {
                let p = self.transformer.as_ref().map_or(1, |t| t.patch_size);
                let tokens = s.latent_frames * (s.latent_height / p) * (s.latent_width / p);
                format!(
                    "batch {}, latents {}x{}x{} ({tokens} video + {} Qwen + {} ByT5 text tokens, joint attention)",
                    s.batch, s.latent_frames, s.latent_height, s.latent_width, s.text_len, s.text_len_2
                )
            }
            Component::VaeDecoder => format!("batch {}, latents {}x{}x{}", s.batch, s.latent_frames, s.latent_height, s.latent_width),
        }
    }

    fn graphs(&self, c: Component, s: &Sizes, dtype: DType) -> Result<Vec<NamedGraph>, FamilyError> {
        let err = FamilyError::graph(c);
        let one = |label: &str, graph| vec![NamedGraph { label: label.to_string(), graph }];
        Ok(match c {
            Component::TextEncoder => {
                // `hidden_states[-3]`, `[:, crop_start:]` taken in the graph.
                let cfg = self.text_encoder_config()?;
                let opts = Qwen2_5VlTextOptions {
                    crop_start: PROMPT_TEMPLATE_ENCODE_START_IDX as i64,
                    ..Qwen2_5VlTextOptions::new(HIDDEN_STATES_INDEX, dtype)
                };
                one("text_encoder", qwen_text_encoder(cfg, s.batch, s.text_len, &opts).map_err(err)?)
            }
            Component::TextEncoder2 => {
                let cfg = self.text_encoder_2_config()?;
                // `_get_byt5_prompt_embeds` passes the attention mask.
                let opts = T5EncoderOptions { attention_mask: true, ..T5EncoderOptions::new(cfg, dtype) };
                one("text_encoder_2", t5_encoder(cfg, s.batch, s.text_len, &opts).map_err(err)?)
            }
            Component::Transformer => {
                let shape = TransformerShape {
                    batch: s.batch,
                    frames: s.latent_frames,
                    height: s.latent_height,
                    width: s.latent_width,
                    text_len: s.text_len,
                    text_len_2: s.text_len_2,
                };
                one("transformer", transformer(self.transformer_config()?, &shape, dtype).map_err(err)?)
            }
            Component::VaeDecoder => vae_step_graphs(self.vae_config()?, s, dtype)?,
        })
    }

    fn sharding_rules(&self, c: Component) -> Option<RuleTable> {
        match c {
            Component::Transformer => Some(super::sharding::TRANSFORMER_RULES),
            Component::TextEncoder => Some(super::sharding::QWEN_RULES),
            Component::TextEncoder2 => Some(super::sharding::BYT5_RULES),
            Component::VaeDecoder => None,
        }
    }

    fn weight_aliases(&self, c: Component, name: &str) -> &'static [&'static str] {
        match c {
            Component::TextEncoder2 => crate::nn::t5_encoder::weight_aliases(name),
            _ => &[],
        }
    }

    fn embedding_names(&self) -> Vec<&'static str> {
        EMBEDDINGS.to_vec()
    }

    /// `encode_prompt` for the prompt and the negative prompt: Qwen on both as one batch of 2
    /// (the chat template, `max_sequence_length` + 108 tokens, `hidden_states[-3]`, the first 108
    /// positions of embeddings and mask cropped), ByT5 on their glyph texts. Masks as float 0/1.
    fn encode_prompts(&self, r: &PromptRequest, runner: &mut dyn ComponentRunner) -> Result<Embeddings, FamilyError> {
        let c = Component::TextEncoder;
        let run_err = |e: &dyn std::fmt::Display| FamilyError::Run { component: c.name(), message: e.to_string() };
        let tokenizer = Qwen2Tokenizer::from_dir(&self.dir.join("tokenizer")).map_err(|e| run_err(&e))?;
        let l = r.max_sequence_length;
        let crop = PROMPT_TEMPLATE_ENCODE_START_IDX;
        let lengths = MllmLengths { max_length: l, crop_start: crop };
        let full = lengths.tokenized();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for p in [r.prompt, r.negative_prompt] {
            let (i, m) = mllm_tokens(&tokenizer, p, lengths).map_err(|e| run_err(&e))?;
            ids.extend(i);
            mask.extend(m);
        }
        let dims = [2, full as i64];
        let mask_f: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
        let inputs = HashMap::from([
            ("input_ids".to_string(), HostTensor::from_slice(dims, &ids).map_err(invalid)?),
            ("attention_mask".to_string(), HostTensor::from_slice(dims, &mask).map_err(invalid)?),
        ]);
        let sizes = Sizes { batch: 2, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: full as i64, text_len_2: 0 };
        let graph = self.graphs(c, &sizes, r.dtype)?.remove(0).graph;
        let hidden = take_output(runner.run(c, graph, &inputs)?, "hidden_states", c)?;
        let d = hidden.dims[2];
        let rows = split_batch(&hidden);
        let mut out = BTreeMap::new();
        let glyphs = self.glyph_embeddings([r.prompt, r.negative_prompt], r.dtype, runner)?;
        for (row, ((prefix, glyph), embeds)) in ["", "negative_"].into_iter().zip(glyphs).zip([rows.0, rows.1]).enumerate() {
            // `prompt_attention_mask[:, crop_start:]` (the graph cropped the embeddings).
            let m = &mask_f[row * full + crop..(row + 1) * full];
            out.insert(format!("{prefix}prompt_embeds"), embeds);
            out.insert(format!("{prefix}prompt_embeds_mask"), HostTensor::from_f32(vec![1, l as i64], m).map_err(invalid)?);
            out.insert(format!("{prefix}prompt_embeds_2"), glyph.0);
            out.insert(format!("{prefix}prompt_embeds_mask_2"), glyph.1);
        }
        debug_assert_eq!(out["prompt_embeds"].dims, vec![1, l as i64, d]);
        Ok(out)
    }

    fn check_denoise(&self, knobs: &DenoiseKnobs) -> Result<(), FamilyError> {
        if knobs.dynamic_cfg {
            return Err(FamilyError::Invalid("--use-dynamic-cfg is CogVideoX's guidance schedule; HunyuanVideo15Pipeline has none".into()));
        }
        Ok(())
    }

    /// The text lengths of the eight stage-1 tensors, each checked against the transformer's
    /// embedding dims and against its pair.
    fn transformer_sizes(&self, latent_shape: &[i64], e: &Embeddings, batch: i64) -> Result<Sizes, FamilyError> {
        let t = self.transformer_config()?;
        let len = |name: &str, dim: Option<i64>, like: &str| -> Result<i64, FamilyError> {
            let x = embedding(e, name)?;
            let want_rank = if dim.is_some() { 3 } else { 2 };
            let l = embedding(e, like)?.dims.get(1).copied().unwrap_or(-1);
            let ok = x.dims.len() == want_rank && x.dims[0] == 1 && x.dims[1] == l && dim.is_none_or(|d| x.dims[2] == d);
            if !ok {
                let want = match dim {
                    Some(d) => format!("[1, L, {d}]"),
                    None => "[1, L]".to_string(),
                };
                return Err(FamilyError::Invalid(format!("{name}: expected {want} (L as {like}), got {:?}", x.dims)));
            }
            Ok(l)
        };
        let mut text_len = 0;
        let mut text_len_2 = 0;
        for prefix in ["", "negative_"] {
            text_len = len(&format!("{prefix}prompt_embeds"), Some(t.text_embed_dim), "prompt_embeds")?;
            len(&format!("{prefix}prompt_embeds_mask"), None, "prompt_embeds")?;
            text_len_2 = len(&format!("{prefix}prompt_embeds_2"), Some(t.text_embed_2_dim), "prompt_embeds_2")?;
            len(&format!("{prefix}prompt_embeds_mask_2"), None, "prompt_embeds_2")?;
        }
        Ok(Sizes {
            batch,
            latent_frames: latent_shape[2],
            latent_height: latent_shape[3],
            latent_width: latent_shape[4],
            text_len,
            text_len_2,
        })
    }

    /// The guider's batches in one: [cond, uncond] (`guider_inputs`' tuple order).
    fn conditioning_inputs(&self, e: &Embeddings, cfg: bool, dtype: DType) -> Result<HashMap<String, HostTensor>, FamilyError> {
        let mut inputs = HashMap::new();
        for (input, name) in [
            ("encoder_hidden_states", "prompt_embeds"),
            ("encoder_attention_mask", "prompt_embeds_mask"),
            ("encoder_hidden_states_2", "prompt_embeds_2"),
            ("encoder_attention_mask_2", "prompt_embeds_mask_2"),
        ] {
            let p = embedding(e, name)?;
            let t = if cfg { crate::family::concat_batch(&[p, embedding(e, &format!("negative_{name}"))?]) } else { p.clone() };
            // Masks stay f32 0/1: the graph compares them, whatever the activations' dtype.
            let t = if input.contains("mask") { t.convert(DType::F32) } else { t.convert(dtype) };
            inputs.insert(input.to_string(), t);
        }
        Ok(inputs)
    }

    /// `torch.cat([latents, cond_latents_concat, mask_concat], dim=1)` (both zero for
    /// text-to-video), repeated for the CFG pair; `t.expand(B).to(latents.dtype)`: the float
    /// timestep rounded to the transformer's dtype.
    fn step_inputs(&self, latents: &HostTensor, t: f64, cfg: bool, dtype: DType) -> Result<HashMap<String, HostTensor>, FamilyError> {
        let one = super::exec_inputs::model_input(latents).map_err(FamilyError::Invalid)?;
        let hidden = if cfg { crate::family::concat_batch(&[&one, &one]) } else { one };
        let b = hidden.dims[0];
        let t = HostTensor::from_f32(vec![1], &[t as f32]).map_err(invalid)?.convert(dtype).to_f32_vec()[0];
        let timestep = HostTensor::from_f32(vec![b], &vec![t; b as usize]).map_err(invalid)?;
        Ok(HashMap::from([("hidden_states".to_string(), hidden.convert(dtype)), ("timestep".to_string(), timestep)]))
    }

    fn guide(&self, sample: &[f32], cfg: bool, g: &GuidanceAt) -> Vec<f32> {
        if !cfg {
            return sample.to_vec();
        }
        let n = sample.len() / 2;
        self.guider.guide(&sample[..n], &sample[n..], g.scale, g.step, g.steps)
    }

    fn vae_decoder(&self) -> Result<Box<dyn VaeDecoderGraphs>, FamilyError> {
        Ok(Box::new(self.vae_config()?.clone()))
    }

    /// `latents.to(vae.dtype) / vae.config.scaling_factor`.
    fn vae_input(&self, latents: &HostTensor, _video: &VideoSize) -> Result<HostTensor, FamilyError> {
        let vae = self.vae_config()?;
        let d = &latents.dims;
        if d.len() != 5 || d[0] != 1 || d[1] != vae.latent_channels {
            return Err(FamilyError::Invalid(format!("latents {d:?}: expected [1, {}, T, H, W]", vae.latent_channels)));
        }
        let scale = 1.0 / vae.scaling_factor;
        let v: Vec<f32> = latents.to_f32_vec().iter().map(|&x| (x as f64 * scale) as f32).collect();
        HostTensor::from_f32(d.clone(), &v).map_err(|e| FamilyError::Invalid(e.to_string()))
    }

    /// The HunyuanVideo-1.5 seed always writes `stage3_frames.safetensors`.
    fn writes_frames_file(&self) -> bool {
        true
    }

    fn expected_inputs(&self, c: Component) -> String {
        super::exec_inputs::expected_inputs(self, c)
    }

    fn checked_inputs(
        &self,
        c: Component,
        file: BTreeMap<String, HostTensor>,
        dtype: DType,
        source: &str,
    ) -> Result<crate::family::CheckedInputs, FamilyError> {
        super::exec_inputs::checked_inputs(self, c, file, dtype, source)
    }

    fn random_inputs(&self, c: Component, s: &Sizes, dtype: DType, seed: u64) -> Result<HashMap<String, HostTensor>, FamilyError> {
        super::exec_inputs::random_inputs(self, c, s, dtype, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizes_match_the_image_processor() {
        // From diffusers' HunyuanVideo15ImageProcessor.calculate_default_height_width(9, 16, t).
        assert_eq!(default_height_width(640, 16), (480, 848));
        assert_eq!(default_height_width(960, 16), (720, 1280));
        assert_eq!(default_height_width(96, 16), (64, 112));
        assert_eq!(default_height_width(128, 16), (96, 160));
        assert_eq!(default_height_width(64, 16), (48, 80));
    }
}
