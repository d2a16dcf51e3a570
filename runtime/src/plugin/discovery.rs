//! Finding plugin shared libraries: the environment variable, pip's site dirs, vidlower's cache.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::kind::{KnownPlugin, PluginKind, PluginSpec, KNOWN_PLUGINS};
use super::{install, Candidate, PluginError, Source, DEFAULT_CPU_PACKAGE};

/// Everything discovery looks at, gathered up front so tests can build one from a temp dir without
/// touching the environment or running Python.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The value of `VIDLOWER_PJRT_PLUGIN`, if set.
    pub env: Option<PathBuf>,
    /// Python site dirs to search, in order.
    pub sites: Vec<PathBuf>,
    /// vidlower's cache root (plugins live under `<root>/plugins/`); `None` when there is none.
    pub cache_root: Option<PathBuf>,
    /// Accelerators present on this machine; the default spec prefers their plugins to CPU.
    pub accelerators: Vec<PluginKind>,
    /// The Python that runs pip for [`Discovery::resolve_or_install`].
    pub python: OsString,
}

impl Default for Discovery {
    /// Nothing to search; `python3` for installs.
    fn default() -> Self {
        Discovery {
            env: None,
            sites: Vec::new(),
            cache_root: None,
            accelerators: Vec::new(),
            python: OsString::from("python3"),
        }
    }
}

impl Discovery {
    /// This machine: `VIDLOWER_PJRT_PLUGIN`, Python's site dirs, `VIDLOWER_CACHE_DIR` or the user cache
    /// dir, and the accelerators whose device nodes exist.
    pub fn from_system() -> Self {
        Discovery {
            env: super::from_env(),
            sites: python_site_dirs().to_vec(),
            cache_root: crate::cache::cache_root(),
            accelerators: accelerators_present(),
            ..Discovery::default()
        }
    }

    /// Every plugin found, in precedence order: the environment variable's (if the file exists),
    /// then pip site dirs in order, then vidlower's cache. Each file is listed once.
    pub fn candidates(&self) -> Vec<Candidate> {
        let env = self.env_candidate().filter(|c| c.path.is_file());
        dedup(env.into_iter().chain(self.installed()).collect())
    }

    /// Plugins in pip site dirs, then in vidlower's cache.
    fn installed(&self) -> Vec<Candidate> {
        let mut found = Vec::new();
        for site in &self.sites {
            for known in KNOWN_PLUGINS {
                let path = site.join(known.rel_path);
                if path.is_file() {
                    found.push(Candidate::from_path(
                        path,
                        Source::Pip { site: site.clone() },
                    ));
                }
            }
        }
        if let Some(root) = &self.cache_root {
            for known in KNOWN_PLUGINS {
                let path = install::pip_install_target(root, known).join(known.rel_path);
                if path.is_file() {
                    found.push(Candidate::from_path(path, Source::Cache));
                }
            }
        }
        dedup(found)
    }

    /// The plugin for `spec`:
    /// - a path: that file, which must exist;
    /// - a kind: `VIDLOWER_PJRT_PLUGIN` if its file name says it is that kind, else the best of that
    ///   kind from pip site dirs and the cache;
    /// - default: `VIDLOWER_PJRT_PLUGIN` if set (it must exist), else CUDA or TPU when such a device is
    ///   present and its plugin is found, else CPU.
    ///
    /// Within a kind, the preferred package wins ([`DEFAULT_CPU_PACKAGE`] for CPU, else the order of
    /// [`KNOWN_PLUGINS`]), then pip over cache.
    pub fn resolve(&self, spec: &PluginSpec) -> Result<Candidate, PluginError> {
        match spec {
            PluginSpec::Path(path) => {
                if path.is_file() {
                    Ok(Candidate::from_path(path.clone(), Source::Explicit))
                } else {
                    Err(PluginError::ExplicitPathMissing { path: path.clone() })
                }
            }
            PluginSpec::Kind(kind) => {
                if let Some(env) = self.env_candidate() {
                    if env.kind == Some(*kind) {
                        return self.require_env(env);
                    }
                }
                self.best(*kind).ok_or_else(|| PluginError::NotFound {
                    kind: *kind,
                    searched: self.searched(),
                })
            }
            PluginSpec::Default => {
                if let Some(env) = self.env_candidate() {
                    return self.require_env(env);
                }
                [PluginKind::Cuda, PluginKind::Tpu]
                    .into_iter()
                    .filter(|k| self.accelerators.contains(k))
                    .find_map(|k| self.best(k))
                    .or_else(|| self.best(PluginKind::Cpu))
                    .ok_or_else(|| PluginError::NotFound {
                        kind: PluginKind::Cpu,
                        searched: self.searched(),
                    })
            }
        }
    }

