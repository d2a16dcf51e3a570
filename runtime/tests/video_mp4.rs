//! Stage 3's mp4 writer, checked with the real tools: ffprobe must read back codec, pixel format,
//! size, frame count, fps and keyframes, and ffmpeg's decode must be close to the input pixels.
//! These tests need ffmpeg/ffprobe on PATH (scripts/test.sh installs them).

use std::path::Path;
use std::process::Command;
use vidlower_runtime::video::{write_mp4, VideoError, VideoFrames};

#[path = "common/video.rs"]
mod video;
use video::smooth_video;

fn tool(name: &str) -> Command {
    let ok = Command::new(name).arg("-version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(
        ok,
        "`{name}` not found on PATH: these tests need ffmpeg. Install it with \
         `apt-get install -y --no-install-recommends ffmpeg` (scripts/test.sh does this)"
    );
    Command::new(name)
}

fn run(mut cmd: Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The first video stream as ffprobe reports it, with frames counted by decoding.
fn probe(path: &Path) -> serde_json::Value {
    let mut cmd = tool("ffprobe");
    cmd.args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,pix_fmt,width,height,nb_read_frames,r_frame_rate")
        .args(["-of", "json"])
        .arg(path);
    let json: serde_json::Value = serde_json::from_slice(&run(cmd)).expect("ffprobe json");
    println!("ffprobe {}: {json}", path.display());
    json["streams"][0].clone()
}

/// Per decoded frame: (container keyframe flag, decoded picture type).
fn keyframes(path: &Path) -> (Vec<bool>, Vec<String>) {
    let mut cmd = tool("ffprobe");
    cmd.args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags", "-of", "csv=p=0"]).arg(path);
    let flags = String::from_utf8(run(cmd)).unwrap();
    let packets = flags.lines().map(|l| l.starts_with('K')).collect();
    let mut cmd = tool("ffprobe");
    cmd.args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pict_type", "-of", "csv=p=0"]).arg(path);
    let types = String::from_utf8(run(cmd)).unwrap();
    (packets, types.lines().map(|l| l.trim().to_string()).collect())
}

/// The file decoded by ffmpeg to RGB24 at the coded size. swscale's default yuv420p -> rgb24 path
/// rounds down and repeats chroma (about -1.2/255 bias and 1.2-2.1/255 mean error on our test videos
/// with no codec involved), so the conversion is asked to be exact: what is left is the codec's error.
fn decode(path: &Path) -> Vec<u8> {
    let mut cmd = tool("ffmpeg");
    cmd.args(["-v", "error", "-i"]).arg(path);
    cmd.args(["-sws_flags", "accurate_rnd+full_chroma_int+bitexact", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]);
    run(cmd)
}

/// Mean absolute error (in 0..255 units) between `input` and the decoded frames cropped to its size.
fn mean_abs_error(input: &VideoFrames, decoded: &[u8], coded_w: usize, coded_h: usize) -> f64 {
    assert_eq!(decoded.len(), input.frames * coded_h * coded_w * 3, "decoded size");
    let (h, w) = (input.height, input.width);
    let mut sum = 0u64;
    for t in 0..input.frames {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let a = input.rgb[((t * h + y) * w + x) * 3 + c];
                    let b = decoded[((t * coded_h + y) * coded_w + x) * 3 + c];
                    sum += u64::from(a.abs_diff(b));
                }
            }
        }
    }
    sum as f64 / (input.frames * h * w * 3) as f64
}

fn check_roundtrip(frames: VideoFrames, fps: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4");
    let stats = write_mp4(&path, &frames, fps).expect("write_mp4");
    let (cw, ch) = (frames.width + frames.width % 2, frames.height + frames.height % 2);
    assert_eq!((stats.frames, stats.width, stats.height), (frames.frames, cw, ch));
    assert_eq!(stats.bytes, std::fs::metadata(&path).unwrap().len());

    let s = probe(&path);
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(s["pix_fmt"], "yuv420p");
    assert_eq!((s["width"].as_u64(), s["height"].as_u64()), (Some(cw as u64), Some(ch as u64)));
    assert_eq!(s["nb_read_frames"], frames.frames.to_string());
    assert_eq!(s["r_frame_rate"], format!("{fps}/1"));

    // Players show the container's duration; a clean decode prints no warnings.
    let mut cmd = tool("ffprobe");
    cmd.args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]).arg(&path);
    let duration: f64 = String::from_utf8(run(cmd)).unwrap().trim().parse().unwrap();
    assert!((duration - frames.frames as f64 / f64::from(fps)).abs() < 1e-3, "duration {duration}");
    let mut cmd = tool("ffmpeg");
    cmd.args(["-v", "warning", "-i"]).arg(&path).args(["-f", "null", "-"]);
    let out = cmd.output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    let mae = mean_abs_error(&frames, &decode(&path), cw, ch);
    println!(
        "{}x{} x{} @ {fps} fps: {} bytes, mean abs error {mae:.3}/255",
        frames.width, frames.height, frames.frames, stats.bytes
    );
    assert!(mae < 3.0, "mean abs error {mae:.3}/255 is too large");
    // Only the video is left in the directory: the temp file was renamed, not copied.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn gradient_64x48_9_frames_at_8_fps() {
    check_roundtrip(smooth_video(9, 48, 64), 8);
}

