//! The graph commands on model components, as a user runs them: `exec` of each Wan component on
//! the golden inputs against diffusers' outputs, `dump-ir` of a component after a pass,
//! `compile` of both VAE step graphs into the cache, `compile --explain`'s attention lines, a stage
//! served from what `compile` cached, and one clear line for bad flags and inputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vidlower_ir::DType;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::tensor::HostTensor;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/wan")
}

/// Runs vidlower with its executable cache in `root/executables`.
fn vidlower(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidlower"));
    cmd.args(args);
    if matches!(args.first(), Some(&"compile" | &"exec" | &"bench")) {
        cmd.arg("--cache-dir").arg(root.join("executables"));
    }
    cmd.output().expect("vidlower runs")
}

fn ok(o: Output) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "vidlower failed:\n{out}\n{err}");
    out
}

/// The one `error:` line of a failed run; asserts nothing was done before it.
fn fails(o: Output) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(!o.status.success(), "expected a failure:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// `exec` of `component` on the golden `io` file in `dtype`: (output tensor, golden tensor).
fn exec_golden(component: &str, io: &str, dtype: &str, output: &str, golden_key: &str) -> (HostTensor, HostTensor) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let (model, inputs, out) = (golden().join("model"), golden().join(io), r.join("out.safetensors"));
    let args = ["exec", "--model-dir", model.to_str().unwrap(), "--component", component, "--inputs", inputs.to_str().unwrap()];
    let log = ok(vidlower(r, &[&args[..], &["--dtype", dtype, "--output", out.to_str().unwrap()]].concat()));
    assert!(log.contains(&format!("{component}: {dtype}")), "{log}");
    let mut got = safetensors_io::load(&out).unwrap();
    let want = safetensors_io::load(&inputs).unwrap().remove(golden_key).unwrap();
    (got.remove(output).unwrap_or_else(|| panic!("no `{output}` in the output: {log}")), want)
}

fn rel_err(got: &HostTensor, want: &HostTensor) -> f64 {
    assert_eq!(got.dims, want.dims);
    common::max_rel_err(&got.to_f64_vec(), &want.to_f64_vec())
}

#[test]
fn exec_transformer_matches_diffusers_at_f32_and_bf16() {
    // transformer_io.safetensors holds int64 `timestep` as the pipeline passes it.
    let (got, want) = exec_golden("transformer", "transformer_io.safetensors", "f32", "sample", "sample");
    let err = rel_err(&got, &want);
    eprintln!("exec transformer f32: max rel err {err:e}");
    assert!(got.dtype == DType::F32 && err < 1e-4, "f32 max rel err {err:e}");
    // bf16: the bound of tests/wan_transformer_golden.rs (measured 2.3e-2, diffusers' own bf16 run 2.0e-2).
    let (got, want) = exec_golden("transformer", "transformer_io.safetensors", "bf16", "sample", "sample");
    let err = rel_err(&got, &want);
    eprintln!("exec transformer bf16: max rel err {err:e}");
    assert!(got.dtype == DType::BF16 && err < 6e-2, "bf16 max rel err {err:e}");
}

#[test]
fn exec_text_encoder_matches_transformers() {
    let (got, want) = exec_golden("text_encoder", "text_encoder_io.safetensors", "f32", "last_hidden_state", "last_hidden_state");
    let err = rel_err(&got, &want);
    eprintln!("exec text_encoder f32: max rel err {err:e}");
    assert!(err < 1e-4, "max rel err {err:e}");
}

#[test]
fn exec_vae_decoder_matches_diffusers() {
    let (got, want) = exec_golden("vae_decoder", "vae_decode_io.safetensors", "f32", "sample", "sample");
    let err = rel_err(&got, &want);
    eprintln!("exec vae_decoder f32: max rel err {err:e}");
    assert!(err < 1e-4, "max rel err {err:e}");
}

