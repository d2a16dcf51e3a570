//! The projections of diffusers' `Attention` block (`models/attention_processor.py`): `to_q`, `to_k`,
//! `to_v`, the optional `norm_q`/`norm_k`, and `to_out.0`. The attention op itself stays at the call
//! site, between [`Attention::project_qkv`] and [`Attention::project_out`], so that each model says
//! there which kind of attention it is and where its rotary embedding goes. MM-DiT joint attention
//! (`Attention(added_kv_proj_dim=...)`, HunyuanVideo) adds the context stream's `add_q_proj`,
//! `add_k_proj`, `add_v_proj`, `norm_added_q`/`norm_added_k` and `to_add_out`
//! ([`Attention::project_added_qkv`], [`Attention::project_added_out`]).

use crate::nn::linear::linear;
use super::norms::{layer_norm, rms_norm};
use vidlower_ir::{Builder, IrError, Result, ValueId};

/// What `norm_q` / `norm_k` are (diffusers `Attention(qk_norm=...)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QkNorm {
    /// No `norm_q` / `norm_k`.
    None,
    /// `"rms_norm_across_heads"` (Wan): RMSNorm with affine over the whole inner dim, before the
    /// heads are split; weights [heads * head_dim].
    RmsAcrossHeads { eps: f64 },
    /// `"layer_norm"` (CogVideoX): LayerNorm with affine over each head's `head_dim`, after the
    /// split; weights [head_dim].
    LayerNormPerHead { eps: f64 },
    /// `"rms_norm"` (HunyuanVideo): RMSNorm with affine over each head's `head_dim`, after the
    /// split; weights [head_dim].
    RmsPerHead { eps: f64 },
}

/// One diffusers `Attention` module: weights `{prefix}.to_q`, `.to_k`, `.to_v` ([inner, dim], bias when
/// `bias`), `.norm_q`, `.norm_k` (per `qk_norm`), `.to_out.0` ([inner, inner], bias when `out_bias`),
/// all in the activations' dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attention<'a> {
    pub prefix: &'a str,
    pub heads: i64,
    pub head_dim: i64,
    pub qk_norm: QkNorm,
    pub bias: bool,
    pub out_bias: bool,
}

/// Projected query, key and value, each [B, S, heads, head_dim] (the layout RoPE helpers take).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qkv {
    pub query: ValueId,
    pub key: ValueId,
    pub value: ValueId,
}

impl Qkv {
    /// The three as [B, heads, S, head_dim], the layout of `Builder::attention`.
    pub fn heads_first(self, b: &mut Builder) -> Result<[ValueId; 3]> {
        let perm = [0, 2, 1, 3];
        Ok([b.transpose(self.query, &perm)?, b.transpose(self.key, &perm)?, b.transpose(self.value, &perm)?])
    }
}

