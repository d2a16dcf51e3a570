//! The attention passes on the PJRT CPU plugin: `k_smooth` and `exp2_softmax` preserve meaning
//! (random shapes and values, keys with a large common offset, boolean and float masks, windows;
//! pass on vs off at f32), and `k_smooth`'s bf16 error against an f64 reference when the keys
//! share a large offset, as real DiT keys do (on the CPU plugin, and in a host model of a kernel
//! that stores bf16 scores).

mod common;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::OnceLock;
use vidlower_ir::{AttentionKind, Builder, DType, Graph, TensorType};
use vidlower_runtime::pjrt::{Client, CompileOptions};
use vidlower_runtime::program::{Program, Signature};
use vidlower_runtime::tensor::HostTensor;

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| common::cpu_client(1))
}

/// Standard normal samples (Box-Muller).
fn randn(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.gen_range(1e-12..1.0), rng.gen());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Mask {
    None,
    Bool,
    Float,
}

#[derive(Clone, Debug)]
struct Case {
    b: i64,
    h: i64,
    sq: i64,
    sk: i64,
    d: i64,
    dv: i64,
    mask: Mask,
    window: Option<(i64, i64)>,
    k_offset: f64,
    seed: u64,
}

fn graph_of(c: &Case, dtype: DType) -> Graph {
    let mut b = Builder::new("attn");
    let t = |s: i64, d: i64| TensorType::new(dtype, vec![c.b, c.h, s, d]);
    let q = b.input("q", t(c.sq, c.d)).unwrap();
    let k = b.input("k", t(c.sk, c.d)).unwrap();
    let v = b.input("v", t(c.sk, c.dv)).unwrap();
    let mask = match c.mask {
        Mask::None => None,
        // Broadcast over heads, as real masks are.
        Mask::Bool => Some(b.input("mask", TensorType::new(DType::I1, vec![c.b, 1, c.sq, c.sk])).unwrap()),
        Mask::Float => Some(b.input("mask", TensorType::new(dtype, vec![c.b, 1, c.sq, c.sk])).unwrap()),
    };
    let scale = 1.0 / (c.d as f64).sqrt();
    let kind = if c.sq == c.sk { AttentionKind::SelfAttention } else { AttentionKind::Cross };
    let o = b.attention(kind, q, k, v, scale, mask, c.window).unwrap();
    b.output("o", o);
    b.finish().unwrap()
}

/// Inputs for `c` as f64 (the mask as 0/1 for boolean, a finite bias for float).
fn inputs_of(c: &Case) -> HashMap<String, (Vec<i64>, Vec<f64>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(c.seed);
    let mut m = HashMap::new();
    let n = |s: i64, d: i64| (c.b * c.h * s * d) as usize;
    m.insert("q".to_string(), (vec![c.b, c.h, c.sq, c.d], randn(&mut rng, n(c.sq, c.d))));
    let k: Vec<f64> = randn(&mut rng, n(c.sk, c.d)).into_iter().map(|x| x + c.k_offset).collect();
    m.insert("k".to_string(), (vec![c.b, c.h, c.sk, c.d], k));
    m.insert("v".to_string(), (vec![c.b, c.h, c.sk, c.dv], randn(&mut rng, n(c.sk, c.dv))));
    let mask_len = (c.b * c.sq * c.sk) as usize;
    match c.mask {
        Mask::None => {}
        Mask::Bool => {
            // Key 0 always allowed, so no row is fully masked (unless the window excludes it).
            let v = (0..mask_len).map(|i| if i % c.sk as usize == 0 || rng.gen_bool(0.7) { 1.0 } else { 0.0 }).collect();
            m.insert("mask".to_string(), (vec![c.b, 1, c.sq, c.sk], v));
        }
        Mask::Float => {
            let v = (0..mask_len).map(|_| rng.gen_range(-3.0..1.0)).collect();
            m.insert("mask".to_string(), (vec![c.b, 1, c.sq, c.sk], v));
        }
    }
    m
}

/// Runs `graph` after `passes` on `inputs` (converted to each param's dtype); output as f64.
fn run(graph: &Graph, passes: &[&str], inputs: &HashMap<String, (Vec<i64>, Vec<f64>)>) -> Vec<f64> {
    let (g, module) = common::lower(graph.clone(), passes);
    assert!(g.nodes.iter().all(|n| !n.op.is_composite()), "{passes:?} left a composite");
    let exe = client().compile(&module, &CompileOptions::single_device()).unwrap_or_else(|e| panic!("{e}\n{module}"));
    let sig = Signature::of(&g);
    let mut args = HashMap::new();
    for (name, _, ty) in &sig.params {
        let (dims, v) = &inputs[name];
        args.insert(name.clone(), HostTensor::from_f64(dims.clone(), v).unwrap().convert(ty.dtype));
    }
    let p = Program::new(exe, sig, client()).unwrap();
    p.run(&args).unwrap().remove(0).1.to_f64_vec()
}