#[test]
fn exec_defaults_to_the_stored_dtype_and_checks_inputs() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let model = golden().join("model");
    let m = model.to_str().unwrap();
    let io = safetensors_io::load(&golden().join("transformer_io.safetensors")).unwrap();
    let file = r.join("in.safetensors");
    let f = file.to_str().unwrap();
    let exec = |component: &str| vidlower(r, &["exec", "--model-dir", m, "--component", component, "--inputs", f]);

    // The golden checkpoint is stored in f32.
    let keep = |names: &[&str]| -> Vec<(String, HostTensor)> { names.iter().map(|n| (n.to_string(), io[*n].clone())).collect() };
    safetensors_io::save(&file, &keep(&["hidden_states", "timestep", "encoder_hidden_states"])).unwrap();
    let log = ok(exec("transformer"));
    assert!(log.contains("transformer: f32, batch 2, latents 3x4x6") && log.contains("output sample: f32[2,16,3,4,6]"), "{log}");

    // A missing tensor: named, with what the component takes.
    safetensors_io::save(&file, &keep(&["hidden_states", "encoder_hidden_states"])).unwrap();
    let e = fails(exec("transformer"));
    assert!(e.contains("no tensor `timestep`") && e.contains("timestep [B]") && e.contains("in.safetensors"), "{e}");

    // A wrong shape: the tensor, what was expected, what the file has.
    let text = io["encoder_hidden_states"].clone();
    let short = HostTensor { dims: vec![2, 8, 64], ..text };
    let mut tensors = keep(&["hidden_states", "timestep"]);
    tensors.push(("encoder_hidden_states".into(), short));
    safetensors_io::save(&file, &tensors).unwrap();
    let e = fails(exec("transformer"));
    assert!(e.contains("`encoder_hidden_states`") && e.contains("[2, L, 32]") && e.contains("f32[2,8,64]"), "{e}");

    // Token ids outside the vocabulary are refused before anything runs.
    let ids = HostTensor::from_slice([1, 3], &[1i64, 400, 2]).unwrap();
    safetensors_io::save(&file, &[("input_ids".into(), ids)]).unwrap();
    let e = fails(exec("text_encoder"));
    assert!(e.contains("token id 400") && e.contains("[0, 400)"), "{e}");

    let e = fails(vidlower(r, &["exec", "--model-dir", m, "--component", "transformer"]));
    assert!(e.contains("--inputs"), "{e}");
    let e = fails(vidlower(r, &["exec", "--model-dir", m, "--inputs", f]));
    assert!(e.contains("--component"), "{e}");
    let e = fails(vidlower(r, &["exec", "--model-dir", m, "--component", "transformer", "--inputs", f, "--height", "64"]));
    assert!(e.contains("--height") && e.contains("--inputs"), "{e}");
}

#[test]
fn dump_ir_of_a_component_after_decompose_has_no_composites() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let args = ["dump-ir", "--model", "wan2.1-tiny", "--component", "transformer", "--height", "32", "--width", "48", "--frames", "5"];
    let before = ok(vidlower(r, &args));
    let graph = vidlower_ir::text::parse(&before).expect("dump-ir prints IR that parses back");
    assert!(graph.nodes.iter().any(|n| n.op.is_composite()), "the transformer is built with composite ops");
    // 2 latent frames of 4x6, batch 2 (CFG), the preset's 512 text tokens.
    assert!(before.contains("input \"hidden_states\" : f32[2,16,2,4,6]") && before.contains("f32[2,512,32]"), "{before}");

    let after = ok(vidlower(r, &[&args[..], &["--after", "decompose"]].concat()));
    let (header, body) = after.split_once('\n').unwrap();
    assert_eq!(header, "// ----- IR after decompose -----");
    let graph = vidlower_ir::text::parse(body).expect("the dump parses back");
    let composite: Vec<&str> = graph.nodes.iter().filter(|n| n.op.is_composite()).map(|n| n.op.name()).collect();
    assert!(composite.is_empty(), "composite ops after decompose: {composite:?}");

    // vae_decoder is two graphs, each under its own header; one of them alone parses back.
    let both = ok(vidlower(r, &["dump-ir", "--model", "wan2.1-tiny", "--component", "vae_decoder", "--height", "32", "--width", "32"]));
    assert!(both.starts_with("// ===== vae_decoder (first step) =====\ngraph @wan_vae_decode_first {"), "{}", &both[..200]);
    assert!(both.contains("// ===== vae_decoder (later steps) =====\ngraph @wan_vae_decode_step {"));
    let first = ok(vidlower(r, &["dump-ir", "--model", "wan2.1-tiny", "--component", "vae_decoder_first", "--height", "32", "--width", "32"]));
    assert!(vidlower_ir::text::parse(&first).is_ok());
    assert!(first.contains("input \"z\" : f32[1,16,1,4,4]"), "{first}");

    // The example graph keeps its flags.
    let example = ok(vidlower(r, &["dump-ir", "--model", "example", "--batch", "1", "--seq", "8", "--dtype", "bf16"]));
    assert!(example.starts_with("graph @example_block {") && example.contains("bf16[1,8,64]"), "{example}");
}

