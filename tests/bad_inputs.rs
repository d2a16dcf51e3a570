//! The bad-input table (docs/bad_inputs.md): every row runs the `vidlower` binary as a user
//! would, with one file, field or flag wrong, and must fail with one line naming what is wrong,
//! exit non-zero, never panic or abort, leave no partial file and keep an earlier good run's
//! files as they were. A few rows are recoverable and must succeed (a corrupt cache entry heals,
//! a read-only cache only warns). Every row runs and all failing rows are reported at once.

#[path = "common/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What a row expects.
enum Want {
    /// A failure whose stderr has one line holding all of these.
    Fails(Vec<String>),
    /// A success whose stdout + stderr hold all of these.
    Succeeds(Vec<String>),
}

struct Row {
    case: &'static str,
    args: Vec<OsString>,
    want: Want,
    /// A directory whose files must be byte-identical after the run (an earlier good run).
    keep: Option<PathBuf>,
    /// RLIMIT_FSIZE for the child, in KiB (a full disk).
    file_size_limit_kib: Option<u64>,
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn fails(case: &'static str, args: Vec<OsString>, want: &[&str], keep: Option<&Path>) -> Row {
    Row { case, args, want: Want::Fails(strings(want)), keep: keep.map(Path::to_path_buf), file_size_limit_kib: None }
}

fn succeeds(case: &'static str, args: Vec<OsString>, want: &[&str]) -> Row {
    Row { case, args, want: Want::Succeeds(strings(want)), keep: None, file_size_limit_kib: None }
}

/// Every file under `dir` (recursively) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Runs `vidlower ARGS --cache-dir CACHE`, under a file-size limit when asked (SIGXFSZ ignored,
/// so a write past the limit fails with EFBIG as on a full disk).
fn run(cache: &Path, row: &Row) -> Output {
    let Some(kib) = row.file_size_limit_kib else {
        if row.args.iter().any(|a| a == "--cache-dir") || row.args.first().is_some_and(|a| a == "dump-ir") {
            return Command::new(env!("CARGO_BIN_EXE_vidlower")).args(&row.args).output().expect("vidlower runs");
        }
        return cli::vidlower(cache, &row.args);
    };
    Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_vidlower"))
        .args(&row.args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .expect("bash runs")
}

/// What is wrong with a row's outcome, if anything, and the line the user got (the error line,
/// or for a success the note or warning it prints).
fn check(cache: &Path, row: &Row) -> (Option<String>, String) {
    let before = row.keep.as_deref().map(snapshot);
    let o = run(cache, row);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let mut problems = Vec::new();
    for bad in ["panicked", "memory allocation of", "RUST_BACKTRACE", "core dumped"] {
        if err.contains(bad) {
            problems.push(format!("stderr has `{bad}`"));
        }
    }
    match &row.want {
        Want::Fails(want) => {
            if o.status.success() {
                problems.push("exit code 0".into());
            }
            if o.status.code().is_none() {
                problems.push(format!("killed by a signal: {:?}", o.status));
            }
            if !err.lines().any(|l| want.iter().all(|w| l.contains(w.as_str()))) {
                problems.push(format!("no stderr line holds all of {want:?}"));
            }
        }
        Want::Succeeds(want) => {
            if !o.status.success() {
                problems.push(format!("failed ({:?})", o.status));
            }
            let all = format!("{out}{err}");
            for w in want {
                if !all.contains(w.as_str()) {
                    problems.push(format!("output lacks `{w}`"));
                }
            }
        }
    }
    if let (Some(dir), Some(before)) = (&row.keep, before) {
        let after = snapshot(dir);
        if after != before {
            let changed: Vec<_> = after.keys().chain(before.keys()).filter(|k| after.get(*k) != before.get(*k)).collect();
            problems.push(format!("files changed or left behind: {changed:?}"));
        }
    }
    let message = match &row.want {
        Want::Fails(want) => err.lines().find(|l| want.iter().all(|w| l.contains(w.as_str()))).or_else(|| err.lines().find(|l| l.starts_with("error"))),
        Want::Succeeds(want) => out.lines().chain(err.lines()).find(|l| want.first().is_some_and(|w| l.contains(w.as_str()))),
    };
    let problem = (!problems.is_empty()).then(|| format!("[{}] {}\n    stderr: {}", row.case, problems.join("; "), err.trim().replace('\n', "\n            ")));
    (problem, message.unwrap_or("").trim().to_string())
}

/// The 8-byte length, the header JSON and the data of a safetensors file.
fn split_safetensors(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&b[8..8 + n]).unwrap(), b[8 + n..].to_vec())
}

