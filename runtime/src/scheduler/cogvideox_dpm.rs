//! `CogVideoXDPMScheduler` (diffusers 0.42.1, `schedulers/scheduling_dpm_cogvideox.py`), the CogVideoX-5b /
//! CogVideoX1.5-5B scheduler: a stochastic DPM-Solver++(2M) step (the original CogVideoX sampler).
//!
//! With `lambda = log sqrt(a / (1 - a))` at the current (`a_t`), next (`a_prev`, at `t - T // n`) and last
//! (`a_back`, at the previous timestep of the schedule) points, `h = lambda_next - lambda`, `r = h_last / h`:
//! ```text
//! mult1 = sqrt((1 - a_prev) / (1 - a_t)) e^-h      mult2 = expm1(-2h) sqrt(a_prev)
//! mult3 = 1 + 1 / (2r)      mult4 = 1 / (2r)       mult_noise = sqrt(1 - a_prev) sqrt(1 - e^-2h)
//! first order (first step, or the step past t = 0):  prev = mult1 x - mult2 x0 + mult_noise z
//! second order (otherwise):  prev = mult1 x - mult2 (mult3 x0 - mult4 x0_old) + mult_noise z
//! ```
//! where `x0_old` is the previous step's `pred_original_sample` (the pipeline's `old_pred_original_sample`,
//! kept here). At zero terminal SNR (`a_t = 0` at t = 999) `lambda = -inf`, `h = +inf`: `mult1 = 0`,
//! `mult2 = -sqrt(a_prev)`, and the next step's `r = inf`, `mult4 = 0`; f64 infinities give exactly that.
//!
//! Noise: diffusers draws `z` with `randn_tensor(generator)` on every step, twice on a second-order step (the
//! first draw is discarded). [`Scheduler::step`] takes the `z` actually used; [`CogVideoXDpmScheduler::noise_draws`]
//! says how many normal draws diffusers makes, for a caller that replays a torch generator stream.

use super::cogvideox_schedule::{CogVideoXSchedule, CogVideoXSchedulerConfig, Kind};
use super::{check_step, unsupported, Scheduler, SchedulerError, SchedulerState, StateArray};

const NAME: &str = "CogVideoXDPMScheduler";

/// diffusers' `CogVideoXDPMScheduler` as `CogVideoXPipeline` drives it (`step(model_output,
/// old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None, latents, generator=...)`).
#[derive(Clone, Debug)]
pub struct CogVideoXDpmScheduler {
    schedule: CogVideoXSchedule,
    step_index: usize,
    /// The last step's `pred_original_sample`: the next step's `old_pred_original_sample`.
    old_pred_original_sample: Option<Vec<f32>>,
}

/// The step's scalar multipliers (f64, as diffusers' 0-d f64 tensors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmMultipliers {
    pub mult1: f64,
    pub mult2: f64,
    /// `(mult3, mult4)` on a second-order step.
    pub second_order: Option<(f64, f64)>,
    pub mult_noise: f64,
}

/// `log(sqrt(a / (1 - a)))`, diffusers' expression (so `a = 1` gives +inf and `a = 0` gives -inf).
fn lambda(a: f64) -> f64 {
    (a / (1.0 - a)).sqrt().ln()
}

impl CogVideoXDpmScheduler {
    /// A scheduler with no schedule yet; `cfg` must be a DPM config.
    pub fn new(cfg: &CogVideoXSchedulerConfig) -> Result<Self, SchedulerError> {
        if cfg.kind != Kind::Dpm {
            return Err(unsupported(
                NAME,
                "_class_name",
                cfg.kind.class_name(),
                "expected a CogVideoXDPMScheduler config",
            ));
        }
        Ok(CogVideoXDpmScheduler {
            schedule: CogVideoXSchedule::new(cfg),
            step_index: 0,
            old_pred_original_sample: None,
        })
    }

