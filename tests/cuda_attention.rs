//! `cudnn_attention` end to end: the StableHLO module it leads to (a golden file: the text the
//! CUDA plugin compiles), the CPU plugin's refusal of the cuDNN custom call (a clear compile error),
//! and, wherever a CUDA plugin and an NVIDIA device are found, cuDNN attention against dense
//! attention (`decompose`) on the CUDA plugin for bf16 shapes with and without masks and with the
//! causal window. Without CUDA the last test says what it looked for, records the skip and passes (fails under
//! `VIDLOWER_REQUIRE_CUDA=1`; DESIGN.md). `--attention auto` on a CUDA target is checked here
//! without a GPU: the module it emits is built and verified on the CPU.

mod common;
#[path = "common/cuda.rs"]
mod cuda;

use vidlower_ir::text::parse;
use vidlower_ir::Graph;
use vidlower_passes::pipeline_options::PipelineOptions;
use vidlower_passes::Target;
use vidlower_runtime::pjrt::CompileOptions;
use vidlower_runtime::safetensors_io;
use vidlower_runtime::tensor::HostTensor;

const CUDNN: &[&str] = &["cudnn_attention", "decompose", "canonicalize", "cse", "dce"];
const DENSE: &[&str] = &["decompose", "canonicalize", "cse", "dce"];

/// One bf16 attention: q [b, h, sq, d], k and v [b, h, sk, d]; `mask`: "" (none), "bool" (key
/// padding [b, 1, 1, sk]) or "float" (a bias [1, h, sq, sk]); `causal`: window (-1, 0).
struct Case {
    b: i64,
    h: i64,
    sq: i64,
    sk: i64,
    d: i64,
    mask: &'static str,
    causal: bool,
}

impl Case {
    fn ir(&self) -> String {
        let Case { b, h, sq, sk, d, .. } = *self;
        let (mask_input, mask_arg) = match self.mask {
            "bool" => (format!("  %3 = input \"mask\" : i1[{b},1,1,{sk}]\n"), ", %3"),
            "float" => (format!("  %3 = input \"mask\" : bf16[1,{h},{sq},{sk}]\n"), ", %3"),
            _ => (String::new(), ""),
        };
        let window = if self.causal { ", window=[-1, 0]" } else { "" };
        let a = if self.mask.is_empty() { 3 } else { 4 };
        let scale = 1.0 / (d as f64).sqrt();
        let kind = if sq == sk { "self" } else { "cross" };
        format!(
            "graph @attn {{\n  %0 = input \"q\" : bf16[{b},{h},{sq},{d}]\n  %1 = input \"k\" : bf16[{b},{h},{sk},{d}]\n  %2 = input \"v\" : bf16[{b},{h},{sk},{d}]\n{mask_input}  %{a} = attention(%0, %1, %2{mask_arg}) {{kind={kind}, scale={scale:?}, mask={}{window}}} : bf16[{b},{h},{sq},{d}]\n  output \"o\" = %{a}\n}}\n",
            !self.mask.is_empty()
        )
    }

    /// Seeded inputs; a boolean mask keeps the first keys of every row (no row fully masked,
    /// where dense gives NaN and cuDNN an average) and drops ~30% of the rest.
    fn inputs(&self, g: &Graph) -> Vec<(String, HostTensor)> {
        let sig = vidlower_runtime::program::Signature::of(g);
        sig.params
            .iter()
            .map(|(name, _, ty)| {
                let mut v = vidlower_frontends::random_weights::random_input(9, name, ty);
                if name == "mask" && ty.dtype == vidlower_ir::DType::I1 {
                    let sk = self.sk as usize;
                    v.iter_mut().enumerate().for_each(|(i, x)| *x = if i % sk < 8 || *x > -0.4 { 1.0 } else { 0.0 });
                } else {
                    v.iter_mut().for_each(|x| *x *= 2.0);
                }
                (name.clone(), HostTensor::from_f32(ty.shape.clone(), &v).unwrap().convert(ty.dtype))
            })
            .collect()
    }
}

const CASES: &[Case] = &[
    Case { b: 2, h: 4, sq: 128, sk: 128, d: 64, mask: "", causal: false },
    Case { b: 1, h: 2, sq: 100, sk: 77, d: 128, mask: "bool", causal: false },
    Case { b: 1, h: 3, sq: 64, sk: 64, d: 32, mask: "float", causal: true },
    Case { b: 2, h: 2, sq: 48, sk: 80, d: 64, mask: "", causal: true },
];

#[test]
fn emitted_module_snapshot() {
    let (g, module) = common::lower(parse(&CASES[1].ir()).unwrap(), CUDNN);
    assert_eq!(g.op_counts().get("custom_call"), Some(&1));
    assert!(module.contains("call_target_name = \"__cudnn$fmhaScaleBiasSoftmax\""), "{module}");
    assert!(module.contains("result_layouts = [dense<[3, 2, 1, 0]> : tensor<4xindex>, dense<[0]> : tensor<1xindex>]"));
    #[cfg(feature = "mlir")]
    vidlower_backends::mlir_verify::verify_module(&module).unwrap_or_else(|e| panic!("{e}\n{module}"));
    // A golden file, as insta would keep it (the root crate has no insta): on a change the new
    // text is written next to it as `.new`, to review and accept by renaming.
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cudnn_attention_module.mlir");
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    if want != module {
        std::fs::write(golden.with_extension("mlir.new"), &module).unwrap();
        panic!("{} differs from the emitted module (written to .mlir.new):\n{module}", golden.display());
    }
}

