//! `CogVideoXTransformer3DModel` against diffusers 0.42.1: the tiny random checkpoints of
//! `tests/golden/cogvideox/<variant>/model/transformer` (CogVideoX-2b, -5b, 1.5-5B shaped;
//! `tools/golden/make_cogvideox_transformer_goldens.py`) run on the CPU plugin at f32 and bf16 at two
//! sizes each (the sample size and another: the sincos table and the RoPE crop region are recomputed),
//! the positional tables alone, the ofs branch, and the real configs built (not run) at real sizes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use vidlower_frontends::cogvideox::config::CogVideoXTransformerConfig;
use vidlower_frontends::cogvideox::embeddings::{
    resize_crop_region_for_grid, rotary_pos_embed_3d, sincos_pos_embed_3d, RopeGrid,
};
use vidlower_frontends::cogvideox::transformer::{transformer, TransformerShape};
use vidlower_ir::{Builder, DType, Graph, LiteralData, Op, TensorType};
use vidlower_runtime::program::{ParamKind, Signature};
use vidlower_runtime::tensor::HostTensor;
use vidlower_runtime::weights::WeightStore;

const VARIANTS: [&str; 3] = ["cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b"];

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cogvideox")
}

fn read_config(path: &Path) -> CogVideoXTransformerConfig {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every weight of `graph` from the checkpoint, in the graph's dtypes; asserts the graph uses the
/// whole state dict.
fn load_weights(graph: &Graph, dir: &Path) -> HashMap<String, HostTensor> {
    let store = WeightStore::open(dir).unwrap();
    let weights: HashMap<_, _> = Signature::of(graph)
        .params
        .iter()
        .filter(|(_, kind, _)| *kind == ParamKind::Weight)
        .map(|(name, _, ty)| (name.clone(), store.load(name, ty).unwrap()))
        .collect();
    let unused: Vec<&str> = store.names().filter(|n| !weights.contains_key(*n)).collect();
    assert!(unused.is_empty(), "{}: checkpoint tensors the graph does not use: {unused:?}", dir.display());
    weights
}

/// Runs the tiny model of `model_dir` on the IO tensors named `{prefix}hidden_states` etc. of `io`;
/// returns (ours, diffusers' f32 sample) as f64.
/// The CPU's standard attention lowering: vidlower's fused kernel for every unmasked attention.
const CPU_KERNEL_PIPELINE: &[&str] = &["cpu_attention", "decompose", "canonicalize", "cse", "dce"];

fn run_case(model_dir: &Path, io: &BTreeMap<String, HostTensor>, prefix: &str, dtype: DType, passes: &[&str]) -> (Vec<f64>, Vec<f64>) {
    let cfg = read_config(&model_dir.join("config.json"));
    let hs = &io[&format!("{prefix}hidden_states")];
    let ehs = &io[&format!("{prefix}encoder_hidden_states")];
    let [batch, frames, _, height, width] = hs.dims[..] else { panic!("hidden_states dims {:?}", hs.dims) };
    let shape = TransformerShape { batch, frames, height, width, text_len: ehs.dims[1] };
    let graph = transformer(&cfg, &shape, dtype).unwrap();
    let weights = load_weights(&graph, model_dir);
    let client = common::cpu_client(1);
    if passes.contains(&"cpu_attention") {
        assert!(client.has_cpu_kernels(), "the CPU plugin took vidlower's kernels");
    }
    let program = common::program(&client, graph, passes, &weights);
    let mut inputs = HashMap::from([
        ("hidden_states".to_string(), hs.convert(dtype)),
        // The pipeline's int64 timesteps as f32 (diffusers checks both give the same sample).
        ("timestep".to_string(), io[&format!("{prefix}timestep_f32")].clone()),
        ("encoder_hidden_states".to_string(), ehs.convert(dtype)),
    ]);
    if let Some(ofs) = io.get("ofs") {
        // The pipeline passes one value, [1]; vidlower takes one per row.
        let v = ofs.to_f64_vec()[0] as f32;
        inputs.insert("ofs".into(), HostTensor::from_f32(vec![batch], &vec![v; batch as usize]).unwrap());
    }
    let out = program.run(&inputs).unwrap();
    let want = &io[&format!("{prefix}sample")];
    assert_eq!(out[0].0, "sample");
    assert_eq!((out[0].1.dtype, &out[0].1.dims), (dtype, &want.dims));
    (out[0].1.to_f64_vec(), want.to_f64_vec())
}

/// (variant/case, error) for every golden case at `dtype`, lowered by `passes`.
fn all_cases(dtype: DType) -> Vec<(String, f64)> {
    all_cases_with(dtype, vidlower_passes::DEFAULT_PIPELINE)
}

fn all_cases_with(dtype: DType, passes: &[&str]) -> Vec<(String, f64)> {
    let mut errs = Vec::new();
    for variant in VARIANTS {
        let dir = golden().join(variant);
        let io = vidlower_runtime::safetensors_io::load(&dir.join("transformer_io.safetensors")).unwrap();
        for prefix in ["", "resized."] {
            let (got, want) = run_case(&dir.join("model/transformer"), &io, prefix, dtype, passes);
            // The output is not the input passed through (the model does something).
            assert!(common::max_rel_err(&got, &vec![0.0; got.len()]) > 1e-1);
            errs.push((
                format!("{variant} {}", if prefix.is_empty() { "main" } else { "resized" }),
                common::max_rel_err(&got, &want),
            ));
        }
    }
    let dir = golden().join("transformer_ofs");
    let io = vidlower_runtime::safetensors_io::load(&dir.join("transformer_io.safetensors")).unwrap();
    let (got, want) = run_case(&dir.join("model"), &io, "", dtype, passes);
    errs.push(("ofs".into(), common::max_rel_err(&got, &want)));
    for (name, err) in &errs {
        eprintln!("{dtype:?} {name}: max rel err vs diffusers f32 {err:e}");
    }
    errs
}

#[test]
fn f32_matches_diffusers() {
    // Same math in the same precision (the positional tables bit for bit or within an ulp, see
    // positional_tables_match_diffusers), so what is left is f32 rounding in another order (XLA's dot
    // and reduce order, its exp/sin/tanh against torch's). A wrong layout, chunk order, pair
    // interleaving, crop region or grid type shows as 1e-3 to 1. Measured 6.4e-7 to 8.5e-7.
    for (name, err) in all_cases(DType::F32) {
        assert!(err < 1e-5, "{name}: f32 max relative error {err:e} against diffusers");
    }
}

#[test]
fn f32_with_the_cpu_kernel_matches_diffusers() {
    // The joint attention runs in vidlower's CPU kernel (scores in cache, exp2 by polynomial,
    // sums in another order): the same bound as XLA's dense lowering.
    for (name, err) in all_cases_with(DType::F32, CPU_KERNEL_PIPELINE) {
        assert!(err < 1e-5, "{name}: f32 max relative error {err:e} against diffusers, CPU kernel");
    }
}

#[test]
fn bf16_is_close_to_diffusers_f32() {
    // bf16 keeps 8 mantissa bits (relative step 3.9e-3); inputs, weights, every matmul, LayerNorm
    // and the residual streams are rounded to it through 2 blocks. Measured 2.0e-2 to 3.2e-2 over the
    // seven cases; diffusers' own bf16 run (from_pretrained(torch_dtype=bfloat16)) is 1.9e-2 to 3.6e-2
    // from its f32 output on the same cases: the same size of rounding noise.
    for (name, err) in all_cases(DType::BF16) {
        assert!(err < 6e-2, "{name}: bf16 max relative error {err:e} against diffusers f32");
    }
}

/// Runs a graph without weights or inputs, returning its outputs as f64.
fn run_tables(graph: Graph) -> Vec<Vec<f64>> {
    let client = common::cpu_client(1);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &HashMap::new());
    program.run(&HashMap::new()).unwrap().into_iter().map(|(_, t)| t.to_f64_vec()).collect()
}

