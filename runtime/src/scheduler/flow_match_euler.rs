//! `FlowMatchEulerDiscreteScheduler` (diffusers 0.42.1, `schedulers/scheduling_flow_match_euler_discrete.py`)
//! on the path HunyuanVideo-1.5's pipeline takes: `set_timesteps(sigmas=np.linspace(1.0, 0.0, n + 1)[:-1])`,
//! a static `shift`, timesteps `sigma * 1000` as floats, and the Euler step `x + (sigma_next - sigma) v`.
//!
//! Precision: diffusers casts the given sigmas to float32 before shifting, so the shift
//! `shift * s / (1 + (shift - 1) * s)` runs in numpy float32 (a Python float with an f32 array stays f32), the
//! timesteps are the f32 product `sigma * 1000`, and the step is f32. All of that is f32 here too, in the same
//! order, so timesteps and steps match diffusers bit for bit.

use super::numerics::np_linspace;
use super::{check_step, unsupported, Scheduler, SchedulerError, SchedulerState};
use serde::Deserialize;

const NAME: &str = "FlowMatchEulerDiscreteScheduler";

/// `scheduler_config.json` of `FlowMatchEulerDiscreteScheduler` (unknown fields ignored, missing ones at
/// diffusers' defaults).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct FlowMatchEulerConfig {
    pub num_train_timesteps: i64,
    pub shift: f64,
    pub use_dynamic_shifting: bool,
    pub base_shift: Option<f64>,
    pub max_shift: Option<f64>,
    pub base_image_seq_len: i64,
    pub max_image_seq_len: i64,
    pub invert_sigmas: bool,
    pub shift_terminal: Option<f64>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub time_shift_type: String,
    pub stochastic_sampling: bool,
}

impl Default for FlowMatchEulerConfig {
    fn default() -> Self {
        FlowMatchEulerConfig {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: Some(0.5),
            max_shift: Some(1.15),
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            time_shift_type: "exponential".into(),
            stochastic_sampling: false,
        }
    }
}

/// diffusers' `FlowMatchEulerDiscreteScheduler` with caller-given sigmas and a static shift.
#[derive(Clone, Debug)]
pub struct FlowMatchEulerScheduler {
    num_train_timesteps: f32,
    shift: f64,
    /// f32 values, one per step.
    timesteps: Vec<f64>,
    /// f32, one per step plus the final 0.
    sigmas: Vec<f32>,
    step_index: usize,
}

impl FlowMatchEulerScheduler {
    /// Checks `cfg` against what is implemented (HunyuanVideo-1.5's static-shift path).
    pub fn new(cfg: &FlowMatchEulerConfig) -> Result<Self, SchedulerError> {
        for (field, on) in [
            ("use_dynamic_shifting", cfg.use_dynamic_shifting),
            ("invert_sigmas", cfg.invert_sigmas),
            ("use_karras_sigmas", cfg.use_karras_sigmas),
            ("use_exponential_sigmas", cfg.use_exponential_sigmas),
            ("use_beta_sigmas", cfg.use_beta_sigmas),
            ("stochastic_sampling", cfg.stochastic_sampling),
        ] {
            if on {
                return Err(unsupported(
                    NAME,
                    field,
                    on,
                    "not implemented (HunyuanVideo-1.5 uses false); expected false",
                ));
            }
        }
        if let Some(t) = cfg.shift_terminal {
            return Err(unsupported(NAME, "shift_terminal", t, "not implemented; expected null"));
        }
        if !matches!(cfg.time_shift_type.as_str(), "exponential" | "linear") {
            return Err(unsupported(
                NAME,
                "time_shift_type",
                &cfg.time_shift_type,
                "expected \"exponential\" or \"linear\"",
            ));
        }
        if cfg.num_train_timesteps <= 0 {
            return Err(unsupported(NAME, "num_train_timesteps", cfg.num_train_timesteps, "must be positive"));
        }
        if !(cfg.shift.is_finite() && cfg.shift > 0.0) {
            return Err(unsupported(NAME, "shift", cfg.shift, "must be finite and > 0"));
        }
        Ok(FlowMatchEulerScheduler {
            num_train_timesteps: cfg.num_train_timesteps as f32,
            shift: cfg.shift,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            step_index: 0,
        })
    }

