//! Wan 2.1 behind the family seam: `WanPipeline`'s shape rules, `encode_prompt`, CFG batching and
//! latent unscaling, over the graphs of this folder.

use super::config::{read_json, Umt5Config, WanTransformerConfig, WanVaeConfig};
use super::text_encoder::{umt5_encoder, weight_aliases};
use super::tokenizer::{prompt_clean, Tokenizer};
use super::transformer::{transformer, TransformerShape};
use super::vae::{decoder_step, VaeDecodeShape};
use crate::family::{
    classifier_free_guidance, concat_batch, embedding, prompt_pair_len, split_batch, take_output, Component, ComponentRunner, DenoiseKnobs, Embeddings, Family,
    FamilyError, GuidanceAt, Model, NamedGraph, PromptRequest, RuleTable, Sizes, VideoSize,
};
use crate::registry::Preset;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vidlower_ir::{DType, HostTensor};

/// The Wan 2.1 family (`WanPipeline`).
pub struct WanFamily;

pub static FAMILY: WanFamily = WanFamily;

impl Family for WanFamily {
    fn name(&self) -> &'static str {
        "wan"
    }

    fn pipeline_classes(&self) -> &'static [&'static str] {
        &["WanPipeline"]
    }

    fn refused_classes(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("WanImageToVideoPipeline", "Wan image-to-video is not supported yet; only text-to-video (WanPipeline)"),
            ("WanVideoToVideoPipeline", "Wan video-to-video is not supported yet; only text-to-video (WanPipeline)"),
            ("WanVACEPipeline", "Wan VACE is not supported yet; only text-to-video (WanPipeline)"),
        ]
    }

    fn presets(&self) -> Vec<Preset> {
        vec![super::tiny::preset()]
    }

    fn open(&self, dir: &Path, components: &[Component]) -> Result<Box<dyn Model>, FamilyError> {
        let wants = |c: Component| components.contains(&c);
        let config = |folder: &str, file: &str| dir.join(folder).join(file);
        let text_encoder = if wants(Component::TextEncoder) {
            Some(read_json::<Umt5Config>(&config("text_encoder", "config.json"))?)
        } else {
            None
        };
        let transformer = if wants(Component::Transformer) {
            Some(read_json::<WanTransformerConfig>(&config("transformer", "config.json"))?)
        } else {
            None
        };
        let vae = if wants(Component::VaeDecoder) || wants(Component::Transformer) {
            // The transformer's latent sizes follow the VAE's compression; without `vae/` the
            // diffusers defaults (8x, 4x) apply.
            let path = config("vae", "config.json");
            if path.is_file() || wants(Component::VaeDecoder) {
                Some(read_json::<WanVaeConfig>(&path)?)
            } else {
                Some(WanVaeConfig::default())
            }
        } else {
            None
        };
        let refuse = |folder: &str, (field, why): (&str, String)| {
            FamilyError::Unsupported(format!("{}: `{field}` {why}", config(folder, "config.json").display()))
        };
        if let Some(t) = &transformer {
            t.check().map_err(|e| refuse("transformer", e))?;
        }
        if let Some(v) = &vae {
            v.check().map_err(|e| refuse("vae", e))?;
        }
        if let Some(t) = &transformer {
            if t.image_dim.is_some() || t.added_kv_proj_dim.is_some() {
                return Err(FamilyError::Unsupported(format!(
                    "{}: image_dim/added_kv_proj_dim are set (an image-to-video transformer); only text-to-video is supported",
                    config("transformer", "config.json").display()
                )));
            }
        }
        if wants(Component::TextEncoder) && !dir.join("tokenizer/tokenizer.json").is_file() {
            return Err(FamilyError::Unsupported(format!("{}: no such file (Wan's tokenizer)", dir.join("tokenizer/tokenizer.json").display())));
        }
        Ok(Box::new(WanModel { dir: dir.to_path_buf(), text_encoder, transformer, vae }))
    }
}

/// An opened Wan directory; configs of the components it was opened for.
pub struct WanModel {
    dir: PathBuf,
    text_encoder: Option<Umt5Config>,
    transformer: Option<WanTransformerConfig>,
    vae: Option<WanVaeConfig>,
}

impl WanModel {
    fn cfg<'a, T>(&self, c: &'a Option<T>, component: Component) -> Result<&'a T, FamilyError> {
        crate::family::opened(c, &self.dir, component)
    }

    /// The VAE config (the defaults when the directory has no `vae/`).
    pub fn vae_config(&self) -> Result<&WanVaeConfig, FamilyError> {
        self.cfg(&self.vae, Component::VaeDecoder)
    }

    fn scales(&self) -> (i64, i64) {
        let v = self.vae.clone().unwrap_or_default();
        (v.scale_temporal(), v.scale_spatial())
    }
}