/// Every other column of a [rows, 2 * half] table: diffusers repeats each rotated pair's value.
fn pairs(t: &HostTensor, which: usize) -> Vec<f64> {
    let v = t.to_f64_vec();
    let cols = t.dims[1] as usize;
    v.chunks(cols).flat_map(|row| row.iter().skip(which).step_by(2).copied().collect::<Vec<_>>()).collect()
}

#[test]
fn positional_tables_match_diffusers() {
    for variant in VARIANTS {
        let dir = golden().join(variant);
        let cfg = read_config(&dir.join("model/transformer/config.json"));
        let io = vidlower_runtime::safetensors_io::load(&dir.join("transformer_io.safetensors")).unwrap();
        for prefix in ["", "resized."] {
            let hs = &io[&format!("{prefix}hidden_states")];
            let (p, pt) = (cfg.patch_size, cfg.temporal_patch());
            let (f, h, w) = (hs.dims[1] / pt, hs.dims[3] / p, hs.dims[4] / p);
            let mut b = Builder::new("tables");
            if cfg.use_rotary_positional_embeddings {
                let grid = if cfg.patch_size_t.is_none() {
                    let (start, stop) =
                        resize_crop_region_for_grid((h, w), cfg.sample_width / p, cfg.sample_height / p);
                    RopeGrid::Linspace { start, stop }
                } else {
                    RopeGrid::Slice
                };
                let t = rotary_pos_embed_3d(&mut b, cfg.attention_head_dim, grid, f, h, w).unwrap();
                b.output("cos", t.cos);
                b.output("sin", t.sin);
                let got = run_tables(b.finish().unwrap());
                for (k, name) in [(0, "freqs_cos"), (1, "freqs_sin")] {
                    let want = &io[&format!("{prefix}{name}")];
                    assert_eq!(pairs(want, 0), pairs(want, 1), "{name}: pairs repeated");
                    let err = common::max_rel_err(&got[k], &pairs(want, 0));
                    eprintln!("{variant} {prefix}{name}: max err {err:e}");
                    // Same f32 steps as torch; only sin/cos implementations may differ by an ulp.
                    assert!(err < 1e-6, "{variant} {prefix}{name}: {err:e}");
                }
            } else {
                let pos = sincos_pos_embed_3d(
                    &mut b,
                    cfg.inner_dim(),
                    f,
                    h,
                    w,
                    cfg.spatial_interpolation_scale,
                    cfg.temporal_interpolation_scale,
                )
                .unwrap();
                let pos = b.convert(pos, DType::F32).unwrap();
                b.output("pos", pos);
                let got = run_tables(b.finish().unwrap());
                let err = common::max_rel_err(&got[0], &io[&format!("{prefix}pos_embedding")].to_f64_vec());
                eprintln!("{variant} {prefix}pos_embedding: max err {err:e}");
                // f64 all the way, rounded to f32 once; XLA's f64 pow/sin/cos differ from torch's in
                // the last f64 bits, which moves an element to the neighbouring f32 now and then
                // (measured 1.2e-7, one ulp at 1).
                assert!(err < 2.5e-7, "{variant} {prefix}pos_embedding: {err:e}");
            }
        }
    }
}