#[test]
fn compile_vae_decoder_twice_hits_the_cache_for_both_graphs() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let args = ["compile", "--model", "wan2.1-tiny", "--component", "vae_decoder", "--height", "32", "--width", "48"];
    let first = ok(vidlower(r, &args));
    assert_eq!(first.matches("executable: compiled in").count(), 2, "{first}");
    assert!(first.contains("vae_decoder (first step)") && first.contains("vae_decoder (later steps)"), "{first}");
    let second = ok(vidlower(r, &args));
    assert_eq!(second.matches("executable: cache hit").count(), 2, "{second}");
    assert!(!second.contains("compiled in"), "{second}");
}

#[test]
fn compile_explain_lists_each_attention_op_with_its_lowering_for_the_plugin() {
    let root = tempfile::tempdir().unwrap();
    let args = ["compile", "--explain", "--model", "wan2.1-tiny", "--component", "transformer", "--height", "32", "--width", "48", "--frames", "5"];
    let out = ok(vidlower(root.path(), &args));
    assert!(out.contains("standard pipeline: attention auto on cpu -> vidlower's cpu kernel where it applies, else blockwise above 512 keys, dense below"), "{out}");
    // Two blocks, each a self-attention over the 12 video tokens and a cross-attention over the
    // 512 text tokens; on CPU, none masked or windowed, so all to the CPU kernel.
    assert!(out.contains("attention ops: 4\n"), "{out}");
    let self_line = "self q f32[2,2,12,12] k f32[2,2,12,12] mask none -> cpu-kernel: f32, no mask, no window";
    let cross_line = "cross q f32[2,2,12,12] k f32[2,2,512,12] mask none -> cpu-kernel: f32, no mask, no window";
    for (i, line) in [self_line, cross_line, self_line, cross_line].iter().enumerate() {
        assert!(out.contains(&format!("    {}. {line}\n", i + 1)), "op {}: {out}", i + 1);
    }
}

#[test]
fn compile_ahead_of_time_makes_the_stage_a_cache_hit() {
    // The stages make their pipeline options for the plugin's platform as `compile` does, so
    // the executable `compile` put in the cache is the one stage 1 asks for.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let compiled = ok(vidlower(r, &["compile", "--model", "wan2.1-tiny", "--component", "text_encoder", "--dtype", "bf16"]));
    assert!(compiled.contains("executable: compiled in"), "{compiled}");
    let out = r.join("stage_outputs");
    let (out, cache) = (out.to_str().unwrap(), r.join("executables"));
    let stage1 = ok(vidlower(r, &["stage1", "--model", "wan2.1-tiny", "--prompt", "a fox", "--output-dir", out, "--cache-dir", cache.to_str().unwrap()]));
    assert!(stage1.contains("text encoders lowered with attention auto on cpu -> vidlower's cpu kernel where it applies, else blockwise above 512 keys"), "{stage1}");
    assert!(stage1.contains("text_encoder: passes") && stage1.contains("cache hit"), "{stage1}");
}

#[test]
fn bad_flags_give_one_clear_line_before_any_work() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let cases: &[(&[&str], &str)] = &[
        (&["compile", "--model", "wan2.1-tiny", "--component", "transformer", "--frames", "10"], "--frames 10: must be 4n+1"),
        (&["compile", "--model", "wan2.1-tiny", "--component", "vae_decoder", "--height", "100"], "--height 100: must be a positive multiple of 16"),
        (&["dump-ir", "--model", "wan2.1-tiny", "--component", "transformer", "--width", "8"], "--width 8"),
        (&["bench", "--model", "wan2.1-tiny", "--component", "transformer", "--frames", "0"], "--frames 0"),
        (&["dump-ir", "--model", "wan2.1-tiny", "--component", "text_encoder", "--height", "64"], "--height does not apply"),
        (&["dump-ir", "--model", "wan2.1-tiny", "--seq", "8"], "--max-sequence-length"),
        (&["compile", "--height", "64"], "example graph"),
        (&["compile", "--model", "example", "--component", "transformer"], "--component does not apply"),
        (&["dump-ir", "--model", "nope", "--component", "transformer"], "unknown model `nope`"),
        (&["compile", "--model", "wan2.1-tiny", "--component", "transformer", "--batch", "0"], "--batch must be at least 1"),
    ];
    for (args, needle) in cases {
        let o = vidlower(r, args);
        assert!(o.stdout.is_empty(), "{args:?} printed before failing: {}", String::from_utf8_lossy(&o.stdout));
        let e = fails(o);
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    // Nothing was compiled.
    assert!(!r.join("executables").exists() || std::fs::read_dir(r.join("executables")).unwrap().next().is_none());
}
