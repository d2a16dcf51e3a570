//! A model's components for the graph commands (`compile`, `dump-ir`, `exec`, `bench`): their
//! graphs built exactly as the stages build them (same sizes, dtypes and weight names, so
//! `vidlower compile` fills the cache with what a stage run then hits), their inputs checked
//! against what the graph takes, and a runner for one forward.

use crate::args::PassArgs;
use crate::lowering::{lower, pipeline};
use crate::session::Session;
use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use std::collections::{BTreeMap, HashMap};
use vidlower_frontends::random_weights::random_input;
use vidlower_frontends::wan::text_encoder::umt5_encoder;
use vidlower_frontends::wan::transformer::{transformer, TransformerShape};
use vidlower_frontends::wan::vae::{decoder_step, VaeDecodeShape};
use vidlower_ir::{DType, Graph, TensorType};
use vidlower_passes::DumpAfter;
use vidlower_runtime::compile::compile_cached;
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::program::{Program, Signature};
use vidlower_runtime::stages::model::WanModel;
use vidlower_runtime::stages::text_encode::use_stored_names;
use vidlower_runtime::stages::vae_decode::{VaeDecodeSettings, VaeDecoder};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

/// A part of a Wan model, named as in the model directory and the diffusers pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Component {
    /// UMT5 encoder: input_ids, attention_mask -> last_hidden_state (stage 1).
    #[value(name = "text_encoder", alias = "text-encoder")]
    TextEncoder,
    /// WanTransformer3DModel: hidden_states, timestep, encoder_hidden_states -> sample (stage 2).
    #[value(name = "transformer")]
    Transformer,
    /// The VAE decoder, z -> sample (stage 3): two step graphs, the first latent frame and every
    /// later one.
    #[value(name = "vae_decoder", alias = "vae-decoder")]
    VaeDecoder,
    /// The VAE decoder's first-step graph only.
    #[value(name = "vae_decoder_first", alias = "vae-decoder-first")]
    VaeDecoderFirst,
    /// The VAE decoder's later-steps graph only.
    #[value(name = "vae_decoder_next", alias = "vae-decoder-next")]
    VaeDecoderNext,
}

impl Component {
    /// What `compile` without `--component` compiles: everything a generation runs.
    pub const ALL: [Component; 3] = [Component::TextEncoder, Component::Transformer, Component::VaeDecoder];

    /// The name `--component` takes.
    pub fn name(self) -> &'static str {
        match self {
            Component::TextEncoder => "text_encoder",
            Component::Transformer => "transformer",
            Component::VaeDecoder => "vae_decoder",
            Component::VaeDecoderFirst => "vae_decoder_first",
            Component::VaeDecoderNext => "vae_decoder_next",
        }
    }

    /// The model directory's folder with its weights.
    pub fn folder(self) -> &'static str {
        match self {
            Component::TextEncoder => "text_encoder",
            Component::Transformer => "transformer",
            _ => "vae",
        }
    }

    /// The stages' batch: prompt and negative prompt in one call, the CFG pair, one video.
    pub fn default_batch(self) -> i64 {
        match self {
            Component::TextEncoder | Component::Transformer => 2,
            _ => 1,
        }
    }
}

/// The sizes a component's graph is built for: latent units for the transformer and the VAE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub batch: i64,
    pub latent_frames: i64,
    pub latent_height: i64,
    pub latent_width: i64,
    pub text_len: i64,
}

impl Sizes {
    /// A video of `height` x `width` pixels and `frames` frames, as the stages size it.
    pub fn from_pixels(model: &WanModel, batch: i64, height: i64, width: i64, frames: i64, text_len: i64) -> Sizes {
        let (st, ss) = (model.vae.scale_temporal(), model.vae.scale_spatial());
        Sizes { batch, latent_frames: (frames - 1) / st + 1, latent_height: height / ss, latent_width: width / ss, text_len }
    }

    /// "batch 2, latents 5x16x16 (320 tokens), 512 text tokens" for the component.
    pub fn describe(&self, model: &WanModel, c: Component) -> String {
        let p = &model.transformer.patch_size;
        match c {
            Component::TextEncoder => format!("batch {}, {} tokens", self.batch, self.text_len),
            Component::Transformer => format!(
                "batch {}, latents {}x{}x{} ({} tokens), {} text tokens",
                self.batch,
                self.latent_frames,
                self.latent_height,
                self.latent_width,
                (self.latent_frames / p[0]) * (self.latent_height / p[1]) * (self.latent_width / p[2]),
                self.text_len
            ),
            _ => format!("batch {}, latents {}x{}x{}", self.batch, self.latent_frames, self.latent_height, self.latent_width),
        }
    }
}