impl Model for WanModel {
    fn family(&self) -> &'static dyn Family {
        &FAMILY
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn defaults(&self) -> crate::family::Defaults {
        crate::family::Defaults {
            height: 720,
            width: 1280,
            frames: 81,
            steps: 50,
            guidance_scale: 5.0,
            fps: 16,
            flow_shift: Some(5.0),
            max_sequence_length: 512,
            seed: 42,
        }
    }

    fn components(&self) -> Vec<Component> {
        vec![Component::TextEncoder, Component::Transformer, Component::VaeDecoder]
    }

    /// Frames 4n+1 and sizes multiples of 16 (the VAE's 8x and the 2x2 patches).
    fn check_video(&self, v: &VideoSize) -> Result<(), FamilyError> {
        let (st, ss) = self.scales();
        let multiple = ss * self.transformer.as_ref().map_or(2, |t| t.patch_size.get(1).copied().unwrap_or(2));
        if v.frames < 1 || (v.frames - 1) % st != 0 {
            return Err(FamilyError::Invalid(format!("--frames {}: must be {st}n+1 (1, 5, 9, ..., 81)", v.frames)));
        }
        for (flag, x) in [("--height", v.height), ("--width", v.width)] {
            if x < multiple || x % multiple != 0 {
                return Err(FamilyError::Invalid(format!("{flag} {x}: must be a positive multiple of {multiple}")));
            }
        }
        Ok(())
    }

    fn latent_shape(&self, v: &VideoSize) -> Vec<i64> {
        let (st, ss) = self.scales();
        let channels = self.transformer.as_ref().map_or(16, |t| t.in_channels);
        vec![1, channels, (v.frames - 1) / st + 1, v.height / ss, v.width / ss]
    }

    fn sizes(&self, _c: Component, v: &VideoSize, batch: i64, text_len: i64) -> Sizes {
        let l = self.latent_shape(v);
        Sizes { batch, latent_frames: l[2], latent_height: l[3], latent_width: l[4], text_len, text_len_2: 0 }
    }

    fn describe_sizes(&self, c: Component, s: &Sizes) -> String {
        match c {
            Component::TextEncoder | Component::TextEncoder2 => format!("batch {}, {} tokens", s.batch, s.text_len),
            Component::Transformer => {
                let p = self.transformer.as_ref().map_or(vec![1, 2, 2], |t| t.patch_size.clone());
                let tokens = (s.latent_frames / p[0]) * (s.latent_height / p[1]) * (s.latent_width / p[2]);
                format!(
                    "batch {}, latents {}x{}x{} ({tokens} tokens), {} text tokens",
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
                let cfg = self.cfg(&self.text_encoder, c)?;
                one("text_encoder", umt5_encoder(cfg, s.batch, s.text_len, dtype).map_err(err)?)
            }
            Component::Transformer => {
                let cfg = self.cfg(&self.transformer, c)?;
                let shape = TransformerShape {
                    batch: s.batch,
                    frames: s.latent_frames,
                    height: s.latent_height,
                    width: s.latent_width,
                    text_len: s.text_len,
                };
                one("transformer", transformer(cfg, &shape, dtype).map_err(err)?)
            }
            Component::VaeDecoder => {
                let cfg = self.vae_config()?;
                let shape = VaeDecodeShape { batch: s.batch, height: s.latent_height, width: s.latent_width };
                vec![
                    NamedGraph { label: "vae_decoder (first step)".into(), graph: decoder_step(cfg, &shape, dtype, true).map_err(&err)? },
                    NamedGraph { label: "vae_decoder (later steps)".into(), graph: decoder_step(cfg, &shape, dtype, false).map_err(&err)? },
                ]
            }
            Component::TextEncoder2 => return Err(FamilyError::Invalid("Wan has no text_encoder_2".into())),
        })
    }

    fn sharding_rules(&self, c: Component) -> Option<RuleTable> {
        match c {
            Component::Transformer => Some(super::sharding::TRANSFORMER_RULES),
            Component::TextEncoder => Some(super::sharding::UMT5_RULES),
            _ => None,
        }
    }

