//! Wan's text encoder: transformers' `UMT5EncoderModel` (modeling_umt5.py), block by block, with
//! the checkpoint's weight names.
//!
//! What differs from T5 and is easy to get wrong:
//! - every layer has its own `relative_attention_bias` (T5 has one, in layer 0);
//! - attention is unscaled (`scaling = 1.0`): the bias and the init carry the scale;
//! - the norm is RMS without mean subtraction, the variance in f32, the normalised value rounded
//!   to the weight's dtype *before* the weight multiplies it (two roundings in half precision);
//! - in fp16 transformers keeps `wo` in f32 (`_keep_in_fp32_modules`; not in bf16), so the
//!   residual stream becomes f32 after the first feed-forward, and fp16 values are clamped to
//!   the finite range after each sub-layer while the residual is still fp16.
//!
//! The relative position bucket of (key - query) depends only on the offset, so the 2L-1 buckets
//! are computed here, on the host, as torch computes them in f32, and the [L, L] bucket matrix is
//! built in the graph from two iotas and a `take`.

use super::config::Umt5Config;
use crate::nn::linear::linear;
use vidlower_ir::{AttentionKind, Builder, CompareDir, DType, GeluApprox, Graph, IrError, Result, TensorType, ValueId};

/// The token-embedding weight's name in the graph. `UMT5EncoderModel` ties
/// `encoder.embed_tokens.weight` to it; a checkpoint may hold either name (see [`weight_aliases`]).
pub const EMBEDDING_WEIGHT: &str = "shared.weight";

/// Other names a checkpoint may store a graph weight under (tied weights): the embedding is
/// `shared.weight` in the graph and `encoder.embed_tokens.weight` in some checkpoints.
pub fn weight_aliases(name: &str) -> &'static [&'static str] {
    match name {
        EMBEDDING_WEIGHT => &["encoder.embed_tokens.weight"],
        "encoder.embed_tokens.weight" => &[EMBEDDING_WEIGHT],
        _ => &[],
    }
}

/// The UMT5 encoder on `input_ids` (i64 [B, L]) and `attention_mask` (i64 [B, L], 1 for a real
/// token, 0 for padding), giving `last_hidden_state` [B, L, d_model] in `dtype`.
///
/// `dtype` is the dtype the model is loaded in (`from_pretrained(torch_dtype=...)`): weights in
/// it, except `wo` in f32 for f16, as transformers does.
pub fn umt5_encoder(cfg: &Umt5Config, batch: i64, seq_len: i64, dtype: DType) -> Result<Graph> {
    if !dtype.is_float() {
        return Err(IrError::Value(format!("umt5_encoder: dtype must be a float type, got {dtype}")));
    }
    if batch < 1 || seq_len < 1 {
        return Err(IrError::Value(format!("umt5_encoder: batch ({batch}) and seq_len ({seq_len}) must be >= 1")));
    }
    let ffn = FeedForward::from_config(&cfg.feed_forward_proj)?;
    let mut b = Builder::new("umt5_encoder");
    let ids = b.input("input_ids", TensorType::new(DType::I64, [batch, seq_len]))?;
    let mask = b.input("attention_mask", TensorType::new(DType::I64, [batch, seq_len]))?;

    let shared = b.weight(EMBEDDING_WEIGHT, TensorType::new(dtype, [cfg.vocab_size, cfg.d_model]))?;
    let mut hidden = b.take(shared, ids, 0)?;

    let enc = Encoder { cfg, dtype, batch, seq_len, ffn };
    let buckets = enc.bucket_matrix(&mut b)?;
    let key_is_real = enc.key_mask(&mut b, mask)?;
    for i in 0..cfg.num_layers {
        hidden = enc.block(&mut b, hidden, i, buckets, key_is_real)?;
    }
    let out = enc.layer_norm(&mut b, hidden, "encoder.final_layer_norm")?;
    b.output("last_hidden_state", out);
    b.finish()
}

