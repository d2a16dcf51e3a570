//! The memory a run will take, stage by stage, before any work: the bytes each executable's
//! weights take per device (sharded or replicated, as its signature lays them out), what buffer
//! assignment reserved for one run (`PJRT_Executable_GetCompiledMemoryStats`: temp, outputs,
//! inputs, code), and the host buffers the stage holds, against what this machine and its
//! devices have. A run that cannot fit is refused with one line naming the stage and the flags
//! that would make it fit, instead of dying in the allocator half-way through.
//!
//! On the CPU plugin device memory is host memory, so a stage's prediction is the process's
//! peak RSS: the baseline (this process with the plugin loaded, measured), plus the device
//! buffers, plus the host buffers.

use crate::pjrt::CompiledMemoryStats;
use crate::program::{ParamKind, Program};
use std::fmt::Write as _;

/// One executable a stage runs: what its weights and one run take on each device.
#[derive(Clone, Debug)]
pub struct ExecutableMemory {
    /// `transformer`, `vae_decoder (first step)`.
    pub label: String,
    /// Every weight by name with its bytes on one device (its piece, when sharded).
    pub weights: Vec<(String, u64)>,
    /// Whether any weight is split over the mesh (else every device holds them all).
    pub sharded: bool,
    /// Plain inputs and results, bytes on one device, from the signature.
    pub inputs: u64,
    pub outputs: u64,
    /// Buffer assignment's numbers; `None` where the plugin does not report them.
    pub stats: Option<CompiledMemoryStats>,
    /// Devices it runs on.
    pub devices: u32,
    /// Host scratch of vidlower's CPU kernels during a run (`Signature::kernel_scratch`).
    pub kernel_scratch: u64,
}

impl ExecutableMemory {
    /// Reads the program's signature and its executable's compiled memory statistics.
    pub fn of(label: &str, program: &Program) -> Self {
        let sig = &program.signature;
        let per_device = |i: usize, ty: &vidlower_ir::TensorType| -> (u64, bool) {
            let whole = ty.size_in_bytes().max(0) as u64;
            let Some(layout) = &sig.layout else { return (whole, false) };
            let sharding = &layout.params[i];
            match sharding.shard_shape(&layout.mesh, &ty.shape) {
                Some(shape) if !sharding.is_replicated() => (ty.with_shape(shape).size_in_bytes().max(0) as u64, true),
                _ => (whole, false),
            }
        };
        let (mut weights, mut inputs, mut sharded) = (Vec::new(), 0, false);
        for (i, (name, kind, ty)) in sig.params.iter().enumerate() {
            let (bytes, split) = per_device(i, ty);
            match kind {
                ParamKind::Weight => {
                    sharded |= split;
                    weights.push((name.clone(), bytes));
                }
                ParamKind::Input => inputs += bytes,
            }
        }
        let outputs = sig.results.iter().map(|(_, ty)| ty.size_in_bytes().max(0) as u64).sum();
        let devices = program.devices().len() as u32;
        let (stats, kernel_scratch) = (program.executable.compiled_memory_stats().ok(), sig.kernel_scratch);
        ExecutableMemory { label: label.to_string(), weights, sharded, inputs, outputs, stats, devices, kernel_scratch }
    }

    pub fn weight_bytes(&self) -> u64 {
        self.weights.iter().map(|(_, b)| b).sum()
    }

    /// What one run needs beyond the resident weights, per device: its inputs, its results and
    /// its scratch (results that reuse an input's buffer counted once), plus what vidlower's
    /// CPU kernels allocate. Without the plugin's numbers, the inputs, results and kernel
    /// scratch alone: a lower bound.
    pub fn run_bytes(&self) -> u64 {
        let xla = match &self.stats {
            Some(s) => {
                let inputs = s.arguments.saturating_sub(self.weight_bytes());
                (inputs + s.outputs + s.temp).saturating_sub(s.alias)
            }
            None => self.inputs + self.outputs,
        };
        xla + self.kernel_scratch
    }
}

/// One stage: its executables (all loaded at once) and the host buffers it holds.
#[derive(Clone, Debug)]
pub struct StageMemory {
    /// 1, 2 or 3.
    pub stage: u8,
    pub executables: Vec<ExecutableMemory>,
    /// Host buffers by what they are (`decoded frames (f32)`), in bytes.
    pub host: Vec<(String, u64)>,
    /// The flags that would make this stage smaller, for the refusal.
    pub remedies: Vec<String>,
}

impl StageMemory {
    /// Resident weights per device: every distinct weight once (the VAE's step executables
    /// share one upload).
    pub fn weights(&self) -> u64 {
        let mut seen = std::collections::HashMap::new();
        for e in &self.executables {
            for (name, bytes) in &e.weights {
                seen.insert(name.as_str(), *bytes);
            }
        }
        seen.values().sum()
    }

    /// The largest run of any executable (they run one at a time).
    pub fn run_bytes(&self) -> u64 {
        self.executables.iter().map(ExecutableMemory::run_bytes).max().unwrap_or(0)
    }

