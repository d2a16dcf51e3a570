//! The built-in example graph: one pre-norm transformer block (self-attention + GELU MLP), the
//! shape of a DiT block without the conditioning. Weight names follow diffusers' conventions.

use crate::nn::linear::linear;
use vidlower_ir::{AttentionKind, Builder, DType, GeluApprox, Graph, Result, TensorType};

/// Sizes of the example block.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleConfig {
    pub batch: i64,
    pub seq: i64,
    pub dim: i64,
    pub heads: i64,
    pub mlp_hidden: i64,
    pub eps: f64,
    pub dtype: DType,
}

impl Default for ExampleConfig {
    fn default() -> Self {
        ExampleConfig { batch: 2, seq: 32, dim: 64, heads: 4, mlp_hidden: 256, eps: 1e-6, dtype: DType::F32 }
    }
}

/// `y = x + attn(norm1(x)); y = y + ff(norm2(y))`, input `hidden_states` [B, S, D], output `sample`.
pub fn example_block(cfg: &ExampleConfig) -> Result<Graph> {
    let mut b = Builder::new("example_block");
    let d = cfg.dim;
    let x = b.input("hidden_states", TensorType::new(cfg.dtype, vec![cfg.batch, cfg.seq, d]))?;

    let h = layer_norm(&mut b, x, "norm1", d, cfg)?;
    let q = linear(&mut b, h, "attn.to_q", d, true)?;
    let k = linear(&mut b, h, "attn.to_k", d, true)?;
    let v = linear(&mut b, h, "attn.to_v", d, true)?;
    let (q, k, v) = (b.split_heads(q, cfg.heads)?, b.split_heads(k, cfg.heads)?, b.split_heads(v, cfg.heads)?);
    let scale = 1.0 / ((d / cfg.heads) as f64).sqrt();
    let a = b.attention(AttentionKind::SelfAttention, q, k, v, scale, None, None)?;
    let a = b.merge_heads(a)?;
    let a = linear(&mut b, a, "attn.to_out.0", d, true)?;
    let x = b.add(x, a)?;

    let h = layer_norm(&mut b, x, "norm2", d, cfg)?;
    let h = linear(&mut b, h, "ff.net.0.proj", cfg.mlp_hidden, true)?;
    let h = b.gelu(h, GeluApprox::Tanh)?;
    let h = linear(&mut b, h, "ff.net.2", d, true)?;
    let y = b.add(x, h)?;
    b.output("sample", y);
    b.finish()
}

fn layer_norm(b: &mut Builder, x: vidlower_ir::ValueId, prefix: &str, d: i64, cfg: &ExampleConfig) -> Result<vidlower_ir::ValueId> {
    let w = b.weight(&format!("{prefix}.weight"), TensorType::new(cfg.dtype, vec![d]))?;
    let bias = b.weight(&format!("{prefix}.bias"), TensorType::new(cfg.dtype, vec![d]))?;
    b.layer_norm(x, cfg.eps, Some(w), Some(bias))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_with_diffusers_weight_names() {
        let g = example_block(&ExampleConfig::default()).unwrap();
        let names: Vec<&str> = g.weights().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 16);
        assert!(names.contains(&"attn.to_out.0.weight") && names.contains(&"ff.net.0.proj.bias"));
        assert_eq!(g.tensor_ty(g.outputs[0].value).shape, vec![2, 32, 64]);
    }
}
