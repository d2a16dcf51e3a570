//! transformers' `Qwen2_5_VLTextModel` (modeling_qwen2_5_vl.py), the language half of Qwen2.5-VL that
//! HunyuanVideo-1.5 uses as its text encoder, block by block with the checkpoint's weight names
//! (`embed_tokens.weight`, `layers.{i}.self_attn.q_proj.weight`, `layers.{i}.mlp.gate_proj.weight`,
//! `norm.weight`: `Qwen2_5_VLTextModel.save_pretrained` writes no prefix).
//!
//! What matters for a text-only prompt, and is easy to get wrong:
//! - the output is an entry of `output_hidden_states=True`'s tuple, not `last_hidden_state`:
//!   entry 0 is the embeddings, entry i the input of layer i (the residual stream after i layers,
//!   before any norm), and entry L the final *normed* output. HunyuanVideo-1.5 takes entry -3 =
//!   L-2; only the layers it needs are built (26 of Qwen2.5-VL-7B's 28);
//! - multimodal RoPE (`mrope_section`) gives each of the temporal/height/width position rows a
//!   slice of the frequencies; `Qwen2_5_VLTextModel` called without `position_ids` uses
//!   `arange(S)` for all three rows (whatever the attention mask), so the recomposed tables are
//!   plain 1-D RoPE in the rotate-half layout: cos/sin of `pos * inv_freq`, the half table repeated;
//! - grouped-query attention: `num_key_value_heads` k/v heads, each shared by
//!   `num_attention_heads / num_key_value_heads` query heads (`repeat_kv`); q/k/v have biases,
//!   o has none; scale `head_dim^-0.5`;
//! - the mask is causal AND the key is a real token (`create_causal_mask`). With right padding
//!   (the pipeline's) every query row keeps at least key 0. A left-padded row's leading padded
//!   queries see no key at all: torch's SDPA (transformers' default) gives them a zero attention
//!   output, and so does this graph (eager attention would average all keys instead);
//! - RMSNorm computes in f32 and rounds to the model dtype before the weight multiplies it; cos
//!   and sin are rounded to the model dtype before the rotation (`.to(x.dtype)`).

use crate::nn::linear::linear;
use serde_json::{Map, Value};
use vidlower_ir::{AttentionKind, Builder, CompareDir, DType, Graph, IrError, Result, TensorType, ValueId};

/// `Qwen2_5_VLTextConfig` (`text_encoder/config.json`), the fields the text model uses. Read
/// with serde from the file transformers writes (5.x: `rope_parameters`; 4.x: `rope_theta` and
/// `rope_scaling`; a full `Qwen2_5_VLConfig` with a `text_config` works too). A missing model
/// dimension, or a setting this graph does not build (another activation, another RoPE type,
/// sliding-window layers), is an error naming the field.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(try_from = "Value")]
pub struct Qwen2_5VlTextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_key_value_heads: i64,
    pub intermediate_size: i64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// How the rotary pairs are split between the temporal, height and width position rows;
    /// sums to `head_dim / 2`. Text-only positions make the split immaterial (see the module doc).
    pub mrope_section: Vec<i64>,
}

impl Qwen2_5VlTextConfig {
    /// Qwen2.5-VL-7B-Instruct's language model (HunyuanVideo-1.5's `text_encoder`).
    pub fn qwen2_5_vl_7b() -> Self {
        Qwen2_5VlTextConfig {
            vocab_size: 152064,
            hidden_size: 3584,
            num_hidden_layers: 28,
            num_attention_heads: 28,
            num_key_value_heads: 4,
            intermediate_size: 18944,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            mrope_section: vec![16, 24, 24],
        }
    }

