//! `UniPCMultistepScheduler` (diffusers 0.42.1, `schedulers/scheduling_unipc_multistep.py`) on its
//! flow-sigma path, the one Wan configures: `prediction_type = "flow_prediction"`,
//! `use_flow_sigmas = true`, `predict_x0 = true`, B(h) predictor/corrector.
//!
//! Precision. The schedule is built as diffusers builds it: numpy f64 for `linspace` and the shift,
//! timesteps truncated to int64 from the f64 sigmas, sigmas then rounded to f32 (diffusers stores
//! `self.sigmas` as a float32 tensor). Those f32-rounded sigmas are kept as the schedule's values:
//! the first one is `f32(1 - 1e-6)`, whose `alpha = 1 - sigma` is 1.3% off the f64 one, which moves
//! `lambda_0` by 0.013 and with it the second step's `rk`; with unrounded sigmas the steps drift
//! ~1e-5 (relative) from diffusers instead of ~2e-7. Everything after that —
//! the coefficients (`log`, `expm1`, the `rhos` solve), which diffusers computes on f32 0-d
//! tensors, and the per-element updates, which diffusers computes in the latent dtype (f32) —
//! is computed here in f64, and the history (`model_outputs`, `last_sample`) is kept in f64.
//! Only `prev_sample` is rounded to f32, as diffusers' `x_t.to(x.dtype)` does. The difference
//! from diffusers is then diffusers' own f32 rounding: <= 2e-7 of max|latent| on the goldens,
//! <= 2.5e-6 over 50-step and order-3 runs; against diffusers run with f64 sigmas and latents it is
//! the f32 rounding of our latents (<= 1.6e-7).

use serde::Deserialize;

use super::{Scheduler, SchedulerState, StateArray};
pub use super::SchedulerError;

const NAME: &str = "UniPCMultistepScheduler";

/// `UniPCMultistepScheduler` (`scheduler/scheduler_config.json`), the fields the flow-sigma path uses.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default)]
pub struct UniPcConfig {
    pub num_train_timesteps: i64,
    pub solver_order: usize,
    pub prediction_type: String,
    pub solver_type: String,
    pub lower_order_final: bool,
    pub disable_corrector: Vec<usize>,
    pub use_flow_sigmas: bool,
    pub flow_shift: f64,
    pub timestep_spacing: String,
    pub steps_offset: i64,
    pub final_sigmas_type: String,
    pub predict_x0: bool,
    pub thresholding: bool,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub use_dynamic_shifting: bool,
}

impl Default for UniPcConfig {
    fn default() -> Self {
        UniPcConfig {
            num_train_timesteps: 1000,
            solver_order: 2,
            prediction_type: "epsilon".into(),
            solver_type: "bh2".into(),
            lower_order_final: true,
            disable_corrector: vec![],
            use_flow_sigmas: false,
            flow_shift: 1.0,
            timestep_spacing: "linspace".into(),
            steps_offset: 0,
            final_sigmas_type: "zero".into(),
            predict_x0: true,
            thresholding: false,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_dynamic_shifting: false,
        }
    }
}

/// B(h) of the UniPC update (diffusers' `solver_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SolverType {
    /// `B(h) = h`
    Bh1,
    /// `B(h) = e^h - 1`
    Bh2,
}

/// Where the schedule ends (diffusers' `final_sigmas_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FinalSigma {
    Zero,
    SigmaMin,
}

/// diffusers' `UniPCMultistepScheduler` with flow sigmas. Call [`set_timesteps`](Self::set_timesteps),
/// then [`step`](Self::step) once per entry of [`timesteps`](Self::timesteps), in order (the Wan
/// pipeline calls `set_begin_index(0)`, so the step index is a plain counter).
#[derive(Clone, Debug)]
pub struct UniPcScheduler {
    num_train_timesteps: f64,
    solver_order: usize,
    solver_type: SolverType,
    lower_order_final: bool,
    disable_corrector: Vec<usize>,
    flow_shift: f64,
    final_sigma: FinalSigma,
    /// Integer-valued, one per inference step.
    timesteps: Vec<f64>,
    /// f32-rounded, `timesteps.len() + 1` entries (the final sigma appended).
    sigmas: Vec<f64>,
    /// Set when `set_timesteps` got an unusable shift (it cannot return an error); `step` reports it.
    schedule_error: Option<SchedulerError>,
    /// Converted model outputs (x0 predictions), oldest first, at most `solver_order`.
    model_outputs: Vec<Vec<f64>>,
    /// The (corrected) sample the last predictor started from.
    last_sample: Option<Vec<f64>>,
    lower_order_nums: usize,
    /// Order of the last predictor step, which is also the next corrector's order.
    this_order: usize,
    step_index: usize,
}

