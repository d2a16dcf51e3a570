//! `HunyuanVideo15Transformer3DModel` (text-to-video) against diffusers 0.42.1: the tiny random
//! checkpoint of `tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model/transformer` run on the
//! CPU plugin on the pipeline-shaped inputs of `tests/golden/hunyuanvideo15/transformer/`
//! (`tools/golden/make_hunyuanvideo15_transformer_goldens.py`): two video sizes, batch 2 with a
//! different MLLM and ByT5 mask per row (one row without glyph text: its ByT5 mask all 0). The output
//! and every block's output are compared, in f32 and bf16, with dense and blockwise attention; the
//! cuDNN lowering is built (CPU cannot run it) and checked to carry the mask; the real 480p config is
//! built at 480x848, 121 frames with the pipeline's text lengths.
//!
//! diffusers reorders each row's text tokens (valid first, by a data-dependent gather) and has 729
//! image tokens that text-to-video masks out; this graph keeps the text in input order (ByT5, MLLM)
//! without the image tokens (see `frontends/src/hunyuanvideo15/transformer.rs`). The golden's
//! `text_order` gives, per row, which of our text rows each of diffusers' (non-image) rows is, so the
//! text outputs are compared row by row, padded rows included.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vidlower_backends::{emit_module, EmitOptions};
use vidlower_frontends::hunyuanvideo15::rope::rotary_pos_embed;
use vidlower_frontends::hunyuanvideo15::transformer::{transformer, transformer_with_block_outputs, TransformerShape};
use vidlower_frontends::hunyuanvideo15::transformer_config::HunyuanVideo15TransformerConfig;
use vidlower_ir::{Builder, DType, Graph, LiteralData, Op, TensorType, ValueId};
use vidlower_passes::pipeline_options::{AttentionLowering, PipelineOptions};
use vidlower_passes::BlockwiseAttention;
use vidlower_runtime::pjrt::{Client, CompileOptions};
use vidlower_runtime::program::{ParamKind, Program, Signature};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

const CASES: [&str; 2] = ["", "resized."];

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hunyuanvideo15/hunyuanvideo1.5-480p-t2v/model/transformer")
}

fn io() -> BTreeMap<String, HostTensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/hunyuanvideo15/transformer/transformer_io.safetensors");
    vidlower_runtime::safetensors_io::load(&path).unwrap()
}

fn config() -> HunyuanVideo15TransformerConfig {
    vidlower_frontends::config::read_json(&model_dir().join("config.json")).unwrap()
}

fn client() -> &'static Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| common::cpu_client(1))
}

/// Every weight of `graph` from the checkpoint, in the graph's dtypes. The checkpoint's tensors the
/// graph leaves out must be exactly the image branch (`image_embedder.*`), which text-to-video masks
/// out entirely.
fn load_weights(graph: &Graph) -> HashMap<String, HostTensor> {
    let store = WeightStore::open(&model_dir()).unwrap();
    let weights: HashMap<_, _> = Signature::of(graph)
        .params
        .iter()
        .filter(|(_, kind, _)| *kind == ParamKind::Weight)
        .map(|(name, _, ty)| (name.clone(), store.load(name, ty).unwrap()))
        .collect();
    let mut unused: Vec<&str> = store.names().filter(|n| !weights.contains_key(*n)).collect();
    unused.sort();
    let image = ["norm_in.bias", "norm_in.weight", "linear_1.bias", "linear_1.weight", "linear_2.bias", "linear_2.weight", "norm_out.bias", "norm_out.weight"];
    let mut want: Vec<String> = image.iter().map(|n| format!("image_embedder.{n}")).collect();
    want.sort();
    assert_eq!(unused, want, "checkpoint tensors the graph does not use");
    weights
}

fn shape_of(io: &BTreeMap<String, HostTensor>, prefix: &str) -> TransformerShape {
    let hs = &io[&format!("{prefix}hidden_states")];
    let [batch, _, frames, height, width] = hs.dims[..] else { panic!("hidden_states dims {:?}", hs.dims) };
    let text_len = io[&format!("{prefix}encoder_hidden_states")].dims[1];
    let text_len_2 = io[&format!("{prefix}encoder_hidden_states_2")].dims[1];
    TransformerShape { batch, frames, height, width, text_len, text_len_2 }
}