/// The relative position bucket of every offset `key - query` in `-(len-1)..=(len-1)`, in that
/// order: transformers' `UMT5Attention._relative_position_bucket` for the encoder
/// (bidirectional), including its f32 `log` and truncation toward zero.
pub fn relative_position_buckets(len: i64, num_buckets: i64, max_distance: i64) -> Vec<i64> {
    (-(len - 1)..len).map(|rel| relative_position_bucket(rel, num_buckets, max_distance)).collect()
}

/// One offset's bucket; see [`relative_position_buckets`].
pub fn relative_position_bucket(relative_position: i64, num_buckets: i64, max_distance: i64) -> i64 {
    // Half the buckets for keys after the query, half for keys at or before it.
    let num_buckets = num_buckets / 2;
    let side = if relative_position > 0 { num_buckets } else { 0 };
    let n = relative_position.abs();
    // Half of each side exact, the other half logarithmic up to max_distance.
    let max_exact = num_buckets / 2;
    if n < max_exact {
        return side + n;
    }
    // torch: log(n.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets -
    // max_exact), every step in f32 (the python scalars rounded to f32), then `.to(long)`.
    let ratio = n as f32 / max_exact as f32;
    let denom = (max_distance as f64 / max_exact as f64).ln() as f32;
    let scaled = ratio.ln() / denom * (num_buckets - max_exact) as f32;
    side + (max_exact + scaled as i64).min(num_buckets - 1)
}

/// How the feed-forward is built, from `feed_forward_proj` ("gated-gelu", "relu", ...).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Activation {
    /// transformers' `gelu_new`: the tanh approximation.
    GeluTanh,
    GeluErf,
    Relu,
    Silu,
}

#[derive(Clone, Copy, Debug)]
struct FeedForward {
    gated: bool,
    act: Activation,
}

impl FeedForward {
    /// As `UMT5Config.__init__` reads it: "gated-ACT" or "ACT", and "gated-gelu" means `gelu_new`.
    fn from_config(proj: &str) -> Result<Self> {
        let (gated, name) = match proj.split_once('-') {
            Some(("gated", act)) => (true, act),
            None => (false, proj),
            Some(_) => return Err(IrError::Value(format!("umt5: feed_forward_proj `{proj}` is not `gated-ACT` or `ACT`"))),
        };
        let act = match (gated, name) {
            (true, "gelu") | (_, "gelu_new") | (_, "gelu_pytorch_tanh") => Activation::GeluTanh,
            (false, "gelu") => Activation::GeluErf,
            (_, "relu") => Activation::Relu,
            (_, "silu") | (_, "swish") => Activation::Silu,
            _ => return Err(IrError::Value(format!("umt5: activation `{name}` (feed_forward_proj `{proj}`) is not supported"))),
        };
        Ok(FeedForward { gated, act })
    }
}

struct Encoder<'a> {
    cfg: &'a Umt5Config,
    dtype: DType,
    batch: i64,
    seq_len: i64,
    ffn: FeedForward,
}

