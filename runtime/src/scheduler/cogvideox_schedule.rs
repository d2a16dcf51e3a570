//! What `CogVideoXDDIMScheduler` and `CogVideoXDPMScheduler` share (diffusers 0.42.1,
//! `schedulers/scheduling_{ddim,dpm}_cogvideox.py`): the config, `alphas_cumprod` (betas, SNR shift,
//! zero-terminal-SNR rescale) and the inference timesteps (`timestep_spacing`, `steps_offset`).
//!
//! Precision: diffusers builds `scaled_linear` betas in float64 (`torch.linspace(..., dtype=float64) ** 2`), so
//! `alphas_cumprod` is f64 and so is every per-step coefficient; here too. The steps themselves multiply
//! f32 latents by those coefficients rounded to f32, as torch does with a 0-d f64 tensor and an f32 tensor.

use super::numerics::{np_arange, np_linspace, np_round, torch_linspace_f64};
use super::{parse_config, unsupported, SchedulerError};
use serde::Deserialize;

/// Which of the two classes a config is for (their defaults differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ddim,
    Dpm,
}

impl Kind {
    pub fn class_name(self) -> &'static str {
        match self {
            Kind::Ddim => "CogVideoXDDIMScheduler",
            Kind::Dpm => "CogVideoXDPMScheduler",
        }
    }
}

/// `prediction_type`: what the transformer predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    Sample,
    VPrediction,
}

/// `timestep_spacing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    Linspace,
    Leading,
    Trailing,
}

/// The fields of `scheduler_config.json` as written (unknown fields ignored); `None` takes the class default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
struct RawConfig {
    num_train_timesteps: Option<i64>,
    beta_start: Option<f64>,
    beta_end: Option<f64>,
    beta_schedule: Option<String>,
    trained_betas: Option<Vec<f64>>,
    clip_sample: Option<bool>,
    set_alpha_to_one: Option<bool>,
    steps_offset: Option<i64>,
    prediction_type: Option<String>,
    timestep_spacing: Option<String>,
    rescale_betas_zero_snr: Option<bool>,
    snr_shift_scale: Option<f64>,
    thresholding: Option<bool>,
}

/// A checked CogVideoX DDIM/DPM config (`clip_sample`, `clip_sample_range` and `sample_max_value` are accepted
/// and ignored: the CogVideoX steps never clip, in diffusers either).
#[derive(Clone, Debug, PartialEq)]
pub struct CogVideoXSchedulerConfig {
    pub kind: Kind,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub set_alpha_to_one: bool,
    pub steps_offset: i64,
    pub prediction_type: Prediction,
    pub timestep_spacing: Spacing,
    pub rescale_betas_zero_snr: bool,
    pub snr_shift_scale: f64,
}

impl CogVideoXSchedulerConfig {
    /// Parses and checks a config object (`_class_name` is not looked at: `kind` says which class).
    pub fn from_json(value: &serde_json::Value, kind: Kind) -> Result<Self, SchedulerError> {
        let raw: RawConfig = parse_config(value)?;
        Self::from_raw(raw, kind)
    }

    /// The class defaults (diffusers' `__init__` signature).
    pub fn defaults(kind: Kind) -> Self {
        Self::from_raw(RawConfig::default(), kind).expect("the defaults are supported")
    }

