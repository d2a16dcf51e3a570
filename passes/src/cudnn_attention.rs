//! cuDNN attention: each `attention` composite that cuDNN's fused flash attention supports becomes
//! the custom call XLA's CUDA backend hands to cuDNN, `__cudnn$fmhaSoftmax` (or
//! `__cudnn$fmhaScaleBiasSoftmax` with a mask), as JAX's `jax._src.cudnn.fused_attention_stablehlo`
//! emits it for inference:
//!
//! ```text
//! %r = custom_call(q, k, v[, bias]) {target=..., backend_config=<cudnn_fmha_backend_config JSON>}
//!        : (dtype[B, H, Sq, D], u8[0])          output in BNTH layout, then a workspace
//! %o = get(%r) {index=0}
//! ```
//!
//! Our attention is [B, H, S, D], JAX's BNTH layout, so no transposes are needed: the dot
//! dimension numbers in the config are JAX's BNTH ones, and the backend gives every custom call
//! operand and result the default (row-major) layout, which is what JAX sets for BNTH.
//!
//! What maps: q, k, v in bf16 or f16, one head_dim D = Dv that is a multiple of 8 and at most 128
//! (cuDNN's limit before Hopper; the pass cannot see the GPU), and
//! - no window, or the causal window (-1, 0) (`j <= i`, counted from 0 in both sequences: cuDNN's
//!   top-left causal mask, `mask_type` CAUSAL); any other window stays for the other lowerings;
//! - no mask, or a mask that becomes cuDNN's bias [B or 1, H or 1, Sq, Sk] in q's dtype: a float
//!   mask broadcast along its size-1 query/key dims, a boolean one as `select(mask, 0, -big)`
//!   with JAX's large negative number (-2^41 for bf16, -2^15 for f16; cuDNN mishandles -inf).
//!   A query row with every key masked then averages the values instead of giving NaN as
//!   `decompose` does.
//!
//! Anything else is left unchanged for `blockwise_attention` / `decompose`, so the pass never
//! fails on a graph: run it first, then the dense pipeline for what it left. The module it leads
//! to compiles only on the CUDA plugin; other plugins reject the custom call target.

use crate::decompose::emit::Emitter;
use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use serde_json::json;
use vidlower_ir::{DType, Graph, Op, TensorType, ValueId};

/// The `cudnn_attention` pass.
pub struct CudnnAttention;

impl CudnnAttention {
    /// The registry name.
    pub const NAME: &'static str = "cudnn_attention";
    /// The largest head_dim cuDNN's flash attention takes on every GPU it supports (Ampere on).
    pub const MAX_HEAD_DIM: i64 = 128;
}

impl Pass for CudnnAttention {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        replace_nodes(&graph, Self::NAME, &mut |rw, v, node| {
            let Op::Attention { scale, has_mask, window, window_span, .. } = node.op else { return Ok(None) };
            let args = rw.operands(v);
            let ty = |i: usize| rw.new.tensor_ty(args[i]).clone();
            let mask = has_mask.then(|| ty(3));
            let Ok(causal) = support(&ty(0), &ty(1), &ty(2), mask.as_ref(), window, window_span) else { return Ok(None) };
            lower(&mut Emitter { g: &mut rw.new }, &args, scale, causal).map(Some)
        })
    }
}

/// Whether cuDNN takes this attention: `Ok(causal)`, or `Err` saying why not (what the attention
/// has, then what cuDNN takes), for `compile --explain`; see the module docs.
pub fn support(
    q: &TensorType,
    k: &TensorType,
    v: &TensorType,
    mask: Option<&TensorType>,
    window: Option<(i64, i64)>,
    window_span: Option<(i64, i64)>,
) -> Result<bool, String> {
    let (d, dv) = (q.shape[3], v.shape[3]);
    if !matches!(q.dtype, DType::BF16 | DType::F16) {
        return Err(format!("{} (cuDNN takes bf16/f16)", q.dtype));
    }
    if k.dtype != q.dtype || v.dtype != q.dtype {
        return Err(format!("q {}, k {}, v {} (cuDNN takes one dtype)", q.dtype, k.dtype, v.dtype));
    }
    if d != dv {
        return Err(format!("head_dim {d}, value head_dim {dv} (cuDNN takes equal ones)"));
    }
    if d % 8 != 0 || d > CudnnAttention::MAX_HEAD_DIM {
        return Err(format!("head_dim {d} (cuDNN takes a multiple of 8 up to {})", CudnnAttention::MAX_HEAD_DIM));
    }
    if let Some(m) = mask.filter(|m| m.dtype != DType::I1 && m.dtype != q.dtype) {
        return Err(format!("{} mask with {} q (cuDNN takes a boolean mask or a bias in q's dtype)", m.dtype, q.dtype));
    }
    if let (Some((l, r)), Some((start, end))) = (window, window_span) {
        return Err(format!("window ({l}, {r}) among tokens {start}..{end} only (cuDNN's masks cover the whole sequence)"));
    }
    match window {
        None => Ok(false),
        Some((l, r)) if l < 0 && r < 0 => Ok(false),
        Some((l, 0)) if l < 0 => Ok(true),
        Some((l, r)) => Err(format!("window ({l}, {r}) (cuDNN takes none or the causal (-1, 0))")),
    }
}