    /// `hidden_size / num_attention_heads` (`Qwen2_5_VLAttention.head_dim`).
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// The checks `from_json` makes on the numbers, for configs built in code.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("intermediate_size", self.intermediate_size),
        ] {
            if v < 1 {
                return Err(format!("`{name}` must be a positive integer, got {v}"));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!("`hidden_size` ({}) must be divisible by `num_attention_heads` ({})", self.hidden_size, self.num_attention_heads));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(format!(
                "`num_attention_heads` ({}) must be divisible by `num_key_value_heads` ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(format!("head_dim (`hidden_size / num_attention_heads` = {}) must be even for RoPE", self.head_dim()));
        }
        let half: i64 = self.mrope_section.iter().sum();
        if half != self.head_dim() / 2 || self.mrope_section.iter().any(|&s| s < 0) {
            return Err(format!("`mrope_section` {:?} must be non-negative and sum to head_dim / 2 = {}", self.mrope_section, self.head_dim() / 2));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return Err(format!("`rms_norm_eps` ({}) and `rope_theta` ({}) must be positive", self.rms_norm_eps, self.rope_theta));
        }
        Ok(())
    }

    /// Reads the config from `config.json`'s JSON (see the type's doc).
    pub fn from_json(json: &Value) -> std::result::Result<Self, String> {
        let top = json.as_object().ok_or("expected a JSON object")?;
        // A full Qwen2_5_VLConfig keeps the text model's fields in `text_config` (4.x wrote them at
        // the top level too): read there first, then at the top.
        let nested = top.get("text_config").and_then(Value::as_object);
        let get = |key: &str| nested.and_then(|n| n.get(key)).or_else(|| top.get(key)).filter(|v| !v.is_null());
        let int = |key: &str| -> std::result::Result<i64, String> {
            let v = get(key).ok_or(format!("field `{key}` is missing"))?;
            v.as_i64().ok_or(format!("field `{key}` must be an integer, got {v}"))
        };
        if let Some(act) = get("hidden_act") {
            if act.as_str() != Some("silu") {
                return Err(format!("field `hidden_act` is {act}; only \"silu\" (Qwen2.5-VL's) is built"));
            }
        }
        if get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            return Err("field `use_sliding_window` is true; sliding-window layers are not built".into());
        }
        if let Some(types) = get("layer_types").and_then(Value::as_array) {
            if let Some(t) = types.iter().find(|t| t.as_str() != Some("full_attention")) {
                return Err(format!("field `layer_types` has {t}; only \"full_attention\" layers are built"));
            }
        }
        let (rope_theta, mrope_section) = rope(&get)?;
        let cfg = Qwen2_5VlTextConfig {
            vocab_size: int("vocab_size")?,
            hidden_size: int("hidden_size")?,
            num_hidden_layers: int("num_hidden_layers")?,
            num_attention_heads: int("num_attention_heads")?,
            num_key_value_heads: int("num_key_value_heads")?,
            intermediate_size: int("intermediate_size")?,
            rms_norm_eps: {
                let v = get("rms_norm_eps").ok_or("field `rms_norm_eps` is missing")?;
                v.as_f64().ok_or(format!("field `rms_norm_eps` must be a number, got {v}"))?
            },
            rope_theta,
            mrope_section,
        };
        if let Some(hd) = get("head_dim") {
            if hd.as_i64() != Some(cfg.head_dim()) {
                return Err(format!("field `head_dim` is {hd}, but the attention uses hidden_size / num_attention_heads = {}", cfg.head_dim()));
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `rope_theta` and `mrope_section` from `rope_parameters` (transformers 5) or `rope_theta` +
/// `rope_scaling` (4.x); `mrope_section` defaults to [16, 24, 24] as
/// `Qwen2_5_VLRotaryEmbedding` does. Only the default RoPE (4.x spelled it `"mrope"`) is built.
fn rope<'a>(get: &dyn Fn(&str) -> Option<&'a Value>) -> std::result::Result<(f64, Vec<i64>), String> {
    let empty = Map::new();
    let (params, field) = match (get("rope_parameters"), get("rope_scaling")) {
        (Some(p), _) => (p.as_object().ok_or("field `rope_parameters` must be an object")?, "rope_parameters"),
        (None, Some(s)) => (s.as_object().ok_or("field `rope_scaling` must be an object")?, "rope_scaling"),
        (None, None) => (&empty, "rope_parameters"),
    };
    for key in ["rope_type", "type"] {
        if let Some(t) = params.get(key) {
            if !matches!(t.as_str(), Some("default" | "mrope")) {
                return Err(format!("field `{field}.{key}` is {t}; only the default (m)RoPE is built"));
            }
        }
    }
    let theta = params.get("rope_theta").or_else(|| get("rope_theta")).ok_or(format!("field `{field}.rope_theta` (or `rope_theta`) is missing"))?;
    let theta = theta.as_f64().ok_or(format!("field `rope_theta` must be a number, got {theta}"))?;
    let section = match params.get("mrope_section") {
        None => vec![16, 24, 24],
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
            .ok_or(format!("field `{field}.mrope_section` must be a list of integers, got {v}"))?,
    };
    Ok((theta, section))
}

impl TryFrom<Value> for Qwen2_5VlTextConfig {
    type Error = String;
    fn try_from(v: Value) -> std::result::Result<Self, String> {
        Self::from_json(&v)
    }
}

/// How to build the text model graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Qwen2_5VlTextOptions {
    /// The dtype the model is loaded in: weights, activations and the output in it.
    pub dtype: DType,
    /// Which entry of transformers' `hidden_states` tuple is the output `hidden_states`, as Python
    /// indexes it: 0..=L, or -(L+1)..=-1 from the end (HunyuanVideo-1.5: -3).
    pub hidden_states_index: i64,
    /// Drop the first `crop_start` positions of the output (the pipeline's `[:, crop_start:]`,
    /// 108 for HunyuanVideo-1.5's system prompt); 0 keeps all.
    pub crop_start: i64,
    /// Also output these entries (Python indexes, uncropped), named `hidden_states.{i}` with i
    /// counted from the front: per-layer goldens.
    pub extra_hidden_states: Vec<i64>,
}

impl Qwen2_5VlTextOptions {
    /// Entry `hidden_states_index` of the whole sequence in `dtype`, nothing else.
    pub fn new(hidden_states_index: i64, dtype: DType) -> Self {
        Qwen2_5VlTextOptions { dtype, hidden_states_index, crop_start: 0, extra_hidden_states: Vec::new() }
    }
}

/// The text model on `input_ids` (i64 [B, S]) and `attention_mask` (i64 [B, S], 1 = real token),
/// giving `hidden_states` [B, S, hidden] in `dtype`: entry `hidden_states_index` (Python index)
/// of `Qwen2_5_VLTextModel(input_ids, attention_mask, output_hidden_states=True).hidden_states`.
pub fn text_encoder(cfg: &Qwen2_5VlTextConfig, batch: i64, seq_len: i64, hidden_states_index: i64, dtype: DType) -> Result<Graph> {
    text_encoder_with(cfg, batch, seq_len, &Qwen2_5VlTextOptions::new(hidden_states_index, dtype))
}

/// [`text_encoder`] with every option: the output cropped to `[:, crop_start:]` ([B, S -
/// crop_start, hidden]) and any extra `hidden_states.{i}` outputs.
pub fn text_encoder_with(cfg: &Qwen2_5VlTextConfig, batch: i64, seq_len: i64, opts: &Qwen2_5VlTextOptions) -> Result<Graph> {
    let name = "qwen2_5_vl_text";
    let fail = |m: String| IrError::Value(format!("{name}: {m}"));
    cfg.validate().map_err(fail)?;
    let dtype = opts.dtype;
    if !dtype.is_float() {
        return Err(fail(format!("dtype must be a float type, got {dtype}")));
    }
    if batch < 1 || seq_len < 1 {
        return Err(fail(format!("batch ({batch}) and seq_len ({seq_len}) must be >= 1")));
    }
    if !(0..seq_len).contains(&opts.crop_start) {
        return Err(fail(format!("crop_start {} must be in 0..{seq_len} (seq_len)", opts.crop_start)));
    }
    let entries = cfg.num_hidden_layers + 1;
    let resolve = |i: i64| -> Result<i64> {
        let r = if i < 0 { i + entries } else { i };
        if (0..entries).contains(&r) {
            Ok(r)
        } else {
            Err(fail(format!("hidden_states index {i} is outside -{entries}..{entries} (num_hidden_layers + 1 entries)")))
        }
    };
    let main = resolve(opts.hidden_states_index)?;
    let extra: Vec<i64> = opts.extra_hidden_states.iter().map(|&i| resolve(i)).collect::<Result<_>>()?;
    let last = extra.iter().copied().chain([main]).max().unwrap_or(main);
    // Entry L is the normed output of all L layers; entry i < L needs layers 0..i only.
    let layers = last.min(cfg.num_hidden_layers);

    let mut b = Builder::new(name);
    let ids = b.input("input_ids", TensorType::new(DType::I64, [batch, seq_len]))?;
    let mask = b.input("attention_mask", TensorType::new(DType::I64, [batch, seq_len]))?;
    let table = b.weight("embed_tokens.weight", TensorType::new(dtype, [cfg.vocab_size, cfg.hidden_size]))?;
    let mut hidden = b.take(table, ids, 0)?;
    let model = TextModel { cfg, dtype, batch, seq_len };
    let rope = model.rope_tables(&mut b)?;
    let masks = model.masks(&mut b, mask)?;
    let mut states = vec![hidden];
    for i in 0..layers {
        hidden = model.decoder_layer(&mut b, hidden, i, rope, masks)?;
        states.push(hidden);
    }
    if last == cfg.num_hidden_layers {
        let normed = model.rms_norm(&mut b, hidden, "norm")?;
        *states.last_mut().expect("at least the embeddings") = normed;
    }
    let out = states[main as usize];
    let out = if opts.crop_start > 0 { b.slice_axis(out, 1, opts.crop_start, seq_len - opts.crop_start)? } else { out };
    b.output("hidden_states", out);
    for &i in &extra {
        b.output(&format!("hidden_states.{i}"), states[i as usize]);
    }
    b.finish()
}

/// `Qwen2_5_VLRotaryEmbedding.inv_freq`: `1 / theta^(arange(0, d, 2) / d)` as torch computes it
/// in f32 (the exponent rounded to f32, the power and the reciprocal correctly rounded from f64).
pub fn inv_freq(head_dim: i64, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            let pow = (theta as f32 as f64).powf(exponent as f64) as f32;
            (1.0f64 / pow as f64) as f32
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Rope {
    /// [S, head_dim] in the model dtype.
    cos: ValueId,
    sin: ValueId,
}

#[derive(Clone, Copy)]
struct Masks {
    /// [B, 1, 1, S] i1: the key is a real token; causality is the attention's window.
    key_is_real: ValueId,
    /// [B, 1, S, 1] i1: the query sees at least one real key at or before it (else SDPA's zero row).
    query_sees_a_key: ValueId,
}

struct TextModel<'a> {
    cfg: &'a Qwen2_5VlTextConfig,
    dtype: DType,
    batch: i64,
    seq_len: i64,
}

impl TextModel<'_> {
    /// `Qwen2_5_VLDecoderLayer`: pre-norm self-attention and SwiGLU MLP, each with a residual.
    fn decoder_layer(&self, b: &mut Builder, x: ValueId, i: i64, rope: Rope, masks: Masks) -> Result<ValueId> {
        let p = format!("layers.{i}");
        let h = self.rms_norm(b, x, &format!("{p}.input_layernorm"))?;
        let a = self.self_attn(b, h, &format!("{p}.self_attn"), rope, masks)?;
        let x = b.add(x, a)?;
        let h = self.rms_norm(b, x, &format!("{p}.post_attention_layernorm"))?;
        let m = self.mlp(b, h, &format!("{p}.mlp"))?;
        b.add(x, m)
    }

    /// `Qwen2_5_VLRMSNorm`: `weight * (x * rsqrt(mean(x^2) + eps)).to(dtype)`, the statistics in f32.
    fn rms_norm(&self, b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
        let w = b.weight(&format!("{prefix}.weight"), TensorType::new(self.dtype, [self.cfg.hidden_size]))?;
        let y = b.rms_norm(x, self.cfg.rms_norm_eps, None)?;
        let y = b.convert(y, self.dtype)?;
        b.mul(w, y)
    }

    /// `Qwen2_5_VLAttention` (SDPA): q/k/v with bias, RoPE on q and k, k/v heads repeated for
    /// the query heads, causal + key-padding mask, o without bias.
    fn self_attn(&self, b: &mut Builder, x: ValueId, prefix: &str, rope: Rope, masks: Masks) -> Result<ValueId> {
        let (heads, kv_heads, d) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim());
        let q = linear(b, x, &format!("{prefix}.q_proj"), heads * d, true)?;
        let k = linear(b, x, &format!("{prefix}.k_proj"), kv_heads * d, true)?;
        let v = linear(b, x, &format!("{prefix}.v_proj"), kv_heads * d, true)?;
        let (q, k, v) = (b.split_heads(q, heads)?, b.split_heads(k, kv_heads)?, b.split_heads(v, kv_heads)?);
        let q = self.apply_rotary(b, q, rope)?;
        let k = self.apply_rotary(b, k, rope)?;
        let (k, v) = (self.repeat_kv(b, k)?, self.repeat_kv(b, v)?);
        let scale = (d as f64).powf(-0.5);
        // kind: self; window (-1, 0): key j <= query i (causal); the mask: j is a real token.
        let a = b.attention(AttentionKind::SelfAttention, q, k, v, scale, Some(masks.key_is_real), Some((-1, 0)))?;
        let full = b.shape(a);
        let sees = b.broadcast_in_dim(masks.query_sees_a_key, &full, &[0, 1, 2, 3])?;
        let zero = b.full(0.0, TensorType::new(self.dtype, full))?;
        let a = b.select(sees, a, zero)?;
        let a = b.merge_heads(a)?;
        linear(b, a, &format!("{prefix}.o_proj"), self.cfg.hidden_size, false)
    }

    /// `Qwen2MLP`: `down_proj(silu(gate_proj(x)) * up_proj(x))`, no biases.
    fn mlp(&self, b: &mut Builder, x: ValueId, prefix: &str) -> Result<ValueId> {
        let inter = self.cfg.intermediate_size;
        let gate = linear(b, x, &format!("{prefix}.gate_proj"), inter, false)?;
        let gate = b.silu(gate)?;
        let up = linear(b, x, &format!("{prefix}.up_proj"), inter, false)?;
        let h = b.mul(gate, up)?;
        linear(b, h, &format!("{prefix}.down_proj"), self.cfg.hidden_size, false)
    }

    /// `repeat_kv`: [B, KV, S, D] -> [B, KV * n_rep, S, D], query head h reading kv head h / n_rep.
    fn repeat_kv(&self, b: &mut Builder, x: ValueId) -> Result<ValueId> {
        let (kv, heads, d) = (self.cfg.num_key_value_heads, self.cfg.num_attention_heads, self.cfg.head_dim());
        if kv == heads {
            return Ok(x);
        }
        let expanded = b.broadcast_in_dim(x, &[self.batch, kv, heads / kv, self.seq_len, d], &[0, 1, 3, 4])?;
        b.reshape(expanded, &[self.batch, heads, self.seq_len, d])
    }

    /// cos and sin of `pos * inv_freq` for pos in 0..S, [S, head_dim] (the half table twice, the
    /// rotate-half layout), computed in f32 and rounded to the model dtype. For text the three
    /// mrope rows hold the same positions, so `mrope_section`'s recomposition changes nothing.
    fn rope_tables(&self, b: &mut Builder) -> Result<Rope> {
        let d = self.cfg.head_dim();
        let inv = inv_freq(d, self.cfg.rope_theta);
        let inv = b.constant(inv.iter().map(|&v| v as f64).collect(), TensorType::new(DType::F32, [d / 2]))?;
        let half = [self.seq_len, d / 2];
        let pos = b.iota(TensorType::new(DType::F32, half), 0)?;
        let inv = b.broadcast_in_dim(inv, &half, &[1])?;
        let freqs = b.mul(pos, inv)?;
        let emb = b.concat(&[freqs, freqs], 1)?;
        let cos = b.cos(emb)?;
        let sin = b.sin(emb)?;
        Ok(Rope { cos: b.convert(cos, self.dtype)?, sin: b.convert(sin, self.dtype)? })
    }

    /// `q * cos + rotate_half(q) * sin` on [B, H, S, D], `rotate_half(x) = cat(-x2, x1)`.
    fn apply_rotary(&self, b: &mut Builder, x: ValueId, rope: Rope) -> Result<ValueId> {
        let shape = b.shape(x);
        let half = shape[3] / 2;
        let x1 = b.slice_axis(x, 3, 0, half)?;
        let x2 = b.slice_axis(x, 3, half, half)?;
        let neg_x2 = b.neg(x2)?;
        let rotated = b.concat(&[neg_x2, x1], 3)?;
        let cos = b.broadcast_in_dim(rope.cos, &shape, &[2, 3])?;
        let sin = b.broadcast_in_dim(rope.sin, &shape, &[2, 3])?;
        let xc = b.mul(x, cos)?;
        let rs = b.mul(rotated, sin)?;
        b.add(xc, rs)
    }

    /// The key-padding mask [B, 1, 1, S] and, for SDPA's zero rows, whether query i has a real
    /// key j <= i: [B, 1, S, 1] (the running max of the mask along the sequence, as a [S, S]
    /// lower-triangular reduction).
    fn masks(&self, b: &mut Builder, mask: ValueId) -> Result<Masks> {
        let (bsz, s) = (self.batch, self.seq_len);
        let zero = b.scalar(0.0, DType::I64)?;
        let real = b.compare(CompareDir::Ne, mask, zero)?;
        let key_is_real = b.reshape(real, &[bsz, 1, 1, s])?;
        let pos = TensorType::new(DType::I32, [s, s]);
        let query = b.iota(pos.clone(), 0)?;
        let key = b.iota(pos, 1)?;
        let causal = b.compare(CompareDir::Le, key, query)?;
        let causal = b.broadcast_in_dim(causal, &[bsz, s, s], &[1, 2])?;
        let real_f = b.convert(real, DType::F32)?;
        let real_f = b.broadcast_in_dim(real_f, &[bsz, s, s], &[0, 2])?;
        let none = b.full(0.0, TensorType::new(DType::F32, [bsz, s, s]))?;
        let visible = b.select(causal, real_f, none)?;
        let count = b.reduce(visible, vidlower_ir::ReduceKind::Max, &[2])?;
        let zero_f = b.scalar(0.0, DType::F32)?;
        let sees = b.compare(CompareDir::Gt, count, zero_f)?;
        let query_sees_a_key = b.reshape(sees, &[bsz, 1, s, 1])?;
        Ok(Masks { key_is_real, query_sees_a_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Qwen2_5VlTextConfig {
        Qwen2_5VlTextConfig {
            vocab_size: 640,
            hidden_size: 32,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            intermediate_size: 64,
            rms_norm_eps: 1e-6,
            rope_theta: 1e6,
            mrope_section: vec![1, 1, 2],
        }
    }

    /// The config.json transformers 5.23 writes for `Qwen2_5_VLTextModel` (tiny).
    const V5_CONFIG: &str = r#"{"architectures": ["Qwen2_5_VLTextModel"], "attention_dropout": 0.0, "bos_token_id": 600,
        "dtype": "float32", "eos_token_id": 602, "hidden_act": "silu", "hidden_size": 32, "initializer_range": 0.02,
        "intermediate_size": 64, "layer_types": ["full_attention", "full_attention", "full_attention", "full_attention"],
        "max_position_embeddings": 2048, "max_window_layers": 80, "model_type": "qwen2_5_vl_text",
        "num_attention_heads": 4, "num_hidden_layers": 4, "num_key_value_heads": 2, "pad_token_id": null,
        "rms_norm_eps": 1e-06, "rope_parameters": {"mrope_section": [1, 1, 2], "rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_window": null, "transformers_version": "5.23.0", "use_cache": true, "use_sliding_window": false, "vocab_size": 640}"#;

    #[test]
    fn reads_v5_v4_and_nested_configs() {
        let c: Qwen2_5VlTextConfig = serde_json::from_str(V5_CONFIG).unwrap();
        assert_eq!(c, tiny());
        // 4.x: rope_theta at the top, rope_scaling {"type": "mrope", ...}.
        let v4 = r#"{"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
            "intermediate_size": 18944, "vocab_size": 152064, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "hidden_act": "silu"}"#;
        let c: Qwen2_5VlTextConfig = serde_json::from_str(v4).unwrap();
        assert_eq!(c, Qwen2_5VlTextConfig::qwen2_5_vl_7b());
        let nested = format!(r#"{{"model_type": "qwen2_5_vl", "vision_config": {{}}, "text_config": {v4}}}"#);
        let c: Qwen2_5VlTextConfig = serde_json::from_str(&nested).unwrap();
        assert_eq!(c, Qwen2_5VlTextConfig::qwen2_5_vl_7b());
    }

    #[test]
    fn missing_or_odd_fields_are_named() {
        let base: Value = serde_json::from_str(V5_CONFIG).unwrap();
        let with = |key: &str, v: Value| {
            let mut j = base.clone();
            match v {
                Value::Null => j.as_object_mut().unwrap().remove(key),
                v => j.as_object_mut().unwrap().insert(key.into(), v),
            };
            Qwen2_5VlTextConfig::from_json(&j).unwrap_err()
        };
        for (key, v, want) in [
            ("num_key_value_heads", Value::Null, "field `num_key_value_heads` is missing"),
            ("hidden_size", Value::from("32"), "field `hidden_size` must be an integer"),
            ("hidden_act", Value::from("gelu"), "field `hidden_act`"),
            ("use_sliding_window", Value::from(true), "field `use_sliding_window`"),
            ("num_key_value_heads", Value::from(3), "`num_key_value_heads` (3)"),
            ("head_dim", Value::from(16), "field `head_dim` is 16"),
            ("rms_norm_eps", Value::Null, "field `rms_norm_eps` is missing"),
        ] {
            let e = with(key, v);
            assert!(e.contains(want), "{key}: {e}");
        }
        let e = with("rope_parameters", serde_json::json!({"rope_type": "yarn", "rope_theta": 1e6}));
        assert!(e.contains("rope_parameters.rope_type"), "{e}");
        let e = with("rope_parameters", serde_json::json!({"rope_theta": 1e6, "mrope_section": [2, 2, 2]}));
        assert!(e.contains("`mrope_section` [2, 2, 2]") && e.contains("= 4"), "{e}");
        let e = with("rope_parameters", serde_json::json!({"rope_type": "default"}));
        assert!(e.contains("rope_theta") && e.contains("missing"), "{e}");
        // Through serde (read_json), the message survives.
        let e = serde_json::from_str::<Qwen2_5VlTextConfig>(r#"{"hidden_size": 8}"#).unwrap_err().to_string();
        assert!(e.contains("is missing"), "{e}");
    }

    #[test]
    fn builds_only_the_layers_the_entry_needs() {
        let g = text_encoder(&tiny(), 2, 12, -3, DType::F32).unwrap();
        let names: Vec<&str> = g.weights().map(|(n, _)| n).collect();
        // embed + 2 layers x (2 norms, q/k/v weight+bias, o, gate, up, down); no final norm.
        assert_eq!(names.len(), 1 + 2 * 12, "{names:?}");
        for n in ["embed_tokens.weight", "layers.1.self_attn.k_proj.bias", "layers.0.mlp.down_proj.weight"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("layers.2") || *n == "norm.weight"));
        let k = g.weights().find(|(n, _)| *n == "layers.0.self_attn.k_proj.weight").unwrap().1;
        assert_eq!(k.shape, vec![16, 32]);
        let out = g.tensor_ty(g.outputs[0].value);
        assert_eq!((out.dtype, out.shape.clone()), (DType::F32, vec![2, 12, 32]));
        assert!(g.find_input("input_ids").is_some() && g.find_input("attention_mask").is_some());

        // The last entry is the normed output of all layers; extras are named by their front index.
        let opts = Qwen2_5VlTextOptions { crop_start: 5, extra_hidden_states: vec![0, -1], ..Qwen2_5VlTextOptions::new(4, DType::BF16) };
        let g = text_encoder_with(&tiny(), 1, 12, &opts).unwrap();
        assert!(g.weights().any(|(n, _)| n == "norm.weight" || n == "layers.3.mlp.up_proj.weight"));
        let outs: Vec<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outs, ["hidden_states", "hidden_states.0", "hidden_states.4"]);
        assert_eq!(g.tensor_ty(g.outputs[0].value).shape, vec![1, 7, 32]);
        assert_eq!(g.tensor_ty(g.outputs[2].value).shape, vec![1, 12, 32]);
        assert!(g.weights().all(|(_, t)| t.dtype == DType::BF16));

        for (idx, crop, want) in [(5, 0, "index 5"), (-6, 0, "index -6"), (-3, 12, "crop_start 12")] {
            let opts = Qwen2_5VlTextOptions { crop_start: crop, ..Qwen2_5VlTextOptions::new(idx, DType::F32) };
            let e = text_encoder_with(&tiny(), 1, 12, &opts).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// torch 2.15's `inv_freq`, bit for bit for head_dim 8; for 128 (Qwen2.5-VL-7B) torch's
    /// vectorised pow is one ulp off the correctly rounded power at i = 37 (2942.727 for
    /// 2942.7273), so there the check is to within one ulp.
    #[test]
    fn inv_freq_matches_torch() {
        let bits: Vec<u32> = inv_freq(8, 1e6).iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, [0x3f800000, 0x3d0186e3, 0x3a83126f, 0x3804a2b2]);
        let v = inv_freq(128, 1e6);
        let torch = [(0, 0x3f800000u32), (1, 0x3f4e4bad), (2, 0x3f263de0), (3, 0x3f05f6ef), (63, 0x35a68e4c)];
        for (i, want) in torch {
            assert!((v[i].to_bits() as i64 - want as i64).abs() <= 1, "inv_freq[{i}] = {:#x}, torch {want:#x}", v[i].to_bits());
        }
    }
}
