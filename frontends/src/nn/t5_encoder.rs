//! transformers' T5 encoder family, block by block with the checkpoint's weight names:
//! `T5EncoderModel` (modeling_t5.py: T5 v1.1 as CogVideoX's `google/t5-v1_1-xxl`, mT5, ByT5) and
//! `UMT5EncoderModel` (modeling_umt5.py: Wan's `google/umt5-xxl`). The two differ in one place:
//! - UMT5: every layer has its own `relative_attention_bias`;
//! - T5: only `encoder.block.0` has one; the bias it computes is shared by all layers.
//!
//! What is common and easy to get wrong:
//! - attention is unscaled (`scaling = 1.0`): the bias and the init carry the scale;
//! - the norm is RMS without mean subtraction, the variance in f32, the normalised value rounded
//!   to the weight's dtype *before* the weight multiplies it (two roundings in half precision);
//! - in fp16 transformers keeps `wo` in f32 (`_keep_in_fp32_modules`; not in bf16), so the
//!   residual stream becomes f32 after the first feed-forward, and fp16 values are clamped to
//!   the finite range after each sub-layer while the residual is still fp16;
//! - the attention mask is optional: Wan passes it, CogVideoX does not (its padding tokens are
//!   attended to), so the graph takes an `attention_mask` input only when asked to.
//!
//! The relative position bucket of (key - query) depends only on the offset, so the 2L-1 buckets
//! are computed here, on the host, as torch computes them in f32, and the [L, L] bucket matrix is
//! built in the graph from two iotas and a `take`.

use crate::nn::linear::linear;
use serde::Deserialize;
use vidlower_ir::{AttentionKind, Builder, CompareDir, DType, GeluApprox, Graph, IrError, Result, TensorType, ValueId};

/// The token-embedding weight's name in the graph. `T5EncoderModel` / `UMT5EncoderModel` tie
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

/// Where the relative attention bias lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum T5Variant {
    /// `T5EncoderModel` (T5 v1.1, mT5, ByT5): one table, in `encoder.block.0`, shared by all layers.
    T5,
    /// `UMT5EncoderModel`: one table per layer.
    Umt5,
}

/// transformers' `T5Config` / `UMT5Config` (`text_encoder/config.json`), the encoder's fields.
/// Fields missing from the file take the defaults of the config class its `model_type` names
/// (`umt5`: `UMT5Config`; anything else: `T5Config`). [`Default`] is UMT5's (Wan's encoder).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(from = "RawT5Config")]
pub struct T5Config {
    pub model_type: String,
    pub vocab_size: i64,
    pub d_model: i64,
    pub d_kv: i64,
    pub d_ff: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub relative_attention_num_buckets: i64,
    pub relative_attention_max_distance: i64,
    pub layer_norm_epsilon: f64,
    pub feed_forward_proj: String,
    pub pad_token_id: Option<i64>,
}

impl T5Config {
    /// `UMT5Config()`'s defaults.
    pub fn umt5() -> Self {
        T5Config {
            model_type: "umt5".into(),
            vocab_size: 250112,
            d_model: 512,
            d_kv: 64,
            d_ff: 1024,
            num_layers: 8,
            num_heads: 6,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "gated-gelu".into(),
            pad_token_id: Some(0),
        }
    }

    /// `T5Config()`'s defaults (the original T5: relu feed-forward).
    pub fn t5() -> Self {
        T5Config {
            model_type: "t5".into(),
            vocab_size: 32128,
            d_ff: 2048,
            num_layers: 6,
            num_heads: 8,
            feed_forward_proj: "relu".into(),
            ..Self::umt5()
        }
    }

    /// `google/t5-v1_1-xxl`, CogVideoX's text encoder.
    pub fn t5_v1_1_xxl() -> Self {
        T5Config { d_model: 4096, d_kv: 64, d_ff: 10240, num_layers: 24, num_heads: 64, feed_forward_proj: "gated-gelu".into(), ..Self::t5() }
    }

    /// The variant `model_type` names: `umt5` is UMT5, anything else (`t5`, `mt5`) T5.
    pub fn variant(&self) -> T5Variant {
        if self.model_type == "umt5" {
            T5Variant::Umt5
        } else {
            T5Variant::T5
        }
    }
}

impl Default for T5Config {
    fn default() -> Self {
        Self::umt5()
    }
}

/// `config.json` as written, every field optional (see [`T5Config`]).
#[derive(Deserialize)]
struct RawT5Config {
    model_type: Option<String>,
    vocab_size: Option<i64>,
    d_model: Option<i64>,
    d_kv: Option<i64>,
    d_ff: Option<i64>,
    num_layers: Option<i64>,
    num_heads: Option<i64>,
    relative_attention_num_buckets: Option<i64>,
    relative_attention_max_distance: Option<i64>,
    layer_norm_epsilon: Option<f64>,
    feed_forward_proj: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pad_token_id: Option<Option<i64>>,
}

