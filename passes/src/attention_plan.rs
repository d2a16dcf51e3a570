//! Which lowering each attention op gets on a target, and why: the one decision behind both the
//! standard pipeline's attention passes ([`lowering_passes`]) and `compile --explain`'s line per
//! attention op ([`plan`]), so the two cannot disagree.
//!
//! `--attention auto` by target:
//! - CUDA: cuDNN's fused attention wherever [`cudnn_attention::support`] takes the op (bf16/f16,
//!   head_dim a multiple of 8 up to 128, no window or the causal one, a boolean or q-dtype mask),
//!   whatever its kind (self, cross, joint); what cuDNN leaves goes by the key count, as on the
//!   CPU. Measured on an H200 (Wan 1.3B, 480x832x81, bf16): cuDNN 1.10 s per CFG step, blockwise
//!   5.80 s.
//! - CPU: vidlower's fused CPU kernel wherever [`cpu_attention::support`] takes the op (no window;
//!   no mask or a key mask; the runtime registers the kernel with the CPU plugin) and the graph is not
//!   sharded (XLA cannot partition the call); what it leaves, blockwise above
//!   [`CPU_LONG_ATTENTION_KEYS`] (512) keys, dense below (measured: XLA CPU's dense attention is
//!   slower from a few hundred keys on). Measured at [2, 8, 2530, 64] f32 on 2 cores: the
//!   kernel ~165 ms, XLA's dense or blockwise 294-344 ms.
//! - TPU and unknown platforms: blockwise above [`LONG_ATTENTION_KEYS`] (20000, the seeds'
//!   threshold; not measured there), until a Pallas/Mosaic kernel is emitted for TPU (none is yet).
//!
//! [`CPU_LONG_ATTENTION_KEYS`]: crate::pipeline_options::CPU_LONG_ATTENTION_KEYS
//! [`LONG_ATTENTION_KEYS`]: crate::pipeline_options::LONG_ATTENTION_KEYS
//!
//! The explicit lowerings (`dense`, `blockwise`, `cudnn`) apply as asked on every target
//! (`cudnn` is refused on a non-CUDA plugin before this runs: see `check_target`).

use crate::blockwise_attention::BlockwiseAttention;
use crate::cpu_attention::{self, CpuAttention};
use crate::cudnn_attention::{self, CudnnAttention};
use crate::pipeline_options::{long_attention_keys, AttentionLowering};
use crate::target::Target;
use crate::Pass;
use std::fmt;
use vidlower_ir::{AttentionKind, Graph, Op, TensorType, ValueId};

/// What an attention op becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lowered {
    /// cuDNN's fused attention custom call (`cudnn_attention`).
    Cudnn,
    /// vidlower's fused CPU kernel, an FFI custom call (`cpu_attention`).
    CpuKernel,
    /// The online-softmax loop over key blocks (`blockwise_attention`).
    Blockwise,
    /// The [Sq, Sk] scores and softmax (`decompose`).
    Dense,
}

impl fmt::Display for Lowered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lowered::Cudnn => "cudnn",
            Lowered::CpuKernel => "cpu-kernel",
            Lowered::Blockwise => "blockwise",
            Lowered::Dense => "dense",
        })
    }
}

/// An attention op as the lowering sees it: its kind, operand types and window.
#[derive(Clone, Debug)]
pub struct AttentionSite {
    pub value: ValueId,
    pub kind: AttentionKind,
    pub q: TensorType,
    pub k: TensorType,
    pub v: TensorType,
    pub mask: Option<TensorType>,
    pub window: Option<(i64, i64)>,
    /// The positions the window applies among (a joint attention's video tokens), if limited.
    pub window_span: Option<(i64, i64)>,
}

