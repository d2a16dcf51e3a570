//! CogVideoXDDIMScheduler and CogVideoXDPMScheduler against diffusers 0.42.1 on CPU in f32:
//! `tests/golden/cogvideox/scheduler_{ddim,dpm}.{safetensors,json}` from
//! `tools/golden/make_cogvideox_scheduler_goldens.py`, and the golden models' `scheduler_config.json`.
//!
//! Timesteps must match exactly (every step count 1..=1000 for each spacing, by length and sum, and the
//! step counts diffusers gets wrong refused); `alphas_cumprod` to 1e-12 relative. Steps run free (each gets
//! our own previous output, as in the pipeline; the DPM steps get diffusers' injected noise) and are checked
//! per element: |ours - diffusers| <= 1e-6 (1 + |diffusers|). The schedulers compute in diffusers' f32 order
//! with f64 coefficients, so the measured difference is 0 or an ulp.

use std::collections::BTreeMap;
use std::path::PathBuf;
use vidlower_runtime::scheduler::cogvideox_ddim::CogVideoXDdimScheduler;
use vidlower_runtime::scheduler::cogvideox_dpm::CogVideoXDpmScheduler;
use vidlower_runtime::scheduler::cogvideox_schedule::{CogVideoXSchedulerConfig, Kind};
use vidlower_runtime::scheduler::{from_config_file, Scheduler, SchedulerError};
use vidlower_runtime::tensor::HostTensor;

const TOL: f64 = 1e-6;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/cogvideox")
}

struct Golden {
    tensors: BTreeMap<String, HostTensor>,
    info: serde_json::Value,
    kind: Kind,
}

impl Golden {
    fn load(kind: Kind) -> Golden {
        let name = match kind {
            Kind::Ddim => "ddim",
            Kind::Dpm => "dpm",
        };
        let dir = golden_dir();
        let tensors =
            vidlower_runtime::safetensors_io::load(&dir.join(format!("scheduler_{name}.safetensors"))).unwrap();
        let text = std::fs::read_to_string(dir.join(format!("scheduler_{name}.json"))).unwrap();
        Golden { tensors, info: serde_json::from_str(&text).unwrap(), kind }
    }

    fn get(&self, name: &str) -> &HostTensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("golden tensor `{name}` missing"))
    }

    fn config(&self, which: &str) -> CogVideoXSchedulerConfig {
        CogVideoXSchedulerConfig::from_json(&self.info[which], self.kind).unwrap()
    }

    fn scheduler(&self, cfg: &CogVideoXSchedulerConfig) -> Box<dyn Scheduler> {
        match self.kind {
            Kind::Ddim => Box::new(CogVideoXDdimScheduler::new(cfg).unwrap()),
            Kind::Dpm => Box::new(CogVideoXDpmScheduler::new(cfg).unwrap()),
        }
    }
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(&a, &b)| (a as f64 - b as f64).abs() / (1.0 + (b as f64).abs())).fold(0.0, f64::max)
}

fn ints(t: &HostTensor) -> Vec<i64> {
    t.to_vec::<i64>().unwrap()
}

fn check_alphas(g: &Golden) {
    for (which, tensor) in [("scheduler_config", "alphas_cumprod"), ("off_path_config", "off_path_alphas_cumprod")] {
        let want = g.get(tensor).to_f64_vec();
        let got = vidlower_runtime::scheduler::cogvideox_schedule::alphas_cumprod(&g.config(which));
        assert_eq!(got.len(), want.len());
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1e-300)).fold(0.0, f64::max);
        eprintln!("{tensor}: max rel err {err:.2e}");
        assert!(err <= 1e-12, "{tensor}: max relative error {err:e}");
    }
}