    /// Compiled code of every executable (all stay loaded).
    pub fn code(&self) -> u64 {
        self.executables.iter().filter_map(|e| e.stats.map(|s| s.generated_code)).sum()
    }

    /// Peak device memory per device.
    pub fn device_peak(&self) -> u64 {
        self.weights() + self.run_bytes() + self.code()
    }

    pub fn devices(&self) -> u32 {
        self.executables.iter().map(|e| e.devices).max().unwrap_or(1)
    }

    pub fn host_bytes(&self) -> u64 {
        self.host.iter().map(|(_, b)| b).sum()
    }

    /// Whether the plugin reported its numbers for every executable.
    pub fn stats_known(&self) -> bool {
        self.executables.iter().all(|e| e.stats.is_some())
    }

    /// `stage 2 (transformer)`.
    pub fn title(&self) -> String {
        let mut names: Vec<&str> = self.executables.iter().map(|e| e.label.split(' ').next().unwrap_or("")).collect();
        names.dedup();
        format!("stage {} ({})", self.stage, names.join(", "))
    }
}

/// What the machine offers.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// Host memory this process may still use, counting what it holds now: MemAvailable plus
    /// this process's RSS (or `--memory-limit`).
    pub host: Option<u64>,
    /// Memory per device (`PJRT_Device_MemoryStats`' `bytes_limit`, or `--memory-limit`);
    /// `None` when the device's memory is the host's (CPU) or the plugin does not say.
    pub device: Option<u64>,
    /// Device buffers live in host memory (the CPU plugin).
    pub unified: bool,
    /// Whether the numbers came from `--memory-limit`.
    pub limited: bool,
}

/// The plan of a run: every stage it runs, the baseline and the capacity.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub stages: Vec<StageMemory>,
    /// This process's RSS with the plugin loaded, before anything is compiled (measured).
    pub baseline: u64,
    pub capacity: Capacity,
}

/// A stage that cannot fit: one line naming it, the need, the capacity and the remedies.
#[derive(Debug, thiserror::Error)]
#[error("{title} needs {} of {what} but {} is available{}; to fit it try {remedies} (or --no-memory-check to run anyway)", bytes(*need), bytes(*have), if *limited { " (--memory-limit)" } else { "" })]
pub struct DoesNotFit {
    pub title: String,
    pub need: u64,
    pub what: &'static str,
    pub have: u64,
    /// The capacity came from `--memory-limit`.
    pub limited: bool,
    pub remedies: String,
}

impl MemoryPlan {
    /// Predicted peak host memory (RSS) of the process during `s`: on the CPU plugin the
    /// baseline, every device's buffers and the host buffers; elsewhere the baseline and the
    /// host buffers.
    pub fn host_peak(&self, s: &StageMemory) -> u64 {
        let device = if self.capacity.unified { s.device_peak() * s.devices() as u64 } else { 0 };
        self.baseline + device + s.host_bytes()
    }

    /// Whether `s` fits, and if not, why.
    pub fn check_stage(&self, s: &StageMemory) -> Result<(), DoesNotFit> {
        let limited = self.capacity.limited;
        let refuse = |need, what, have| DoesNotFit { title: s.title(), need, what, have, limited, remedies: s.remedies.join(", ") };
        if let (Some(have), false) = (self.capacity.device, self.capacity.unified) {
            if s.device_peak() > have {
                return Err(refuse(s.device_peak(), "device memory per device", have));
            }
        }
        let need = self.host_peak(s);
        match self.capacity.host {
            Some(have) if need > have => Err(refuse(need, "host memory", have)),
            _ => Ok(()),
        }
    }

    /// The first stage that does not fit.
    pub fn check(&self) -> Result<(), DoesNotFit> {
        self.stages.iter().try_for_each(|s| self.check_stage(s))
    }

    /// The table `vidlower plan` prints: a row per executable, then each stage's totals.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.capacity;
        let unknown = || "unknown".to_string();
        let _ = writeln!(
            out,
            "{:<9} {:<44} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}  fits",
            "stage", "component", "weights", "run", "code", "host", "devices", "peak", "capacity"
        );
        for s in &self.stages {
            for e in &s.executables {
                let (run, code) = match &e.stats {
                    Some(st) => (bytes(e.run_bytes()), bytes(st.generated_code)),
                    None => (format!(">={}", bytes(e.run_bytes())), unknown()),
                };
                let weights = format!("{}{}", bytes(e.weight_bytes()), if e.sharded { "/dev" } else { "" });
                let _ = writeln!(out, "{:<9} {:<44} {:>10} {:>10} {:>10}", format!("stage {}", s.stage), e.label, weights, run, code);
            }
            let fits = match self.check_stage(s) {
                Ok(()) if s.stats_known() => "yes",
                Ok(()) => "yes (stats unknown)",
                Err(_) => "NO",
            };
            let (peak, capacity) = if c.unified || c.device.is_none() {
                (bytes(self.host_peak(s)), c.host.map_or_else(unknown, bytes))
            } else {
                (format!("{}/dev", bytes(s.device_peak())), c.device.map_or_else(unknown, |d| format!("{}/dev", bytes(d))))
            };
            let _ = writeln!(
                out,
                "{:<9} {:<44} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}  {fits}",
                format!("stage {}", s.stage),
                "= stage total",
                bytes(s.weights()),
                bytes(s.run_bytes()),
                bytes(s.code()),
                bytes(s.host_bytes()),
                s.devices(),
                peak,
                capacity
            );
            for (what, b) in &s.host {
                let _ = writeln!(out, "{:<9}   host: {what} {}", "", bytes(*b));
            }
        }
        let where_ = if c.unified {
            "device memory is host memory here: peak = baseline + devices x (weights + run + code) + host".to_string()
        } else {
            "device columns are per device; peak is per device (host buffers are checked against host memory)".to_string()
        };
        let _ = writeln!(out, "baseline {} (this process with the plugin loaded, measured); {where_}", bytes(self.baseline));
        out
    }
}