impl Encoder<'_> {
    /// `encoder.block.{i}`: self-attention then feed-forward, each pre-norm with a residual.
    fn block(&self, b: &mut Builder, x: ValueId, i: i64, buckets: ValueId, key_is_real: ValueId) -> Result<ValueId> {
        let p = format!("encoder.block.{i}.layer.0");
        let h = self.layer_norm(b, x, &format!("{p}.layer_norm"))?;
        let a = self.self_attention(b, h, &format!("{p}.SelfAttention"), buckets, key_is_real)?;
        let x = add_promoted(b, x, a)?;
        let x = clamp_fp16(b, x)?;

        let p = format!("encoder.block.{i}.layer.1");
        let h = self.layer_norm(b, x, &format!("{p}.layer_norm"))?;
        let f = self.feed_forward(b, h, &format!("{p}.DenseReluDense"))?;
        let x = add_promoted(b, x, f)?;
        clamp_fp16(b, x)
    }

    /// `UMT5LayerNorm`: `weight * (x * rsqrt(mean(x^2) + eps))`, the variance in f32 and the
    /// normalised value converted to the weight's dtype when that is half precision.
    fn layer_norm(&self, b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
        let w = b.weight(&format!("{prefix}.weight"), TensorType::new(self.dtype, [self.cfg.d_model]))?;
        let y = b.rms_norm(x, self.cfg.layer_norm_epsilon, None)?;
        let y = if matches!(self.dtype, DType::F16 | DType::BF16) { b.convert(y, self.dtype)? } else { y };
        mul_promoted(b, w, y)
    }

    /// `UMT5Attention` without a cache: q, k, v, unscaled scores plus this layer's position
    /// bias, padded keys masked with the dtype's minimum (transformers' additive mask), o.
    fn self_attention(&self, b: &mut Builder, x: ValueId, prefix: &str, buckets: ValueId, key_is_real: ValueId) -> Result<ValueId> {
        let (heads, inner) = (self.cfg.num_heads, self.cfg.num_heads * self.cfg.d_kv);
        let q = linear(b, x, &format!("{prefix}.q"), inner, false)?;
        let k = linear(b, x, &format!("{prefix}.k"), inner, false)?;
        let v = linear(b, x, &format!("{prefix}.v"), inner, false)?;
        let (q, k, v) = (b.split_heads(q, heads)?, b.split_heads(k, heads)?, b.split_heads(v, heads)?);

        // compute_bias: relative_attention_bias(buckets) [L, L, H] -> [1, H, L, L].
        let (l, nb) = (self.seq_len, self.cfg.relative_attention_num_buckets);
        let table = b.weight(&format!("{prefix}.relative_attention_bias.weight"), TensorType::new(self.dtype, [nb, heads]))?;
        let bias = b.take(table, buckets, 0)?;
        let bias = b.transpose(bias, &[2, 0, 1])?;
        let full = [self.batch, heads, l, l];
        let bias = b.broadcast_in_dim(bias, &full, &[1, 2, 3])?;
        // sdpa_attention's create_position_bias_mask: where(mask, position_bias, finfo.min).
        let masked = b.full(finfo_min(self.dtype), TensorType::new(self.dtype, full))?;
        let bias = b.select(key_is_real, bias, masked)?;

        let a = b.attention(AttentionKind::SelfAttention, q, k, v, 1.0, Some(bias), None)?;
        let a = b.merge_heads(a)?;
        linear(b, a, &format!("{prefix}.o"), self.cfg.d_model, false)
    }

    /// `UMT5DenseGatedActDense` (or `UMT5DenseActDense`): act(wi_0 x) * wi_1 x, then wo, the
    /// product converted to wo's dtype first (f32 for an f16 model).
    fn feed_forward(&self, b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
        let d_ff = self.cfg.d_ff;
        let h = if self.ffn.gated {
            let g = linear(b, x, &format!("{prefix}.wi_0"), d_ff, false)?;
            let g = activation(b, g, self.ffn.act)?;
            let lin = linear(b, x, &format!("{prefix}.wi_1"), d_ff, false)?;
            b.mul(g, lin)?
        } else {
            let h = linear(b, x, &format!("{prefix}.wi"), d_ff, false)?;
            activation(b, h, self.ffn.act)?
        };
        let wo_dtype = if self.dtype == DType::F16 { DType::F32 } else { self.dtype };
        let h = b.convert(h, wo_dtype)?;
        linear(b, h, &format!("{prefix}.wo"), self.cfg.d_model, false)
    }

    /// The [L, L] bucket of (key j - query i): `buckets[(j - i) + L - 1]` from the host-computed
    /// list, gathered by an index matrix made of two iotas.
    fn bucket_matrix(&self, b: &mut Builder) -> Result<ValueId> {
        let l = self.seq_len;
        let list = relative_position_buckets(l, self.cfg.relative_attention_num_buckets, self.cfg.relative_attention_max_distance);
        let list = b.constant(list.into_iter().map(|v| v as f64).collect(), TensorType::new(DType::I32, [2 * l - 1]))?;
        let pos = TensorType::new(DType::I32, [l, l]);
        let query = b.iota(pos.clone(), 0)?;
        let key = b.iota(pos, 1)?;
        let offset = b.sub(key, query)?;
        let shift = b.scalar((l - 1) as f64, DType::I32)?;
        let index = b.add(offset, shift)?;
        b.take(list, index, 0)
    }

    /// `attention_mask != 0` as [B, 1, 1, L] (true where the key is a real token), broadcast to
    /// the scores' shape.
    fn key_mask(&self, b: &mut Builder, mask: ValueId) -> Result<ValueId> {
        let zero = b.scalar(0.0, DType::I64)?;
        let real = b.compare(CompareDir::Ne, mask, zero)?;
        let full = [self.batch, self.cfg.num_heads, self.seq_len, self.seq_len];
        b.broadcast_in_dim(real, &full, &[0, 3])
    }
}

