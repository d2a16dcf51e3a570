//! The numpy / torch range arithmetic diffusers builds its schedules with, replicated so that integer
//! timesteps come out identical (a last-bit difference before `np.round` can move a timestep by one, and
//! `np.arange`'s float length decides how many timesteps there are).

/// `np.arange(start, stop, step)` for float64: length `ceil((stop - start) / step)`, then numpy's fill:
/// `x[0] = start`, `x[1] = start + step`, `x[i] = start + i * (x[1] - x[0])`.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if len.is_nan() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    out.push(start);
    if len > 1 {
        out.push(start + step);
    }
    let delta = if len > 1 { out[1] - out[0] } else { 0.0 };
    for i in 2..len {
        out.push(start + i as f64 * delta);
    }
    out
}

/// `np.linspace(start, stop, num)` (endpoint true) for float64: `x[i] = i * ((stop - start) / (num - 1)) +
/// start`, the last entry set to `stop`; `[start]` for `num = 1`.
pub fn np_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut out: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            out[num - 1] = stop;
            out
        }
    }
}

/// `torch.linspace(start, end, steps, dtype=float64)` on CPU, scalar form: the first half counts up from
/// `start`, the second half down from `end`. (torch's vectorized fill computes some entries as
/// `base + j * step` from a chunk's base instead, which can differ in the last bit; the betas built from it
/// then differ from torch's by ~1e-16 relative.)
pub fn torch_linspace_f64(start: f64, end: f64, steps: usize) -> Vec<f64> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps as f64 - 1.0);
    let halfway = steps / 2;
    (0..steps)
        .map(|i| if i < halfway { start + step * i as f64 } else { end - step * (steps - i - 1) as f64 })
        .collect()
}

/// `np.round`: to the nearest integer, ties to even.
pub fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arange_overshoots_like_numpy() {
        // np.arange(1000, 0, -1000/61) has 62 entries, the last ~1e-13 (numpy 2.4).
        let a = np_arange(1000.0, 0.0, -1000.0 / 61.0);
        assert_eq!(a.len(), 62);
        assert!(a[61].abs() < 1e-9, "{}", a[61]);
        assert_eq!(np_arange(1000.0, 0.0, -200.0), vec![1000.0, 800.0, 600.0, 400.0, 200.0]);
        assert!(np_arange(0.0, 1.0, -1.0).is_empty());
    }

    #[test]
    fn linspace_and_round() {
        assert_eq!(np_linspace(0.0, 999.0, 3), vec![0.0, 499.5, 999.0]);
        assert_eq!(np_linspace(1.0, 0.0, 5)[..4], [1.0, 0.75, 0.5, 0.25]);
        assert_eq!(np_linspace(0.0, 999.0, 1), vec![0.0]);
        assert_eq!((np_round(499.5), np_round(500.5), np_round(-0.5)), (500.0, 500.0, -0.0));
        let t = torch_linspace_f64(0.0, 1.0, 5);
        assert_eq!(t, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }
}
