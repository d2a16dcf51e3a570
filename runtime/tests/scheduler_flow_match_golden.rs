//! FlowMatchEulerDiscreteScheduler as HunyuanVideo-1.5's pipeline drives it (sigmas `linspace(1, 0, n + 1)[:-1]`,
//! static shift) against diffusers 0.42.1 on CPU in f32: `tests/golden/flow_match_euler.{safetensors,json}` from
//! `tools/golden/make_cogvideox_scheduler_goldens.py`, at HunyuanVideo-1.5's shifts 5, 7 and 9.
//!
//! The scheduler does diffusers' f32 arithmetic in diffusers' order, so timesteps and sigmas must be
//! bit-identical; steps run free and are checked per element to 1e-6 (1 + |diffusers|) (measured: 0).

use std::collections::BTreeMap;
use std::path::PathBuf;
use vidlower_runtime::scheduler::flow_match_euler::{FlowMatchEulerConfig, FlowMatchEulerScheduler};
use vidlower_runtime::scheduler::{from_config_value, Scheduler};
use vidlower_runtime::tensor::HostTensor;

struct Golden {
    tensors: BTreeMap<String, HostTensor>,
    info: serde_json::Value,
}

fn load() -> Golden {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let tensors = vidlower_runtime::safetensors_io::load(&dir.join("flow_match_euler.safetensors")).unwrap();
    let info = serde_json::from_str(&std::fs::read_to_string(dir.join("flow_match_euler.json")).unwrap()).unwrap();
    Golden { tensors, info }
}

impl Golden {
    fn get(&self, name: &str) -> Vec<f32> {
        self.tensors.get(name).unwrap_or_else(|| panic!("golden tensor `{name}` missing")).to_f32_vec()
    }
}

#[test]
fn timesteps_and_sigmas_are_bit_identical() {
    let g = load();
    let configs = g.info["configs"].as_object().unwrap();
    assert_eq!(configs.len(), 3);
    for (name, cfg) in configs {
        // The config exactly as diffusers saved it, through the generic loader.
        let mut with_class = cfg.clone();
        with_class["_class_name"] = "FlowMatchEulerDiscreteScheduler".into();
        let mut dynamic = from_config_value(&with_class).unwrap();
        let parsed: FlowMatchEulerConfig = serde_json::from_value(cfg.clone()).unwrap();
        for n in [3usize, 5, 50] {
            let mut s = FlowMatchEulerScheduler::new(&parsed).unwrap();
            s.set_timesteps(n).unwrap();
            let want_t = g.get(&format!("{name}_timesteps_{n}"));
            let want_s = g.get(&format!("{name}_sigmas_{n}"));
            let got_t: Vec<f32> = s.timesteps().iter().map(|&t| t as f32).collect();
            assert!(s.timesteps().iter().all(|&t| t == t as f32 as f64), "timesteps are f32 values");
            assert_eq!(got_t, want_t, "{name}_timesteps_{n}");
            assert_eq!(s.sigmas(), &want_s[..], "{name}_sigmas_{n}");
            dynamic.set_timesteps(n).unwrap();
            assert_eq!(dynamic.timesteps(), s.timesteps());
        }
    }
}

fn check_run(g: &Golden, run: &str) {
    let r = &g.info["runs"][run];
    let n = r["num_inference_steps"].as_u64().unwrap() as usize;
    let shift = r["shift"].as_f64().unwrap();
    // Built at diffusers' default shift 1.0, then the override, as a pipeline's --flow-shift flag would.
    let mut s = from_config_value(&serde_json::json!({"_class_name": "FlowMatchEulerDiscreteScheduler"})).unwrap();
    s.set_shift(shift).unwrap();
    s.set_timesteps(n).unwrap();
    // serde_json's default float parsing can miss by an ulp: compare as f32 (the values are f32).
    let want_ts: Vec<f32> = r["timesteps"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap() as f32).collect();
    let got_ts: Vec<f32> = s.timesteps().iter().map(|&t| t as f32).collect();
    assert_eq!(got_ts, want_ts, "{run}: timesteps");
    assert!(!s.needs_noise());
    let mut sample = g.get(&format!("{run}_sample_0"));
    for (i, t) in want_ts.iter().enumerate() {
        let mo = g.get(&format!("{run}_model_output_{i}"));
        let want = g.get(&format!("{run}_prev_sample_{i}"));
        let got = s.step(&mo, &sample, None).unwrap();
        let err = got
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as f64 - b as f64).abs() / (1.0 + (b as f64).abs()))
            .fold(0.0, f64::max);
        eprintln!("{run} step {i} (t = {t}): max rel err {err:.2e}");
        assert!(err <= 1e-6, "{run} step {i}: {err:e}");
        sample = got;
    }
    assert!(s.step(&sample, &sample, None).is_err());
}

#[test]
fn steps_match_diffusers() {
    let g = load();
    let mut runs: Vec<&String> = g.info["runs"].as_object().unwrap().keys().collect();
    runs.sort();
    assert_eq!(runs, ["shift5_n5", "shift7_n3"]);
    for run in runs {
        check_run(&g, run);
    }
}
