//! PJRT plugin discovery and self-install.
//!
//! Resolution order: `--plugin cpu|cuda|tpu|PATH`, then `VIDLOWER_PJRT_PLUGIN`, then the places pip
//! puts plugins (the site dirs `python3` reports, and `$VIRTUAL_ENV`), then vidlower's own cache
//! (`<cache root>/plugins/<kind>/<package>/`, where [`resolve_or_install`] puts a CPU plugin it
//! fetches with pip when none is found).

mod discovery;
mod install;
mod kind;

use std::path::PathBuf;

pub use discovery::{accelerators_present, python_site_dirs, Discovery};
pub use install::{install_plugin, pip_install_target};
pub use kind::{KnownPlugin, PluginKind, PluginSpec, KNOWN_PLUGINS};

/// Environment variable naming a plugin shared library; wins over everything but `--plugin`.
pub const PLUGIN_ENV: &str = "VIDLOWER_PJRT_PLUGIN";

/// The CPU plugin package preferred when several are found, and the one installed when none is.
/// Chosen by measurement (`vidlower bench`, README): the XLA of jaxlib 0.11.2 (PJRT API 0.115)
/// executes the example block 3.3-4x faster at seq 1024 than `xla-cpu-pjrt` 0.0.1 (API 0.81),
/// with compile times within 10%. Change it here only.
pub const DEFAULT_CPU_PACKAGE: &str = "lammps-jax-pjrt-cpu";

/// The plugin path named by `VIDLOWER_PJRT_PLUGIN`, if set (not checked for existence).
pub fn from_env() -> Option<PathBuf> {
    std::env::var_os(PLUGIN_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Where a candidate plugin was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--plugin PATH`.
    Explicit,
    /// `VIDLOWER_PJRT_PLUGIN`.
    Env,
    /// A site-packages directory (or other `sys.path` entry) of the Python that pip installs into.
    Pip { site: PathBuf },
    /// vidlower's own plugin cache.
    Cache,
}

impl Source {
    /// Precedence: lower is tried first.
    fn rank(&self) -> u8 {
        match self {
            Source::Explicit => 0,
            Source::Env => 1,
            Source::Pip { .. } => 2,
            Source::Cache => 3,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Explicit => f.write_str("--plugin"),
            Source::Env => f.write_str(PLUGIN_ENV),
            Source::Pip { site } => write!(f, "pip ({})", site.display()),
            Source::Cache => f.write_str("vidlower cache"),
        }
    }
}

/// A plugin shared library that exists on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// `None` only for a plugin given by a path whose name says nothing about its kind.
    pub kind: Option<PluginKind>,
    pub path: PathBuf,
    pub source: Source,
    /// The pip package that ships it, when the path matches a known layout.
    pub package: Option<&'static str>,
    /// The PJRT C API version that package is known to carry, if one is known.
    pub api_version: Option<(u32, u32)>,
}

impl Candidate {
    /// A candidate for `path`, recognising known layouts for kind, package and API version.
    pub fn from_path(path: PathBuf, source: Source) -> Self {
        let known = KnownPlugin::matching(&path);
        Candidate {
            kind: PluginKind::guess_from_path(&path),
            package: known.map(|k| k.package),
            api_version: known.and_then(|k| k.api_version),
            path,
            source,
        }
    }
}

/// Why no plugin could be chosen or installed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("empty --plugin value: expected cpu, cuda, tpu or a path to a PJRT plugin .so")]
    EmptySpec,
    #[error("--plugin {}: no such file (expected cpu, cuda, tpu or a path to a PJRT plugin .so)", path.display())]
    ExplicitPathMissing { path: PathBuf },
    #[error("{PLUGIN_ENV}={}: no such file; unset it or point it at a PJRT plugin .so", path.display())]
    EnvPathMissing { path: PathBuf },
    #[error(
        "no {kind} PJRT plugin found (looked in {}); install one with `{}` or set {PLUGIN_ENV} to its .so",
        display_paths(searched),
        kind.install_hint()
    )]
    NotFound {
        kind: PluginKind,
        searched: Vec<PathBuf>,
    },
    #[error(
        "unknown plugin package `{package}`: vidlower knows {}",
        known_packages()
    )]
    UnknownPackage { package: String },
    #[error(
        "cannot install {package}: `{python}` did not start ({source}); install Python 3 with pip, or \
         install a PJRT plugin by hand and set {PLUGIN_ENV} to its .so"
    )]
    PythonMissing {
        python: String,
        package: String,
        source: std::io::Error,
    },
    #[error(
        "`pip install {package}` into {} failed ({status}); pip said:\n{tail}\nInstall it by hand \
         (`python3 -m pip install {package}`) or set {PLUGIN_ENV} to a PJRT plugin .so",
        target.display()
    )]
    PipFailed {
        package: String,
        target: PathBuf,
        status: String,
        tail: String,
    },
    #[error(
        "pip installed {package} into {} but {expected} is not there; set {PLUGIN_ENV} to a PJRT plugin .so",
        dir.display()
    )]
    InstallIncomplete {
        package: String,
        dir: PathBuf,
        expected: &'static str,
    },
    #[error(
        "no cache directory: set VIDLOWER_CACHE_DIR, or set {PLUGIN_ENV} to a PJRT plugin .so"
    )]
    NoCacheDir,
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nowhere: no Python site dirs and no cache dir".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn known_packages() -> String {
    KNOWN_PLUGINS
        .iter()
        .map(|k| k.package)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every plugin found on this machine, in precedence order (see [`Discovery::candidates`]).
pub fn discover() -> Vec<Candidate> {
    Discovery::from_system().candidates()
}

/// The plugin to use for `spec`, or an error saying what was looked for (see [`Discovery::resolve`]).
pub fn resolve(spec: &PluginSpec) -> Result<Candidate, PluginError> {
    Discovery::from_system().resolve(spec)
}

/// Like [`resolve`], but installs [`DEFAULT_CPU_PACKAGE`] with pip into vidlower's cache when `spec` is
/// default or `cpu` and no CPU plugin is found (see [`Discovery::resolve_or_install`]).
pub fn resolve_or_install(spec: &PluginSpec) -> Result<Candidate, PluginError> {
    Discovery::from_system().resolve_or_install(spec)
}
