//! Resumable denoising as a user meets it: a real `vidlower stage2` (and `generate`) child process
//! stopped mid-loop by SIGINT or SIGTERM writes its checkpoint and no latents, says how to resume,
//! and `--resume` ends with the latents of an uninterrupted run, bit for bit: Wan (UniPC, multistep
//! history) and CogVideoX (DPM, per-step noise and the previous x0). A resume with other settings is
//! refused, naming the setting.

#[path = "common/cli.rs"]
mod cli;

use cli::{failure, ok, vidlower};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHECKPOINT: &str = "stage2_checkpoint.safetensors";
const LATENTS: &str = "stage2_latents.safetensors";

/// The `latents` tensor's raw bytes (bit-for-bit comparison).
fn latent_bytes(file: &Path) -> Vec<u8> {
    let t = vidlower_runtime::safetensors_io::load(file).unwrap().remove("latents").unwrap();
    assert_eq!(t.dtype, vidlower_ir::DType::F32);
    t.data
}

/// Copies the stage-1 files of `from` into a new directory `to`.
fn copy_stage1(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["stage1_embeddings.safetensors", "generation_config.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// What an interrupted child left: its exit code and stderr.
struct Stopped {
    code: Option<i32>,
    stderr: String,
}

/// Runs `vidlower ARGS --cache-dir CACHE` with a pause of 300 ms after each denoising step, waits for
/// the first checkpoint in `dir` and then `wait`, sends `signal` (`INT` or `TERM`) and waits for the
/// process to end. (With no wait the signal lands in the checkpoint's own step, so the stop finds the
/// state already saved; 450 ms puts it a step later, so the stop writes a checkpoint of its own.)
fn interrupt(cache: &Path, args: &[&str], dir: &Path, signal: &str, wait: Duration) -> Stopped {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vidlower"))
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("VIDLOWER_TEST_STEP_DELAY_MS", "300")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vidlower starts");
    let start = Instant::now();
    while !dir.join(CHECKPOINT).exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("vidlower ended ({status}) before writing a checkpoint:\n{err}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(wait);
    let kill = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    Stopped { code: out.status.code(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// The k of `after step k/N`, checking the rest of the interrupt message.
fn stopped_after(s: &Stopped, signal: &str, steps: usize, dir: &Path, resume_args: &[&str]) -> usize {
    let err = &s.stderr;
    assert!(!err.contains("panicked") && !err.contains("error:"), "{err}");
    let head = format!("stage 2: interrupted by {signal} after step ");
    let at = err.find(&head).unwrap_or_else(|| panic!("no `{head}` in\n{err}")) + head.len();
    let (k, rest) = err[at..].split_once('/').unwrap();
    let k: usize = k.parse().unwrap();
    assert!((1..steps).contains(&k), "stopped after {k} of {steps} steps:\n{err}");
    assert!(rest.starts_with(&format!("{steps}; the checkpoint is {}", dir.join(CHECKPOINT).display())), "{err}");
    let resume = err.lines().find(|l| l.starts_with("resume with: ")).unwrap_or_else(|| panic!("no resume line in\n{err}"));
    for a in resume_args.iter().chain(&["--resume"]) {
        assert!(resume.contains(a), "`{a}` missing from `{resume}`");
    }
    // The stage's output was not written, nor left half-written; only the checkpoint is new.
    assert!(!dir.join(LATENTS).exists(), "{LATENTS} written by an interrupted run");
    let stray: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with(".tmp")).collect();
    assert!(stray.is_empty(), "temp files left: {stray:?}");
    k
}

/// `vidlower stage2` on `dir`, 8 steps, with `flags`.
fn stage2_args(dir: &Path, flags: &[&str]) -> Vec<String> {
    let base = ["stage2", "--input-dir", dir.to_str().unwrap(), "--num-inference-steps", "8"];
    base.iter().chain(flags).map(|s| s.to_string()).collect()
}

/// Stage 1 in `a`; stage 2 uninterrupted in a copy; stage 2 in `a` interrupted by `signal`, a
/// mismatched resume refused, then resumed: the same latents, bit for bit.
fn interrupt_and_resume(model: &str, signal: &str, extra: &[&str]) -> (PathBuf, Vec<u8>, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, a, b) = (tmp.path().join("exe"), tmp.path().join("a"), tmp.path().join("b"));
    ok(vidlower(&cache, &["stage1", "--model", model, "--prompt", "a lighthouse at dusk", "--output-dir", a.to_str().unwrap()]));
    copy_stage1(&a, &b);
    let flags = |seed: &str, more: &[&str]| -> Vec<String> {
        let f: Vec<&str> = [&["--seed", seed], extra, more].concat();
        f.iter().map(|s| s.to_string()).collect()
    };
    let run = |dir: &Path, f: &[String]| stage2_args(dir, &f.iter().map(String::as_str).collect::<Vec<_>>());

    let plain = ok(vidlower(&cache, &run(&b, &flags("42", &[]))));
    assert!(plain.contains("8 steps in") && plain.contains("1 checkpoint written"), "{plain}");
    assert!(!b.join(CHECKPOINT).exists(), "the checkpoint is removed once the latents are written");
    let want = latent_bytes(&b.join(LATENTS));

    let args = run(&a, &flags("42", &["--checkpoint-every", "2"]));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let stopped = interrupt(&cache, &argv, &a, signal, Duration::ZERO);
    let code = if signal == "INT" { 130 } else { 143 };
    assert_eq!(stopped.code, Some(code), "{}", stopped.stderr);
    let k = stopped_after(&stopped, &format!("SIG{signal}"), 8, &a, &argv[1..]);

    // Other settings are refused before any work, naming the setting; the checkpoint stays.
    let e = failure(vidlower(&cache, &run(&a, &flags("7", &["--resume"]))));
    assert!(e.contains(&format!("--resume: {} was written for --seed 42, this run has --seed 7", a.join(CHECKPOINT).display())), "{e}");
    let e = failure(vidlower(&cache, &run(&a, &flags("42", &["--resume", "--guidance-scale", "2.5"]))));
    assert!(e.contains("was written for --guidance-scale") && e.contains("this run has --guidance-scale 2.5"), "{e}");
    assert!(a.join(CHECKPOINT).exists());

    let resumed = ok(vidlower(&cache, &[&argv[..], &["--resume"]].concat()));
    assert!(resumed.contains(&format!("resumed after step {k}/8: {} steps in", 8 - k)), "{resumed}");
    assert_eq!(latent_bytes(&a.join(LATENTS)), want, "{model}: resumed after step {k} differs from the uninterrupted run");
    assert!(!a.join(CHECKPOINT).exists());
    (cache, want, tmp)
}

#[test]
fn wan_stage2_sigint_then_resume_gives_the_same_latents_and_generate_resumes_after_sigterm() {
    let (cache, want, tmp) = interrupt_and_resume("wan2.1-tiny", "INT", &[]);
    // `generate` stopped by SIGTERM in stage 2, then `generate --resume`: stage 1 reused, stage 2
    // continued, the video written; the latents are those of the stage-by-stage run.
    let c = tmp.path().join("c");
    let c_s = c.to_str().unwrap();
    let generate = |prompt: &'static str| -> Vec<&str> {
        let args = ["generate", "--model", "wan2.1-tiny", "--prompt", prompt, "--output-dir", c_s];
        [&args[..], &["--num-inference-steps", "8", "--seed", "42", "--checkpoint-every", "2"]].concat()
    };
    let argv = generate("a lighthouse at dusk");
    let stopped = interrupt(&cache, &argv, &c, "TERM", Duration::from_millis(450));
    assert_eq!(stopped.code, Some(143), "{}", stopped.stderr);
    let k = stopped_after(&stopped, "SIGTERM", 8, &c, &argv[1..]);
    assert!(!c.join("output_video.mp4").exists());
    let e = failure(vidlower(&cache, &[&generate("a cat")[..], &["--resume"]].concat()));
    assert!(e.contains("was written for --prompt \"a lighthouse at dusk\", this run has --prompt \"a cat\""), "{e}");
    // A window changes what the transformer computes: not resumable from a checkpoint without one.
    let e = failure(vidlower(&cache, &[&argv[..], &["--window-size", "4,4", "--resume"]].concat()));
    assert!(e.contains("was written for --window-size (none), this run has --window-size 4,4"), "{e}");
    let out = ok(vidlower(&cache, &[&argv[..], &["--resume"]].concat()));
    assert!(out.contains("stage 1: --resume: reusing") && out.contains(&format!("resumed after step {k}/8")), "{out}");
    assert!(c.join("output_video.mp4").is_file(), "{out}");
    assert_eq!(latent_bytes(&c.join(LATENTS)), want);
    // Everything done: a further --resume reuses both stage files and decodes again.
    let again = ok(vidlower(&cache, &[&argv[..], &["--resume"]].concat()));
    assert!(again.contains("stage 2: --resume: reusing") && !again.contains("steps in"), "{again}");
}

#[test]
fn cogvideox_dpm_stage2_sigint_then_resume_gives_the_same_latents() {
    // The DPM scheduler: stochastic (per-step noise) and second order (the previous x0).
    interrupt_and_resume("cogvideox-tiny", "INT", &["--height", "48", "--width", "64"]);
}