fn unsupported(field: &'static str, value: impl std::fmt::Debug, reason: &str) -> SchedulerError {
    super::unsupported("UniPC", field, value, reason)
}

impl UniPcScheduler {
    /// Checks `cfg` against what this implementation covers (diffusers' flow-sigma, x0-predicting
    /// path) and returns a scheduler with no schedule yet.
    pub fn new(cfg: &UniPcConfig) -> Result<Self, SchedulerError> {
        if cfg.prediction_type != "flow_prediction" {
            return Err(unsupported(
                "prediction_type",
                &cfg.prediction_type,
                "only \"flow_prediction\" (Wan) is implemented",
            ));
        }
        if !cfg.use_flow_sigmas {
            return Err(unsupported("use_flow_sigmas", cfg.use_flow_sigmas, "only flow sigmas are implemented"));
        }
        if !cfg.predict_x0 {
            return Err(unsupported(
                "predict_x0",
                cfg.predict_x0,
                "flow_prediction requires predict_x0 = true (diffusers raises otherwise)",
            ));
        }
        for (field, on) in [
            ("use_karras_sigmas", cfg.use_karras_sigmas),
            ("use_exponential_sigmas", cfg.use_exponential_sigmas),
            ("use_beta_sigmas", cfg.use_beta_sigmas),
            ("use_dynamic_shifting", cfg.use_dynamic_shifting),
            ("thresholding", cfg.thresholding),
        ] {
            if on {
                return Err(unsupported(field, on, "not implemented (Wan uses false)"));
            }
        }
        // diffusers maps the DPM-Solver names to bh2 (`register_to_config(solver_type="bh2")`).
        let solver_type = match cfg.solver_type.as_str() {
            "bh1" => SolverType::Bh1,
            "bh2" | "midpoint" | "heun" | "logrho" => SolverType::Bh2,
            _ => return Err(unsupported("solver_type", &cfg.solver_type, "expected \"bh1\" or \"bh2\"")),
        };
        let final_sigma = match cfg.final_sigmas_type.as_str() {
            "zero" => FinalSigma::Zero,
            "sigma_min" => FinalSigma::SigmaMin,
            _ => {
                return Err(unsupported(
                    "final_sigmas_type",
                    &cfg.final_sigmas_type,
                    "expected \"zero\" or \"sigma_min\"",
                ))
            }
        };
        // With flow sigmas the spacing's timesteps are overwritten, but diffusers still rejects
        // an unknown spacing.
        if !matches!(cfg.timestep_spacing.as_str(), "linspace" | "leading" | "trailing") {
            return Err(unsupported(
                "timestep_spacing",
                &cfg.timestep_spacing,
                "expected \"linspace\", \"leading\" or \"trailing\"",
            ));
        }
        if cfg.solver_order == 0 {
            return Err(unsupported("solver_order", cfg.solver_order, "must be at least 1"));
        }
        if cfg.num_train_timesteps <= 0 {
            return Err(unsupported("num_train_timesteps", cfg.num_train_timesteps, "must be positive"));
        }
        if !(cfg.flow_shift.is_finite() && cfg.flow_shift > 0.0) {
            return Err(unsupported("flow_shift", cfg.flow_shift, "must be finite and > 0"));
        }
        // A final sigma of 0 gives lambda = inf; the order-1 last step handles that (x_t = x0), a
        // higher-order one divides by rk = 0 and diffusers returns inf/NaN latents.
        if !cfg.lower_order_final && final_sigma == FinalSigma::Zero && cfg.solver_order > 1 {
            return Err(unsupported(
                "lower_order_final",
                cfg.lower_order_final,
                "with final_sigmas_type = \"zero\" and solver_order > 1 the last step divides by zero \
                 (diffusers yields inf/NaN); set lower_order_final = true",
            ));
        }
        Ok(UniPcScheduler {
            num_train_timesteps: cfg.num_train_timesteps as f64,
            solver_order: cfg.solver_order,
            solver_type,
            lower_order_final: cfg.lower_order_final,
            disable_corrector: cfg.disable_corrector.clone(),
            flow_shift: cfg.flow_shift,
            final_sigma,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            schedule_error: None,
            model_outputs: Vec::new(),
            last_sample: None,
            lower_order_nums: 0,
            this_order: 0,
            step_index: 0,
        })
    }