/// Tells an explicit `null` (`Some(None)`) from a missing field (`None`: take the default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

impl From<RawT5Config> for T5Config {
    fn from(r: RawT5Config) -> Self {
        let d = if r.model_type.as_deref() == Some("umt5") { T5Config::umt5() } else { T5Config::t5() };
        T5Config {
            model_type: r.model_type.unwrap_or(d.model_type),
            vocab_size: r.vocab_size.unwrap_or(d.vocab_size),
            d_model: r.d_model.unwrap_or(d.d_model),
            d_kv: r.d_kv.unwrap_or(d.d_kv),
            d_ff: r.d_ff.unwrap_or(d.d_ff),
            num_layers: r.num_layers.unwrap_or(d.num_layers),
            num_heads: r.num_heads.unwrap_or(d.num_heads),
            relative_attention_num_buckets: r.relative_attention_num_buckets.unwrap_or(d.relative_attention_num_buckets),
            relative_attention_max_distance: r.relative_attention_max_distance.unwrap_or(d.relative_attention_max_distance),
            layer_norm_epsilon: r.layer_norm_epsilon.unwrap_or(d.layer_norm_epsilon),
            feed_forward_proj: r.feed_forward_proj.unwrap_or(d.feed_forward_proj),
            pad_token_id: r.pad_token_id.unwrap_or(d.pad_token_id),
        }
    }
}

/// How to build the encoder graph.
#[derive(Clone, Debug, PartialEq)]
pub struct T5EncoderOptions {
    pub variant: T5Variant,
    /// The dtype the model is loaded in (`from_pretrained(torch_dtype=...)`): weights in it,
    /// except `wo` in f32 for f16, as transformers does.
    pub dtype: DType,
    /// Take an `attention_mask` input (i64 [B, L], 1 for a real token, 0 for padding) and mask
    /// padded keys, as `encoder(input_ids, attention_mask)`; without it every token is attended
    /// to, as `encoder(input_ids)` (CogVideoX).
    pub attention_mask: bool,
    /// Also output these entries of transformers' `hidden_states` (`output_hidden_states=True`),
    /// named `hidden_states.{i}`: 0 is the token embeddings, i in 1..num_layers the output of
    /// `encoder.block.{i-1}`, num_layers the final normed output (= `last_hidden_state`).
    pub hidden_states: Vec<i64>,
}

impl T5EncoderOptions {
    /// The variant `cfg` names, with an attention mask, no extra outputs.
    pub fn new(cfg: &T5Config, dtype: DType) -> Self {
        T5EncoderOptions { variant: cfg.variant(), dtype, attention_mask: true, hidden_states: Vec::new() }
    }
}

/// The encoder on `input_ids` (i64 [B, L]) and, when `opts.attention_mask`, `attention_mask`
/// (i64 [B, L]), giving `last_hidden_state` [B, L, d_model] in `opts.dtype` (then any
/// `hidden_states.{i}` asked for).
pub fn t5_encoder(cfg: &T5Config, batch: i64, seq_len: i64, opts: &T5EncoderOptions) -> Result<Graph> {
    let name = match opts.variant {
        T5Variant::T5 => "t5_encoder",
        T5Variant::Umt5 => "umt5_encoder",
    };
    let dtype = opts.dtype;
    if !dtype.is_float() {
        return Err(IrError::Value(format!("{name}: dtype must be a float type, got {dtype}")));
    }
    if batch < 1 || seq_len < 1 {
        return Err(IrError::Value(format!("{name}: batch ({batch}) and seq_len ({seq_len}) must be >= 1")));
    }
    if let Some(i) = opts.hidden_states.iter().find(|&&i| !(0..=cfg.num_layers).contains(&i)) {
        return Err(IrError::Value(format!("{name}: hidden_states index {i} is outside 0..={} (num_layers)", cfg.num_layers)));
    }
    let ffn = FeedForward::from_config(&cfg.feed_forward_proj)?;
    let mut b = Builder::new(name);
    let ids = b.input("input_ids", TensorType::new(DType::I64, [batch, seq_len]))?;
    let mask = if opts.attention_mask { Some(b.input("attention_mask", TensorType::new(DType::I64, [batch, seq_len]))?) } else { None };

    let shared = b.weight(EMBEDDING_WEIGHT, TensorType::new(dtype, [cfg.vocab_size, cfg.d_model]))?;
    let mut hidden = b.take(shared, ids, 0)?;
    let mut states = vec![hidden];

    let enc = Encoder { cfg, dtype, batch, seq_len, ffn };
    let buckets = enc.bucket_matrix(&mut b)?;
    let key_is_real = mask.map(|m| enc.key_mask(&mut b, m)).transpose()?;
    // T5: block 0 computes the bias and every block reuses it; UMT5: each block its own.
    let shared_bias = match opts.variant {
        T5Variant::T5 => Some(enc.position_bias(&mut b, 0, buckets, key_is_real)?),
        T5Variant::Umt5 => None,
    };
    for i in 0..cfg.num_layers {
        let bias = match shared_bias {
            Some(bias) => bias,
            None => enc.position_bias(&mut b, i, buckets, key_is_real)?,
        };
        hidden = enc.block(&mut b, hidden, i, bias)?;
        states.push(hidden);
    }
    let out = enc.layer_norm(&mut b, hidden, "encoder.final_layer_norm")?;
    b.output("last_hidden_state", out);
    for &i in &opts.hidden_states {
        let v = if i == cfg.num_layers { out } else { states[i as usize] };
        b.output(&format!("hidden_states.{i}"), v);
    }
    b.finish()
}

