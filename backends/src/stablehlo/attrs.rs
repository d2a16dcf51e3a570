//! StableHLO attribute spellings for each primitive op.

use vidlower_ir::{BinaryOp, CompareDir, ConvAttrs, DotDims, Op, TensorType, UnaryOp};

/// `array<i64: 0, 1>` (dense i64 arrays, the form current StableHLO uses for dims and strides).
pub fn i64_array<T: ToString>(xs: &[T]) -> String {
    if xs.is_empty() {
        return "array<i64>".into();
    }
    format!("array<i64: {}>", xs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

fn list<T: ToString>(xs: &[T]) -> String {
    format!("[{}]", xs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

/// The `stablehlo.*` op name of a primitive.
pub fn op_name(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::Constant(_) => "constant",
        Op::Iota { .. } => "iota",
        Op::Unary(u) => match u {
            UnaryOp::Neg => "negate",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exponential",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Logistic => "logistic",
            UnaryOp::Sin => "sine",
            UnaryOp::Cos => "cosine",
            UnaryOp::Floor => "floor",
            UnaryOp::Sign => "sign",
        },
        Op::Binary(b) => match b {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "subtract",
            BinaryOp::Mul => "multiply",
            BinaryOp::Div => "divide",
            BinaryOp::Max => "maximum",
            BinaryOp::Min => "minimum",
            BinaryOp::Pow => "power",
        },
        Op::Compare(_) => "compare",
        Op::Select => "select",
        Op::Convert { .. } => "convert",
        Op::BroadcastInDim { .. } => "broadcast_in_dim",
        Op::Reshape { .. } => "reshape",
        Op::Transpose { .. } => "transpose",
        Op::Slice { .. } => "slice",
        Op::DynamicSlice { .. } => "dynamic_slice",
        Op::DynamicUpdateSlice => "dynamic_update_slice",
        Op::Take { .. } => "gather",
        Op::Concatenate { .. } => "concatenate",
        Op::Pad { .. } => "pad",
        Op::DotGeneral(_) => "dot_general",
        Op::Convolution(_) => "convolution",
        Op::Reduce { .. } => "reduce",
        Op::While { .. } => "while",
        Op::CustomCall { .. } => "custom_call",
        _ => return None,
    })
}

/// The attribute dictionary entries of an op without regions (empty when it has none).
pub fn op_attrs(op: &Op) -> Vec<String> {
    match op {
        Op::Iota { dim, .. } => vec![format!("iota_dimension = {dim} : i64")],
        Op::Compare(d) => vec![format!("comparison_direction = #stablehlo<comparison_direction {}>", dir(*d))],
        Op::BroadcastInDim { dims, .. } => vec![format!("broadcast_dimensions = {}", i64_array(dims))],
        Op::Transpose { perm } => vec![format!("permutation = {}", i64_array(perm))],
        Op::Slice { start, limit, strides } => vec![
            format!("limit_indices = {}", i64_array(limit)),
            format!("start_indices = {}", i64_array(start)),
            format!("strides = {}", i64_array(strides)),
        ],
        Op::DynamicSlice { sizes } => vec![format!("slice_sizes = {}", i64_array(sizes))],
        Op::Concatenate { dim } => vec![format!("dimension = {dim} : i64")],
        Op::Pad { low, high, interior } => vec![
            format!("edge_padding_high = {}", i64_array(high)),
            format!("edge_padding_low = {}", i64_array(low)),
            format!("interior_padding = {}", i64_array(interior)),
        ],
        Op::DotGeneral(d) => vec![format!("dot_dimension_numbers = {}", dot(d))],
        Op::Convolution(c) => conv(c),
        Op::Reduce { axes, .. } => vec![format!("dimensions = {}", i64_array(axes))],
        // A typed FFI call takes its attributes as a dictionary (vidlower's kernels take none).
        Op::CustomCall { target, backend_config, has_side_effect, typed_ffi: true, .. } => vec![
            "api_version = 4 : i32".into(),
            format!("backend_config = {{{backend_config}}}"),
            format!("call_target_name = {}", mlir_string(target)),
            format!("has_side_effect = {has_side_effect}"),
        ],
        Op::CustomCall { target, backend_config, has_side_effect, .. } => vec![
            "api_version = 2 : i32".into(),
            format!("backend_config = {}", mlir_string(backend_config)),
            format!("call_target_name = {}", mlir_string(target)),
            format!("has_side_effect = {has_side_effect}"),
        ],
        _ => vec![],
    }
}

/// `operand_layouts` and `result_layouts` of a custom call: every operand and result in the
/// default row-major layout (minor-to-major `[rank-1, ..., 0]`), which is all the IR has. The
/// cuDNN attention call gets them spelled out as JAX emits it, rather than relying on XLA's
/// default for unconstrained custom calls.
pub fn custom_call_layouts(operands: &[&TensorType], results: &[TensorType]) -> Vec<String> {
    let operands: Vec<String> = operands.iter().map(|t| row_major(t)).collect();
    let results: Vec<String> = results.iter().map(row_major).collect();
    vec![format!("operand_layouts = [{}]", operands.join(", ")), format!("result_layouts = [{}]", results.join(", "))]
}

/// The row-major layout of `t` as a dense index attribute (`dense<> : tensor<0xindex>` for a scalar).
fn row_major(t: &TensorType) -> String {
    let minor_to_major: Vec<usize> = (0..t.rank()).rev().collect();
    let dims = if minor_to_major.is_empty() { String::new() } else { list(&minor_to_major) };
    format!("dense<{dims}> : tensor<{}xindex>", t.rank())
}

fn dir(d: CompareDir) -> &'static str {
    d.name()
}

fn dot(d: &DotDims) -> String {
    let mut parts = Vec::new();
    if !d.lhs_batch.is_empty() {
        parts.push(format!("lhs_batching_dimensions = {}", list(&d.lhs_batch)));
        parts.push(format!("rhs_batching_dimensions = {}", list(&d.rhs_batch)));
    }
    if !d.lhs_contract.is_empty() {
        parts.push(format!("lhs_contracting_dimensions = {}", list(&d.lhs_contract)));
        parts.push(format!("rhs_contracting_dimensions = {}", list(&d.rhs_contract)));
    }
    format!("#stablehlo.dot<{}>", parts.join(", "))
}

/// Torch layout: [b, f, spatial...] x [o, i, spatial...] -> [b, f, spatial...].
fn conv(c: &ConvAttrs) -> Vec<String> {
    let spatial: Vec<String> = (0..c.strides.len()).map(|i| i.to_string()).collect();
    let s = spatial.join(", ");
    let padding: Vec<String> = c.padding.iter().map(|(l, h)| format!("[{l}, {h}]")).collect();
    vec![
        "batch_group_count = 1 : i64".into(),
        format!("dimension_numbers = #stablehlo.conv<[b, f, {s}]x[o, i, {s}]->[b, f, {s}]>"),
        format!("feature_group_count = {} : i64", c.feature_group_count),
        format!("lhs_dilation = {}", i64_array(&c.lhs_dilation)),
        format!("padding = dense<[{}]> : tensor<{}x2xi64>", padding.join(", "), c.padding.len()),
        format!("rhs_dilation = {}", i64_array(&c.rhs_dilation)),
        format!("window_strides = {}", i64_array(&c.strides)),
    ]
}

/// A quoted MLIR string attribute.
pub fn mlir_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:02X}")),
        }
    }
    out.push('"');
    out
}
