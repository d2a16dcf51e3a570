//! Running the `vidlower` binary as a user does, for the end-to-end tests: its output, its
//! one-line failures, and ffprobe's reading of the videos it writes.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `vidlower ARGS --cache-dir CACHE`.
pub fn vidlower<S: AsRef<std::ffi::OsStr>>(cache: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidlower"))
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .expect("vidlower runs")
}

/// The stdout of a run that must succeed.
pub fn ok(o: Output) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "vidlower failed:\n{out}\n{err}");
    out
}

/// The stderr of a run that must fail (never a panic).
pub fn failure(o: Output) -> String {
    assert!(!o.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// (codec, pix_fmt, width, height, decoded frames, frame rate) as ffprobe reads them.
pub fn probe(video: &Path) -> String {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,pix_fmt,width,height,nb_read_frames,r_frame_rate")
        .args(["-of", "csv=p=0"])
        .arg(video)
        .output()
        .expect("ffprobe is installed (scripts/test.sh installs ffmpeg)");
    assert!(o.status.success(), "ffprobe rejected {}: {}", video.display(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
