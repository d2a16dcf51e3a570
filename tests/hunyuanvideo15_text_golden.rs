//! HunyuanVideo-1.5's text side against transformers 5.23.0 / diffusers 0.42.1 (goldens from
//! `tools/golden/make_hunyuanvideo15_text_goldens.py`: a tiny byte-level BPE Qwen2 tokenizer with
//! Qwen2.5-VL's chat template, a tiny random `Qwen2_5_VLTextModel` and a tiny random ByT5
//! `T5EncoderModel` in `tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model`): both
//! tokenizers exactly, the glyph-text extraction exactly, the Qwen text model per hidden-state
//! entry (right- and left-padded rows) and ByT5 at f32 on the CPU plugin, bf16 loosely,
//! `HunyuanVideo15Pipeline.encode_prompt` from these pieces, and the Qwen2.5-VL-7B graph built
//! at the pipeline's 1108 tokens.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use vidlower_frontends::config::read_json;
use vidlower_frontends::hunyuanvideo15::prompt::{self, MllmLengths};
use vidlower_frontends::nn::byt5_tokenizer;
use vidlower_frontends::nn::qwen2_5_vl_text::{inv_freq, text_encoder_with, Qwen2_5VlTextConfig, Qwen2_5VlTextOptions};
use vidlower_frontends::nn::qwen2_tokenizer::Qwen2Tokenizer;
use vidlower_frontends::nn::t5_encoder::{t5_encoder, weight_aliases, T5Config, T5EncoderOptions, T5Variant};
use vidlower_ir::{DType, Graph};
use vidlower_runtime::program::{ParamKind, Signature};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

/// f32 tolerance, as max |ours - torch| / (1 + |torch|): both sides compute in f32 and differ in
/// summation order and transcendental ulps only.
const F32_TOL: f64 = 2e-5;
/// bf16 against the f32 reference (2 layers of Qwen, 2 of ByT5). torch's own bf16 runs of these
/// checkpoints give 4.2e-2 (Qwen hidden_states[-3]) and 2.1e-2 (ByT5) on the same metric
/// (text_goldens.json); ours 4.3e-2 and 2.4e-2.
const BF16_TOL: f64 = 6e-2;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hunyuanvideo15")
}

fn model() -> PathBuf {
    golden().join("hunyuanvideo1.5-480p-t2v/model")
}

