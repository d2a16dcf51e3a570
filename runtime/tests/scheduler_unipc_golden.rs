//! UniPC (Wan's flow-sigma config) against diffusers 0.42.1 on CPU in f32:
//! `tests/golden/wan/scheduler_unipc.{safetensors,json}` from `tools/golden/make_wan_goldens.py --stage scheduler`.
//!
//! Timesteps must match exactly and sigmas to 1e-6. Step outputs are checked free-running (each step
//! gets our own previous output, as in the pipeline) against diffusers' chain; the scheduler computes in
//! f64 where diffusers computes in f32, so the two differ by diffusers' rounding (measured: <= 4.8e-7
//! absolute, <= 2.0e-7 of the step's max |latent|); the bound below leaves ~50x room.

use std::collections::BTreeMap;
use std::path::PathBuf;
use vidlower_runtime::scheduler::unipc::UniPcConfig;
use vidlower_runtime::scheduler::unipc::UniPcScheduler;
use vidlower_runtime::tensor::HostTensor;

/// Per element: |ours - diffusers| <= RTOL * max|diffusers over the step| + ATOL.
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/wan")
}

struct Golden {
    tensors: BTreeMap<String, HostTensor>,
    info: serde_json::Value,
}

impl Golden {
    fn load() -> Golden {
        let dir = golden_dir();
        let tensors = vidlower_runtime::safetensors_io::load(&dir.join("scheduler_unipc.safetensors")).unwrap();
        let info = serde_json::from_str(&std::fs::read_to_string(dir.join("scheduler_unipc.json")).unwrap()).unwrap();
        Golden { tensors, info }
    }

    fn get(&self, name: &str) -> &HostTensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("golden tensor `{name}` missing"))
    }

    /// The committed scheduler config (Wan's, flow_shift 3.0); diffusers-only fields are ignored.
    fn scheduler(&self) -> UniPcScheduler {
        let cfg: UniPcConfig = serde_json::from_value(self.info["scheduler_config"].clone()).unwrap();
        assert_eq!((cfg.flow_shift, cfg.solver_type.as_str(), cfg.solver_order), (3.0, "bh2", 2));
        UniPcScheduler::new(&cfg).unwrap()
    }
}

#[test]
fn timesteps_and_sigmas_match_diffusers() {
    let g = Golden::load();
    let mut checked = 0;
    for (prefix, shift) in [("", 3.0), ("shift5_", 5.0)] {
        for n in [3usize, 5, 10, 50] {
            let Some(ts) = g.tensors.get(&format!("{prefix}timesteps_{n}")) else {
                continue;
            };
            let mut s = g.scheduler();
            // The shift goes through the override, as the pipeline's --flow_shift does.
            s.set_timesteps(n, Some(shift));
            let want_ts: Vec<i64> = ts.to_vec().unwrap();
            let got_ts: Vec<i64> = s
                .timesteps()
                .iter()
                .map(|&t| {
                    assert_eq!(t, t.trunc(), "timestep {t} not integer-valued");
                    t as i64
                })
                .collect();
            assert_eq!(got_ts, want_ts, "{prefix}timesteps_{n}");
            let want_sig = g.get(&format!("{prefix}sigmas_{n}")).to_f64_vec();
            assert_eq!(s.sigmas().len(), n + 1);
            assert_eq!(s.sigmas().len(), want_sig.len());
            for (k, (a, b)) in s.sigmas().iter().zip(&want_sig).enumerate() {
                assert!((a - b).abs() <= 1e-6, "{prefix}sigmas_{n}[{k}]: {a} vs {b}");
            }
            assert_eq!(*s.sigmas().last().unwrap(), 0.0, "final_sigmas_type zero");
            checked += 1;
        }
    }
    assert!(checked >= 7, "expected schedules for n = 3, 5, 10 (shift 3) and at least one with shift 5");
}

/// Runs one recorded step sequence, checking the corrected sample and `prev_sample` of every step.
fn check_run(g: &Golden, run: &str) {
    let r = &g.info["runs"][run];
    let n = r["num_inference_steps"].as_u64().unwrap() as usize;
    let shift = r["flow_shift"].as_f64().unwrap();
    let mut s = g.scheduler();
    s.set_timesteps(n, Some(shift));
    let want_ts: Vec<f64> = r["timesteps"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    assert_eq!(s.timesteps(), &want_ts[..], "{run}: timesteps");

    let mut sample = g.get(&format!("{run}_sample_0")).to_f32_vec();
    for (i, t) in want_ts.iter().enumerate() {
        assert_eq!(s.step_index(), i);
        let model_output = g.get(&format!("{run}_model_output_{i}")).to_f32_vec();
        let want = g.get(&format!("{run}_prev_sample_{i}")).to_f32_vec();
        let got = s.step(&model_output, &sample).unwrap();
        // The corrector's output (diffusers' `last_sample`), which the predictor started from.
        let want_c = g.get(&format!("{run}_corrected_sample_{i}")).to_f32_vec();
        let scale_c = want_c.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        for (k, (a, b)) in s.last_sample().unwrap().iter().zip(&want_c).enumerate() {
            let d = (a - *b as f64).abs();
            assert!(d <= RTOL * scale_c + ATOL, "{run} step {i} corrected sample [{k}]: {a} vs diffusers {b}");
        }
        assert_eq!(got.len(), want.len());
        let scale = want.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        let mut max_abs: f64 = 0.0;
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            let d = (*a as f64 - *b as f64).abs();
            assert!(d <= RTOL * scale + ATOL, "{run} step {i} element {k}: {a} vs diffusers {b} (|d| = {d:.3e})");
            max_abs = max_abs.max(d);
        }
        eprintln!("{run} step {i} (t = {t}): max |d| = {max_abs:.2e}, relative to max|x| {:.2e}", max_abs / scale);
        sample = got;
    }
    assert_eq!(s.step_index(), n);
    assert!(s.step(&sample, &sample).is_err(), "{run}: a step past the schedule must be an error");
}

#[test]
fn steps_match_diffusers_shift3_n5() {
    let g = Golden::load();
    check_run(&g, "n5");
}

#[test]
fn steps_match_diffusers_shift3_n3() {
    let g = Golden::load();
    check_run(&g, "n3");
}

#[test]
fn steps_match_diffusers_shift5_n5() {
    let g = Golden::load();
    check_run(&g, "shift5_n5");
}

#[test]
fn every_recorded_run_has_a_test() {
    let g = Golden::load();
    let runs: Vec<&String> = g.info["runs"].as_object().unwrap().keys().collect();
    let mut runs: Vec<&str> = runs.iter().map(|r| r.as_str()).collect();
    runs.sort();
    assert_eq!(runs, ["n3", "n5", "shift5_n5"], "a run was added to or removed from the goldens");
}