fn activation(b: &mut Builder, x: ValueId, act: Activation) -> Result<ValueId> {
    match act {
        Activation::GeluTanh => b.gelu(x, GeluApprox::Tanh),
        Activation::GeluErf => b.gelu(x, GeluApprox::Erf),
        Activation::Relu => {
            let zero = b.scalar(0.0, b.dtype(x))?;
            b.max(x, zero)
        }
        Activation::Silu => b.silu(x),
    }
}

/// torch's type promotion between float tensors: the wider type (f32 over f16/bf16).
fn promote(b: &mut Builder, x: ValueId, y: ValueId) -> Result<(ValueId, ValueId)> {
    let (dx, dy) = (b.dtype(x), b.dtype(y));
    if dx == dy {
        return Ok((x, y));
    }
    let to = if dx.size_in_bytes() > dy.size_in_bytes() { dx } else if dy.size_in_bytes() > dx.size_in_bytes() { dy } else { DType::F32 };
    Ok((b.convert(x, to)?, b.convert(y, to)?))
}

fn add_promoted(b: &mut Builder, x: ValueId, y: ValueId) -> Result<ValueId> {
    let (x, y) = promote(b, x, y)?;
    b.add(x, y)
}

fn mul_promoted(b: &mut Builder, x: ValueId, y: ValueId) -> Result<ValueId> {
    let (x, y) = promote(b, x, y)?;
    b.mul(x, y)
}

/// `UMT5Block`'s fp16 guard: clamp to +-(max - 1000) if any element is inf, else to +-max.
/// Only an f16 residual is clamped, as in transformers.
fn clamp_fp16(b: &mut Builder, x: ValueId) -> Result<ValueId> {
    if b.dtype(x) != DType::F16 {
        return Ok(x);
    }
    let max = 65504.0;
    let abs = b.unary(vidlower_ir::UnaryOp::Abs, x)?;
    let rank: Vec<usize> = (0..b.ty(x).rank()).collect();
    let largest = b.reduce(abs, vidlower_ir::ReduceKind::Max, &rank)?;
    let inf = b.scalar(f64::INFINITY, DType::F16)?;
    let any_inf = b.compare(CompareDir::Eq, largest, inf)?;
    let lowered = b.scalar(max - 1000.0, DType::F16)?;
    let full = b.scalar(max, DType::F16)?;
    let bound = b.select(any_inf, lowered, full)?;
    let neg = b.neg(bound)?;
    let hi = b.min(x, bound)?;
    b.max(hi, neg)
}