fn write_safetensors(path: &Path, header: &serde_json::Value, data: &[u8]) {
    let h = serde_json::to_vec(header).unwrap();
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(&h);
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

/// Edits the header of `path` (the data stays).
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let (mut h, data) = split_safetensors(path);
    edit(h.as_object_mut().unwrap());
    write_safetensors(path, &h, &data);
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The top of docs/bad_inputs.md, above the table this test writes.
const DOC_HEAD: &str = "# Bad inputs and what vidlower says\n\n\
Every row is a case of `tests/bad_inputs.rs` (`cargo test --features mlir --test bad_inputs`): the\n\
`vidlower` binary is run as a user runs it with one file, field or flag wrong. A failing row must exit\n\
non-zero with one line naming the file, tensor, field or flag and what was expected; never panic or\n\
abort; leave no partial file; and keep the files of an earlier good run as they were (the rows run\n\
against a good run's output directory and compare every byte after). Weights are checked (header,\n\
file length, every weight's shape and dtype against the graphs) before stage 1 runs. The parsers of\n\
untrusted files are also fuzzed (`tests/fuzz_parsers.rs`).\n\n\
The messages below are this table's last run (`VIDLOWER_BAD_INPUTS_TABLE=$PWD/docs/bad_inputs.md\n\
cargo test --features mlir --test bad_inputs`); `$TMP` is the test's temp dir. `model*` dirs are\n\
copies of `tests/golden/wan/model` with one thing broken.\n\n\
| case | exit | what vidlower says |\n|---|---|---|\n";

const TRANSFORMER: &str = "transformer/diffusion_pytorch_model.safetensors";
const NORM_K: &str = "blocks.0.attn1.norm_k.weight";
const NORM_Q: &str = "blocks.0.attn1.norm_q.weight";
const TO_K: &str = "blocks.0.attn1.to_k.weight";

/// A PJRT "plugin" whose `GetPjrtApi` says C API 0.54 (older than the binding's 0.81), built
/// with the C compiler; None where there is none.
fn old_api_plugin(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("old_plugin.c");
    let lib = dir.join("old_plugin.so");
    std::fs::write(
        &src,
        "#include <stddef.h>\n\
         struct version { size_t struct_size; void *ext; int major; int minor; };\n\
         struct api { size_t struct_size; void *ext; struct version v; void *fns[64]; };\n\
         static struct api table = { sizeof(struct api), 0, { sizeof(struct version), 0, 0, 54 }, {0} };\n\
         const struct api *GetPjrtApi(void) { return &table; }\n",
    )
    .unwrap();
    let ok = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(&src).status().is_ok_and(|s| s.success());
    ok.then_some(lib)
}

#[test]
fn every_bad_input_gets_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cache = t.join("exe");
    let good = t.join("good");
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // An earlier good run: every failing row below must leave its files as they were.
    cli::ok(cli::vidlower(
        &cache,
        &["generate", "--model", "wan2.1-tiny", "--prompt", "a fox", "--num-inference-steps", "1", "--output-dir", &s(&good)],
    ));

    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wan/model");
    let mut n = 0;
    // A copy of the tiny Wan model directory with `corrupt` applied.
    let mut model = |corrupt: &dyn Fn(&Path)| -> String {
        n += 1;
        let dir = t.join(format!("model{n}"));
        copy_dir(&golden, &dir);
        corrupt(&dir);
        s(&dir)
    };
    let small = ["--height", "64", "--width", "96", "--frames", "9"];
    let generate = |dir: &str| -> Vec<OsString> {
        let mut a = os(&["generate", "--model-dir", dir, "--prompt", "p", "--output-dir", &s(&good)]);
        a.extend(os(&small));
        a
    };
    let preset = |extra: &[&str]| -> Vec<OsString> {
        let mut a = os(&["generate", "--model", "wan2.1-tiny", "--prompt", "p", "--output-dir", &s(&good)]);
        a.extend(os(extra));
        a
    };
    let g = Some(good.as_path());
    let mut rows = Vec::new();

    // --- model weights (found before stage 1 runs) ---
    let d = model(&|d| std::fs::remove_file(d.join(TRANSFORMER)).unwrap());
    rows.push(fails("transformer weights missing", generate(&d), &["transformer", "no *.safetensors files"], g));
    let d = model(&|d| std::fs::write(d.join(TRANSFORMER), b"").unwrap());
    rows.push(fails("weights file empty", generate(&d), &[TRANSFORMER, "0 bytes", "8-byte header length"], g));
    let d = model(&|d| {
        let b = std::fs::read(d.join(TRANSFORMER)).unwrap();
        std::fs::write(d.join(TRANSFORMER), &b[..b.len() - 100]).unwrap();
    });
    rows.push(fails("weights file truncated", generate(&d), &[TRANSFORMER, "truncated"], g));
    let d = model(&|d| {
        let mut b = std::fs::read(d.join(TRANSFORMER)).unwrap();
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(d.join(TRANSFORMER), b).unwrap();
    });
    rows.push(fails("header length absurd", generate(&d), &[TRANSFORMER, "header length says"], g));
    let d = model(&|d| {
        let mut b = std::fs::read(d.join(TRANSFORMER)).unwrap();
        b[8] = b'x';
        std::fs::write(d.join(TRANSFORMER), b).unwrap();
    });
    rows.push(fails("header JSON corrupt", generate(&d), &[TRANSFORMER, "header JSON does not parse", "line 1 column 1"], g));
    let d = model(&|d| {
        edit_header(&d.join(TRANSFORMER), |h| {
            h[NORM_K]["data_offsets"] = serde_json::json!([1_000_000_000u64, 1_000_000_096u64]);
        })
    });
    rows.push(fails("offsets past the end", generate(&d), &[TRANSFORMER, NORM_K, "past the end"], g));
    let d = model(&|d| {
        edit_header(&d.join(TRANSFORMER), |h| {
            let k = h[NORM_K]["data_offsets"].clone();
            h[NORM_Q]["data_offsets"] = k;
        })
    });
    rows.push(fails("overlapping offsets", generate(&d), &[TRANSFORMER, "overlap", NORM_K, NORM_Q], g));
    let d = model(&|d| edit_header(&d.join(TRANSFORMER), |h| h[NORM_K]["dtype"] = "Q4".into()));
    rows.push(fails("dtype unknown", generate(&d), &[TRANSFORMER, NORM_K, "unknown dtype `Q4`"], g));
    let d = model(&|d| edit_header(&d.join(TRANSFORMER), |h| h[TO_K]["shape"] = serde_json::json!([12, 48])));
    rows.push(fails("weight of the wrong shape", generate(&d), &[TRANSFORMER, TO_K, "expected shape [24, 24]", "[12, 48]"], g));
    let d = model(&|d| edit_header(&d.join(TRANSFORMER), |h| h[NORM_K]["dtype"] = "I32".into()));
    rows.push(fails("weight of the wrong dtype", generate(&d), &[TRANSFORMER, NORM_K, "dtype I32"], g));
    let d = model(&|d| {
        edit_header(&d.join(TRANSFORMER), |h| {
            let v = h.remove(NORM_Q).unwrap();
            h.insert("renamed".into(), v);
        })
    });
    rows.push(fails("weight missing", generate(&d), &[NORM_Q, "is missing", "transformer"], g));
    let d = model(&|d| {
        let b = std::fs::read(d.join("text_encoder/model.safetensors")).unwrap();
        std::fs::write(d.join("text_encoder/model.safetensors"), &b[..b.len() / 2]).unwrap();
    });
    rows.push(fails("text encoder truncated (before stage 1)", generate(&d), &["text_encoder/model.safetensors", "truncated"], g));
    let d = model(&|d| {
        let b = std::fs::read(d.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
        std::fs::write(d.join("vae/diffusion_pytorch_model.safetensors"), &b[..b.len() - 4]).unwrap();
    });
    rows.push(fails("VAE truncated (before stage 1)", generate(&d), &["vae/diffusion_pytorch_model.safetensors", "truncated"], g));

    // --- sharded checkpoints ---
    let d = model(&|d| std::fs::write(d.join("transformer/diffusion_pytorch_model.safetensors.index.json"), "{ not json").unwrap());
    rows.push(fails("sharded index does not parse", generate(&d), &["diffusion_pytorch_model.safetensors.index.json", "does not parse"], g));
    let d = model(&|d| {
        let index = serde_json::json!({"metadata": {}, "weight_map": {NORM_K: "diffusion_pytorch_model-00002-of-00002.safetensors"}});
        std::fs::write(d.join("transformer/diffusion_pytorch_model.safetensors.index.json"), index.to_string()).unwrap();
    });
    rows.push(fails("sharded index names a missing shard", generate(&d), &["index.json", NORM_K, "00002-of-00002", "not in"], g));

    // --- configs ---
    let d = model(&|d| std::fs::remove_file(d.join("transformer/config.json")).unwrap());
    rows.push(fails("transformer config missing", generate(&d), &["transformer/config.json"], g));
    let d = model(&|d| edit_json(&d.join("transformer/config.json"), |c| c["num_layers"] = "two".into()));
    rows.push(fails("config field of the wrong type", generate(&d), &["transformer/config.json", "num_layers"], g));
    let d = model(&|d| edit_json(&d.join("transformer/config.json"), |c| drop(c.remove("num_attention_heads"))));
    // A missing field takes diffusers' default (40 heads), which the weights then contradict.
    rows.push(fails("config field missing", generate(&d), &["patch_embedding.weight", "expected shape [480, 16, 1, 2, 2]", "config.json"], g));
    let d = model(&|d| edit_json(&d.join("transformer/config.json"), |c| c["num_layers"] = 3.into()));
    rows.push(fails("config does not match the weights", generate(&d), &["blocks.2.", "is missing"], g));
    let d = model(&|d| edit_json(&d.join("model_index.json"), |c| c["_class_name"] = "FrobPipeline".into()));
    rows.push(fails("unknown _class_name", generate(&d), &["FrobPipeline"], g));

    // --- flags ---
    rows.push(fails("frames the model cannot take", preset(&["--frames", "10"]), &["--frames 10", "4n+1"], g));
    rows.push(fails("height the model cannot take", preset(&["--height", "100"]), &["--height 100", "multiple of 16"], g));
    rows.push(fails("size no machine can hold", preset(&["--height", "160000", "--width", "160000"]), &["--height 160000", "at most 16384"], g));
    rows.push(fails("frames no machine can hold", preset(&["--frames", "100001"]), &["--frames 100001", "at most"], g));
    rows.push(fails(
        "video larger than this machine's memory",
        preset(&["--height", "16384", "--width", "16384", "--frames", "4097"]),
        &["--height 16384 --width 16384 --frames 4097", "GiB", "memory"],
        g,
    ));
    rows.push(fails(
        "exec: size no machine can hold",
        os(&["exec", "--model", "wan2.1-tiny", "--component", "transformer", "--height", "160000", "--width", "160000"]),
        &["--height 160000", "at most 16384"],
        None,
    ));
    rows.push(fails("exec: batch no machine can hold", os(&["exec", "--batch", "100000000"]), &["--batch 100000000", "at most 4096"], None));
    {
        use std::os::unix::ffi::OsStringExt;
        let mut a = os(&["generate", "--model", "wan2.1-tiny", "--output-dir", &s(&good), "--prompt"]);
        a.push(OsString::from_vec(b"a \xff fox".to_vec()));
        rows.push(fails("prompt not UTF-8", a, &["--prompt", "not valid UTF-8", "0xff"], g));
    }

    let long = "a fox ".repeat(40);
    rows.push(succeeds(
        "prompt longer than the limit (truncated, and said)",
        os(&["stage1", "--model", "wan2.1-tiny", "--prompt", &long, "--max-sequence-length", "16", "--output-dir", &s(&t.join("long"))]),
        &["--prompt is", "more than the 16", "the first 16 are used"],
    ));

    // --- stage files ---
    let stage_dir = |name: &str, corrupt: &dyn Fn(&Path)| -> PathBuf {
        let dir = t.join(name);
        copy_dir(&good, &dir);
        corrupt(&dir);
        dir
    };
    let d = stage_dir("s_noconfig", &|d| std::fs::remove_file(d.join("generation_config.json")).unwrap());
    rows.push(fails("generation_config.json missing", os(&["stage2", "--input-dir", &s(&d)]), &["generation_config.json", "stage 1"], Some(&d)));
    let d = stage_dir("s_badconfig", &|d| edit_json(&d.join("generation_config.json"), |c| c["max_sequence_length"] = "long".into()));
    rows.push(fails("generation_config.json field of the wrong type", os(&["stage2", "--input-dir", &s(&d)]), &["generation_config.json", "max_sequence_length"], Some(&d)));
    let d = stage_dir("s_othermodel", &|d| edit_json(&d.join("generation_config.json"), |c| c["model_id"] = "cogvideox-tiny".into()));
    rows.push(fails("stage files from another family", os(&["stage2", "--input-dir", &s(&d)]), &["stage1_embeddings.safetensors", "wan model", "cogvideox model"], Some(&d)));
    let d = stage_dir("s_shapes", &|d| {
        let z = vidlower_runtime::tensor::HostTensor::zeros(vidlower_ir::DType::BF16, vec![1, 512, 7]).unwrap();
        vidlower_runtime::safetensors_io::save(&d.join("stage1_embeddings.safetensors"), &[("prompt_embeds".into(), z.clone()), ("negative_prompt_embeds".into(), z)]).unwrap();
    });
    rows.push(fails("stage file with the wrong shapes", os(&["stage2", "--input-dir", &s(&d)]), &["prompt_embeds", "expected [1, L, 32]", "[1, 512, 7]"], Some(&d)));
    let d = stage_dir("s_latents", &|d| {
        let b = std::fs::read(d.join("stage2_latents.safetensors")).unwrap();
        std::fs::write(d.join("stage2_latents.safetensors"), &b[..b.len() - 8]).unwrap();
    });
    rows.push(fails("stage 2 latents truncated", os(&["stage3", "--input-dir", &s(&d)]), &["stage2_latents.safetensors", "truncated"], Some(&d)));
    let d = stage_dir("s_disk", &|_| {});
    rows.push(Row {
        case: "full disk while writing a stage file",
        args: os(&["stage1", "--model", "wan2.1-tiny", "--prompt", "another", "--output-dir", &s(&d)]),
        want: Want::Fails(strings(&["stage1_embeddings.safetensors", "File too large"])),
        keep: Some(d.clone()),
        file_size_limit_kib: Some(8),
    });

    // --- executable cache ---
    let ex = t.join("exe_example");
    let ex_s = s(&ex);
    let compile = |cache: &str| os(&["compile", "--cache-dir", cache]);
    rows.push(succeeds("(setup) example compiled into a cache", compile(&ex_s), &["compiled in"]));
    rows.push(Row { case: "corrupt executable-cache entry (self-heals)", args: vec![], want: Want::Succeeds(vec![]), keep: None, file_size_limit_kib: None });
    let not_a_dir = t.join("cache_file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    rows.push(fails("cache directory is a file", compile(&s(&not_a_dir)), &["cache_file"], None));
    rows.push(Row { case: "read-only cache directory", args: vec![], want: Want::Succeeds(vec![]), keep: None, file_size_limit_kib: None });

    // --- plugins, meshes, rules, IR ---
    let fake = t.join("not_a_plugin.so");
    std::fs::write(&fake, b"hello").unwrap();
    rows.push(fails("plugin path not a PJRT plugin", os(&["compile", "--plugin", &s(&fake)]), &["not_a_plugin.so"], None));
    match old_api_plugin(t) {
        Some(lib) => rows.push(fails("plugin of too old an API", os(&["compile", "--plugin", &s(&lib)]), &["old_plugin.so", "C API 0.54", "0.81"], None)),
        None => eprintln!("skipping `plugin of too old an API`: no C compiler (cc)"),
    }
    rows.push(fails("--mesh larger than the devices", preset(&["--mesh", "tp=4096"]), &["--mesh", "4096"], g));
    let rules = t.join("rules_bad.json");
    std::fs::write(&rules, "[{\"pattern\": ").unwrap();
    rows.push(fails("rules file does not parse", preset(&["--mesh", "tp=2", "--rules", &s(&rules)]), &["rules_bad.json"], g));
    let axis = t.join("rules_axis.json");
    std::fs::write(&axis, "[{\"pattern\": \"to_q\", \"dims\": [\"zz\"]}]").unwrap();
    rows.push(fails("rules file names an unknown axis", preset(&["--mesh", "tp=2", "--rules", &s(&axis)]), &["rules_axis.json", "zz"], g));
    let ir = t.join("bad_parse.ir");
    std::fs::write(&ir, "graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = exp(%0 : f32[2]\n}\n").unwrap();
    rows.push(fails("IR file does not parse", os(&["dump-ir", "--ir", &s(&ir)]), &["bad_parse.ir", "line 3, column"], None));
    let ir = t.join("bad_verify.ir");
    std::fs::write(&ir, "graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = exp(%0) : f32[3]\n}\n").unwrap();
    rows.push(fails("IR file does not verify", os(&["dump-ir", "--ir", &s(&ir)]), &["bad_verify.ir", "%1", "f32[3]"], None));

    let mut failed = Vec::new();
    let mut table = String::from(DOC_HEAD);
    for row in &rows {
        let (problem, message) = match row.case {
            "corrupt executable-cache entry (self-heals)" => corrupt_cache_heals(&ex),
            "read-only cache directory" => read_only_cache_warns(&ex),
            _ => check(&cache, row),
        };
        failed.extend(problem);
        let exit = if matches!(row.want, Want::Fails(_)) { "1" } else { "0" };
        let message = message.replace(&s(t), "$TMP").replace('|', "\\|");
        table.push_str(&format!("| {} | {exit} | `` {message} `` |\n", row.case));
    }
    // `VIDLOWER_BAD_INPUTS_TABLE=$PWD/docs/bad_inputs.md` rewrites the docs page from this run.
    if let Some(path) = std::env::var_os("VIDLOWER_BAD_INPUTS_TABLE") {
        std::fs::write(path, &table).unwrap();
    }
    assert!(rows.len() >= 30, "the table has {} rows", rows.len());
    assert!(failed.is_empty(), "{} of {} rows failed:\n{}", failed.len(), rows.len(), failed.join("\n"));
}

fn with_cache(args: &[&str], cache: &Path) -> Vec<OsString> {
    let mut a = os(args);
    a.extend([OsString::from("--cache-dir"), cache.as_os_str().to_owned()]);
    a
}

/// Flips a byte of every entry in `cache`: the next compile says so and recompiles.
fn corrupt_cache_heals(cache: &Path) -> (Option<String>, String) {
    for e in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        let mut b = std::fs::read(e.path()).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
        std::fs::write(e.path(), b).unwrap();
    }
    let row = succeeds("corrupt executable-cache entry (self-heals)", with_cache(&["compile"], cache), &["was corrupt", "replaced"]);
    check(cache, &row)
}

/// A cache directory nobody may write: a hit is served, a miss compiles and warns.
fn read_only_cache_warns(cache: &Path) -> (Option<String>, String) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cache, std::fs::Permissions::from_mode(0o555)).unwrap();
    // As root the mode is not enforced; the run must still succeed.
    let enforced = std::fs::write(cache.join("probe"), b"").is_err();
    let _ = std::fs::remove_file(cache.join("probe"));
    let (hit, _) = check(cache, &succeeds("read-only cache directory (hit)", with_cache(&["compile"], cache), &["cache hit"]));
    let want: &[&str] = if enforced { &["could not store the executable"] } else { &[] };
    let (miss, message) = check(cache, &succeeds("read-only cache directory (miss)", with_cache(&["compile", "--exp2-softmax", "on"], cache), want));
    let _ = std::fs::set_permissions(cache, std::fs::Permissions::from_mode(0o755));
    let message = if enforced { message } else { "(not checked: running as root, the mode is not enforced; the run succeeds)".into() };
    (hit.or(miss), message)
}
