//! The pass registry: every pass by name, so pipelines can be written as lists of names
//! (`--passes decompose,cse`) and a wrong name is answered with the list of right ones.

use crate::{BlockwiseAttention, Canonicalize, Cse, Dce, Decompose, Pass, PassError};
use crate::{CpuAttention, CudnnAttention, Exp2Softmax, KSmooth};

/// One registered pass.
pub struct PassInfo {
    /// The name pipelines use; equal to the pass's `Pass::name`.
    pub name: &'static str,
    /// One line for `--help` and `--list-passes`.
    pub summary: &'static str,
    /// Makes the pass.
    pub create: fn() -> Box<dyn Pass>,
}

/// Every pass, in the order the CLI lists them.
pub const REGISTRY: &[PassInfo] = &[
    PassInfo {
        name: Decompose::NAME,
        summary: "lower composite ops (softmax, attention, norms, gelu) to primitives",
        create: || Box::new(Decompose),
    },
    PassInfo {
        name: Canonicalize::NAME,
        summary: "fold constants, collapse shape-op chains, remove x*1, x+0 and no-op converts",
        create: || Box::new(Canonicalize),
    },
    PassInfo { name: Cse::NAME, summary: "merge identical nodes", create: || Box::new(Cse) },
    PassInfo { name: Dce::NAME, summary: "remove nodes no output depends on", create: || Box::new(Dce) },
    PassInfo {
        name: KSmooth::NAME,
        summary: "attention: K minus its mean over the sequence (exact; better bf16 accuracy)",
        create: || Box::new(KSmooth),
    },
    PassInfo {
        name: Exp2Softmax::NAME,
        summary: "lower attention in base 2: scale*log2(e) folded into Q, normalise after PV",
        create: || Box::new(Exp2Softmax),
    },
    PassInfo {
        name: BlockwiseAttention::NAME,
        summary: "lower attention to an online-softmax loop over key blocks (no S x S scores); before decompose",
        create: || Box::new(BlockwiseAttention::default()),
    },
    PassInfo {
        name: CudnnAttention::NAME,
        summary: "CUDA: attention cuDNN supports (bf16/f16, head_dim <= 128) to the cuDNN flash-attention custom call",
        create: || Box::new(CudnnAttention),
    },
    PassInfo {
        name: CpuAttention::NAME,
        summary: "CPU: attention without mask or window to vidlower's fused CPU kernel (an XLA FFI custom call the runtime registers)",
        create: || Box::new(CpuAttention),
    },
];

/// The pipeline `compile` runs: decompose first (the backend has no composite ops yet), then the
/// cleanups, which also tidy what decompose leaves behind.
pub const DEFAULT_PIPELINE: &[&str] = &[Decompose::NAME, Canonicalize::NAME, Cse::NAME, Dce::NAME];

/// The registered pass names, comma-separated, for error messages and help text.
pub fn known_passes() -> String {
    REGISTRY.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// The pass called `name`, or an error listing the known names.
pub fn create_pass(name: &str) -> Result<Box<dyn Pass>, PassError> {
    REGISTRY
        .iter()
        .find(|p| p.name == name)
        .map(|p| (p.create)())
        .ok_or_else(|| PassError::UnknownPass { name: name.to_string(), known: known_passes() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_match_the_passes() {
        for info in REGISTRY {
            assert_eq!((info.create)().name(), info.name);
        }
        for name in DEFAULT_PIPELINE {
            assert!(create_pass(name).is_ok());
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = create_pass("cse2").err().unwrap();
        assert_eq!(err.to_string(), "unknown pass `cse2`; known passes: decompose, canonicalize, cse, dce, k_smooth, exp2_softmax, blockwise_attention, cudnn_attention, cpu_attention");
    }
}