    /// diffusers' `set_timesteps(num_inference_steps)` on the flow-sigma path, and a reset of the
    /// multistep state. `flow_shift` overrides the config's (the pipeline's `--flow_shift`); an
    /// unusable shift (not finite, or <= 0) is reported by the next `step`.
    pub fn set_timesteps(&mut self, num_inference_steps: usize, flow_shift: Option<f64>) {
        let shift = flow_shift.unwrap_or(self.flow_shift);
        self.schedule_error = (!(shift.is_finite() && shift > 0.0)).then_some(SchedulerError::InvalidFlowShift(shift));
        let n = num_inference_steps;
        // np.linspace(1, 1/T, n + 1)[:-1]: y[i] = i * ((stop - start) / n) + start, in f64.
        let (start, stop) = (1.0f64, 1.0 / self.num_train_timesteps);
        let step = (stop - start) / n as f64;
        let mut sig: Vec<f64> = (0..n)
            .map(|i| {
                let s = i as f64 * step + start;
                shift * s / (1.0 + (shift - 1.0) * s)
            })
            .collect();
        // diffusers: "to avoid inf torch.log(alpha_si)" at sigma = 1.
        let eps = 1e-6;
        if let Some(s0) = sig.first_mut() {
            if (*s0 - 1.0).abs() < eps {
                *s0 -= eps;
            }
        }
        // torch `.to(int64)` of the f64 product truncates toward zero (999.999 -> 999).
        self.timesteps = sig.iter().map(|s| (s * self.num_train_timesteps).trunc()).collect();
        let last = match self.final_sigma {
            FinalSigma::Zero => 0.0,
            FinalSigma::SigmaMin => sig.last().copied().unwrap_or(0.0),
        };
        sig.push(last);
        self.sigmas = sig.iter().map(|&s| s as f32 as f64).collect();
        self.model_outputs.clear();
        self.last_sample = None;
        self.lower_order_nums = 0;
        self.this_order = 0;
        self.step_index = 0;
    }

    /// The timesteps the pipeline passes to the transformer, one per step (integer-valued: diffusers
    /// holds them as int64).
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// The sigmas (f32-rounded, as diffusers stores them), one per step plus the final one.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    /// How many steps have been taken since `set_timesteps` (diffusers' `step_index`).
    pub fn step_index(&self) -> usize {
        self.step_index
    }

    /// The sample the last predictor started from: the input `sample` after the corrector (diffusers'
    /// `last_sample`, kept here in f64); `None` before the first step.
    pub fn last_sample(&self) -> Option<&[f64]> {
        self.last_sample.as_deref()
    }

