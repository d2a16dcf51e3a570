//! End to end: the example graph compiled through the default pipeline and run on the CPU
//! plugin matches the same block computed in plain Rust in f64.

mod common;

use std::collections::HashMap;
use vidlower_frontends::example::{example_block, ExampleConfig};
use vidlower_runtime::tensor::HostTensor;

struct Weights<'a>(&'a HashMap<String, HostTensor>);

impl Weights<'_> {
    fn get(&self, name: &str) -> Vec<f64> {
        self.0[name].to_f64_vec()
    }
}

/// `y = x W^T + b` for x [n, in], W [out, in].
fn linear(x: &[f64], n: usize, w: &Weights, prefix: &str, out: usize) -> Vec<f64> {
    let (wt, b) = (w.get(&format!("{prefix}.weight")), w.get(&format!("{prefix}.bias")));
    let inp = wt.len() / out;
    let mut y = vec![0.0; n * out];
    for r in 0..n {
        for o in 0..out {
            y[r * out + o] = b[o] + (0..inp).map(|i| x[r * inp + i] * wt[o * inp + i]).sum::<f64>();
        }
    }
    y
}

fn layer_norm(x: &[f64], d: usize, w: &Weights, prefix: &str, eps: f64) -> Vec<f64> {
    let (g, b) = (w.get(&format!("{prefix}.weight")), w.get(&format!("{prefix}.bias")));
    let (g, b) = (&g, &b);
    x.chunks(d)
        .flat_map(move |row| {
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + eps).sqrt();
            row.iter().enumerate().map(move |(i, v)| (v - mean) * inv * g[i] + b[i]).collect::<Vec<_>>()
        })
        .collect()
}

fn reference(cfg: &ExampleConfig, x: &[f64], w: &Weights) -> Vec<f64> {
    let (bsz, s, d, h) = (cfg.batch as usize, cfg.seq as usize, cfg.dim as usize, cfg.heads as usize);
    let hd = d / h;
    let n = bsz * s;
    let hn = layer_norm(x, d, w, "norm1", cfg.eps);
    let (q, k, v) = (linear(&hn, n, w, "attn.to_q", d), linear(&hn, n, w, "attn.to_k", d), linear(&hn, n, w, "attn.to_v", d));
    let scale = 1.0 / (hd as f64).sqrt();
    let mut att = vec![0.0; n * d];
    for b in 0..bsz {
        for head in 0..h {
            for i in 0..s {
                let qi = |c: usize| q[(b * s + i) * d + head * hd + c];
                let scores: Vec<f64> = (0..s)
                    .map(|j| (0..hd).map(|c| qi(c) * k[(b * s + j) * d + head * hd + c]).sum::<f64>() * scale)
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|z| (z - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..hd {
                    att[(b * s + i) * d + head * hd + c] = (0..s).map(|j| e[j] / z * v[(b * s + j) * d + head * hd + c]).sum();
                }
            }
        }
    }
    let o = linear(&att, n, w, "attn.to_out.0", d);
    let x1: Vec<f64> = x.iter().zip(&o).map(|(a, b)| a + b).collect();
    let h2 = layer_norm(&x1, d, w, "norm2", cfg.eps);
    let f = linear(&h2, n, w, "ff.net.0.proj", cfg.mlp_hidden as usize);
    let g: Vec<f64> = f
        .iter()
        .map(|&u| 0.5 * u * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (u + 0.044715 * u.powi(3))).tanh()))
        .collect();
    let f2 = linear(&g, n, w, "ff.net.2", d);
    x1.iter().zip(&f2).map(|(a, b)| a + b).collect()
}

#[test]
fn example_block_matches_f64_reference() {
    let client = common::cpu_client(1);
    let cfg = ExampleConfig::default();
    let graph = example_block(&cfg).unwrap();
    let (weights, inputs) = common::random_params(&graph, 42);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &weights);
    let out = program.run(&inputs).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "sample");
    assert_eq!(out[0].1.dims, vec![cfg.batch, cfg.seq, cfg.dim]);

    let want = reference(&cfg, &inputs["hidden_states"].to_f64_vec(), &Weights(&weights));
    let got = out[0].1.to_f64_vec();
    let err = common::max_rel_err(&got, &want);
    // f32 through ~3 matmuls of width <= 256: a few ulps of accumulated rounding.
    assert!(err < 1e-5, "max relative error {err:e} against the f64 reference");
    // And the reference is not trivially close to the input (the block does something).
    assert!(common::max_rel_err(&got, &inputs["hidden_states"].to_f64_vec()) > 1e-2);
}

#[test]
fn bf16_example_block_is_close_to_f64_reference() {
    let client = common::cpu_client(1);
    let cfg = ExampleConfig { dtype: vidlower_ir::DType::BF16, ..Default::default() };
    let graph = example_block(&cfg).unwrap();
    let (weights, inputs) = common::random_params(&graph, 7);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &weights);
    let out = program.run(&inputs).unwrap();
    assert_eq!(out[0].1.dtype, vidlower_ir::DType::BF16);
    let want = reference(&cfg, &inputs["hidden_states"].to_f64_vec(), &Weights(&weights));
    let err = common::max_rel_err(&out[0].1.to_f64_vec(), &want);
    // bf16 has 8 bits of mantissa: errors of a few 1e-2 after a residual block are expected.
    assert!(err < 5e-2, "bf16 max relative error {err:e}");
}

#[test]
fn wrong_input_type_is_a_clear_error_not_wrong_numbers() {
    let client = common::cpu_client(1);
    let graph = example_block(&ExampleConfig::default()).unwrap();
    let (weights, _) = common::random_params(&graph, 1);
    let program = common::program(&client, graph, vidlower_passes::DEFAULT_PIPELINE, &weights);
    // Same byte size, transposed shape: the plugin alone would accept it.
    let bad = HostTensor::zeros(vidlower_ir::DType::F32, vec![2, 64, 32]).unwrap();
    let e = program.run(&HashMap::from([("hidden_states".to_string(), bad)])).unwrap_err().to_string();
    assert!(e.contains("hidden_states") && e.contains("f32[2,32,64]") && e.contains("f32[2,64,32]"), "{e}");
}