/// The relative position bucket of every offset `key - query` in `-(len-1)..=(len-1)`, in that
/// order: transformers' `T5Attention._relative_position_bucket` (UMT5's is the same) for the encoder
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
    /// As `T5Config.__init__` reads it: "gated-ACT" or "ACT", and "gated-gelu" means `gelu_new`.
    fn from_config(proj: &str) -> Result<Self> {
        let (gated, name) = match proj.split_once('-') {
            Some(("gated", act)) => (true, act),
            None => (false, proj),
            Some(_) => return Err(IrError::Value(format!("t5 encoder: feed_forward_proj `{proj}` is not `gated-ACT` or `ACT`"))),
        };
        let act = match (gated, name) {
            (true, "gelu") | (_, "gelu_new") | (_, "gelu_pytorch_tanh") => Activation::GeluTanh,
            (false, "gelu") => Activation::GeluErf,
            (_, "relu") => Activation::Relu,
            (_, "silu") | (_, "swish") => Activation::Silu,
            _ => return Err(IrError::Value(format!("t5 encoder: activation `{name}` (feed_forward_proj `{proj}`) is not supported"))),
        };
        Ok(FeedForward { gated, act })
    }
}

struct Encoder<'a> {
    cfg: &'a T5Config,
    dtype: DType,
    batch: i64,
    seq_len: i64,
    ffn: FeedForward,
}

impl Encoder<'_> {
    /// `encoder.block.{i}`: self-attention then feed-forward, each pre-norm with a residual.
    fn block(&self, b: &mut Builder, x: ValueId, i: i64, bias: ValueId) -> Result<ValueId> {
        let p = format!("encoder.block.{i}.layer.0");
        let h = self.layer_norm(b, x, &format!("{p}.layer_norm"))?;
        let a = self.self_attention(b, h, &format!("{p}.SelfAttention"), bias)?;
        let x = add_promoted(b, x, a)?;
        let x = clamp_fp16(b, x)?;

        let p = format!("encoder.block.{i}.layer.1");
        let h = self.layer_norm(b, x, &format!("{p}.layer_norm"))?;
        let f = self.feed_forward(b, h, &format!("{p}.DenseReluDense"))?;
        let x = add_promoted(b, x, f)?;
        clamp_fp16(b, x)
    }

    /// `T5LayerNorm`: `weight * (x * rsqrt(mean(x^2) + eps))`, the variance in f32 and the
    /// normalised value converted to the weight's dtype when that is half precision.
    fn layer_norm(&self, b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
        let w = b.weight(&format!("{prefix}.weight"), TensorType::new(self.dtype, [self.cfg.d_model]))?;
        let y = b.rms_norm(x, self.cfg.layer_norm_epsilon, None)?;
        let y = if matches!(self.dtype, DType::F16 | DType::BF16) { b.convert(y, self.dtype)? } else { y };
        mul_promoted(b, w, y)
    }

    /// `compute_bias` of `encoder.block.{layer}`: `relative_attention_bias(buckets)` [L, L, H]
    /// -> [B, H, L, L]; with a mask, padded keys get the dtype's minimum instead (sdpa's
    /// `create_position_bias_mask`: `where(mask, position_bias, finfo.min)`).
    fn position_bias(&self, b: &mut Builder, layer: i64, buckets: ValueId, key_is_real: Option<ValueId>) -> Result<ValueId> {
        let (heads, l, nb) = (self.cfg.num_heads, self.seq_len, self.cfg.relative_attention_num_buckets);
        let name = format!("encoder.block.{layer}.layer.0.SelfAttention.relative_attention_bias.weight");
        let table = b.weight(&name, TensorType::new(self.dtype, [nb, heads]))?;
        let bias = b.take(table, buckets, 0)?;
        let bias = b.transpose(bias, &[2, 0, 1])?;
        let full = [self.batch, heads, l, l];
        let bias = b.broadcast_in_dim(bias, &full, &[1, 2, 3])?;
        match key_is_real {
            Some(real) => {
                let masked = b.full(finfo_min(self.dtype), TensorType::new(self.dtype, full))?;
                b.select(real, bias, masked)
            }
            None => Ok(bias),
        }
    }

    /// `T5Attention` without a cache: q, k, v, unscaled scores plus the position bias, o.
    fn self_attention(&self, b: &mut Builder, x: ValueId, prefix: &str, bias: ValueId) -> Result<ValueId> {
        let (heads, inner) = (self.cfg.num_heads, self.cfg.num_heads * self.cfg.d_kv);
        let q = linear(b, x, &format!("{prefix}.q"), inner, false)?;
        let k = linear(b, x, &format!("{prefix}.k"), inner, false)?;
        let v = linear(b, x, &format!("{prefix}.v"), inner, false)?;
        let (q, k, v) = (b.split_heads(q, heads)?, b.split_heads(k, heads)?, b.split_heads(v, heads)?);
        // kind: Self
        let a = b.attention(AttentionKind::SelfAttention, q, k, v, 1.0, Some(bias), None)?;
        let a = b.merge_heads(a)?;
        linear(b, a, &format!("{prefix}.o"), self.cfg.d_model, false)
    }

    /// `T5DenseGatedActDense` (or `T5DenseActDense`): act(wi_0 x) * wi_1 x, then wo, the
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

