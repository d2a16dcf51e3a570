//! A minimal ISO base media (mp4) writer for one H.264 video track (ISO/IEC 14496-12 and -15):
//! `ftyp`, then `moov` (the index: one `trak` with an `avc1`/`avcC` sample description, `stts`,
//! `stss`, `stsc`, `stsz`, `stco`), then `mdat` with every sample in one chunk. The index comes first
//! so players can start before the whole file has arrived. No B-frames, so no `ctts` or edit list.

use super::encode::Track;
use std::io::{self, Write};

/// Movie (mvhd/tkhd) time unit: milliseconds.
const MOVIE_TIMESCALE: u32 = 1000;
/// Each frame lasts `MEDIA_TICKS_PER_FRAME` in a media timescale of `fps * MEDIA_TICKS_PER_FRAME`.
const MEDIA_TICKS_PER_FRAME: u32 = 1000;
const TRACK_ID: u32 = 1;
/// The identity transform in mp4's 16.16 / 2.30 fixed point.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Writes the whole file; returns its size in bytes.
pub(crate) fn write<W: Write>(out: &mut W, track: &Track) -> io::Result<u64> {
    let ftyp = ftyp();
    let data_len = track.data.len() as u64;
    let mdat_header = mdat_header(data_len);
    // The chunk offset does not change the size of `moov`, so build it once to measure.
    let moov_len = moov(track, 0)?.len() as u64;
    let offset = ftyp.len() as u64 + moov_len + mdat_header.len() as u64;
    let offset = u32::try_from(offset).map_err(|_| invalid("the mp4 index is over 4 GiB"))?;
    let moov = moov(track, offset)?;
    out.write_all(&ftyp)?;
    out.write_all(&moov)?;
    out.write_all(&mdat_header)?;
    out.write_all(&track.data)?;
    out.flush()?;
    Ok(u64::from(offset) + data_len)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// Appends a box: 32-bit size, four-character type, then what `body` writes.
fn bx(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a "full box": a box whose body starts with a version byte and 24 bits of flags.
fn full(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    bx(out, kind, |o| {
        o.push(version);
        o.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(o);
    });
}

fn u16s(out: &mut Vec<u8>, values: &[u16]) {
    values.iter().for_each(|v| out.extend_from_slice(&v.to_be_bytes()));
}

fn u32s(out: &mut Vec<u8>, values: &[u32]) {
    values.iter().for_each(|v| out.extend_from_slice(&v.to_be_bytes()));
}

fn ftyp() -> Vec<u8> {
    let mut out = Vec::new();
    bx(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"isom");
        u32s(o, &[0x200]);
        o.extend_from_slice(b"isomiso2avc1mp41");
    });
    out
}

/// `mdat`'s header; the 64-bit "largesize" form only when the data needs it.
fn mdat_header(data_len: u64) -> Vec<u8> {
    match u32::try_from(data_len + 8) {
        Ok(size) => [&size.to_be_bytes()[..], b"mdat"].concat(),
        Err(_) => [&1u32.to_be_bytes()[..], b"mdat", &(data_len + 16).to_be_bytes()].concat(),
    }
}

/// The index, with the samples' single chunk starting at byte `chunk_offset` of the file.
fn moov(track: &Track, chunk_offset: u32) -> io::Result<Vec<u8>> {
    let frames = track.sample_sizes.len() as u64;
    let too_long = || invalid("the video is too long for 32-bit mp4 durations");
    let sample_count = u32::try_from(frames).map_err(|_| too_long())?;
    let media_timescale = track.fps.checked_mul(MEDIA_TICKS_PER_FRAME).ok_or_else(too_long)?;
    let media_duration = u32::try_from(frames * u64::from(MEDIA_TICKS_PER_FRAME)).map_err(|_| too_long())?;
    let movie_duration = frames * u64::from(MOVIE_TIMESCALE) / u64::from(track.fps);
    let movie_duration = u32::try_from(movie_duration).map_err(|_| too_long())?;
    let (width, height) = (track.width as u32, track.height as u32);
    let avcc = avcc(&track.sps, &track.pps)?;

    let mut out = Vec::new();
    bx(&mut out, b"moov", |o| {
        full(o, b"mvhd", 0, 0, |o| {
            u32s(o, &[0, 0, MOVIE_TIMESCALE, movie_duration, 0x0001_0000]);
            u16s(o, &[0x0100, 0]); // volume 1.0, reserved
            u32s(o, &[0, 0]);
            u32s(o, &MATRIX);
            u32s(o, &[0; 6]); // pre_defined
            u32s(o, &[TRACK_ID + 1]); // next_track_ID
        });
        bx(o, b"trak", |o| {
            // Flags: track enabled, used in the movie.
            full(o, b"tkhd", 0, 3, |o| {
                u32s(o, &[0, 0, TRACK_ID, 0, movie_duration, 0, 0]);
                u16s(o, &[0, 0, 0, 0]); // layer, alternate_group, volume (0 for video), reserved
                u32s(o, &MATRIX);
                u32s(o, &[width << 16, height << 16]);
            });
            bx(o, b"mdia", |o| {
                full(o, b"mdhd", 0, 0, |o| {
                    u32s(o, &[0, 0, media_timescale, media_duration]);
                    u16s(o, &[0x55c4, 0]); // language "und", pre_defined
                });
                full(o, b"hdlr", 0, 0, |o| {
                    u32s(o, &[0]);
                    o.extend_from_slice(b"vide");
                    u32s(o, &[0; 3]);
                    o.extend_from_slice(b"VideoHandler\0");
                });
                bx(o, b"minf", |o| {
                    full(o, b"vmhd", 0, 1, |o| u16s(o, &[0; 4]));
                    bx(o, b"dinf", |o| {
                        full(o, b"dref", 0, 0, |o| {
                            u32s(o, &[1]);
                            full(o, b"url ", 0, 1, |_| {}); // flag 1: data is in this file
                        });
                    });
                    stbl(o, track, width as u16, height as u16, &avcc, sample_count, chunk_offset);
                });
            });
        });
    });
    Ok(out)
}

