//! The memory check `generate` and the stage commands make before any work (the same plan
//! `vidlower plan` prints): a stage predicted not to fit is refused with one line naming it and
//! the flags that would make it fit. After the run, the measured peak is printed next to the
//! prediction, so the plan can be checked on any machine.

use crate::session::Session;
use anyhow::Result;
use clap::Args;
use vidlower_runtime::memory_plan::{bytes, parse_bytes, proc_status, MemoryPlan};
use vidlower_runtime::stages::memory_plan::{plan, PlanRequest};
use vidlower_runtime::stages::model::OpenedModel;

/// Flags of the memory check.
#[derive(Args, Clone, Debug, Default)]
pub struct MemoryArgs {
    /// Plan against this much memory (host, and each accelerator) instead of what the machine
    /// has, e.g. 8GiB or 500MB.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub memory_limit: Option<u64>,
    /// Skip the memory check before the run (a run that does not fit then fails in the allocator).
    #[arg(long, conflicts_with = "memory_limit")]
    pub no_memory_check: bool,
}

/// Plans `stages` of the run `r` (compiling through the cache) and refuses a stage that cannot
/// fit; prints one line per stage. `None` with --no-memory-check.
pub fn check(args: &MemoryArgs, model: &OpenedModel, session: &Session, r: &PlanRequest, stages: &[u8]) -> Result<Option<MemoryPlan>> {
    if args.no_memory_check {
        return Ok(None);
    }
    let plan = plan(model, &session.client, session.cache.as_ref(), r, stages, args.memory_limit)?;
    plan.check()?;
    let capacity = plan.capacity.host.map_or_else(|| "unknown".into(), bytes);
    for s in &plan.stages {
        println!("memory: {}: predicted peak {} of {capacity}", s.title(), bytes(plan.host_peak(s)));
    }
    Ok(Some(plan))
}

/// The measured peak of this process next to the predicted one (the largest stage's).
pub fn report(plan: Option<&MemoryPlan>) {
    let (Some(plan), Some(peak)) = (plan, proc_status("VmHWM")) else { return };
    let predicted = plan.stages.iter().map(|s| plan.host_peak(s)).max().unwrap_or(0);
    println!("memory: peak RSS {} measured (VmHWM), {} predicted [{peak} / {predicted} bytes]", bytes(peak), bytes(predicted));
}