/// The custom call for `attention(q, k, v[, mask])`, returning its output.
fn lower(em: &mut Emitter, args: &[ValueId], scale: f64, causal: bool) -> Result<ValueId, PassError> {
    let (q, k) = (args[0], args[1]);
    let qt = em.ty(q);
    let sk = em.ty(k).shape[2];
    let mut operands = args[..3].to_vec();
    if let Some(&mask) = args.get(3) {
        operands.push(bias(em, mask, qt.shape[2], sk, qt.dtype)?);
    }
    let out = TensorType::new(qt.dtype, [qt.shape[0], qt.shape[1], qt.shape[2], em.ty(args[2]).shape[3]]);
    let target = if operands.len() == 4 { "__cudnn$fmhaScaleBiasSoftmax" } else { "__cudnn$fmhaSoftmax" };
    let config = backend_config(&qt, sk, scale, causal);
    let workspace = TensorType::new(DType::U8, [0]);
    let call = Op::CustomCall {
        target: target.into(),
        backend_config: config,
        has_side_effect: false,
        typed_ffi: false,
        result: vec![out, workspace],
    };
    let r = em.op(call, &operands)?;
    em.op(Op::GetTuple { index: 0 }, &[r])
}

/// The op's mask as cuDNN's additive bias: q's dtype, full query and key dims, batch and head
/// dims as the mask has them (cuDNN broadcasts size-1 ones).
fn bias(em: &mut Emitter, mask: ValueId, sq: i64, sk: i64, dtype: DType) -> Result<ValueId, PassError> {
    let mt = em.ty(mask);
    let shape = [mt.shape[0], mt.shape[1], sq, sk];
    let m = if mt.shape == shape { mask } else { em.broadcast(mask, &shape, &[0, 1, 2, 3])? };
    if mt.dtype != DType::I1 {
        return Ok(m);
    }
    // JAX's get_large_negative_number: cuDNN mishandles the difference of two -inf.
    let big = if dtype == DType::F16 { -32768.0 } else { -(2f64.powi(41)) };
    let t = TensorType::new(dtype, shape);
    let zero = em.splat(0.0, t.clone())?;
    let neg = em.splat(big, t)?;
    em.select(m, zero, neg)
}

