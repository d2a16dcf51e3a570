//! The runtime side of a command: which plugin (found, or fetched for CPU), a client on it with
//! the requested device count, and the executable cache.

use crate::args::RuntimeArgs;
use crate::pipeline_args::PipelineArgs;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use vidlower_passes::Target;
use vidlower_runtime::cache::ExecutableCache;
use vidlower_runtime::pjrt::{Client, NamedValue, Plugin};
use vidlower_runtime::plugin::{self, Candidate, PluginKind, PluginSpec};

pub struct Session {
    pub candidate: Candidate,
    pub plugin: Arc<Plugin>,
    pub client: Client,
    pub cache: Option<ExecutableCache>,
}

/// The most virtual devices a `--mesh` gets on the CPU plugin: 2048 run; at 4096 XLA CPU refuses
/// to compile ("Multiprocess computations aren't implemented on the CPU backend").
const MAX_CPU_DEVICES: u32 = 2048;

impl Session {
    /// Opens the plugin `args` selects (installing the CPU plugin if none is found) with the
    /// devices `pipeline`'s mesh needs (virtual devices on CPU), and refuses pipeline flags the
    /// plugin cannot run before anything is compiled.
    pub fn open(args: &RuntimeArgs, pipeline: &PipelineArgs) -> Result<Session> {
        let session = Self::open_devices(args, pipeline.devices())?;
        let attention = pipeline.attention.unwrap_or_default();
        vidlower_runtime::stages::compiled::check_target(attention, &session.client).map_err(anyhow::Error::msg)?;
        Ok(session)
    }

    fn open_devices(args: &RuntimeArgs, devices: u32) -> Result<Session> {
        let spec: PluginSpec = match &args.plugin {
            Some(s) => s.parse().with_context(|| format!("--plugin {s}"))?,
            None => PluginSpec::Default,
        };
        let candidate = plugin::resolve_or_install(&spec)?;
        let plugin = Plugin::load(&candidate.path)?;
        let mut options = Vec::new();
        if devices > MAX_CPU_DEVICES && candidate.kind == Some(PluginKind::Cpu) {
            anyhow::bail!("--mesh needs {devices} devices; the CPU plugin's virtual devices are limited to {MAX_CPU_DEVICES}");
        }
        if devices > 1 && candidate.kind == Some(PluginKind::Cpu) {
            options.push(("cpu_device_count".to_string(), NamedValue::Int64(devices as i64)));
        }
        let gpu_flags = args.gpu_memory_fraction.is_some() || args.gpu_preallocate.is_some();
        if gpu_flags && candidate.kind != Some(PluginKind::Cuda) {
            anyhow::bail!("--gpu-memory-fraction and --gpu-preallocate apply to the CUDA plugin, not {}", candidate.path.display());
        }
        if let Some(f) = args.gpu_memory_fraction {
            options.push(("memory_fraction".to_string(), NamedValue::Float(f)));
        }
        if let Some(p) = args.gpu_preallocate {
            options.push(("preallocate".to_string(), NamedValue::Bool(p)));
        }
        let client = Client::new(&plugin, &options)
            .with_context(|| format!("creating a client on the PJRT plugin {}", candidate.path.display()))?;
        let available = client.addressable_devices()?.len();
        if available < devices as usize {
            anyhow::bail!("--mesh needs {devices} devices; the {} plugin has only {available}", client.platform_name()?);
        }
        let cache = if args.no_cache { None } else { Some(open_cache(args.cache_dir.as_deref())?) };
        Ok(Session { candidate, plugin, client, cache })
    }

    /// The platform the plugin runs on: what the pipeline options are made for.
    pub fn target(&self) -> Result<Target> {
        Ok(vidlower_runtime::stages::compiled::target_of(&self.client)?)
    }

    /// "cpu (xla-cpu-pjrt, PJRT API 0.81) from pip (/path/site-packages)".
    pub fn describe_plugin(&self) -> String {
        let (major, minor) = self.plugin.api_version();
        let package = self.candidate.package.map(|p| format!("{p}, ")).unwrap_or_default();
        let platform = self.client.platform_name().unwrap_or_else(|_| "?".into());
        format!("{platform} ({package}PJRT API {major}.{minor}) from {}", self.candidate.source)
    }
}

/// The executable cache at `dir`, or the default one.
pub fn open_cache(dir: Option<&Path>) -> Result<ExecutableCache> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => ExecutableCache::default_dir()?,
    };
    ExecutableCache::open(&dir).with_context(|| format!("opening the executable cache {}", dir.display()))
}