/// `torch.finfo(dtype).min`, the value transformers' additive masks use.
fn finfo_min(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.3895313892515355e38,
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Umt5Config {
        Umt5Config { vocab_size: 64, d_model: 16, d_kv: 4, d_ff: 24, num_layers: 2, num_heads: 2, ..Default::default() }
    }

    /// Checks `relative_position_bucket` on -5000..=5000 against runs (first offset, bucket).
    fn check_runs(num_buckets: i64, max_distance: i64, runs: &[(i64, i64)]) {
        for (i, &(start, bucket)) in runs.iter().enumerate() {
            let end = runs.get(i + 1).map_or(5001, |r| r.0);
            for rel in start..end {
                assert_eq!(relative_position_bucket(rel, num_buckets, max_distance), bucket, "offset {rel} ({num_buckets}, {max_distance})");
            }
        }
    }

    /// The runs come from torch 2.15 (`UMT5Attention._relative_position_bucket`, encoder) on
    /// -5000..=5000. Offsets 16 and 32 land exactly on a bucket edge in f32 (log2 ratios 1/4, 1/2).
    #[test]
    fn buckets_match_torch() {
        check_runs(32, 128, &[
            (-5000, 15), (-90, 14), (-63, 13), (-45, 12), (-31, 11), (-22, 10), (-15, 9), (-11, 8), (-7, 7), (-6, 6),
            (-5, 5), (-4, 4), (-3, 3), (-2, 2), (-1, 1), (0, 0), (1, 17), (2, 18), (3, 19), (4, 20), (5, 21), (6, 22),
            (7, 23), (8, 24), (12, 25), (16, 26), (23, 27), (32, 28), (46, 29), (64, 30), (91, 31),
        ]);
        check_runs(64, 256, &[
            (-5000, 31), (-215, 30), (-181, 29), (-152, 28), (-127, 27), (-107, 26), (-90, 25), (-76, 24), (-63, 23),
            (-53, 22), (-45, 21), (-38, 20), (-31, 19), (-26, 18), (-22, 17), (-19, 16), (-15, 15), (-14, 14), (-13, 13),
            (-12, 12), (-11, 11), (-10, 10), (-9, 9), (-8, 8), (-7, 7), (-6, 6), (-5, 5), (-4, 4), (-3, 3), (-2, 2),
            (-1, 1), (0, 0), (1, 33), (2, 34), (3, 35), (4, 36), (5, 37), (6, 38), (7, 39), (8, 40), (9, 41), (10, 42),
            (11, 43), (12, 44), (13, 45), (14, 46), (15, 47), (16, 48), (20, 49), (23, 50), (27, 51), (32, 52), (39, 53),
            (46, 54), (54, 55), (64, 56), (77, 57), (91, 58), (108, 59), (128, 60), (153, 61), (182, 62), (216, 63),
        ]);
        assert_eq!(relative_position_buckets(3, 32, 128), vec![2, 1, 0, 17, 18]);
    }

    #[test]
    fn builds_with_checkpoint_names() {
        let g = umt5_encoder(&tiny(), 2, 7, DType::F32).unwrap();
        let names: Vec<&str> = g.weights().map(|(n, _)| n).collect();
        // shared + per layer (q, k, v, o, bias, 2 norms, wi_0, wi_1, wo) + final norm.
        assert_eq!(names.len(), 1 + 2 * 10 + 1, "{names:?}");
        for n in [
            "shared.weight",
            "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight",
            "encoder.block.0.layer.1.DenseReluDense.wi_1.weight",
            "encoder.final_layer_norm.weight",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let out = g.tensor_ty(g.outputs[0].value);
        assert_eq!((out.dtype, out.shape.clone()), (DType::F32, vec![2, 7, 16]));
    }

    #[test]
    fn fp16_keeps_wo_in_f32_and_returns_f16() {
        let g = umt5_encoder(&tiny(), 1, 5, DType::F16).unwrap();
        let wo = g.weights().find(|(n, _)| *n == "encoder.block.0.layer.1.DenseReluDense.wo.weight").unwrap().1;
        assert_eq!(wo.dtype, DType::F32);
        assert_eq!(g.tensor_ty(g.outputs[0].value).dtype, DType::F16);
        let g = umt5_encoder(&tiny(), 1, 5, DType::BF16).unwrap();
        assert!(g.weights().all(|(_, t)| t.dtype == DType::BF16));
        assert_eq!(g.tensor_ty(g.outputs[0].value).dtype, DType::BF16);
    }

    #[test]
    fn bad_feed_forward_is_an_error() {
        let cfg = Umt5Config { feed_forward_proj: "gated-tanhshrink".into(), ..tiny() };
        let e = umt5_encoder(&cfg, 1, 4, DType::F32).unwrap_err().to_string();
        assert!(e.contains("tanhshrink"), "{e}");
    }
}