/// A graph and what to call it.
pub struct ComponentGraph {
    pub label: String,
    pub graph: Graph,
    /// The diffusers folder of its weights (picks the built-in sharding rules); `None` for the
    /// example graph and IR files.
    pub folder: Option<&'static str>,
}

impl ComponentGraph {
    /// The label of its cache entry: "transformer (wan_transformer)", or the graph's name.
    pub fn cache_label(&self) -> String {
        if self.label == self.graph.name {
            self.label.clone()
        } else {
            format!("{} ({})", self.label, self.graph.name)
        }
    }
}

/// The graphs of component `c` at `s` in `dtype` (two for `vae_decoder`), as the stages build
/// them; `weights` names the text encoder's tied embedding as the checkpoint stores it.
pub fn graphs(model: &WanModel, weights: &WeightStore, c: Component, s: &Sizes, dtype: DType) -> Result<Vec<ComponentGraph>> {
    let vae_shape = VaeDecodeShape { batch: s.batch, height: s.latent_height, width: s.latent_width };
    let step = |first: bool| decoder_step(&model.vae, &vae_shape, dtype, first);
    let one = |label: &str, graph: Graph| ComponentGraph { label: label.to_string(), graph, folder: Some(c.folder()) };
    let built = match c {
        Component::TextEncoder => {
            let mut graph = umt5_encoder(&model.text_encoder, s.batch, s.text_len, dtype)?;
            use_stored_names(&mut graph, weights);
            vec![one("text_encoder", graph)]
        }
        Component::Transformer => {
            let shape = TransformerShape {
                batch: s.batch,
                frames: s.latent_frames,
                height: s.latent_height,
                width: s.latent_width,
                text_len: s.text_len,
            };
            vec![one("transformer", transformer(&model.transformer, &shape, dtype)?)]
        }
        Component::VaeDecoder => vec![one("vae_decoder (first step)", step(true)?), one("vae_decoder (later steps)", step(false)?)],
        Component::VaeDecoderFirst => vec![one("vae_decoder (first step)", step(true)?)],
        Component::VaeDecoderNext => vec![one("vae_decoder (later steps)", step(false)?)],
    };
    Ok(built)
}

/// The inputs component `c` takes, named as diffusers' forward() arguments, with the shapes
/// their sizes must agree on (for error messages).
fn expected_inputs(model: &WanModel, c: Component) -> String {
    let t = &model.transformer;
    match c {
        Component::TextEncoder => "input_ids int64 [B, L], attention_mask int64 [B, L] (optional: all ones)".into(),
        Component::Transformer => format!(
            "hidden_states [B, {}, T, H, W], timestep [B] (int64 or float), encoder_hidden_states [B, L, {}]",
            t.in_channels, t.text_dim
        ),
        _ => format!("z [B, {}, T, h, w] (what the pipeline passes to vae.decode)", model.vae.z_dim),
    }
}