fn text(name: &str) -> PathBuf {
    golden().join("text").join(name)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn i64s(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().expect("a list").iter().map(|x| x.as_i64().expect("an integer")).collect()
}

fn io(name: &str) -> std::collections::BTreeMap<String, HostTensor> {
    vidlower_runtime::safetensors_io::load(&text(name)).unwrap()
}

fn qwen_config() -> Qwen2_5VlTextConfig {
    read_json(&model().join("text_encoder/config.json")).unwrap()
}

fn byt5_config() -> T5Config {
    read_json(&model().join("text_encoder_2/config.json")).unwrap()
}

#[test]
fn system_message_is_the_pipelines() {
    let meta = json(&text("text_goldens.json"));
    assert_eq!(prompt::SYSTEM_MESSAGE, meta["system_message"].as_str().unwrap());
}

#[test]
fn qwen_tokenizer_and_chat_template_match_transformers() {
    let cases = json(&text("qwen_tokenizer_cases.json"));
    let cases = cases.as_array().unwrap();
    // The pipeline folder (chat_template.jinja, as transformers 5 saves it) and the built-in tiny
    // folder (the template inside tokenizer_config.json).
    let tiny = tempfile::tempdir().unwrap();
    for (path, bytes) in vidlower_frontends::hunyuanvideo15::tiny_tokenizer::FILES {
        let p = tiny.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    for dir in [model().join("tokenizer"), tiny.path().join("tokenizer")] {
        let tok = Qwen2Tokenizer::from_dir(&dir).unwrap();
        eprintln!("{}: template from {}", dir.display(), tok.template().path().display());
        assert_eq!(tok.vocab_size(), vidlower_frontends::hunyuanvideo15::tiny_tokenizer::VOCAB_SIZE);
        assert!(tok.vocab_size() as i64 <= qwen_config().vocab_size);
        for case in cases {
            let text = case["prompt"].as_str().unwrap();
            let lengths = MllmLengths { max_length: case["tokenizer_max_length"].as_u64().unwrap() as usize, crop_start: 108 };
            let chat = prompt::format_text_input(text, prompt::SYSTEM_MESSAGE);
            assert_eq!(tok.render(&chat, true).unwrap(), case["rendered"].as_str().unwrap(), "rendered chat of {text:?}");
            let (ids, mask) = prompt::mllm_tokens(&tok, text, lengths).unwrap();
            assert_eq!(ids, i64s(&case["input_ids"]), "input_ids of {text:?} ({lengths:?})");
            assert_eq!(mask, i64s(&case["attention_mask"]), "attention_mask of {text:?}");
        }
    }
    let long = cases.iter().find(|c| c["real_tokens"].as_u64() == Some(1108)).expect("a truncated case");
    assert!(!i64s(&long["attention_mask"]).contains(&0));
    eprintln!("{} Qwen tokenizer cases exact, from both folders", cases.len());
}

#[test]
fn byt5_tokenizer_and_glyph_texts_match_transformers() {
    let meta = json(&text("byt5_tokenizer_cases.json"));
    let cases = meta["tokenizer"].as_array().unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let max_length = case["max_length"].as_u64().unwrap() as usize;
        let (ids, mask) = byt5_tokenizer::encode(text, max_length).unwrap();
        assert_eq!(ids, i64s(&case["input_ids"]), "ByT5 ids of {text:?} (max_length {max_length})");
        assert_eq!(mask, i64s(&case["attention_mask"]), "ByT5 mask of {text:?}");
    }
    let glyphs = meta["glyph_texts"].as_array().unwrap();
    for g in glyphs {
        let p = g["prompt"].as_str().unwrap();
        assert_eq!(prompt::extract_glyph_texts(p).as_deref(), g["glyph_text"].as_str(), "glyph text of {p:?}");
    }
    eprintln!("{} ByT5 cases and {} glyph extractions exact", cases.len(), glyphs.len());
    assert_eq!(byt5_config().vocab_size, byt5_tokenizer::VOCAB_SIZE);
}

/// The checkpoint's tensors for `graph`'s weights (found under a tied alias too); returns them and
/// the checkpoint names the graph does not use.
fn load_weights(graph: &Graph, dir: &Path) -> (HashMap<String, HostTensor>, BTreeSet<String>) {
    let store = WeightStore::open(dir).unwrap();
    let weights: HashMap<String, HostTensor> = Signature::of(graph)
        .params
        .iter()
        .filter(|(_, kind, _)| *kind == ParamKind::Weight)
        .map(|(name, _, ty)| {
            let stored = std::iter::once(name.as_str()).chain(weight_aliases(name).iter().copied()).find(|n| store.contains(n));
            let stored = stored.unwrap_or_else(|| panic!("{name} is not in {}", dir.display()));
            (name.clone(), store.load(stored, ty).unwrap())
        })
        .collect();
    let unused = store
        .names()
        .filter(|n| !weights.contains_key(*n) && !weight_aliases(n).iter().any(|a| weights.contains_key(*a)))
        .map(str::to_string)
        .collect();
    (weights, unused)
}

fn run(graph: Graph, dir: &Path, inputs: HashMap<String, HostTensor>) -> (HashMap<String, HostTensor>, BTreeSet<String>) {
    let (weights, unused) = load_weights(&graph, dir);
    let client = common::cpu_client(1);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &weights);
    (program.run(&inputs).unwrap().into_iter().collect(), unused)
}

