//! CogVideoX behind the family seam: `CogVideoXPipeline`'s shape rules (1.5's latent-frame
//! padding), `encode_prompt` (T5, 226 tokens, no attention mask), CFG batched uncond first with
//! the optional dynamic schedule, and latents -> `vae.decode` input (padding frames dropped,
//! [B, F, C, H, W] -> [B, C, F, H, W], `1 / scaling_factor`).

use super::config::CogVideoXTransformerConfig;
use super::tokenizer::T5Tokenizer;
use super::transformer::{transformer, TransformerShape};
use super::vae_config::CogVideoXVaeConfig;
use crate::config::read_json;
use crate::family::{
    concat_batch, embedding, prompt_pair_len, split_batch, take_output, Component, ComponentRunner, Defaults, DenoiseKnobs, Embeddings,
    Family, FamilyError, GuidanceAt, Model, NamedGraph, PromptRequest, RuleTable, Sizes, VideoSize,
};
use crate::nn::t5_encoder::{t5_encoder, T5Config, T5EncoderOptions};
use crate::nn::vae_decoder::VaeDecoderGraphs;
use crate::registry::Preset;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vidlower_ir::{DType, HostTensor};

/// The CogVideoX family (`CogVideoXPipeline`: CogVideoX-2b, -5b, 1.5-5B).
pub struct CogVideoXFamily;

pub static FAMILY: CogVideoXFamily = CogVideoXFamily;

impl Family for CogVideoXFamily {
    fn name(&self) -> &'static str {
        "cogvideox"
    }

    fn pipeline_classes(&self) -> &'static [&'static str] {
        &["CogVideoXPipeline"]
    }

    fn refused_classes(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("CogVideoXImageToVideoPipeline", "CogVideoX image-to-video is not supported yet; only text-to-video (CogVideoXPipeline)"),
            ("CogVideoXVideoToVideoPipeline", "CogVideoX video-to-video is not supported yet; only text-to-video (CogVideoXPipeline)"),
            ("CogVideoXFunControlPipeline", "CogVideoX-Fun control/pose is not supported yet; only text-to-video (CogVideoXPipeline)"),
        ]
    }

    fn presets(&self) -> Vec<Preset> {
        super::tiny::presets()
    }

    fn open(&self, dir: &Path, components: &[Component]) -> Result<Box<dyn Model>, FamilyError> {
        let wants = |c: Component| components.contains(&c);
        let config = |folder: &str| dir.join(folder).join("config.json");
        let text_encoder = if wants(Component::TextEncoder) {
            for f in ["tokenizer/spiece.model", "tokenizer/tokenizer.json"] {
                if dir.join(f).is_file() {
                    break;
                }
                if f.ends_with("tokenizer.json") {
                    return Err(FamilyError::Unsupported(format!(
                        "{}: no tokenizer (expected spiece.model or tokenizer.json)",
                        dir.join("tokenizer").display()
                    )));
                }
            }
            Some(read_json::<T5Config>(&config("text_encoder"))?)
        } else {
            None
        };
        let transformer = if wants(Component::Transformer) {
            let t: CogVideoXTransformerConfig = read_json(&config("transformer"))?;
            t.check().map_err(|e| FamilyError::Unsupported(format!("{}: {e}", config("transformer").display())))?;
            Some(t)
        } else {
            None
        };
        let vae = if wants(Component::VaeDecoder) { Some(read_json::<CogVideoXVaeConfig>(&config("vae"))?) } else { None };
        Ok(Box::new(CogVideoXModel { dir: dir.to_path_buf(), text_encoder, transformer, vae }))
    }
}

/// An opened CogVideoX directory; configs of the components it was opened for.
pub struct CogVideoXModel {
    dir: PathBuf,
    text_encoder: Option<T5Config>,
    transformer: Option<CogVideoXTransformerConfig>,
    vae: Option<CogVideoXVaeConfig>,
}

/// The pipeline's spatial and temporal VAE factors (8, 4); the VAE config's when it is open.
const SPATIAL: i64 = 8;
const TEMPORAL: i64 = 4;

