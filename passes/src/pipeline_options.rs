//! The standard pipeline and the choices that shape it: how attention is lowered (dense,
//! blockwise, cuDNN, or blockwise only where the keys are long), base-2 softmax, K smoothing, block
//! sizes and a sliding window. The CLI's `--attention`, `--exp2-softmax`, `--k-smooth`, `--bq`,
//! `--bkv`, `--bkv-compute` and `--window-size` fill a [`PipelineOptions`]; every command and every
//! stage builds its passes from one, so `compile` ahead of time and the stages make the same
//! executable (and the same cache key). The options carry the [`Target`] (from the plugin's
//! platform), which `--attention auto` follows op by op (see `attention_plan`).
//!
//! Order: `sliding_window` (changes the model, so it comes first and every lowering sees it),
//! `sharding` (needs the attention ops whole to choose context or sequence parallel), `k_smooth` (before any lowering pads the keys), the attention lowering that was chosen, then
//! `exp2_softmax` for the attention still dense when asked for, then `decompose` and the cleanups.

use crate::attention_plan::{self, PlannedAttention};
use crate::blockwise_attention::BlockwiseAttention;
use crate::sliding_window::SlidingWindow;
use crate::sharding::{AttentionSharding, RuleSource, ShardingPropagation, ShardingRules};
use crate::target::Target;
use crate::{Canonicalize, Cse, Dce, Decompose, Exp2Softmax, KSmooth, PassError, PassManager};
use vidlower_ir::{Graph, Mesh};
use std::fmt;

/// Keys above which `auto` lowers an attention blockwise (the seeds' threshold for their splash
/// kernel, which they used for their long self-attention). It applies to every kind alike (self,
/// cross, joint): the key count decides whether the [Sq, Sk] scores are worth avoiding; nothing
/// here guesses a kind from the lengths.
pub const LONG_ATTENTION_KEYS: i64 = 20_000;

/// Keys above which `auto` lowers an attention blockwise on the CPU plugin. Measured (f32, 2 cores,
/// `vidlower bench --component transformer --batch 2`, dense vs blockwise): a CogVideoX-5b-like mini
/// transformer 51.5 vs 38.5 ms at 546 keys and 463 vs 317 ms at 2530; HunyuanVideo-1.5 mini 891
/// vs 722 ms at 3560; wan2.1-tiny 28.0 vs 17.2 ms at 768 keys, 3.0 vs 2.7 ms at 512 + 72, 1.5 vs
/// 1.7 ms at 512 + 20 (cross + self). XLA CPU's dense softmax over the materialised scores loses from a few
/// hundred keys on; below that the two are equal within noise.
pub const CPU_LONG_ATTENTION_KEYS: i64 = 512;

/// The key count above which `auto` goes blockwise on `target` (for what cuDNN does not take).
pub fn long_attention_keys(target: Target) -> i64 {
    match target {
        Target::Cpu => CPU_LONG_ATTENTION_KEYS,
        // Not measured there: the seeds' threshold.
        Target::Cuda | Target::Tpu | Target::Other => LONG_ATTENTION_KEYS,
    }
}

/// How attention composites are lowered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AttentionLowering {
    /// Per op and per target (`attention_plan`): on CUDA cuDNN's fused attention wherever it
    /// applies; elsewhere, and for what cuDNN does not take, blockwise for attention with more
    /// than [`long_attention_keys`] keys (512 on CPU, 20000 elsewhere), dense otherwise, whatever
    /// the attention's kind.
    #[default]
    Auto,
    /// Every attention dense: the S x S scores exist.
    Dense,
    /// Every attention as an online-softmax loop over key blocks.
    Blockwise,
    /// cuDNN's fused attention custom call where it applies (CUDA, bf16/f16), dense elsewhere.
    Cudnn,
}

impl AttentionLowering {
    pub const NAMES: &'static str = "auto, dense, blockwise, cudnn";
}

impl std::str::FromStr for AttentionLowering {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "dense" => Ok(Self::Dense),
            "blockwise" => Ok(Self::Blockwise),
            "cudnn" => Ok(Self::Cudnn),
            _ => Err(format!("unknown attention lowering `{s}`; expected one of {}", Self::NAMES)),
        }
    }
}

impl fmt::Display for AttentionLowering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Dense => "dense",
            Self::Blockwise => "blockwise",
            Self::Cudnn => "cudnn",
        })
    }
}

/// Where attention is computed in base 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Exp2Choice {
    /// Inside blockwise attention (whose online softmax defers the normalisation anyway); dense
    /// attention keeps the natural base. Measured on the CPU plugin, [1,4,4096,64]: base 2 inside
    /// the blockwise loop is 0.9-1.0x the time of the natural base, while the dense base-2
    /// lowering is 1.7x slower in bf16 (its deferred divide) and within noise in f32.
    #[default]
    Auto,
    /// Everywhere: blockwise and dense (the `exp2_softmax` pass).
    On,
    /// Nowhere.
    Off,
}

