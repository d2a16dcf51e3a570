//! `vidlower generate --model wan2.1-tiny` as a user runs it: an mp4 that a real decoder
//! (ffprobe) reads back with the right frame count and size, stage files that Python's
//! safetensors reads with the documented keys, stages re-runnable alone, and bad flags refused
//! before any work starts.

#[path = "common/cli.rs"]
mod cli;

use cli::{failure, ok, probe, vidlower};
use std::path::Path;
use std::process::Command;

/// Keys, dtypes and shapes of a safetensors file as Python's `safetensors` package reads them.
fn python_safetensors(file: &Path) -> String {
    let script = "import sys\nfrom safetensors import safe_open\nwith safe_open(sys.argv[1], framework='np') as f:\n    for k in sorted(f.keys()):\n        s = f.get_slice(k)\n        print(k, s.get_dtype(), list(s.get_shape()))\n";
    let o = Command::new("python3").args(["-c", script]).arg(file).output().expect("python3 runs");
    assert!(o.status.success(), "python's safetensors could not read {}: {}", file.display(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn generate_tiny_writes_a_playable_video_and_readable_stage_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("exe"), tmp.path().join("run"));
    let (cache_s, out_s) = (cache.to_str().unwrap(), out.to_str().unwrap());
    let stdout = ok(vidlower(&cache, &["generate", "--model", "wan2.1-tiny", "--prompt", "a red fox in snow", "--output-dir", out_s]));
    for stage in ["stage 1:", "stage 2:", "stage 3:", "steps in"] {
        assert!(stdout.contains(stage), "missing `{stage}` in\n{stdout}");
    }
    // The preset's defaults: 96x64, 9 frames, 16 fps.
    assert_eq!(probe(&out.join("output_video.mp4")), "h264,96,64,yuv420p,16/1,9");

    let embeds = python_safetensors(&out.join("stage1_embeddings.safetensors"));
    assert_eq!(embeds, "negative_prompt_embeds BF16 [1, 512, 32]\nprompt_embeds BF16 [1, 512, 32]\n");
    let latents = python_safetensors(&out.join("stage2_latents.safetensors"));
    assert_eq!(latents, "latents F32 [1, 16, 3, 8, 12]\n");

    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("generation_config.json")).unwrap()).unwrap();
    assert_eq!(config["prompt"], "a red fox in snow");
    assert_eq!((config["steps"].as_u64(), config["frames"].as_i64(), config["fps"].as_u64()), (Some(4), Some(9), Some(16)));

    // Stage 2 again with another seed and the seeds' snake_case flags, then stage 3 with frames.
    let before = std::fs::read(out.join("stage2_latents.safetensors")).unwrap();
    let s2 = ok(vidlower(&cache, &["stage2", "--input-dir", out_s, "--seed", "7", "--num_inference_steps", "2", "--warmup_steps", "1"]));
    assert!(s2.contains("2 steps in"), "{s2}");
    assert_ne!(before, std::fs::read(out.join("stage2_latents.safetensors")).unwrap(), "a new seed gives new latents");
    let video = tmp.path().join("v.mp4");
    ok(vidlower(&cache, &["stage3", "--input-dir", out_s, "--output-video", video.to_str().unwrap(), "--fps", "8", "--save-frames"]));
    assert_eq!(probe(&video), "h264,96,64,yuv420p,8/1,9");
    assert_eq!(python_safetensors(&out.join("stage3_frames.safetensors")), "frames F32 [1, 9, 64, 96, 3]\n");

    // A second generate is served from the executable cache.
    let again = ok(vidlower(&cache, &["generate", "--model", "wan2.1-tiny", "--prompt", "x", "--output-dir", out_s]));
    assert!(again.matches("cache hit").count() >= 3, "{again}");
    let _ = cache_s;
}