/// The attention of `c` in f64 on the host, from `inputs` as given (already rounded, for bf16).
fn reference(c: &Case, inputs: &HashMap<String, (Vec<i64>, Vec<f64>)>) -> Vec<f64> {
    let (q, k, v) = (&inputs["q"].1, &inputs["k"].1, &inputs["v"].1);
    let mask = inputs.get("mask").map(|m| &m.1);
    let (sq, sk, d, dv) = (c.sq as usize, c.sk as usize, c.d as usize, c.dv as usize);
    let scale = 1.0 / (c.d as f64).sqrt();
    let mut out = Vec::new();
    for bh in 0..(c.b * c.h) as usize {
        let b = bh / c.h as usize;
        for i in 0..sq {
            let mut s = vec![f64::NEG_INFINITY; sk];
            for (j, sj) in s.iter_mut().enumerate() {
                if let Some((l, r)) = c.window {
                    let off = j as i64 - i as i64;
                    if (l >= 0 && off < -l) || (r >= 0 && off > r) {
                        continue;
                    }
                }
                let mut x = scale * (0..d).map(|e| q[(bh * sq + i) * d + e] * k[(bh * sk + j) * d + e]).sum::<f64>();
                if let Some(m) = mask {
                    let mv = m[(b * sq + i) * sk + j];
                    match c.mask {
                        Mask::Bool if mv == 0.0 => continue,
                        Mask::Float => x += mv,
                        _ => {}
                    }
                }
                *sj = x;
            }
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for o in 0..dv {
                out.push((0..sk).map(|j| e[j] / z * v[(bh * sk + j) * dv + o]).sum());
            }
        }
    }
    out
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        (1i64..3, 1i64..3, 1i64..9, 1i64..12, 1i64..17, 1i64..9),
        0usize..3,
        prop_oneof![Just(None), (-1i64..4, -1i64..4).prop_map(Some)],
        prop_oneof![Just(0.0), Just(20.0), -50.0f64..50.0],
        any::<u64>(),
    )
        .prop_map(|((b, h, sq, sk, d, dv), mask, window, k_offset, seed)| Case {
            b,
            h,
            sq,
            sk,
            d,
            dv,
            mask: [Mask::None, Mask::Bool, Mask::Float][mask],
            window,
            k_offset,
            seed,
        })
}

