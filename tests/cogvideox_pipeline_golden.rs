//! The generic stages on the CogVideoX tiny golden models against 3-step diffusers
//! `CogVideoXPipeline` runs (tools/golden/make_cogvideox_pipeline_goldens.py): stage 1 (T5,
//! 226 tokens) against the pipeline's embeddings, stage 2 (given those embeddings and the initial
//! latents; DDIM for 2b, DPM for 5b and 1.5 with diffusers' per-step noise replayed; static and
//! dynamic CFG) against `output_type="latent"`, and stage 3's decode (1.5's padding frame
//! dropped, unscaled, permuted) against the pipeline's decoded frames.

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

const VARIANTS: [&str; 3] = ["cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b"];

fn dir(variant: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cogvideox").join(variant)
}

fn golden(variant: &str) -> (std::collections::BTreeMap<String, HostTensor>, serde_json::Value) {
    let t = safetensors_io::load(&dir(variant).join("pipeline_3step.safetensors")).unwrap();
    let j = serde_json::from_str(&std::fs::read_to_string(dir(variant).join("pipeline_3step.json")).unwrap()).unwrap();
    (t, j)
}

fn video(j: &serde_json::Value) -> VideoSize {
    let a = &j["pipeline_args"];
    VideoSize { height: a["height"].as_i64().unwrap(), width: a["width"].as_i64().unwrap(), frames: a["num_frames"].as_i64().unwrap() }
}

#[test]
fn stage1_matches_encode_prompt() {
    let client = common::cpu_client(1);
    let (t, j) = golden("cogvideox-2b");
    let model = OpenedModel::open(&ModelSpec::Dir(dir("cogvideox-2b").join("model")), &[Component::TextEncoder]).unwrap();
    let a = &j["pipeline_args"];
    let options = PipelineOptions::default();
    let settings = Stage1Settings {
        prompt: a["prompt"].as_str().unwrap(),
        negative_prompt: a["negative_prompt"].as_str().unwrap(),
        max_sequence_length: a["max_sequence_length"].as_u64().unwrap() as usize,
        dtype: DType::F32,
        pipeline: &options,
    };
    let (e, _) = run_stage1(&model, &client, None, &settings).unwrap();
    for key in ["prompt_embeds", "negative_prompt_embeds"] {
        assert_eq!(e[key].dims, t[key].dims, "{key}");
        let err = common::max_rel_err(&e[key].to_f64_vec(), &t[key].to_f64_vec());
        eprintln!("stage 1 {key}: max rel err {err:.2e}");
        assert!(err < 1e-5, "{key}: {err:e}");
    }
}

#[test]
fn stage2_matches_the_pipeline_for_every_variant_and_dynamic_cfg() {
    let client = common::cpu_client(1);
    let tmp = tempfile::tempdir().unwrap();
    for variant in VARIANTS {
        let (t, j) = golden(variant);
        let model = OpenedModel::open(&ModelSpec::Dir(dir(variant).join("model")), &[Component::Transformer]).unwrap();
        let latents_in = tmp.path().join(format!("{variant}.safetensors"));
        safetensors_io::save(&latents_in, &[("latents".into(), t["latents"].clone())]).unwrap();
        let embeddings: Embeddings = ["prompt_embeds", "negative_prompt_embeds"].iter().map(|k| (k.to_string(), t[*k].clone())).collect();
        let noise: Option<Vec<Vec<f32>>> = t.contains_key("noise_0").then(|| (0..3).map(|i| t[&format!("noise_{i}")].to_f32_vec()).collect());
        for (dynamic, key) in [(false, "latents_out"), (true, "latents_out_dynamic_cfg")] {
            let s = Stage2Settings {
                steps: 3,
                guidance_scale: 6.0,
                seed: 0,
                video: video(&j),
                knobs: DenoiseKnobs { flow_shift: None, dynamic_cfg: dynamic },
                dtype: DType::F32,
                warmup_steps: 0,
                latents_in: Some(latents_in.clone()),
                step_noise: noise.clone(),
                scheduler_class: None,
                pipeline: PipelineOptions::default(),
            };
            let (latents, report) = run_stage2(&model, &client, None, &embeddings, &s).unwrap();
            assert_eq!(latents.dims, t[key].dims, "{variant}");
            let err = common::max_rel_err(&latents.to_f64_vec(), &t[key].to_f64_vec());
            eprintln!("{variant} stage 2 ({}; dynamic cfg {dynamic}): max rel err {err:.2e}", report.scheduler);
            assert!(err < 1e-4, "{variant} {key}: {err:e}");
        }
        // The dynamic schedule is visible: the two runs differ.
        assert!(common::max_rel_err(&t["latents_out"].to_f64_vec(), &t["latents_out_dynamic_cfg"].to_f64_vec()) > 1e-2);
    }
}

#[test]
fn stage3_decode_matches_the_pipeline() {
    let client = common::cpu_client(1);
    for variant in VARIANTS {
        let (t, j) = golden(variant);
        let model = OpenedModel::open(&ModelSpec::Dir(dir(variant).join("model")), &[Component::VaeDecoder, Component::Transformer]).unwrap();
        let z = model.vae_input(&t["latents_out"], &video(&j)).unwrap();
        let err = common::max_rel_err(&z.to_f64_vec(), &t["vae_input"].to_f64_vec());
        assert_eq!(z.dims, t["vae_input"].dims, "{variant}");
        assert!(err < 1e-6, "{variant} vae input: {err:e}");
        let graphs = model.vae_decoder().unwrap();
        let weights = WeightStore::open(&dir(variant).join("model/vae")).unwrap();
        let shape = vidlower_frontends::nn::vae_decoder::VaeDecodeShape { batch: 1, height: z.dims[3], width: z.dims[4] };
        let mut vae = VaeDecoder::new(&client, None, graphs.as_ref(), shape, z.dims[2], &weights, &VaeDecodeSettings::untiled(DType::F32)).unwrap();
        let got = vae.decode(&z).unwrap();
        assert_eq!(got.dims, t["decoded"].dims, "{variant}: 4T-3 frames");
        let err = common::max_rel_err(&got.to_f64_vec(), &t["decoded"].to_f64_vec());
        eprintln!("{variant} stage 3 decode: max rel err {err:.2e}");
        assert!(err < 1e-4, "{variant} decoded: {err:e}");
    }
}