    /// One denoising step (diffusers' `step(model_output, t, sample)`): corrector on `sample` with
    /// the new model output (from the second step on), then the predictor to the next sigma.
    /// Returns `prev_sample`, the latents for the next transformer call.
    ///
    /// With a bf16 transformer diffusers gets a bf16 `model_output` and computes `sigma * v` in bf16
    /// (a 0-d f32 tensor times a bf16 tensor stays bf16); here `model_output` is f32 and that product
    /// is f64.
    pub fn step(&mut self, model_output: &[f32], sample: &[f32]) -> Result<Vec<f32>, SchedulerError> {
        if let Some(e) = &self.schedule_error {
            return Err(e.clone());
        }
        let n = self.timesteps.len();
        if n == 0 {
            return Err(SchedulerError::NoTimesteps);
        }
        if self.step_index >= n {
            return Err(SchedulerError::Finished(n));
        }
        if model_output.len() != sample.len() {
            return Err(SchedulerError::LengthMismatch { model_output: model_output.len(), sample: sample.len() });
        }
        if let Some(prev) = self.model_outputs.last() {
            if prev.len() != sample.len() {
                return Err(SchedulerError::SampleSizeChanged { got: sample.len(), expected: prev.len() });
            }
        }
        let i = self.step_index;

        // convert_model_output, flow_prediction: x0 = sample - sigma_t * v.
        let sigma = self.sigmas[i];
        let x0: Vec<f64> = model_output.iter().zip(sample).map(|(&v, &x)| x as f64 - sigma * v as f64).collect();

        let use_corrector = i > 0 && !self.disable_corrector.contains(&(i - 1)) && self.last_sample.is_some();
        let sample: Vec<f64> = match (&self.last_sample, use_corrector) {
            (Some(last), true) => self.uni_c_bh_update(&x0, last, self.this_order)?,
            _ => sample.iter().map(|&x| x as f64).collect(),
        };

        if self.model_outputs.len() == self.solver_order {
            self.model_outputs.remove(0);
        }
        self.model_outputs.push(x0);

        let order = if self.lower_order_final { self.solver_order.min(n - i) } else { self.solver_order };
        self.this_order = order.min(self.lower_order_nums + 1); // warmup for multistep
        let prev = self.uni_p_bh_update(&sample, self.this_order)?;
        self.last_sample = Some(sample);

        if self.lower_order_nums < self.solver_order {
            self.lower_order_nums += 1;
        }
        self.step_index += 1;
        Ok(prev.into_iter().map(|x| x as f32).collect())
    }

    /// `lambda = log(alpha) - log(sigma)` with flow sigmas (`alpha = 1 - sigma`); +inf at sigma 0.
    fn lambda(&self, idx: usize) -> f64 {
        let s = self.sigmas[idx];
        (1.0 - s).ln() - s.ln()
    }

