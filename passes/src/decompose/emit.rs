//! A small typed emitter over the graph being built, so decompositions read like the formulas
//! they implement. Every node is typed by inference; an error means a decomposition is wrong.

use super::Decompose;
use crate::PassError;
use vidlower_ir::{BinaryOp, CompareDir, DType, Graph, Literal, Op, ReduceKind, TensorType, UnaryOp, ValueId};

/// Appends primitive ops to a graph.
pub struct Emitter<'g> {
    pub g: &'g mut Graph,
}

impl Emitter<'_> {
    /// Any op, typed by inference.
    pub fn op(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, PassError> {
        self.g.push(op, args.to_vec()).map_err(PassError::ir(Decompose::NAME))
    }

    pub fn ty(&self, v: ValueId) -> TensorType {
        self.g.tensor_ty(v).clone()
    }

    /// A splat constant of type `ty`.
    pub fn splat(&mut self, value: f64, ty: TensorType) -> Result<ValueId, PassError> {
        self.op(Op::Constant(Literal::splat(ty, value)), &[])
    }

    /// A splat constant with `like`'s type.
    pub fn splat_like(&mut self, value: f64, like: ValueId) -> Result<ValueId, PassError> {
        let ty = self.ty(like);
        self.splat(value, ty)
    }

    pub fn unary(&mut self, u: UnaryOp, x: ValueId) -> Result<ValueId, PassError> {
        self.op(Op::Unary(u), &[x])
    }

    pub fn binary(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId, PassError> {
        self.op(Op::Binary(b), &[x, y])
    }

    pub fn add(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, PassError> {
        self.binary(BinaryOp::Add, x, y)
    }

    pub fn sub(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, PassError> {
        self.binary(BinaryOp::Sub, x, y)
    }

    pub fn mul(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, PassError> {
        self.binary(BinaryOp::Mul, x, y)
    }

    pub fn div(&mut self, x: ValueId, y: ValueId) -> Result<ValueId, PassError> {
        self.binary(BinaryOp::Div, x, y)
    }

    /// `x (b) c` for a constant `c` in x's type.
    pub fn binary_const(&mut self, b: BinaryOp, x: ValueId, c: f64) -> Result<ValueId, PassError> {
        let c = self.splat_like(c, x)?;
        self.binary(b, x, c)
    }

    pub fn compare(&mut self, dir: CompareDir, x: ValueId, y: ValueId) -> Result<ValueId, PassError> {
        self.op(Op::Compare(dir), &[x, y])
    }

    pub fn select(&mut self, pred: ValueId, on_true: ValueId, on_false: ValueId) -> Result<ValueId, PassError> {
        self.op(Op::Select, &[pred, on_true, on_false])
    }

    /// `x` in `to`; `x` itself when it already is.
    pub fn convert(&mut self, x: ValueId, to: DType) -> Result<ValueId, PassError> {
        if self.g.tensor_ty(x).dtype == to {
            return Ok(x);
        }
        self.op(Op::Convert { to }, &[x])
    }

    pub fn reduce(&mut self, kind: ReduceKind, x: ValueId, axes: &[usize]) -> Result<ValueId, PassError> {
        self.op(Op::Reduce { kind, axes: axes.to_vec() }, &[x])
    }

    pub fn broadcast(&mut self, x: ValueId, shape: &[i64], dims: &[usize]) -> Result<ValueId, PassError> {
        self.op(Op::BroadcastInDim { shape: shape.to_vec(), dims: dims.to_vec() }, &[x])
    }

    pub fn reshape(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId, PassError> {
        self.op(Op::Reshape { shape: shape.to_vec() }, &[x])
    }

    /// `r`, the result of reducing a `shape` tensor over `axes`, broadcast back to `shape`.
    pub fn unreduce(&mut self, r: ValueId, shape: &[i64], axes: &[usize]) -> Result<ValueId, PassError> {
        let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
        self.broadcast(r, shape, &kept)
    }

    /// The mean of `x` over `axes`, with the reduced shape.
    pub fn mean(&mut self, x: ValueId, axes: &[usize]) -> Result<ValueId, PassError> {
        let shape = self.ty(x).shape;
        let n: i64 = axes.iter().map(|&a| shape[a]).product();
        let s = self.reduce(ReduceKind::Sum, x, axes)?;
        // Dividing rounds once; multiplying by 1/n would round 1/n first.
        let n = self.splat_like(n as f64, s)?;
        self.div(s, n)
    }
}

/// The dtype a composite computes in: f32 for bf16/f16 inputs, as diffusers' fp32 norms and
/// torch's reduced-precision kernels accumulate, else the input's own.
pub fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::BF16 | DType::F16 => DType::F32,
        d => d,
    }
}