impl CogVideoXModel {
    fn cfg<'a, T>(&self, c: &'a Option<T>, component: Component) -> Result<&'a T, FamilyError> {
        crate::family::opened(c, &self.dir, component)
    }

    pub(super) fn transformer_config(&self) -> Result<&CogVideoXTransformerConfig, FamilyError> {
        self.cfg(&self.transformer, Component::Transformer)
    }

    pub(super) fn text_encoder_config(&self) -> Result<&T5Config, FamilyError> {
        self.cfg(&self.text_encoder, Component::TextEncoder)
    }

    pub(super) fn vae_config(&self) -> Result<&CogVideoXVaeConfig, FamilyError> {
        self.cfg(&self.vae, Component::VaeDecoder)
    }

    fn patch_t(&self) -> i64 {
        self.transformer.as_ref().map_or(1, |t| t.temporal_patch())
    }

    /// Latent frames of a `frames` video, and the padding frames 1.5 adds in front.
    fn latent_frames(&self, frames: i64) -> (i64, i64) {
        let latent = (frames - 1) / TEMPORAL + 1;
        let p = self.patch_t();
        let extra = if latent % p != 0 { p - latent % p } else { 0 };
        (latent + extra, extra)
    }
}

impl Model for CogVideoXModel {
    fn family(&self) -> &'static dyn Family {
        &FAMILY
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pipeline's own: 1.0 at its sample size (480x720, 49 frames, 8 fps), 1.5 at 768x1360,
    /// 81 frames, 16 fps; 50 steps, guidance 6, 226 text tokens.
    fn defaults(&self) -> Defaults {
        let t = self.transformer.clone().unwrap_or_default();
        let v15 = t.patch_size_t.is_some();
        Defaults {
            height: if v15 { 768 } else { t.sample_height * SPATIAL },
            width: if v15 { 1360 } else { t.sample_width * SPATIAL },
            frames: if v15 { 81 } else { t.sample_frames },
            steps: 50,
            guidance_scale: 6.0,
            fps: if v15 { 16 } else { 8 },
            flow_shift: None,
            max_sequence_length: 226,
            seed: 42,
        }
    }

    fn components(&self) -> Vec<Component> {
        vec![Component::TextEncoder, Component::Transformer, Component::VaeDecoder]
    }

    /// Frames 4n+1 (the causal VAE decodes 4T-3 frames from T latents) and sizes multiples of
    /// 16 (the VAE's 8x and the 2x2 patches).
    fn check_video(&self, v: &VideoSize) -> Result<(), FamilyError> {
        if v.frames < 1 || (v.frames - 1) % TEMPORAL != 0 {
            return Err(FamilyError::Invalid(format!("--frames {}: must be 4n+1 (CogVideoX: 49; 1.5: 81)", v.frames)));
        }
        let multiple = SPATIAL * self.transformer.as_ref().map_or(2, |t| t.patch_size);
        for (flag, x) in [("--height", v.height), ("--width", v.width)] {
            if x < multiple || x % multiple != 0 {
                return Err(FamilyError::Invalid(format!("{flag} {x}: must be a positive multiple of {multiple}")));
            }
        }
        Ok(())
    }

    /// [1, F, C, H/8, W/8], F padded to a multiple of `patch_size_t` as the 1.5 pipeline pads.
    fn latent_shape(&self, v: &VideoSize) -> Vec<i64> {
        let channels = self.transformer.as_ref().map_or(16, |t| t.in_channels);
        vec![1, self.latent_frames(v.frames).0, channels, v.height / SPATIAL, v.width / SPATIAL]
    }

    fn sizes(&self, c: Component, v: &VideoSize, batch: i64, text_len: i64) -> Sizes {
        let l = self.latent_shape(v);
        // The VAE decodes the unpadded latents.
        let frames = if c == Component::VaeDecoder { (v.frames - 1) / TEMPORAL + 1 } else { l[1] };
        Sizes { batch, latent_frames: frames, latent_height: l[3], latent_width: l[4], text_len, text_len_2: 0 }
    }

    fn describe_sizes(&self, c: Component, s: &Sizes) -> String {
        match c {
            Component::TextEncoder | Component::TextEncoder2 => format!("batch {}, {} tokens", s.batch, s.text_len),
            Component::Transformer => {
                let (p, pt) = self.transformer.as_ref().map_or((2, 1), |t| (t.patch_size, t.temporal_patch()));
                let tokens = (s.latent_frames / pt) * (s.latent_height / p) * (s.latent_width / p);
                format!(
                    "batch {}, latents {}x{}x{} ({tokens} video + {} text tokens, joint attention)",
                    s.batch, s.latent_frames, s.latent_height, s.latent_width, s.text_len
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
                let cfg = self.text_encoder_config()?;
                // CogVideoX's `_get_t5_prompt_embeds` calls `text_encoder(text_input_ids)`: no mask.
                let opts = T5EncoderOptions { attention_mask: false, ..T5EncoderOptions::new(cfg, dtype) };
                one("text_encoder", t5_encoder(cfg, s.batch, s.text_len, &opts).map_err(err)?)
            }
            Component::Transformer => {
                let shape = TransformerShape {
                    batch: s.batch,
                    frames: s.latent_frames,
                    height: s.latent_height,
                    width: s.latent_width,
                    text_len: s.text_len,
                };
                one("transformer", transformer(self.transformer_config()?, &shape, dtype).map_err(err)?)
            }
            Component::VaeDecoder => crate::family::vae_step_graphs(self.vae_config()?, s, dtype)?,
            Component::TextEncoder2 => return Err(FamilyError::Invalid("CogVideoX has no text_encoder_2".into())),
        })
    }

