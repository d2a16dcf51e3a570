//! `--lora` against diffusers 0.42.1: each family's tiny golden transformer run on the CPU plugin in
//! f32 with one LoRA (diffusers format, alpha from its metadata) and with two (plus Wan's original
//! key style with `.alpha` keys, or diffusers' older `lora.down/up` spelling), merged at upload,
//! against diffusers' `load_lora_adapter` + `set_adapters` + `fuse_lora` output
//! (`tools/golden/make_lora_goldens.py`). Then the refusals: a key that targets no weight, factors of
//! the wrong shape, each named with the expected shape, and nothing merged; and the CLI: `stage2
//! --lora` hits the executable cache entry of a run without, and says what it merged.

mod common;
#[path = "common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use vidlower_frontends::family::Component;
use vidlower_ir::DType;
use vidlower_runtime::lora::LoraSpec;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::stages::compiled::{passes_for, prepare, sharding_format, use_stored_names};
use vidlower_runtime::stages::model::{ModelSpec, OpenedModel};
use vidlower_runtime::tensor::HostTensor;
use vidlower_passes::pipeline_options::PipelineOptions;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// (family folder, model directory) of each family's tiny golden model.
fn families() -> [(&'static str, PathBuf); 3] {
    [
        ("wan", golden().join("wan/model")),
        ("cogvideox", golden().join("cogvideox/cogvideox-5b/model")),
        ("hunyuanvideo15", golden().join("hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model")),
    ]
}

fn spec(family: &str, file: &str, scale: f64) -> LoraSpec {
    LoraSpec { path: golden().join(family).join("lora").join(file), scale }
}

/// Our transformer's `sample` on the golden inputs, with `loras` merged, in f32.
fn run(client: &vidlower_runtime::pjrt::Client, model_dir: &Path, family: &str, loras: &[LoraSpec]) -> (Vec<f64>, String) {
    let mut model = OpenedModel::open(&ModelSpec::Dir(model_dir.into()), &[Component::Transformer]).unwrap();
    model.set_lora(loras).unwrap();
    let io_path = golden().join(family).join("lora/io.safetensors");
    let io = safetensors_io::load(&io_path).unwrap();
    let (sizes, inputs, _) = model.checked_inputs(Component::Transformer, io, DType::F32, &io_path.display().to_string()).unwrap();
    let weights = model.weights(Component::Transformer).unwrap();
    let mut graph = model.graphs(Component::Transformer, &sizes, DType::F32).unwrap().remove(0).graph;
    use_stored_names(&mut graph, &weights, &|name| model.weight_aliases(Component::Transformer, name));
    let options = PipelineOptions::default();
    let passes = passes_for(&options, model.model.as_ref(), Component::Transformer);
    let (program, _) = prepare("transformer", graph, passes, sharding_format(&options), client, None, &weights).unwrap();
    let out = program.run(&inputs).unwrap().remove(0).1;
    let summary = model.lora.as_ref().map(|l| l.describe()).unwrap_or_default();
    (out.to_f64_vec(), summary)
}

#[test]
fn merged_loras_match_diffusers_fuse_lora() {
    let client = common::cpu_client(1);
    let mut report = Vec::new();
    for (family, dir) in families() {
        let io = safetensors_io::load(&golden().join(family).join("lora/io.safetensors")).unwrap();
        let want = |k: &str| io[k].to_f64_vec();
        let cases = [
            ("no LoRA", vec![], "sample"),
            ("lora_a x0.7", vec![spec(family, "lora_a.safetensors", 0.7)], "sample_one"),
            ("lora_a x0.7 + lora_b x1.3", vec![spec(family, "lora_a.safetensors", 0.7), spec(family, "lora_b.safetensors", 1.3)], "sample_two"),
        ];
        for (what, loras, key) in cases {
            let (got, summary) = run(&client, &dir, family, &loras);
            let err = common::max_rel_err(&got, &want(key));
            // How far the LoRA moves the output: the error must be far below it.
            let moved = common::max_rel_err(&want(key), &want("sample"));
            report.push(format!("{family} {what}: max rel err {err:.2e} (the LoRAs move the output by {moved:.2e}) {summary}"));
            // The plain transformer goldens measure ~1e-6 in f32; merging adds one f32 rounding of W.
            assert!(err < 2e-5, "{family} {what}: max relative error {err:e} against diffusers' fused model");
            if !loras.is_empty() {
                assert!(moved > 1e-2, "{family} {what}: the LoRA barely changes the output ({moved:e})");
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// A LoRA file of factor tensors (f32).
fn write_lora(path: &Path, tensors: &[(&str, Vec<i64>)]) {
    let list: Vec<(String, HostTensor)> = tensors
        .iter()
        .map(|(k, dims)| {
            let n: i64 = dims.iter().product();
            (k.to_string(), HostTensor::from_f32(dims.clone(), &vec![0.01; n as usize]).unwrap())
        })
        .collect();
    safetensors_io::save(path, &list).unwrap();
}

fn wan_model() -> OpenedModel {
    OpenedModel::open(&ModelSpec::Dir(golden().join("wan/model")), &[Component::Transformer]).unwrap()
}

/// The refused `set_lora`'s message; the model keeps no LoRA and loads plain weights.
fn refused(tensors: &[(&str, Vec<i64>)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write_lora(&path, tensors);
    let mut model = wan_model();
    let e = model.set_lora(&[LoraSpec { path: path.clone(), scale: 1.0 }]).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(model.lora.is_none(), "a refused LoRA stays attached");
    let weights = model.weights(Component::Transformer).unwrap();
    assert!(weights.lora().is_none());
    e
}

#[test]
fn refusals_name_the_key_and_the_expected_shape_and_merge_nothing() {
    // The tiny Wan: inner dim 24.
    let w = wan_model().weights(Component::Transformer).unwrap();
    assert_eq!(w.shape_of("blocks.0.attn1.to_q.weight"), Some(&[24, 24][..]));
    let good = ("transformer.blocks.0.attn1.to_q.lora_A.weight", vec![2, 24]);
    let good_b = ("transformer.blocks.0.attn1.to_q.lora_B.weight", vec![24, 2]);

    // A key that targets no weight, beside a good module: refused as a whole.
    let e = refused(&[good.clone(), good_b.clone(), ("transformer.blocks.0.attn1.to_x.lora_A.weight", vec![2, 24]), ("transformer.blocks.0.attn1.to_x.lora_B.weight", vec![24, 2])]);
    assert!(e.contains("`transformer.blocks.0.attn1.to_x.lora_A.weight`") && e.contains("`blocks.0.attn1.to_x.weight`") && e.contains("no weight named"), "{e}");
    assert!(e.contains("nothing was merged"), "{e}");
    // `to_out` without its `.0`: the hint names the module.
    let e = refused(&[("transformer.blocks.0.attn1.to_out.lora_A.weight", vec![2, 24]), ("transformer.blocks.0.attn1.to_out.lora_B.weight", vec![24, 2])]);
    assert!(e.contains("did you mean `blocks.0.attn1.to_out.0`"), "{e}");
    // A of the wrong input width: the expected [r, in].
    let e = refused(&[good_b.clone(), ("transformer.blocks.0.attn1.to_q.lora_A.weight", vec![2, 12])]);
    assert!(e.contains("`transformer.blocks.0.attn1.to_q.lora_A.weight` is [2, 12], expected [2, 24] to fit `blocks.0.attn1.to_q.weight` [24, 24]"), "{e}");
    // B of another rank than A: the expected [out, r].
    let e = refused(&[good.clone(), ("transformer.blocks.0.attn1.to_q.lora_B.weight", vec![24, 3])]);
    assert!(e.contains("`transformer.blocks.0.attn1.to_q.lora_B.weight` is [24, 3], expected [24, 2]"), "{e}");
    // One factor only; a bias diff; a text-encoder LoRA.
    let e = refused(std::slice::from_ref(&good));
    assert!(e.contains("only one of its two factors"), "{e}");
    let e = refused(&[good.clone(), good_b.clone(), ("transformer.blocks.0.attn1.to_q.lora_B.bias", vec![24])]);
    assert!(e.contains("lora_B.bias") && e.contains("not supported"), "{e}");
    let e = refused(&[("text_encoder.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight", vec![2, 24])]);
    assert!(e.contains("transformer only"), "{e}");
    // A conv weight: named, not merged.
    let e = refused(&[("transformer.patch_embedding.lora_A.weight", vec![2, 24]), ("transformer.patch_embedding.lora_B.weight", vec![24, 2])]);
    assert!(e.contains("not a linear"), "{e}");
}

#[test]
fn merged_weight_is_w_plus_scaled_product_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.safetensors");
    // A = 0.01 everywhere ([2, 24]), B = 0.01 ([24, 2]), alpha 4 -> alpha / r = 2; scale 0.5.
    let mut list: Vec<(String, HostTensor)> = vec![
        ("diffusion_model.blocks.1.self_attn.q.lora_down.weight".into(), HostTensor::from_f32(vec![2, 24], &[0.01; 48]).unwrap()),
        ("diffusion_model.blocks.1.self_attn.q.lora_up.weight".into(), HostTensor::from_f32(vec![24, 2], &[0.01; 48]).unwrap()),
    ];
    list.push(("diffusion_model.blocks.1.self_attn.q.alpha".into(), HostTensor::from_f32(vec![], &[4.0]).unwrap()));
    safetensors_io::save(&path, &list).unwrap();
    let mut model = wan_model();
    let plain = model.weights(Component::Transformer).unwrap();
    model.set_lora(&[format!("{}:0.5", path.display()).parse().unwrap()]).unwrap();
    let merged = model.weights(Component::Transformer).unwrap();
    let ty = vidlower_ir::TensorType::new(DType::F32, vec![24, 24]);
    let (a, b) = (plain.load("blocks.1.attn1.to_q.weight", &ty).unwrap().to_f32_vec(), merged.load("blocks.1.attn1.to_q.weight", &ty).unwrap().to_f32_vec());
    // Each entry: 0.5 * 2 * (2 * 0.01 * 0.01) = 2e-4.
    for (x, y) in a.iter().zip(&b) {
        assert!((y - x - 2e-4).abs() < 1e-7, "{x} -> {y}");
    }
    // Other weights are untouched; bf16 is the merged f32 cast once.
    let other = "blocks.0.attn1.to_q.weight";
    assert_eq!(plain.load(other, &ty).unwrap(), merged.load(other, &ty).unwrap());
    let bf = vidlower_ir::TensorType::new(DType::BF16, vec![24, 24]);
    assert_eq!(merged.load("blocks.1.attn1.to_q.weight", &bf).unwrap(), HostTensor::from_f32(vec![24, 24], &b).unwrap().convert(DType::BF16));
    let summary = model.lora.as_ref().unwrap().describe();
    assert_eq!(summary, "one.safetensors x0.5 (rank 2, alpha/r 2): 1 weights");
}

/// The tiny Wan preset's `blocks.0.attn1.to_q.weight` shape, for a LoRA that fits it.
fn preset_q_shape() -> Vec<i64> {
    let model = OpenedModel::open(&ModelSpec::Preset("wan2.1-tiny".into()), &[Component::Transformer]).unwrap();
    model.weights(Component::Transformer).unwrap().shape_of("blocks.0.attn1.to_q.weight").unwrap().to_vec()
}

#[test]
fn stage2_with_lora_hits_the_same_executable_and_says_what_it_merged() {
    use cli::{failure, ok, vidlower};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    ok(vidlower(&cache, &["stage1", "--model", "wan2.1-tiny", "--prompt", "a lighthouse", "--output-dir", d]));
    let shape = preset_q_shape();
    let lora = tmp.path().join("style.safetensors");
    let (out, inp) = (shape[0], shape[1]);
    write_lora(&lora, &[("transformer.blocks.0.attn1.to_q.lora_A.weight", vec![4, inp]), ("transformer.blocks.0.attn1.to_q.lora_B.weight", vec![out, 4])]);
    let stage2 = ["stage2", "--input-dir", d, "--num-inference-steps", "2", "--dtype", "f32"];
    let plain = ok(vidlower(&cache, &stage2));
    assert!(plain.contains("transformer: passes"), "{plain}");
    // The executables cached so far (stage 2's memory check compiles through the cache first, so
    // the summary of either run says "cache hit"; the entries say whether the LoRA run added one).
    let entries = || cli::files_under(&cache).len();
    let cached = entries();
    assert!(cached > 0, "nothing cached in {}", cache.display());
    let latents = |p: &Path| safetensors_io::load(&p.join("stage2_latents.safetensors")).unwrap().remove("latents").unwrap();
    let before = latents(&dir);
    let spec = format!("{}:0.8", lora.display());
    let with = ok(vidlower(&cache, &[&stage2[..], &["--lora", &spec]].concat()));
    assert!(with.contains("cache hit") && entries() == cached, "the LoRA run recompiled:\n{with}");
    assert!(with.contains("stage 2: lora: merged style.safetensors x0.8 (rank 4, alpha/r 1): 1 weights"), "{with}");
    assert_ne!(before, latents(&dir), "the LoRA changed nothing");
    let config = std::fs::read_to_string(dir.join("generation_config.json")).unwrap();
    assert!(config.contains("style.safetensors x0.8 sha256"), "{config}");

    // A bad key is refused before anything is compiled, naming it.
    let bad = tmp.path().join("bad.safetensors");
    write_lora(&bad, &[("transformer.blocks.0.attn1.to_z.lora_A.weight", vec![4, inp]), ("transformer.blocks.0.attn1.to_z.lora_B.weight", vec![out, 4])]);
    let e = failure(vidlower(&cache, &[&stage2[..], &["--lora", bad.to_str().unwrap()]].concat()));
    assert!(e.contains("`transformer.blocks.0.attn1.to_z.lora_A.weight`") && e.contains("nothing was merged"), "{e}");
    assert!(!e.contains("compil"), "{e}");
}