fn check_timesteps(g: &Golden) {
    let real = g.config("scheduler_config");
    for n in [3usize, 5, 7, 50] {
        let mut s = g.scheduler(&real);
        s.set_timesteps(n).unwrap();
        let got: Vec<i64> = s.timesteps().iter().map(|&t| t as i64).collect();
        assert_eq!(got, ints(g.get(&format!("timesteps_{n}"))), "timesteps_{n}");
    }
    let spacing = g.info["spacing"].as_object().unwrap();
    assert_eq!(spacing.len(), 3);
    for (name, sp) in spacing {
        let v = serde_json::json!({
            "prediction_type": "v_prediction", "rescale_betas_zero_snr": true, "beta_schedule": "scaled_linear",
            "snr_shift_scale": g.info["scheduler_config"]["snr_shift_scale"], "timestep_spacing": name,
            "steps_offset": sp["steps_offset"],
        });
        let cfg = CogVideoXSchedulerConfig::from_json(&v, g.kind).unwrap();
        for n in [3usize, 5, 50] {
            let mut s = g.scheduler(&cfg);
            s.set_timesteps(n).unwrap();
            let got: Vec<i64> = s.timesteps().iter().map(|&t| t as i64).collect();
            assert_eq!(got, ints(g.get(&format!("{name}_timesteps_{n}"))), "{name}_timesteps_{n}");
        }
        // Every step count: our spacing arithmetic gives diffusers' length and sum, and exactly the step counts
        // whose diffusers schedule is broken are refused.
        let (lengths, sums) = (ints(g.get(&format!("{name}_lengths"))), ints(g.get(&format!("{name}_sums"))));
        let bad: Vec<usize> = sp["bad_n"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let mut refused = Vec::new();
        for n in 1..=1000usize {
            let ts = vidlower_runtime::scheduler::cogvideox_schedule::timesteps(&cfg, n);
            assert_eq!((ts.len() as i64, ts.iter().sum::<i64>()), (lengths[n - 1], sums[n - 1]), "{name} n = {n}");
            let mut s = g.scheduler(&cfg);
            match s.set_timesteps(n) {
                Ok(()) => assert_eq!(s.timesteps().len(), n),
                Err(SchedulerError::InvalidSteps { steps, .. }) if steps == n => refused.push(n),
                Err(e) => panic!("{name} n = {n}: {e}"),
            }
        }
        assert_eq!(refused, bad, "{name}: refused step counts");
    }
}

fn check_run(g: &Golden, run: &str) {
    let r = &g.info["runs"][run];
    let n = r["num_inference_steps"].as_u64().unwrap() as usize;
    let cfg = g.config(r["config"].as_str().unwrap());
    let mut s: Box<dyn Scheduler> = g.scheduler(&cfg);
    s.set_timesteps(n).unwrap();
    let want_ts: Vec<f64> = r["timesteps"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
    assert_eq!(s.timesteps(), &want_ts[..], "{run}: timesteps");
    assert_eq!(s.init_noise_sigma(), r["init_noise_sigma"].as_f64().unwrap());

    // A typed handle for pred_original_sample alongside the trait object.
    let mut dpm = (g.kind == Kind::Dpm).then(|| {
        let mut d = CogVideoXDpmScheduler::new(&cfg).unwrap();
        d.set_timesteps(n).unwrap();
        d
    });
    let mut ddim = (g.kind == Kind::Ddim).then(|| {
        let mut d = CogVideoXDdimScheduler::new(&cfg).unwrap();
        d.set_timesteps(n).unwrap();
        d
    });
    let mut sample = g.get(&format!("{run}_sample_0")).to_f32_vec();
    let mut worst: f64 = 0.0;
    for i in 0..n {
        assert_eq!(s.step_index(), i);
        let mo = g.get(&format!("{run}_model_output_{i}")).to_f32_vec();
        let noise = (g.kind == Kind::Dpm).then(|| g.get(&format!("{run}_noise_{i}")).to_f32_vec());
        assert_eq!(s.needs_noise(), noise.is_some());
        if let Some(d) = &dpm {
            let draws = r["steps"][i]["noise_draws"].as_u64().unwrap() as usize;
            assert_eq!(d.noise_draws(), draws, "{run} step {i}: diffusers' randn draws");
        }
        let got = s.step(&mo, &sample, noise.as_deref()).unwrap();
        let (typed, pred) = match (&mut dpm, &mut ddim) {
            (Some(d), _) => {
                (d.step(&mo, &sample, noise.as_deref()).unwrap(), d.pred_original_sample().unwrap().to_vec())
            }
            (_, Some(d)) => (d.step(&mo, &sample, None).unwrap(), d.pred_original_sample().unwrap().to_vec()),
            _ => unreachable!(),
        };
        assert_eq!(typed, got, "trait object and typed scheduler agree");
        let want_pred = g.get(&format!("{run}_pred_original_sample_{i}")).to_f32_vec();
        let want = g.get(&format!("{run}_prev_sample_{i}")).to_f32_vec();
        let (e_pred, e) = (max_rel(&pred, &want_pred), max_rel(&got, &want));
        eprintln!("{run} step {i} (t = {}): prev_sample {e:.2e}, pred_original_sample {e_pred:.2e}", want_ts[i]);
        assert!(e_pred <= TOL, "{run} step {i}: pred_original_sample off by {e_pred:e}");
        assert!(e <= TOL, "{run} step {i}: prev_sample off by {e:e}");
        worst = worst.max(e);
        sample = got;
    }
    eprintln!("{run}: worst step {worst:.2e}");
    assert!(matches!(s.step(&sample, &sample, None), Err(SchedulerError::Finished(_))));
}

#[test]
fn ddim_schedule_matches_diffusers() {
    let g = Golden::load(Kind::Ddim);
    check_alphas(&g);
    check_timesteps(&g);
}

#[test]
fn dpm_schedule_matches_diffusers() {
    let g = Golden::load(Kind::Dpm);
    check_alphas(&g);
    check_timesteps(&g);
}

#[test]
fn ddim_steps_match_diffusers() {
    let g = Golden::load(Kind::Ddim);
    for run in ["n5", "n3", "off_path_n3"] {
        check_run(&g, run);
    }
}

#[test]
fn dpm_steps_match_diffusers() {
    let g = Golden::load(Kind::Dpm);
    for run in ["n5", "n3", "off_path_n3"] {
        check_run(&g, run);
    }
}

#[test]
fn every_recorded_run_has_a_test() {
    for kind in [Kind::Ddim, Kind::Dpm] {
        let g = Golden::load(kind);
        let mut runs: Vec<&str> = g.info["runs"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
        runs.sort();
        assert_eq!(runs, ["n3", "n5", "off_path_n3"]);
    }
}

#[test]
fn golden_model_configs_load_as_the_variants_use_them() {
    for (variant, describe) in [
        ("cogvideox-2b", "CogVideoXDDIMScheduler (v_prediction, trailing, snr_shift_scale 3.0, zero terminal SNR)"),
        ("cogvideox-5b", "CogVideoXDPMScheduler (v_prediction, trailing, snr_shift_scale 1.0, zero terminal SNR)"),
        ("cogvideox1.5-5b", "CogVideoXDPMScheduler (v_prediction, trailing, snr_shift_scale 1.0, zero terminal SNR)"),
    ] {
        let dir = golden_dir().join(variant).join("model");
        let mut s = from_config_file(&dir.join("scheduler/scheduler_config.json")).unwrap();
        assert_eq!(s.describe(), describe, "{variant}");
        s.set_timesteps(50).unwrap();
        assert_eq!(s.timesteps().len(), 50);
        assert_eq!((s.timesteps()[0], s.timesteps()[49]), (999.0, 19.0));
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("model_index.json")).unwrap()).unwrap();
        assert_eq!(index["_class_name"], "CogVideoXPipeline");
        assert_eq!(index["scheduler"][1].as_str().unwrap(), describe.split(' ').next().unwrap());
    }
}

#[test]
fn unsupported_config_files_are_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let base: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(golden_dir().join("cogvideox-2b/model/scheduler/scheduler_config.json")).unwrap(),
    )
    .unwrap();
    let cases = [
        ("_class_name", serde_json::json!("DDIMScheduler"), "CogVideoXDPMScheduler"),
        ("thresholding", serde_json::json!(true), "expected false"),
        ("prediction_type", serde_json::json!("flow_prediction"), "\"v_prediction\""),
        ("timestep_spacing", serde_json::json!("karras"), "\"trailing\", \"leading\" or \"linspace\""),
        ("beta_schedule", serde_json::json!("squaredcos_cap_v2"), "\"scaled_linear\""),
        ("snr_shift_scale", serde_json::json!("three"), "invalid type"),
    ];
    for (field, value, supported) in cases {
        let mut cfg = base.clone();
        cfg[field] = value;
        let path = dir.path().join(format!("{field}.json"));
        std::fs::write(&path, serde_json::to_string(&cfg).unwrap()).unwrap();
        let e = from_config_file(&path).err().unwrap_or_else(|| panic!("{field}: accepted"));
        let msg = e.to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains(field) && msg.contains(supported), "{msg}");
    }
}

