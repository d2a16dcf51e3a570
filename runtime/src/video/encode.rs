//! RGB24 frames -> H.264 access units with OpenH264: BT.601 limited-range yuv420p (what ffmpeg's
//! default rgb24 -> yuv420p conversion, and so diffusers' `export_to_video`, produces), signalled in
//! the SPS so decoders convert back with the same matrix.

use super::{VideoError, VideoFrames};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange, RateControlMode, UsageType,
    VuiConfig,
};
use openh264::formats::YUVSlices;
use openh264::{OpenH264API, Timestamp};

/// OpenH264's largest picture (level 5.2), either orientation.
const MAX_LONG_SIDE: usize = 3840;
const MAX_SHORT_SIDE: usize = 2160;

/// The quantiser, the same for every frame: 18 is near-transparent for H.264 (generated videos are
/// meant to be looked at). OpenH264 has no constant-quality mode, so its QP range is pinned to this
/// and the buffer-based rate control (no frame skipping, no warnings) runs inside it; it adds 1-2
/// on frames it sees as scene changes.
const QP: u8 = 18;
/// Nominal bit rate in bits per pixel per frame. With the QP pinned it does not steer the size; it
/// feeds OpenH264's choice of the level written in the SPS, which it raises to fit the rate
/// (3.0 at 832x480, 3.1 at 1280x720, 16 fps).
const NOMINAL_BITS_PER_PIXEL: f64 = 0.3;
/// An IDR (keyframe) every this many seconds, for seeking.
const KEYFRAME_SECONDS: u32 = 2;

/// NAL unit types (H.264 table 7-1) the muxer cares about.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// An encoded video track: parameter sets for the sample description, then one access unit per frame
/// in `data` as 4-byte-length-prefixed NAL units (the mp4 "avcC" layout), SPS/PPS stripped.
pub(crate) struct Track {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub data: Vec<u8>,
    pub sample_sizes: Vec<u32>,
    /// Whether each sample is an IDR access unit (a sync sample in mp4 terms).
    pub sync: Vec<bool>,
}

/// Encodes every frame; the first is always an IDR.
pub(crate) fn encode(frames: &VideoFrames, fps: u32) -> Result<Track, VideoError> {
    let (width, height) = (frames.width + frames.width % 2, frames.height + frames.height % 2);
    if width.max(height) > MAX_LONG_SIDE || width.min(height) > MAX_SHORT_SIDE {
        return Err(VideoError::TooLarge { width, height });
    }
    let bitrate = (NOMINAL_BITS_PER_PIXEL * (width * height) as f64 * f64::from(fps)).min(f64::from(i32::MAX as u32));
    let config = EncoderConfig::new()
        // OpenH264 rejects CAMERA_VIDEO_NON_REAL_TIME ("Invalid usage type"); this is its default.
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bufferbased)
        .bitrate(BitRate::from_bps(bitrate as u32))
        .qp(QpRange::new(QP, QP))
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(fps * KEYFRAME_SECONDS))
        .vui(VuiConfig::bt601())
        // OpenH264's own log (to stderr) explains its otherwise opaque error codes.
        .debug(std::env::var_os("VIDLOWER_H264_DEBUG").is_some());
    let enc_err = |e: openh264::Error| VideoError::Encoder(e.to_string());
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config).map_err(enc_err)?;

    let mut yuv = vec![0u8; width * height * 3 / 2];
    let mut track = Track {
        width,
        height,
        fps,
        sps: Vec::new(),
        pps: Vec::new(),
        data: Vec::new(),
        sample_sizes: Vec::with_capacity(frames.frames),
        sync: Vec::with_capacity(frames.frames),
    };
    for t in 0..frames.frames {
        rgb_to_i420(frames.frame(t), frames.width, frames.height, width, height, &mut yuv);
        let (y, uv) = yuv.split_at(width * height);
        let (u, v) = uv.split_at(width * height / 4);
        let src = YUVSlices::new((y, u, v), (width, height), (width, width / 2, width / 2));
        let millis = t as u64 * 1000 / u64::from(fps);
        let bitstream = encoder.encode_at(&src, Timestamp::from_millis(millis)).map_err(enc_err)?;
        if matches!(bitstream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Err(VideoError::Encoder(format!("frame {t} was skipped by the encoder")));
        }
        let start = track.data.len();
        let mut idr = false;
        for l in 0..bitstream.num_layers() {
            let Some(layer) = bitstream.layer(l) else { continue };
            for n in 0..layer.nal_count() {
                let Some(nal) = layer.nal_unit(n).map(strip_start_code) else { continue };
                let Some(&header) = nal.first() else { continue };
                match header & 0x1f {
                    NAL_SPS => set_parameter_set(&mut track.sps, nal, "SPS")?,
                    NAL_PPS => set_parameter_set(&mut track.pps, nal, "PPS")?,
                    kind => {
                        idr |= kind == NAL_IDR;
                        track.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        track.data.extend_from_slice(nal);
                    }
                }
            }
        }
        let size = track.data.len() - start;
        if size == 0 {
            return Err(VideoError::Encoder(format!("frame {t} produced no picture data")));
        }
        if t == 0 && !idr {
            return Err(VideoError::Encoder("the first frame is not an IDR picture".into()));
        }
        let size = u32::try_from(size).map_err(|_| VideoError::Encoder(format!("frame {t} is over 4 GiB")))?;
        track.sample_sizes.push(size);
        track.sync.push(idr);
    }
    if track.sps.is_empty() || track.pps.is_empty() {
        return Err(VideoError::Encoder("no SPS/PPS in the encoder output".into()));
    }
    Ok(track)
}

