//! `vidlower plan` and the memory check, run as a user runs them on wan2.1-tiny: the table has
//! the three stages with their numbers, a run that cannot fit is refused naming the stage and
//! the flags, and the prediction is compared with the peak RSS each stage command measures
//! (VmHWM) at three sizes on the CPU plugin, where device memory is host memory.

#[path = "common/cli.rs"]
mod cli;

use cli::{failure, ok, vidlower};
use std::path::Path;

/// `(measured, predicted)` bytes from a stage command's `memory: peak RSS ... [M / P bytes]`.
fn peak(stdout: &str) -> (u64, u64) {
    let line = stdout.lines().find(|l| l.starts_with("memory: peak RSS")).unwrap_or_else(|| panic!("no peak line in\n{stdout}"));
    let inner = line.rsplit('[').next().and_then(|r| r.strip_suffix(" bytes]")).unwrap_or_else(|| panic!("{line}"));
    let (m, p) = inner.split_once(" / ").unwrap_or_else(|| panic!("{line}"));
    (m.parse().unwrap(), p.parse().unwrap())
}

/// The numbers of a `stage N   = stage total` row: weights, run, code, host (as printed).
fn total_row(table: &str, stage: u8) -> &str {
    let prefix = format!("stage {stage}");
    table.lines().find(|l| l.starts_with(&prefix) && l.contains("= stage total")).unwrap_or_else(|| panic!("no stage {stage} total in\n{table}"))
}

#[test]
fn plan_prints_every_stage_with_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("exe");
    let out = ok(vidlower(&cache, &["plan", "--model", "wan2.1-tiny"]));
    for stage in [1, 2, 3] {
        let row = total_row(&out, stage);
        assert!(row.ends_with("yes"), "{row}");
        // weights, run and host are nonzero (KiB or MiB); the executables' stats are known.
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert!(!cells.contains(&"unknown") && cells.iter().filter(|c| ["KiB", "MiB", "GiB"].contains(c)).count() >= 5, "{row}");
    }
    assert!(out.contains("vae_decoder (first step)") && out.contains("vae_decoder (later steps)"), "{out}");
    assert!(out.contains("plan: every stage fits"), "{out}");
    // On a mesh the transformer's weights are split (per device, `/dev`) over its 2 devices; the
    // VAE stays on one device with its weights whole.
    let mesh = ok(vidlower(&cache, &["plan", "--model", "wan2.1-tiny", "--mesh", "tp=2"]));
    let row = |label: &str| mesh.lines().find(|l| l.starts_with("stage") && l.contains(label)).unwrap_or_else(|| panic!("no {label} in\n{mesh}")).to_string();
    assert!(row("transformer").split_whitespace().any(|c| c.ends_with("/dev")), "{mesh}");
    assert_eq!(total_row(&mesh, 2).split_whitespace().nth(13), Some("2"), "{mesh}");
    assert!(!row("vae_decoder (first step)").contains("/dev") && total_row(&mesh, 3).split_whitespace().nth(13) == Some("1"), "{mesh}");
    // What plan compiled is in the cache: generate then compiles nothing.
    let run = tmp.path().join("run");
    let gen = ok(vidlower(&cache, &["generate", "--model", "wan2.1-tiny", "--prompt", "p", "--num-inference-steps", "1", "--output-dir", run.to_str().unwrap()]));
    assert!(!gen.contains(" compiled "), "generate after plan compiled again:\n{gen}");
    for stage in ["stage 1 (text_encoder)", "stage 2 (transformer)", "stage 3 (vae_decoder)"] {
        assert!(gen.contains(&format!("memory: {stage}: predicted peak")), "{gen}");
    }
}

