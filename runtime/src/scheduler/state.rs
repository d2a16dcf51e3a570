//! A scheduler's multistep state as plain data, so a denoising loop can stop after any step and a fresh
//! scheduler (built from the same config, `set_timesteps` with the same steps) can continue exactly where
//! it stopped. The schedule itself (sigmas, timesteps, `alphas_cumprod`) is not state: it is rebuilt from
//! the config. What is state is the step index, small counters, and the arrays the next steps read (UniPC's
//! `model_outputs` and `last_sample` in f64, the CogVideoX DPM's `old_pred_original_sample` in f32), each
//! kept in its own precision so a round trip is bit-exact.

use super::SchedulerError;
use std::collections::BTreeMap;

/// One array of a scheduler's state, in the precision the scheduler keeps it.
#[derive(Clone, Debug, PartialEq)]
pub enum StateArray {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl StateArray {
    pub fn len(&self) -> usize {
        match self {
            StateArray::F32(v) => v.len(),
            StateArray::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What [`Scheduler::state`](super::Scheduler::state) returns and
/// [`Scheduler::restore`](super::Scheduler::restore) takes.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerState {
    /// The diffusers class (`_class_name`) that wrote it.
    pub class: String,
    /// Inference steps of the schedule it belongs to.
    pub steps: usize,
    /// Steps taken.
    pub step_index: usize,
    /// Small integer state (UniPC's `lower_order_nums`, `this_order`).
    pub counters: BTreeMap<String, u64>,
    /// Arrays by name; a list is stored as `name.0`, `name.1`, ... (oldest first).
    pub arrays: BTreeMap<String, StateArray>,
}

fn state_err(class: &str, message: impl std::fmt::Display) -> SchedulerError {
    SchedulerError::State(format!("{class}: {message}"))
}

impl SchedulerState {
    /// An empty state of `class` at `step_index` of `steps`.
    pub fn new(class: &str, steps: usize, step_index: usize) -> Self {
        SchedulerState { class: class.into(), steps, step_index, counters: BTreeMap::new(), arrays: BTreeMap::new() }
    }

    /// The checks every `restore` starts with: the class, the schedule's length, a step index inside it.
    pub fn check(&self, class: &str, steps: usize) -> Result<(), SchedulerError> {
        if self.class != class {
            return Err(state_err(class, format!("the state is of {}", self.class)));
        }
        if self.steps != steps {
            return Err(state_err(class, format!("the state is of a {}-step schedule, this one has {steps} steps", self.steps)));
        }
        if self.step_index > steps {
            return Err(state_err(class, format!("step index {} is past the {steps} steps", self.step_index)));
        }
        Ok(())
    }

    /// Counter `name` (an error naming it when missing).
    pub fn counter(&self, name: &str) -> Result<u64, SchedulerError> {
        self.counters.get(name).copied().ok_or_else(|| state_err(&self.class, format!("no counter `{name}`")))
    }

    /// The f32 array `name`, if present (an error when it is f64).
    pub fn f32_array(&self, name: &str) -> Result<Option<Vec<f32>>, SchedulerError> {
        match self.arrays.get(name) {
            None => Ok(None),
            Some(StateArray::F32(v)) => Ok(Some(v.clone())),
            Some(StateArray::F64(_)) => Err(state_err(&self.class, format!("array `{name}` is f64, expected f32"))),
        }
    }

    /// The f64 array `name`, if present (an error when it is f32).
    pub fn f64_array(&self, name: &str) -> Result<Option<Vec<f64>>, SchedulerError> {
        match self.arrays.get(name) {
            None => Ok(None),
            Some(StateArray::F64(v)) => Ok(Some(v.clone())),
            Some(StateArray::F32(_)) => Err(state_err(&self.class, format!("array `{name}` is f32, expected f64"))),
        }
    }

    /// The f64 list `name.0`, `name.1`, ... (consecutive from 0).
    pub fn f64_list(&self, name: &str) -> Result<Vec<Vec<f64>>, SchedulerError> {
        let mut out = Vec::new();
        while let Some(v) = self.f64_array(&format!("{name}.{}", out.len()))? {
            out.push(v);
        }
        let stray = self.arrays.keys().filter(|k| k.starts_with(&format!("{name}."))).count();
        if stray != out.len() {
            return Err(state_err(&self.class, format!("the entries of `{name}` are not numbered 0..{}", stray)));
        }
        Ok(out)
    }

    /// Checks that every array has `len` elements (the sample's length).
    pub fn check_lengths(&self) -> Result<Option<usize>, SchedulerError> {
        let mut lens = self.arrays.iter().map(|(k, a)| (k, a.len()));
        let Some((first_name, len)) = lens.next() else { return Ok(None) };
        match lens.find(|(_, l)| *l != len) {
            Some((name, l)) => Err(state_err(
                &self.class,
                format!("array `{name}` has {l} elements but `{first_name}` has {len}"),
            )),
            None => Ok(Some(len)),
        }
    }

    /// An error of this state's class.
    pub fn invalid(&self, message: impl std::fmt::Display) -> SchedulerError {
        state_err(&self.class, message)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::Scheduler;
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1) (a model output or a sample).
    pub fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 23) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Runs `steps` steps of `fresh()` uninterrupted, and again stopping after each `k`: the state saved,
    /// restored into a new `fresh()` scheduler, the rest of the steps taken there. Every variant must
    /// give the same latents bit for bit (the model output of step i is a function of the sample and i,
    /// as a transformer's is).
    pub fn assert_resumes_exactly(fresh: &dyn Fn() -> Box<dyn Scheduler>, steps: usize) {
        let n = 37;
        let model = |x: &[f32], i: usize| -> Vec<f32> {
            values(100 + i as u64, x.len()).iter().zip(x).map(|(v, &x)| v + 0.5 * x).collect()
        };
        let noise = |s: &dyn Scheduler, i: usize| s.needs_noise().then(|| values(1000 + i as u64, n));
        let run = |s: &mut dyn Scheduler, mut x: Vec<f32>, from: usize, to: usize| -> Vec<f32> {
            for i in from..to {
                assert_eq!(s.step_index(), i);
                let z = noise(s, i);
                x = s.step(&model(&x, i), &x, z.as_deref()).unwrap();
            }
            x
        };
        let start = values(7, n);
        let mut whole = fresh();
        whole.set_timesteps(steps).unwrap();
        let want = run(whole.as_mut(), start.clone(), 0, steps);
        for k in 0..=steps {
            let mut first = fresh();
            first.set_timesteps(steps).unwrap();
            let mid = run(first.as_mut(), start.clone(), 0, k);
            let state = first.state();
            assert_eq!((state.step_index, state.steps), (k, steps));
            let mut second = fresh();
            second.set_timesteps(steps).unwrap();
            second.restore(&state).unwrap_or_else(|e| panic!("restore after {k} steps: {e}"));
            assert_eq!(second.state(), state, "the restored state reads back the same after {k} steps");
            let got = run(second.as_mut(), mid, k, steps);
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{}: resumed after {k}/{steps} steps differs from the uninterrupted run", whole.describe());
        }
        // A state of another schedule is refused, naming what differs.
        let mut other = fresh();
        other.set_timesteps(steps + 1).unwrap();
        let e = other.restore(&whole.state()).unwrap_err().to_string();
        assert!(e.contains(&format!("{steps}-step schedule")), "{e}");
    }

    #[test]
    fn lists_and_lengths_are_checked() {
        let mut s = SchedulerState::new("X", 3, 1);
        s.arrays.insert("m.0".into(), StateArray::F64(vec![1.0; 2]));
        s.arrays.insert("m.2".into(), StateArray::F64(vec![1.0; 2]));
        assert!(s.f64_list("m").unwrap_err().to_string().contains("not numbered"));
        s.arrays.insert("m.1".into(), StateArray::F32(vec![1.0; 3]));
        assert!(s.f64_list("m").unwrap_err().to_string().contains("is f32, expected f64"));
        assert!(s.check_lengths().unwrap_err().to_string().contains("has 3 elements"));
        assert!(s.check("Y", 3).unwrap_err().to_string().contains("the state is of X"));
        assert!(s.check("X", 4).unwrap_err().to_string().contains("3-step schedule"));
        assert!(s.counter("c").unwrap_err().to_string().contains("no counter `c`"));
    }
}