    fn from_raw(raw: RawConfig, kind: Kind) -> Result<Self, SchedulerError> {
        let class = kind.class_name();
        let (beta_start, beta_end, beta_schedule) = match kind {
            Kind::Ddim => (0.00085, 0.012, "scaled_linear"),
            Kind::Dpm => (0.0001, 0.02, "linear"),
        };
        let beta_schedule = raw.beta_schedule.as_deref().unwrap_or(beta_schedule);
        if beta_schedule != "scaled_linear" {
            return Err(unsupported(
                class,
                "beta_schedule",
                beta_schedule,
                "only \"scaled_linear\" is implemented (what every CogVideoX checkpoint uses; \"linear\" and \
                 \"squaredcos_cap_v2\" are not)",
            ));
        }
        if let Some(b) = &raw.trained_betas {
            return Err(unsupported(class, "trained_betas", format!("[{} values]", b.len()), "expected null"));
        }
        if raw.thresholding == Some(true) {
            return Err(unsupported(
                class,
                "thresholding",
                true,
                "the CogVideoX schedulers have no dynamic thresholding (diffusers ignores the field); expected false",
            ));
        }
        let num_train_timesteps = raw.num_train_timesteps.unwrap_or(1000);
        if num_train_timesteps < 2 {
            return Err(unsupported(class, "num_train_timesteps", num_train_timesteps, "must be at least 2"));
        }
        let prediction_type = match raw.prediction_type.as_deref().unwrap_or("epsilon") {
            "epsilon" => Prediction::Epsilon,
            "sample" => Prediction::Sample,
            "v_prediction" => Prediction::VPrediction,
            other => {
                return Err(unsupported(
                    class,
                    "prediction_type",
                    other,
                    "expected \"epsilon\", \"sample\" or \"v_prediction\"",
                ))
            }
        };
        let timestep_spacing = match raw.timestep_spacing.as_deref().unwrap_or("leading") {
            "linspace" => Spacing::Linspace,
            "leading" => Spacing::Leading,
            "trailing" => Spacing::Trailing,
            other => {
                return Err(unsupported(
                    class,
                    "timestep_spacing",
                    other,
                    "expected \"trailing\", \"leading\" or \"linspace\"",
                ))
            }
        };
        let snr_shift_scale = raw.snr_shift_scale.unwrap_or(3.0);
        if !(snr_shift_scale.is_finite() && snr_shift_scale > 0.0) {
            return Err(unsupported(class, "snr_shift_scale", snr_shift_scale, "must be finite and > 0"));
        }
        let beta_start = raw.beta_start.unwrap_or(beta_start);
        let beta_end = raw.beta_end.unwrap_or(beta_end);
        for (field, b) in [("beta_start", beta_start), ("beta_end", beta_end)] {
            if !(b.is_finite() && b > 0.0 && b < 1.0) {
                return Err(unsupported(class, field, b, "must be in (0, 1)"));
            }
        }
        Ok(CogVideoXSchedulerConfig {
            kind,
            num_train_timesteps: num_train_timesteps as usize,
            beta_start,
            beta_end,
            set_alpha_to_one: raw.set_alpha_to_one.unwrap_or(true),
            steps_offset: raw.steps_offset.unwrap_or(0),
            prediction_type,
            timestep_spacing,
            rescale_betas_zero_snr: raw.rescale_betas_zero_snr.unwrap_or(false),
            snr_shift_scale,
        })
    }

    /// `"v_prediction, trailing, snr_shift_scale 1.0"` for `describe`.
    pub fn summary(&self) -> String {
        let pred = match self.prediction_type {
            Prediction::Epsilon => "epsilon",
            Prediction::Sample => "sample",
            Prediction::VPrediction => "v_prediction",
        };
        let spacing = match self.timestep_spacing {
            Spacing::Linspace => "linspace",
            Spacing::Leading => "leading",
            Spacing::Trailing => "trailing",
        };
        let mut s = format!("{pred}, {spacing}, snr_shift_scale {:?}", self.snr_shift_scale);
        if self.rescale_betas_zero_snr {
            s.push_str(", zero terminal SNR");
        }
        s
    }
}

/// The noise schedule and the current inference timesteps, shared by the DDIM and DPM steps.
#[derive(Clone, Debug)]
pub struct CogVideoXSchedule {
    pub config: CogVideoXSchedulerConfig,
    /// `alphas_cumprod[t]` for t in 0..num_train_timesteps (f64, as diffusers).
    pub alphas_cumprod: Vec<f64>,
    /// `final_alpha_cumprod`: 1.0 with `set_alpha_to_one`, else `alphas_cumprod[0]`.
    pub final_alpha_cumprod: f64,
    /// The inference timesteps (train-timestep indices), descending.
    pub timesteps: Vec<usize>,
    /// The same as f64 for [`Scheduler::timesteps`](super::Scheduler::timesteps).
    pub timesteps_f64: Vec<f64>,
}

impl CogVideoXSchedule {
    pub fn new(config: &CogVideoXSchedulerConfig) -> Self {
        let alphas_cumprod = alphas_cumprod(config);
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        CogVideoXSchedule {
            config: config.clone(),
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps: vec![],
            timesteps_f64: vec![],
        }
    }

