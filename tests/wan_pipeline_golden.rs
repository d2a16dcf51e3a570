//! The stages against a 3-step diffusers `WanPipeline` run on the tiny golden model: stage 2
//! (given prompt embeddings and initial latents, CFG 5 and CFG 1) against `output_type="latent"`,
//! and stage 3 (VAE decode + frames + the uint8 video) against `output_type="np"`.

mod common;

use vidlower_passes::pipeline_options::PipelineOptions;
use std::path::{Path, PathBuf};
use vidlower_ir::DType;
use vidlower_runtime::safetensors_io;
use vidlower_frontends::family::{DenoiseKnobs, Embeddings, VideoSize};
use vidlower_runtime::stages::model::{ModelSpec, OpenedModel};
use vidlower_runtime::stages::stage2::{run_stage2, Stage2Settings};
use vidlower_runtime::stages::stage3::{run_stage3, Stage3Outputs};
use vidlower_runtime::stages::vae_decode::VaeDecodeSettings;
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::video::VideoFrames;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wan")
}

fn model() -> OpenedModel {
    OpenedModel::open_all(&ModelSpec::Dir(golden().join("model"))).unwrap()
}

const VIDEO: VideoSize = VideoSize { height: 32, width: 48, frames: 9 };

fn tensors() -> std::collections::BTreeMap<String, HostTensor> {
    safetensors_io::load(&golden().join("pipeline_3step.safetensors")).unwrap()
}

fn settings(guidance_scale: f64, latents_in: PathBuf) -> Stage2Settings {
    Stage2Settings {
        steps: 3,
        guidance_scale,
        seed: 0,
        video: VIDEO,
        knobs: DenoiseKnobs { flow_shift: Some(3.0), dynamic_cfg: false },
        dtype: DType::F32,
        warmup_steps: 0,
        latents_in: Some(latents_in),
        step_noise: None,
        scheduler_class: None,
        // The standard pipeline (K smoothing, exp2 softmax): it must still match diffusers.
        pipeline: PipelineOptions::default(),
    }
}

#[test]
fn stage2_matches_the_diffusers_pipeline_with_and_without_cfg() {
    let t = tensors();
    let dir = tempfile::tempdir().unwrap();
    let noise = dir.path().join("noise.safetensors");
    safetensors_io::save(&noise, &[("latents".into(), t["latents"].clone())]).unwrap();
    let client = common::cpu_client(1);
    let model = model();
    let embeddings: Embeddings = ["prompt_embeds", "negative_prompt_embeds"].iter().map(|k| (k.to_string(), t[*k].clone())).collect();
    for (g, key) in [(5.0, "latents_out"), (1.0, "latents_out_guidance1")] {
        let (latents, report) = run_stage2(&model, &client, None, &embeddings, &settings(g, noise.clone())).unwrap();
        assert_eq!(latents.dims, vec![1, 16, 3, 4, 6]);
        assert_eq!(report.steps.len(), 3);
        let err = common::max_rel_err(&latents.to_f64_vec(), &t[key].to_f64_vec());
        eprintln!("stage 2, guidance {g}: max relative error {err:.2e} against diffusers' {key}");
        // Three f32 transformer calls (1.1e-6 each against diffusers) through the UniPC updates.
        assert!(err < 1e-4, "guidance {g}: max relative error {err:e} against diffusers' {key}");
    }
    // The two runs differ: the comparison above can tell CFG from no CFG.
    assert!(common::max_rel_err(&t["latents_out"].to_f64_vec(), &t["latents_out_guidance1"].to_f64_vec()) > 0.1);
}

#[test]
fn stage3_matches_the_diffusers_decode_and_video() {
    let t = tensors();
    let model = model();
    let z = model.vae_input(&t["latents_out"], &VIDEO).unwrap();
    let err = common::max_rel_err(&z.to_f64_vec(), &t["vae_input"].to_f64_vec());
    assert!(err < 1e-6, "unscaled latents: {err:e}");

    let dir = tempfile::tempdir().unwrap();
    let (video, frames) = (dir.path().join("out.mp4"), dir.path().join("frames.safetensors"));
    let client = common::cpu_client(1);
    let (n, _) = run_stage3(
        &model,
        &client,
        None,
        &t["latents_out"],
        &VIDEO,
        &VaeDecodeSettings::untiled(DType::F32),
        &Stage3Outputs { video: &video, fps: 16, frames_file: Some(&frames) },
    ).unwrap();
    assert_eq!(n, 9);
    let ours = safetensors_io::load(&frames).unwrap().remove("frames").unwrap();
    assert_eq!(ours.dims, vec![1, 9, 32, 48, 3]);
    // Golden `decoded` is [1, 3, F, H, W]; ours is channels-last.
    let decoded = t["decoded"].to_f32_vec();
    let plane = 9 * 32 * 48;
    let want: Vec<f64> = (0..plane * 3).map(|i| decoded[(i % 3) * plane + i / 3] as f64).collect();
    let err = common::max_rel_err(&ours.to_f64_vec(), &want);
    eprintln!("stage 3: decoded frames max relative error {err:.2e} against diffusers");
    assert!(err < 1e-4, "decoded frames: max relative error {err:e}");

    // The bytes that go into the encoder equal diffusers' `video` ([0,1] floats) cast as export_to_video does.
    let bytes = VideoFrames::from_unit_range(&ours.to_f32_vec(), 9, 32, 48).unwrap().rgb;
    let want: Vec<u8> = t["video"].to_f32_vec().iter().map(|&v| (v * 255.0) as u8).collect();
    let off = bytes.iter().zip(&want).filter(|(a, b)| a != b).count();
    eprintln!("stage 3: {off} of {} video bytes differ from diffusers' export", bytes.len());
    // A value within ~1e-6 of a byte boundary can land on either side; allow a handful.
    assert!(off * 1000 < bytes.len(), "{off} of {} bytes differ from diffusers' video", bytes.len());
    assert!(std::fs::metadata(&video).unwrap().len() > 0);
}