impl Attention<'_> {
    fn inner(&self) -> i64 {
        self.heads * self.head_dim
    }

    /// SDPA's default scale, `1 / sqrt(head_dim)`.
    pub fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// `to_q(hidden_states)`, `to_k(context)`, `to_v(context)` with `norm_q`/`norm_k`, heads split:
    /// [B, S, dim] and [B, S_ctx, dim_ctx] -> [B, S, H, D] and two [B, S_ctx, H, D].
    pub fn project_qkv(&self, b: &mut Builder, hidden_states: ValueId, context: ValueId) -> Result<Qkv> {
        let names = ["to_q", "to_k", "to_v", "norm_q", "norm_k"];
        self.project(b, names, hidden_states, context)
    }

    /// The context stream of joint attention: `add_q_proj`, `add_k_proj`, `add_v_proj` of
    /// `encoder_hidden_states` [B, L, dim] with `norm_added_q`/`norm_added_k` (the same kind of norm
    /// as `norm_q`/`norm_k`; diffusers has none across heads for the added stream in the models here),
    /// heads split: three [B, L, H, D].
    pub fn project_added_qkv(&self, b: &mut Builder, encoder_hidden_states: ValueId) -> Result<Qkv> {
        if let QkNorm::RmsAcrossHeads { .. } = self.qk_norm {
            return Err(IrError::Value(format!(
                "{}: added projections with rms_norm_across_heads (Wan's image stream: no norm_added_q) are not built here",
                self.prefix
            )));
        }
        let names = ["add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k"];
        self.project(b, names, encoder_hidden_states, encoder_hidden_states)
    }

    /// The projections named `[q, k, v, norm_q, norm_k]` under the prefix.
    fn project(&self, b: &mut Builder, names: [&str; 5], hidden_states: ValueId, context: ValueId) -> Result<Qkv> {
        let p = self.prefix;
        let [q, k, v, nq, nk] = names.map(|n| format!("{p}.{n}"));
        let query = linear(b, hidden_states, &q, self.inner(), self.bias)?;
        let key = linear(b, context, &k, self.inner(), self.bias)?;
        let value = linear(b, context, &v, self.inner(), self.bias)?;
        let (query, key) = match self.qk_norm {
            QkNorm::RmsAcrossHeads { eps } => (rms_norm(b, query, eps, &nq)?, rms_norm(b, key, eps, &nk)?),
            _ => (query, key),
        };
        // unflatten(2, (heads, -1))
        let unflatten = |b: &mut Builder, x: ValueId| {
            let s = b.shape(x);
            b.reshape(x, &[s[0], s[1], self.heads, self.head_dim])
        };
        let (mut query, mut key, value) = (unflatten(b, query)?, unflatten(b, key)?, unflatten(b, value)?);
        match self.qk_norm {
            QkNorm::LayerNormPerHead { eps } => {
                query = layer_norm(b, query, eps, Some(&nq))?;
                key = layer_norm(b, key, eps, Some(&nk))?;
            }
            QkNorm::RmsPerHead { eps } => {
                query = rms_norm(b, query, eps, &nq)?;
                key = rms_norm(b, key, eps, &nk)?;
            }
            QkNorm::None | QkNorm::RmsAcrossHeads { .. } => {}
        }
        Ok(Qkv { query, key, value })
    }

    /// `to_out.0` of the attention output [B, H, S, D] with its heads merged: -> [B, S, inner].
    pub fn project_out(&self, b: &mut Builder, out: ValueId) -> Result<ValueId> {
        self.merged_linear(b, out, "to_out.0", self.out_bias)
    }

    /// `to_add_out` of the context stream's rows of a joint attention output [B, H, L, D] with its
    /// heads merged: -> [B, L, inner]; biased like `to_out.0`.
    pub fn project_added_out(&self, b: &mut Builder, out: ValueId) -> Result<ValueId> {
        self.merged_linear(b, out, "to_add_out", self.out_bias)
    }

    fn merged_linear(&self, b: &mut Builder, out: ValueId, name: &str, bias: bool) -> Result<ValueId> {
        let s = b.shape(out);
        if s.len() != 4 || s[1] != self.heads || s[3] != self.head_dim {
            return Err(IrError::Value(format!(
                "{}: attention output {s:?} is not [B, {}, S, {}]",
                self.prefix, self.heads, self.head_dim
            )));
        }
        let out = b.merge_heads(out)?;
        linear(b, out, &format!("{}.{name}", self.prefix), self.inner(), bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::{DType, TensorType};

    fn names(qk_norm: QkNorm) -> Vec<(String, Vec<i64>)> {
        let mut b = Builder::new("attn");
        let x = b.input("x", TensorType::new(DType::F32, vec![2, 5, 8])).unwrap();
        let ctx = b.input("ctx", TensorType::new(DType::F32, vec![2, 3, 6])).unwrap();
        let attn = Attention { prefix: "attn1", heads: 2, head_dim: 4, qk_norm, bias: true, out_bias: false };
        let qkv = attn.project_qkv(&mut b, x, ctx).unwrap();
        assert_eq!((b.shape(qkv.query), b.shape(qkv.value)), (vec![2, 5, 2, 4], vec![2, 3, 2, 4]));
        let [q, k, v] = qkv.heads_first(&mut b).unwrap();
        let o = b.attention(vidlower_ir::AttentionKind::Cross, q, k, v, attn.scale(), None, None).unwrap();
        let y = attn.project_out(&mut b, o).unwrap();
        assert_eq!(b.shape(y), vec![2, 5, 8]);
        assert!(attn.project_out(&mut b, x).is_err());
        let g = b.finish().unwrap();
        g.weights().map(|(n, t)| (n.to_string(), t.shape.clone())).collect()
    }

    #[test]
    fn wan_and_cogvideox_norm_placement() {
        let rms = names(QkNorm::RmsAcrossHeads { eps: 1e-6 });
        assert!(rms.contains(&("attn1.norm_q.weight".into(), vec![8])));
        assert!(rms.contains(&("attn1.to_k.weight".into(), vec![8, 6])));
        assert!(!rms.iter().any(|(n, _)| n == "attn1.to_out.0.bias"));
        let ln = names(QkNorm::LayerNormPerHead { eps: 1e-6 });
        assert!(ln.contains(&("attn1.norm_k.bias".into(), vec![4])));
        assert_eq!(names(QkNorm::None).len(), 7);
        assert_eq!((rms.len(), ln.len()), (9, 11));
        let per_head = names(QkNorm::RmsPerHead { eps: 1e-6 });
        assert!(per_head.contains(&("attn1.norm_k.weight".into(), vec![4])));
        assert_eq!(per_head.len(), 9);
    }

    #[test]
    fn joint_attention_context_stream() {
        let mut b = Builder::new("joint");
        let x = b.input("x", TensorType::new(DType::F32, vec![2, 5, 8])).unwrap();
        let ctx = b.input("ctx", TensorType::new(DType::F32, vec![2, 3, 8])).unwrap();
        let attn = Attention { prefix: "attn", heads: 2, head_dim: 4, qk_norm: QkNorm::RmsPerHead { eps: 1e-6 }, bias: true, out_bias: true };
        let added = attn.project_added_qkv(&mut b, ctx).unwrap();
        assert_eq!(b.shape(added.key), vec![2, 3, 2, 4]);
        let [q, _, _] = added.heads_first(&mut b).unwrap();
        let y = attn.project_added_out(&mut b, q).unwrap();
        assert_eq!(b.shape(y), vec![2, 3, 8]);
        let across = Attention { qk_norm: QkNorm::RmsAcrossHeads { eps: 1e-6 }, ..attn };
        assert!(across.project_added_qkv(&mut b, x).unwrap_err().to_string().contains("rms_norm_across_heads"));
        let g = b.finish().unwrap();
        let w: Vec<(String, Vec<i64>)> = g.weights().map(|(n, t)| (n.to_string(), t.shape.clone())).collect();
        for (name, shape) in [
            ("attn.add_q_proj.weight", vec![8, 8]),
            ("attn.add_v_proj.bias", vec![8]),
            ("attn.norm_added_q.weight", vec![4]),
            ("attn.norm_added_k.weight", vec![4]),
            ("attn.to_add_out.bias", vec![8]),
        ] {
            assert!(w.contains(&(name.to_string(), shape)), "{name} in {w:?}");
        }
        assert_eq!(w.len(), 10);
    }
}
