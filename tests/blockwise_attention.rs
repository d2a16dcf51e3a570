//! `blockwise_attention` on the PJRT CPU plugin: the online-softmax loop gives the dense
//! (`decompose`) result on random shapes, values, masks and windows, with key counts that are not
//! a multiple of the block (so padded keys must be masked), key blocks cut into slices
//! (`bkv_compute`), in base e and in base 2 (`exp2`, both checked against dense on every case);
//! and a 32k-token attention runs in a child process whose peak RSS stays far below what the
//! dense score matrix alone would take.

mod common;

use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::OnceLock;
use vidlower_ir::{AttentionKind, Builder, DType, Graph, TensorType};
use vidlower_passes::sliding_window::SlidingWindow;
use vidlower_passes::{BlockwiseAttention, Decompose, PassManager};
use vidlower_runtime::pjrt::{Client, CompileOptions};
use vidlower_runtime::program::{Program, Signature};
use vidlower_runtime::tensor::HostTensor;

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| common::cpu_client(1))
}

/// `graph` after `blockwise` (if given), then `decompose`.
fn lower(graph: Graph, blockwise: Option<BlockwiseAttention>) -> Graph {
    let mut pm = PassManager::new();
    if let Some(pass) = blockwise {
        pm.add(Box::new(pass));
    }
    pm.add(Box::new(Decompose));
    let g = pm.run(graph).unwrap().graph;
    assert!(g.nodes.iter().all(|n| !n.op.is_composite()));
    g
}

fn run(graph: &Graph, inputs: &HashMap<String, HostTensor>) -> Vec<f64> {
    let module = vidlower_backends::emit_module(graph, &Default::default()).unwrap();
    let exe = client().compile(&module, &CompileOptions::single_device()).unwrap_or_else(|e| panic!("{e}\n{module}"));
    let p = Program::new(exe, Signature::of(graph), client()).unwrap();
    p.run(inputs).unwrap().remove(0).1.to_f64_vec()
}

#[derive(Clone, Debug)]
struct Case {
    b: i64,
    h: i64,
    sq: i64,
    sk: i64,
    d: i64,
    dv: i64,
    bkv: i64,
    bq: i64,
    bkv_compute: i64,
    /// 0: none, 1: boolean, 2: float.
    mask: u8,
    /// Which mask dims are full (else 1), as bits over [B, H, Sq, Sk].
    mask_full: u8,
    window: Option<(i64, i64)>,
    seed: u64,
}

fn attention_graph(c: &Case) -> Graph {
    let mut b = Builder::new("attn");
    let f = |s: [i64; 4]| TensorType::new(DType::F32, s.to_vec());
    let q = b.input("q", f([c.b, c.h, c.sq, c.d])).unwrap();
    let k = b.input("k", f([c.b, c.h, c.sk, c.d])).unwrap();
    let v = b.input("v", f([c.b, c.h, c.sk, c.dv])).unwrap();
    let mask = (c.mask != 0).then(|| {
        let full = [c.b, c.h, c.sq, c.sk];
        let shape: Vec<i64> = (0..4).map(|i| if c.mask_full >> i & 1 == 1 { full[i] } else { 1 }).collect();
        let dtype = if c.mask == 1 { DType::I1 } else { DType::F32 };
        b.input("mask", TensorType::new(dtype, shape)).unwrap()
    });
    let scale = 1.0 / (c.d as f64).sqrt();
    let kind = if c.sq == c.sk { AttentionKind::SelfAttention } else { AttentionKind::Cross };
    let a = b.attention(kind, q, k, v, scale, mask, c.window).unwrap();
    b.output("o", a);
    b.finish().unwrap()
}

impl Case {
    /// The pass with this case's block sizes, in base e or base 2.
    fn pass(&self, exp2: bool) -> Option<BlockwiseAttention> {
        Some(BlockwiseAttention { bq: self.bq, bkv: self.bkv, bkv_compute: self.bkv_compute, exp2, min_keys: 0 })
    }
}

