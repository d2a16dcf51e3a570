//! Stage 3's output: decoded frames written as an H.264 (yuv420p) mp4 that ffmpeg, browsers and
//! players open. The encoder is Cisco's OpenH264 (built from source by the `openh264` crate); the
//! container is written by our own small muxer (`mux.rs`) so the index sits before the data
//! ("faststart") and every keyframe is flagged from the NAL types actually produced.
//!
//! Building: nothing is downloaded; OpenH264's C++ is compiled with `cc`. If `nasm` is on PATH
//! when `openh264-sys2` is first built (apt `nasm`), its x86 assembly is used too: about 3.5x faster
//! (832x480 on a busy 2-core box: ~55-60 frames/s without, ~145-210 with; identical output).
//! Without `nasm` the build falls back to plain C silently.

mod encode;
mod mux;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Frames per second accepted by [`write_mp4`]: the seeds use 8, 16 and 24.
pub const MAX_FPS: u32 = 240;
/// OpenH264 refuses pictures narrower or shorter than this.
pub const MIN_SIDE: usize = 16;

/// RGB24 frames, row-major `[T, H, W, 3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrames {
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub rgb: Vec<u8>,
}

/// What [`write_mp4`] wrote. `width`/`height` are the size in the file: odd sides are padded by one
/// replicated row/column, because H.264 4:2:0 codes even sizes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStats {
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Size of the mp4 file.
    pub bytes: u64,
    /// Time spent in colour conversion and H.264 encoding (muxing and the write excluded).
    pub encode_time: Duration,
}

#[derive(Debug, Error)]
pub enum VideoError {
    #[error("no frames to write")]
    NoFrames,
    #[error("frame size {width}x{height} is under the H.264 encoder's minimum of {MIN_SIDE}x{MIN_SIDE}")]
    TooSmall { width: usize, height: usize },
    #[error("{what} has {got} elements but [{frames}, {height}, {width}, 3] needs {expected}")]
    Length { what: &'static str, frames: usize, height: usize, width: usize, expected: usize, got: usize },
    #[error(
        "frame size {width}x{height} (padded to even) is over the H.264 encoder's limit of 3840x2160 (or 2160x3840)"
    )]
    TooLarge { width: usize, height: usize },
    #[error("fps must be between 1 and {MAX_FPS}, got {0}")]
    Fps(u32),
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl VideoFrames {
    /// Frames from floats in [-1, 1], channels-last `[T, H, W, 3]` (a VAE's output permuted), converted
    /// to bytes exactly as diffusers does (`VideoProcessor.postprocess_video(output_type="np")` then
    /// `export_to_video`): `clamp(x * 0.5 + 0.5, 0, 1)`, then `(v * 255).astype(np.uint8)`, which
    /// truncates (0.0 -> 127, not 128). All arithmetic is f32 as in torch/numpy; out-of-range values
    /// clamp and NaN becomes 0 (numpy's cast of NaN on x86).
    pub fn from_unit_range(values: &[f32], frames: usize, height: usize, width: usize) -> Result<Self, VideoError> {
        let expected = rgb_len(frames, height, width)?;
        if values.len() != expected {
            return Err(VideoError::Length { what: "values", frames, height, width, expected, got: values.len() });
        }
        let rgb = values.iter().map(|&x| unit_to_u8(x)).collect();
        Ok(Self { frames, height, width, rgb })
    }

    /// Checks the shape: at least one frame, sides of at least [`MIN_SIDE`], `rgb` of length `T*H*W*3`.
    pub fn validate(&self) -> Result<(), VideoError> {
        if self.frames == 0 {
            return Err(VideoError::NoFrames);
        }
        if self.width < MIN_SIDE || self.height < MIN_SIDE {
            return Err(VideoError::TooSmall { width: self.width, height: self.height });
        }
        let expected = rgb_len(self.frames, self.height, self.width)?;
        if self.rgb.len() != expected {
            let (frames, height, width) = (self.frames, self.height, self.width);
            return Err(VideoError::Length { what: "rgb", frames, height, width, expected, got: self.rgb.len() });
        }
        Ok(())
    }

    /// Frame `t` as `[H, W, 3]` bytes.
    pub(crate) fn frame(&self, t: usize) -> &[u8] {
        let n = self.height * self.width * 3;
        &self.rgb[t * n..(t + 1) * n]
    }
}

/// diffusers' float -> byte step (see [`VideoFrames::from_unit_range`]). `as u8` saturates and maps
/// NaN to 0, so this never panics.
fn unit_to_u8(x: f32) -> u8 {
    let v = (x * 0.5 + 0.5).clamp(0.0, 1.0);
    (v * 255.0) as u8
}

fn rgb_len(frames: usize, height: usize, width: usize) -> Result<usize, VideoError> {
    frames
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .and_then(|n| n.checked_mul(3))
        .ok_or(VideoError::TooLarge { width, height })
}

/// Encodes `frames` as H.264 at `fps` and writes an mp4 to `path`, atomically: the file is written
/// beside `path` under a temp name and renamed into place, so on any error nothing new is left at
/// `path` (an existing file there is left as it was).
pub fn write_mp4(path: &Path, frames: &VideoFrames, fps: u32) -> Result<VideoStats, VideoError> {
    frames.validate()?;
    if fps == 0 || fps > MAX_FPS {
        return Err(VideoError::Fps(fps));
    }
    let start = Instant::now();
    let track = encode::encode(frames, fps)?;
    let encode_time = start.elapsed();

    let bytes = crate::atomic_file::write_atomic(path, |out| mux::write(out, &track))
        .map_err(|source| VideoError::Io { path: path.into(), source })?;

    Ok(VideoStats { frames: frames.frames, width: track.width, height: track.height, bytes, encode_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_range_truncates_like_numpy() {
        // (x, byte) pairs computed with torch 2 / numpy as diffusers 0.42.1 does (see from_unit_range).
        let cases = [
            (-1.0, 0),
            (1.0, 255),
            (0.0, 127),
            (-2.0, 0),
            (3.0, 255),
            (f32::NAN, 0),
            (f32::INFINITY, 255),
            (0.0039215, 127),
            (0.00392157, 128),
            (-0.99607843, 0),
            (0.99607843, 254),
            (0.9999999, 254),
            (0.5, 191),
            (-0.5, 63),
            (0.1, 140),
            (0.3, 165),
        ];
        for (x, want) in cases {
            assert_eq!(unit_to_u8(x), want, "x = {x}");
        }
    }

    #[test]
    fn shape_errors() {
        let e = VideoFrames::from_unit_range(&[0.0; 5], 1, 1, 2).unwrap_err();
        assert!(matches!(e, VideoError::Length { expected: 6, got: 5, .. }), "{e}");
        let f = VideoFrames { frames: 0, height: 2, width: 2, rgb: vec![] };
        assert!(matches!(f.validate(), Err(VideoError::NoFrames)));
        let f = VideoFrames { frames: 1, height: 0, width: 2, rgb: vec![] };
        assert!(matches!(f.validate(), Err(VideoError::TooSmall { .. })));
        let f = VideoFrames { frames: usize::MAX, height: 16, width: 16, rgb: vec![] };
        assert!(matches!(f.validate(), Err(VideoError::TooLarge { .. })));
    }
}
