//! CPU attention: each `attention` composite the CPU kernel takes becomes a typed XLA FFI
//! custom call to vidlower's own fused kernel (`runtime/src/cpu_kernels/attention.rs`), which
//! the runtime registers with the CPU plugin:
//!
//! ```text
//! %q2 = q * (scale * log2 e)                     (in f32; bf16/f16 operands converted first)
//! %o  = custom_call(%q2, k, v) {target=vidlower_cpu_attention_base2, typed_ffi=true} : f32[B, H, Sq, Dv]
//!                                                (converted back to q's dtype)
//! ```
//!
//! Why: XLA CPU's dense or blockwise attention moves the [B, H, Sq, Sk] scores through memory
//! several times; the kernel keeps them in cache (measured at [2, 8, 2530, 64] f32 on 2 cores:
//! XLA 294-344 ms, the kernel ~165 ms, torch's fused SDPA ~165 ms).
//!
//! What maps: any head dims and lengths, f32 / bf16 / f16, no window, and no mask or a key mask
//! ([B or 1, 1, 1, Sk]: a boolean one, true = attend, or a float bias), which goes to the kernel
//! as an f32 [B, Sk] bias in base 2 (`select(mask, 0, -inf)`, or the bias times log2 e). A window
//! or a mask over queries or heads stays for `blockwise_attention` / `decompose`, so the pass
//! never fails on a graph. The module compiles only where the kernel is registered (vidlower's
//! CPU clients). A row whose keys are all masked gives NaN, as `decompose` does.

use crate::decompose::emit::Emitter;
use crate::exp2_softmax::{fold_scale_base2, to_base2};
use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use vidlower_ir::{DType, Graph, Op, TensorType, ValueId};

/// The custom call target the runtime registers the kernel under.
pub const CPU_ATTENTION_TARGET: &str = "vidlower_cpu_attention_base2";

/// The `cpu_attention` pass.
pub struct CpuAttention;

impl CpuAttention {
    /// The registry name.
    pub const NAME: &'static str = "cpu_attention";
}

impl Pass for CpuAttention {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        replace_nodes(&graph, Self::NAME, &mut |rw, v, node| {
            let Op::Attention { scale, has_mask, window, .. } = node.op else { return Ok(None) };
            let args = rw.operands(v);
            let ty = |i: usize| rw.new.tensor_ty(args[i]).clone();
            let mask = has_mask.then(|| ty(3));
            if support(&ty(0), &ty(1), &ty(2), mask.as_ref(), window).is_err() {
                return Ok(None);
            }
            lower(&mut Emitter { g: &mut rw.new }, &args, scale).map(Some)
        })
    }
}

/// Whether the CPU kernel takes this attention, or why not (for `compile --explain`).
pub fn support(q: &TensorType, k: &TensorType, v: &TensorType, mask: Option<&TensorType>, window: Option<(i64, i64)>) -> Result<(), String> {
    if !matches!(q.dtype, DType::F32 | DType::BF16 | DType::F16) {
        return Err(format!("{} (the CPU kernel takes f32, bf16, f16)", q.dtype));
    }
    if k.dtype != q.dtype || v.dtype != q.dtype {
        return Err(format!("q {}, k {}, v {} (the CPU kernel takes one dtype)", q.dtype, k.dtype, v.dtype));
    }
    if let Some(m) = mask {
        let key_mask = m.rank() == 4 && (m.shape[0] == 1 || m.shape[0] == q.shape[0]) && m.shape[1] == 1 && m.shape[2] == 1;
        if !key_mask {
            return Err(format!("mask {m} (the CPU kernel takes key masks [B or 1, 1, 1, Sk])"));
        }
        if !(m.dtype == DType::I1 || m.dtype.is_float()) {
            return Err(format!("{} mask (the CPU kernel takes a boolean or float one)", m.dtype));
        }
    }
    if let Some((l, r)) = window {
        return Err(format!("window ({l}, {r}) (the CPU kernel takes none)"));
    }
    Ok(())
}

/// The custom call for `attention(q, k, v[, key mask])` with `scale`, in q's dtype.
fn lower(em: &mut Emitter, args: &[ValueId], scale: f64) -> Result<ValueId, PassError> {
    let dtype = em.ty(args[0]).dtype;
    let [q, k, v] = [args[0], args[1], args[2]].map(|x| em.convert(x, DType::F32));
    let q = fold_scale_base2(em, q?, scale)?;
    let (batch, keys) = (em.ty(q).shape[0], em.ty(args[1]).shape[2]);
    let bias = match args.get(3) {
        Some(&mask) => Some(key_bias(em, mask, batch, keys)?),
        None => None,
    };
    let (qt, vt) = (em.ty(q), em.ty(args[2]));
    let out = TensorType::new(DType::F32, [qt.shape[0], qt.shape[1], qt.shape[2], vt.shape[3]]);
    let call = Op::CustomCall {
        target: CPU_ATTENTION_TARGET.into(),
        backend_config: String::new(),
        has_side_effect: false,
        typed_ffi: true,
        result: vec![out],
    };
    let mut operands = vec![q, k?, v?];
    operands.extend(bias);
    let o = em.op(call, &operands)?;
    em.convert(o, dtype)
}

/// A key mask [B or 1, 1, 1, Sk] as the kernel's f32 [B, Sk] bias in base 2.
fn key_bias(em: &mut Emitter, mask: ValueId, batch: i64, keys: i64) -> Result<ValueId, PassError> {
    let mt = em.ty(mask);
    let bias = if mt.dtype == DType::I1 {
        let f32_mask = TensorType::new(DType::F32, mt.shape.clone());
        let (zero, masked) = (em.splat(0.0, f32_mask.clone())?, em.splat(f64::NEG_INFINITY, f32_mask)?);
        em.select(mask, zero, masked)?
    } else {
        let bias = em.convert(mask, DType::F32)?;
        to_base2(em, bias)?
    };
    let rows = em.reshape(bias, &[mt.shape[0], keys])?;
    if mt.shape[0] == batch {
        return Ok(rows);
    }
    let row = em.reshape(rows, &[keys])?;
    em.broadcast(row, &[batch, keys], &[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::parse;

    #[test]
    fn lowers_plain_and_key_masked_attention_and_leaves_windowed() {
        let g = parse(
            r#"
graph @a {
  %0 = input "q" : bf16[1,2,16,64]
  %1 = input "m" : i1[1,1,1,16]
  %2 = attention(%0, %0, %0) {kind=self, scale=0.125, mask=false} : bf16[1,2,16,64]
  %3 = attention(%0, %0, %0, %1) {kind=joint, scale=0.125, mask=true} : bf16[1,2,16,64]
  %4 = attention(%0, %0, %0) {kind=self, scale=0.125, mask=false, window=[2, 2]} : bf16[1,2,16,64]
  output "a" = %2
  output "b" = %3
  output "c" = %4
}"#,
        )
        .unwrap();
        let g = CpuAttention.run(g).unwrap();
        let counts = g.op_counts();
        assert_eq!(counts.get("custom_call"), Some(&2), "the plain and the key-masked attention");
        assert_eq!(counts.get("attention"), Some(&1), "the windowed one stays");
        let text = vidlower_ir::text::print(&g);
        assert!(text.contains("typed_ffi=true") && text.contains(CPU_ATTENTION_TARGET), "{text}");
        assert!(text.contains("f32[1,2,16,64]"), "the call runs in f32: {text}");
    }
}
