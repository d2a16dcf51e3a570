//! Kernels vidlower registers with the CPU plugin as typed XLA FFI custom calls, for what XLA
//! CPU lowers slowly: the handlers live in this binary and are handed to the plugin's FFI
//! extension (`PJRT_FFI_Register_Handler`) once per process, before the first compile. An
//! executable that calls them is only valid in a process that registered them, which every
//! vidlower process with a CPU client does (see [`crate::pjrt::Client::new`]).

pub mod attention;
pub mod xla_ffi;

use attention::{attention_base2, AttentionDims};
use std::sync::OnceLock;
use xla_ffi::{CallFrame, Error};

/// The custom call target of [`attention_base2`] (named by the pass that emits the call):
/// `softmax2(q k^T + key_bias) v` on f32 [B, H, S, D] operands q, k, v (q pre-scaled to base-2
/// logits) and optionally a key bias f32 [B, Sk] (base 2, -inf = masked), one [B, H, Sq, Dv] f32
/// result.
pub const ATTENTION_TARGET: &str = vidlower_passes::cpu_attention::CPU_ATTENTION_TARGET;

/// The platform name the handlers are registered for (XLA's canonical name of the CPU).
pub const PLATFORM: &str = "Host";

/// Every kernel: its custom call target and handler.
pub fn handlers() -> [(&'static str, xla_ffi::Handler); 1] {
    [(ATTENTION_TARGET, attention_handler)]
}

/// Worker threads per kernel call: one per core, as XLA CPU's own thread pool.
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The FFI handler of [`ATTENTION_TARGET`]: checks the buffers, runs the kernel; a bad call or
/// a panic comes back to XLA as an error, never as an unwind across the C boundary.
unsafe extern "C" fn attention_handler(frame: *mut CallFrame) -> *mut Error {
    let frame = &*frame;
    if xla_ffi::answer_metadata_query(frame) || frame.stage != xla_ffi::STAGE_EXECUTE {
        return std::ptr::null_mut();
    }
    let run = std::panic::catch_unwind(|| unsafe { run_attention(frame) });
    match run {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(message)) => xla_ffi::error(frame, xla_ffi::INVALID_ARGUMENT, &format!("{ATTENTION_TARGET}: {message}")),
        Err(_) => xla_ffi::error(frame, xla_ffi::INTERNAL, &format!("{ATTENTION_TARGET}: the kernel panicked")),
    }
}

/// # Safety
/// `frame` must be the call frame XLA passed to the handler at the execute stage.
unsafe fn run_attention(frame: &CallFrame) -> Result<(), String> {
    let q = xla_ffi::f32_buffer(&frame.args, 0, "q")?;
    let k = xla_ffi::f32_buffer(&frame.args, 1, "k")?;
    let v = xla_ffi::f32_buffer(&frame.args, 2, "v")?;
    let bias = if frame.args.size > 3 { Some(xla_ffi::f32_buffer(&frame.args, 3, "key bias")?) } else { None };
    let out = xla_ffi::f32_buffer(&frame.rets, 0, "result")?;
    let dims = attention_dims(&q.dims, &k.dims, &v.dims, &out.dims)?;
    if let Some(bias) = &bias {
        if bias.dims != [dims.b, dims.sk] {
            return Err(format!("key bias is {:?}, expected {:?} ([B, Sk])", bias.dims, [dims.b, dims.sk]));
        }
    }
    let [lq, lk, lv, lo] = dims.lens();
    let slice = |b: &xla_ffi::BufferView, len| std::slice::from_raw_parts(b.data as *const f32, len);
    let out = std::slice::from_raw_parts_mut(out.data, lo);
    let bias = bias.as_ref().map(|b| slice(b, dims.b * dims.sk));
    attention_base2(slice(&q, lq), slice(&k, lk), slice(&v, lv), bias, out, dims, threads());
    Ok(())
}

/// The sizes of a call with these operand and result dims, or what does not fit.
pub fn attention_dims(q: &[usize], k: &[usize], v: &[usize], out: &[usize]) -> Result<AttentionDims, String> {
    let rank4 = |name: &str, d: &[usize]| if d.len() == 4 { Ok(()) } else { Err(format!("{name} has rank {}, expected 4 ([B, H, S, D])", d.len())) };
    rank4("q", q)?;
    rank4("k", k)?;
    rank4("v", v)?;
    rank4("result", out)?;
    let dims = AttentionDims { b: q[0], h: q[1], sq: q[2], sk: k[2], d: q[3], dv: v[3] };
    let expect = [
        ("k", k, [dims.b, dims.h, dims.sk, dims.d]),
        ("v", v, [dims.b, dims.h, dims.sk, dims.dv]),
        ("result", out, [dims.b, dims.h, dims.sq, dims.dv]),
    ];
    for (name, got, want) in expect {
        if got != want {
            return Err(format!("{name} is {got:?}, expected {want:?} for q {q:?}"));
        }
    }
    Ok(dims)
}