/// Pass on vs off at f32 for `c`: max relative error of each pipeline against plain decompose.
fn check(c: &Case) -> Result<(), TestCaseError> {
    let g = graph_of(c, DType::F32);
    let inputs = inputs_of(c);
    let base = run(&g, &["decompose"], &inputs);
    let want = reference(c, &inputs);
    // Rows with every key masked are NaN in both; elsewhere decompose matches the f64 definition.
    prop_assert!(common::max_rel_err(&base, &want) < 1e-3 * (1.0 + c.k_offset.abs()), "decompose vs f64: {:?}", c);
    for passes in [&["k_smooth", "decompose"][..], &["exp2_softmax"], &["k_smooth", "exp2_softmax"]] {
        let got = run(&g, passes, &inputs);
        let err = common::max_rel_err(&got, &base);
        // f32 scores of size ~|offset| * sqrt(d) round differently once the offset is gone.
        let tol = 2e-5 * (1.0 + c.k_offset.abs());
        prop_assert!(err < tol, "{:?} on {:?}: max relative error {:e}", passes, c, err);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn attention_passes_preserve_meaning(c in case_strategy()) { check(&c)?; }
}

#[test]
fn comparison_is_not_vacuous() {
    // A different K gives a different output: the comparison above can fail.
    let c = Case { b: 1, h: 2, sq: 5, sk: 7, d: 8, dv: 4, mask: Mask::Float, window: Some((2, 1)), k_offset: 3.0, seed: 7 };
    let g = graph_of(&c, DType::F32);
    let inputs = inputs_of(&c);
    let a = run(&g, &["k_smooth", "exp2_softmax"], &inputs);
    let mut other = inputs.clone();
    other.get_mut("k").unwrap().1[0] += 1.0;
    let b = run(&g, &["k_smooth", "exp2_softmax"], &other);
    assert!(common::max_rel_err(&a, &b) > 1e-3);
    assert!(common::max_rel_err(&a, &reference(&c, &inputs)) < 1e-5);
}

/// (max abs error, rms error) of `got` against `want`.
fn errors(got: &[f64], want: &[f64]) -> (f64, f64) {
    let max = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let rms = (got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / got.len() as f64).sqrt();
    (max, rms)
}

fn round_bf16(v: &[f64]) -> Vec<f64> {
    HostTensor::from_f64(vec![v.len() as i64], v).unwrap().convert(DType::BF16).to_f64_vec()
}

/// A host model of a bf16 attention kernel that stores the raw scores `q . k` in bf16 (a bf16
/// dot's output, as decompose's lowering types it): what k_smooth is meant to help.
fn bf16_scores_model(c: &Case, inputs: &HashMap<String, (Vec<i64>, Vec<f64>)>, smooth: bool) -> Vec<f64> {
    let (sk, d) = (c.sk as usize, c.d as usize);
    let mut k = inputs["k"].1.clone();
    if smooth {
        for bh in 0..(c.b * c.h) as usize {
            for e in 0..d {
                let mean = (0..sk).map(|j| k[(bh * sk + j) * d + e]).sum::<f64>() / sk as f64;
                (0..sk).for_each(|j| k[(bh * sk + j) * d + e] -= mean);
            }
        }
        k = round_bf16(&k);
    }
    let (sq, dv, q, v) = (c.sq as usize, c.dv as usize, &inputs["q"].1, &inputs["v"].1);
    let scale = 1.0 / (c.d as f64).sqrt();
    let mut out = Vec::new();
    for bh in 0..(c.b * c.h) as usize {
        for i in 0..sq {
            let raw: Vec<f64> = (0..sk).map(|j| (0..d).map(|e| q[(bh * sq + i) * d + e] * k[(bh * sk + j) * d + e]).sum()).collect();
            let s: Vec<f64> = round_bf16(&raw).iter().map(|x| x * scale).collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            let p = round_bf16(&e.iter().map(|x| x / z).collect::<Vec<_>>());
            let o: Vec<f64> = (0..dv).map(|o| (0..sk).map(|j| p[j] * v[(bh * sk + j) * dv + o]).sum()).collect();
            out.extend(round_bf16(&o));
        }
    }
    out
}

#[test]
fn k_smooth_bf16_error_with_keys_sharing_an_offset() {
    let c = Case { b: 1, h: 2, sq: 256, sk: 256, d: 64, dv: 64, mask: Mask::None, window: None, k_offset: 20.0, seed: 11 };
    let g = graph_of(&c, DType::BF16);
    // The inputs rounded to bf16 are the problem; the f64 reference is exact on them.
    let mut inputs = inputs_of(&c);
    for (dims, v) in inputs.values_mut() {
        *v = HostTensor::from_f64(dims.clone(), v).unwrap().convert(DType::BF16).to_f64_vec();
    }
    let want = reference(&c, &inputs);
    let plain = errors(&run(&g, &["decompose"], &inputs), &want);
    let smoothed = errors(&run(&g, &["k_smooth", "decompose"], &inputs), &want);
    let exp2 = errors(&run(&g, &["exp2_softmax"], &inputs), &want);
    let both = errors(&run(&g, &["k_smooth", "exp2_softmax"], &inputs), &want);
    eprintln!("bf16 attention [1,2,256,64], K = randn + 20, vs f64 (max abs, rms):");
    eprintln!("  decompose              {:.4e} {:.4e}", plain.0, plain.1);
    eprintln!("  k_smooth,decompose     {:.4e} {:.4e}", smoothed.0, smoothed.1);
    eprintln!("  exp2_softmax           {:.4e} {:.4e}", exp2.0, exp2.1);
    eprintln!("  k_smooth,exp2_softmax  {:.4e} {:.4e}", both.0, both.1);
    // Measured on the CPU plugin: k_smooth does not reduce the error there (it adds the rounding
    // of the smoothed K to bf16; XLA CPU does not round the bf16 scores before the f32 softmax,
    // so there is no large-offset rounding to remove). Assert only that it costs little.
    assert!(smoothed.1 < plain.1 * 1.5 && both.1 < exp2.1 * 1.5, "{smoothed:?} vs {plain:?}, {both:?} vs {exp2:?}");
    // Where the raw scores are stored in bf16, smoothing removes the offset's share of them and
    // the error drops: the host model of such a kernel.
    let model_plain = errors(&bf16_scores_model(&c, &inputs, false), &want);
    let model_smoothed = errors(&bf16_scores_model(&c, &inputs, true), &want);
    eprintln!("  host model, bf16 scores: plain {:.4e} {:.4e}, smoothed {:.4e} {:.4e}", model_plain.0, model_plain.1, model_smoothed.0, model_smoothed.1);
    assert!(model_smoothed.1 < model_plain.1 / 2.0, "{model_smoothed:?} vs {model_plain:?}");
}