impl std::str::FromStr for Exp2Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" | "true" => Ok(Self::On),
            "off" | "false" => Ok(Self::Off),
            _ => Err(format!("expected auto, on or off, got `{s}`")),
        }
    }
}

impl fmt::Display for Exp2Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto (blockwise only)",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// Laying a graph out over a device mesh (the `sharding` pass, first in the pipeline so the
/// attention strategy still sees attention ops).
#[derive(Clone, Debug)]
pub struct ShardingOptions {
    pub mesh: Mesh,
    /// Weight rules (`--rules FILE`); `None` takes the built-in rules the caller passes to
    /// [`PipelineOptions::pipeline_for`].
    pub rules: Option<ShardingRules>,
    pub attention: AttentionSharding,
    /// Emit GSPMD `mhlo.sharding` strings instead of Shardy (for plugins without Shardy).
    pub gspmd: bool,
}

/// Everything that shapes the standard pipeline.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Where the module will run (the plugin's platform): what `attention` auto follows.
    pub target: Target,
    pub attention: AttentionLowering,
    /// Attention in base 2 (scale * log2 e folded into Q).
    pub exp2_softmax: Exp2Choice,
    /// K minus its mean over the sequence before the attention lowering.
    pub k_smooth: bool,
    /// Block sizes of the blockwise lowering (caps); its `exp2` and `min_keys` are set from the
    /// other options.
    pub blocks: BlockwiseAttention,
    /// Sliding window (left, right) for self-attention and for the video tokens of a joint
    /// attention (text tokens stay global); negative = unbounded side.
    pub window: Option<(i64, i64)>,
    /// Lay the graph out over a device mesh; `None` = one device.
    pub sharding: Option<ShardingOptions>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            target: Target::Cpu,
            attention: AttentionLowering::Auto,
            exp2_softmax: Exp2Choice::Auto,
            k_smooth: true,
            blocks: BlockwiseAttention::default(),
            window: None,
            sharding: None,
        }
    }
}

impl PipelineOptions {
    /// The options without any attention rewrite: attention decomposed densely in the natural
    /// base, as before these passes existed (the reference the passes are checked against).
    pub fn plain() -> Self {
        PipelineOptions { attention: AttentionLowering::Dense, exp2_softmax: Exp2Choice::Off, k_smooth: false, ..Default::default() }
    }

    /// The pipeline these options select for a graph without built-in sharding rules.
    pub fn pipeline(&self) -> PassManager {
        self.pipeline_for(None)
    }

    /// The pipeline for a graph whose model family has `built_in_rules` (its table for this
    /// component, made with [`ShardingRules::built_in`]); they apply when no rules were given
    /// and a mesh was. `None`: weights replicated unless rules were given. The caller picks the
    /// table by the component's type, never by a folder name here.
    pub fn pipeline_for(&self, built_in_rules: Option<ShardingRules>) -> PassManager {
        let mut pm = self.before_lowering(built_in_rules);
        let blockwise = BlockwiseAttention { exp2: self.exp2_softmax != Exp2Choice::Off, ..self.blocks };
        for pass in attention_plan::lowering_passes(self.attention, self.target, self.sharding.is_some(), blockwise) {
            pm.add(pass);
        }
        if self.exp2_softmax == Exp2Choice::On {
            pm.add(Box::new(Exp2Softmax));
        }
        pm.add(Box::new(Decompose)).add(Box::new(Canonicalize)).add(Box::new(Cse)).add(Box::new(Dce));
        pm
    }

    /// The passes that run before the attention lowering: the graph they give is the one the
    /// lowering (and [`Self::attention_plan`]) sees.
    fn before_lowering(&self, built_in_rules: Option<ShardingRules>) -> PassManager {
        let mut pm = PassManager::new();
        if let Some((left, right)) = self.window {
            pm.add(Box::new(SlidingWindow { left, right }));
        }
        if let Some(s) = &self.sharding {
            let rules = s.rules.clone().or(built_in_rules).unwrap_or_else(ShardingRules::none);
            pm.add(Box::new(ShardingPropagation::new(s.mesh.clone(), rules).with_attention(s.attention)));
        }
        if self.k_smooth {
            pm.add(Box::new(KSmooth));
        }
        pm
    }

    /// Each attention op of `graph` with the lowering these options give it and why, decided
    /// as the pipeline decides (on the graph after the passes before the lowering), for
    /// `compile --explain`.
    pub fn attention_plan(&self, graph: Graph, built_in_rules: Option<ShardingRules>) -> Result<Vec<PlannedAttention>, PassError> {
        let graph = self.before_lowering(built_in_rules).run(graph)?.graph;
        Ok(attention_plan::plan(&graph, self.attention, self.target, self.sharding.is_some()))
    }

