//! `vidlower plugin`: the PJRT plugins found (with API version and platform), and
//! `vidlower plugin install cpu` to fetch the CPU plugin explicitly.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use vidlower_runtime::pjrt::{Client, Plugin};
use vidlower_runtime::plugin::{self, PluginKind, PluginSpec};

#[derive(Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    action: Option<PluginAction>,
}

#[derive(Subcommand)]
enum PluginAction {
    /// Install a plugin into vidlower's cache dir (only `cpu` can be fetched; a no-op if one is found).
    Install {
        /// Which plugin: cpu.
        kind: String,
    },
}

pub fn run(args: PluginArgs) -> Result<()> {
    match args.action {
        Some(PluginAction::Install { kind }) => {
            if kind != "cpu" {
                let hint = kind.parse::<PluginSpec>().ok().and_then(|s| match s {
                    PluginSpec::Kind(k) => Some(k.install_hint()),
                    _ => None,
                });
                bail!("only the CPU plugin can be installed by vidlower; {}", hint.unwrap_or_else(|| "use `cpu`".into()));
            }
            let c = plugin::resolve_or_install(&PluginSpec::Kind(PluginKind::Cpu))?;
            println!("cpu plugin: {} (from {})", c.path.display(), c.source);
            Ok(())
        }
        None => list(),
    }
}

fn list() -> Result<()> {
    let found = plugin::discover();
    if found.is_empty() {
        println!("no PJRT plugins found; `vidlower plugin install cpu` fetches the CPU plugin");
    }
    let chosen = plugin::resolve(&PluginSpec::Default).ok();
    for c in &found {
        let mark = if chosen.as_ref().map(|d| &d.path) == Some(&c.path) { "*" } else { " " };
        let kind = c.kind.map(|k| k.to_string()).unwrap_or_else(|| "?".into());
        println!("{mark} {kind:<5} {}  [{}]", c.path.display(), c.source);
        if mark == "*" {
            // Load only the default: loading several XLA builds into one process can clash.
            match Plugin::load(&c.path).and_then(|p| {
                let (major, minor) = p.api_version();
                let client = Client::new(&p, &[])?;
                Ok(format!(
                    "PJRT API {major}.{minor}, platform {} {}, {} device(s)",
                    client.platform_name()?,
                    client.platform_version()?,
                    client.addressable_devices()?.len()
                ))
            }) {
                Ok(info) => println!("        {info}"),
                Err(e) => println!("        could not load: {e}"),
            }
        }
    }
    if chosen.is_some() {
        println!("(* = the default; choose another with --plugin cpu|cuda|tpu|PATH or VIDLOWER_PJRT_PLUGIN)");
    }
    Ok(())
}
