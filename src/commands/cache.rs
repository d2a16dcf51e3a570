//! `vidlower cache ls|clear`.

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use vidlower_runtime::cache::ExecutableCache;

#[derive(Args)]
pub struct CacheArgs {
    /// Directory of the executable cache (default: the user cache dir, vidlower/executables).
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: CacheAction,
}

#[derive(Subcommand)]
enum CacheAction {
    /// List the cached executables.
    Ls,
    /// Delete every cached executable.
    Clear,
}

pub fn run(args: CacheArgs) -> Result<()> {
    let cache = crate::session::open_cache(args.cache_dir.as_deref())?;
    match args.action {
        CacheAction::Ls => list(&cache),
        CacheAction::Clear => {
            let (count, bytes) = cache.clear()?;
            println!("removed {count} entries ({}) from {}", human_bytes(bytes), cache.dir().display());
            Ok(())
        }
    }
}

fn list(cache: &ExecutableCache) -> Result<()> {
    let entries = cache.list()?;
    println!("{} ({} entries, {})", cache.dir().display(), entries.len(), human_bytes(cache.total_size()?));
    for e in entries {
        let age = e
            .created
            .and_then(|t| t.elapsed().ok())
            .map(|d| format!("{}s ago", d.as_secs()))
            .unwrap_or_else(|| "?".into());
        let problem = e.problem.map(|p| format!("  CORRUPT: {p}")).unwrap_or_default();
        println!(
            "  {}  {:>10}  {:<8} {:<24} {}{problem}",
            &e.key.as_str()[..16],
            human_bytes(e.size),
            e.meta.platform,
            e.meta.label,
            age
        );
    }
    Ok(())
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