    /// diffusers' `set_timesteps(n)`. Refuses the step counts for which diffusers' schedule is not `n`
    /// timesteps in `[0, T)` (trailing spacing with n = 61, 103, ...: `np.arange`'s float length overshoots
    /// and the extra timestep -1 indexes `alphas_cumprod[-1]`; leading with a large `steps_offset`).
    pub fn set_timesteps(&mut self, n: usize) -> Result<(), SchedulerError> {
        self.timesteps.clear();
        self.timesteps_f64.clear();
        let class = self.config.kind.class_name();
        let t_train = self.config.num_train_timesteps;
        if n == 0 || n > t_train {
            return Err(SchedulerError::InvalidSteps {
                scheduler: class,
                steps: n,
                reason: format!("must be in 1..={t_train} (num_train_timesteps)"),
            });
        }
        let ts: Vec<i64> = timesteps(&self.config, n);
        if ts.len() != n || ts.iter().any(|&t| t < 0 || t >= t_train as i64) {
            return Err(SchedulerError::InvalidSteps {
                scheduler: class,
                steps: n,
                reason: format!(
                    "diffusers' {:?} spacing gives {} timesteps ranging {}..={} here, not {n} in 0..{t_train}; choose another step count",
                    self.config.timestep_spacing,
                    ts.len(),
                    ts.iter().min().unwrap_or(&0),
                    ts.iter().max().unwrap_or(&0)
                ),
            });
        }
        self.timesteps = ts.iter().map(|&t| t as usize).collect();
        self.timesteps_f64 = ts.iter().map(|&t| t as f64).collect();
        Ok(())
    }

    /// `alphas_cumprod[prev_timestep]`, where diffusers steps to `timestep - T // n` (not to the next entry of
    /// the schedule: with trailing spacing and n = 3 the step from 666 goes to 333 although the next timestep
    /// is 332), or `final_alpha_cumprod` below 0. Also returns whether it was below 0.
    pub fn alpha_prev(&self, timestep: usize) -> (f64, bool) {
        let prev = timestep as i64 - (self.config.num_train_timesteps / self.timesteps.len()) as i64;
        if prev >= 0 {
            (self.alphas_cumprod[prev as usize], false)
        } else {
            (self.final_alpha_cumprod, true)
        }
    }

    /// `pred_original_sample` (x0) from the model output, in f32 as diffusers computes it. With epsilon
    /// prediction at a timestep of zero SNR (`alpha_prod_t = 0`) diffusers divides by zero; refused here.
    pub fn pred_original_sample(
        &self,
        alpha_prod_t: f64,
        model_output: &[f32],
        sample: &[f32],
        step_index: usize,
    ) -> Result<Vec<f32>, SchedulerError> {
        let beta_prod_t = 1.0 - alpha_prod_t;
        let (sa, sb) = (alpha_prod_t.sqrt() as f32, beta_prod_t.sqrt() as f32);
        Ok(match self.config.prediction_type {
            // (sample - beta^0.5 * model_output) / alpha^0.5
            Prediction::Epsilon => {
                if sa == 0.0 {
                    return Err(SchedulerError::NonFinite {
                        scheduler: self.config.kind.class_name(),
                        step_index,
                        timestep: self.timesteps_f64[step_index],
                        reason: "epsilon prediction at zero SNR (alphas_cumprod = 0) divides by zero; \
                                 use v_prediction or a config without rescale_betas_zero_snr"
                            .into(),
                    });
                }
                model_output.iter().zip(sample).map(|(&e, &x)| (x - sb * e) / sa).collect()
            }
            Prediction::Sample => model_output.to_vec(),
            // alpha^0.5 * sample - beta^0.5 * model_output
            Prediction::VPrediction => model_output.iter().zip(sample).map(|(&v, &x)| sa * x - sb * v).collect(),
        })
    }
}

/// diffusers' `__init__`: scaled_linear betas in f64, `alphas_cumprod = cumprod(1 - betas)`, then the SNR
/// shift `a / (s + (1 - s) a)`, then (optionally) the zero-terminal-SNR rescale.
pub fn alphas_cumprod(c: &CogVideoXSchedulerConfig) -> Vec<f64> {
    let sqrt_betas = torch_linspace_f64(c.beta_start.sqrt(), c.beta_end.sqrt(), c.num_train_timesteps);
    let mut acc = 1.0f64;
    let mut ac: Vec<f64> = sqrt_betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b * b;
            acc
        })
        .collect();
    let s = c.snr_shift_scale;
    for a in &mut ac {
        *a /= s + (1.0 - s) * *a;
    }
    if c.rescale_betas_zero_snr {
        // rescale_zero_terminal_snr: shift sqrt(alphas_bar) so the last is 0, scale so the first is unchanged.
        let mut sq: Vec<f64> = ac.iter().map(|a| a.sqrt()).collect();
        let (first, last) = (sq[0], sq[sq.len() - 1]);
        let scale = first / (first - last);
        for v in &mut sq {
            *v -= last;
            *v *= scale;
        }
        ac = sq.iter().map(|v| v * v).collect();
    }
    ac
}

