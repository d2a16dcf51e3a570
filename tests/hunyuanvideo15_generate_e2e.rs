//! `vidlower generate` on the `hunyuanvideo1.5-tiny` preset as a user runs it, through the same
//! generic stages as Wan and CogVideoX: an mp4 of the requested frames and size, the eight stage-1
//! tensors under diffusers' names (masks as float 0/1, zeros for ByT5 without quoted text), the
//! [1, C, T, H/16, W/16] latents, the stage-3 frames, and the family's refusals before any work.

#[path = "common/cli.rs"]
mod cli;

use cli::{failure, ok, probe, vidlower};
use std::path::Path;
use vidlower_runtime::tensor::HostTensor;

fn load(file: &Path) -> std::collections::BTreeMap<String, HostTensor> {
    vidlower_runtime::safetensors_io::load(file).unwrap()
}

#[test]
fn hunyuanvideo15_tiny_generates_nine_frames_at_96x64() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("exe"), tmp.path().join("run"));
    let out_s = out.to_str().unwrap();
    let prompt = "a shop sign that says \"OPEN\" in the rain";
    let args = ["generate", "--model", "hunyuanvideo1.5-tiny", "--prompt", prompt, "--height", "64", "--width", "96"];
    let stdout = ok(vidlower(&cache, &[&args[..], &["--frames", "9", "--output-dir", out_s]].concat()));
    assert!(stdout.contains("hunyuanvideo15") && stdout.contains("FlowMatchEulerDiscreteScheduler"), "{stdout}");
    assert_eq!(probe(&out.join("output_video.mp4")), "h264,96,64,yuv420p,24/1,9");

    let s1 = load(&out.join("stage1_embeddings.safetensors"));
    let names: Vec<&str> = s1.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    let l = s1["prompt_embeds"].dims[1];
    assert_eq!(s1["prompt_embeds_mask"].dims, vec![1, l]);
    assert_eq!(s1["prompt_embeds_2"].dims, vec![1, 256, 24]);
    for name in ["prompt_embeds_mask", "prompt_embeds_mask_2", "negative_prompt_embeds_mask", "negative_prompt_embeds_mask_2"] {
        assert!(s1[name].to_f32_vec().iter().all(|&v| v == 0.0 || v == 1.0), "{name} is 0/1");
    }
    // The prompt has quoted text, the (empty) negative prompt has none: ByT5 ran for one only.
    let ones = |n: &str| s1[n].to_f32_vec().iter().filter(|&&v| v == 1.0).count();
    assert!(ones("prompt_embeds_mask_2") > 0 && ones("negative_prompt_embeds_mask_2") == 0);
    assert!(s1["negative_prompt_embeds_2"].to_f32_vec().iter().all(|&v| v == 0.0));
    assert!(ones("prompt_embeds_mask") > 0 && ones("prompt_embeds_mask") < l as usize);

    assert_eq!(load(&out.join("stage2_latents.safetensors"))["latents"].dims, vec![1, 8, 3, 4, 6]);
    assert_eq!(load(&out.join("stage3_frames.safetensors"))["frames"].dims, vec![1, 9, 64, 96, 3]);
}

#[test]
fn hunyuanvideo15_refusals_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("exe");
    let out = tmp.path().join("run");
    let run = |extra: &[&str]| {
        let mut a = vec!["generate", "--model", "hunyuanvideo1.5-tiny", "--prompt", "p", "--output-dir", out.to_str().unwrap()];
        a.extend_from_slice(extra);
        failure(vidlower(&cache, &a))
    };
    let e = run(&["--frames", "10"]);
    assert!(e.contains("--frames 10") && e.contains("4n+1"), "{e}");
    let e = run(&["--height", "72"]);
    assert!(e.contains("--height 72") && e.contains("16"), "{e}");
    let e = run(&["--use-dynamic-cfg"]);
    assert!(e.contains("--use-dynamic-cfg"), "{e}");
    assert!(!out.exists(), "nothing was written");

    // A copy of the golden model directory, broken one way at a time; each refused before any work.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model");
    let dir = tmp.path().join("model");
    copy_dir(&golden, &dir);
    let generate = |extra: &[&str]| {
        let mut a = vec!["generate", "--model-dir", dir.to_str().unwrap(), "--prompt", "p", "--output-dir", out.to_str().unwrap()];
        a.extend_from_slice(&["--height", "64", "--width", "96", "--num-inference-steps", "1"]);
        a.extend_from_slice(if extra.is_empty() { &["--frames", "9"] } else { extra });
        failure(vidlower(&cache, &a))
    };
    let e = generate(&["--frames", "8"]);
    assert!(e.contains("--frames 8") && e.contains("4n+1"), "{e}");
    let guider = dir.join("guider/guider_config.json");
    let good_guider = std::fs::read(&guider).unwrap();
    std::fs::write(&guider, r#"{"_class_name": "AdaptiveProjectedGuidance", "guidance_scale": 6.0}"#).unwrap();
    let e = generate(&[]);
    assert!(e.contains("guider_config.json") && e.contains("AdaptiveProjectedGuidance") && e.contains("ClassifierFreeGuidance"), "{e}");
    std::fs::write(&guider, good_guider).unwrap();
    std::fs::rename(dir.join("text_encoder_2"), tmp.path().join("te2")).unwrap();
    let e = generate(&[]);
    assert!(e.contains("text_encoder_2/config.json"), "{e}");
    std::fs::rename(tmp.path().join("te2"), dir.join("text_encoder_2")).unwrap();
    std::fs::rename(dir.join("tokenizer/tokenizer.json"), tmp.path().join("tokenizer.json")).unwrap();
    let e = generate(&[]);
    assert!(e.contains("tokenizer/tokenizer.json") && e.contains("missing"), "{e}");
    assert!(!out.exists(), "nothing was written");

    // An image-to-video pipeline directory is refused with the reason.
    std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "HunyuanVideo15ImageToVideoPipeline"}"#).unwrap();
    let e = failure(vidlower(&cache, &["stage1", "--model-dir", dir.to_str().unwrap(), "--prompt", "p", "--output-dir", out.to_str().unwrap()]));
    assert!(e.contains("image-to-video"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