impl AttentionSite {
    /// The attention op `v` of `graph`, or `None` for any other op.
    pub fn of(graph: &Graph, v: ValueId) -> Option<AttentionSite> {
        let node = graph.node(v);
        let Op::Attention { kind, has_mask, window, window_span, .. } = node.op else { return None };
        let ty = |i: usize| graph.tensor_ty(node.operands[i]).clone();
        let mask = has_mask.then(|| ty(3));
        Some(AttentionSite { value: v, kind, q: ty(0), k: ty(1), v: ty(2), mask, window, window_span })
    }

    /// Keys per query: what decides whether the [Sq, Sk] scores are worth avoiding.
    pub fn keys(&self) -> i64 {
        self.k.shape[2]
    }
}

/// The lowering chosen for one op, and the reason `compile --explain` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub lowered: Lowered,
    pub reason: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.lowered, self.reason)
    }
}

const TPU_NOTE: &str = "TPU has no fused kernel yet (Pallas/Mosaic not emitted)";

/// Whether `--attention auto` may use vidlower's CPU kernel: on the CPU, unsharded.
pub fn cpu_kernel_allowed(target: Target, sharded: bool) -> bool {
    target == Target::Cpu && !sharded
}

/// The lowering `lowering` gives `site` on `target` (`sharded`: the graph is laid out over a mesh).
pub fn choose(lowering: AttentionLowering, target: Target, sharded: bool, site: &AttentionSite) -> Decision {
    let decision = |lowered, reason: String| Decision { lowered, reason };
    let cudnn = || cudnn_attention::support(&site.q, &site.k, &site.v, site.mask.as_ref(), site.window, site.window_span);
    match lowering {
        AttentionLowering::Dense => decision(Lowered::Dense, "--attention dense".into()),
        AttentionLowering::Blockwise => decision(Lowered::Blockwise, "--attention blockwise".into()),
        AttentionLowering::Cudnn => match cudnn() {
            Ok(causal) => decision(Lowered::Cudnn, cudnn_reason(site, causal)),
            Err(why) => decision(Lowered::Dense, why),
        },
        AttentionLowering::Auto => {
            let note = match target {
                Target::Cuda => match cudnn() {
                    Ok(causal) => return decision(Lowered::Cudnn, cudnn_reason(site, causal)),
                    Err(why) => Some(why),
                },
                Target::Tpu => Some(TPU_NOTE.to_string()),
                Target::Cpu if cpu_kernel_allowed(target, sharded) => {
                    match cpu_attention::support(&site.q, &site.k, &site.v, site.mask.as_ref(), site.window) {
                        Ok(()) => {
                            let mask = if site.mask.is_some() { "key mask as bias" } else { "no mask" };
                            return decision(Lowered::CpuKernel, format!("{}, {mask}, no window", site.q.dtype));
                        }
                        Err(why) => Some(why),
                    }
                }
                Target::Cpu => Some("sharded (XLA cannot partition the CPU kernel's call)".to_string()),
                Target::Other => None,
            };
            let (keys, long) = (site.keys(), long_attention_keys(target));
            let (lowered, by_keys) = if keys > long {
                (Lowered::Blockwise, format!("{keys} keys > {long}"))
            } else {
                (Lowered::Dense, format!("{keys} keys <= {long}"))
            };
            let reason = match note {
                Some(note) => format!("{note}; {by_keys}"),
                None => by_keys,
            };
            decision(lowered, reason)
        }
    }
}

fn cudnn_reason(site: &AttentionSite, causal: bool) -> String {
    let mask = if site.mask.is_some() { "mask as bias" } else { "no mask" };
    let causal = if causal { ", causal" } else { "" };
    format!("{}, head_dim {}, {mask}{causal}", site.q.dtype, site.q.shape[3])
}