/// Compiles `graph` after `options`' pipeline on the CPU plugin, with the checkpoint's weights.
fn program(graph: Graph, options: &PipelineOptions) -> Program {
    let weights = load_weights(&graph);
    let lowered = options.pipeline().run(graph).unwrap().graph;
    let module = emit_module(&lowered, &EmitOptions::default()).unwrap();
    let exe = client().compile(&module, &CompileOptions::single_device()).unwrap();
    let mut p = Program::new(exe, Signature::of(&lowered), client()).unwrap();
    p.upload_weights(&mut |name, _| weights.get(name).cloned()).unwrap();
    p
}

/// Runs the golden case `prefix` with every block's output; returns the outputs by name as f64.
fn run_case(io: &BTreeMap<String, HostTensor>, prefix: &str, dtype: DType, options: &PipelineOptions) -> HashMap<String, Vec<f64>> {
    let graph = transformer_with_block_outputs(&config(), &shape_of(io, prefix), dtype).unwrap();
    let program = program(graph, options);
    let mut inputs = HashMap::new();
    for name in ["hidden_states", "encoder_hidden_states", "encoder_hidden_states_2"] {
        inputs.insert(name.to_string(), io[&format!("{prefix}{name}")].convert(dtype));
    }
    for name in ["timestep", "encoder_attention_mask", "encoder_attention_mask_2"] {
        inputs.insert(name.to_string(), io[&format!("{prefix}{name}")].clone());
    }
    let out = program.run(&inputs).unwrap();
    out.into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype, dtype, "{name}");
            let v = t.to_f64_vec();
            assert!(v.iter().all(|x| x.is_finite()), "{prefix}{name}: a non-finite value");
            (name, v)
        })
        .collect()
}

/// Our text rows [B, L, C] in diffusers' order: row j of batch b is our row `order[b, j]`.
fn in_diffusers_order(ours: &[f64], order: &HostTensor, channels: usize) -> Vec<f64> {
    let [b, l] = order.dims[..] else { panic!("text_order dims {:?}", order.dims) };
    let (b, l) = (b as usize, l as usize);
    let order = order.to_f64_vec();
    let mut out = Vec::with_capacity(ours.len());
    for bi in 0..b {
        for j in 0..l {
            let row = bi * l + order[bi * l + j] as usize;
            out.extend_from_slice(&ours[row * channels..(row + 1) * channels]);
        }
    }
    out
}

/// (case/output, max relative error) of every compared output: the sample, the token refiner, and
/// each block's video and text output.
fn errors(io: &BTreeMap<String, HostTensor>, prefix: &str, got: &HashMap<String, Vec<f64>>) -> Vec<(String, f64)> {
    let case = if prefix.is_empty() { "main" } else { "resized" };
    let channels = config().inner_dim() as usize;
    let mut errs = Vec::new();
    for (name, ours) in got {
        let want = io[&format!("{prefix}{name}")].to_f64_vec();
        let ours = if name.ends_with("encoder_hidden_states") {
            in_diffusers_order(ours, &io[&format!("{prefix}text_order")], channels)
        } else {
            ours.clone()
        };
        errs.push((format!("{case} {name}"), common::max_rel_err(&ours, &want)));
    }
    // The model does something: the sample is not its input, nor 0.
    let sample = &got["sample"];
    assert!(common::max_rel_err(sample, &vec![0.0; sample.len()]) > 1e-1);
    errs.sort_by(|a, b| a.0.cmp(&b.0));
    errs
}

fn all_errors(dtype: DType, options: &PipelineOptions) -> Vec<(String, f64)> {
    let io = io();
    let mut errs = Vec::new();
    for prefix in CASES {
        errs.extend(errors(&io, prefix, &run_case(&io, prefix, dtype, options)));
    }
    for (name, err) in &errs {
        eprintln!("{dtype:?} attention {}: {name}: max rel err vs diffusers f32 {err:e}", options.attention);
    }
    errs
}

fn dense() -> PipelineOptions {
    PipelineOptions { attention: AttentionLowering::Dense, ..PipelineOptions::default() }
}

/// Blockwise everywhere, with blocks small enough that the tiny sequences (72 + 32 and 48 + 24
/// tokens) take several query and key blocks, padded keys and several slices per key block.
fn blockwise() -> PipelineOptions {
    let blocks = BlockwiseAttention { bq: 32, bkv: 24, bkv_compute: 8, ..BlockwiseAttention::default() };
    PipelineOptions { attention: AttentionLowering::Blockwise, blocks, ..PipelineOptions::default() }
}

