//! Stage 3's mp4 writer at Wan 480p: `write_mp4` on 832x480, 81 frames, 16 fps, for a smooth and
//! a textured synthetic video; prints encode frames/s, the time with mux and write, and the
//! bitrate. `cargo bench -p vidlower-runtime --bench video_encode` (a plain main: harness = false).

#[path = "../tests/common/video.rs"]
mod video;

use std::time::Instant;
use vidlower_runtime::video::write_mp4;

const WIDTH: usize = 832;
const HEIGHT: usize = 480;
const FRAMES: usize = 81;
const FPS: u32 = 16;

fn main() {
    // `cargo test --benches` runs this as a debug build: a small video then, to check it works;
    // speeds come from `cargo bench` (release).
    let quick = cfg!(debug_assertions);
    let (w, h, f) = if quick { (64, 48, 5) } else { (WIDTH, HEIGHT, FRAMES) };
    let dir = tempfile::tempdir().expect("a temp dir");
    for (name, frames) in [("smooth", video::smooth_video(f, h, w)), ("textured", video::textured_video(f, h, w))] {
        let path = dir.path().join(format!("{name}.mp4"));
        let start = Instant::now();
        let stats = write_mp4(&path, &frames, FPS).expect("write_mp4");
        let total = start.elapsed().as_secs_f64();
        let encode = stats.encode_time.as_secs_f64();
        let mbps = stats.bytes as f64 * 8.0 / (f as f64 / f64::from(FPS)) / 1e6;
        println!(
            "{w}x{h} x{f} {name}: encode {encode:.2} s = {:.1} frames/s (with mux + write {total:.2} s), {} bytes = {mbps:.2} Mbit/s at {FPS} fps",
            f as f64 / encode,
            stats.bytes
        );
    }
}
