//! `CogVideoXDDIMScheduler` (diffusers 0.42.1, `schedulers/scheduling_ddim_cogvideox.py`), CogVideoX-2b's
//! scheduler: deterministic DDIM (eta 0) on the SNR-shifted schedule. Per element, as diffusers in f32:
//! `x0 = sqrt(a_t) x - sqrt(1 - a_t) v` (v_prediction), then
//! `prev = A x + B x0` with `A = sqrt((1 - a_prev) / (1 - a_t))`, `B = sqrt(a_prev) - sqrt(a_t) A`, the
//! coefficients computed in f64 and rounded to f32 (torch's 0-d f64 tensor times an f32 tensor).

use super::cogvideox_schedule::{CogVideoXSchedule, CogVideoXSchedulerConfig, Kind};
use super::{check_step, unsupported, Scheduler, SchedulerError, SchedulerState, StateArray};

const NAME: &str = "CogVideoXDDIMScheduler";

/// diffusers' `CogVideoXDDIMScheduler` as `CogVideoXPipeline` drives it.
#[derive(Clone, Debug)]
pub struct CogVideoXDdimScheduler {
    schedule: CogVideoXSchedule,
    step_index: usize,
    /// The last step's `pred_original_sample` (for inspection; the DDIM step does not reuse it).
    pred_original_sample: Option<Vec<f32>>,
}

impl CogVideoXDdimScheduler {
    /// A scheduler with no schedule yet; `cfg` must be a DDIM config.
    pub fn new(cfg: &CogVideoXSchedulerConfig) -> Result<Self, SchedulerError> {
        if cfg.kind != Kind::Ddim {
            return Err(unsupported(
                NAME,
                "_class_name",
                cfg.kind.class_name(),
                "expected a CogVideoXDDIMScheduler config",
            ));
        }
        Ok(CogVideoXDdimScheduler { schedule: CogVideoXSchedule::new(cfg), step_index: 0, pred_original_sample: None })
    }

    /// `alphas_cumprod` over the train timesteps (f64).
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.schedule.alphas_cumprod
    }

    /// The last step's `pred_original_sample`; `None` before the first step.
    pub fn pred_original_sample(&self) -> Option<&[f32]> {
        self.pred_original_sample.as_deref()
    }
}

impl Scheduler for CogVideoXDdimScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        self.step_index = 0;
        self.pred_original_sample = None;
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
        false
    }

    fn step(
        &mut self,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Result<Vec<f32>, SchedulerError> {
        let s = &self.schedule;
        check_step(NAME, s.timesteps.len(), self.step_index, model_output, sample, noise, false)?;
        let i = self.step_index;
        let t = s.timesteps[i];
        let alpha_prod_t = s.alphas_cumprod[t];
        let (alpha_prod_t_prev, _) = s.alpha_prev(t);
        let x0 = s.pred_original_sample(alpha_prod_t, model_output, sample, i)?;
        let a_t = ((1.0 - alpha_prod_t_prev) / (1.0 - alpha_prod_t)).sqrt();
        let b_t = alpha_prod_t_prev.sqrt() - alpha_prod_t.sqrt() * a_t;
        let (a, b) = (a_t as f32, b_t as f32);
        let prev: Vec<f32> = sample.iter().zip(&x0).map(|(&x, &p)| a * x + b * p).collect();
        self.pred_original_sample = Some(x0);
        self.step_index += 1;
        Ok(prev)
    }

    fn describe(&self) -> String {
        format!("{NAME} ({})", self.schedule.config.summary())
    }

    /// The step index, and the last `pred_original_sample` (f32; inspection only, DDIM does not reuse it).
    fn state(&self) -> SchedulerState {
        let mut st = SchedulerState::new(NAME, self.schedule.timesteps.len(), self.step_index);
        if let Some(x0) = &self.pred_original_sample {
            st.arrays.insert("pred_original_sample".into(), StateArray::F32(x0.clone()));
        }
        st
    }

    fn restore(&mut self, st: &SchedulerState) -> Result<(), SchedulerError> {
        st.check(NAME, self.schedule.timesteps.len())?;
        self.pred_original_sample = st.f32_array("pred_original_sample")?;
        self.step_index = st.step_index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two_b() -> CogVideoXDdimScheduler {
        let v = json!({"prediction_type": "v_prediction", "timestep_spacing": "trailing", "rescale_betas_zero_snr": true,
                       "beta_schedule": "scaled_linear", "set_alpha_to_one": true, "snr_shift_scale": 3.0});
        CogVideoXDdimScheduler::new(&CogVideoXSchedulerConfig::from_json(&v, Kind::Ddim).unwrap()).unwrap()
    }

    #[test]
    fn last_step_returns_x0() {
        // Trailing n = 1: t = 999 (zero SNR), prev = final alpha 1: A = 0, B = 1, x0 = -v.
        let mut s = two_b();
        s.set_timesteps(1).unwrap();
        assert_eq!(s.timesteps(), &[999.0]);
        assert_eq!(s.step(&[0.5, -2.0], &[3.0, 4.0], None).unwrap(), vec![-0.5, 2.0]);
    }

    #[test]
    fn step_errors_instead_of_panics() {
        let mut s = two_b();
        assert_eq!(s.step(&[0.0; 2], &[0.0; 2], None), Err(SchedulerError::NoTimesteps));
        s.set_timesteps(2).unwrap();
        assert!(matches!(s.step(&[0.0; 3], &[0.0; 2], None), Err(SchedulerError::LengthMismatch { .. })));
        assert!(matches!(s.step(&[0.0; 2], &[0.0; 2], Some(&[0.0; 2])), Err(SchedulerError::UnexpectedNoise { .. })));
        s.step(&[0.0; 2], &[1.0; 2], None).unwrap();
        s.step(&[0.0; 2], &[1.0; 2], None).unwrap();
        assert_eq!(s.step(&[0.0; 2], &[1.0; 2], None), Err(SchedulerError::Finished(2)));
        assert!(s.describe().contains("v_prediction, trailing, snr_shift_scale 3.0"), "{}", s.describe());
    }

    #[test]
    fn resumes_bit_exactly_from_its_state() {
        super::super::state::tests::assert_resumes_exactly(&|| Box::new(two_b()), 6);
    }

    #[test]
    fn epsilon_at_zero_snr_is_an_error() {
        let v = json!({"prediction_type": "epsilon", "timestep_spacing": "trailing", "rescale_betas_zero_snr": true});
        let mut s = CogVideoXDdimScheduler::new(&CogVideoXSchedulerConfig::from_json(&v, Kind::Ddim).unwrap()).unwrap();
        s.set_timesteps(2).unwrap();
        let e = s.step(&[0.0; 2], &[1.0; 2], None).unwrap_err();
        assert!(matches!(e, SchedulerError::NonFinite { step_index: 0, .. }), "{e}");
    }
}
