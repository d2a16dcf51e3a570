//! `vidlower generate` on the CogVideoX presets as a user runs it, through the same generic
//! stages as Wan: an mp4 of the requested frames and size, stage files with diffusers' names and
//! the pipeline's layouts ([B, F, C, H, W] latents, 1.5's padded latent frames), and the
//! CogVideoX-specific refusals before any work.

#[path = "common/cli.rs"]
mod cli;

use cli::{failure, ok, probe, vidlower};
use std::path::Path;

fn dims(file: &Path, key: &str) -> Vec<i64> {
    vidlower_runtime::safetensors_io::load(file).unwrap().remove(key).unwrap().dims
}

#[test]
fn cogvideox15_tiny_generates_nine_frames_at_64x48() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("exe"), tmp.path().join("run"));
    let out_s = out.to_str().unwrap();
    let args = ["generate", "--model", "cogvideox1.5-tiny", "--prompt", "a panda playing guitar", "--height", "48", "--width", "64"];
    let stdout = ok(vidlower(&cache, &[&args[..], &["--frames", "9", "--output-dir", out_s, "--save-frames"]].concat()));
    assert!(stdout.contains("cogvideox") && stdout.contains("CogVideoXDPMScheduler"), "{stdout}");
    assert_eq!(probe(&out.join("output_video.mp4")), "h264,64,48,yuv420p,16/1,9");
    let stage1 = out.join("stage1_embeddings.safetensors");
    assert_eq!(dims(&stage1, "prompt_embeds"), vec![1, 226, 32]);
    assert_eq!(dims(&stage1, "negative_prompt_embeds"), vec![1, 226, 32]);
    // 9 frames -> 3 latent frames, padded to 4 for patch_size_t 2; [B, F, C, H, W].
    assert_eq!(dims(&out.join("stage2_latents.safetensors"), "latents"), vec![1, 4, 8, 6, 8]);
    assert_eq!(dims(&out.join("stage3_frames.safetensors"), "frames"), vec![1, 9, 48, 64, 3]);
}

#[test]
fn cogvideox_tiny_stages_and_dynamic_cfg() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, out) = (tmp.path().join("exe"), tmp.path().join("run"));
    let out_s = out.to_str().unwrap();
    ok(vidlower(&cache, &["stage1", "--model", "cogvideox-tiny", "--prompt", "a boat", "--output-dir", out_s]));
    let file = out.join("stage2_latents.safetensors");
    ok(vidlower(&cache, &["stage2", "--input-dir", out_s, "--num-inference-steps", "2"]));
    assert_eq!(dims(&file, "latents"), vec![1, 3, 8, 6, 8]);
    let plain = std::fs::read(&file).unwrap();
    ok(vidlower(&cache, &["stage2", "--input-dir", out_s, "--num-inference-steps", "2", "--use_dynamic_cfg"]));
    assert_ne!(plain, std::fs::read(&file).unwrap(), "the dynamic guidance schedule changes the latents");
    // The authors' choice of scheduler class over the config's, keeping its values.
    let ddim = ok(vidlower(&cache, &["stage2", "--input-dir", out_s, "--num-inference-steps", "2", "--scheduler", "CogVideoXDDIMScheduler"]));
    assert!(ddim.contains("CogVideoXDDIMScheduler"), "{ddim}");
    let e = failure(vidlower(&cache, &["stage2", "--input-dir", out_s, "--scheduler", "EulerScheduler"]));
    assert!(e.contains("--scheduler EulerScheduler") && e.contains("CogVideoXDPMScheduler"), "{e}");
    let s3 = ok(vidlower(&cache, &["stage3", "--input-dir", out_s]));
    assert!(s3.contains("9 frames at 8 fps"), "{s3}");
}

#[test]
fn cogvideox_refusals_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("exe");
    let base = ["generate", "--model", "cogvideox-tiny", "--prompt", "p", "--output-dir"];
    let out = tmp.path().join("run");
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.push(out.to_str().unwrap());
        a.extend_from_slice(extra);
        failure(vidlower(&cache, &a))
    };
    let e = run(&["--frames", "10"]);
    assert!(e.contains("--frames 10") && e.contains("4n+1"), "{e}");
    let e = run(&["--flow-shift", "3"]);
    assert!(e.contains("--flow-shift"), "{e}");
    assert!(!out.exists(), "nothing was written");

    // A directory without a tokenizer; an image-to-video pipeline; an unknown scheduler class.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cogvideox/cogvideox-5b/model");
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(dir.join("text_encoder")).unwrap();
    std::fs::copy(golden.join("model_index.json"), dir.join("model_index.json")).unwrap();
    std::fs::copy(golden.join("text_encoder/config.json"), dir.join("text_encoder/config.json")).unwrap();
    let e = failure(vidlower(&cache, &["stage1", "--model-dir", dir.to_str().unwrap(), "--prompt", "p", "--output-dir", out.to_str().unwrap()]));
    assert!(e.contains("tokenizer") && e.contains("spiece.model"), "{e}");
    std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "CogVideoXImageToVideoPipeline"}"#).unwrap();
    let e = failure(vidlower(&cache, &["stage1", "--model-dir", dir.to_str().unwrap(), "--prompt", "p"]));
    assert!(e.contains("image-to-video"), "{e}");
}

#[test]
fn a_transformer_config_that_does_not_match_its_weights_is_refused_before_stage_1() {
    let tmp = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cogvideox/cogvideox-5b/model");
    let dir = tmp.path().join("model");
    for entry in cli::files_under(&golden) {
        let to = dir.join(entry.strip_prefix(&golden).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    // Three layers in the config, two in the checkpoint.
    let cfg = dir.join("transformer/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\"num_layers\": 2", "\"num_layers\": 3");
    std::fs::write(&cfg, text).unwrap();
    let out = tmp.path().join("run");
    let args = ["generate", "--model-dir", dir.to_str().unwrap(), "--prompt", "p", "--height", "32", "--width", "48", "--frames", "9"];
    let e = failure(vidlower(&tmp.path().join("exe"), &[&args[..], &["--output-dir", out.to_str().unwrap()]].concat()));
    assert!(e.contains("transformer_blocks.2") && e.contains("missing"), "{e}");
    assert!(!out.exists(), "stage 1 did not run");
}

