//! The generic stages on the HunyuanVideo-1.5 tiny golden model against 3-step diffusers
//! `HunyuanVideo15Pipeline` runs (tools/golden/make_hunyuanvideo15_pipeline_goldens.py), for a
//! prompt with quoted (glyph) text and one without: stage 1 (Qwen2.5-VL on the chat template,
//! cropped; ByT5 or zeros) against `encode_prompt`, stage 2 (given those embeddings and the initial
//! latents; flow-matching Euler with the pipeline's sigmas and the guider's CFG, cond and uncond in
//! one batch of 2) against `output_type="latent"`, and stage 3's decode against `vae.decode`.

mod common;

use std::path::{Path, PathBuf};
use vidlower_frontends::family::{Component, DenoiseKnobs, Embeddings, VideoSize};
use vidlower_ir::DType;
use vidlower_passes::pipeline_options::PipelineOptions;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::stages::model::{ModelSpec, OpenedModel};
use vidlower_runtime::stages::stage1::{run_stage1, Stage1Settings};
use vidlower_runtime::stages::stage2::{run_stage2, Stage2Settings};
use vidlower_runtime::stages::vae_decode::{VaeDecodeSettings, VaeDecoder};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

const CASES: [&str; 2] = ["glyph", "plain"];
const EMBEDDINGS: [&str; 8] = [
    "prompt_embeds",
    "prompt_embeds_mask",
    "prompt_embeds_2",
    "prompt_embeds_mask_2",
    "negative_prompt_embeds",
    "negative_prompt_embeds_mask",
    "negative_prompt_embeds_2",
    "negative_prompt_embeds_mask_2",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v")
}

fn golden(case: &str) -> (std::collections::BTreeMap<String, HostTensor>, serde_json::Value) {
    let t = safetensors_io::load(&dir().join(format!("pipeline_3step_{case}.safetensors"))).unwrap();
    let j = serde_json::from_str(&std::fs::read_to_string(dir().join(format!("pipeline_3step_{case}.json"))).unwrap()).unwrap();
    (t, j)
}

fn video(j: &serde_json::Value) -> VideoSize {
    let a = &j["pipeline_args"];
    VideoSize { height: a["height"].as_i64().unwrap(), width: a["width"].as_i64().unwrap(), frames: a["num_frames"].as_i64().unwrap() }
}

#[test]
fn stage1_matches_encode_prompt() {
    let client = common::cpu_client(1);
    let model = OpenedModel::open(&ModelSpec::Dir(dir().join("model")), &[Component::TextEncoder]).unwrap();
    let options = PipelineOptions::default();
    for case in CASES {
        let (t, j) = golden(case);
        let a = &j["pipeline_args"];
        let settings = Stage1Settings {
            prompt: a["prompt"].as_str().unwrap(),
            negative_prompt: a["negative_prompt"].as_str().unwrap(),
            max_sequence_length: 1000,
            dtype: DType::F32,
            pipeline: &options,
        };
        let (e, _) = run_stage1(&model, &client, None, &settings).unwrap();
        assert_eq!(e.keys().collect::<Vec<_>>().len(), 8, "{case}");
        for key in EMBEDDINGS {
            assert_eq!(e[key].dims, t[key].dims, "{case} {key}");
            let err = common::max_rel_err(&e[key].to_f64_vec(), &t[key].to_f64_vec());
            eprintln!("{case} stage 1 {key}: max rel err {err:.2e}");
            assert!(e[key].to_f64_vec().iter().all(|v| v.is_finite()), "{case} {key}: finite");
            assert!(err < 1e-5, "{case} {key}: {err:e}");
        }
    }
}

#[test]
fn stage2_matches_the_pipeline() {
    let client = common::cpu_client(1);
    let tmp = tempfile::tempdir().unwrap();
    let model = OpenedModel::open(&ModelSpec::Dir(dir().join("model")), &[Component::Transformer]).unwrap();
    for case in CASES {
        let (t, j) = golden(case);
        let latents_in = tmp.path().join(format!("{case}.safetensors"));
        safetensors_io::save(&latents_in, &[("latents".into(), t["latents"].clone())]).unwrap();
        let embeddings: Embeddings = EMBEDDINGS.iter().map(|k| (k.to_string(), t[*k].clone())).collect();
        let s = Stage2Settings {
            steps: 3,
            guidance_scale: j["guidance_scale"].as_f64().unwrap(),
            seed: 0,
            video: video(&j),
            knobs: DenoiseKnobs::default(),
            dtype: DType::F32,
            warmup_steps: 0,
            latents_in: Some(latents_in),
            step_noise: None,
            scheduler_class: None,
            pipeline: PipelineOptions::default(),
        };
        let (latents, report) = run_stage2(&model, &client, None, &embeddings, &s).unwrap();
        assert_eq!(latents.dims, t["latents_out"].dims, "{case}");
        let err = common::max_rel_err(&latents.to_f64_vec(), &t["latents_out"].to_f64_vec());
        eprintln!("{case} stage 2 ({}): max rel err {err:.2e}", report.scheduler);
        assert!(latents.to_f64_vec().iter().all(|v| v.is_finite()));
        assert!(err < 1e-4, "{case} latents_out: {err:e}");
        // Guidance matters: the result is not the latents the unguided prediction gives.
        assert!(common::max_rel_err(&t["latents_out"].to_f64_vec(), &t["latents"].to_f64_vec()) > 1e-2);
    }
}

#[test]
fn stage3_decode_matches_the_pipeline() {
    let client = common::cpu_client(1);
    let (t, j) = golden("glyph");
    let model = OpenedModel::open(&ModelSpec::Dir(dir().join("model")), &[Component::VaeDecoder]).unwrap();
    let z = model.vae_input(&t["latents_out"], &video(&j)).unwrap();
    let scale = j["vae_scaling_factor"].as_f64().unwrap();
    let want: Vec<f64> = t["latents_out"].to_f64_vec().iter().map(|v| (*v as f32 / scale as f32) as f64).collect();
    assert!(common::max_rel_err(&z.to_f64_vec(), &want) < 1e-6, "latents / scaling_factor");
    let graphs = model.vae_decoder().unwrap();
    let weights = WeightStore::open(&dir().join("model/vae")).unwrap();
    let shape = vidlower_frontends::nn::vae_decoder::VaeDecodeShape { batch: 1, height: z.dims[3], width: z.dims[4] };
    let mut vae = VaeDecoder::new(&client, None, graphs.as_ref(), shape, z.dims[2], &weights, &VaeDecodeSettings::untiled(DType::F32)).unwrap();
    let got = vae.decode(&z).unwrap();
    assert_eq!(got.dims, t["decoded"].dims, "4T-3 frames");
    let err = common::max_rel_err(&got.to_f64_vec(), &t["decoded"].to_f64_vec());
    eprintln!("stage 3 decode: max rel err {err:.2e}");
    assert!(err < 1e-4, "decoded: {err:e}");
}