fn check(ours: &HostTensor, want: &HostTensor, tol: f64, what: &str) -> f64 {
    assert_eq!(&ours.dims, &want.dims, "{what}");
    let err = common::max_rel_err(&ours.to_f64_vec(), &want.to_f64_vec());
    eprintln!("{what}: max rel err {err:.3e} over {} values", want.dims.iter().product::<i64>());
    assert!(err < tol, "{what}: max rel err {err:.3e} >= {tol:.0e}");
    err
}

/// All hidden-state entries of the tiny Qwen model (`hidden_states` = entry -3, extras 0..=4) on
/// the golden's rows: row 0 right-padded (the pipeline's), row 1 the same tokens left-padded
/// (whose leading padded queries see no key: SDPA's zero attention rows).
fn run_qwen(dtype: DType) -> (HashMap<String, HostTensor>, BTreeSet<String>) {
    let io = io("qwen_encoder_io.safetensors");
    let cfg = qwen_config();
    let (b, s) = (io["input_ids"].dims[0], io["input_ids"].dims[1]);
    let opts = Qwen2_5VlTextOptions { extra_hidden_states: (0..=cfg.num_hidden_layers).collect(), ..Qwen2_5VlTextOptions::new(-3, dtype) };
    let graph = text_encoder_with(&cfg, b, s, &opts).unwrap();
    let inputs = HashMap::from([
        ("input_ids".to_string(), io["input_ids"].clone()),
        ("attention_mask".to_string(), io["attention_mask"].clone()),
    ]);
    run(graph, &model().join("text_encoder"), inputs)
}

#[test]
fn qwen_text_model_f32_matches_transformers() {
    let io = io("qwen_encoder_io.safetensors");
    let cfg = qwen_config();
    // The rotary frequencies as torch computes them, bit for bit.
    let torch_inv: Vec<u32> = io["inv_freq"].to_f64_vec().iter().map(|&v| (v as f32).to_bits()).collect();
    let ours: Vec<u32> = inv_freq(cfg.head_dim(), cfg.rope_theta).iter().map(|v| v.to_bits()).collect();
    assert_eq!(ours, torch_inv);

    let (out, unused) = run_qwen(DType::F32);
    for i in 0..=cfg.num_hidden_layers {
        check(&out[&format!("hidden_states.{i}")], &io[&format!("hidden_states_{i}")], F32_TOL, &format!("Qwen f32 hidden_states[{i}]"));
    }
    check(&out["hidden_states"], &io["hidden_states_2"], F32_TOL, "Qwen f32 hidden_states[-3]");
    // hidden_states[4] needs every layer and the final norm; nothing is left unused then.
    assert!(unused.is_empty(), "{unused:?}");

    // hidden_states[-3] alone builds layers 0 and 1 only: the rest of the checkpoint is unused.
    let graph = vidlower_frontends::nn::qwen2_5_vl_text::text_encoder(&cfg, 2, 48, -3, DType::F32).unwrap();
    let (_, unused) = load_weights(&graph, &model().join("text_encoder"));
    assert!(unused.contains("norm.weight") && unused.iter().all(|n| n == "norm.weight" || n.starts_with("layers.2.") || n.starts_with("layers.3.")), "{unused:?}");
}

#[test]
fn qwen_text_model_bf16_is_close_to_f32_reference() {
    let io = io("qwen_encoder_io.safetensors");
    let (out, _) = run_qwen(DType::BF16);
    assert_eq!(out["hidden_states"].dtype, DType::BF16);
    check(&out["hidden_states"], &io["hidden_states_2"], BF16_TOL, "Qwen bf16 hidden_states[-3] vs torch f32");
}

fn run_byt5(dtype: DType) -> HashMap<String, HostTensor> {
    let io = io("byt5_encoder_io.safetensors");
    let cfg = byt5_config();
    let opts = T5EncoderOptions { hidden_states: vec![1], ..T5EncoderOptions::new(&cfg, dtype) };
    assert_eq!(opts.variant, T5Variant::T5);
    let (b, l) = (io["input_ids"].dims[0], io["input_ids"].dims[1]);
    let graph = t5_encoder(&cfg, b, l, &opts).unwrap();
    let inputs = HashMap::from([
        ("input_ids".to_string(), io["input_ids"].clone()),
        ("attention_mask".to_string(), io["attention_mask"].clone()),
    ]);
    let (out, unused) = run(graph, &model().join("text_encoder_2"), inputs);
    assert!(unused.is_empty(), "{unused:?}");
    out
}

