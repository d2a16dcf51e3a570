//! Synthetic videos for the mp4 writer, shared by `tests/video_mp4.rs` and
//! `benches/video_encode.rs` (each includes this file with `#[path]`).
#![allow(dead_code)]

use vidlower_runtime::video::VideoFrames;

/// A smooth test video: horizontal/vertical gradients, a time-varying blue level and a soft-edged
/// blob moving across (generated content is smooth; hard edges ring in any lossy codec).
pub fn smooth_video(frames: usize, height: usize, width: usize) -> VideoFrames {
    let mut rgb = Vec::with_capacity(frames * height * width * 3);
    for t in 0..frames {
        let (cx, cy) = (width as f32 * (0.2 + 0.6 * t as f32 / frames as f32), height as f32 * 0.5);
        for y in 0..height {
            for x in 0..width {
                let d2 = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)) / (width as f32 * 0.15).powi(2);
                let blob = 120.0 * (-d2).exp();
                let r = 30.0 + 180.0 * x as f32 / width as f32 + blob * 0.3;
                let g = 40.0 + 160.0 * y as f32 / height as f32;
                let b = 60.0 + 80.0 * (t as f32 * 0.7).sin().abs() + blob;
                rgb.extend([r, g, b].map(|v| v.clamp(0.0, 255.0) as u8));
            }
        }
    }
    VideoFrames { frames, height, width, rgb }
}

/// `smooth_video` plus fine texture (a fixed +-12 noise pattern drifting 2 px per frame), closer to
/// what a VAE decodes than pure gradients, for the speed and size figures.
pub fn textured_video(frames: usize, height: usize, width: usize) -> VideoFrames {
    let mut v = smooth_video(frames, height, width);
    for t in 0..frames {
        for y in 0..height {
            for x in 0..width {
                let h = ((x + 2 * t) as u32).wrapping_mul(73_856_093) ^ (y as u32).wrapping_mul(19_349_663);
                let noise = (h % 25) as i32 - 12;
                for c in 0..3 {
                    let p = &mut v.rgb[((t * height + y) * width + x) * 3 + c];
                    *p = (i32::from(*p) + noise).clamp(0, 255) as u8;
                }
            }
        }
    }
    v
}
