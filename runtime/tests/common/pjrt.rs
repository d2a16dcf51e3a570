//! Helpers shared by the `pjrt_*` integration tests (each includes this file with `#[path]`).
//!
//! Every test runs on a real PJRT plugin: `VIDLOWER_PJRT_PLUGIN` if set, else the CPU plugin that
//! discovery finds (or installs, as a user's first run would). Run the suite once per plugin
//! (`VIDLOWER_PJRT_PLUGIN=...`) to cover both C API versions.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use vidlower_runtime::pjrt::{Client, NamedValue, Plugin};

pub fn plugin_path() -> PathBuf {
    use vidlower_runtime::plugin::{resolve_or_install, PluginKind, PluginSpec};
    vidlower_runtime::plugin::from_env().unwrap_or_else(|| {
        resolve_or_install(&PluginSpec::Kind(PluginKind::Cpu)).expect("a CPU PJRT plugin").path
    })
}

pub fn plugin() -> Arc<Plugin> {
    let path = plugin_path();
    Plugin::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// A CPU client with `devices` virtual devices.
pub fn cpu_client(devices: i64) -> Client {
    Client::new(
        &plugin(),
        &[("cpu_device_count".to_string(), NamedValue::Int64(devices))],
    )
    .expect("creating a CPU client")
}

pub fn assert_close(actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "lengths differ: {actual:?} vs {expected:?}"
    );
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "element {i}: {a} vs {e}\n{actual:?}\n{expected:?}"
        );
    }
}

/// Row-major matmul for reference results.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    out
}

/// `a . b + c` and `a * a`: a dot_general, a binary op and two outputs.
pub const ADD_DOT: &str = r#"
module @add_dot {
  func.func public @main(%a: tensor<2x3xf32>, %b: tensor<3x2xf32>, %c: tensor<2x2xf32>)
      -> (tensor<2x2xf32>, tensor<2x3xf32>) {
    %0 = stablehlo.dot_general %a, %b, contracting_dims = [1] x [0]
        : (tensor<2x3xf32>, tensor<3x2xf32>) -> tensor<2x2xf32>
    %1 = stablehlo.add %0, %c : tensor<2x2xf32>
    %2 = stablehlo.multiply %a, %a : tensor<2x3xf32>
    return %1, %2 : tensor<2x2xf32>, tensor<2x3xf32>
  }
}
"#;

pub const A: [f32; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
pub const B: [f32; 6] = [0.5, -1.0, 2.0, 0.0, -0.25, 3.0];
pub const C: [f32; 4] = [10.0, 20.0, 30.0, 40.0];

/// The expected outputs of `ADD_DOT` on `A`, `B`, `C`.
pub fn add_dot_expected() -> (Vec<f32>, Vec<f32>) {
    let dot = matmul(&A, &B, 2, 3, 2);
    let sum = dot.iter().zip(C).map(|(d, c)| d + c).collect();
    let sq = A.iter().map(|a| a * a).collect();
    (sum, sq)
}

/// The current resident set size (VmRSS) of this process in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}
