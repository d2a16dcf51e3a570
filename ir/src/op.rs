//! The op set. Primitive ops map one-to-one onto StableHLO; composite ops (softmax, attention,
//! norms, gelu) carry meaning that passes need and are lowered to primitives by `decompose`.

use crate::graph::Graph;
use crate::types::TensorType;
use crate::DType;

/// One op with its attributes. Operands and the result type live on the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    // ---- graph inputs: bound by the runtime, in `Graph::inputs` order ----
    /// A plain input (latents, timestep, token ids).
    Input { name: String },
    /// A named weight, bound from safetensors by name; never a constant (see DESIGN.md).
    Weight { name: String },

    // ---- primitives (one StableHLO op each) ----
    Constant(Literal),
    Iota { ty: TensorType, dim: usize },
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CompareDir),
    /// `select(pred, on_true, on_false)`.
    Select,
    Convert { to: DType },
    BroadcastInDim { shape: Vec<i64>, dims: Vec<usize> },
    Reshape { shape: Vec<i64> },
    Transpose { perm: Vec<usize> },
    Slice { start: Vec<i64>, limit: Vec<i64>, strides: Vec<i64> },
    /// `dynamic_slice(x, start_0, ..., start_n)`, starts are i32/i64 scalars.
    DynamicSlice { sizes: Vec<i64> },
    /// `dynamic_update_slice(x, update, start_0, ..., start_n)`.
    DynamicUpdateSlice,
    /// `take(table, indices)`: rows of `table` along `axis` picked by integer `indices`
    /// (embedding lookups, bucket tables). Result: table dims before `axis`, the index dims, then
    /// table dims after `axis`. Out-of-range indices are clamped, as StableHLO's gather does.
    Take { axis: usize },
    Concatenate { dim: usize },
    /// `pad(x, padding_value)`; negative low/high padding slices.
    Pad { low: Vec<i64>, high: Vec<i64>, interior: Vec<i64> },
    DotGeneral(DotDims),
    /// Torch layout: input [N, C, spatial...], kernel [O, I/groups, spatial...], output [N, O, spatial...].
    Convolution(ConvAttrs),
    Reduce { kind: ReduceKind, axes: Vec<usize> },
    /// Loop over a tuple of carried values: `cond` maps the state to i1[], `body` to the next state.
    While { cond: Box<Graph>, body: Box<Graph> },
    /// A call the backend passes through by name (cuDNN attention and the like). Result type declared.
    /// `typed_ffi`: a typed XLA FFI handler (`api_version` 4, attributes as a dictionary, none
    /// here), such as vidlower's own CPU kernels; otherwise the legacy form with an opaque
    /// string `backend_config` (`api_version` 2), as cuDNN's calls are.
    CustomCall { target: String, backend_config: String, has_side_effect: bool, typed_ffi: bool, result: Vec<TensorType> },
    /// Element `index` of a tuple-typed value.
    GetTuple { index: usize },
    /// The value moved to the layout in the node's sharding (which it must have): the explicit
    /// reshard that sharding propagation inserts where a value's users disagree. Never an
    /// identity to fold away: it is what tells the partitioner where to communicate.
    Reshard,

    // ---- composites (lowered by `decompose`) ----
    /// Softmax over one axis.
    Softmax { axis: usize },
    /// `softmax(scale * q k^T [+ mask]) v` on [B, H, S, D] tensors; operands q, k, v[, mask].
    /// `kind` says where the keys come from (passes read it, never the lengths). A boolean mask
    /// is true where a query may attend. `window` = (left, right) keys around the query's
    /// position, for local attention. `window_span` = [start, end) of the positions that have a
    /// place in the window (a joint attention's video tokens, set by the frontend): a window
    /// applies between two tokens inside it; a token outside (text) attends to, and is attended
    /// by, every token. `None`: the whole sequence.
    Attention { kind: AttentionKind, scale: f64, has_mask: bool, window: Option<(i64, i64)>, window_span: Option<(i64, i64)> },
    /// LayerNorm over the last axis; operands x[, weight][, bias].
    LayerNorm { eps: f64, has_weight: bool, has_bias: bool },
    /// RMS norm over the last axis; operands x[, weight].
    RmsNorm { eps: f64, has_weight: bool },
    /// GroupNorm on [N, C, ...]; operands x[, weight, bias].
    GroupNorm { groups: i64, eps: f64, affine: bool },
    Gelu { approximate: GeluApprox },
}

/// What an attention attends over: the model's statement, which passes read instead of
/// guessing from the query and key lengths (a joint text+video attention has equal lengths, a
/// self-attention over a short sequence has few keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionKind {
    /// Queries and keys from the same token sequence (Wan's `attn1`, the text encoders).
    SelfAttention,
    /// Keys and values from another sequence (the text embeddings: Wan's `attn2`).
    Cross,
    /// One sequence of text and video tokens attending to itself (CogVideoX, HunyuanVideo): the
    /// text tokens are in the sequence but have no video position.
    Joint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Logistic,
    Sin,
    Cos,
    Floor,
    Sign,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareDir {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeluApprox {
    Tanh,
    /// The exact form; StableHLO has no erf, so `decompose` uses a polynomial (|err| < 1.5e-7).
    Erf,
}

/// Batch and contracting dims of a `dot_general`. Result: batch dims, then lhs free, then rhs free.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct DotDims {
    pub lhs_batch: Vec<usize>,
    pub rhs_batch: Vec<usize>,
    pub lhs_contract: Vec<usize>,
    pub rhs_contract: Vec<usize>,
}