/// THUDM/CogVideoX-2b `transformer/config.json`.
fn cogvideox_2b() -> CogVideoXTransformerConfig {
    let c = CogVideoXTransformerConfig::default();
    let sizes = (c.num_attention_heads, c.attention_head_dim, c.num_layers, c.text_embed_dim, c.time_embed_dim);
    assert_eq!(sizes, (30, 64, 30, 4096, 512));
    assert_eq!((c.sample_height, c.sample_width, c.sample_frames, c.patch_size), (60, 90, 49, 2));
    c
}

/// THUDM/CogVideoX-5b `transformer/config.json`.
fn cogvideox_5b() -> CogVideoXTransformerConfig {
    CogVideoXTransformerConfig {
        num_attention_heads: 48,
        num_layers: 42,
        use_rotary_positional_embeddings: true,
        ..cogvideox_2b()
    }
}

/// THUDM/CogVideoX1.5-5B `transformer/config.json`.
fn cogvideox15_5b() -> CogVideoXTransformerConfig {
    CogVideoXTransformerConfig {
        patch_size_t: Some(2),
        patch_bias: false,
        sample_height: 300,
        sample_width: 300,
        sample_frames: 81,
        ..cogvideox_5b()
    }
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

/// The state dict of a real config: count and a few shapes per kind of module.
fn check_weights(graph: &Graph, cfg: &CogVideoXTransformerConfig, dtype: DType) {
    let w: HashMap<&str, &TensorType> = graph.weights().collect();
    assert_eq!(w.len() as i64, 24 * cfg.num_layers + 16, "weights of {} layers", cfg.num_layers);
    let d = cfg.inner_dim();
    let last = cfg.num_layers - 1;
    let t = |shape: &[i64]| TensorType::new(dtype, shape.to_vec());
    let patch = match cfg.patch_size_t {
        None => t(&[d, 16, 2, 2]),
        Some(_) => t(&[d, 16 * 8]),
    };
    let out = 16 * 4 * cfg.temporal_patch();
    let expect = [
        ("patch_embed.proj.weight".to_string(), patch),
        ("patch_embed.proj.bias".to_string(), t(&[d])),
        ("patch_embed.text_proj.weight".to_string(), t(&[d, 4096])),
        ("time_embedding.linear_1.weight".to_string(), t(&[512, d])),
        ("time_embedding.linear_2.weight".to_string(), t(&[512, 512])),
        ("transformer_blocks.0.norm1.linear.weight".to_string(), t(&[6 * d, 512])),
        ("transformer_blocks.0.norm1.norm.weight".to_string(), t(&[d])),
        ("transformer_blocks.0.attn1.to_q.weight".to_string(), t(&[d, d])),
        ("transformer_blocks.0.attn1.to_v.bias".to_string(), t(&[d])),
        ("transformer_blocks.0.attn1.norm_q.weight".to_string(), t(&[64])),
        (format!("transformer_blocks.{last}.attn1.norm_k.bias"), t(&[64])),
        (format!("transformer_blocks.{last}.attn1.to_out.0.weight"), t(&[d, d])),
        (format!("transformer_blocks.{last}.norm2.linear.bias"), t(&[6 * d])),
        (format!("transformer_blocks.{last}.ff.net.0.proj.weight"), t(&[4 * d, d])),
        (format!("transformer_blocks.{last}.ff.net.2.weight"), t(&[d, 4 * d])),
        ("norm_final.weight".to_string(), t(&[d])),
        ("norm_out.linear.weight".to_string(), t(&[2 * d, 512])),
        ("norm_out.norm.bias".to_string(), t(&[d])),
        ("proj_out.weight".to_string(), t(&[out, d])),
    ];
    for (name, ty) in expect {
        assert_eq!(w.get(name.as_str()).copied(), Some(&ty), "{name}");
    }
}

#[test]
fn real_configs_build_at_real_sizes() {
    // 2b and 5b at 480x720x49 frames: latents [B, 13, 16, 60, 90], 13 x 30 x 45 = 17,550 tokens,
    // 226 text tokens, CFG batch 2.
    let shape = TransformerShape { batch: 2, frames: 13, height: 60, width: 90, text_len: 226 };
    for cfg in [cogvideox_2b(), cogvideox_5b()] {
        let graph = transformer(&cfg, &shape, DType::BF16).unwrap();
        check_weights(&graph, &cfg, DType::BF16);
        assert_eq!(graph.tensor_ty(graph.outputs[0].value), &TensorType::new(DType::BF16, vec![2, 13, 16, 60, 90]));
        assert!(largest_dense_constant(&graph) <= 1);
        eprintln!("{} layers: {} ops", cfg.num_layers, graph.op_count());
    }
    // 1.5 at 768x1360x81 frames: 21 latent frames padded to 22, 11 x 48 x 85 = 44,880 tokens.
    let cfg = cogvideox15_5b();
    let shape = TransformerShape { batch: 2, frames: 22, height: 96, width: 170, text_len: 226 };
    let graph = transformer(&cfg, &shape, DType::BF16).unwrap();
    check_weights(&graph, &cfg, DType::BF16);
    assert_eq!(graph.tensor_ty(graph.outputs[0].value), &TensorType::new(DType::BF16, vec![2, 22, 16, 96, 170]));
    let (lowered, module) = common::lower(graph, vidlower_passes::DEFAULT_PIPELINE);
    eprintln!("1.5-5B lowered: {} ops, StableHLO {} KB", lowered.op_count(), module.len() / 1024);
    assert!(largest_dense_constant(&lowered) <= 1, "a dense constant in the lowered graph");
    assert!(!module.contains("constant\"() {value = dense<["), "a dense (non-splat) constant in the StableHLO");
    // The unpadded 21 frames are refused with the reason.
    let odd = TransformerShape { frames: 21, ..shape };
    assert!(transformer(&cfg, &odd, DType::BF16).unwrap_err().to_string().contains("pads"));
}

#[test]
fn image_to_video_configs_are_refused() {
    let shape = TransformerShape { batch: 1, frames: 13, height: 60, width: 90, text_len: 226 };
    // THUDM/CogVideoX-5b-I2V: image latents concatenated (32 in), learned positional embeddings.
    let i2v = CogVideoXTransformerConfig { in_channels: 32, use_learned_positional_embeddings: true, ..cogvideox_5b() };
    let e = transformer(&i2v, &shape, DType::BF16).unwrap_err().to_string();
    assert!(e.contains("in_channels") && e.contains("image-to-video") && e.contains("not supported"), "{e}");
    let learned = CogVideoXTransformerConfig { use_learned_positional_embeddings: true, ..cogvideox_5b() };
    let e = transformer(&learned, &shape, DType::BF16).unwrap_err().to_string();
    assert!(e.contains("use_learned_positional_embeddings"), "{e}");
    // THUDM/CogVideoX1.5-5B-I2V: 32 in, ofs_embed_dim 512.
    let i2v15 = CogVideoXTransformerConfig { in_channels: 32, ofs_embed_dim: Some(512), ..cogvideox15_5b() };
    let shape = TransformerShape { frames: 22, height: 96, width: 170, ..shape };
    let e = transformer(&i2v15, &shape, DType::BF16).unwrap_err().to_string();
    assert!(e.contains("image-to-video"), "{e}");
    // The same config with 16 in builds, with the ofs input.
    let ofs = CogVideoXTransformerConfig { in_channels: 16, ..i2v15 };
    let g = transformer(&ofs, &shape, DType::BF16).unwrap();
    assert_eq!(g.find_input("ofs").map(|v| g.tensor_ty(v).clone()), Some(TensorType::new(DType::F32, vec![1])));
}