/// JAX's `cudnn_fmha_backend_config` for a BNTH forward pass without dropout.
fn backend_config(q: &TensorType, sk: i64, scale: f64, causal: bool) -> String {
    let (b, h, sq) = (q.shape[0], q.shape[1], q.shape[2]);
    let dims = |lc: i64, rc: i64| {
        json!({
            "lhs_contracting_dimensions": [lc.to_string()],
            "rhs_contracting_dimensions": [rc.to_string()],
            "lhs_batch_dimensions": ["0", "1"],
            "rhs_batch_dimensions": ["0", "1"],
        })
    };
    let element_type = if q.dtype == DType::F16 { "F16" } else { "BF16" };
    json!({
        "operation_queue_id": "0",
        "cudnn_fmha_backend_config": {
            "algorithm": {
                "algo_id": "0",
                "math_type": "TENSOR_OP_MATH",
                "tuning_knobs": {"17": "1", "24": "0"},
                "is_cudnn_frontend": true,
                "workspace_size": "0",
            },
            "fmha_scale": scale,
            "intermediate_tensor_shape": {
                "element_type": element_type,
                "dimensions": [b.to_string(), h.to_string(), sq.to_string(), sk.to_string()],
                "tuple_shapes": [],
                "layout": {
                    "dim_level_types": [],
                    "dim_unique": [],
                    "dim_ordered": [],
                    "minor_to_major": ["3", "2", "1", "0"],
                    "tiles": [],
                    "element_size_in_bits": "0",
                    "memory_space": "0",
                    "index_primitive_type": "PRIMITIVE_TYPE_INVALID",
                    "pointer_primitive_type": "PRIMITIVE_TYPE_INVALID",
                    "dynamic_shape_metadata_prefix_bytes": "0",
                },
                "is_dynamic_dimension": [false, false, false, false],
            },
            "is_flash_attention": true,
            "mask_type": if causal { "CAUSAL" } else { "NO_MASK" },
            // BMM1: BNTH x BNSH -> BNTS; BMM2: BNTS x BNSH -> BNTH.
            "bmm1_dot_dimension_numbers": dims(3, 3),
            "bmm2_dot_dimension_numbers": dims(3, 2),
            "dropout_rate": 0.0,
            "seed": 42,
            "sliding_window_length": 0,
            "max_seg_per_batch": 1,
            "is_paged_attention": false,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(text: &str) -> Graph {
        crate::test_support::run_pass(CudnnAttention, text)
    }

    fn config_of(g: &Graph) -> serde_json::Value {
        let call = g.nodes.iter().find(|n| n.op.name() == "custom_call").expect("a custom call");
        let Op::CustomCall { backend_config, .. } = &call.op else { unreachable!() };
        serde_json::from_str(backend_config).unwrap()
    }

    #[test]
    fn plain_bf16_attention() {
        let out = run(r#"
graph @attn {
  %0 = input "q" : bf16[2,4,64,64]
  %1 = input "k" : bf16[2,4,80,64]
  %2 = input "v" : bf16[2,4,80,64]
  %3 = attention(%0, %1, %2) {kind=cross, scale=0.125, mask=false} : bf16[2,4,64,64]
  output "o" = %3
}"#);
        let c = &config_of(&out)["cudnn_fmha_backend_config"];
        assert_eq!(c["fmha_scale"], 0.125);
        assert_eq!(c["mask_type"], "NO_MASK");
        assert_eq!(c["intermediate_tensor_shape"]["dimensions"], json!(["2", "4", "64", "80"]));
        insta::assert_snapshot!(print(&out));
    }

    #[test]
    fn boolean_mask_becomes_a_bias_and_causal_window_the_mask_type() {
        let out = run(r#"
graph @attn {
  %0 = input "q" : f16[1,2,16,32]
  %1 = input "k" : f16[1,2,24,32]
  %2 = input "v" : f16[1,2,24,32]
  %3 = input "mask" : i1[1,1,1,24]
  %4 = attention(%0, %1, %2, %3) {kind=cross, scale=0.25, mask=true, window=[-1, 0]} : f16[1,2,16,32]
  output "o" = %4
}"#);
        assert_eq!(config_of(&out)["cudnn_fmha_backend_config"]["mask_type"], "CAUSAL");
        insta::assert_snapshot!(print(&out));
    }

    #[test]
    fn float_mask_is_broadcast_to_full_query_and_key_dims() {
        let out = run(r#"
graph @attn {
  %0 = input "q" : bf16[2,2,8,16]
  %1 = input "k" : bf16[2,2,8,16]
  %2 = input "v" : bf16[2,2,8,16]
  %3 = input "bias" : bf16[2,1,8,1]
  %4 = attention(%0, %1, %2, %3) {kind=self, scale=0.25, mask=true} : bf16[2,2,8,16]
  output "o" = %4
}"#);
        let call = out.nodes.iter().find(|n| n.op.name() == "custom_call").unwrap();
        let Op::CustomCall { target, .. } = &call.op else { unreachable!() };
        assert_eq!(target, "__cudnn$fmhaScaleBiasSoftmax");
        assert_eq!(out.tensor_ty(call.operands[3]).shape, [2, 1, 8, 8]);
    }

    #[test]
    fn unsupported_attentions_are_left_alone() {
        // f32; head_dim 12 (not a multiple of 8); head_dim 256; D != Dv; a non-causal window; even
        // the causal window when it holds among some tokens only (a joint attention's video).
        for (dt, d, dv, window) in [
            ("f32", 64, 64, ""),
            ("bf16", 12, 12, ""),
            ("bf16", 256, 256, ""),
            ("bf16", 64, 32, ""),
            ("bf16", 64, 64, ", window=[2, 2]"),
            ("f16", 64, 64, ", window=[-1, 1]"),
            ("bf16", 64, 64, ", window=[-1, 0], window_span=[1, 4]"),
        ] {
            let kind = if window.contains("window_span") { "joint" } else { "self" };
            let text = format!(
                "graph @attn {{\n  %0 = input \"q\" : {dt}[1,1,4,{d}]\n  %1 = input \"k\" : {dt}[1,1,4,{d}]\n  %2 = input \"v\" : {dt}[1,1,4,{dv}]\n  %3 = attention(%0, %1, %2) {{kind={kind}, scale=0.5, mask=false{window}}} : {dt}[1,1,4,{dv}]\n  output \"o\" = %3\n}}"
            );
            let input = parse(&text).unwrap();
            let out = CudnnAttention.run(input.clone()).unwrap();
            assert_eq!(print(&out), print(&input), "{dt} d {d} dv {dv}{window}");
        }
    }
}