    /// One line for stage summaries and `compile`: the choices, not the pass list.
    pub fn describe(&self) -> String {
        let b = &self.blocks;
        let mut s = format!("attention {}", attention_plan::describe(self.attention, self.target, self.sharding.is_some()));
        if matches!(self.attention, AttentionLowering::Auto | AttentionLowering::Blockwise) {
            s += &format!(" (bq {}, bkv {}, bkv-compute {})", b.bq, b.bkv, b.bkv_compute);
        }
        let on = |b: bool| if b { "on" } else { "off" };
        s += &format!(", exp2 softmax {}, k smoothing {}", self.exp2_softmax, on(self.k_smooth));
        if let Some((l, r)) = self.window {
            s += &format!(", window ({l}, {r})");
        }
        if let Some(sh) = &self.sharding {
            let rules = match sh.rules.as_ref().map(|r| &r.source) {
                Some(RuleSource::File(path)) => format!("rules {}", path.display()),
                _ => "built-in rules".to_string(),
            };
            let format = if sh.gspmd { "GSPMD" } else { "Shardy" };
            s += &format!(", mesh {} ({rules}, {format})", sh.mesh);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pipeline_smooths_then_lowers_to_the_cpu_kernel_or_blockwise_in_base_2() {
        let names = PipelineOptions::default().pipeline().names();
        assert_eq!(names, ["k_smooth", "cpu_attention", "blockwise_attention", "decompose", "canonicalize", "cse", "dce"]);
        let everywhere = PipelineOptions { exp2_softmax: Exp2Choice::On, attention: AttentionLowering::Dense, ..Default::default() };
        assert_eq!(everywhere.pipeline().names(), ["k_smooth", "exp2_softmax", "decompose", "canonicalize", "cse", "dce"]);
        let plain = PipelineOptions::plain().pipeline().names();
        assert_eq!(plain, ["decompose", "canonicalize", "cse", "dce"]);
        let windowed = PipelineOptions { window: Some((4, 4)), attention: AttentionLowering::Cudnn, ..Default::default() };
        assert_eq!(windowed.pipeline().names()[..3], ["sliding_window", "k_smooth", "cudnn_attention"]);
        let cuda = PipelineOptions { target: Target::Cuda, ..Default::default() };
        assert_eq!(cuda.pipeline().names()[..3], ["k_smooth", "cudnn_attention", "blockwise_attention"]);
        for target in [Target::Tpu, Target::Other] {
            let options = PipelineOptions { target, ..Default::default() };
            assert_eq!(options.pipeline().names()[..2], ["k_smooth", "blockwise_attention"], "{target}");
        }
    }

    #[test]
    fn the_caller_passes_the_built_in_rules_and_given_rules_win() {
        let text = "graph @g {\n  %0 = input \"x\" : f32[2,4]\n  %1 = weight \"proj.weight\" : f32[4,4]\n  %2 = dot_general(%0, %1) {lhs_contract=[1], rhs_contract=[0]} : f32[2,4]\n  output \"y\" = %2\n}\n";
        let weight_layout = |options: &PipelineOptions, built_in: Option<ShardingRules>| {
            let g = options.pipeline_for(built_in).run(vidlower_ir::text::parse(text).unwrap()).unwrap().graph;
            let w = g.inputs.iter().find(|&&v| g.input_name(v) == Some("proj.weight")).unwrap();
            g.node(*w).sharding.as_ref().unwrap().to_string()
        };
        let table: &[(&str, [Option<&str>; 2])] = &[(r"proj\.weight", [Some("tp"), None])];
        let sharding = ShardingOptions {
            mesh: Mesh::parse("tp=2").unwrap(),
            rules: None,
            attention: AttentionSharding::Auto,
            gspmd: false,
        };
        let options = PipelineOptions { sharding: Some(sharding.clone()), ..PipelineOptions::plain() };
        assert_eq!(weight_layout(&options, Some(ShardingRules::built_in("test", table))), "[{tp},{}]");
        assert_eq!(weight_layout(&options, None), "[{},{}]", "no built-in rules: replicated");
        let given = ShardingRules::built_in("given", &[(r"proj\.weight", [None, Some("tp")])]);
        let options = PipelineOptions { sharding: Some(ShardingOptions { rules: Some(given), ..sharding }), ..options };
        assert_eq!(weight_layout(&options, Some(ShardingRules::built_in("test", table))), "[{},{tp}]");
    }

    #[test]
    fn lowering_names_parse_and_print() {
        for name in ["auto", "dense", "blockwise", "cudnn"] {
            assert_eq!(name.parse::<AttentionLowering>().unwrap().to_string(), name);
        }
        let err = "flash".parse::<AttentionLowering>().unwrap_err();
        assert_eq!(err, "unknown attention lowering `flash`; expected one of auto, dense, blockwise, cudnn");
    }
}
