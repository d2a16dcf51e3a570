//! vidlower's passes: named `Graph -> Graph` rewrites, one per file, and the [`PassManager`]
//! that runs a pipeline of them, verifying after each, timing each and dumping the IR on request.
//!
//! The default pipeline ([`DEFAULT_PIPELINE`]) is `decompose, canonicalize, cse, dce`:
//! `decompose` first because the backend has no composite ops yet, and the cleanups after it
//! because decompositions leave foldable constants and repeated subexpressions behind.

pub mod attention_plan;
pub mod blockwise_attention;
pub mod canonicalize;
pub mod cpu_attention;
pub mod cudnn_attention;
pub mod cse;
pub mod dce;
pub mod decompose;
pub mod error;
pub mod exp2_softmax;
pub mod k_smooth;
pub mod key;
pub mod manager;
pub mod pass;
pub mod pipeline_options;
pub mod registry;
pub mod rewrite;
pub mod sliding_window;
pub mod target;
#[cfg(test)]
mod test_support;
pub mod sharding;

pub use blockwise_attention::BlockwiseAttention;
pub use canonicalize::Canonicalize;
pub use cpu_attention::CpuAttention;
pub use cudnn_attention::CudnnAttention;
pub use cse::Cse;
pub use dce::Dce;
pub use decompose::Decompose;
pub use error::PassError;
pub use exp2_softmax::Exp2Softmax;
pub use k_smooth::KSmooth;
pub use manager::{default_pipeline, DumpAfter, PassManager, PassReport, PipelineRun};
pub use pass::Pass;
pub use target::Target;
pub use sharding::{AttentionSharding, ShardingPropagation, ShardingReport, ShardingRules};
pub use registry::{create_pass, known_passes, PassInfo, DEFAULT_PIPELINE, REGISTRY};