#[test]
fn bad_flags_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("exe"), tmp.path().join("run"));
    let out_s = out.to_str().unwrap().to_string();
    let with = |extra: &[&str]| -> Vec<String> {
        let base = ["generate", "--model", "wan2.1-tiny", "--prompt", "p", "--output-dir", &out_s];
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let e = failure(vidlower(&cache, &with(&["--frames", "10"])));
    assert!(e.contains("--frames 10") && e.contains("4n+1"), "{e}");
    let e = failure(vidlower(&cache, &with(&["--height", "100"])));
    assert!(e.contains("--height 100") && e.contains("multiple of 16"), "{e}");
    let e = failure(vidlower(&cache, &with(&["--latents-in", "/nonexistent.safetensors"])));
    assert!(e.contains("/nonexistent.safetensors"), "{e}");
    assert!(!out.exists(), "nothing was written");
    let e = failure(vidlower(&cache, &["generate", "--model", "nope", "--prompt", "p"]));
    assert!(e.contains("unknown model `nope`") && e.contains("wan2.1-tiny"), "{e}");
    let e = failure(vidlower(&cache, &["stage2", "--input-dir", tmp.path().join("empty").to_str().unwrap()]));
    assert!(e.contains("generation_config.json") && e.contains("stage 1"), "{e}");
    // Latents of the wrong shape are named with the expected one.
    let bad = tmp.path().join("bad.safetensors");
    let t = vidlower_runtime::tensor::HostTensor::zeros(vidlower_ir::DType::F32, vec![1, 16, 3, 4, 4]).unwrap();
    vidlower_runtime::safetensors_io::save(&bad, &[("latents".into(), t)]).unwrap();
    let e = failure(vidlower(&cache, &with(&["--latents-in", bad.to_str().unwrap()])));
    assert!(e.contains("[1, 16, 3, 8, 12]"), "{e}");
}

/// `latents` of a stage-2 file as f64.
fn latents(file: &Path) -> Vec<f64> {
    vidlower_runtime::safetensors_io::load(file).unwrap().remove("latents").unwrap().to_f64_vec()
}

#[test]
fn stages_on_a_device_mesh_give_the_one_device_latents() {
    // Stage 1 once; stage 2 (f32) on one device, then laid out by the sharding pass over 8
    // virtual CPU devices: CFG's batch of 2 on dp, the Wan rules on tp (the tiny model's 2 heads
    // do not divide 4, so its attention goes sequence parallel), in Shardy and in GSPMD form.
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("exe"), tmp.path().join("run"));
    let out_s = out.to_str().unwrap();
    let s1 = ok(vidlower(&cache, &["stage1", "--model", "wan2.1-tiny", "--prompt", "a fox", "--output-dir", out_s, "--mesh", "dp=2"]));
    assert!(s1.contains("stage 1:"), "{s1}");
    let file = out.join("stage2_latents.safetensors");
    let stage2 = |extra: &[&str]| {
        let mut args = vec!["stage2", "--input-dir", out_s, "--dtype", "f32", "--num-inference-steps", "2"];
        args.extend_from_slice(extra);
        let stdout = ok(vidlower(&cache, &args));
        (stdout, latents(&file))
    };
    let (_, want) = stage2(&[]);
    for extra in [&["--mesh", "dp=2,tp=4"][..], &["--mesh", "dp=2,tp=4", "--sharding-format", "gspmd"][..], &["--mesh", "tp=8"][..]] {
        let (stdout, got) = stage2(extra);
        assert!(stdout.contains(&format!("mesh {}", extra[1])), "{stdout}");
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0, f64::max);
        assert!(err < 1e-4, "{extra:?}: max relative error {err:e} against one device");
    }
    let e = failure(vidlower(&cache, &["stage2", "--input-dir", out_s, "--mesh", "dp=2,dp=4"]));
    assert!(e.contains("--mesh") && e.contains("dp"), "{e}");
    let e = failure(vidlower(&cache, &["stage2", "--input-dir", out_s, "--rules", "r.json"]));
    assert!(e.contains("--mesh"), "--rules needs a mesh: {e}");
    let rules = tmp.path().join("rules.json");
    std::fs::write(&rules, "[{\"pattern\": \"(\", \"dims\": [\"tp\"]}]").unwrap();
    let e = failure(vidlower(&cache, &["stage2", "--input-dir", out_s, "--mesh", "tp=2", "--rules", rules.to_str().unwrap()]));
    assert!(e.contains("rules.json"), "a bad rules file is named: {e}");
}