/// Checks the tensors of an inputs file against component `c`; returns the sizes to build the
/// graph for and the inputs converted to what the graph takes (floats to `dtype`, timesteps
/// to f32, token ids to int64). Tensors the component does not take are listed in `ignored`.
pub fn checked_inputs(
    model: &WanModel,
    c: Component,
    mut file: BTreeMap<String, HostTensor>,
    dtype: DType,
    source: &str,
) -> Result<(Sizes, HashMap<String, HostTensor>, Vec<String>)> {
    let wanted: &[&str] = match c {
        Component::TextEncoder => &["input_ids", "attention_mask"],
        Component::Transformer => &["hidden_states", "timestep", "encoder_hidden_states"],
        Component::VaeDecoder => &["z"],
        _ => bail!("exec runs the whole decoder (every latent frame): use --component vae_decoder"),
    };
    let ignored: Vec<String> = file.keys().filter(|k| !wanted.contains(&k.as_str())).cloned().collect();
    let expected = expected_inputs(model, c);
    let mut take = |name: &str| {
        file.remove(name).ok_or_else(|| anyhow!("{source} has no tensor `{name}`; the {} takes {expected}", c.name()))
    };
    let bad = |name: &str, t: &HostTensor, want: String| {
        anyhow!("input `{name}` in {source}: expected {want}, got {}", TensorType::new(t.dtype, t.dims.clone()))
    };
    let float = |name: &str, t: &HostTensor, want: &str| -> Result<HostTensor> {
        if !t.dtype.is_float() {
            return Err(bad(name, t, format!("a float tensor {want}")));
        }
        Ok(t.convert(dtype))
    };
    let mut inputs = HashMap::new();
    let sizes = match c {
        Component::TextEncoder => {
            let ids = take("input_ids")?;
            let vocab = model.text_encoder.vocab_size;
            let want = "int64 [B, L]".to_string();
            if ids.dims.len() != 2 || ids.dims.contains(&0) || ids.dtype.is_float() || ids.dtype == DType::I1 {
                return Err(bad("input_ids", &ids, want));
            }
            let ids = ids.convert(DType::I64);
            if let Some(id) = ids.to_vec::<i64>()?.into_iter().find(|&id| id < 0 || id >= vocab) {
                bail!("input `input_ids` in {source}: token id {id} is outside the vocabulary [0, {vocab})");
            }
            let (b, l) = (ids.dims[0], ids.dims[1]);
            let mask = match take("attention_mask") {
                Ok(m) if m.dims == ids.dims && !m.dtype.is_float() => m.convert(DType::I64),
                Ok(m) => return Err(bad("attention_mask", &m, format!("int64 [{b}, {l}] (the shape of input_ids)"))),
                Err(_) => HostTensor::from_slice([b, l], &vec![1i64; (b * l) as usize])?,
            };
            inputs.insert("input_ids".to_string(), ids);
            inputs.insert("attention_mask".to_string(), mask);
            Sizes { batch: b, latent_frames: 1, latent_height: 1, latent_width: 1, text_len: l }
        }
        Component::Transformer => {
            let cfg = &model.transformer;
            let p = &cfg.patch_size;
            let hs = take("hidden_states")?;
            let want = format!("[B, {}, T, H, W] with T, H, W divisible by the patch size {p:?}", cfg.in_channels);
            let d = hs.dims.clone();
            if d.len() != 5 || d[0] < 1 || d[1] != cfg.in_channels || (2..5).any(|i| d[i] < 1 || d[i] % p[i - 2] != 0) {
                return Err(bad("hidden_states", &hs, want));
            }
            let b = d[0];
            let text = take("encoder_hidden_states")?;
            if text.dims.len() != 3 || text.dims[0] != b || text.dims[1] < 1 || text.dims[2] != cfg.text_dim {
                return Err(bad("encoder_hidden_states", &text, format!("[{b}, L, {}] (B from hidden_states)", cfg.text_dim)));
            }
            let t = take("timestep")?;
            if t.dims != [b] || t.dtype == DType::I1 {
                return Err(bad("timestep", &t, format!("[{b}] (one per batch row; int64 as the pipeline passes, or float)")));
            }
            let l = text.dims[1];
            inputs.insert("hidden_states".to_string(), float("hidden_states", &hs, "[B, C, T, H, W]")?);
            inputs.insert("encoder_hidden_states".to_string(), float("encoder_hidden_states", &text, "[B, L, D]")?);
            // diffusers embeds `timestep.float()`: int64 timesteps become f32.
            inputs.insert("timestep".to_string(), t.convert(DType::F32));
            Sizes { batch: b, latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: l }
        }
        _ => {
            let z = take("z")?;
            let d = z.dims.clone();
            if d.len() != 5 || d[1] != model.vae.z_dim || d.iter().any(|&n| n < 1) {
                return Err(bad("z", &z, format!("[B, {}, T, h, w]", model.vae.z_dim)));
            }
            inputs.insert("z".to_string(), float("z", &z, "[B, C, T, h, w]")?);
            Sizes { batch: d[0], latent_frames: d[2], latent_height: d[3], latent_width: d[4], text_len: 1 }
        }
    };
    Ok((sizes, inputs, ignored))
}