#[test]
fn f32_matches_diffusers_per_block() {
    // Same math in the same precision; what is left is f32 rounding in another order (XLA's dot and
    // reduce order, its exp/tanh/erf polynomial against torch's). A wrong chunk order, mask, RoPE
    // pairing or token order shows as 1e-2 to 1. Measured 1.1e-6 to 4.7e-6 over every block's output.
    for (name, err) in all_errors(DType::F32, &dense()) {
        assert!(err < 1e-5, "{name}: f32 max relative error {err:e} against diffusers");
    }
}

#[test]
fn f32_blockwise_matches_diffusers_per_block() {
    // The online softmax over key blocks (base 2, K smoothed, padded keys masked) is the same math.
    // Measured 1.2e-6 to 4.7e-6; blockwise vs dense 1e-7 to 5e-7 (blockwise_matches_dense).
    for (name, err) in all_errors(DType::F32, &blockwise()) {
        assert!(err < 1e-5, "{name}: f32 blockwise max relative error {err:e} against diffusers");
    }
}

#[test]
fn f32_cpu_kernel_matches_diffusers_per_block() {
    // The standard CPU pipeline: every attention (text self-attention and the joint ones, all
    // with key masks over the padded text) runs in vidlower's CPU kernel, the masks as a -inf
    // key bias. The same bound as dense.
    assert!(client().has_cpu_kernels(), "the CPU plugin took vidlower's kernels");
    let options = PipelineOptions::default();
    let graph = transformer_with_block_outputs(&config(), &shape_of(&io(), ""), DType::F32).unwrap();
    let lowered = options.pipeline().run(graph).unwrap().graph;
    assert!(lowered.op_counts().get("custom_call").copied().unwrap_or(0) >= 3, "every attention lowered to the kernel");
    for (name, err) in all_errors(DType::F32, &options) {
        eprintln!("cpu kernel {name}: {err:e}");
        assert!(err < 1e-5, "{name}: f32 max relative error {err:e} against diffusers, CPU kernel");
    }
}

/// `--window-size` on the joint attention: windowed over the video tokens only. A window wider
/// than the video changes nothing; a narrow one changes every block's output, and blockwise
/// (whose key loop then skips the video blocks out of reach) still equals dense.
#[test]
fn window_over_the_video_tokens() {
    let io = io();
    let prefix = CASES[0];
    let with = |o: PipelineOptions, window| PipelineOptions { window, ..o };
    let plain = run_case(&io, prefix, DType::F32, &blockwise());
    let wide = run_case(&io, prefix, DType::F32, &with(blockwise(), Some((1000, 1000))));
    let narrow = run_case(&io, prefix, DType::F32, &with(blockwise(), Some((3, 3))));
    let narrow_dense = run_case(&io, prefix, DType::F32, &with(dense(), Some((3, 3))));
    for (name, want) in &plain {
        let wide_err = common::max_rel_err(&wide[name], want);
        assert!(wide_err < 1e-6, "{name}: a window wider than the video changed it by {wide_err:e}");
        let narrow_err = common::max_rel_err(&narrow_dense[name], want);
        assert!(narrow_err > 1e-3, "{name}: a 3-token window changed it by only {narrow_err:e}");
        let lowering_err = common::max_rel_err(&narrow[name], &narrow_dense[name]);
        assert!(lowering_err < 1e-5, "{name}: windowed blockwise vs dense {lowering_err:e}");
    }
}

#[test]
fn blockwise_matches_dense() {
    let io = io();
    for prefix in CASES {
        let d = run_case(&io, prefix, DType::F32, &dense());
        let b = run_case(&io, prefix, DType::F32, &blockwise());
        for (name, want) in &d {
            let err = common::max_rel_err(&b[name], want);
            eprintln!("{prefix}{name}: blockwise vs dense {err:e}");
            assert!(err < 1e-5, "{prefix}{name}: blockwise vs dense {err:e}");
        }
    }
}

#[test]
fn bf16_is_close_to_diffusers_f32() {
    // bf16 keeps 8 mantissa bits: inputs, weights, every matmul, norm and residual are rounded
    // through the refiner and 2 blocks. Measured 1.7e-2 to 1.8e-2 (dense and blockwise). diffusers'
    // own bf16 pipeline is further off (4.5e-1 on "main"), almost all of it from casting the timestep
    // to bf16 (937.5 -> 936); this graph embeds the f32 timestep it is given.
    for options in [dense(), blockwise()] {
        for (name, err) in all_errors(DType::BF16, &options) {
            assert!(err < 5e-2, "{name}: bf16 max relative error {err:e} against diffusers f32");
        }
    }
}

