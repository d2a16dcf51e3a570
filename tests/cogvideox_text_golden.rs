//! CogVideoX's text side against transformers 5.23.0 / diffusers 0.42.1 (goldens from
//! `tools/golden/make_cogvideox_text_goldens.py`: a tiny SentencePiece model with T5's NMT-NFKC
//! charsmap and a tiny random T5 v1.1 `T5EncoderModel` in `tests/golden/cogvideox/<variant>/model`):
//! the tokenizer exactly, from `spiece.model` and from a `tokenizer.json`; the encoder at f32 on
//! the CPU plugin unmasked (as the pipeline calls it) and masked; `CogVideoXPipeline.encode_prompt`
//! from tokenizer + encoder; and the T5-v1.1-XXL graph built at CogVideoX's 226 tokens.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vidlower_frontends::cogvideox::tokenizer::{T5Tokenizer, MAX_SEQUENCE_LENGTH};
use vidlower_frontends::nn::t5_encoder::{t5_encoder, weight_aliases, T5Config, T5EncoderOptions, T5Variant};
use vidlower_frontends::wan::config::read_json;
use vidlower_ir::{DType, Graph};
use vidlower_runtime::program::{ParamKind, Signature};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

/// f32 tolerance, as max |ours - torch| / (1 + |torch|) (see tests/wan_text_golden.rs: both
/// sides compute in f32 and differ only in summation order and transcendental ulps).
const F32_TOL: f64 = 1e-5;

const VARIANTS: [&str; 3] = ["cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b"];

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cogvideox")
}

fn model(variant: &str) -> PathBuf {
    golden().join(variant).join("model")
}

fn read_json_value(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn i64s(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().expect("a list").iter().map(|x| x.as_i64().expect("an integer")).collect()
}

fn config() -> T5Config {
    read_json(&model(VARIANTS[0]).join("text_encoder/config.json")).unwrap()
}

/// Every case of tokenizer_cases.json, exactly, through `tok`.
fn check_cases(tok: &T5Tokenizer, what: &str) -> usize {
    let cases = read_json_value(&golden().join("tokenizer_cases.json"));
    let cases = cases.as_array().expect("a list of cases");
    let mut compared_with_spm = 0;
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let max_length = case["max_length"].as_u64().unwrap() as usize;
        let (ids, mask) = tok.encode(&[text], max_length).unwrap();
        assert_eq!(ids[0], i64s(&case["input_ids"]), "{what}: input_ids of {text:?} (max_length {max_length})");
        assert_eq!(mask[0], i64s(&case["attention_mask"]), "{what}: attention_mask of {text:?}");
        // SentencePiece's own encoder (transformers 4.x's slow tokenizer) gives the same ids.
        if let Some(spm) = case.get("sentencepiece_input_ids") {
            assert_eq!(ids[0], i64s(spm), "{what}: SentencePiece's ids of {text:?}");
            compared_with_spm += 1;
        }
    }
    // A batch gives the same rows as one text at a time.
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let (ids, _) = tok.encode(&texts, 24).unwrap();
    for (text, row) in texts.iter().zip(&ids) {
        assert_eq!(row, &tok.encode(&[text], 24).unwrap().0[0], "{what}: batch row of {text:?}");
    }
    assert!(cases.len() >= 10 && compared_with_spm >= 8, "{} cases, {compared_with_spm} with SentencePiece ids", cases.len());
    cases.len()
}

#[test]
fn tokenizer_from_spiece_model_matches_transformers() {
    for variant in VARIANTS {
        let dir = model(variant).join("tokenizer");
        assert!(!dir.join("tokenizer.json").exists(), "the released layout has no tokenizer.json");
        let tok = T5Tokenizer::from_dir(&dir).unwrap();
        assert!(tok.path().ends_with("tokenizer/spiece.model"), "{}", tok.path().display());
        // 420 pieces + 100 sentinels, the encoder's vocab_size.
        assert_eq!(tok.vocab_size() as i64, config().vocab_size);
        assert_eq!(tok.pad_id(), 0);
        let n = check_cases(&tok, variant);
        eprintln!("{variant}: {n} tokenizer cases exact from spiece.model");
    }
    let tok = T5Tokenizer::from_dir(&model(VARIANTS[0]).join("tokenizer")).unwrap();
    let e = tok.encode(&["x"], 0).unwrap_err().to_string();
    assert!(e.contains("spiece.model") && e.contains("max_length 0"), "{e}");
    // The pipeline's default length: one `</s>` and 225 pads for an empty prompt.
    let (ids, mask) = tok.encode(&[""], MAX_SEQUENCE_LENGTH).unwrap();
    assert_eq!((ids[0].len(), ids[0][0], mask[0].iter().sum::<i64>()), (226, 1, 1));
}

