//! What a PJRT plugin is (cpu, cuda, tpu), the pip packages that ship each, and the user's `--plugin`
//! string.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::PluginError;

/// The device family a plugin drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    Cpu,
    Cuda,
    Tpu,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [PluginKind::Cpu, PluginKind::Cuda, PluginKind::Tpu];

    /// Lower-case name, as typed after `--plugin` and used as a folder name in the cache.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Cpu => "cpu",
            PluginKind::Cuda => "cuda",
            PluginKind::Tpu => "tpu",
        }
    }

    /// Known plugins of this kind, most preferred first.
    pub fn known(self) -> impl Iterator<Item = &'static KnownPlugin> {
        KNOWN_PLUGINS.iter().filter(move |k| k.kind == self)
    }

    /// What a user should run to get a plugin of this kind, for error messages.
    pub fn install_hint(self) -> String {
        let mut packages = self.known().map(|k| k.package);
        let first = packages.next().unwrap_or("<none known>");
        let others: Vec<&str> = packages.collect();
        if others.is_empty() {
            format!("pip install {first}")
        } else {
            format!("pip install {first} (or {})", others.join(", "))
        }
    }

    /// Best guess from a file name, for plugins given by path (`libtpu.so`, `xla_cuda_plugin.so`).
    pub fn guess_from_path(path: &Path) -> Option<PluginKind> {
        if let Some(known) = KnownPlugin::matching(path) {
            return Some(known.kind);
        }
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.contains("tpu") {
            Some(PluginKind::Tpu)
        } else if name.contains("cuda") || name.contains("gpu") {
            Some(PluginKind::Cuda)
        } else if name.contains("cpu") {
            Some(PluginKind::Cpu)
        } else {
            None
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A plugin that a pip package ships, and where it lies inside a site-packages directory.
#[derive(Debug, PartialEq, Eq)]
pub struct KnownPlugin {
    pub kind: PluginKind,
    /// The pip package name (`pip install <package>`).
    pub package: &'static str,
    /// Path of the shared library relative to site-packages (or to a `pip install --target` dir).
    pub rel_path: &'static str,
    /// PJRT C API version the package is known to carry, where one version is known.
    pub api_version: Option<(u32, u32)>,
}

/// Every plugin vidlower looks for. Within a kind, earlier entries are preferred, except that the
/// CPU default follows [`super::DEFAULT_CPU_PACKAGE`].
pub const KNOWN_PLUGINS: &[KnownPlugin] = &[
    KnownPlugin {
        kind: PluginKind::Cpu,
        package: "xla-cpu-pjrt",
        rel_path: "xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so",
        api_version: Some((0, 81)),
    },
    KnownPlugin {
        kind: PluginKind::Cpu,
        package: "lammps-jax-pjrt-cpu",
        rel_path: "lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so",
        api_version: Some((0, 115)),
    },
    KnownPlugin {
        kind: PluginKind::Cuda,
        package: "jax-cuda13-pjrt",
        rel_path: "jax_plugins/xla_cuda13/xla_cuda_plugin.so",
        api_version: None,
    },
    KnownPlugin {
        kind: PluginKind::Cuda,
        package: "jax-cuda12-pjrt",
        rel_path: "jax_plugins/xla_cuda12/xla_cuda_plugin.so",
        api_version: None,
    },
    KnownPlugin {
        kind: PluginKind::Tpu,
        package: "libtpu",
        rel_path: "libtpu/libtpu.so",
        api_version: None,
    },
];

impl KnownPlugin {
    /// The known plugin whose layout `path` ends with, if any.
    pub fn matching(path: &Path) -> Option<&'static KnownPlugin> {
        KNOWN_PLUGINS.iter().find(|k| path.ends_with(k.rel_path))
    }

    /// The known plugin shipped by pip package `package`.
    pub fn by_package(package: &str) -> Option<&'static KnownPlugin> {
        KNOWN_PLUGINS.iter().find(|k| k.package == package)
    }
}

/// What the user asked for with `--plugin`: nothing, a kind, or a path to a shared library.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PluginSpec {
    /// No `--plugin`: the environment variable, then the best plugin found (an accelerator when one is
    /// present, else CPU).
    #[default]
    Default,
    Kind(PluginKind),
    Path(PathBuf),
}

impl FromStr for PluginSpec {
    type Err = PluginError;

    /// `cpu`, `cuda`, `tpu` (any case) or a path; `auto`/`default` mean [`PluginSpec::Default`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(PluginError::EmptySpec);
        }
        let lower = trimmed.to_ascii_lowercase();
        let spec = match lower.as_str() {
            "auto" | "default" => PluginSpec::Default,
            "cpu" => PluginSpec::Kind(PluginKind::Cpu),
            "cuda" | "gpu" => PluginSpec::Kind(PluginKind::Cuda),
            "tpu" => PluginSpec::Kind(PluginKind::Tpu),
            // Not trimmed: a path is taken exactly as given.
            _ => PluginSpec::Path(PathBuf::from(s)),
        };
        Ok(spec)
    }
}

impl fmt::Display for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSpec::Default => f.write_str("default"),
            PluginSpec::Kind(kind) => write!(f, "{kind}"),
            PluginSpec::Path(path) => write!(f, "{}", path.display()),
        }
    }
}
