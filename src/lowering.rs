//! Which passes a command runs (the flags' side); the lowering itself is the runtime's one path
//! ([`vidlower_runtime::lowering::lower`]), shared with the stages.

use crate::args::PassArgs;
use anyhow::{Context, Result};
use vidlower_frontends::family::RuleTable;
use vidlower_passes::{PassManager, Target};

pub use vidlower_runtime::lowering::lower;

/// The pass pipeline `args` selects: the standard one shaped by the pipeline flags for `target`
/// (with the component's built-in sharding `rules`), or the `--passes` list (which the pipeline
/// flags would not reach, so they are refused next to it).
pub fn pipeline(args: &PassArgs, rules: Option<RuleTable>, target: Target) -> Result<PassManager> {
    if let (Some(_), Some(flag)) = (&args.passes, args.pipeline.given()) {
        anyhow::bail!("{flag} shapes the standard pipeline, which --passes replaces; name the passes instead")
    }
    match &args.passes {
        None => {
            let built_in = rules.map(|t| vidlower_passes::sharding::ShardingRules::built_in("built-in rules", t));
            Ok(args.pipeline.options(target)?.pipeline_for(built_in))
        }
        Some(names) if names.len() == 1 && names[0] == "none" => Ok(PassManager::new()),
        Some(names) => Ok(PassManager::from_names(names).context("--passes")?),
    }
}
