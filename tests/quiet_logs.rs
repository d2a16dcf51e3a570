//! The plugins' own log lines (absl's, written to fd 2) stay out of a normal run, pass through
//! with `-v`/`--verbose` or `VIDLOWER_VERBOSE=1`, and a failed or aborted run shows their last
//! lines. The CPU plugin logs `cpu_device_count set via create_options: N` (INFO) when a client
//! gets virtual devices, and a `shardy_xla_pass` warning per compile of a sharded module, so
//! every run here uses `--mesh dp=2` and `--no-cache` to make it log.

#[path = "common/cli.rs"]
mod cli;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// SIGABRT's number (6 on every Unix vidlower runs on).
const SIGABRT: i32 = 6;

/// Lines only a plugin writes.
const PLUGIN_MARKS: [&str; 5] = ["absl::InitializeLog", "I0000", "W0000", "cpu_device_count", "shardy_xla_pass"];

/// `vidlower ARGS` on wan2.1-tiny with two virtual devices, compiling afresh, with `env` set.
fn run(out_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(out_dir, args, env).output().expect("vidlower runs")
}

fn command(out_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidlower"));
    c.args(args)
        .args(["--model", "wan2.1-tiny", "--prompt", "a fox", "--mesh", "dp=2", "--no-cache"])
        .arg("--output-dir")
        .arg(out_dir)
        .env_remove("VIDLOWER_VERBOSE")
        .env_remove("TF_CPP_MIN_LOG_LEVEL");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_normal_run_is_quiet_and_verbose_shows_the_plugin_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let quiet = run(&tmp.path().join("quiet"), &["generate", "--steps", "1"], &[]);
    let (out, err) = text(&quiet);
    assert!(quiet.status.success(), "generate failed:\n{out}\n{err}");
    for mark in PLUGIN_MARKS {
        assert!(!out.contains(mark) && !err.contains(mark), "a plugin line with `{mark}` in a normal run:\n{out}\n{err}");
    }
    // vidlower's own lines are all there.
    for line in ["plugin: cpu", "stage 1: wrote", "stage 2: wrote", "stage 3: wrote", "generate: done"] {
        assert!(out.contains(line), "missing `{line}` in\n{out}");
    }

    let verbose = run(&tmp.path().join("verbose"), &["generate", "--steps", "1", "-v"], &[]);
    let (out, err) = text(&verbose);
    assert!(verbose.status.success(), "generate -v failed:\n{out}\n{err}");
    for mark in ["absl::InitializeLog", "cpu_device_count set via create_options: 2", "shardy_xla_pass"] {
        assert!(err.contains(mark), "`{mark}` missing with -v:\n{err}");
    }
    assert!(out.contains("generate: done"), "{out}");

    // The environment switch, on one stage (one compile).
    let env = run(&tmp.path().join("env"), &["stage1"], &[("VIDLOWER_VERBOSE", "1")]);
    let (out, err) = text(&env);
    assert!(env.status.success(), "stage1 failed:\n{out}\n{err}");
    assert!(err.contains("cpu_device_count set via create_options: 2") && err.contains("shardy_xla_pass"), "{err}");
}

#[test]
fn a_failed_run_shows_the_plugin_log_before_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where the output directory should be: stage 1 compiles (the plugin logs), then
    // cannot write its embeddings.
    let file = tmp.path().join("a_file");
    std::fs::write(&file, b"").unwrap();
    let failed = run(&file, &["generate", "--steps", "1"], &[]);
    let err = cli::failure(failed);
    let header = err.find("plugin log (last ").unwrap_or_else(|| panic!("no plugin log header in\n{err}"));
    let error = err.find("error: ").unwrap_or_else(|| panic!("no error line in\n{err}"));
    assert!(header < error, "the plugin log comes before the error:\n{err}");
    assert!(err.contains("shardy_xla_pass") && err.contains("stage1_embeddings.safetensors"), "{err}");
    // Quiet asks the plugin for warnings and up: its INFO lines are not even written.
    assert!(!err.contains("cpu_device_count"), "{err}");

    // A level the user set is kept: then the INFO line is in the log a failure shows.
    let failed = run(&file, &["generate", "--steps", "1"], &[("TF_CPP_MIN_LOG_LEVEL", "0")]);
    let err = cli::failure(failed);
    assert!(err.contains("plugin log (last ") && err.contains("cpu_device_count set via create_options: 2"), "{err}");
}

#[test]
fn an_abort_shows_the_plugin_log_before_the_process_dies() {
    let tmp = tempfile::tempdir().unwrap();
    // SIGABRT is what a plugin's absl FATAL or failed CHECK ends in; sent once stage 1 has
    // compiled (the plugin has logged) and the transformer is being built.
    let mut child = command(&tmp.path().join("out"), &["generate", "--steps", "1"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vidlower starts");
    let stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    // Read to the end (not just up to the kill): a closed pipe would fail vidlower's next line.
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("stage 1: wrote") && !seen.contains("stage 1: wrote") {
            let kill = Command::new("kill").args(["-ABRT", &child.id().to_string()]).status().expect("kill runs");
            assert!(kill.success());
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let o = child.wait_with_output().expect("vidlower ends");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), Some(SIGABRT), "not killed by SIGABRT ({:?}); stdout:\n{seen}\nstderr:\n{err}", o.status);
    assert!(err.contains("plugin log (end, before the abort):") && err.contains("shardy_xla_pass"), "{err}");
}

/// Everything vidlower itself writes to stderr must go around the capture (fd 2 is the
/// plugins' log in a quiet run): a plain `eprintln!` or a progress bar on indicatif's default
/// target would be hidden with the plugin's lines. Catches such a line in a new command.
#[test]
fn vidlowers_own_stderr_goes_around_the_capture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let banned = ["eprintln!(", "eprint!(", "io::stderr()", "ProgressBar::new(", "ProgressBar::new_spinner(", "ProgressDrawTarget::stderr("];
    let mut found = Vec::new();
    let mut dirs = vec![root.join("src"), root.join("runtime/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("pjrt/plugin_log.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, line) in text.lines().enumerate() {
                    if !line.trim_start().starts_with("//") && banned.iter().any(|b| uses(line, b)) {
                        found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "use user_eprintln! / plugin_log::progress_target() instead:\n{}", found.join("\n"));
}

/// Whether `line` has `name` as a name of its own (`eprintln!(` but not `user_eprintln!(`).
fn uses(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(i, _)| !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
}
