//! Emitted modules parse and verify in MLIR (melior, LLVM 22, unregistered dialects allowed);
//! broken modules give MLIR's diagnostics; bytecode and reprinting work on what we emit.
#![cfg(feature = "mlir")]

use vidlower_backends::mlir_verify::{reprint, to_bytecode, verify_module, MlirError};
use vidlower_backends::{emit_module, EmitError, EmitOptions, ShardingFormat};
use vidlower_ir::random_graph::random_graph;
use vidlower_ir::text::parse;
use vidlower_ir::*;

fn emit(g: &Graph) -> String {
    emit_module(g, &EmitOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_verifies(text: &str) {
    if let Err(e) = verify_module(text) {
        panic!("{e}\n--- module ---\n{text}");
    }
}

fn f32t(shape: &[i64]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

fn elementwise() -> Graph {
    let mut b = Builder::new("elementwise");
    let x = b.input("x", f32t(&[2, 3])).unwrap();
    let y = b.input("y", f32t(&[2, 3])).unwrap();
    let s = b.add(x, y).unwrap();
    let e = b.exp(s).unwrap();
    let m = b.mul_scalar(e, 0.5).unwrap();
    let l = b.logistic(m).unwrap();
    let c = b.compare(CompareDir::Gt, l, x).unwrap();
    let sel = b.select(c, l, y).unwrap();
    let h = b.convert(sel, DType::BF16).unwrap();
    let t = b.transpose(sel, &[1, 0]).unwrap();
    b.output("half", h);
    b.output("t", t);
    b.finish().unwrap()
}

fn matmul_and_reduce() -> Graph {
    let mut b = Builder::new("linear");
    let x = b.input("x", f32t(&[2, 5, 8])).unwrap();
    // torch nn.Linear: x [.., 8] . proj.weight [4, 8] (dim 1) + proj.bias [4]
    let w = b.weight("proj.weight", f32t(&[4, 8])).unwrap();
    let dims = DotDims { lhs_contract: vec![2], rhs_contract: vec![1], ..Default::default() };
    let y = b.dot_general(x, w, dims).unwrap();
    let bias = b.weight("proj.bias", f32t(&[4])).unwrap();
    let y = b.add(y, bias).unwrap();
    let s = b.reduce(y, ReduceKind::Sum, &[2]).unwrap();
    let m = b.reduce(y, ReduceKind::Max, &[0, 1]).unwrap();
    let mean = b.mean(y, &[1], true).unwrap();
    b.output("y", y);
    b.output("sum", s);
    b.output("max", m);
    b.output("mean", mean);
    b.finish().unwrap()
}

fn convolution() -> Graph {
    let mut b = Builder::new("conv3d");
    let x = b.input("x", f32t(&[1, 4, 3, 6, 6])).unwrap();
    let y = b.conv(x, "conv", 8, &[3, 3, 3], ConvAttrs::simple(3, 1), true).unwrap();
    let z = b.conv(y, "down", 8, &[1, 2, 2], ConvAttrs { strides: vec![1, 2, 2], ..ConvAttrs::simple(3, 0) }, false).unwrap();
    let p = b.pad(z, &[0, 0, 2, 0, 0], &[0, 0, 0, 0, 0], 0.0).unwrap();
    b.output("y", p);
    b.finish().unwrap()
}

/// ir/tests/text_round_trip.rs's every-op graph without its composite ops (softmax, attention,
/// norms, gelu): every primitive, a while loop with regions, a tuple-returning custom call, a sharded
/// weight.
const EVERY_PRIMITIVE: &str = include_str!("../../ir/tests/data/every_primitive.ir");

fn every_primitive(sharding: ShardingFormat) -> (Graph, String) {
    let g = parse(EVERY_PRIMITIVE).unwrap_or_else(|e| panic!("{e}"));
    let text = emit_module(&g, &EmitOptions { sharding }).unwrap_or_else(|e| panic!("{e}"));
    (g, text)
}

#[test]
fn builder_graphs_verify() {
    for g in [elementwise(), matmul_and_reduce(), convolution()] {
        assert_verifies(&emit(&g));
    }
}

#[test]
fn every_primitive_op_verifies() {
    let (g, text) = every_primitive(ShardingFormat::Gspmd);
    for name in ["while", "custom_call", "convolution", "dot_general", "reduce", "dynamic_update_slice", "iota", "pad"] {
        assert!(g.op_counts().contains_key(name), "graph lacks {name}");
    }
    assert!(text.contains("\"stablehlo.while\"") && text.contains("mhlo.sharding"));
    assert_verifies(&text);
    // Shardy: the sdy attributes (mesh, argument and per-value shardings, reshard) parse too.
    let (_, text) = every_primitive(ShardingFormat::Shardy);
    assert!(text.contains("\"sdy.mesh\"") && text.contains("\"sdy.sharding_constraint\"") && text.contains("#sdy.sharding<@mesh"));
    assert_verifies(&text);
}

/// Constants (dense, splat, scalar; non-finite and extreme values) and the init constants of
/// every reduction, for every dtype: MLIR parses each literal at its element type.
#[test]
fn constants_and_reductions_of_every_dtype_verify() {
    let dtypes = [DType::F32, DType::BF16, DType::F16, DType::F64, DType::I1, DType::I8, DType::U8, DType::I32, DType::I64];
    for dtype in dtypes {
        let mut b = Builder::new(format!("consts_{dtype}"));
        let values = if dtype.is_float() {
            vec![f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.0, 1e-300, 3.5e38, 1.0, -2.5e-5]
        } else if dtype == DType::I1 {
            vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
        } else if dtype == DType::U8 {
            vec![0.0, 255.0, 1.0, 2.0, 3.0, 4.0, 128.0, 7.0]
        } else {
            vec![-128.0, 127.0, 0.0, -1.0, 1.0, 2.0, 3.0, 4.0]
        };
        let c = b.constant(values, TensorType::new(dtype, vec![2, 4])).unwrap();
        let s = b.full(1.0, TensorType::new(dtype, vec![2, 4])).unwrap();
        let k = b.scalar(0.0, dtype).unwrap();
        let x = b.input("x", TensorType::new(dtype, vec![2, 4])).unwrap();
        let y = b.max(x, c).unwrap();
        let y = b.min(y, s).unwrap();
        b.output("c", y);
        b.output("k", k);
        for kind in [ReduceKind::Sum, ReduceKind::Max, ReduceKind::Min] {
            let r = b.reduce(y, kind, &[1]).unwrap();
            b.output(&format!("{kind:?}"), r);
        }
        let text = emit(&b.finish().unwrap());
        assert_verifies(&text);
    }
}

/// Random graphs (those without composite ops) emit modules that verify.
#[test]
fn random_graphs_verify() {
    let mut verified = 0;
    for seed in 0..1000u64 {
        let g = random_graph(seed);
        match emit_module(&g, &EmitOptions::default()) {
            Ok(text) => {
                if let Err(e) = verify_module(&text) {
                    panic!("seed {seed}: {e}\n--- module ---\n{text}");
                }
                verified += 1;
            }
            Err(EmitError::Composite { .. }) => {}
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    assert!(verified >= 30, "only {verified} random graphs were free of composites");
}

#[test]
fn return_type_mismatch_is_reported() {
    let text = emit(&elementwise());
    // The function says it returns bf16[2,3] first; return the f32 value in its place.
    let ret = text.lines().find(|l| l.contains("\"func.return\"")).unwrap().to_string();
    let broken_ret = ret.replacen("(tensor<2x3xbf16>, ", "(tensor<2x3xf32>, ", 1);
    assert_ne!(ret, broken_ret, "{ret}");
    let broken = text.replace(&ret, &broken_ret);
    let err = verify_module(&broken).unwrap_err();
    let msg = err.to_string();
    // The operand's type at its use differs from its definition: MLIR names the value and types.
    assert!(matches!(err, MlirError::Parse { .. }), "{msg}");
    let d = &err.diagnostics()[0];
    assert_eq!(d.severity, "error", "{msg}");
    let line = text.lines().position(|l| l == ret).unwrap() as u32 + 1;
    assert_eq!(d.line, Some(line), "{msg}");
    assert!(d.source_line.as_deref().unwrap().contains("func.return"), "{msg}");
    assert!(msg.contains("tensor<2x3xf32>") || msg.contains("tensor<2x3xbf16>"), "{msg}");
}

#[test]
fn return_arity_mismatch_is_a_verifier_error() {
    // Well-formed SSA, but func.return gives one value where the signature promises two.
    let text = emit(&elementwise());
    let ret = text.lines().find(|l| l.contains("\"func.return\"")).unwrap().to_string();
    let indent = &ret[..ret.len() - ret.trim_start().len()];
    let first = ret.trim_start()["\"func.return\"(".len()..].split(',').next().unwrap();
    let broken = text.replace(&ret, &format!("{indent}\"func.return\"({first}) : (tensor<2x3xbf16>) -> ()"));
    let err = verify_module(&broken).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("'func.return' op"), "{msg}");
    assert!(msg.contains("has 1 operands, but enclosing function (@main) returns 2"), "{msg}");
}

#[test]
fn garbage_is_reported() {
    let err = verify_module("this is not MLIR").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("MLIR failed to parse"), "{msg}");
    assert_eq!(err.diagnostics()[0].line, Some(1), "{msg}");

    let text = emit(&matmul_and_reduce());
    let truncated = &text[..text.len() / 2];
    let err = verify_module(truncated).unwrap_err();
    assert!(!err.diagnostics().is_empty(), "{err}");

    // An undefined SSA value.
    let err = verify_module(&text.replacen("(%arg0, ", "(%nope, ", 1)).unwrap_err();
    assert!(err.to_string().contains("%nope"), "{err}");

    assert!(matches!(verify_module("module {}\0"), Err(MlirError::Nul(9))));
}

#[test]
fn bytecode_has_the_magic() {
    let (_, text) = every_primitive(ShardingFormat::Shardy);
    let bytes = to_bytecode(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&bytes[..4], b"ML\xefR");
    assert!(bytes.len() > 100);
    // Broken text gives the parse error, not bytes.
    assert!(to_bytecode("module { garbage }").is_err());
}

#[test]
fn reprint_round_trips() {
    let (_, every) = every_primitive(ShardingFormat::Gspmd);
    let (_, every_sdy) = every_primitive(ShardingFormat::Shardy);
    for text in [emit(&elementwise()), emit(&matmul_and_reduce()), emit(&convolution()), every, every_sdy] {
        let again = reprint(&text).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.starts_with("\"builtin.module\"()"), "{again}");
        assert!(!again.contains("__elided__") && !again.contains("loc("), "{again}");
        assert_verifies(&again);
        // Printing is a fixed point after one round.
        assert_eq!(reprint(&again).unwrap(), again);
    }
}

/// The bytecode reads back (with `mlir-opt`, when LLVM 22's mlir-22-tools are installed) to the
/// module `reprint` gives.
#[test]
fn bytecode_reads_back_with_mlir_opt() {
    let prefix = std::env::var("MLIR_SYS_220_PREFIX").unwrap_or_else(|_| "/usr/lib/llvm-22".into());
    let mlir_opt = std::path::Path::new(&prefix).join("bin/mlir-opt");
    if !mlir_opt.exists() {
        eprintln!("skipped: {} not found (apt package mlir-22-tools)", mlir_opt.display());
        return;
    }
    let (_, text) = every_primitive(ShardingFormat::Shardy);
    let path = std::env::temp_dir().join(format!("vidlower-mlir-verify-{}.mlirbc", std::process::id()));
    std::fs::write(&path, to_bytecode(&text).unwrap()).unwrap();
    let out = std::process::Command::new(&mlir_opt)
        .args(["--allow-unregistered-dialect", "--mlir-print-op-generic"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.trim_end(), reprint(&text).unwrap().trim_end());
}