/// Every other column of a [rows, 2 * half] table: diffusers repeats each rotated pair's value.
fn pairs(t: &HostTensor, which: usize) -> Vec<f64> {
    let v = t.to_f64_vec();
    let cols = t.dims[1] as usize;
    v.chunks(cols).flat_map(|row| row.iter().skip(which).step_by(2).copied().collect::<Vec<_>>()).collect()
}

#[test]
fn rope_tables_match_diffusers() {
    let io = io();
    let cfg = config();
    for prefix in CASES {
        let s = shape_of(&io, prefix);
        let mut b = Builder::new("rope");
        let t = rotary_pos_embed(&mut b, &cfg, [s.frames, s.height, s.width]).unwrap();
        b.output("cos", t.cos);
        b.output("sin", t.sin);
        let graph = b.finish().unwrap();
        let lowered = PipelineOptions::plain().pipeline().run(graph).unwrap().graph;
        let module = emit_module(&lowered, &EmitOptions::default()).unwrap();
        let exe = client().compile(&module, &CompileOptions::single_device()).unwrap();
        let program = Program::new(exe, Signature::of(&lowered), client()).unwrap();
        let got = program.run(&HashMap::new()).unwrap();
        for (k, name) in [(0, "freqs_cos"), (1, "freqs_sin")] {
            let want = &io[&format!("{prefix}{name}")];
            assert_eq!(pairs(want, 0), pairs(want, 1), "{name}: pairs repeated");
            let err = common::max_rel_err(&got[k].1.to_f64_vec(), &pairs(want, 0));
            eprintln!("{prefix}{name}: max err {err:e}");
            // f32 angles as torch computes them; only sin/cos implementations may differ by an ulp.
            assert!(err < 1e-6, "{prefix}{name}: {err:e}");
        }
    }
}

/// Whether `target` is reachable from `from` through operands.
fn depends_on(g: &Graph, from: ValueId, target: ValueId) -> bool {
    let mut stack = vec![from];
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = stack.pop() {
        if v == target {
            return true;
        }
        if seen.insert(v) {
            stack.extend(g.node(v).operands.iter().copied());
        }
    }
    false
}

#[test]
fn cudnn_lowering_carries_the_text_masks() {
    // The CUDA module for the bf16 graph: every attention (the refiner's self-attention and each
    // block's joint attention) becomes cuDNN's fused attention with a bias made from the masks.
    let io = io();
    let graph = transformer(&config(), &shape_of(&io, ""), DType::BF16).unwrap();
    let options = PipelineOptions { attention: AttentionLowering::Cudnn, ..PipelineOptions::default() };
    let lowered = options.pipeline().run(graph).unwrap().graph;
    assert!(!lowered.op_counts().contains_key("attention"));
    let input = |name: &str| lowered.find_input(name).unwrap_or_else(|| panic!("input {name}"));
    let (mllm_mask, byt5_mask) = (input("encoder_attention_mask"), input("encoder_attention_mask_2"));
    let calls: Vec<&vidlower_ir::Node> = lowered
        .nodes
        .iter()
        .filter(|n| matches!(&n.op, Op::CustomCall { target, .. } if target == "__cudnn$fmhaScaleBiasSoftmax"))
        .collect();
    assert_eq!(calls.len(), 1 + 2, "the refiner's attention and one per block");
    let (s, text) = (72 + 32, 20);
    for (i, call) in calls.iter().enumerate() {
        let bias = call.operands[3];
        let ty = lowered.tensor_ty(bias);
        let len = if i == 0 { text } else { s };
        assert_eq!(ty, &TensorType::new(DType::BF16, vec![2, 1, len, len]), "call {i}: bias");
        assert!(depends_on(&lowered, bias, mllm_mask), "call {i}: the bias does not come from encoder_attention_mask");
        assert_eq!(depends_on(&lowered, bias, byt5_mask), i > 0, "call {i}: encoder_attention_mask_2");
    }
    let module = emit_module(&lowered, &EmitOptions::default()).unwrap();
    assert_eq!(module.matches("__cudnn$fmhaScaleBiasSoftmax").count(), 3);
    // The CPU plugin has no cuDNN: compiling it there fails with a clear error.
    let Err(err) = client().compile(&module, &CompileOptions::single_device()) else {
        panic!("the CPU plugin compiled a cuDNN custom call")
    };
    let err = err.to_string();
    assert!(err.contains("fmhaScaleBiasSoftmax"), "{err}");
}

