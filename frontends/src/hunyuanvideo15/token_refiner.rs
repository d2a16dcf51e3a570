//! `HunyuanVideo15TokenRefiner` (the transformer's `context_embedder`): the MLLM text states refined
//! by a few self-attention blocks over the text alone, conditioned on the timestep and on the mean of
//! the valid text tokens.

use crate::nn::attention::{Attention, QkNorm};
use crate::nn::linear::linear;
use crate::nn::norms::layer_norm;
use crate::nn::padding_mask::{key_padding_mask, zero_padded_rows};
use crate::nn::timestep_embedding::{timestep_embedding, Timesteps};
use vidlower_ir::{AttentionKind, Builder, DType, Result, ValueId};

/// The refiner's sizes (from the transformer config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenRefiner<'a> {
    /// The module's state-dict prefix, `context_embedder`.
    pub prefix: &'a str,
    pub heads: i64,
    pub head_dim: i64,
    pub num_layers: i64,
    /// `FeedForward(hidden, mult=mlp_ratio)`'s hidden width.
    pub mlp_hidden: i64,
}

impl TokenRefiner<'_> {
    fn hidden(&self) -> i64 {
        self.heads * self.head_dim
    }

    /// `forward(hidden_states [B, L, in], timestep f32 [B], attention_mask f32 0/1 [B, L])` ->
    /// [B, L, hidden] in `hidden_states`' dtype. Rows of padded tokens are what diffusers computes
    /// for them (their attention output is 0); the transformer zeroes them afterwards anyway.
    /// A row whose mask is all zero makes diffusers' mean pooling 0/0 (NaN); the pipeline never
    /// passes one (the prompt template always has tokens).
    pub fn forward(&self, b: &mut Builder, hidden_states: ValueId, timestep: ValueId, mask: ValueId) -> Result<ValueId> {
        let p = self.prefix;
        let dtype = b.dtype(hidden_states);
        // pooled_projections = (hidden_states * mask_float).sum(dim=1) / mask_float.sum(dim=1), in f32
        // (bf16 * f32 promotes), then .to(original_dtype)
        let x32 = b.convert(hidden_states, DType::F32)?;
        let m32 = b.convert(mask, DType::F32)?;
        let shape = b.shape(x32);
        let m = b.broadcast_in_dim(m32, &shape, &[0, 1])?;
        let masked = b.mul(x32, m)?;
        let sum = b.sum(masked, &[1])?;
        let count = b.sum(m32, &[1])?;
        let count = b.reshape(count, &[shape[0], 1])?;
        let pooled = b.div(sum, count)?;
        let pooled = b.convert(pooled, dtype)?;

        // temb = self.time_text_embed(timestep, pooled_projections) (CombinedTimestepTextProjEmbeddings)
        let t = Timesteps::new(256, true, 0.0).forward(b, timestep)?;
        let t = b.convert(t, dtype)?;
        let t = timestep_embedding(b, t, &format!("{p}.time_text_embed.timestep_embedder"), self.hidden())?;
        // text_embedder = PixArtAlphaTextProjection(in, hidden, act_fn="silu")
        let text_embedder = format!("{p}.time_text_embed.text_embedder");
        let e = linear(b, pooled, &format!("{text_embedder}.linear_1"), self.hidden(), true)?;
        let e = b.silu(e)?;
        let e = linear(b, e, &format!("{text_embedder}.linear_2"), self.hidden(), true)?;
        let temb = b.add(t, e)?;

        let mut x = linear(b, hidden_states, &format!("{p}.proj_in"), self.hidden(), true)?;
        let key_mask = key_padding_mask(b, mask)?;
        for i in 0..self.num_layers {
            let prefix = format!("{p}.token_refiner.refiner_blocks.{i}");
            x = self.block(b, &prefix, x, temb, key_mask, mask)?;
        }
        Ok(x)
    }

    /// `HunyuanVideo15IndividualTokenRefinerBlock.forward`.
    fn block(
        &self,
        b: &mut Builder,
        prefix: &str,
        hidden_states: ValueId,
        temb: ValueId,
        key_mask: ValueId,
        mask: ValueId,
    ) -> Result<ValueId> {
        let norm = layer_norm(b, hidden_states, 1e-6, Some(&format!("{prefix}.norm1")))?;
        // Attention(hidden, heads, dim_head, bias=True) with AttnProcessor2_0, mask & mask^T
        let attn = Attention {
            prefix: &format!("{prefix}.attn"),
            heads: self.heads,
            head_dim: self.head_dim,
            qk_norm: QkNorm::None,
            bias: true,
            out_bias: true,
        };
        let [q, k, v] = attn.project_qkv(b, norm, norm)?.heads_first(b)?;
        let out = b.attention(AttentionKind::SelfAttention, q, k, v, attn.scale(), Some(key_mask), None)?;
        let out = zero_padded_rows(b, out, mask)?;
        let attn_output = attn.project_out(b, out)?;

        // gate_msa, gate_mlp = self.norm_out(temb): linear(silu(temb)).chunk(2, dim=1), unsqueeze(1)
        let act = b.silu(temb)?;
        let gates = linear(b, act, &format!("{prefix}.norm_out.linear"), 2 * self.hidden(), true)?;
        let [bs, _] = b.shape(gates)[..] else { unreachable!("linear of [B, hidden]") };
        let gates = b.reshape(gates, &[bs, 2, self.hidden()])?;
        let gate_msa = b.slice_axis(gates, 1, 0, 1)?;
        let gate_mlp = b.slice_axis(gates, 1, 1, 1)?;

        let gated = b.mul(attn_output, gate_msa)?;
        let hidden_states = b.add(hidden_states, gated)?;
        // FeedForward(hidden, mult=mlp_ratio, activation_fn="linear-silu"): net.0.proj, SiLU, net.2
        let h = layer_norm(b, hidden_states, 1e-6, Some(&format!("{prefix}.norm2")))?;
        let h = linear(b, h, &format!("{prefix}.ff.net.0.proj"), self.mlp_hidden, true)?;
        let h = b.silu(h)?;
        let ff = linear(b, h, &format!("{prefix}.ff.net.2"), self.hidden(), true)?;
        let gated = b.mul(ff, gate_mlp)?;
        b.add(hidden_states, gated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::TensorType;

    #[test]
    fn weight_names_and_shapes() {
        let mut b = Builder::new("refiner");
        let x = b.input("x", TensorType::new(DType::BF16, vec![2, 7, 12])).unwrap();
        let t = b.input("t", TensorType::new(DType::F32, vec![2])).unwrap();
        let m = b.input("m", TensorType::new(DType::F32, vec![2, 7])).unwrap();
        let r = TokenRefiner { prefix: "context_embedder", heads: 2, head_dim: 4, num_layers: 2, mlp_hidden: 32 };
        let y = r.forward(&mut b, x, t, m).unwrap();
        assert_eq!(b.ty(y), &TensorType::new(DType::BF16, vec![2, 7, 8]));
        let g = b.finish().unwrap();
        let w: std::collections::HashMap<&str, &TensorType> = g.weights().collect();
        // time_text_embed 8, proj_in 2, per block: norm1 2, attn 8, norm_out 2, norm2 2, ff 4
        assert_eq!(w.len(), 10 + 2 * 18);
        let t = |s: &[i64]| TensorType::new(DType::BF16, s.to_vec());
        assert_eq!(w["context_embedder.time_text_embed.timestep_embedder.linear_1.weight"], &t(&[8, 256]));
        assert_eq!(w["context_embedder.time_text_embed.text_embedder.linear_1.weight"], &t(&[8, 12]));
        assert_eq!(w["context_embedder.proj_in.weight"], &t(&[8, 12]));
        assert_eq!(w["context_embedder.token_refiner.refiner_blocks.1.norm_out.linear.weight"], &t(&[16, 8]));
        assert_eq!(w["context_embedder.token_refiner.refiner_blocks.0.ff.net.0.proj.weight"], &t(&[32, 8]));
        assert_eq!(w["context_embedder.token_refiner.refiner_blocks.0.attn.to_out.0.bias"], &t(&[8]));
    }
}