    fn weight_aliases(&self, c: Component, name: &str) -> &'static [&'static str] {
        match c {
            Component::TextEncoder => weight_aliases(name),
            _ => &[],
        }
    }

    fn embedding_names(&self) -> Vec<&'static str> {
        vec!["prompt_embeds", "negative_prompt_embeds"]
    }

    /// `WanPipeline._get_t5_prompt_embeds` for both prompts in one batch of 2: `prompt_clean`,
    /// the tokenizer padded/truncated to `max_sequence_length`, UMT5, each row cut to its real
    /// tokens and zero-padded back.
    fn encode_prompts(&self, r: &PromptRequest, runner: &mut dyn ComponentRunner) -> Result<Embeddings, FamilyError> {
        let c = Component::TextEncoder;
        let tokenizer = Tokenizer::from_dir(&self.dir.join("tokenizer"))
            .map_err(|e| FamilyError::Run { component: c.name(), message: e.to_string() })?;
        let l = r.max_sequence_length;
        let texts = [prompt_clean(r.prompt), prompt_clean(r.negative_prompt)];
        let (ids, mask) = tokenizer
            .encode(&[texts[0].as_str(), texts[1].as_str()], l)
            .map_err(|e| FamilyError::Run { component: c.name(), message: e.to_string() })?;
        let seq_lens: Vec<usize> = mask.iter().map(|row| row.iter().filter(|&&m| m > 0).count()).collect();
        let flat = |rows: Vec<Vec<i64>>| rows.into_iter().flatten().collect::<Vec<i64>>();
        let tensor = |rows| HostTensor::from_slice([2, l as i64], &flat(rows)).map_err(|e| FamilyError::Invalid(e.to_string()));
        let inputs = HashMap::from([("input_ids".to_string(), tensor(ids)?), ("attention_mask".to_string(), tensor(mask)?)]);
        let sizes = Sizes { batch: 2, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l as i64, text_len_2: 0 };
        let graph = self.graphs(c, &sizes, r.dtype)?.remove(0).graph;
        let mut hidden = take_output(runner.run(c, graph, &inputs)?, "last_hidden_state", c)?;
        // `prompt_embeds[i][:seq_len]` then `new_zeros` up to max_sequence_length: all-zero
        // bytes are +0.0 in every float dtype.
        let row = hidden.dims[2] as usize * hidden.dtype.size_in_bytes();
        for (i, &n) in seq_lens.iter().enumerate() {
            hidden.data[(i * l + n) * row..(i + 1) * l * row].fill(0);
        }
        let (p, n) = split_batch(&hidden);
        Ok(BTreeMap::from([("prompt_embeds".to_string(), p), ("negative_prompt_embeds".to_string(), n)]))
    }

    fn check_denoise(&self, knobs: &DenoiseKnobs) -> Result<(), FamilyError> {
        if knobs.dynamic_cfg {
            return Err(FamilyError::Invalid("--use-dynamic-cfg is CogVideoX's guidance schedule; WanPipeline has none".into()));
        }
        Ok(())
    }

    fn transformer_sizes(&self, latent_shape: &[i64], e: &Embeddings, batch: i64) -> Result<Sizes, FamilyError> {
        let text_len = prompt_pair_len(e, self.cfg(&self.transformer, Component::Transformer)?.text_dim)?;
        Ok(Sizes {
            batch,
            latent_frames: latent_shape[2],
            latent_height: latent_shape[3],
            latent_width: latent_shape[4],
            text_len,
            text_len_2: 0,
        })
    }

    /// CFG batch: [cond, uncond], as `WanPipeline` calls the transformer twice (batched here).
    fn conditioning_inputs(&self, e: &Embeddings, cfg: bool, dtype: DType) -> Result<HashMap<String, HostTensor>, FamilyError> {
        let (p, n) = (embedding(e, "prompt_embeds")?, embedding(e, "negative_prompt_embeds")?);
        let text = if cfg { concat_batch(&[p, n]) } else { p.clone() };
        Ok(HashMap::from([("encoder_hidden_states".to_string(), text.convert(dtype))]))
    }

    fn guide(&self, sample: &[f32], cfg: bool, g: &GuidanceAt) -> Vec<f32> {
        if !cfg {
            return sample.to_vec();
        }
        classifier_free_guidance(sample, g.scale, true)
    }

    fn vae_decoder(&self) -> Result<Box<dyn crate::nn::vae_decoder::VaeDecoderGraphs>, FamilyError> {
        Ok(Box::new(self.vae_config()?.clone()))
    }

    /// `latents / (1 / latents_std) + latents_mean` per channel, as `WanPipeline` before
    /// `vae.decode`.
    fn vae_input(&self, latents: &HostTensor, _video: &VideoSize) -> Result<HostTensor, FamilyError> {
        let v = self.vae_config()?;
        let (mean, std) = (&v.latents_mean, &v.latents_std);
        let c = latents.dims.get(1).copied().unwrap_or(0) as usize;
        if latents.dims.len() != 5 || c != mean.len() || c != std.len() {
            return Err(FamilyError::Invalid(format!("latents {:?}: expected [B, {}, T, H, W]", latents.dims, mean.len())));
        }
        let per_channel: usize = latents.dims[2..].iter().product::<i64>() as usize;
        let out: Vec<f32> = latents
            .to_f32_vec()
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let ch = (i / per_channel) % c;
                (x as f64 * std[ch] + mean[ch]) as f32
            })
            .collect();
        HostTensor::from_f32(latents.dims.clone(), &out).map_err(|e| FamilyError::Invalid(e.to_string()))
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

impl WanModel {
    pub(super) fn transformer_config(&self) -> Result<&WanTransformerConfig, FamilyError> {
        self.cfg(&self.transformer, Component::Transformer)
    }

    pub(super) fn text_encoder_config(&self) -> Result<&Umt5Config, FamilyError> {
        self.cfg(&self.text_encoder, Component::TextEncoder)
    }
}