    /// `alphas_cumprod` over the train timesteps (f64).
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.schedule.alphas_cumprod
    }

    /// The last step's `pred_original_sample` (what the pipeline threads into the next step); `None`
    /// before the first step.
    pub fn pred_original_sample(&self) -> Option<&[f32]> {
        self.old_pred_original_sample.as_deref()
    }

    /// The multipliers of step `i` of the current schedule; `has_old` says whether an
    /// `old_pred_original_sample` exists (diffusers' first-order branch otherwise).
    pub fn multipliers(&self, i: usize, has_old: bool) -> DpmMultipliers {
        let s = &self.schedule;
        let t = s.timesteps[i];
        let alpha_prod_t = s.alphas_cumprod[t];
        let (alpha_prod_t_prev, below_zero) = s.alpha_prev(t);
        let (lamb, lamb_next) = (lambda(alpha_prod_t), lambda(alpha_prod_t_prev));
        let h = lamb_next - lamb;
        let mult1 = ((1.0 - alpha_prod_t_prev) / (1.0 - alpha_prod_t)).sqrt() * (-h).exp();
        let mult2 = (-2.0 * h).exp_m1() * alpha_prod_t_prev.sqrt();
        let mult_noise = (1.0 - alpha_prod_t_prev).sqrt() * (1.0 - (-2.0 * h).exp()).sqrt();
        // diffusers: `if old_pred_original_sample is None or prev_timestep < 0:` first order.
        let second_order = (i > 0 && has_old && !below_zero).then(|| {
            let alpha_prod_t_back = s.alphas_cumprod[s.timesteps[i - 1]];
            let r = (lamb - lambda(alpha_prod_t_back)) / h;
            (1.0 + 1.0 / (2.0 * r), 1.0 / (2.0 * r))
        });
        DpmMultipliers { mult1, mult2, second_order, mult_noise }
    }

    /// How many standard-normal tensors diffusers draws from the generator for the next step: 1, or 2 on a
    /// second-order step (the first is discarded; the step uses the second).
    pub fn noise_draws(&self) -> usize {
        let s = &self.schedule;
        if self.step_index >= s.timesteps.len() {
            return 0;
        }
        match self.multipliers(self.step_index, self.old_pred_original_sample.is_some()).second_order {
            Some(_) => 2,
            None => 1,
        }
    }
}