    /// [`Discovery::resolve`], except that when `spec` is default or `cpu` and no CPU plugin is found,
    /// [`DEFAULT_CPU_PACKAGE`] is pip-installed into the cache (with a message and a spinner on
    /// stderr) and returned. Never installs CUDA or TPU plugins: those need matching drivers.
    pub fn resolve_or_install(&self, spec: &PluginSpec) -> Result<Candidate, PluginError> {
        let wants_cpu = matches!(
            spec,
            PluginSpec::Default | PluginSpec::Kind(PluginKind::Cpu)
        );
        match self.resolve(spec) {
            Err(PluginError::NotFound {
                kind: PluginKind::Cpu,
                ..
            }) if wants_cpu => {
                let root = self.cache_root.as_deref().ok_or(PluginError::NoCacheDir)?;
                let known = KnownPlugin::by_package(DEFAULT_CPU_PACKAGE)
                    .expect("DEFAULT_CPU_PACKAGE is one of KNOWN_PLUGINS");
                crate::user_eprintln!(
                    "No CPU PJRT plugin found; installing {} from PyPI into {} ...",
                    known.package,
                    install::pip_install_target(root, known).display()
                );
                install::install_plugin(&self.python, root, known.package)
            }
            other => other,
        }
    }

    /// Directories searched, for "not found" messages.
    pub fn searched(&self) -> Vec<PathBuf> {
        let mut dirs = self.sites.clone();
        if let Some(root) = &self.cache_root {
            dirs.push(root.join("plugins"));
        }
        dirs
    }

    fn env_candidate(&self) -> Option<Candidate> {
        self.env
            .clone()
            .map(|p| Candidate::from_path(p, Source::Env))
    }

    fn require_env(&self, env: Candidate) -> Result<Candidate, PluginError> {
        if env.path.is_file() {
            Ok(env)
        } else {
            Err(PluginError::EnvPathMissing { path: env.path })
        }
    }

    fn best(&self, kind: PluginKind) -> Option<Candidate> {
        let mut of_kind: Vec<Candidate> = self
            .installed()
            .into_iter()
            .filter(|c| c.kind == Some(kind))
            .collect();
        of_kind.sort_by_key(|c| (package_rank(c.package), c.source.rank()));
        of_kind.into_iter().next()
    }
}

/// Keeps the first candidate for each file (symlinks and repeated site dirs resolve to one).
fn dedup(mut found: Vec<Candidate>) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    found
        .retain(|c| seen.insert(std::fs::canonicalize(&c.path).unwrap_or_else(|_| c.path.clone())));
    found
}

/// Lower is preferred: the measured CPU default first, then the order of [`KNOWN_PLUGINS`].
fn package_rank(package: Option<&str>) -> (bool, usize) {
    let index = KNOWN_PLUGINS
        .iter()
        .position(|k| Some(k.package) == package)
        .unwrap_or(usize::MAX);
    (package != Some(DEFAULT_CPU_PACKAGE), index)
}

/// Python's site dirs (site-packages, user site, `sys.path`) and `$VIRTUAL_ENV`'s site-packages, that
/// exist, deduplicated, venv first. Python is asked once per process; without `python3` only the venv
/// is searched.
pub fn python_site_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let mut dirs = virtual_env_site_dirs();
        dirs.extend(ask_python_for_site_dirs());
        let mut seen = HashSet::new();
        dirs.retain(|d| {
            d.is_dir() && seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
        });
        dirs
    })
}

const SITE_DIRS_SCRIPT: &str = "\
import site, sys
dirs = []
try: dirs += site.getsitepackages()
except Exception: pass
try: dirs.append(site.getusersitepackages())
except Exception: pass
dirs += sys.path
print('\\n'.join(d for d in dirs if d))
";

fn ask_python_for_site_dirs() -> Vec<PathBuf> {
    let output = Command::new("python3")
        .args(["-c", SITE_DIRS_SCRIPT])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            // A relative entry is the current directory, not a place pip installs to.
            .filter(|p| p.is_absolute())
            .collect(),
        _ => Vec::new(),
    }
}

fn virtual_env_site_dirs() -> Vec<PathBuf> {
    let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) else {
        return Vec::new();
    };
    let venv = PathBuf::from(venv);
    let mut dirs = vec![venv.join("Lib").join("site-packages")];
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path().join("site-packages"))
            .collect();
        pythons.sort();
        dirs.extend(pythons);
    }
    dirs
}

/// Accelerators whose device nodes exist: NVIDIA's driver, or a Google TPU on the PCI bus. A
/// heuristic, only used to rank plugins for the default spec.
pub fn accelerators_present() -> Vec<PluginKind> {
    let mut present = Vec::new();
    if Path::new("/dev/nvidiactl").exists() || Path::new("/proc/driver/nvidia/version").exists() {
        present.push(PluginKind::Cuda);
    }
    if Path::new("/dev/accel0").exists() || google_pci_device_present() {
        present.push(PluginKind::Tpu);
    }
    present
}

fn google_pci_device_present() -> bool {
    const GOOGLE_PCI_VENDOR: &str = "0x1ae0";
    let Ok(devices) = std::fs::read_dir("/sys/bus/pci/devices") else {
        return false;
    };
    devices.flatten().any(|d| {
        std::fs::read_to_string(d.path().join("vendor"))
            .is_ok_and(|v| v.trim() == GOOGLE_PCI_VENDOR)
    })
}
