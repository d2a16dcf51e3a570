//! The platform a pipeline is lowered for, read from the PJRT plugin's platform name: what
//! `--attention auto` and the stage summaries follow. `dump-ir`, which opens no plugin, takes it
//! from `--target`.

use std::fmt;

/// Where the lowered module will run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Target {
    /// XLA's CPU backend (the default where no plugin is known: tests, `dump-ir`).
    #[default]
    Cpu,
    /// XLA's GPU backend on NVIDIA: cuDNN's fused attention custom calls are available.
    Cuda,
    /// XLA's TPU backend (libtpu).
    Tpu,
    /// Any other PJRT platform (ROCm, Metal, ...): treated like the CPU.
    Other,
}

impl Target {
    pub const NAMES: &'static str = "cpu, cuda, tpu";

    /// The target of a PJRT platform name (`PJRT_Client_PlatformName`: "cpu", "cuda", "tpu").
    pub fn from_platform(platform: &str) -> Target {
        match platform.to_ascii_lowercase().as_str() {
            "cpu" | "host" => Target::Cpu,
            "cuda" => Target::Cuda,
            "tpu" => Target::Tpu,
            _ => Target::Other,
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    /// The `--target` spellings; `other` is not one (it stands for an unknown plugin).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Target::Cpu),
            "cuda" => Ok(Target::Cuda),
            "tpu" => Ok(Target::Tpu),
            _ => Err(format!("unknown target `{s}`; expected one of {}", Self::NAMES)),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Cpu => "cpu",
            Target::Cuda => "cuda",
            Target::Tpu => "tpu",
            Target::Other => "other",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_map_to_targets() {
        assert_eq!(Target::from_platform("cpu"), Target::Cpu);
        assert_eq!(Target::from_platform("CUDA"), Target::Cuda);
        assert_eq!(Target::from_platform("tpu"), Target::Tpu);
        assert_eq!(Target::from_platform("rocm"), Target::Other);
        assert_eq!("cuda".parse::<Target>(), Ok(Target::Cuda));
        assert_eq!("gpu".parse::<Target>().unwrap_err(), "unknown target `gpu`; expected one of cpu, cuda, tpu");
    }
}