/// `12.3 MiB`, `1.20 GiB`.
pub fn bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f >= K * K * K {
        format!("{:.2} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.1} KiB", f / K)
    } else {
        format!("{b} B")
    }
}

/// `1MB`, `512MiB`, `2G`, `1.5GiB`, `1000000` -> bytes; decimal and binary units both taken.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("expected a size such as 512MB or 2GiB, got `{s}`"))?;
    let m: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        _ => return Err(format!("unknown unit in `{s}` (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)")),
    };
    let b = n * m;
    if !(b >= 1.0 && b < u64::MAX as f64) {
        return Err(format!("`{s}`: expected at least 1 byte"));
    }
    Ok(b as u64)
}

/// A field of /proc/self/status (`VmRSS`, `VmHWM`) in bytes; `None` off Linux.
pub fn proc_status(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&text, field)
}

/// `MemAvailable` of /proc/meminfo in bytes.
pub fn mem_available() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemAvailable")
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok()?.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(label: &str, weights: &[(&str, u64)], stats: Option<CompiledMemoryStats>) -> ExecutableMemory {
        ExecutableMemory {
            label: label.into(),
            weights: weights.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
            sharded: false,
            inputs: 10,
            outputs: 20,
            stats,
            devices: 1,
            kernel_scratch: 0,
        }
    }

    #[test]
    fn a_run_counts_the_cpu_kernels_scratch() {
        let stats = CompiledMemoryStats { generated_code: 5, arguments: 110, outputs: 20, alias: 0, temp: 1000 };
        let plain = exe("transformer", &[("w", 100)], Some(stats));
        let with_kernel = ExecutableMemory { kernel_scratch: 300, ..plain.clone() };
        assert_eq!(plain.run_bytes(), 10 + 20 + 1000);
        assert_eq!(with_kernel.run_bytes(), plain.run_bytes() + 300);
        let unknown = ExecutableMemory { kernel_scratch: 300, ..exe("t", &[], None) };
        assert_eq!(unknown.run_bytes(), 10 + 20 + 300);
    }

    #[test]
    fn stages_add_up_and_refuse_with_the_stage_and_remedies() {
        let stats = CompiledMemoryStats { generated_code: 5, arguments: 110, outputs: 20, alias: 0, temp: 1000 };
        let vae = StageMemory {
            stage: 3,
            // Two steps share one weight upload: counted once.
            executables: vec![exe("vae_decoder (first step)", &[("w", 100)], Some(stats)), exe("vae_decoder (later steps)", &[("w", 100)], None)],
            host: vec![("frames".into(), 50)],
            remedies: vec!["--vae-tiling".into(), "fewer --frames".into()],
        };
        assert_eq!(vae.weights(), 100);
        assert_eq!(vae.run_bytes(), 10 + 20 + 1000);
        assert_eq!(vae.device_peak(), 100 + 1030 + 5);
        assert!(!vae.stats_known());
        let capacity = Capacity { host: Some(1_000_000), device: None, unified: true, limited: false };
        let mut plan = MemoryPlan { stages: vec![vae], baseline: 300, capacity };
        assert_eq!(plan.host_peak(&plan.stages[0]), 300 + 1135 + 50);
        plan.check().unwrap();
        assert!(plan.table().contains("stage 3"), "{}", plan.table());
        plan.capacity = Capacity { host: Some(1000), device: None, unified: true, limited: true };
        let e = plan.check().unwrap_err().to_string();
        assert!(e.starts_with("stage 3 (vae_decoder) needs 1.5 KiB of host memory but 1000 B is available (--memory-limit)"), "{e}");
        assert!(e.contains("--vae-tiling, fewer --frames"), "{e}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5 KiB"), Ok(1536));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").unwrap_err().contains("512MB"));
        assert!(parse_bytes("3 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("0").is_err());
        assert_eq!(kib_field("VmHWM:\t  2048 kB\nVmRSS: 1 kB\n", "VmHWM"), Some(2 << 20));
    }
}
