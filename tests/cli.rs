//! The `vidlower` binary as a user runs it: the executable cache (hit, identical results,
//! corrupt entries healed), IR dumps, and clear one-line errors for bad input.

use std::path::Path;
use std::process::{Command, Output};

/// Runs vidlower with its executable cache in `root/executables` (plugins are found as usual).
fn vidlower(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidlower"));
    cmd.args(args);
    if matches!(args.first(), Some(&"compile" | &"exec" | &"bench" | &"cache")) {
        cmd.arg("--cache-dir").arg(root.join("executables"));
    }
    cmd.output().expect("vidlower runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "vidlower failed:\n{}\n{}", stdout(&o), stderr(&o));
    stdout(&o)
}

#[test]
fn second_compile_is_a_cache_hit_with_identical_results_and_corruption_heals() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let out1 = r.join("out1.safetensors");
    let out2 = r.join("out2.safetensors");

    let first = ok(vidlower(r, &["exec", "--seed", "5", "--output", out1.to_str().unwrap()]));
    assert!(first.contains("executable: compiled in"), "{first}");
    let second = ok(vidlower(r, &["exec", "--seed", "5", "--output", out2.to_str().unwrap()]));
    assert!(second.contains("executable: cache hit"), "{second}");
    assert_eq!(std::fs::read(&out1).unwrap(), std::fs::read(&out2).unwrap(), "a cache hit gives identical results");

    let ls = ok(vidlower(r, &["cache", "ls"]));
    assert!(ls.contains("1 entries") && ls.contains("example_block"), "{ls}");

    // XLA_FLAGS reach the plugin's compiler, so other flags are another executable, not a hit.
    let mut flagged = Command::new(env!("CARGO_BIN_EXE_vidlower"));
    flagged.args(["compile", "--cache-dir"]).arg(r.join("executables")).env("XLA_FLAGS", "--xla_cpu_enable_fast_math=false");
    let flagged = ok(flagged.output().expect("vidlower runs"));
    assert!(flagged.contains("executable: compiled in"), "{flagged}");
    let flagged_ls = ok(vidlower(r, &["cache", "ls"]));
    assert!(flagged_ls.contains("2 entries"), "{flagged_ls}");
    // The flagged entry is not the plain run's: remove it for what follows.
    ok(vidlower(r, &["cache", "clear"]));
    ok(vidlower(r, &["compile"]));

    // Flip a byte in the middle of the cached executable: reported, deleted, recompiled.
    let entry = std::fs::read_dir(r.join("executables")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let healed = ok(vidlower(r, &["compile"]));
    assert!(healed.contains("was corrupt") && healed.contains("replaced"), "{healed}");
    let again = ok(vidlower(r, &["compile"]));
    assert!(again.contains("cache hit"), "{again}");

    // Truncated to nothing: same.
    std::fs::write(&entry, b"").unwrap();
    assert!(ok(vidlower(r, &["compile"])).contains("was corrupt"));

    let cleared = ok(vidlower(r, &["cache", "clear"]));
    assert!(cleared.contains("removed 1 entries"), "{cleared}");
    assert!(ok(vidlower(r, &["compile"])).contains("executable: compiled in"));
}

#[test]
fn dump_ir_after_passes_and_as_stablehlo() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let before = ok(vidlower(r, &["dump-ir"]));
    assert!(before.starts_with("graph @example_block {") && before.contains("attention("), "{before}");

    let after = ok(vidlower(r, &["dump-ir", "--after", "decompose"]));
    assert!(after.contains("// ----- IR after decompose -----") && !after.contains("attention("), "{after}");

    let all = ok(vidlower(r, &["dump-ir", "--after", "all"]));
    for pass in vidlower_passes::DEFAULT_PIPELINE {
        assert!(all.contains(&format!("IR after {pass} -----")), "missing dump after {pass}");
    }

    // What dump-ir prints parses back: feed it in as --ir.
    let file = r.join("g.ir");
    std::fs::write(&file, after.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    let hlo = ok(vidlower(r, &["dump-ir", "--ir", file.to_str().unwrap(), "--format", "stablehlo"]));
    assert!(hlo.contains("func.func public @main") && hlo.contains("stablehlo.dot_general"), "{hlo}");
}

#[test]
fn bad_input_gives_one_clear_line() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();

    let o = vidlower(r, &["compile", "--passes", "dce,frobnicate"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("frobnicate") && e.contains("dce") && !e.contains("panicked"), "{e}");

    let bad = r.join("bad.ir");
    std::fs::write(&bad, "graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = exp(%9) : f32[2]\n}\n").unwrap();
    let o = vidlower(r, &["dump-ir", "--ir", bad.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("bad.ir") && e.contains("%9 is not defined"), "{e}");

    let o = vidlower(r, &["exec", "--inputs", r.join("nope.safetensors").to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("nope.safetensors") && !e.contains("panicked"), "{e}");

    let o = vidlower(r, &["compile", "--plugin", r.join("missing.so").to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("missing.so"), "{e}");

    let o = vidlower(r, &["dump-ir", "--after", "cse", "--passes", "dce"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("cse"), "{e}");

    let o = vidlower(r, &["compile", "--gpu-memory-fraction", "0.5"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("CUDA plugin"), "GPU flags on the CPU plugin are refused: {e}");
    let o = vidlower(r, &["compile", "--gpu-memory-fraction", "1.5"]);
    assert!(!o.status.success() && stderr(&o).contains("fraction"));

    // A failed exec leaves no output file behind.
    let out = r.join("never.safetensors");
    let o = vidlower(r, &["exec", "--inputs", bad.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert!(!o.status.success() && !out.exists());
}

#[test]
fn exec_takes_inputs_from_safetensors_and_checks_them() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let inputs = r.join("in.safetensors");
    let zeros = vidlower_runtime::tensor::HostTensor::zeros(vidlower_ir::DType::F32, vec![2, 32, 64]).unwrap();
    vidlower_runtime::safetensors_io::save(&inputs, &[("hidden_states".into(), zeros)]).unwrap();
    let out = ok(vidlower(r, &["exec", "--inputs", inputs.to_str().unwrap()]));
    assert!(out.contains("output sample: f32[2,32,64]"), "{out}");

    let wrong = vidlower_runtime::tensor::HostTensor::zeros(vidlower_ir::DType::F32, vec![2, 16, 64]).unwrap();
    vidlower_runtime::safetensors_io::save(&inputs, &[("hidden_states".into(), wrong)]).unwrap();
    let o = vidlower(r, &["exec", "--inputs", inputs.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("hidden_states") && e.contains("f32[2,32,64]") && e.contains("f32[2,16,64]"), "{e}");
}

#[test]
fn plugin_lists_the_default_with_its_api_version_and_platform() {
    let root = tempfile::tempdir().unwrap();
    let out = ok(vidlower(root.path(), &["plugin"]));
    assert!(out.contains("* cpu") && out.contains("PJRT API 0.") && out.contains("platform cpu"), "{out}");
    let o = vidlower(root.path(), &["plugin", "install", "tpu"]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains("libtpu"), "{e}");
}

#[test]
fn pipeline_flags_shape_the_passes_and_keep_the_numbers() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // The standard pipeline on CPU: K smoothing, the CPU kernel for attention without mask or
    // window, blockwise for what is left if long, then decompose and the cleanups; exp2 on adds
    // the dense base-2 lowering.
    let all = ok(vidlower(r, &["dump-ir", "--after", "all", "--exp2-softmax", "on"]));
    for pass in ["k_smooth", "cpu_attention", "blockwise_attention", "exp2_softmax", "decompose", "canonicalize", "cse", "dce"] {
        assert!(all.contains(&format!("IR after {pass} -----")), "missing dump after {pass}");
    }
    let kernel = ok(vidlower(r, &["dump-ir", "--after", "blockwise_attention"]));
    assert!(kernel.contains("vidlower_cpu_attention_base2") && !kernel.contains("attention(") && !kernel.contains("while("), "{kernel}");
    // Sharded, the kernel is not used (XLA cannot partition it): 32 keys stay dense.
    let short = ok(vidlower(r, &["dump-ir", "--mesh", "dp=2", "--after", "blockwise_attention"]));
    assert!(short.contains("attention(") && !short.contains("while(") && !short.contains("custom_call("), "32 keys are not long: {short}");
    let blockwise = ok(vidlower(r, &["dump-ir", "--attention", "blockwise", "--bkv", "8", "--after", "blockwise_attention"]));
    assert!(blockwise.contains("while(") && !blockwise.contains("attention("), "{blockwise}");
    // --attention auto follows the target (dump-ir opens no plugin: --target, cpu by default):
    // on cuda a bf16 attention becomes cuDNN's custom call, an f32 one stays for the key rule;
    // on tpu no custom call, on cpu only the CPU kernel's.
    let cuda_bf16 = ok(vidlower(r, &["dump-ir", "--target", "cuda", "--dtype", "bf16", "--after", "cudnn_attention"]));
    assert!(cuda_bf16.contains("custom_call(") && !cuda_bf16.contains("attention("), "{cuda_bf16}");
    let cuda_f32 = ok(vidlower(r, &["dump-ir", "--target", "cuda", "--after", "cudnn_attention"]));
    assert!(!cuda_f32.contains("custom_call(") && cuda_f32.contains("attention("), "{cuda_f32}");
    let tpu = ok(vidlower(r, &["dump-ir", "--target", "tpu", "--dtype", "bf16", "--after", "all"]));
    assert!(!tpu.contains("IR after cudnn_attention") && !tpu.contains("custom_call("), "{tpu}");
    let cpu = ok(vidlower(r, &["dump-ir", "--target", "cpu", "--dtype", "bf16", "--after", "all"]));
    assert!(!cpu.contains("IR after cudnn_attention") && !cpu.contains("cudnn") && cpu.contains("vidlower_cpu_attention_base2"), "{cpu}");
    let o = vidlower(r, &["dump-ir", "--target", "gpu"]);
    assert!(!o.status.success() && stderr(&o).contains("unknown target `gpu`; expected one of cpu, cuda, tpu"), "{}", stderr(&o));
    let window = ok(vidlower(r, &["dump-ir", "--window-size", "4,2", "--after", "sliding_window"]));
    assert!(window.contains("window=[4, 2]"), "{window}");

    // The same numbers from every choice (f32): dense in the natural base without smoothing
    // against blockwise in base 2 with smoothing and key blocks of 8 in slices of 4.
    let run = |flags: &[&str], name: &str| {
        let out = r.join(name);
        let mut args = vec!["exec", "--output", out.to_str().unwrap()];
        args.extend_from_slice(flags);
        ok(vidlower(r, &args));
        let mut t = vidlower_runtime::safetensors_io::load(&out).unwrap();
        t.remove("sample").unwrap().to_f64_vec()
    };
    let plain = run(&["--attention", "dense", "--exp2-softmax", "off", "--k-smooth", "off"], "plain.safetensors");
    for (flags, name) in [
        (&["--attention", "blockwise", "--bkv", "8", "--bkv-compute", "4", "--bq", "16"][..], "blockwise.safetensors"),
        (&[][..], "standard.safetensors"),
        (&["--exp2-softmax", "on"][..], "exp2.safetensors"),
    ] {
        let got = run(flags, name);
        let err = got.iter().zip(&plain).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0.0, f64::max);
        assert!(err < 1e-5, "{flags:?}: max relative error {err:e} against plain dense attention");
    }

    // compile --explain names the choices; flags that the explicit --passes list would not reach
    // are refused, as are wrong values.
    let explained = ok(vidlower(r, &["compile", "--explain", "--attention", "blockwise"]));
    assert!(explained.contains("standard pipeline: attention blockwise (bq 3328, bkv 2816, bkv-compute 256), exp2 softmax auto (blockwise only), k smoothing on"), "{explained}");
    assert!(explained.contains("    1. self q f32[2,4,32,16] k f32[2,4,32,16] mask none -> blockwise: --attention blockwise"), "{explained}");
    let auto = ok(vidlower(r, &["compile", "--explain"]));
    assert!(auto.contains("standard pipeline: attention auto on cpu -> vidlower's cpu kernel where it applies, else blockwise above 512 keys, dense below"), "{auto}");
    assert!(auto.contains("attention ops: 1\n    1. self q f32[2,4,32,16] k f32[2,4,32,16] mask none -> cpu-kernel: f32, no mask, no window"), "{auto}");
    for (args, want) in [
        (&["compile", "--passes", "dce", "--attention", "dense"][..], "--attention shapes the standard pipeline"),
        (&["compile", "--attention", "flash"][..], "unknown attention lowering `flash`"),
        (&["compile", "--attention", "dense", "--bkv", "64"][..], "do not apply to --attention dense"),
        (&["compile", "--window-size", "4,x"][..], "LEFT,RIGHT"),
        (&["compile", "--k-smooth", "maybe"][..], "expected on or off"),
        (&["exec", "--plugin", "cpu", "--attention", "cudnn"][..], "--attention cudnn needs the CUDA plugin"),
    ] {
        let o = vidlower(r, args);
        let e = stderr(&o);
        assert!(!o.status.success() && e.contains(want) && !e.contains("panicked"), "{args:?}: {e}");
    }
}