/// Attributes of an N-d convolution; each list has one entry per spatial dim.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvAttrs {
    pub strides: Vec<i64>,
    /// (low, high) padding per spatial dim.
    pub padding: Vec<(i64, i64)>,
    pub lhs_dilation: Vec<i64>,
    pub rhs_dilation: Vec<i64>,
    pub feature_group_count: i64,
}

impl ConvAttrs {
    /// Stride 1, no dilation, symmetric padding, one group, for `spatial` dims.
    pub fn simple(spatial: usize, padding: i64) -> Self {
        ConvAttrs {
            strides: vec![1; spatial],
            padding: vec![(padding, padding); spatial],
            lhs_dilation: vec![1; spatial],
            rhs_dilation: vec![1; spatial],
            feature_group_count: 1,
        }
    }
}

/// A constant's value and type. Values are held as f64 (exact for every float dtype and for
/// integers up to 2^53, which covers every index and mask we build).
#[derive(Clone, Debug, PartialEq)]
pub struct Literal {
    pub ty: TensorType,
    pub data: LiteralData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LiteralData {
    /// Every element has this value (the common case: eps, scales, zeros).
    Splat(f64),
    /// Row-major values, one per element.
    Dense(Vec<f64>),
}

impl Literal {
    pub fn splat(ty: TensorType, value: f64) -> Self {
        Literal { ty, data: LiteralData::Splat(value) }
    }

    /// The value of the element at row-major position `i`.
    pub fn get(&self, i: usize) -> f64 {
        match &self.data {
            LiteralData::Splat(v) => *v,
            LiteralData::Dense(vs) => vs[i],
        }
    }

    /// The splat value, when every element is the same.
    pub fn as_splat(&self) -> Option<f64> {
        match &self.data {
            LiteralData::Splat(v) => Some(*v),
            LiteralData::Dense(vs) => {
                let first = *vs.first()?;
                vs.iter().all(|v| v.to_bits() == first.to_bits()).then_some(first)
            }
        }
    }
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 12] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Tanh,
        UnaryOp::Logistic,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Floor,
        UnaryOp::Sign,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Logistic => "logistic",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Floor => "floor",
            UnaryOp::Sign => "sign",
        }
    }

    /// Whether the op only makes sense on floats (abs, neg and sign also take signed ints).
    pub fn float_only(self) -> bool {
        !matches!(self, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign)
    }
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 7] =
        [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::Pow];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Max => "max",
            BinaryOp::Min => "min",
            BinaryOp::Pow => "pow",
        }
    }
}

impl CompareDir {
    pub const ALL: [CompareDir; 6] =
        [CompareDir::Eq, CompareDir::Ne, CompareDir::Lt, CompareDir::Le, CompareDir::Gt, CompareDir::Ge];

    /// The StableHLO spelling (`EQ`, `LT`, ...), also used in the IR text.
    pub fn name(self) -> &'static str {
        match self {
            CompareDir::Eq => "EQ",
            CompareDir::Ne => "NE",
            CompareDir::Lt => "LT",
            CompareDir::Le => "LE",
            CompareDir::Gt => "GT",
            CompareDir::Ge => "GE",
        }
    }
}

impl ReduceKind {
    pub const ALL: [ReduceKind; 3] = [ReduceKind::Sum, ReduceKind::Max, ReduceKind::Min];

    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
        }
    }
}

impl AttentionKind {
    pub const ALL: [AttentionKind; 3] = [AttentionKind::SelfAttention, AttentionKind::Cross, AttentionKind::Joint];

    /// The spelling in the IR text (`kind=self`).
    pub fn name(self) -> &'static str {
        match self {
            AttentionKind::SelfAttention => "self",
            AttentionKind::Cross => "cross",
            AttentionKind::Joint => "joint",
        }
    }
}

impl GeluApprox {
    pub fn name(self) -> &'static str {
        match self {
            GeluApprox::Tanh => "tanh",
            GeluApprox::Erf => "erf",
        }
    }
}

impl Op {
    /// The op's name in the IR text (`dot_general`, `attention`, `exp`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Weight { .. } => "weight",
            Op::Constant(_) => "constant",
            Op::Iota { .. } => "iota",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Compare(_) => "compare",
            Op::Select => "select",
            Op::Convert { .. } => "convert",
            Op::BroadcastInDim { .. } => "broadcast_in_dim",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Slice { .. } => "slice",
            Op::DynamicSlice { .. } => "dynamic_slice",
            Op::DynamicUpdateSlice => "dynamic_update_slice",
            Op::Take { .. } => "take",
            Op::Concatenate { .. } => "concatenate",
            Op::Pad { .. } => "pad",
            Op::DotGeneral(_) => "dot_general",
            Op::Convolution(_) => "convolution",
            Op::Reduce { .. } => "reduce",
            Op::While { .. } => "while",
            Op::CustomCall { .. } => "custom_call",
            Op::GetTuple { .. } => "get",
            Op::Reshard => "reshard",
            Op::Softmax { .. } => "softmax",
            Op::Attention { .. } => "attention",
            Op::LayerNorm { .. } => "layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::GroupNorm { .. } => "group_norm",
            Op::Gelu { .. } => "gelu",
        }
    }

    /// Composite ops, which `decompose` lowers to primitives.
    pub fn is_composite(&self) -> bool {
        matches!(
            self,
            Op::Softmax { .. }
                | Op::Attention { .. }
                | Op::LayerNorm { .. }
                | Op::RmsNorm { .. }
                | Op::GroupNorm { .. }
                | Op::Gelu { .. }
        )
    }

    /// Graph inputs (plain inputs and weights).
    pub fn is_graph_input(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Weight { .. })
    }

    /// Ops that must not be removed or merged even when their result looks unused or duplicated.
    pub fn has_side_effect(&self) -> bool {
        matches!(self, Op::CustomCall { has_side_effect: true, .. })
    }
}