#[test]
fn byt5_encoder_matches_transformers() {
    let io = io("byt5_encoder_io.safetensors");
    let out = run_byt5(DType::F32);
    check(&out["last_hidden_state"], &io["last_hidden_state"], F32_TOL, "ByT5 f32 last_hidden_state");
    check(&out["hidden_states.1"], &io["hidden_states_1"], F32_TOL, "ByT5 f32 hidden_states[1]");
    let out = run_byt5(DType::BF16);
    check(&out["last_hidden_state"], &io["last_hidden_state"], BF16_TOL, "ByT5 bf16 last_hidden_state vs torch f32");
}

/// `HunyuanVideo15Pipeline.encode_prompt([with glyph text, without])` from the pieces: the
/// prompt's tokens, the Qwen graph at 1108 tokens cropped to the last 1000, and ByT5 only for
/// the prompt with quoted text (zeros for the other).
#[test]
fn encode_prompt_matches_diffusers() {
    let meta = json(&text("text_goldens.json"));
    let ep = &meta["files"]["encode_prompt_io.safetensors"];
    let io = io("encode_prompt_io.safetensors");
    let prompts: Vec<&str> = ep["prompts"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let lengths = MllmLengths::default();
    let (s, crop) = (lengths.tokenized(), lengths.crop_start);

    let tok = Qwen2Tokenizer::from_dir(&model().join("tokenizer")).unwrap();
    let (mut ids, mut masks) = (Vec::new(), Vec::new());
    for p in &prompts {
        let (i, m) = prompt::mllm_tokens(&tok, p, lengths).unwrap();
        ids.extend(i);
        masks.extend(m);
    }
    let n = prompts.len() as i64;
    assert_eq!(ids, io["qwen_input_ids"].to_f64_vec().iter().map(|&v| v as i64).collect::<Vec<_>>());
    let cfg = qwen_config();
    let opts = Qwen2_5VlTextOptions { crop_start: crop as i64, ..Qwen2_5VlTextOptions::new(prompt::HIDDEN_STATES_INDEX, DType::F32) };
    let graph = text_encoder_with(&cfg, n, s as i64, &opts).unwrap();
    let inputs = HashMap::from([
        ("input_ids".to_string(), HostTensor::from_slice([n, s as i64], &ids).unwrap()),
        ("attention_mask".to_string(), HostTensor::from_slice([n, s as i64], &masks).unwrap()),
    ]);
    let (out, _) = run(graph, &model().join("text_encoder"), inputs);
    check(&out["hidden_states"], &io["prompt_embeds"], F32_TOL, "encode_prompt prompt_embeds (Qwen, cropped)");
    let cropped: Vec<f64> = masks.chunks(s).flat_map(|m| m[crop..].iter().map(|&v| v as f64)).collect();
    assert_eq!(cropped, io["prompt_embeds_mask"].to_f64_vec(), "prompt_embeds_mask");

    // ByT5: the glyph prompt through the encoder, the other zeros.
    let want2 = io["prompt_embeds_2"].to_f64_vec();
    let want_mask2 = io["prompt_embeds_mask_2"].to_f64_vec();
    let (l, d) = (prompt::TOKENIZER_2_MAX_LENGTH, byt5_config().d_model as usize);
    let byt5 = byt5_config();
    for (row, p) in prompts.iter().enumerate() {
        let (want, want_mask) = (&want2[row * l * d..(row + 1) * l * d], &want_mask2[row * l..(row + 1) * l]);
        match prompt::byt5_tokens(p, l).unwrap() {
            None => {
                assert!(want.iter().all(|&v| v == 0.0) && want_mask.iter().all(|&v| v == 0.0), "row {row}: no glyph text, zeros");
                eprintln!("prompt {row}: no glyph text -> zeros, as diffusers");
            }
            Some((ids2, mask2)) => {
                assert_eq!(ids2, io["byt5_input_ids"].to_f64_vec().iter().map(|&v| v as i64).collect::<Vec<_>>());
                assert_eq!(mask2.iter().map(|&v| v as f64).collect::<Vec<_>>(), want_mask);
                let graph = t5_encoder(&byt5, 1, l as i64, &T5EncoderOptions::new(&byt5, DType::F32)).unwrap();
                let inputs = HashMap::from([
                    ("input_ids".to_string(), HostTensor::from_slice([1, l as i64], &ids2).unwrap()),
                    ("attention_mask".to_string(), HostTensor::from_slice([1, l as i64], &mask2).unwrap()),
                ]);
                let (out, _) = run(graph, &model().join("text_encoder_2"), inputs);
                let want = HostTensor::from_f32([1, l as i64, d as i64], &want.iter().map(|&v| v as f32).collect::<Vec<_>>()).unwrap();
                check(&out["last_hidden_state"], &want, F32_TOL, &format!("encode_prompt prompt_embeds_2 row {row} (ByT5)"));
            }
        }
    }
}

/// Qwen2.5-VL-7B's text model at the pipeline's 1108 tokens, hidden_states[-3] cropped by 108:
/// builds fast, 26 of 28 layers, every weight by its checkpoint name and shape.
#[test]
fn qwen2_5_vl_7b_graph_builds_at_1108_tokens() {
    let cfg = Qwen2_5VlTextConfig::qwen2_5_vl_7b();
    let lengths = MllmLengths::default();
    let opts = Qwen2_5VlTextOptions { crop_start: lengths.crop_start as i64, ..Qwen2_5VlTextOptions::new(prompt::HIDDEN_STATES_INDEX, DType::BF16) };
    let start = std::time::Instant::now();
    let graph = text_encoder_with(&cfg, 1, lengths.tokenized() as i64, &opts).unwrap();
    let built = start.elapsed();
    eprintln!("Qwen2.5-VL-7B text, S=1108: {} nodes, built {built:?}", graph.nodes.len());
    assert!(built.as_secs_f64() < 5.0, "building took {built:?}");
    let weights: HashMap<&str, Vec<i64>> = graph.weights().map(|(n, t)| (n, t.shape.clone())).collect();
    assert_eq!(weights.len(), 1 + 26 * 12);
    assert_eq!(weights["embed_tokens.weight"], [152064, 3584]);
    assert_eq!(weights["layers.25.self_attn.k_proj.weight"], [512, 3584]);
    assert_eq!(weights["layers.25.self_attn.q_proj.bias"], [3584]);
    assert_eq!(weights["layers.0.mlp.gate_proj.weight"], [18944, 3584]);
    assert!(!weights.contains_key("layers.26.input_layernorm.weight") && !weights.contains_key("norm.weight"));
    let params: i64 = graph.weights().map(|(_, t)| t.num_elements()).sum();
    let per_layer = 2 * 3584 + (3584 * 3584 + 3584) + 2 * (512 * 3584 + 512) + 3584 * 3584 + 3 * 3584 * 18944;
    assert_eq!(params, 152064 * 3584 + 26 * per_layer);
    let out = graph.tensor_ty(graph.outputs[0].value);
    assert_eq!((out.dtype, out.shape.clone()), (DType::BF16, vec![1, 1000, 3584]));
    // The default passes and the StableHLO emitter take it (compiling it is the GPU's business).
    let start = std::time::Instant::now();
    let (_, module) = common::lower(graph, vidlower_passes::DEFAULT_PIPELINE);
    eprintln!("lowered to {} bytes of StableHLO in {:?}", module.len(), start.elapsed());
    assert!(module.contains("tensor<1x1000x3584xbf16>"), "the cropped output type is in the module");
}