    fn sharding_rules(&self, c: Component) -> Option<RuleTable> {
        match c {
            Component::Transformer => Some(super::sharding::TRANSFORMER_RULES),
            Component::TextEncoder => Some(super::sharding::T5_RULES),
            _ => None,
        }
    }

    fn weight_aliases(&self, c: Component, name: &str) -> &'static [&'static str] {
        match c {
            Component::TextEncoder => crate::nn::t5_encoder::weight_aliases(name),
            _ => &[],
        }
    }

    fn embedding_names(&self) -> Vec<&'static str> {
        vec!["prompt_embeds", "negative_prompt_embeds"]
    }

    /// `CogVideoXPipeline.encode_prompt` for both prompts in one batch of 2: the T5 tokenizer
    /// padded and truncated to `max_sequence_length`, the encoder without a mask (padding
    /// positions keep their values, as in diffusers).
    fn encode_prompts(&self, r: &PromptRequest, runner: &mut dyn ComponentRunner) -> Result<Embeddings, FamilyError> {
        let c = Component::TextEncoder;
        let run_err = |e: &dyn std::fmt::Display| FamilyError::Run { component: c.name(), message: e.to_string() };
        let tokenizer = T5Tokenizer::from_dir(&self.dir.join("tokenizer")).map_err(|e| run_err(&e))?;
        let l = r.max_sequence_length;
        let (ids, _mask) = tokenizer.encode(&[r.prompt, r.negative_prompt], l).map_err(|e| run_err(&e))?;
        let ids: Vec<i64> = ids.into_iter().flatten().collect();
        let ids = HostTensor::from_slice([2, l as i64], &ids).map_err(|e| FamilyError::Invalid(e.to_string()))?;
        let sizes = Sizes { batch: 2, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l as i64, text_len_2: 0 };
        let graph = self.graphs(c, &sizes, r.dtype)?.remove(0).graph;
        let hidden = take_output(runner.run(c, graph, &HashMap::from([("input_ids".to_string(), ids)]))?, "last_hidden_state", c)?;
        let (p, n) = split_batch(&hidden);
        Ok(BTreeMap::from([("prompt_embeds".to_string(), p), ("negative_prompt_embeds".to_string(), n)]))
    }

    fn check_denoise(&self, knobs: &DenoiseKnobs) -> Result<(), FamilyError> {
        if knobs.flow_shift.is_some() {
            return Err(FamilyError::Invalid("--flow-shift: CogVideoX's DDIM/DPM schedulers have no flow shift".into()));
        }
        Ok(())
    }

    fn transformer_sizes(&self, latent_shape: &[i64], e: &Embeddings, batch: i64) -> Result<Sizes, FamilyError> {
        let text_len = prompt_pair_len(e, self.transformer_config()?.text_embed_dim)?;
        Ok(Sizes {
            batch,
            latent_frames: latent_shape[1],
            latent_height: latent_shape[3],
            latent_width: latent_shape[4],
            text_len,
            text_len_2: 0,
        })
    }

    /// CFG batch [uncond, cond]: `torch.cat([negative_prompt_embeds, prompt_embeds])`.
    fn conditioning_inputs(&self, e: &Embeddings, cfg: bool, dtype: DType) -> Result<HashMap<String, HostTensor>, FamilyError> {
        let (p, n) = (embedding(e, "prompt_embeds")?, embedding(e, "negative_prompt_embeds")?);
        let text = if cfg { concat_batch(&[n, p]) } else { p.clone() };
        let b = text.dims[0];
        let mut inputs = HashMap::from([("encoder_hidden_states".to_string(), text.convert(dtype))]);
        if self.transformer_config()?.ofs_embed_dim.is_some() {
            // The 1.5 pipelines pass ofs = 2.0 where the model has the embedding.
            inputs.insert("ofs".to_string(), crate::exec_inputs::filled(b, 2.0)?);
        }
        Ok(inputs)
    }

    /// `noise_pred_uncond + g * (noise_pred_text - noise_pred_uncond)`, with `use_dynamic_cfg`'s
    /// `g = 1 + scale * (1 - cos(pi * ((steps - t) / steps) ** 5)) / 2` (t the timestep value).
    fn guide(&self, sample: &[f32], cfg: bool, g: &GuidanceAt) -> Vec<f32> {
        if !cfg {
            return sample.to_vec();
        }
        let scale = if g.dynamic { dynamic_guidance_scale(g.scale, g.t, g.steps) } else { g.scale };
        crate::family::classifier_free_guidance(sample, scale, false)
    }

    fn vae_decoder(&self) -> Result<Box<dyn VaeDecoderGraphs>, FamilyError> {
        Ok(Box::new(self.vae_config()?.clone()))
    }

    /// `latents[:, additional_frames:]`, `permute(0, 2, 1, 3, 4)`, `1 / scaling_factor`.
    fn vae_input(&self, latents: &HostTensor, video: &VideoSize) -> Result<HostTensor, FamilyError> {
        let vae = self.vae_config()?;
        let d = &latents.dims;
        let want = (video.frames - 1) / TEMPORAL + 1;
        if d.len() != 5 || d[0] != 1 || d[2] != vae.latent_channels || d[1] < want {
            return Err(FamilyError::Invalid(format!(
                "latents {d:?}: expected [1, F >= {want}, {}, H, W] (the pipeline's [B, F, C, H, W])",
                vae.latent_channels
            )));
        }
        let (f, c, hw) = (d[1] as usize, d[2] as usize, (d[3] * d[4]) as usize);
        let skip = f - want as usize;
        let v = latents.to_f32_vec();
        let scale = 1.0 / vae.scaling_factor;
        let mut out = vec![0f32; c * want as usize * hw];
        for ch in 0..c {
            for t in 0..want as usize {
                let src = ((skip + t) * c + ch) * hw;
                let dst = (ch * want as usize + t) * hw;
                for i in 0..hw {
                    out[dst + i] = (scale * v[src + i] as f64) as f32;
                }
            }
        }
        HostTensor::from_f32(vec![1, c as i64, want, d[3], d[4]], &out).map_err(|e| FamilyError::Invalid(e.to_string()))
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

/// `CogVideoXPipeline`'s `use_dynamic_cfg` scale at timestep `t` of `steps`.
pub fn dynamic_guidance_scale(scale: f64, t: f64, steps: usize) -> f64 {
    let n = steps as f64;
    1.0 + scale * ((1.0 - (std::f64::consts::PI * ((n - t) / n).powf(5.0)).cos()) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [guidance, steps, timestep, the pipeline's value] from Python (`dynamic_cfg_cases` in
    /// tools/golden/make_cogvideox_scheduler_goldens.py). `t` is the timestep (999...), not the
    /// step index, so the base goes negative and the scale oscillates: what diffusers computes.
    const CASES: [(f64, usize, f64, f64); 9] = [
        (6.0, 50, 999.0, 2.291487174551452),
        (6.0, 50, 979.0, 2.5435028667646318),
        (6.0, 50, 19.0, 1.123397939968981),
        (6.0, 50, 49.0, 1.0),
        (6.0, 3, 999.0, 1.0000000386950705),
        (6.0, 3, 332.0, 3.7481633040187146),
        (6.0, 3, 2.0, 1.0002507104336882),
        (7.0, 50, 50.0, 1.0),
        (6.0, 50, 0.0, 7.0),
    ];

    #[test]
    fn dynamic_scale_matches_python() {
        for (g, n, t, want) in CASES {
            let got = dynamic_guidance_scale(g, t, n);
            // cos of arguments up to ~1e7 rad: allow libm differences in the last bits.
            assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "g {g} n {n} t {t}: {got} vs {want}");
        }
    }

    #[test]
    fn guidance_is_uncond_first() {
        let m = CogVideoXModel { dir: PathBuf::new(), text_encoder: None, transformer: None, vae: None };
        let g = GuidanceAt { scale: 6.0, t: 999.0, step: 0, steps: 50, dynamic: false };
        // [uncond | cond]
        assert_eq!(m.guide(&[1.0, -1.0, 2.0, 1.0], true, &g), vec![7.0, 11.0]);
    }
}