/// The mp4 sample description carries one SPS and one PPS; OpenH264 repeats them (same id) before
/// every IDR, so later copies must match the first.
fn set_parameter_set(slot: &mut Vec<u8>, nal: &[u8], what: &str) -> Result<(), VideoError> {
    if slot.is_empty() {
        slot.extend_from_slice(nal);
        Ok(())
    } else if slot == nal {
        Ok(())
    } else {
        Err(VideoError::Encoder(format!("the encoder changed its {what} mid-stream")))
    }
}

/// OpenH264 emits Annex B NAL units, each with its own 3- or 4-byte start code.
fn strip_start_code(nal: &[u8]) -> &[u8] {
    nal.strip_prefix(&[0, 0, 0, 1][..]).or_else(|| nal.strip_prefix(&[0, 0, 1][..])).unwrap_or(nal)
}

/// BT.601 limited-range coefficients (Y in 16..=235, Cb/Cr in 16..=240) in 16.16 fixed point,
/// applied to 8-bit R, G, B. Chroma rows sum to exactly 0 so greys get Cb = Cr = 128.
const fn fix(c: f64) -> i32 {
    (c * 65536.0 + 0.5) as i32
}
const Y_R: i32 = fix(65.481 / 255.0);
const Y_G: i32 = fix(128.553 / 255.0);
const Y_B: i32 = fix(24.966 / 255.0);
const CB_R: i32 = -fix(37.797 / 255.0);
const CB_G: i32 = -fix(74.203 / 255.0);
const CB_B: i32 = -(CB_R + CB_G);
const CR_G: i32 = -fix(93.786 / 255.0);
const CR_B: i32 = -fix(18.214 / 255.0);
const CR_R: i32 = -(CR_G + CR_B);

/// Converts one `[h, w, 3]` RGB frame to I420 at the even size `pw x ph` (>= w x h): rows and
/// columns past the frame repeat its last row/column; chroma is the 2x2 box average.
fn rgb_to_i420(rgb: &[u8], w: usize, h: usize, pw: usize, ph: usize, yuv: &mut [u8]) {
    let (y_plane, uv) = yuv.split_at_mut(pw * ph);
    let (u_plane, v_plane) = uv.split_at_mut(pw * ph / 4);
    let px = |x: usize, y: usize| {
        let i = (y.min(h - 1) * w + x.min(w - 1)) * 3;
        [i32::from(rgb[i]), i32::from(rgb[i + 1]), i32::from(rgb[i + 2])]
    };
    for y in 0..ph {
        let row = &mut y_plane[y * pw..(y + 1) * pw];
        for (x, out) in row.iter_mut().enumerate() {
            let [r, g, b] = px(x, y);
            *out = ((Y_R * r + Y_G * g + Y_B * b + (16 << 16) + (1 << 15)) >> 16) as u8;
        }
    }
    let cw = pw / 2;
    for cy in 0..ph / 2 {
        for cx in 0..cw {
            let (x, y) = (2 * cx, 2 * cy);
            let [a, b, c, d] = [px(x, y), px(x + 1, y), px(x, y + 1), px(x + 1, y + 1)];
            let [r, g, bl] = [0, 1, 2].map(|k| a[k] + b[k] + c[k] + d[k]);
            // Sums of four pixels: two extra fraction bits, so shift by 18.
            let cb = (CB_R * r + CB_G * g + CB_B * bl + (128 << 18) + (1 << 17)) >> 18;
            let cr = (CR_R * r + CR_G * g + CR_B * bl + (128 << 18) + (1 << 17)) >> 18;
            u_plane[cy * cw + cx] = cb as u8;
            v_plane[cy * cw + cx] = cr as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(rgb: &[u8], w: usize, h: usize) -> Vec<u8> {
        let (pw, ph) = (w + w % 2, h + h % 2);
        let mut yuv = vec![0; pw * ph * 3 / 2];
        rgb_to_i420(rgb, w, h, pw, ph, &mut yuv);
        yuv
    }

    #[test]
    fn limited_range_extremes_and_greys() {
        for (rgb, want) in [([0u8, 0, 0], [16u8, 128, 128]), ([255, 255, 255], [235, 128, 128])] {
            let yuv = convert(&rgb.repeat(4), 2, 2);
            assert_eq!(yuv, vec![want[0], want[0], want[0], want[0], want[1], want[2]]);
        }
        for v in 0..=255u8 {
            let yuv = convert(&[v; 12], 2, 2);
            assert_eq!(&yuv[4..], &[128, 128], "grey {v}");
        }
        // Saturated primaries: Cb/Cr stay inside 16..=240.
        let red = convert(&[255, 0, 0].repeat(4), 2, 2);
        assert_eq!((red[0], red[4], red[5]), (81, 90, 240));
        let blue = convert(&[0, 0, 255].repeat(4), 2, 2);
        assert_eq!((blue[0], blue[4], blue[5]), (41, 240, 110));
    }

    #[test]
    fn odd_sizes_replicate_the_edge() {
        // 3x1 image -> 4x2: the last column and the only row repeat.
        let rgb = [0, 0, 0, 128, 128, 128, 255, 255, 255];
        let yuv = convert(&rgb, 3, 1);
        assert_eq!(&yuv[..8], &[16, 126, 235, 235, 16, 126, 235, 235]);
    }

    #[test]
    fn start_codes() {
        assert_eq!(strip_start_code(&[0, 0, 0, 1, 0x67, 1]), &[0x67, 1]);
        assert_eq!(strip_start_code(&[0, 0, 1, 0x68]), &[0x68]);
        assert_eq!(strip_start_code(&[0x65]), &[0x65]);
    }
}