fn inputs_of(g: &Graph, seed: u64) -> HashMap<String, HostTensor> {
    let mut inputs = HashMap::new();
    for (name, _, ty) in &Signature::of(g).params {
        let mut v = vidlower_frontends::random_weights::random_input(seed, name, ty);
        if name == "mask" && ty.dtype == DType::I1 {
            // About 80% of positions allowed.
            v.iter_mut().for_each(|x| *x = if *x > -0.6 { 1.0 } else { 0.0 });
        } else {
            v.iter_mut().for_each(|x| *x *= 3.0);
        }
        inputs.insert(name.clone(), HostTensor::from_f32(ty.shape.clone(), &v).unwrap().convert(ty.dtype));
    }
    inputs
}

fn case() -> impl Strategy<Value = Case> {
    let window = prop_oneof![Just(None), (-1i64..6, -1i64..6).prop_map(Some)];
    let blocks = (1i64..13, prop_oneof![Just(1 << 20), 1i64..9], prop_oneof![Just(1 << 20), 1i64..6]);
    (1i64..3, 1i64..3, 1i64..20, 1i64..40, 1i64..9, 1i64..9, blocks, 0u8..3, 0u8..16, window, any::<u64>()).prop_map(
        |(b, h, sq, sk, d, dv, (bkv, bq, bkv_compute), mask, mask_full, window, seed)| Case {
            b,
            h,
            sq,
            sk,
            d,
            dv,
            bkv,
            bq,
            bkv_compute,
            mask,
            mask_full,
            window,
            seed,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn blockwise_matches_dense(c in case()) {
        let g = attention_graph(&c);
        let inputs = inputs_of(&g, c.seed);
        let dense = run(&lower(g.clone(), None), &inputs);
        for exp2 in [false, true] {
            let blockwise = run(&lower(g.clone(), c.pass(exp2)), &inputs);
            let err = common::max_rel_err(&blockwise, &dense);
            prop_assert!(err < 2e-5, "{:?}, exp2 {}: max relative error {:e}", c, exp2, err);
        }
    }
}

#[test]
fn bf16_blockwise_matches_dense_loosely() {
    // In bf16 both round the probabilities to bf16 before the product with v (dense after
    // normalising, blockwise before), so they agree to bf16 precision only.
    let cases = [(2, 3, 9, 21, 8, 5, 4, 2, 3, (1, -1)), (1, 2, 17, 33, 16, 16, 8, 5, 1 << 20, (-1, 3))];
    for (i, c) in cases.into_iter().enumerate() {
        let (b, h, sq, sk, d, dv, bkv, bq, bkv_compute, window) = c;
        let mask = i as u8 + 1;
        let case =
            Case { b, h, sq, sk, d, dv, bkv, bq, bkv_compute, mask, mask_full: 0b1101, window: Some(window), seed: 3 };
        let g = attention_graph(&case);
        let g = bf16_graph(&g);
        let inputs = inputs_of(&g, case.seed);
        let dense = run(&lower(g.clone(), None), &inputs);
        for exp2 in [false, true] {
            let blockwise = run(&lower(g.clone(), case.pass(exp2)), &inputs);
            let err = common::max_rel_err(&blockwise, &dense);
            eprintln!("bf16 case {i}, exp2 {exp2}: max relative error {err:e}");
            assert!(err < 3e-2, "{case:?}, exp2 {exp2}: max relative error {err:e}");
        }
    }
}

/// `g` with its f32 inputs and values in bf16 (the attention graph has no constants).
fn bf16_graph(g: &Graph) -> Graph {
    let mut g = g.clone();
    for n in &mut g.nodes {
        if let vidlower_ir::Type::Tensor(t) = &mut n.ty {
            if t.dtype == DType::F32 {
                t.dtype = DType::BF16;
            }
        }
    }
    vidlower_ir::verify(&g).unwrap();
    g
}

#[test]
fn registered_pass_then_the_default_pipeline_matches_dense() {
    // By name, with the default blocks (one block at this size), then the cleanups, which also
    // run inside the loop regions.
    let c = Case {
        b: 1,
        h: 2,
        sq: 7,
        sk: 11,
        d: 4,
        dv: 3,
        bkv: 0,
        bq: 0,
        bkv_compute: 0,
        mask: 1,
        mask_full: 0b1100,
        window: Some((2, 1)),
        seed: 5,
    };
    let g = attention_graph(&c);
    let inputs = inputs_of(&g, c.seed);
    let dense = run(&lower(g.clone(), None), &inputs);
    let names = ["blockwise_attention", "decompose", "canonicalize", "cse", "dce"];
    let lowered = PassManager::from_names(&names).unwrap().run(g).unwrap().graph;
    assert_eq!(lowered.op_counts().get("while"), Some(&1));
    let blockwise = run(&lowered, &inputs);
    assert!(common::max_rel_err(&blockwise, &dense) < 1e-5, "{blockwise:?} vs {dense:?}");
    // Small blocks through the cleanups too.
    let mut pm = PassManager::new();
    pm.add(Box::new(BlockwiseAttention { bq: 3, bkv: 4, ..Default::default() }));
    for name in &names[1..] {
        pm.add(vidlower_passes::create_pass(name).unwrap());
    }
    let lowered = pm.run(attention_graph(&c)).unwrap().graph;
    assert_eq!(lowered.op_counts().get("while"), Some(&2));
    assert!(common::max_rel_err(&run(&lowered, &inputs), &dense) < 1e-5);
}

#[test]
fn padded_keys_are_masked_out() {
    // 5 keys in blocks of at most 4 are 2 blocks of 3: the padded key (k = 0, v = 0) would add
    // exp(0 - m) to the row sums. 3 queries in blocks of 2: one padded query row.
    let (mask, mask_full, window, seed) = (0, 0, None, 7);
    let c =
        Case { b: 1, h: 1, sq: 3, sk: 5, d: 4, dv: 4, bkv: 4, bq: 2, bkv_compute: 4, mask, mask_full, window, seed };
    let g = attention_graph(&c);
    let inputs = inputs_of(&g, c.seed);
    let dense = run(&lower(g.clone(), None), &inputs);
    let blockwise = run(&lower(g, c.pass(false)), &inputs);
    assert!(common::max_rel_err(&blockwise, &dense) < 1e-5, "{blockwise:?} vs {dense:?}");
}

// ---- memory: a long attention in a separate `vidlower exec` process ----

/// Peak RSS (KiB) of `vidlower exec` running one [1, 1, S, 64] f32 self-attention through
/// `passes`: a separate process, so the figure is that run's alone.
fn exec_peak_rss_kib(s: i64, passes: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let ir = dir.path().join("attention.ir");
    let text = format!(
        "graph @long_attention {{\n  %0 = input \"q\" : f32[1,1,{s},64]\n  %1 = input \"k\" : f32[1,1,{s},64]\n  %2 = input \"v\" : f32[1,1,{s},64]\n  %3 = attention(%0, %1, %2) {{kind=self, scale=0.125, mask=false}} : f32[1,1,{s},64]\n  output \"y\" = %3\n}}\n"
    );
    std::fs::write(&ir, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidlower"))
        .args(["exec", "--ir", ir.to_str().unwrap(), "--passes", passes, "--no-cache"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "vidlower exec failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("peak memory:")).unwrap_or_else(|| panic!("no figure:\n{stdout}"));
    eprintln!("S = {s}, {passes}: {line}; {}", stdout.lines().find(|l| l.starts_with("run:")).unwrap_or(""));
    assert!(stdout.contains("output y: f32[1,1,"), "{stdout}");
    let mib: f64 = line.trim_start_matches("peak memory:").trim().trim_end_matches("MiB").trim().parse().unwrap();
    (mib * 1024.0) as u64
}

#[test]
fn long_attention_peak_memory() {
    // Dense at S = 32768 needs the f32 score matrix, S^2 * 4 B = 4 GiB, before its exponentials;
    // blockwise (the registered defaults: 10 query blocks of 3277 under bq 3328, 12 key blocks
    // of 2739 under bkv 2816, each 11 slices of 249 under bkv_compute 256) holds one [3277, 249]
    // score slice. Measured with `vidlower exec --attention blockwise --k-smooth off
    // --exp2-softmax off` on 2 shared cores: peak 300 MiB with the slices, 377 MiB with
    // --bkv-compute 1048576 (one [3277, 2739] block), 142 MiB for an 8-token attention; run
    // ~6-7 s either way. With a (1024, 1024) window the blocks outside it are skipped.
    let s = 32768;
    let kib = exec_peak_rss_kib(s, "blockwise_attention,decompose,canonicalize,cse,dce");
    let dense_scores_kib = (s * s * 4 / 1024) as u64;
    assert!(kib < 1536 * 1024, "peak RSS {kib} KiB at S = {s}");
    assert!(kib < dense_scores_kib / 4, "peak RSS {kib} KiB is not far below the dense scores' {dense_scores_kib} KiB");
}

/// Inputs `q`, `k`, `v` of one f32 shape [B, H, S, D] (one token sequence: self or joint attention).
fn qkv_inputs(b: &mut Builder, shape: [i64; 4]) -> [vidlower_ir::ValueId; 3] {
    ["q", "k", "v"].map(|name| b.input(name, TensorType::new(DType::F32, shape.to_vec())).unwrap())
}

/// HunyuanVideo-1.5's joint attention as its transformer builds it: one sequence of `video`
/// tokens (always valid) then `text` tokens with a per-row padding mask, masked as keys
/// ([B, 1, 1, S], so every query row keeps the video keys).
fn joint_masked_graph(b_: i64, h: i64, video: i64, text: i64, d: i64) -> Graph {
    let s = video + text;
    let mut b = Builder::new("joint");
    let [q, k, v] = qkv_inputs(&mut b, [b_, h, s, d]);
    let mask = b.input("mask", TensorType::new(DType::I1, vec![b_, 1, 1, s])).unwrap();
    let a = b.attention(AttentionKind::Joint, q, k, v, 1.0 / (d as f64).sqrt(), Some(mask), None).unwrap();
    b.output("o", a);
    b.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn hunyuan_joint_padding_mask_blockwise_matches_dense(
        (batch, h, video, text, d) in (1i64..3, 1i64..3, 1i64..24, 1i64..20, 1i64..9),
        valid in proptest::collection::vec(0i64..20, 2),
        (bq, bkv, bkv_compute) in (1i64..9, 1i64..13, prop_oneof![Just(1 << 20), 1i64..6]),
        seed in any::<u64>(),
    ) {
        let g = joint_masked_graph(batch, h, video, text, d);
        let mut inputs = inputs_of(&g, seed);
        let s = video + text;
        let keep: Vec<i64> = valid.iter().map(|&n| video + n.min(text)).collect();
        let m: Vec<f32> = (0..batch as usize)
            .flat_map(|r| { let keep = keep[r]; (0..s).map(move |j| if j < keep { 1.0 } else { 0.0 }) })
            .collect();
        inputs.insert("mask".into(), HostTensor::from_f32(vec![batch, 1, 1, s], &m).unwrap().convert(DType::I1));
        let dense = run(&lower(g.clone(), None), &inputs);
        prop_assert!(dense.iter().all(|x| x.is_finite()), "every row keeps the video keys");
        for exp2 in [false, true] {
            let pass = Some(BlockwiseAttention { bq, bkv, bkv_compute, exp2, min_keys: 0 });
            let blockwise = run(&lower(g.clone(), pass), &inputs);
            let err = common::max_rel_err(&blockwise, &dense);
            prop_assert!(err < 2e-5, "video {} text {} valid {:?}, exp2 {}: max relative error {:e}", video, text, valid, exp2, err);
        }
    }
}

/// A joint attention over `text` and `video` tokens, text first (CogVideoX's order) or after the
/// video (HunyuanVideo-1.5's), its video tokens marked as the window span as the frontends mark
/// them, then windowed by the `sliding_window` pass as `--window-size` does.
fn joint_windowed_graph(b_: i64, h: i64, video: i64, text: i64, d: i64, text_first: bool, window: (i64, i64)) -> (Graph, (i64, i64)) {
    let s = video + text;
    let mut b = Builder::new("joint_windowed");
    let [q, k, v] = qkv_inputs(&mut b, [b_, h, s, d]);
    let span = if text_first { (text, s) } else { (0, video) };
    let a = b.joint_attention(q, k, v, 1.0 / (d as f64).sqrt(), None, span).unwrap();
    b.output("o", a);
    let mut pm = PassManager::new();
    pm.add(Box::new(SlidingWindow { left: window.0, right: window.1 }));
    (pm.run(b.finish().unwrap()).unwrap().graph, span)
}

/// The windowed joint attention computed on the host in f64, from its definition: query i sees
/// key j unless both are video tokens and j lies outside i's window.
fn joint_windowed_reference(x: &HashMap<String, HostTensor>, dims: [i64; 4], span: (i64, i64), (left, right): (i64, i64)) -> Vec<f64> {
    let [b_, h, s, d] = dims.map(|n| n as usize);
    let (q, k, v) = (x["q"].to_f64_vec(), x["k"].to_f64_vec(), x["v"].to_f64_vec());
    let inside = |p: usize| (span.0 as usize..span.1 as usize).contains(&p);
    let sees = |i: usize, j: usize| {
        let (i, j) = (i as i64, j as i64);
        !(inside(i as usize) && inside(j as usize)) || ((left < 0 || j >= i - left) && (right < 0 || j <= i + right))
    };
    let mut out = vec![0.0; b_ * h * s * d];
    for bh in 0..b_ * h {
        let at = |t: &[f64], i: usize, c: usize| t[(bh * s + i) * d + c];
        for i in 0..s {
            let scores: Vec<f64> = (0..s)
                .map(|j| if sees(i, j) { (0..d).map(|c| at(&q, i, c) * at(&k, j, c)).sum::<f64>() / (d as f64).sqrt() } else { f64::NEG_INFINITY })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = p.iter().sum();
            for c in 0..d {
                out[(bh * s + i) * d + c] = (0..s).map(|j| p[j] * at(&v, j, c)).sum::<f64>() / sum;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// `--window-size` on a joint attention: the window holds among the video tokens only (the
    /// text sees and is seen by all), dense equals the definition, and blockwise (key ranges
    /// before, inside and after the span, query blocks inside and across its edges) equals dense.
    #[test]
    fn joint_window_over_video_tokens_blockwise_matches_dense_and_the_definition(
        (batch, h, video, text, d) in (1i64..3, 1i64..3, 1i64..30, 1i64..12, 1i64..6),
        text_first in any::<bool>(),
        window in (prop_oneof![Just(-1i64), 0i64..6], prop_oneof![Just(-1i64), 0i64..6]),
        (bq, bkv, bkv_compute) in (1i64..9, 1i64..9, prop_oneof![Just(1 << 20), 1i64..4]),
        seed in any::<u64>(),
    ) {
        let (g, span) = joint_windowed_graph(batch, h, video, text, d, text_first, window);
        let inputs = inputs_of(&g, seed);
        let dense = run(&lower(g.clone(), None), &inputs);
        let reference = joint_windowed_reference(&inputs, [batch, h, video + text, d], span, window);
        let err = common::max_rel_err(&dense, &reference);
        prop_assert!(err < 2e-5, "dense vs definition, span {:?} window {:?}: {:e}", span, window, err);
        for exp2 in [false, true] {
            let pass = Some(BlockwiseAttention { bq, bkv, bkv_compute, exp2, min_keys: 0 });
            let blockwise = run(&lower(g.clone(), pass), &inputs);
            let err = common::max_rel_err(&blockwise, &dense);
            prop_assert!(err < 2e-5, "span {:?} window {:?} bq {} bkv {} exp2 {}: max relative error {:e}", span, window, bq, bkv, exp2, err);
        }
    }
}