/// The passes that carry out [`choose`] for every attention op: `cudnn_attention` lowers exactly
/// the ops [`cudnn_attention::support`] takes, and `blockwise_attention` with `min_keys` exactly
/// those above the threshold that are left; `decompose` later makes the rest dense. `blocks`
/// are the blockwise lowering's block sizes and base.
pub fn lowering_passes(lowering: AttentionLowering, target: Target, sharded: bool, blocks: BlockwiseAttention) -> Vec<Box<dyn Pass>> {
    let long_only = BlockwiseAttention { min_keys: long_attention_keys(target) + 1, ..blocks };
    match (lowering, target) {
        (AttentionLowering::Dense, _) => vec![],
        (AttentionLowering::Blockwise, _) => vec![Box::new(BlockwiseAttention { min_keys: 0, ..blocks })],
        (AttentionLowering::Cudnn, _) => vec![Box::new(CudnnAttention)],
        (AttentionLowering::Auto, Target::Cuda) => vec![Box::new(CudnnAttention), Box::new(long_only)],
        (AttentionLowering::Auto, Target::Cpu) if cpu_kernel_allowed(target, sharded) => vec![Box::new(CpuAttention), Box::new(long_only)],
        (AttentionLowering::Auto, Target::Cpu | Target::Tpu | Target::Other) => vec![Box::new(long_only)],
    }
}

/// What `lowering` on `target` resolves to, for stage summaries ("auto on cuda -> cudnn where
/// it applies, ...").
pub fn describe(lowering: AttentionLowering, target: Target, sharded: bool) -> String {
    let by_keys = format!("blockwise above {} keys, dense below", long_attention_keys(target));
    match (lowering, target) {
        (AttentionLowering::Auto, Target::Cpu) if cpu_kernel_allowed(target, sharded) => {
            format!("auto on cpu -> vidlower's cpu kernel where it applies, else {by_keys}")
        }
        (AttentionLowering::Auto, Target::Cuda) => format!("auto on cuda -> cudnn where it applies, else {by_keys}"),
        (AttentionLowering::Auto, Target::Tpu) => format!("auto on tpu -> {by_keys} (no Pallas/Mosaic kernel yet)"),
        (AttentionLowering::Auto, target) => format!("auto on {target} -> {by_keys}"),
        (explicit, _) => explicit.to_string(),
    }
}

/// One attention op of a graph and the lowering it gets.
#[derive(Clone, Debug)]
pub struct PlannedAttention {
    pub site: AttentionSite,
    pub decision: Decision,
}

impl fmt::Display for PlannedAttention {
    /// "self q bf16[2,12,32760,128] k bf16[2,12,32760,128] mask none -> cudnn: bf16, ...". (No
    /// value id: the plan is made after the passes before the lowering, which renumber.)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.site;
        let mask = s.mask.as_ref().map_or("none".to_string(), |m| m.to_string());
        write!(f, "{} q {} k {} mask {}", s.kind.name(), s.q, s.k, mask)?;
        if let Some((l, r)) = s.window {
            write!(f, " window ({l}, {r})")?;
        }
        write!(f, " -> {}", self.decision)
    }
}