/// hunyuanvideo-community/HunyuanVideo-1.5-480p_t2v `transformer/config.json`.
fn real_480p_t2v() -> HunyuanVideo15TransformerConfig {
    let text = r#"{
        "_class_name": "HunyuanVideo15Transformer3DModel", "attention_head_dim": 128, "image_embed_dim": 1152,
        "in_channels": 65, "mlp_ratio": 4.0, "num_attention_heads": 16, "num_layers": 54, "num_refiner_layers": 2,
        "out_channels": 32, "patch_size": 1, "patch_size_t": 1, "qk_norm": "rms_norm", "rope_axes_dim": [16, 56, 56],
        "rope_theta": 256.0, "target_size": 640, "task_type": "t2v", "text_embed_2_dim": 1472,
        "text_embed_dim": 3584, "use_meanflow": false
    }"#;
    serde_json::from_str(text).unwrap()
}

fn largest_dense_constant(graph: &Graph) -> usize {
    let size = |n: &vidlower_ir::Node| match &n.op {
        Op::Constant(l) => match &l.data {
            LiteralData::Dense(v) => v.len(),
            LiteralData::Splat(_) => 1,
        },
        _ => 0,
    };
    graph.nodes.iter().map(size).max().unwrap_or(0)
}

#[test]
fn real_480p_config_builds_at_real_sizes() {
    // 480x848, 121 frames: the VAE compresses 16x in space and 4x in time, so latents are
    // [2, 65, 31, 30, 53] (32 latent + 32 conditioning + 1 mask channels): 31 x 30 x 53 = 49,290 video
    // tokens, plus 256 ByT5 and 1000 MLLM tokens in the joint attention.
    let cfg = real_480p_t2v();
    let shape = TransformerShape { batch: 2, frames: 31, height: 30, width: 53, text_len: 1000, text_len_2: 256 };
    let graph = transformer(&cfg, &shape, DType::BF16).unwrap();
    assert_eq!(graph.tensor_ty(graph.outputs[0].value), &TensorType::new(DType::BF16, vec![2, 32, 31, 30, 53]));
    let attention_shapes: Vec<Vec<i64>> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Attention { .. }))
        .map(|n| graph.tensor_ty(n.operands[1]).shape.clone())
        .collect();
    assert_eq!(attention_shapes.len(), 2 + 54);
    assert!(attention_shapes[..2].iter().all(|s| s == &[2, 16, 1000, 128]), "refiner: MLLM tokens only");
    assert!(attention_shapes[2..].iter().all(|s| s == &[2, 16, 49_290 + 256 + 1000, 128]), "joint: video + text");

    let w: HashMap<&str, &TensorType> = graph.weights().collect();
    assert_eq!(w.len(), 2 + 4 + 10 + 2 * 18 + 8 + 1 + 54 * 32 + 4);
    let t = |s: &[i64]| TensorType::new(DType::BF16, s.to_vec());
    for (name, ty) in [
        ("x_embedder.proj.weight", t(&[2048, 65, 1, 1, 1])),
        ("time_embed.timestep_embedder.linear_1.weight", t(&[2048, 256])),
        ("context_embedder.proj_in.weight", t(&[2048, 3584])),
        ("context_embedder.time_text_embed.text_embedder.linear_1.weight", t(&[2048, 3584])),
        ("context_embedder.token_refiner.refiner_blocks.1.ff.net.0.proj.weight", t(&[8192, 2048])),
        ("context_embedder_2.norm.weight", t(&[1472])),
        ("context_embedder_2.linear_1.weight", t(&[2048, 1472])),
        ("context_embedder_2.linear_3.weight", t(&[2048, 2048])),
        ("cond_type_embed.weight", t(&[3, 2048])),
        ("transformer_blocks.53.norm1.linear.weight", t(&[12288, 2048])),
        ("transformer_blocks.53.attn.norm_q.weight", t(&[128])),
        ("transformer_blocks.0.attn.add_k_proj.bias", t(&[2048])),
        ("transformer_blocks.0.ff.net.0.proj.weight", t(&[8192, 2048])),
        ("norm_out.linear.weight", t(&[4096, 2048])),
        ("proj_out.weight", t(&[32, 2048])),
    ] {
        assert_eq!(w.get(name).copied(), Some(&ty), "{name}");
    }
    assert!(largest_dense_constant(&graph) <= 1);
    // The default pipeline (blockwise for the 50k-key joint attention) lowers it without dense constants.
    let lowered = PipelineOptions::default().pipeline().run(graph).unwrap().graph;
    assert!(!lowered.op_counts().contains_key("attention"));
    assert!(largest_dense_constant(&lowered) <= 1, "a dense constant in the lowered graph");
    eprintln!("480p t2v lowered: {} ops", lowered.op_count());
}