/// A joint attention (text and video tokens in one sequence) with a key padding mask, in `dtype`.
fn joint_attention(dtype: &str) -> String {
    format!(
        "graph @joint {{\n  %0 = input \"q\" : {dtype}[1,2,96,64]\n  %1 = input \"k\" : {dtype}[1,2,96,64]\n  %2 = input \"v\" : {dtype}[1,2,96,64]\n  %3 = input \"mask\" : i1[1,1,1,96]\n  %4 = attention(%0, %1, %2, %3) {{kind=joint, scale=0.125, mask=true}} : {dtype}[1,2,96,64]\n  output \"o\" = %4\n}}\n"
    )
}

/// The standard pipeline for `target` with `--attention auto`, lowered to StableHLO (no plugin).
fn auto_module(ir: &str, target: Target) -> (Graph, String) {
    let options = PipelineOptions { target, ..Default::default() };
    let lowered = vidlower_runtime::lowering::lower(parse(ir).unwrap(), options.pipeline(), vidlower_backends::ShardingFormat::Shardy, vidlower_passes::DumpAfter::None, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
    (lowered.graph, lowered.module)
}

#[test]
fn auto_on_cuda_takes_cudnn_for_bf16_joint_attention_with_a_mask_and_not_for_f32() {
    let (g, module) = auto_module(&joint_attention("bf16"), Target::Cuda);
    assert_eq!(g.op_counts().get("custom_call"), Some(&1), "{module}");
    assert!(module.contains("call_target_name = \"__cudnn$fmhaScaleBiasSoftmax\""), "{module}");
    #[cfg(feature = "mlir")]
    vidlower_backends::mlir_verify::verify_module(&module).unwrap_or_else(|e| panic!("{e}\n{module}"));
    // The plan says so too, per op, as `compile --explain` prints it.
    let plan = PipelineOptions { target: Target::Cuda, ..Default::default() }.attention_plan(parse(&joint_attention("bf16")).unwrap(), None).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].decision.to_string(), "cudnn: bf16, head_dim 64, mask as bias");

    let (g, module) = auto_module(&joint_attention("f32"), Target::Cuda);
    assert!(!module.contains("__cudnn") && !g.op_counts().contains_key("custom_call"), "f32 stays dense: {module}");
    // On CPU and TPU, bf16 too stays dense (96 keys), and the module runs on the CPU plugin.
    for target in [Target::Cpu, Target::Tpu] {
        let (_, module) = auto_module(&joint_attention("bf16"), target);
        assert!(!module.contains("__cudnn"), "{target}: {module}");
        common::cpu_client(1).compile(&module, &CompileOptions::single_device()).unwrap_or_else(|e| panic!("{target}: {e}"));
    }
}

#[test]
fn cpu_plugin_refuses_the_cudnn_custom_call() {
    // The custom call exists only in XLA's CUDA backend; the CPU plugin names it when compiling.
    let (_, module) = common::lower(parse(&CASES[0].ir()).unwrap(), CUDNN);
    let Err(err) = common::cpu_client(1).compile(&module, &CompileOptions::single_device()) else {
        panic!("the CPU plugin compiled a cuDNN custom call")
    };
    println!("CPU plugin: {err}");
    let msg = err.to_string();
    assert!(msg.contains("__cudnn$fmhaSoftmax") && msg.contains("custom call"), "{msg}");
}

#[test]
fn cudnn_matches_dense_on_cuda() {
    let Some(cuda) = cuda::cuda_plugin_or_skip("cuda_attention::cudnn_matches_dense_on_cuda") else { return };
    let cuda = cuda.to_str().expect("a UTF-8 plugin path");
    for (i, case) in CASES.iter().enumerate() {
        let root = tempfile::tempdir().unwrap();
        let ir = root.path().join("attention.ir");
        std::fs::write(&ir, case.ir()).unwrap();
        let inputs = root.path().join("inputs.safetensors");
        safetensors_io::save(&inputs, &case.inputs(&parse(&case.ir()).unwrap())).unwrap();
        let run = |passes: &[&str], dir: &str| {
            let dir = root.path().join(dir);
            std::fs::create_dir(&dir).unwrap();
            let (ir, inputs, passes) = (ir.to_str().unwrap(), inputs.to_str().unwrap(), passes.join(","));
            cuda::exec_on(cuda, &dir, &["--ir", ir, "--inputs", inputs, "--passes", &passes], "o")
        };
        let (fused, dense) = (run(CUDNN, "cudnn"), run(DENSE, "dense"));
        assert_eq!((fused.dtype, &fused.dims), (dense.dtype, &dense.dims));
        let err = common::max_rel_err(&fused.to_f64_vec(), &dense.to_f64_vec());
        println!("case {i} (mask {:?}, causal {}): cuDNN vs dense max rel err {err:e}", case.mask, case.causal);
        // Both round to bf16 (8 mantissa bits, 3.9e-3) and order the sums differently; a wrong
        // layout, scale or mask is off by far more.
        assert!(err < 3e-2, "case {i}: cuDNN vs dense max rel err {err:e}");
    }
}
