//! diffusers' `ClassifierFreeGuidance` guider (`guider/guider_config.json`), which
//! `HunyuanVideo15Pipeline` runs instead of an inline CFG formula: the scale, the optional
//! `guidance_rescale` (`rescale_noise_cfg`), the original-paper formulation, and the step window
//! `[int(start * steps), int(stop * steps))` outside which the conditional prediction is used alone.

use crate::family::FamilyError;
use serde::Deserialize;
use std::path::Path;

/// `guider/guider_config.json`; missing fields take `ClassifierFreeGuidance.__init__`'s defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct GuiderConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub guidance_scale: f64,
    pub guidance_rescale: f64,
    pub use_original_formulation: bool,
    pub start: f64,
    pub stop: f64,
    pub enabled: bool,
}

impl Default for GuiderConfig {
    fn default() -> Self {
        GuiderConfig {
            class_name: "ClassifierFreeGuidance".into(),
            guidance_scale: 7.5,
            guidance_rescale: 0.0,
            use_original_formulation: false,
            start: 0.0,
            stop: 1.0,
            enabled: true,
        }
    }
}

impl GuiderConfig {
    /// Reads the file and refuses a guider other than classifier-free guidance, naming it.
    pub fn read(path: &Path) -> Result<GuiderConfig, FamilyError> {
        let g: GuiderConfig = crate::config::read_json(path)?;
        if g.class_name != "ClassifierFreeGuidance" {
            return Err(FamilyError::Unsupported(format!(
                "{}: `_class_name` {:?}: vidlower runs ClassifierFreeGuidance only",
                path.display(),
                g.class_name
            )));
        }
        if !(0.0..=1.0).contains(&g.start) || !(0.0..=1.0).contains(&g.stop) || g.start > g.stop {
            return Err(FamilyError::Unsupported(format!(
                "{}: `start` {} / `stop` {}: expected 0 <= start <= stop <= 1",
                path.display(),
                g.start,
                g.stop
            )));
        }
        Ok(g)
    }

    /// The scale at which guidance does nothing (`_is_cfg_enabled`'s `is_close`).
    fn neutral_scale(&self) -> f64 {
        if self.use_original_formulation {
            0.0
        } else {
            1.0
        }
    }

    /// Whether the pipeline encodes the negative prompt and runs the unconditional batch at all
    /// (`guider.num_conditions > 1` before the loop, where every step is in range).
    pub fn uses_negative(&self, scale: f64) -> bool {
        self.enabled && (scale - self.neutral_scale()).abs() > 1e-9
    }

    /// Whether step `step` of `steps` is guided (`_is_cfg_enabled` at that step).
    pub fn guided_at(&self, scale: f64, step: usize, steps: usize) -> bool {
        let from = (self.start * steps as f64) as usize;
        let to = (self.stop * steps as f64) as usize;
        self.uses_negative(scale) && from <= step && step < to
    }

    /// `ClassifierFreeGuidance.forward` at step `step` of `steps` with `scale` (the CLI's
    /// `--guidance-scale` or the config's): `cond` alone outside the window, else
    /// `base + scale * (cond - uncond)` with `base` = uncond (diffusers-native) or cond
    /// (original formulation), then `rescale_noise_cfg` when `guidance_rescale > 0`.
    pub fn guide(&self, cond: &[f32], uncond: &[f32], scale: f64, step: usize, steps: usize) -> Vec<f32> {
        let mut pred: Vec<f32> = if self.guided_at(scale, step, steps) {
            let g = scale as f32;
            cond.iter()
                .zip(uncond)
                .map(|(&c, &u)| {
                    let base = if self.use_original_formulation { c } else { u };
                    base + g * (c - u)
                })
                .collect()
        } else {
            cond.to_vec()
        };
        if self.guidance_rescale > 0.0 {
            rescale_noise_cfg(&mut pred, cond, self.guidance_rescale);
        }
        pred
    }
}

/// diffusers' `rescale_noise_cfg` for one sample (batch 1): the guided prediction rescaled to the
/// conditional one's standard deviation (torch's unbiased `std` over all non-batch dims), mixed
/// with the unrescaled one by `rescale`.
pub fn rescale_noise_cfg(pred: &mut [f32], cond: &[f32], rescale: f64) {
    let std = |v: &[f32]| {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt()
    };
    let (std_text, std_cfg) = (std(cond), std(pred));
    if std_cfg == 0.0 {
        return;
    }
    let factor = std_text / std_cfg;
    for p in pred.iter_mut() {
        let rescaled = *p as f64 * factor;
        *p = (rescale * rescaled + (1.0 - rescale) * *p as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_formulations() {
        let g = GuiderConfig { guidance_scale: 6.0, start: 0.2, stop: 0.6, ..Default::default() };
        // int(0.2 * 10) = 2 .. int(0.6 * 10) = 6
        let guided: Vec<bool> = (0..10).map(|i| g.guided_at(6.0, i, 10)).collect();
        assert_eq!(guided, [false, false, true, true, true, true, false, false, false, false]);
        assert_eq!(g.guide(&[2.0], &[1.0], 6.0, 0, 10), vec![2.0]);
        assert_eq!(g.guide(&[2.0], &[1.0], 6.0, 3, 10), vec![7.0]);
        let orig = GuiderConfig { use_original_formulation: true, ..g.clone() };
        assert_eq!(orig.guide(&[2.0], &[1.0], 6.0, 3, 10), vec![8.0]);
        assert!(!g.uses_negative(1.0) && orig.uses_negative(1.0) && !orig.uses_negative(0.0));
        assert!(!GuiderConfig { enabled: false, ..g }.uses_negative(6.0));
    }

    #[test]
    fn rescale_matches_the_formula() {
        // cond std (unbiased) of [0, 2] is sqrt(2); pred [0, 4] has 2 sqrt(2): factor 1/2.
        let mut p = vec![0.0, 4.0];
        rescale_noise_cfg(&mut p, &[0.0, 2.0], 0.5);
        assert_eq!(p, vec![0.0, 0.5 * 2.0 + 0.5 * 4.0]);
    }
}
