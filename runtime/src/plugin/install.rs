//! Self-install: `pip install --target` a plugin package into vidlower's cache.
//!
//! No package index is named here: pip's own configuration (pip.conf, `PIP_*` variables) decides
//! where packages come from.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::kind::KnownPlugin;
use super::{Candidate, PluginError, Source};

/// Lines of pip's output kept in an install error.
const PIP_TAIL_LINES: usize = 20;

/// Where vidlower installs `known`: `<cache root>/plugins/<kind>/<package>`, laid out like a
/// site-packages dir so `rel_path` applies beneath it.
pub fn pip_install_target(cache_root: &Path, known: &KnownPlugin) -> PathBuf {
    cache_root
        .join("plugins")
        .join(known.kind.name())
        .join(known.package)
}

/// Installs pip package `package` (one of [`super::KNOWN_PLUGINS`]) with `python -m pip install
/// --target` into the cache and returns its plugin. pip runs into a temp dir beside the target which is
/// renamed into place only once the plugin is there, so an interrupted install leaves nothing
/// half-made. If the plugin is already installed (say by a concurrent vidlower), pip is not run.
pub fn install_plugin(
    python: &OsStr,
    cache_root: &Path,
    package: &str,
) -> Result<Candidate, PluginError> {
    let known = KnownPlugin::by_package(package).ok_or_else(|| PluginError::UnknownPackage {
        package: package.to_string(),
    })?;
    let target = pip_install_target(cache_root, known);
    let installed = target.join(known.rel_path);
    if installed.is_file() {
        return Ok(Candidate::from_path(installed, Source::Cache));
    }

    let parent = target
        .parent()
        .expect("target has a parent: it is under <root>/plugins");
    std::fs::create_dir_all(parent).map_err(|source| PluginError::Io {
        action: "creating",
        path: parent.to_path_buf(),
        source,
    })?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{package}.partial-"))
        .tempdir_in(parent)
        .map_err(|source| PluginError::Io {
            action: "creating a temp dir in",
            path: parent.to_path_buf(),
            source,
        })?;

    run_pip(python, package, staging.path(), &target)?;
    if !staging.path().join(known.rel_path).is_file() {
        return Err(PluginError::InstallIncomplete {
            package: package.to_string(),
            dir: target,
            expected: known.rel_path,
        });
    }

    match std::fs::rename(staging.path(), &target) {
        Ok(()) => {
            // Renamed away: nothing is left for the TempDir to delete.
            let _ = staging.keep();
        }
        // Someone else finished first; theirs is as good as ours, which the TempDir drop removes.
        Err(_) if installed.is_file() => {}
        Err(first) => {
            // A leftover target without the plugin (a hand-made or damaged dir): replace it.
            if target.exists() {
                std::fs::remove_dir_all(&target).map_err(|source| PluginError::Io {
                    action: "removing stale",
                    path: target.clone(),
                    source,
                })?;
                std::fs::rename(staging.path(), &target).map_err(|source| PluginError::Io {
                    action: "renaming install into",
                    path: target.clone(),
                    source,
                })?;
                let _ = staging.keep();
            } else {
                return Err(PluginError::Io {
                    action: "renaming install into",
                    path: target,
                    source: first,
                });
            }
        }
    }
    crate::user_eprintln!("Installed {package} into {}", target.display());
    Ok(Candidate::from_path(installed, Source::Cache))
}

/// Runs pip with its output captured, a spinner with elapsed time on stderr meanwhile.
fn run_pip(python: &OsStr, package: &str, into: &Path, target: &Path) -> Result<(), PluginError> {
    let spinner = ProgressBar::with_draw_target(None, crate::pjrt::plugin_log::progress_target());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} pip install {msg} [{elapsed}]")
            .expect("static template is valid"),
    );
    spinner.set_message(package.to_string());
    spinner.enable_steady_tick(Duration::from_millis(120));

    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .arg("--target")
        .arg(into)
        .arg(package)
        .stdin(Stdio::null())
        .output();
    spinner.finish_and_clear();

    let output = output.map_err(|source| PluginError::PythonMissing {
        python: python.to_string_lossy().into_owned(),
        package: package.to_string(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(PIP_TAIL_LINES)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    let tail = if tail.is_empty() {
        "  (no output)".to_string()
    } else {
        tail
    };
    Err(PluginError::PipFailed {
        package: package.to_string(),
        target: target.to_path_buf(),
        status: output.status.to_string(),
        tail,
    })
}