#[test]
fn a_run_that_cannot_fit_is_refused_naming_the_stage_and_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("exe");
    let run = tmp.path().join("run");
    let e = failure(vidlower(&cache, &["generate", "--model", "wan2.1-tiny", "--prompt", "p", "--memory-limit", "1MB", "--output-dir", run.to_str().unwrap()]));
    let line = e.lines().next().unwrap();
    assert!(line.starts_with("error: stage 1 (text_encoder) needs ") && line.contains("of host memory but 976.6 KiB is available (--memory-limit)"), "{e}");
    assert!(line.contains("--max-sequence-length") && line.contains("--no-memory-check"), "{e}");
    assert!(!run.exists(), "nothing was written");
    // plan says which stage does not fit and exits non-zero; stage 3 alone names the VAE flags.
    let o = vidlower(&cache, &["plan", "--model", "wan2.1-tiny", "--memory-limit", "1MB"]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(total_row(&table, 3).ends_with("NO"), "{table}");
    let e = failure(o);
    assert!(e.contains("stage 1 (text_encoder) needs"), "{e}");
    ok(vidlower(&cache, &["generate", "--model", "wan2.1-tiny", "--prompt", "p", "--num-inference-steps", "1", "--output-dir", run.to_str().unwrap()]));
    let e = failure(vidlower(&cache, &["stage3", "--input-dir", run.to_str().unwrap(), "--memory-limit", "50MB"]));
    assert!(e.contains("stage 3 (vae_decoder) needs") && e.contains("--vae-tiling, --vae-dtype bf16, fewer --frames"), "{e}");
    // --no-memory-check runs anyway; a limit with it is a contradiction.
    ok(vidlower(&cache, &["stage3", "--input-dir", run.to_str().unwrap(), "--no-memory-check"]));
    let e = failure(vidlower(&cache, &["stage3", "--input-dir", run.to_str().unwrap(), "--no-memory-check", "--memory-limit", "1GB"]));
    assert!(e.contains("--no-memory-check") && e.contains("--memory-limit"), "{e}");
    let e = failure(vidlower(&cache, &["plan", "--model", "wan2.1-tiny", "--memory-limit", "lots"]));
    assert!(e.contains("--memory-limit") && e.contains("512MB"), "{e}");
}

/// Runs stage 1, 2 and 3 of wan2.1-tiny at `size` in `dir` (after `plan` filled the cache, so
/// the stages load what they run as a real second run does); returns (stage, measured, predicted).
fn stages_at(cache: &Path, dir: &Path, size: (&str, &str, &str)) -> Vec<(u8, u64, u64)> {
    let d = dir.to_str().unwrap();
    let (h, w, f) = size;
    ok(vidlower(cache, &["plan", "--model", "wan2.1-tiny", "--height", h, "--width", w, "--frames", f]));
    let s1 = ok(vidlower(cache, &["stage1", "--model", "wan2.1-tiny", "--prompt", "a fox", "--output-dir", d]));
    let s2 = ok(vidlower(cache, &["stage2", "--input-dir", d, "--num-inference-steps", "2", "--height", h, "--width", w, "--frames", f]));
    let s3 = ok(vidlower(cache, &["stage3", "--input-dir", d]));
    [s1, s2, s3].iter().enumerate().map(|(i, out)| {
        let (m, p) = peak(out);
        (i as u8 + 1, m, p)
    }).collect()
}

#[test]
fn predicted_peak_is_the_measured_peak_rss_on_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("exe");
    let sizes = [("64", "96", "9"), ("256", "256", "9"), ("512", "512", "9")];
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut rows = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        for (stage, measured, predicted) in stages_at(&cache, &tmp.path().join(format!("run{i}")), *size) {
            let err = (predicted as f64 - measured as f64) / measured as f64;
            rows.push((format!("{}x{}x{}", size.1, size.0, size.2), stage, mib(predicted), mib(measured), err));
        }
    }
    println!("| size (WxHxF) | stage | predicted MiB | measured peak RSS MiB | error |");
    println!("|---|---|---|---|---|");
    for (size, stage, p, m, err) in &rows {
        println!("| {size} | {stage} | {p:.1} | {m:.1} | {:+.0}% |", err * 100.0);
    }
    for (size, stage, p, m, err) in &rows {
        assert!(err.abs() <= 0.20, "stage {stage} at {size}: predicted {p:.1} MiB, measured {m:.1} MiB ({:+.0}%)", err * 100.0);
    }
}
