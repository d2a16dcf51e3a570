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

/// Time since this process was started by the kernel (Linux: `/proc/self/stat`'s start time
/// against `/proc/uptime`, 10 ms resolution), so start-up figures include loading the binary
/// and the plugin; `None` elsewhere.
pub fn since_process_start() -> Option<Duration> {
    // Clock ticks per second: 100 on every Linux vidlower runs on (USER_HZ).
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; start time is 22.
    let after = &stat[stat.rfind(')')? + 1..];
    let start_ticks: f64 = after.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64((uptime - start_ticks / TICKS).max(0.0)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_start_is_in_the_past_on_linux() {
        if cfg!(target_os = "linux") {
            let d = super::since_process_start().expect("/proc on Linux");
            assert!(d < std::time::Duration::from_secs(24 * 3600), "{d:?}");
        }
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let b = super::peak_rss_bytes().expect("VmHWM on Linux");
            assert!(b > 1 << 20, "a running test binary uses more than 1 MiB: {b}");
        }
    }
}