impl Scheduler for CogVideoXDpmScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.step_index = 0;
        self.old_pred_original_sample = None;
        self.schedule.set_timesteps(steps)
    }

    fn set_shift(&mut self, shift: f64) -> Result<(), SchedulerError> {
        Err(SchedulerError::ShiftNotSupported { scheduler: NAME, shift })
    }

    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps_f64
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn step_index(&self) -> usize {
        self.step_index
    }

    fn needs_noise(&self) -> bool {
        self.step_index < self.schedule.timesteps.len()
    }

    fn step(
        &mut self,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Result<Vec<f32>, SchedulerError> {
        let s = &self.schedule;
        check_step(NAME, s.timesteps.len(), self.step_index, model_output, sample, noise, self.needs_noise())?;
        let noise = noise.expect("checked: noise is given when needed");
        if let Some(old) = &self.old_pred_original_sample {
            if old.len() != sample.len() {
                return Err(SchedulerError::SampleSizeChanged { got: sample.len(), expected: old.len() });
            }
        }
        let i = self.step_index;
        let x0 = s.pred_original_sample(s.alphas_cumprod[s.timesteps[i]], model_output, sample, i)?;
        let m = self.multipliers(i, self.old_pred_original_sample.is_some());
        let non_finite = [m.mult1, m.mult2, m.mult_noise].iter().any(|v| !v.is_finite())
            || m.second_order.is_some_and(|(a, b)| !(a.is_finite() && b.is_finite()));
        if non_finite {
            return Err(SchedulerError::NonFinite {
                scheduler: NAME,
                step_index: i,
                timestep: s.timesteps_f64[i],
                reason: format!("step multipliers are not finite: {m:?}"),
            });
        }
        let (m1, m2, mn) = (m.mult1 as f32, m.mult2 as f32, m.mult_noise as f32);
        // f32, in diffusers' order: (mult1 x - mult2 d) + mult_noise z.
        let prev: Vec<f32> = match (m.second_order, &self.old_pred_original_sample) {
            (Some((m3, m4)), Some(old)) => {
                let (m3, m4) = (m3 as f32, m4 as f32);
                (0..sample.len())
                    .map(|e| {
                        let d = m3 * x0[e] - m4 * old[e];
                        m1 * sample[e] - m2 * d + mn * noise[e]
                    })
                    .collect()
            }
            _ => (0..sample.len()).map(|e| m1 * sample[e] - m2 * x0[e] + mn * noise[e]).collect(),
        };
        self.old_pred_original_sample = Some(x0);
        self.step_index += 1;
        Ok(prev)
    }

    fn describe(&self) -> String {
        format!("{NAME} ({})", self.schedule.config.summary())
    }

    /// The step index and `old_pred_original_sample` (f32). The noise is not state here: the caller draws
    /// step i's noise from (seed, i), so a resumed loop draws the same noise for the same steps.
    fn state(&self) -> SchedulerState {
        let mut st = SchedulerState::new(NAME, self.schedule.timesteps.len(), self.step_index);
        if let Some(old) = &self.old_pred_original_sample {
            st.arrays.insert("old_pred_original_sample".into(), StateArray::F32(old.clone()));
        }
        st
    }

    fn restore(&mut self, st: &SchedulerState) -> Result<(), SchedulerError> {
        st.check(NAME, self.schedule.timesteps.len())?;
        let old = st.f32_array("old_pred_original_sample")?;
        if old.is_some() != (st.step_index > 0) {
            let what = if old.is_some() { "set" } else { "missing" };
            return Err(st.invalid(format!("old_pred_original_sample is {what} after {} steps", st.step_index)));
        }
        self.old_pred_original_sample = old;
        self.step_index = st.step_index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn five_b() -> CogVideoXDpmScheduler {
        let v = json!({"prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": true,
                       "beta_schedule": "scaled_linear", "set_alpha_to_one": true, "snr_shift_scale": 1.0});
        CogVideoXDpmScheduler::new(&CogVideoXSchedulerConfig::from_json(&v, Kind::Dpm).unwrap()).unwrap()
    }

    #[test]
    fn zero_snr_first_step_and_final_step_are_finite() {
        let mut s = five_b();
        s.set_timesteps(3).unwrap();
        let first = s.multipliers(0, false);
        assert_eq!(first.mult1, 0.0);
        assert!(first.second_order.is_none() && first.mult2 < 0.0 && first.mult_noise > 0.0, "{first:?}");
        let second = s.multipliers(1, true);
        assert_eq!(second.second_order.map(|(_, m4)| m4), Some(0.0), "r = inf after t = 999");
        let last = s.multipliers(2, true);
        assert_eq!((last.mult1, last.mult2, last.mult_noise, last.second_order), (0.0, -1.0, 0.0, None));
        assert_eq!((s.noise_draws(), s.needs_noise()), (1, true));
    }

    #[test]
    fn resumes_bit_exactly_from_its_state() {
        // 6 steps: first-order, second-order and the last step past t = 0, with noise on each.
        super::super::state::tests::assert_resumes_exactly(&|| Box::new(five_b()), 6);
    }

    #[test]
    fn noise_is_required_and_checked() {
        let mut s = five_b();
        s.set_timesteps(2).unwrap();
        assert!(matches!(s.step(&[0.0; 2], &[1.0; 2], None), Err(SchedulerError::Noise { .. })));
        assert!(matches!(s.step(&[0.0; 2], &[1.0; 2], Some(&[0.0; 3])), Err(SchedulerError::Noise { .. })));
        s.step(&[0.0; 2], &[1.0; 2], Some(&[0.5; 2])).unwrap();
        assert_eq!(s.step_index(), 1);
        assert!(matches!(s.step(&[0.0; 3], &[1.0; 3], Some(&[0.5; 3])), Err(SchedulerError::SampleSizeChanged { .. })));
        // The last step (prev timestep < 0, final alpha 1: mult1 = 0, mult2 = -1, no noise) returns x0 exactly.
        let out = s.step(&[0.25; 2], &[1.0; 2], Some(&[7.0; 2])).unwrap();
        assert_eq!(Some(&out[..]), s.pred_original_sample());
        assert!(!s.needs_noise());
        assert!(s.describe().starts_with("CogVideoXDPMScheduler (v_prediction, trailing, snr_shift_scale 1.0"));
    }
}
