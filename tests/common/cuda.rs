//! Finding the CUDA plugin and running `vidlower exec` on a plugin, for the tests that run
//! wherever a CUDA plugin and an NVIDIA device are found (`cuda_plugin`, `cuda_attention`).
//! Included with `#[path = "common/cuda.rs"] mod cuda;` next to `mod common;`.

use std::path::{Path, PathBuf};
use std::process::Command;
use vidlower_runtime::plugin::{self, Discovery, PluginKind};
use vidlower_runtime::safetensors_io;
use vidlower_runtime::tensor::HostTensor;

const NVIDIA_DEVICE: &str = "/dev/nvidiactl";

/// The CUDA plugin to test, or a line saying what was checked and not found.
pub fn cuda_plugin() -> Result<PathBuf, String> {
    let found = plugin::discover();
    let cuda = found.iter().find(|c| c.kind == Some(PluginKind::Cuda));
    let device = Path::new(NVIDIA_DEVICE).exists();
    match (cuda, device) {
        (Some(c), true) => Ok(c.path.clone()),
        (cuda, device) => {
            let searched: Vec<String> =
                Discovery::from_system().searched().iter().map(|p| p.display().to_string()).collect();
            let plugin = match cuda {
                Some(c) => format!("found at {}", c.path.display()),
                None => format!(
                    "not found (plugins found: {}; looked in ${}, {})",
                    found.len(),
                    plugin::PLUGIN_ENV,
                    if searched.is_empty() { "no site or cache dirs".to_string() } else { searched.join(", ") }
                ),
            };
            let device = if device { "present" } else { "absent" };
            Err(format!("no CUDA plugin/device, CUDA checks skipped: CUDA plugin {plugin}; {NVIDIA_DEVICE} {device}"))
        }
    }
}

/// Set to 1 to make a missing CUDA plugin or device a test failure instead of a skip (on the GPU
/// machine, so a broken plugin install cannot pass as "skipped").
pub const REQUIRE_CUDA_ENV: &str = "VIDLOWER_REQUIRE_CUDA";
/// A file the skips are appended to, one line each (`scripts/test.sh` sets it and counts them in
/// its summary: libtest has no runtime skip, so a skipped test passes).
pub const SKIP_LOG_ENV: &str = "VIDLOWER_SKIP_LOG";

/// The CUDA plugin, or `None` after recording that `test` was skipped and why; panics instead
/// under `VIDLOWER_REQUIRE_CUDA=1`.
pub fn cuda_plugin_or_skip(test: &str) -> Option<PathBuf> {
    let why = match cuda_plugin() {
        Ok(path) => return Some(path),
        Err(why) => why,
    };
    if std::env::var(REQUIRE_CUDA_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: {REQUIRE_CUDA_ENV}=1 and {why}");
    }
    println!("SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        use std::io::Write;
        let line = format!("{test}: {why}\n");
        let appended = std::fs::OpenOptions::new().create(true).append(true).open(&log).and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            panic!("{test}: recording the skip in {SKIP_LOG_ENV}={}: {e}", Path::new(&log).display());
        }
    }
    None
}

/// `vidlower exec ARGS --plugin PLUGIN --output FILE` (cache in `root`); the output tensor `name`.
pub fn exec_on(plugin: &str, root: &Path, args: &[&str], name: &str) -> HostTensor {
    let out = root.join(format!("{}.safetensors", plugin.replace(['/', '.'], "_")));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidlower"));
    cmd.arg("exec").args(args).arg("--plugin").arg(plugin).arg("--output").arg(&out);
    cmd.arg("--cache-dir").arg(root.join("executables"));
    if plugin != "cpu" {
        cmd.args(["--gpu-preallocate", "false"]);
    }
    let o = cmd.output().expect("vidlower runs");
    let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "vidlower exec on {plugin} failed:\n{log}");
    let label = if plugin == "cpu" { "cpu" } else { "cuda" };
    eprintln!(
        "{label}: {}",
        log.lines().filter(|l| l.starts_with("plugin:") || l.starts_with("run:")).collect::<Vec<_>>().join("; ")
    );
    safetensors_io::load(&out).unwrap().remove(name).unwrap_or_else(|| panic!("no `{name}` in the output:\n{log}"))
}