/// diffusers' timestep spacing for `n` inference steps (int64, possibly out of range; see
/// [`CogVideoXSchedule::set_timesteps`]).
pub fn timesteps(c: &CogVideoXSchedulerConfig, n: usize) -> Vec<i64> {
    let t_train = c.num_train_timesteps;
    match c.timestep_spacing {
        // np.linspace(0, T - 1, n).round()[::-1]
        Spacing::Linspace => {
            np_linspace(0.0, (t_train - 1) as f64, n).into_iter().rev().map(|x| np_round(x) as i64).collect()
        }
        // (np.arange(0, n) * (T // n)).round()[::-1] + steps_offset
        Spacing::Leading => {
            let ratio = (t_train / n) as i64;
            (0..n as i64).rev().map(|i| i * ratio + c.steps_offset).collect()
        }
        // np.round(np.arange(T, 0, -T / n)) - 1
        Spacing::Trailing => {
            let ratio = t_train as f64 / n as f64;
            np_arange(t_train as f64, 0.0, -ratio).into_iter().map(|x| np_round(x) as i64 - 1).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value, kind: Kind) -> Result<CogVideoXSchedulerConfig, SchedulerError> {
        CogVideoXSchedulerConfig::from_json(&v, kind)
    }

    #[test]
    fn defaults_follow_the_class() {
        let d = CogVideoXSchedulerConfig::defaults(Kind::Ddim);
        assert_eq!((d.beta_start, d.beta_end, d.snr_shift_scale), (0.00085, 0.012, 3.0));
        assert_eq!(
            (d.timestep_spacing, d.prediction_type, d.set_alpha_to_one),
            (Spacing::Leading, Prediction::Epsilon, true)
        );
        // The DPM class defaults to linear betas, which are not implemented: its real configs set scaled_linear.
        let e = cfg(json!({}), Kind::Dpm).unwrap_err();
        assert_eq!(e.field(), Some("beta_schedule"));
        assert!(e.to_string().starts_with("CogVideoXDPMScheduler scheduler config: beta_schedule = \"linear\""), "{e}");
    }

    #[test]
    fn unsupported_values_name_field_value_and_alternatives() {
        let cases = [
            (json!({"beta_schedule": "squaredcos_cap_v2"}), "beta_schedule", "\"scaled_linear\""),
            (json!({"trained_betas": [0.1, 0.2]}), "trained_betas", "null"),
            (json!({"thresholding": true}), "thresholding", "false"),
            (json!({"prediction_type": "flow_prediction"}), "prediction_type", "\"v_prediction\""),
            (json!({"timestep_spacing": "karras"}), "timestep_spacing", "\"trailing\""),
            (json!({"snr_shift_scale": 0.0}), "snr_shift_scale", "> 0"),
            (json!({"num_train_timesteps": 1}), "num_train_timesteps", "at least 2"),
            (json!({"beta_end": 1.5}), "beta_end", "(0, 1)"),
        ];
        for (v, field, alt) in cases {
            let e = cfg(v, Kind::Ddim).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.field(), Some(field), "{msg}");
            assert!(msg.contains(field) && msg.contains(alt), "{msg}");
        }
        // Ignored as diffusers ignores them.
        cfg(
            json!({"clip_sample": true, "clip_sample_range": 2.0, "sample_max_value": 3.0, "thresholding": false}),
            Kind::Ddim,
        )
        .unwrap();
    }

    #[test]
    fn step_counts_diffusers_gets_wrong_are_refused() {
        let c = cfg(json!({"timestep_spacing": "trailing"}), Kind::Ddim).unwrap();
        let mut s = CogVideoXSchedule::new(&c);
        s.set_timesteps(60).unwrap();
        let e = s.set_timesteps(61).unwrap_err();
        assert!(
            matches!(e, SchedulerError::InvalidSteps { steps: 61, .. }) && e.to_string().contains("62 timesteps"),
            "{e}"
        );
        assert!(s.timesteps.is_empty());
        assert!(matches!(s.set_timesteps(0), Err(SchedulerError::InvalidSteps { .. })));
        assert!(matches!(s.set_timesteps(1001), Err(SchedulerError::InvalidSteps { .. })));
    }

    #[test]
    fn ddim_prev_timestep_is_t_minus_ratio() {
        let c = cfg(json!({"timestep_spacing": "trailing", "rescale_betas_zero_snr": true}), Kind::Ddim).unwrap();
        let mut s = CogVideoXSchedule::new(&c);
        s.set_timesteps(3).unwrap();
        assert_eq!(s.timesteps, vec![999, 666, 332]);
        assert_eq!(s.alpha_prev(666), (s.alphas_cumprod[333], false));
        assert_eq!(s.alpha_prev(332), (1.0, true));
        assert_eq!(s.alphas_cumprod[999], 0.0, "zero terminal SNR");
    }
}
