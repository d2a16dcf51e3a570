//! The parsers that read untrusted files, fed random and mutated input for a bounded number of
//! cases: safetensors headers (and the weight store and stage-file reader over them), the IR
//! text form, model config JSON, generation_config.json and executable-cache entries. Each must
//! answer Ok or a clear error: no panic, no abort, no runaway allocation.

use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use vidlower_frontends::family::Component;
use vidlower_runtime::safetensors_header;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A small valid safetensors file (three tensors) to mutate.
fn valid_safetensors() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    let a = vidlower_runtime::tensor::HostTensor::from_f32(vec![2, 3], &[1.0; 6]).unwrap();
    let b = vidlower_runtime::tensor::HostTensor::from_f32(vec![4], &[2.0; 4]).unwrap().convert(vidlower_ir::DType::BF16);
    let c = vidlower_runtime::tensor::HostTensor::scalar(3i32);
    vidlower_runtime::safetensors_io::save(&p, &[("a".into(), a), ("b".into(), b), ("c".into(), c)]).unwrap();
    std::fs::read(&p).unwrap()
}

/// Byte edits: (position, new byte) pairs and an optional truncation.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, b) in edits {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] = b;
        }
    }
    if let Some(n) = cut {
        bytes.truncate(n % (bytes.len() + 1));
    }
    bytes
}

/// A header accepted by the parser describes bytes inside the file.
fn check_header(bytes: &[u8]) {
    if let Ok(h) = safetensors_header::parse(bytes, bytes.len() as u64) {
        for (name, t) in &h.tensors {
            assert!(t.start <= t.end && t.end <= bytes.len(), "{name}: {t:?} outside a {}-byte file", bytes.len());
        }
    }
}

/// The weight store and the stage-file reader over the same bytes: Ok or an error naming the file.
fn check_readers(dir: &Path, bytes: &[u8]) {
    let p = dir.join("w.safetensors");
    std::fs::write(&p, bytes).unwrap();
    if let Err(e) = vidlower_runtime::safetensors_io::load(&p) {
        assert!(e.to_string().contains("w.safetensors"), "{e}");
    }
    match vidlower_runtime::weights::WeightStore::open(&p) {
        Ok(store) => {
            let names: Vec<String> = store.names().map(str::to_string).collect();
            for name in names {
                let _ = store.load(&name, &vidlower_ir::TensorType::new(vidlower_ir::DType::F32, vec![6]));
            }
        }
        Err(e) => assert!(e.to_string().contains("w.safetensors"), "{e}"),
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn safetensors_header_of_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256), len_extra in 0u64..64) {
        check_header(&bytes);
        // A prefix of a longer file: the parser must not read past what it was given.
        let _ = safetensors_header::parse(&bytes, bytes.len() as u64 + len_extra);
    }

    #[test]
    fn safetensors_header_of_a_mutated_file(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4), cut in proptest::option::of(any::<usize>())) {
        let bytes = mutate(valid_safetensors(), &edits, cut);
        check_header(&bytes);
        let dir = tempfile::tempdir().unwrap();
        check_readers(dir.path(), &bytes);
    }

    #[test]
    fn safetensors_header_with_random_json(json in json_text(), data in 0usize..64) {
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        bytes.resize(bytes.len() + data, 0);
        check_header(&bytes);
    }
}

/// JSON-ish text built around the safetensors header's fields, with hostile values.
fn json_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![Just("0".to_string()), Just("-1".to_string()), Just("18446744073709551615".to_string()), Just("1e300".to_string()), (0u64..100).prop_map(|n| n.to_string())];
    let dtype = prop_oneof![Just("\"F32\""), Just("\"BF16\""), Just("\"Q4\""), Just("7"), Just("null")];
    (dtype, proptest::collection::vec(number.clone(), 0..4), number.clone(), number).prop_map(|(dtype, shape, s, e)| {
        format!("{{\"t\":{{\"dtype\":{dtype},\"shape\":[{}],\"data_offsets\":[{s},{e}]}}}}", shape.join(","))
    })
}

