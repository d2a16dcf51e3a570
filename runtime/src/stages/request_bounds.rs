//! Sizes no machine can hold are refused with one line before anything is allocated (a
//! `--height 160000 --width 160000` request once aborted the process in the allocator). The
//! arithmetic is checked, so the bound itself cannot overflow.

use super::model::OpenedModel;
use vidlower_frontends::family::VideoSize;

/// The largest `--height` / `--width` accepted (a 16K frame side).
pub const MAX_SIDE: i64 = 16384;
/// The largest `--frames` accepted.
pub const MAX_FRAMES: i64 = 4097;

/// Checks the request's sizes against fixed bounds and its largest host buffers (the latents,
/// the decoded f32 frames) against this machine's memory.
pub fn check(model: &OpenedModel, v: &VideoSize) -> Result<(), String> {
    for (flag, x, max) in [("--height", v.height, MAX_SIDE), ("--width", v.width, MAX_SIDE), ("--frames", v.frames, MAX_FRAMES)] {
        if x > max {
            return Err(format!("{flag} {x}: larger than vidlower accepts (at most {max})"));
        }
    }
    let what = format!("--height {} --width {} --frames {}", v.height, v.width, v.frames);
    if v.height < 1 || v.width < 1 || v.frames < 1 {
        return Ok(()); // the family's check names the flag
    }
    let product = |dims: &[i64]| dims.iter().try_fold(4u64, |a, &d| a.checked_mul(u64::try_from(d).ok()?));
    let frames = product(&[v.frames, v.height, v.width, 3]);
    let latents = product(&model.latent_shape(v));
    let need = frames.zip(latents).map(|(f, l)| f.max(l));
    let memory = total_memory();
    match (need, memory) {
        (None, _) => Err(format!("{what}: the decoded frames would not fit in any machine's memory")),
        (Some(n), Some(m)) if n > m => Err(format!(
            "{what}: the decoded frames alone take {:.1} GiB (f32), more than this machine's {:.1} GiB of memory",
            gib(n),
            gib(m)
        )),
        _ => Ok(()),
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// `MemTotal` from /proc/meminfo, in bytes (None where there is none).
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