#[test]
fn tokenizer_from_tokenizer_json_matches_transformers() {
    let tok = T5Tokenizer::from_dir(&golden().join("tokenizer_json")).unwrap();
    assert!(tok.path().ends_with("tokenizer_json/tokenizer.json"), "{}", tok.path().display());
    let n = check_cases(&tok, "tokenizer.json");
    eprintln!("{n} tokenizer cases exact from tokenizer.json");
}

#[test]
fn broken_spiece_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spiece.model"), b"\x0a\xff\xff").unwrap();
    let e = T5Tokenizer::from_dir(dir.path()).err().unwrap().to_string();
    assert!(e.contains("spiece.model") && e.contains("ModelProto"), "{e}");
}

/// The golden checkpoint's tensors for `graph`'s weights, found under their name or a tied alias.
fn load_weights(graph: &Graph, dir: &Path) -> HashMap<String, HostTensor> {
    let store = WeightStore::open(dir).unwrap();
    let weights: HashMap<String, HostTensor> = Signature::of(graph)
        .params
        .iter()
        .filter(|(_, kind, _)| *kind == ParamKind::Weight)
        .map(|(name, _, ty)| {
            let stored = std::iter::once(name.as_str()).chain(weight_aliases(name).iter().copied()).find(|n| store.contains(n));
            let stored = stored.unwrap_or_else(|| panic!("{name} is not in the checkpoint"));
            (name.clone(), store.load(stored, ty).unwrap())
        })
        .collect();
    let unused: Vec<&str> = store.names().filter(|n| !weights.contains_key(*n) && !weight_aliases(n).iter().any(|a| weights.contains_key(*a))).collect();
    assert!(unused.is_empty(), "checkpoint tensors the graph does not use: {unused:?}");
    weights
}

/// Runs the golden encoder inputs through the T5 graph (f32), with or without the mask, also
/// asking for `hidden_states.1`; returns the outputs by name.
fn run_encoder(masked: bool) -> HashMap<String, HostTensor> {
    let io = vidlower_runtime::safetensors_io::load(&golden().join("text_encoder_io.safetensors")).unwrap();
    let (ids, mask) = (&io["input_ids"], &io["attention_mask"]);
    let cfg = config();
    let opts = T5EncoderOptions { attention_mask: masked, hidden_states: vec![1], ..T5EncoderOptions::new(&cfg, DType::F32) };
    assert_eq!(opts.variant, T5Variant::T5);
    let graph = t5_encoder(&cfg, ids.dims[0], ids.dims[1], &opts).unwrap();
    let weights = load_weights(&graph, &model(VARIANTS[0]).join("text_encoder"));
    let client = common::cpu_client(1);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &weights);
    let mut inputs = HashMap::from([("input_ids".to_string(), ids.clone())]);
    if masked {
        inputs.insert("attention_mask".to_string(), mask.clone());
    }
    program.run(&inputs).unwrap().into_iter().collect()
}

fn check(ours: &HostTensor, want: &HostTensor, what: &str) -> f64 {
    assert_eq!((ours.dtype, &ours.dims), (want.dtype, &want.dims), "{what}");
    let err = common::max_rel_err(&ours.to_f64_vec(), &want.to_f64_vec());
    eprintln!("{what}: max rel err {err:.3e} over {} values", want.dims.iter().product::<i64>());
    assert!(err < F32_TOL, "{what}: max rel err {err:.3e} >= {F32_TOL:.0e}");
    err
}

#[test]
fn encoder_f32_unmasked_matches_transformers() {
    let io = vidlower_runtime::safetensors_io::load(&golden().join("text_encoder_io.safetensors")).unwrap();
    let out = run_encoder(false);
    check(&out["last_hidden_state"], &io["last_hidden_state"], "T5 encoder f32, no mask (as CogVideoX)");
    // The padded row differs from the masked golden: the mask really is absent.
    let (a, b) = (out["last_hidden_state"].to_f64_vec(), io["last_hidden_state_masked"].to_f64_vec());
    assert!(common::max_rel_err(&a, &b) > 1e-3, "the unmasked run should differ from the masked one");
}

