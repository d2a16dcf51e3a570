//! Classifier-free guidance helpers the denoising loops share: the combine step and CogVideoX's dynamic
//! guidance scale (`use_dynamic_cfg`).

/// CogVideoX's dynamic CFG scale (diffusers `pipeline_cogvideox.py`, `use_dynamic_cfg=True`), verbatim:
/// `1 + g * ((1 - cos(pi * ((num_inference_steps - t) / num_inference_steps) ** 5.0)) / 2)` with `t` the
/// timestep (`t.item()`, e.g. 999), not the step index, so for t > num_inference_steps the base is negative
/// and the scale oscillates; that is what diffusers computes, so it is what we compute.
pub fn cogvideox_dynamic_guidance_scale(guidance_scale: f64, num_inference_steps: usize, timestep: f64) -> f64 {
    let n = num_inference_steps as f64;
    1.0 + guidance_scale * ((1.0 - (std::f64::consts::PI * ((n - timestep) / n).powf(5.0)).cos()) / 2.0)
}

/// `uncond + g * (cond - uncond)` in f32, diffusers' expression and order (`g` rounded to f32, as a Python
/// float times an f32 tensor is).
pub fn cfg_combine(uncond: &[f32], cond: &[f32], guidance_scale: f64) -> Vec<f32> {
    let g = guidance_scale as f32;
    uncond.iter().zip(cond).map(|(&u, &c)| u + g * (c - u)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [guidance, steps, timestep, the pipeline's value] from Python (`dynamic_cfg_cases` in
    /// tools/golden/make_cogvideox_scheduler_goldens.py).
    const CASES: [(f64, usize, f64, f64); 9] = [
        (6.0, 50, 999.0, 2.291487174551452),
        (6.0, 50, 979.0, 2.5435028667646318),
        (6.0, 50, 19.0, 1.123397939968981),
        (6.0, 50, 49.0, 1.0),
        (6.0, 3, 999.0, 1.0000000386950705),
        (6.0, 3, 332.0, 3.7481633040187146),
        (6.0, 3, 2.0, 1.0002507104336882),
        (7.0, 50, 50.0, 1.0),
        (6.0, 50, 0.0, 7.0),
    ];

    #[test]
    fn dynamic_scale_matches_python() {
        for (g, n, t, want) in CASES {
            let got = cogvideox_dynamic_guidance_scale(g, n, t);
            // Python's math.cos / pow and Rust's are the same libm here (measured: equal); allow another
            // libm's last bits on cos of arguments up to ~1e7 rad.
            assert!((got - want).abs() <= 1e-12, "g {g} n {n} t {t}: {got} vs {want}");
        }
    }

    #[test]
    fn combine_is_uncond_plus_scaled_difference() {
        assert_eq!(cfg_combine(&[1.0, -1.0], &[2.0, 1.0], 6.0), vec![7.0, 11.0]);
        assert_eq!(cfg_combine(&[1.0], &[2.0], 1.0), vec![2.0]);
    }
}