/// `T5Block`'s fp16 guard: clamp to +-(max - 1000) if any element is inf, else to +-max.
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

    fn tiny() -> T5Config {
        T5Config { vocab_size: 64, d_model: 16, d_kv: 4, d_ff: 24, num_layers: 2, num_heads: 2, ..T5Config::umt5() }
    }

    fn umt5_encoder(cfg: &T5Config, batch: i64, seq_len: i64, dtype: DType) -> Result<Graph> {
        t5_encoder(cfg, batch, seq_len, &T5EncoderOptions::new(cfg, dtype))
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
        let cfg = T5Config { feed_forward_proj: "gated-tanhshrink".into(), ..tiny() };
        let e = umt5_encoder(&cfg, 1, 4, DType::F32).unwrap_err().to_string();
        assert!(e.contains("tanhshrink"), "{e}");
    }

    /// T5 v1.1: one bias table (block 0), no mask input when none is asked for, extra
    /// hidden-state outputs by transformers' index.
    #[test]
    fn t5_shares_block0_bias_and_mask_is_optional() {
        let cfg = T5Config { model_type: "t5".into(), ..tiny() };
        let opts = T5EncoderOptions { attention_mask: false, hidden_states: vec![0, 1, 2], ..T5EncoderOptions::new(&cfg, DType::F32) };
        assert_eq!(opts.variant, T5Variant::T5);
        let g = t5_encoder(&cfg, 2, 7, &opts).unwrap();
        let names: Vec<&str> = g.weights().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 1 + 2 * 9 + 1 + 1, "{names:?}");
        let biases: Vec<&&str> = names.iter().filter(|n| n.contains("relative_attention_bias")).collect();
        assert_eq!(biases, [&"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]);
        assert!(g.find_input("input_ids").is_some() && g.find_input("attention_mask").is_none());
        let outs: Vec<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outs, ["last_hidden_state", "hidden_states.0", "hidden_states.1", "hidden_states.2"]);
        assert_eq!(g.outputs[3].value, g.outputs[0].value);
        let e = t5_encoder(&cfg, 1, 4, &T5EncoderOptions { hidden_states: vec![3], ..opts }).unwrap_err().to_string();
        assert!(e.contains("hidden_states index 3"), "{e}");
    }

    #[test]
    fn config_defaults_follow_model_type() {
        let t5: T5Config = serde_json::from_str(r#"{"model_type": "t5", "d_model": 32}"#).unwrap();
        assert_eq!((t5.d_model, t5.feed_forward_proj.as_str(), t5.vocab_size, t5.variant()), (32, "relu", 32128, T5Variant::T5));
        let u: T5Config = serde_json::from_str(r#"{"model_type": "umt5", "pad_token_id": null}"#).unwrap();
        assert_eq!(u, T5Config { pad_token_id: None, ..T5Config::umt5() });
        assert_eq!(u.variant(), T5Variant::Umt5);
        assert_eq!(T5Config::default(), T5Config::umt5());
    }
}