#[test]
fn encoder_f32_masked_matches_transformers() {
    let io = vidlower_runtime::safetensors_io::load(&golden().join("text_encoder_io.safetensors")).unwrap();
    let out = run_encoder(true);
    check(&out["last_hidden_state"], &io["last_hidden_state_masked"], "T5 encoder f32, masked");
    check(&out["hidden_states.1"], &io["hidden_states_1"], "T5 encoder f32, masked, hidden_states[1] (block 0 output)");
}

#[test]
fn encode_prompt_matches_diffusers() {
    let meta = read_json_value(&golden().join("text_goldens.json"));
    let ep = &meta["files"]["encode_prompt_io.safetensors"];
    let io = vidlower_runtime::safetensors_io::load(&golden().join("encode_prompt_io.safetensors")).unwrap();
    let l = ep["max_sequence_length"].as_u64().unwrap() as usize;
    let (prompt, negative) = (ep["prompt"].as_str().unwrap(), ep["negative_prompt"].as_str().unwrap());

    // CogVideoXPipeline._get_t5_prompt_embeds: raw prompts, padded to L, no mask to the encoder.
    let tok = T5Tokenizer::from_dir(&model(VARIANTS[0]).join("tokenizer")).unwrap();
    let (ids, _) = tok.encode(&[prompt, negative], l).unwrap();
    assert_eq!(ids[0], i64s(&ep["prompt_input_ids"]));
    assert_eq!(ids[1], i64s(&ep["negative_prompt_input_ids"]));
    assert!(ids.iter().all(|row| row.contains(&0)), "the golden prompts should leave padding");

    let cfg = config();
    let opts = T5EncoderOptions { attention_mask: false, ..T5EncoderOptions::new(&cfg, DType::F32) };
    let graph = t5_encoder(&cfg, 2, l as i64, &opts).unwrap();
    let weights = load_weights(&graph, &model(VARIANTS[0]).join("text_encoder"));
    let client = common::cpu_client(1);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &weights);
    let flat: Vec<i64> = ids.into_iter().flatten().collect();
    let inputs = HashMap::from([("input_ids".to_string(), HostTensor::from_slice([2, l as i64], &flat).unwrap())]);
    let out = program.run(&inputs).unwrap();
    let embeds = out[0].1.to_f64_vec();
    let d = out[0].1.dims[2] as usize;
    for (row, key) in ["prompt_embeds", "negative_prompt_embeds"].iter().enumerate() {
        let want = &io[*key];
        assert_eq!(want.dims, vec![1, l as i64, d as i64]);
        let ours = &embeds[row * l * d..(row + 1) * l * d];
        // Not zeroed after the real tokens (unlike Wan): padding positions carry values.
        assert!(ours[(l - 1) * d..].iter().any(|&v| v != 0.0));
        let err = common::max_rel_err(ours, &want.to_f64_vec());
        eprintln!("{key}: max rel err {err:.3e}");
        assert!(err < F32_TOL, "{key}: max rel err {err:.3e}");
    }
}

/// `google/t5-v1_1-xxl` (CogVideoX's text encoder) at the pipeline's 226 tokens: the graph builds
/// and verifies fast, with one relative-attention table (block 0) and every weight by its
/// checkpoint name.
#[test]
fn t5_v1_1_xxl_graph_builds_at_226_tokens() {
    let cfg = T5Config { vocab_size: 32128, ..T5Config::t5_v1_1_xxl() };
    let opts = T5EncoderOptions { attention_mask: false, ..T5EncoderOptions::new(&cfg, DType::BF16) };
    let start = std::time::Instant::now();
    let graph = t5_encoder(&cfg, 2, MAX_SEQUENCE_LENGTH as i64, &opts).unwrap();
    let built = start.elapsed();
    eprintln!("T5-v1.1-XXL L=226: {} nodes, built {built:?}", graph.nodes.len());
    assert!(built.as_secs_f64() < 5.0, "building took {built:?}");
    let weights: Vec<(&str, i64)> = graph.weights().map(|(n, t)| (n, t.num_elements())).collect();
    assert_eq!(weights.len(), 1 + 24 * 9 + 1 + 1);
    let params: i64 = weights.iter().map(|w| w.1).sum();
    // 4.76e9 parameters: the encoder half of t5-v1_1-xxl.
    assert_eq!(params, 32128 * 4096 + 24 * (4 * 4096 * 4096 + 2 * 4096 + 3 * 4096 * 10240) + 32 * 64 + 4096);
    let out = graph.tensor_ty(graph.outputs[0].value);
    assert_eq!((out.dtype, out.shape.clone()), (DType::BF16, vec![2, 226, 4096]));
}