/// Seeded inputs of the right sizes for timing (values do not matter for speed): floats uniform
/// in [-1, 1), timestep 999, token ids spread over the vocabulary, a full attention mask.
pub fn random_inputs(model: &WanModel, c: Component, s: &Sizes, dtype: DType, seed: u64) -> Result<HashMap<String, HostTensor>> {
    let float = |name: &str, dims: Vec<i64>| -> Result<(String, HostTensor)> {
        let ty = TensorType::new(DType::F32, dims.clone());
        Ok((name.to_string(), HostTensor::from_f32(dims, &random_input(seed, name, &ty))?.convert(dtype)))
    };
    let (b, l) = (s.batch, s.text_len);
    let inputs = match c {
        Component::TextEncoder => {
            let vocab = model.text_encoder.vocab_size as f32;
            let ty = TensorType::new(DType::F32, vec![b, l]);
            let ids: Vec<i64> = random_input(seed, "input_ids", &ty).iter().map(|u| ((u + 1.0) * 0.5 * (vocab - 1.0)) as i64).collect();
            vec![
                ("input_ids".to_string(), HostTensor::from_slice([b, l], &ids)?),
                ("attention_mask".to_string(), HostTensor::from_slice([b, l], &vec![1i64; (b * l) as usize])?),
            ]
        }
        Component::Transformer => {
            let t = &model.transformer;
            vec![
                float("hidden_states", vec![b, t.in_channels, s.latent_frames, s.latent_height, s.latent_width])?,
                ("timestep".to_string(), HostTensor::from_f32(vec![b], &vec![999.0; b as usize])?),
                float("encoder_hidden_states", vec![b, l, t.text_dim])?,
            ]
        }
        _ => vec![float("z", vec![b, model.vae.z_dim, s.latent_frames, s.latent_height, s.latent_width])?],
    };
    Ok(inputs.into_iter().collect())
}

/// A component compiled (or loaded from the cache) with its weights on the device.
pub enum Runner {
    Program(Box<Program>),
    /// The VAE decoder: both step graphs, run frame by frame over the latents.
    Vae(Box<VaeDecoder>),
}

impl Runner {
    /// Builds, lowers and compiles component `c` for `s` and uploads its weights; prints how
    /// each executable was obtained.
    pub fn prepare(
        session: &Session,
        model: &WanModel,
        weights: &WeightStore,
        c: Component,
        s: &Sizes,
        dtype: DType,
        passes: &PassArgs,
    ) -> Result<Runner> {
        if c == Component::VaeDecoder {
            if passes.passes.is_some() {
                bail!("--passes: the vae_decoder runs with the stages' pipeline, shaped by the pipeline flags (compile and dump-ir take --passes)");
            }
            let shape = VaeDecodeShape { batch: s.batch, height: s.latent_height, width: s.latent_width };
            let settings = VaeDecodeSettings { dtype, tiling: None, pipeline: passes.pipeline.options()? };
            let vae = VaeDecoder::new(&session.client, session.cache.as_ref(), &model.vae, shape, s.latent_frames, weights, &settings)
                .map_err(|e| anyhow!("{e}"))?;
            for (label, times) in vae.executables() {
                println!("executable: vae_decoder ({label}) {}", times.describe());
            }
            println!("weights: uploaded in {}", vidlower_runtime::timing::format_duration(vae.weights_upload));
            return Ok(Runner::Vae(Box::new(vae)));
        }
        let mut built = graphs(model, weights, c, s, dtype)?;
        let g = built.pop().expect("one graph for this component");
        let (label, cache_label) = (g.label.clone(), g.cache_label());
        let format = passes.pipeline.format();
        let lowered =
            lower(g.graph, pipeline(passes, g.folder)?, format, DumpAfter::None, &mut |_, _| {}).with_context(|| label.clone())?;
        let spinner = crate::commands::spinner("compiling");
        let compiled = compile_cached(
            &session.client,
            session.cache.as_ref(),
            &lowered.module,
            &CompileOptions::for_graph(&lowered.graph, format),
            &cache_label,
        );
        spinner.finish_and_clear();
        let compiled = compiled.with_context(|| label.clone())?;
        for w in &compiled.warnings {
            eprintln!("warning: {w}");
        }
        println!("executable: {label} {}", compiled.describe());
        let start = std::time::Instant::now();
        let mut program = Program::new(compiled.executable, Signature::of(&lowered.graph), &session.client)?;
        program.upload_weights_from(weights).map_err(|e| anyhow!("{label}: {e}"))?;
        println!("weights: uploaded in {}", vidlower_runtime::timing::format_duration(start.elapsed()));
        Ok(Runner::Program(Box::new(program)))
    }

    /// One forward: the outputs by name (`last_hidden_state` or `sample`).
    pub fn run(&mut self, inputs: &HashMap<String, HostTensor>) -> Result<Vec<(String, HostTensor)>> {
        match self {
            Runner::Program(p) => Ok(p.run(inputs)?),
            Runner::Vae(v) => {
                let z = inputs.get("z").ok_or_else(|| anyhow!("the vae_decoder takes `z`"))?;
                Ok(vec![("sample".to_string(), v.decode(z).map_err(|e| anyhow!("{e}"))?)])
            }
        }
    }
}