    /// diffusers' `set_timesteps(sigmas=...)`: the sigmas cast to f32, shifted, `* 1000` for the timesteps,
    /// a final 0 appended.
    pub fn set_sigmas(&mut self, sigmas: &[f64]) {
        let shift = self.shift as f32;
        let shift_m1 = (self.shift - 1.0) as f32;
        let shifted: Vec<f32> = sigmas
            .iter()
            .map(|&s| {
                let s = s as f32;
                shift * s / (1.0 + shift_m1 * s)
            })
            .collect();
        self.timesteps = shifted.iter().map(|&s| (s * self.num_train_timesteps) as f64).collect();
        self.sigmas = shifted;
        self.sigmas.push(0.0);
        self.step_index = 0;
    }

    /// The sigmas (f32), one per step plus the final 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The current shift (config or [`set_shift`](Scheduler::set_shift)).
    pub fn shift(&self) -> f64 {
        self.shift
    }
}

impl Scheduler for FlowMatchEulerScheduler {
    /// HunyuanVideo-1.5's schedule: `sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1]`.
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        if steps == 0 {
            self.timesteps.clear();
            self.sigmas.clear();
            return Err(SchedulerError::InvalidSteps { scheduler: NAME, steps, reason: "must be at least 1".into() });
        }
        let mut sigmas = np_linspace(1.0, 0.0, steps + 1);
        sigmas.pop();
        self.set_sigmas(&sigmas);
        Ok(())
    }

    fn set_shift(&mut self, shift: f64) -> Result<(), SchedulerError> {
        if !(shift.is_finite() && shift > 0.0) {
            return Err(SchedulerError::InvalidFlowShift(shift));
        }
        self.shift = shift;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
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

    /// `prev = sample + (sigma_next - sigma) * model_output`, in f32.
    fn step(
        &mut self,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Result<Vec<f32>, SchedulerError> {
        check_step(NAME, self.timesteps.len(), self.step_index, model_output, sample, noise, false)?;
        let i = self.step_index;
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        self.step_index += 1;
        Ok(sample.iter().zip(model_output).map(|(&x, &v)| x + dt * v).collect())
    }

    fn describe(&self) -> String {
        format!("{NAME} (shift {:?}, sigmas linspace(1, 0, n + 1)[:-1])", self.shift)
    }

    /// Euler is one-step: the step index is all the state.
    fn state(&self) -> SchedulerState {
        SchedulerState::new(NAME, self.timesteps.len(), self.step_index)
    }

    fn restore(&mut self, st: &SchedulerState) -> Result<(), SchedulerError> {
        st.check(NAME, self.timesteps.len())?;
        if let Some(name) = st.arrays.keys().next() {
            return Err(st.invalid(format!("unexpected array `{name}` (Euler keeps none)")));
        }
        self.step_index = st.step_index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_implemented() {
        let base = FlowMatchEulerConfig { shift: 5.0, ..Default::default() };
        let cases = [
            ("use_dynamic_shifting", FlowMatchEulerConfig { use_dynamic_shifting: true, ..base.clone() }),
            ("invert_sigmas", FlowMatchEulerConfig { invert_sigmas: true, ..base.clone() }),
            ("use_karras_sigmas", FlowMatchEulerConfig { use_karras_sigmas: true, ..base.clone() }),
            ("stochastic_sampling", FlowMatchEulerConfig { stochastic_sampling: true, ..base.clone() }),
            ("shift_terminal", FlowMatchEulerConfig { shift_terminal: Some(0.1), ..base.clone() }),
            ("time_shift_type", FlowMatchEulerConfig { time_shift_type: "cubic".into(), ..base.clone() }),
            ("shift", FlowMatchEulerConfig { shift: 0.0, ..base.clone() }),
        ];
        for (field, cfg) in cases {
            let e = FlowMatchEulerScheduler::new(&cfg).unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn resumes_bit_exactly_from_its_state() {
        let cfg = FlowMatchEulerConfig { shift: 5.0, ..Default::default() };
        super::super::state::tests::assert_resumes_exactly(&|| Box::new(FlowMatchEulerScheduler::new(&cfg).unwrap()), 6);
    }

    #[test]
    fn one_step_lands_on_x0() {
        let mut s = FlowMatchEulerScheduler::new(&FlowMatchEulerConfig { shift: 5.0, ..Default::default() }).unwrap();
        s.set_timesteps(1).unwrap();
        assert_eq!((s.timesteps(), s.sigmas()), (&[1000.0][..], &[1.0f32, 0.0][..]));
        assert_eq!(s.step(&[0.5, -1.0], &[1.0, 2.0], None).unwrap(), vec![0.5, 3.0]);
        assert_eq!(s.step(&[0.5], &[1.0], None), Err(SchedulerError::Finished(1)));
        assert!(s.set_timesteps(0).is_err());
        assert_eq!(s.step(&[0.5], &[1.0], None), Err(SchedulerError::NoTimesteps));
    }
}
