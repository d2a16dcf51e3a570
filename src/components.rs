//! A model's components for the graph commands (`compile`, `dump-ir`, `exec`, `bench`): the
//! `--component` names, their graphs built by the family exactly as the stages build them (same
//! sizes, dtypes and weight names, so `vidlower compile` fills the cache with what a stage run
//! then hits), and a runner for one forward. Nothing here knows a family.

use crate::args::PassArgs;
use crate::lowering::pipeline;
use crate::session::Session;
use anyhow::{anyhow, bail, Result};
use clap::ValueEnum;
use std::collections::HashMap;
use vidlower_frontends::family::{Component, RuleTable};
use vidlower_frontends::nn::vae_decoder::{TileKnobs, VaeDecodeShape};
use vidlower_ir::{DType, Graph};
use vidlower_runtime::program::Program;
use vidlower_runtime::stages::compiled::{prepare, use_stored_names};
use vidlower_runtime::stages::model::OpenedModel;
use vidlower_runtime::stages::vae_decode::{VaeDecodeSettings, VaeDecoder};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

pub use vidlower_frontends::family::Sizes;

/// `--component`: a part of the model, named as in the model directory and the diffusers
/// pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ComponentArg {
    /// The text encoder: input_ids, attention_mask -> last_hidden_state (stage 1).
    #[value(name = "text_encoder", alias = "text-encoder")]
    TextEncoder,
    /// The second text encoder, where the family has one (stage 1).
    #[value(name = "text_encoder_2", alias = "text-encoder-2")]
    TextEncoder2,
    /// The transformer: hidden_states, timestep, encoder_hidden_states, ... -> sample (stage 2).
    #[value(name = "transformer")]
    Transformer,
    /// The VAE decoder, z -> sample (stage 3): its step graphs, run over every latent frame.
    #[value(name = "vae_decoder", alias = "vae-decoder")]
    VaeDecoder,
    /// The VAE decoder's first-step graph only (compile, dump-ir).
    #[value(name = "vae_decoder_first", alias = "vae-decoder-first")]
    VaeDecoderFirst,
    /// The VAE decoder's later-steps graph only (compile, dump-ir).
    #[value(name = "vae_decoder_next", alias = "vae-decoder-next")]
    VaeDecoderNext,
}

impl ComponentArg {
    /// The family component it names.
    pub fn component(self) -> Component {
        match self {
            ComponentArg::TextEncoder => Component::TextEncoder,
            ComponentArg::TextEncoder2 => Component::TextEncoder2,
            ComponentArg::Transformer => Component::Transformer,
            _ => Component::VaeDecoder,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ComponentArg::VaeDecoderFirst => "vae_decoder_first",
            ComponentArg::VaeDecoderNext => "vae_decoder_next",
            c => c.component().name(),
        }
    }

    /// Which of the component's graphs it selects (by label).
    fn keeps(self, label: &str) -> bool {
        match self {
            ComponentArg::VaeDecoderFirst => label.contains("first"),
            ComponentArg::VaeDecoderNext => !label.contains("first"),
            _ => true,
        }
    }
}

/// A graph, what to call it, and the built-in sharding rules of its component.
pub struct ComponentGraph {
    pub label: String,
    pub graph: Graph,
    pub rules: Option<RuleTable>,
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

/// The graphs `c` selects at `s` in `dtype`, as the stages build them; graph weights the
/// checkpoint stores under another name (tied embeddings) take that name.
pub fn graphs(model: &OpenedModel, weights: &WeightStore, c: ComponentArg, s: &Sizes, dtype: DType) -> Result<Vec<ComponentGraph>> {
    let component = c.component();
    let mut out = Vec::new();
    for g in model.graphs(component, s, dtype)? {
        if !c.keeps(&g.label) {
            continue;
        }
        let mut graph = g.graph;
        use_stored_names(&mut graph, weights, &|name| model.weight_aliases(component, name));
        out.push(ComponentGraph { label: g.label, graph, rules: model.sharding_rules(component) });
    }
    Ok(out)
}

/// A component compiled (or loaded from the cache) with its weights on the device.
pub enum Runner {
    Program(Box<Program>),
    /// The VAE decoder: its step graphs, run over the latents' frames.
    Vae(Box<VaeDecoder>),
}

impl Runner {
    /// Builds, lowers (the stages' one path) and compiles component `c` for `s` and uploads its
    /// weights; prints how each executable was obtained.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        session: &Session,
        model: &OpenedModel,
        weights: &WeightStore,
        c: ComponentArg,
        s: &Sizes,
        dtype: DType,
        passes: &PassArgs,
        tiling: Option<TileKnobs>,
    ) -> Result<Runner> {
        if tiling.is_some() && c.component() != Component::VaeDecoder {
            bail!("--vae-tiling applies to the vae_decoder, not the {}", c.name());
        }
        if c.component() == Component::VaeDecoder {
            if passes.passes.is_some() {
                bail!("--passes: the vae_decoder runs with the stages' pipeline, shaped by the pipeline flags (compile and dump-ir take --passes)");
            }
            let shape = VaeDecodeShape { batch: s.batch, height: s.latent_height, width: s.latent_width };
            let settings = VaeDecodeSettings { dtype, tiling, pipeline: passes.pipeline.options(session.target()?)? };
            let graphs = model.vae_decoder()?;
            if let Some(knobs) = &settings.tiling {
                graphs.tile_geometry(knobs).map_err(|e| anyhow!("{e}"))?;
            }
            let vae = VaeDecoder::new(&session.client, session.cache.as_ref(), graphs.as_ref(), shape, s.latent_frames, weights, &settings)
                .map_err(|e| anyhow!("{e}"))?;
            for (label, times) in vae.executables() {
                println!("executable: vae_decoder ({label}) {}", times.describe());
            }
            println!("weights: uploaded in {}", vidlower_runtime::timing::format_duration(vae.weights_upload));
            return Ok(Runner::Vae(Box::new(vae)));
        }
        let mut built = graphs(model, weights, c, s, dtype)?;
        let g = built.pop().ok_or_else(|| anyhow!("{}: no graph", c.name()))?;
        let format = passes.pipeline.format();
        let (program, times) = prepare(&g.label, g.graph, pipeline(passes, g.rules, session.target()?)?, format, &session.client, session.cache.as_ref(), weights)?;
        println!("executable: {} {}", g.label, times.describe());
        if let Some(lora) = weights.lora() {
            println!("lora: merged {}", lora.describe());
        }
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
