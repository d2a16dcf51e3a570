//! Durations for people: "850 µs", "12.3 ms", "4.56 s".

use std::time::Duration;

pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// The process's peak resident memory so far (Linux `VmHWM`), in bytes; `None` elsewhere.
/// Shown after runs so memory effects of passes (blockwise attention, tiling) are visible.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let b = super::peak_rss_bytes().expect("VmHWM on Linux");
            assert!(b > 1 << 20, "a running test binary uses more than 1 MiB: {b}");
        }
    }
}