#[test]
fn moving_blob_32x32_17_frames_at_16_fps() {
    check_roundtrip(smooth_video(17, 32, 32), 16);
}

#[test]
fn odd_sizes_are_padded_to_even() {
    check_roundtrip(smooth_video(5, 17, 33), 16);
    check_roundtrip(smooth_video(3, 17, 16), 24);
}

#[test]
fn from_unit_range_video_roundtrips() {
    let src = smooth_video(4, 32, 48);
    let values: Vec<f32> = src.rgb.iter().map(|&v| (f32::from(v) + 0.5) / 127.5 - 1.0).collect();
    let frames = VideoFrames::from_unit_range(&values, 4, 32, 48).unwrap();
    assert_eq!(frames, src, "(v + 0.5) / 127.5 - 1 must map back to v");
    check_roundtrip(frames, 16);
}

#[test]
fn keyframes_are_flagged() {
    // 8 fps, 40 frames: an IDR every 2 s, at frames 0, 16 and 32.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.mp4");
    write_mp4(&path, &smooth_video(40, 32, 32), 8).unwrap();
    let (packets, types) = keyframes(&path);
    assert_eq!(packets.len(), 40);
    assert_eq!(types.len(), 40);
    let key: Vec<usize> = (0..40).filter(|&i| packets[i]).collect();
    let intra: Vec<usize> = (0..40).filter(|&i| types[i] == "I").collect();
    assert_eq!(key, [0, 16, 32]);
    assert_eq!(intra, key, "container sync samples must be exactly the decoded I pictures");
}

#[test]
fn errors_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mp4");
    let good = smooth_video(2, 16, 16);

    let empty = VideoFrames { frames: 0, height: 16, width: 16, rgb: vec![] };
    assert!(matches!(write_mp4(&path, &empty, 16), Err(VideoError::NoFrames)));
    let short = VideoFrames { rgb: good.rgb[1..].to_vec(), ..good.clone() };
    let e = write_mp4(&path, &short, 16).unwrap_err();
    assert!(matches!(e, VideoError::Length { expected: 1536, got: 1535, .. }), "{e}");
    let zero = VideoFrames { frames: 1, height: 0, width: 16, rgb: vec![] };
    assert!(matches!(write_mp4(&path, &zero, 16), Err(VideoError::TooSmall { .. })));
    let tiny = VideoFrames { frames: 1, height: 15, width: 32, rgb: vec![0; 15 * 32 * 3] };
    let e = write_mp4(&path, &tiny, 16).unwrap_err();
    assert!(matches!(e, VideoError::TooSmall { .. }) && e.to_string().contains("32x15"), "{e}");
    assert!(matches!(write_mp4(&path, &good, 0), Err(VideoError::Fps(0))));
    let wide = VideoFrames { frames: 1, height: 16, width: 4000, rgb: vec![0; 16 * 4000 * 3] };
    let e = write_mp4(&path, &wide, 16).unwrap_err();
    assert!(matches!(e, VideoError::TooLarge { width: 4000, height: 16 }), "{e}");
    assert!(e.to_string().contains("4000x16"), "{e}");
    let e = VideoFrames::from_unit_range(&[0.0; 10], 1, 2, 2).unwrap_err();
    assert!(matches!(e, VideoError::Length { expected: 12, got: 10, .. }), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be left behind");

    // Unwritable target: an error naming the path, and still nothing at it.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"x").unwrap();
    let e = write_mp4(&blocked.join("v.mp4"), &good, 16).unwrap_err();
    assert!(matches!(e, VideoError::Io { .. }) && e.to_string().contains("v.mp4"), "{e}");
}

#[test]
fn overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    std::fs::write(&path, b"old").unwrap();
    let stats = write_mp4(&path, &smooth_video(2, 16, 16), 16).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), stats.bytes);
    assert_eq!(probe(&path)["nb_read_frames"], "2");
}