/// A printed graph to mutate: the example block.
fn valid_ir() -> String {
    vidlower_ir::text::print(&vidlower_frontends::example::example_block(&Default::default()).unwrap())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn ir_text_of_random_strings(text in "\\PC{0,200}") {
        if let Ok(g) = vidlower_ir::text::parse(&text) {
            let _ = vidlower_ir::verify(&g);
        }
    }

    #[test]
    fn ir_text_mutated(edits in proptest::collection::vec((any::<usize>(), 32u8..127), 0..4), cut in proptest::option::of(any::<usize>())) {
        let text = valid_ir();
        let bytes = mutate(text.into_bytes(), &edits, cut);
        let text = String::from_utf8_lossy(&bytes);
        match vidlower_ir::text::parse(&text) {
            Ok(g) => {
                if vidlower_ir::verify(&g).is_ok() {
                    // What parses and verifies prints again.
                    let _ = vidlower_ir::text::print(&g);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// A JSON value of any kind, small.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(-1i64), Just(0), Just(1), Just(3), Just(1 << 40)].prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z_]{0,12}".prop_map(Value::from),
        proptest::collection::vec(-2i64..5, 0..4).prop_map(Value::from),
        Just(serde_json::json!({"x": 1})),
    ]
}

/// `base` (a JSON object) with field number `which` (of its keys, or a new one) set to `value`.
fn with_field(base: &Value, which: usize, value: Value) -> String {
    let mut v = base.clone();
    let obj = v.as_object_mut().unwrap();
    let keys: Vec<String> = obj.keys().cloned().collect();
    let key = keys.get(which % (keys.len() + 1)).cloned().unwrap_or_else(|| "unknown_field".into());
    obj.insert(key, value);
    serde_json::to_string_pretty(&v).unwrap()
}

fn golden_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wan/model")
}

proptest! {
    #![proptest_config(config(256))]

    /// The Wan transformer's, VAE's and model index's configs with one field replaced: the
    /// family opens the directory or says which file is wrong.
    #[test]
    fn model_configs_with_a_field_of_any_type(file in 0usize..3, which in any::<usize>(), value in json_value(), garbage in proptest::option::weighted(0.1, "\\PC{0,40}")) {
        let files = ["transformer/config.json", "vae/config.json", "model_index.json"];
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for f in files {
            std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
            std::fs::copy(golden_model().join(f), dir.join(f)).unwrap();
        }
        let base: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(files[file])).unwrap()).unwrap();
        let text = garbage.unwrap_or_else(|| with_field(&base, which, value));
        std::fs::write(dir.join(files[file]), text).unwrap();
        match vidlower_frontends::registry::detect(dir) {
            Ok(family) => {
                if let Ok(model) = family.open(dir, &[Component::Transformer, Component::VaeDecoder]) {
                    let d = model.defaults();
                    let _ = model.check_video(&vidlower_frontends::family::VideoSize { height: d.height, width: d.width, frames: d.frames });
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("model_index.json"), "{e}"),
        }
    }

    #[test]
    fn generation_config_with_a_field_of_any_type(which in any::<usize>(), value in json_value(), garbage in proptest::option::weighted(0.1, "\\PC{0,60}")) {
        use vidlower_runtime::stages::generation_config::{GenerationConfig, FILE_NAME};
        let good = GenerationConfig { prompt: "p".into(), model_id: "wan2.1-tiny".into(), max_sequence_length: 8, steps: Some(2), height: Some(64), ..Default::default() };
        let base = serde_json::to_value(&good).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(FILE_NAME), garbage.unwrap_or_else(|| with_field(&base, which, value))).unwrap();
        if let Err(e) = GenerationConfig::read(tmp.path()) {
            prop_assert!(e.to_string().contains(FILE_NAME), "{e}");
        }
    }
}

/// A valid cache entry's bytes (written by the cache itself) and its key.
fn valid_entry(cache: &vidlower_runtime::cache::ExecutableCache) -> (vidlower_runtime::cache::CacheKey, Vec<u8>) {
    let key = vidlower_runtime::cache::CacheKey::new("module", b"opts", "cpu", "0.81", (0, 81), "cpu", 1, "");
    let meta = vidlower_runtime::cache::EntryMeta { platform: "cpu".into(), label: "fuzz".into(), hlo_text_len: 10 };
    let path = cache.put(&key, &[7u8; 300], &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (key, bytes)
}

proptest! {
    #![proptest_config(config(512))]

    /// A damaged entry is a miss or reported corrupt (and deleted), never an error or a panic;
    /// an entry that still verifies holds the bytes that were stored.
    #[test]
    fn cache_entries_damaged(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4), cut in proptest::option::of(any::<usize>()), random in proptest::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..200))) {
        use vidlower_runtime::cache::{ExecutableCache, Lookup};
        let tmp = tempfile::tempdir().unwrap();
        let cache = ExecutableCache::open(tmp.path()).unwrap();
        let (key, bytes) = valid_entry(&cache);
        let damaged = random.unwrap_or_else(|| mutate(bytes, &edits, cut));
        std::fs::write(cache.entry_path(&key), &damaged).unwrap();
        match cache.get(&key) {
            Ok(Lookup::Hit(exe)) => prop_assert_eq!(exe, vec![7u8; 300]),
            Ok(Lookup::Miss) => {}
            Ok(Lookup::Corrupt { .. }) => prop_assert!(!cache.entry_path(&key).exists()),
            Err(e) => prop_assert!(false, "a damaged entry is not an error: {}", e),
        }
        let _ = cache.list();
    }
}