/// The sample table: description, timing, sync samples, sizes and the one chunk's offset.
fn stbl(o: &mut Vec<u8>, track: &Track, width: u16, height: u16, avcc: &[u8], count: u32, chunk_offset: u32) {
    bx(o, b"stbl", |o| {
        full(o, b"stsd", 0, 0, |o| {
            u32s(o, &[1]);
            bx(o, b"avc1", |o| {
                o.extend_from_slice(&[0; 6]);
                u16s(o, &[1]); // data_reference_index
                u16s(o, &[0, 0]);
                u32s(o, &[0; 3]);
                u16s(o, &[width, height]);
                u32s(o, &[0x0048_0000, 0x0048_0000, 0]); // 72 dpi, reserved
                u16s(o, &[1]); // frame_count per sample
                let mut name = [0u8; 32];
                let label = b"vidlower OpenH264";
                name[0] = label.len() as u8;
                name[1..=label.len()].copy_from_slice(label);
                o.extend_from_slice(&name);
                u16s(o, &[0x0018, 0xffff]); // depth 24, pre_defined -1
                bx(o, b"avcC", |o| o.extend_from_slice(avcc));
            });
        });
        full(o, b"stts", 0, 0, |o| u32s(o, &[1, count, MEDIA_TICKS_PER_FRAME]));
        full(o, b"stss", 0, 0, |o| {
            let sync: Vec<u32> = (1..).zip(&track.sync).filter(|(_, &s)| s).map(|(n, _)| n).collect();
            u32s(o, &[sync.len() as u32]);
            u32s(o, &sync);
        });
        full(o, b"stsc", 0, 0, |o| u32s(o, &[1, 1, count, 1]));
        full(o, b"stsz", 0, 0, |o| {
            u32s(o, &[0, count]);
            u32s(o, &track.sample_sizes);
        });
        full(o, b"stco", 0, 0, |o| u32s(o, &[1, chunk_offset]));
    });
}

/// `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 5.3.3.1): profile, compatibility and level
/// copied from the SPS, 4-byte NAL lengths, one SPS and one PPS.
fn avcc(sps: &[u8], pps: &[u8]) -> io::Result<Vec<u8>> {
    if sps.len() < 4 || pps.is_empty() || sps.len() > 0xffff || pps.len() > 0xffff {
        return Err(invalid("the encoder's SPS/PPS are malformed"));
    }
    let mut out = vec![1, sps[1], sps[2], sps[3], 0xfc | 3, 0xe0 | 1];
    u16s(&mut out, &[sps.len() as u16]);
    out.extend_from_slice(sps);
    out.push(1);
    u16s(&mut out, &[pps.len() as u16]);
    out.extend_from_slice(pps);
    // High profiles carry chroma format and bit depths (4:2:0, 8 bit) and no SPS extensions.
    if matches!(sps[1], 100 | 110 | 122 | 144) {
        out.extend_from_slice(&[0xfc | 1, 0xf8, 0xf8, 0]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track() -> Track {
        Track {
            width: 4,
            height: 2,
            fps: 16,
            sps: vec![0x67, 66, 0xc0, 30],
            pps: vec![0x68, 0xce],
            data: vec![0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x41],
            sample_sizes: vec![6, 5],
            sync: vec![true, false],
        }
    }

    /// Top-level boxes as (type, size), walking the 32-bit sizes.
    fn top_level(file: &[u8]) -> Vec<(String, usize)> {
        let mut boxes = Vec::new();
        let mut at = 0;
        while at + 8 <= file.len() {
            let size = u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
            boxes.push((String::from_utf8_lossy(&file[at + 4..at + 8]).into_owned(), size));
            at += size;
        }
        assert_eq!(at, file.len(), "box sizes must tile the file");
        boxes
    }

    #[test]
    fn layout_and_chunk_offset() {
        let mut file = Vec::new();
        let n = write(&mut file, &track()).unwrap();
        assert_eq!(n as usize, file.len());
        let boxes = top_level(&file);
        let kinds: Vec<&str> = boxes.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["ftyp", "moov", "mdat"]);
        // stco points at the first sample, right after the mdat header.
        let stco = file.windows(4).position(|w| w == b"stco").unwrap();
        let offset = u32::from_be_bytes(file[stco + 12..stco + 16].try_into().unwrap()) as usize;
        assert_eq!(&file[offset..], &track().data[..]);
        // Only sample 1 is a sync sample.
        let stss = file.windows(4).position(|w| w == b"stss").unwrap();
        assert_eq!(&file[stss + 8..stss + 16], &[0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn avcc_record() {
        let t = track();
        let rec = avcc(&t.sps, &t.pps).unwrap();
        assert_eq!(rec, [1, 66, 0xc0, 30, 0xff, 0xe1, 0, 4, 0x67, 66, 0xc0, 30, 1, 0, 2, 0x68, 0xce]);
        assert!(avcc(&[0x67], &t.pps).is_err());
    }

    #[test]
    fn large_mdat_uses_largesize() {
        assert_eq!(mdat_header(10), [0, 0, 0, 18, b'm', b'd', b'a', b't']);
        let big = mdat_header(u64::from(u32::MAX));
        assert_eq!(big.len(), 16);
        assert_eq!(&big[..4], &1u32.to_be_bytes());
    }
}