    /// The scalars shared by predictor and corrector for a step from sigma index `s0` to `t`:
    /// `rks` (for the `order - 1` older outputs, at sigma indices `older`), `h_phi_1`, `B(h)` and
    /// the right-hand side `b` of the order conditions.
    fn coefficients(&self, t: usize, s0: usize, older: &[usize], order: usize) -> Coefficients {
        let lambda_s0 = self.lambda(s0);
        let h = self.lambda(t) - lambda_s0;
        let mut rks: Vec<f64> = older.iter().map(|&si| (self.lambda(si) - lambda_s0) / h).collect();
        rks.push(1.0);
        let hh = -h; // predict_x0
        let h_phi_1 = hh.exp_m1(); // h * phi_1(h) = e^h - 1
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let b_h = match self.solver_type {
            SolverType::Bh1 => hh,
            SolverType::Bh2 => hh.exp_m1(),
        };
        let mut factorial = 1.0;
        let mut b = Vec::with_capacity(order);
        for k in 1..=order {
            b.push(h_phi_k * factorial / b_h);
            factorial *= (k + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        let (sigma_t, sigma_s0) = (self.sigmas[t], self.sigmas[s0]);
        Coefficients { rks, b, h_phi_1, b_h, sigma_t, sigma_s0, alpha_t: 1.0 - sigma_t }
    }

    /// diffusers' `multistep_uni_p_bh_update`: from `x` at sigma index `step_index` to the next.
    fn uni_p_bh_update(&self, x: &[f64], order: usize) -> Result<Vec<f64>, SchedulerError> {
        let i = self.step_index;
        let m = &self.model_outputs;
        let m0 = &m[m.len() - 1];
        let older: Vec<usize> = (1..order).map(|k| i - k).collect();
        let c = self.coefficients(i + 1, i, &older, order);
        // Order 2 uses rho = 0.5 instead of solving (as diffusers does).
        let rhos: Vec<f64> = match order {
            1 => vec![],
            2 => vec![0.5],
            _ => solve(&vandermonde(&c.rks[..order - 1]), &c.b[..order - 1])
                .ok_or(SchedulerError::Singular { order, step_index: i })?,
        };
        let older_outputs: Vec<&Vec<f64>> = (1..order).map(|k| &m[m.len() - 1 - k]).collect();
        let (ratio, a_phi, a_b) = (c.sigma_t / c.sigma_s0, c.alpha_t * c.h_phi_1, c.alpha_t * c.b_h);
        Ok((0..x.len())
            .map(|e| {
                let mut pred_res = 0.0;
                for (k, mk) in older_outputs.iter().enumerate() {
                    pred_res += rhos[k] * (mk[e] - m0[e]) / c.rks[k];
                }
                ratio * x[e] - a_phi * m0[e] - a_b * pred_res
            })
            .collect())
    }

    /// diffusers' `multistep_uni_c_bh_update`: the corrected sample at sigma index `step_index`,
    /// redone from `last_sample` with the model output `model_t` at the predicted sample. (diffusers
    /// also takes `this_sample`, the predictor's output, but its value is never used.)
    fn uni_c_bh_update(&self, model_t: &[f64], last_sample: &[f64], order: usize) -> Result<Vec<f64>, SchedulerError> {
        let i = self.step_index;
        let m = &self.model_outputs;
        let m0 = &m[m.len() - 1];
        let older: Vec<usize> = (1..order).map(|k| i - (k + 1)).collect();
        let c = self.coefficients(i, i - 1, &older, order);
        // Order 1 uses rho = 0.5 instead of solving (as diffusers does).
        let rhos = match order {
            1 => vec![0.5],
            _ => solve(&vandermonde(&c.rks), &c.b).ok_or(SchedulerError::Singular { order, step_index: i })?,
        };
        let older_outputs: Vec<&Vec<f64>> = (1..order).map(|k| &m[m.len() - 1 - k]).collect();
        let (ratio, a_phi, a_b) = (c.sigma_t / c.sigma_s0, c.alpha_t * c.h_phi_1, c.alpha_t * c.b_h);
        let rho_t = rhos[rhos.len() - 1];
        Ok((0..last_sample.len())
            .map(|e| {
                let mut corr_res = 0.0;
                for (k, mk) in older_outputs.iter().enumerate() {
                    corr_res += rhos[k] * (mk[e] - m0[e]) / c.rks[k];
                }
                ratio * last_sample[e] - a_phi * m0[e] - a_b * (corr_res + rho_t * (model_t[e] - m0[e]))
            })
            .collect())
    }
}

impl Scheduler for UniPcScheduler {
    fn set_timesteps(&mut self, steps: usize) -> Result<(), SchedulerError> {
        UniPcScheduler::set_timesteps(self, steps, None);
        match &self.schedule_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Replaces the config's `flow_shift` (what `set_timesteps(n, Some(shift))` does for one schedule).
    fn set_shift(&mut self, shift: f64) -> Result<(), SchedulerError> {
        if !(shift.is_finite() && shift > 0.0) {
            return Err(SchedulerError::InvalidFlowShift(shift));
        }
        self.flow_shift = shift;
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

    fn step(
        &mut self,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Result<Vec<f32>, SchedulerError> {
        if noise.is_some() {
            return Err(SchedulerError::UnexpectedNoise {
                scheduler: NAME,
                step_index: self.step_index,
            });
        }
        UniPcScheduler::step(self, model_output, sample)
    }

    fn describe(&self) -> String {
        format!(
            "UniPCMultistepScheduler (flow_prediction, flow_shift {:?}, order {}, {:?})",
            self.flow_shift, self.solver_order, self.solver_type
        )
    }

    /// `model_outputs.0..` (oldest first) and `last_sample`, in f64 as kept; `lower_order_nums`, `this_order`.
    fn state(&self) -> SchedulerState {
        let mut st = SchedulerState::new(NAME, self.timesteps.len(), self.step_index);
        st.counters.insert("lower_order_nums".into(), self.lower_order_nums as u64);
        st.counters.insert("this_order".into(), self.this_order as u64);
        for (k, m) in self.model_outputs.iter().enumerate() {
            st.arrays.insert(format!("model_outputs.{k}"), StateArray::F64(m.clone()));
        }
        if let Some(last) = &self.last_sample {
            st.arrays.insert("last_sample".into(), StateArray::F64(last.clone()));
        }
        st
    }

    fn restore(&mut self, st: &SchedulerState) -> Result<(), SchedulerError> {
        st.check(NAME, self.timesteps.len())?;
        st.check_lengths()?;
        let model_outputs = st.f64_list("model_outputs")?;
        let last_sample = st.f64_array("last_sample")?;
        let lower_order_nums = st.counter("lower_order_nums")? as usize;
        let this_order = st.counter("this_order")? as usize;
        // What `step` leaves after `step_index` steps: min(steps, order) outputs, the counters as high.
        let expected = st.step_index.min(self.solver_order);
        if model_outputs.len() != expected || lower_order_nums != expected || this_order > self.solver_order {
            return Err(st.invalid(format!(
                "after {} steps of order {} expected {expected} model outputs and lower_order_nums {expected}, \
                 got {} and {lower_order_nums} (this_order {this_order})",
                st.step_index,
                self.solver_order,
                model_outputs.len()
            )));
        }
        if last_sample.is_some() != (st.step_index > 0) {
            return Err(st.invalid(format!("last_sample is {} after {} steps", if last_sample.is_some() { "set" } else { "missing" }, st.step_index)));
        }
        self.model_outputs = model_outputs;
        self.last_sample = last_sample;
        self.lower_order_nums = lower_order_nums;
        self.this_order = this_order;
        self.step_index = st.step_index;
        Ok(())
    }
}

struct Coefficients {
    rks: Vec<f64>,
    b: Vec<f64>,
    h_phi_1: f64,
    b_h: f64,
    sigma_t: f64,
    sigma_s0: f64,
    alpha_t: f64,
}

/// `R[k][j] = rks[j]^k` (diffusers stacks `torch.pow(rks, k)` as rows).
fn vandermonde(rks: &[f64]) -> Vec<Vec<f64>> {
    (0..rks.len()).map(|k| rks.iter().map(|r| r.powi(k as i32)).collect()).collect()
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting (LAPACK's `gesv`, which
/// `torch.linalg.solve` calls, pivots the same way); `None` when singular.
fn solve(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut m: Vec<Vec<f64>> = a.iter().zip(b).map(|(row, &bi)| row.iter().copied().chain([bi]).collect()).collect();
    for col in 0..n {
        let p = (col..n).max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))?;
        if m[p][col] == 0.0 || !m[p][col].is_finite() {
            return None;
        }
        m.swap(col, p);
        let (top, below) = m.split_at_mut(col + 1);
        let pivot = &top[col];
        for row in below {
            let f = row[col] / pivot[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot[col..]) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| m[r][c] * x[c]).sum();
        x[r] = (m[r][n] - s) / m[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wan() -> UniPcConfig {
        UniPcConfig {
            prediction_type: "flow_prediction".into(),
            use_flow_sigmas: true,
            flow_shift: 3.0,
            ..UniPcConfig::default()
        }
    }

    fn field_of(e: SchedulerError) -> &'static str {
        match e {
            SchedulerError::UnsupportedConfig { field, .. } => field,
            other => panic!("expected UnsupportedConfig, got {other:?}"),
        }
    }

    #[test]
    fn wan_config_accepted() {
        assert!(UniPcScheduler::new(&wan()).is_ok());
    }

    #[test]
    fn unsupported_configs_name_field_and_value() {
        let e = UniPcScheduler::new(&UniPcConfig::default()).unwrap_err();
        assert_eq!(e.to_string(), "UniPC scheduler config: prediction_type = \"epsilon\" is not supported: only \"flow_prediction\" (Wan) is implemented");
        let cases: Vec<(&str, UniPcConfig)> = vec![
            ("use_flow_sigmas", UniPcConfig { use_flow_sigmas: false, ..wan() }),
            ("predict_x0", UniPcConfig { predict_x0: false, ..wan() }),
            ("use_karras_sigmas", UniPcConfig { use_karras_sigmas: true, ..wan() }),
            ("use_exponential_sigmas", UniPcConfig { use_exponential_sigmas: true, ..wan() }),
            ("use_beta_sigmas", UniPcConfig { use_beta_sigmas: true, ..wan() }),
            ("use_dynamic_shifting", UniPcConfig { use_dynamic_shifting: true, ..wan() }),
            ("thresholding", UniPcConfig { thresholding: true, ..wan() }),
            ("solver_type", UniPcConfig { solver_type: "bh3".into(), ..wan() }),
            ("final_sigmas_type", UniPcConfig { final_sigmas_type: "one".into(), ..wan() }),
            ("timestep_spacing", UniPcConfig { timestep_spacing: "karras".into(), ..wan() }),
            ("solver_order", UniPcConfig { solver_order: 0, ..wan() }),
            ("num_train_timesteps", UniPcConfig { num_train_timesteps: 0, ..wan() }),
            ("flow_shift", UniPcConfig { flow_shift: -1.0, ..wan() }),
            ("flow_shift", UniPcConfig { flow_shift: f64::NAN, ..wan() }),
            ("lower_order_final", UniPcConfig { lower_order_final: false, ..wan() }),
        ];
        for (field, cfg) in cases {
            let e = UniPcScheduler::new(&cfg).unwrap_err();
            let msg = e.to_string();
            assert_eq!(field_of(e), field, "{msg}");
            assert!(msg.contains(field), "{msg}");
        }
        let e = UniPcScheduler::new(&UniPcConfig { use_karras_sigmas: true, ..wan() }).unwrap_err();
        assert!(e.to_string().contains("use_karras_sigmas = true"), "{e}");
    }

    #[test]
    fn accepted_variants() {
        for cfg in [
            UniPcConfig { solver_type: "heun".into(), ..wan() },
            UniPcConfig { solver_type: "bh1".into(), ..wan() },
            UniPcConfig { final_sigmas_type: "sigma_min".into(), lower_order_final: false, ..wan() },
            UniPcConfig { timestep_spacing: "trailing".into(), ..wan() },
            UniPcConfig { solver_order: 3, ..wan() },
        ] {
            UniPcScheduler::new(&cfg).unwrap();
        }
    }

    #[test]
    fn step_errors_instead_of_panics() {
        let mut s = UniPcScheduler::new(&wan()).unwrap();
        assert_eq!(s.step(&[0.0; 4], &[0.0; 4]), Err(SchedulerError::NoTimesteps));
        s.set_timesteps(2, None);
        assert!(matches!(s.step(&[0.0; 3], &[0.0; 4]), Err(SchedulerError::LengthMismatch { .. })));
        s.step(&[0.5; 4], &[1.0; 4]).unwrap();
        assert!(matches!(s.step(&[0.0; 3], &[0.0; 3]), Err(SchedulerError::SampleSizeChanged { .. })));
        s.step(&[0.5; 4], &[1.0; 4]).unwrap();
        assert_eq!(s.step(&[0.5; 4], &[1.0; 4]), Err(SchedulerError::Finished(2)));
        s.set_timesteps(2, Some(0.0));
        assert_eq!(s.step(&[0.5; 4], &[1.0; 4]), Err(SchedulerError::InvalidFlowShift(0.0)));
        s.set_timesteps(0, None);
        assert_eq!(s.step(&[0.5; 4], &[1.0; 4]), Err(SchedulerError::NoTimesteps));
    }

    #[test]
    fn last_step_returns_x0() {
        // sigma_last = 0: h = inf, the predictor reduces to x0 = sample - sigma * v.
        let mut s = UniPcScheduler::new(&wan()).unwrap();
        s.set_timesteps(1, None);
        let out = s.step(&[0.25, -1.0], &[1.0, 2.0]).unwrap();
        let sigma = s.sigmas()[0];
        assert_eq!(out, vec![(1.0 - sigma * 0.25) as f32, (2.0 + sigma) as f32]);
    }

    #[test]
    fn resumes_bit_exactly_from_its_state() {
        for order in [1, 2, 3] {
            let cfg = UniPcConfig { solver_order: order, ..wan() };
            super::super::state::tests::assert_resumes_exactly(&|| Box::new(UniPcScheduler::new(&cfg).unwrap()), 6);
        }
        let mut s = UniPcScheduler::new(&wan()).unwrap();
        s.set_timesteps(4, None);
        s.step(&[0.5; 4], &[1.0; 4]).unwrap();
        let mut st = Scheduler::state(&s);
        st.arrays.remove("model_outputs.0");
        let mut fresh = UniPcScheduler::new(&wan()).unwrap();
        fresh.set_timesteps(4, None);
        let e = fresh.restore(&st).unwrap_err().to_string();
        assert!(e.contains("expected 1 model outputs"), "{e}");
    }

    #[test]
    fn solve_matches_known_system() {
        let x = solve(&[vec![0.0, 2.0], vec![1.0, 1.0]], &[4.0, 3.0]).unwrap();
        assert_eq!(x, vec![1.0, 2.0]);
        assert!(solve(&[vec![1.0, 2.0], vec![2.0, 4.0]], &[1.0, 1.0]).is_none());
    }
}