/// Every attention op of `graph` (top level, in definition order) with its lowering. Run it on
/// the graph the lowering sees (after the passes before it: see
/// `PipelineOptions::attention_plan`).
pub fn plan(graph: &Graph, lowering: AttentionLowering, target: Target, sharded: bool) -> Vec<PlannedAttention> {
    (0..graph.nodes.len())
        .filter_map(|i| AttentionSite::of(graph, ValueId(i as u32)))
        .map(|site| {
            let decision = choose(lowering, target, sharded, &site);
            PlannedAttention { site, decision }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;
    use vidlower_ir::text::parse;

    /// A bf16 joint attention with a key padding mask, the same in f32, a long f32 self
    /// attention (20001 keys) with head_dim 8, and a mid-length one (600 keys: blockwise on CPU
    /// only).
    const GRAPH: &str = r#"
graph @attn {
  %0 = input "q" : bf16[1,2,16,64]
  %1 = input "kv" : bf16[1,2,16,64]
  %2 = input "mask" : i1[1,1,1,16]
  %3 = attention(%0, %1, %1, %2) {kind=joint, scale=0.125, mask=true} : bf16[1,2,16,64]
  %4 = input "q32" : f32[1,2,16,64]
  %5 = input "kv32" : f32[1,2,16,64]
  %6 = attention(%4, %5, %5, %2) {kind=joint, scale=0.125, mask=true} : f32[1,2,16,64]
  %7 = input "long" : f32[1,1,20001,8]
  %8 = attention(%7, %7, %7) {kind=self, scale=0.25, mask=false} : f32[1,1,20001,8]
  output "a" = %3
  output "b" = %6
  %9 = input "mid" : f32[1,1,600,8]
  %10 = attention(%9, %9, %9) {kind=self, scale=0.25, mask=false} : f32[1,1,600,8]
  output "c" = %8
  output "d" = %10
}"#;

    fn decisions(target: Target) -> Vec<(Lowered, String)> {
        decisions_of(target, false)
    }

    fn decisions_of(target: Target, sharded: bool) -> Vec<(Lowered, String)> {
        let g = parse(GRAPH).unwrap();
        plan(&g, AttentionLowering::Auto, target, sharded).into_iter().map(|p| (p.decision.lowered, p.decision.reason)).collect()
    }

    /// Runs the passes the plan names and counts what they made: fused custom calls (cuDNN's or
    /// the CPU kernel's), the attention ops lowered otherwise (blockwise: the only other pass)
    /// and those left for `decompose`.
    fn lowered_counts(target: Target, sharded: bool) -> (usize, usize, usize) {
        let mut pm = PassManager::new();
        for p in lowering_passes(AttentionLowering::Auto, target, sharded, BlockwiseAttention::default()) {
            pm.add(p);
        }
        let g = pm.run(parse(GRAPH).unwrap()).unwrap().graph;
        let c = g.op_counts();
        let n = |op: &str| c.get(op).copied().unwrap_or(0);
        let (fused, left) = (n("custom_call"), n("attention"));
        (fused, 4 - fused - left, left)
    }

    fn planned_counts(target: Target, sharded: bool) -> (usize, usize, usize) {
        let d = decisions_of(target, sharded);
        let n = |l: Lowered| d.iter().filter(|(x, _)| *x == l).count();
        (n(Lowered::Cudnn) + n(Lowered::CpuKernel), n(Lowered::Blockwise), n(Lowered::Dense))
    }

    #[test]
    fn cpu_takes_its_kernel_for_unmasked_and_key_masked_attention() {
        let d = decisions(Target::Cpu);
        assert_eq!(d[0], (Lowered::CpuKernel, "bf16, key mask as bias, no window".to_string()));
        assert_eq!(d[1], (Lowered::CpuKernel, "f32, key mask as bias, no window".to_string()));
        assert_eq!(d[2], (Lowered::CpuKernel, "f32, no mask, no window".to_string()));
        assert_eq!(d[3], (Lowered::CpuKernel, "f32, no mask, no window".to_string()));
        // A mask over queries goes by the key rule.
        let site = |mask: &str| {
            let text = format!("graph @m {{\n  %0 = input \"q\" : f32[1,2,16,8]\n  %1 = input \"m\" : {mask}\n  %2 = attention(%0, %0, %0, %1) {{kind=self, scale=0.5, mask=true}} : f32[1,2,16,8]\n  output \"o\" = %2\n}}");
            plan(&parse(&text).unwrap(), AttentionLowering::Auto, Target::Cpu, false).remove(0).decision
        };
        let why = site("i1[1,1,16,16]");
        assert_eq!((why.lowered, why.reason.as_str()), (Lowered::Dense, "mask i1[1,1,16,16] (the CPU kernel takes key masks [B or 1, 1, 1, Sk]); 16 keys <= 512"));
    }

    #[test]
    fn sharded_cpu_lowers_only_long_attention_blockwise() {
        let d = decisions_of(Target::Cpu, true);
        let why = "sharded (XLA cannot partition the CPU kernel's call)";
        assert_eq!(d[0], (Lowered::Dense, format!("{why}; 16 keys <= 512")));
        assert_eq!(d[2], (Lowered::Blockwise, format!("{why}; 20001 keys > 512")));
        assert_eq!(d[3], (Lowered::Blockwise, format!("{why}; 600 keys > 512")));
        let other = decisions(Target::Other);
        assert_eq!(other[2], (Lowered::Blockwise, "20001 keys > 20000".to_string()));
        assert_eq!(other[3], (Lowered::Dense, "600 keys <= 20000".to_string()));
    }

    #[test]
    fn cuda_takes_cudnn_for_bf16_and_goes_by_keys_for_the_rest() {
        let d = decisions(Target::Cuda);
        assert_eq!(d[0], (Lowered::Cudnn, "bf16, head_dim 64, mask as bias".to_string()));
        assert_eq!(d[1], (Lowered::Dense, "f32 (cuDNN takes bf16/f16); 16 keys <= 20000".to_string()));
        assert_eq!(d[2], (Lowered::Blockwise, "f32 (cuDNN takes bf16/f16); 20001 keys > 20000".to_string()));
    }

    #[test]
    fn tpu_goes_by_keys_and_says_why_no_fused_kernel() {
        let d = decisions(Target::Tpu);
        let lowered: Vec<Lowered> = d.iter().map(|(l, _)| *l).collect();
        assert_eq!(lowered, [Lowered::Dense, Lowered::Dense, Lowered::Blockwise, Lowered::Dense]);
        assert_eq!(d[2].1, "TPU has no fused kernel yet (Pallas/Mosaic not emitted); 20001 keys > 20000");
    }

    #[test]
    fn the_passes_do_what_the_plan_says_on_every_target() {
        for target in [Target::Cpu, Target::Cuda, Target::Tpu, Target::Other] {
            for sharded in [false, true] {
                assert_eq!(lowered_counts(target, sharded), planned_counts(target, sharded), "{target} sharded {sharded}");
            }
        }
        assert_eq!(lowered_counts(Target::Cuda, false), (1, 1, 2));
        assert_eq!(lowered_counts(Target::Cpu, false), (4, 0, 0));
        assert_eq!(lowered_counts(Target::Cpu, true), (0, 2, 2));
    }

    #[test]
    fn explicit_lowerings_apply_on_every_target() {
        let g = parse(GRAPH).unwrap();
        for target in [Target::Cpu, Target::Cuda, Target::Tpu] {
            let of = |l| plan(&g, l, target, false).into_iter().map(|p| p.decision.lowered).collect::<Vec<_>>();
            assert_eq!(of(AttentionLowering::Dense), [Lowered::Dense; 4]);
            assert_eq!(of(AttentionLowering::Blockwise), [Lowered::Blockwise; 4]);
            assert_eq!(of(AttentionLowering::Cudnn), [Lowered::Cudnn, Lowered::Dense, Lowered::Dense, Lowered::Dense]);
        }
    }

    #[test]
    fn a_planned_op_prints_its_kind_shapes_mask_and_choice() {
        let g = parse(GRAPH).unwrap();
        let p = plan(&g, AttentionLowering::Auto, Target::Cuda, false);
        assert_eq!(p[0].to_string(), "joint q bf16[1,2,16,64] k bf16[1,2,16,64] mask i1[1,1,1,16] -> cudnn: bf16, head_dim 64, mask as bias");
        assert_eq!(describe(AttentionLowering::Auto, Target::Cuda, false), "auto on cuda -> cudnn where it applies, else blockwise above 20000 keys, dense below");
        assert_eq!(describe(AttentionLowering::Dense, Target::Cuda, false), "dense");
        assert_eq!(describe(AttentionLowering::Auto, Target::Cpu, true), "auto on cpu -> blockwise above 512 keys, dense below");
        assert_eq!(describe(AttentionLowering::Auto, Target::Cpu, false), "auto on cpu -> vidlower's cpu kernel where it applies, else blockwise above 512 keys, dense below");
    }
}