/// The pipeline goldens (`tools/golden/make_cogvideox_pipeline_goldens.py`): the scheduler driven as
/// `CogVideoXPipeline` drives it, from the recorded transformer outputs: CFG combine (uncond first in the
/// batch), step with the injected DPM noise, against the latents after each step; and the dynamic CFG scale.
#[test]
fn pipeline_goldens_denoise_like_diffusers() {
    use vidlower_frontends::cogvideox::family::dynamic_guidance_scale;
    use vidlower_frontends::family::classifier_free_guidance;
    // The family's guidance over the pipeline's [uncond | cond] batch.
    let cfg_combine = |u: &[f32], c: &[f32], g: f64| classifier_free_guidance(&[u, c].concat(), g, false);
    for variant in ["cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b"] {
        let dir = golden_dir().join(variant);
        let t = vidlower_runtime::safetensors_io::load(&dir.join("pipeline_3step.safetensors")).unwrap();
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("pipeline_3step.json")).unwrap()).unwrap();
        let get = |k: &str| t.get(k).unwrap_or_else(|| panic!("{variant}: `{k}` missing")).to_f32_vec();
        let args = &info["pipeline_args"];
        let (n, g) = (args["num_inference_steps"].as_u64().unwrap() as usize, args["guidance_scale"].as_f64().unwrap());
        let mut s = from_config_file(&dir.join("model/scheduler/scheduler_config.json")).unwrap();
        s.set_timesteps(n).unwrap();
        let want_ts: Vec<f64> = info["timesteps"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(s.timesteps(), &want_ts[..], "{variant}");
        let mut latents: Vec<f32> = get("latents").iter().map(|&x| (x as f64 * s.init_noise_sigma()) as f32).collect();
        for (i, &ts) in want_ts.iter().enumerate() {
            assert_eq!(t[&format!("timestep_{i}")].to_vec::<i64>().unwrap(), vec![ts as i64; 2]);
            assert_eq!(get(&format!("hidden_states_{i}")), latents, "{variant} step {i}: transformer input");
            let v = cfg_combine(&get(&format!("noise_pred_uncond_{i}")), &get(&format!("noise_pred_cond_{i}")), g);
            let noise = s.needs_noise().then(|| get(&format!("noise_{i}")));
            latents = s.step(&v, &latents, noise.as_deref()).unwrap();
            let e = max_rel(&latents, &get(&format!("latents_step_{i}")));
            eprintln!("{variant} step {i}: {e:.2e}");
            assert!(e <= TOL, "{variant} step {i}: {e:e}");
        }
        assert_eq!(latents, get("latents_out"), "{variant}: bit-identical final latents");
        let want_dyn = t["guidance_scales_dynamic_cfg"].to_f64_vec();
        for (k, &ts) in want_ts.iter().enumerate() {
            assert_eq!(dynamic_guidance_scale(g, ts, n), want_dyn[k], "{variant} dynamic CFG step {k}");
        }
    }
}
