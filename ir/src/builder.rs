//! The API model code is written in: typed at build time, numpy-style broadcasting for
//! elementwise ops, and torch-layout layers (`linear`, `conv`) whose weights are named params.

use crate::error::{IrError, Result};
use crate::graph::{Graph, ValueId};
use crate::op::*;
use crate::types::{TensorType, Type};
use crate::DType;

/// Builds one graph. Every method checks shapes and returns an error naming the op and shapes.
pub struct Builder {
    graph: Graph,
}

impl Builder {
    pub fn new(name: impl Into<String>) -> Self {
        Builder { graph: Graph::new(name) }
    }

    /// The finished graph, verified.
    pub fn finish(self) -> Result<Graph> {
        crate::verify::verify(&self.graph)?;
        Ok(self.graph)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn ty(&self, v: ValueId) -> &TensorType {
        self.graph.tensor_ty(v)
    }

    pub fn shape(&self, v: ValueId) -> Vec<i64> {
        self.ty(v).shape.clone()
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.ty(v).dtype
    }

    /// A plain input (bound by the caller at run time).
    pub fn input(&mut self, name: &str, ty: TensorType) -> Result<ValueId> {
        if self.graph.find_input(name).is_some() {
            return Err(IrError::Value(format!("input \"{name}\" is declared twice")));
        }
        Ok(self.graph.push_typed(Op::Input { name: name.into() }, vec![], Type::Tensor(ty)))
    }

    /// A named weight; asking again for the same name and type returns the same value (tied weights).
    pub fn weight(&mut self, name: &str, ty: TensorType) -> Result<ValueId> {
        if let Some(v) = self.graph.find_input(name) {
            let existing = self.graph.tensor_ty(v);
            return match &self.graph.node(v).op {
                Op::Weight { .. } if *existing == ty => Ok(v),
                _ => Err(IrError::Value(format!("weight \"{name}\" requested as {ty} but already declared as {existing}"))),
            };
        }
        Ok(self.graph.push_typed(Op::Weight { name: name.into() }, vec![], Type::Tensor(ty)))
    }

    pub fn output(&mut self, name: &str, v: ValueId) {
        self.graph.add_output(name, v);
    }

    /// Any op, typed by inference.
    pub fn op(&mut self, op: Op, operands: &[ValueId]) -> Result<ValueId> {
        self.graph.push(op, operands.to_vec())
    }

    // ---- constants ----

    /// A tensor of `ty` filled with `value`.
    pub fn full(&mut self, value: f64, ty: TensorType) -> Result<ValueId> {
        self.op(Op::Constant(Literal::splat(ty, value)), &[])
    }

    pub fn scalar(&mut self, value: f64, dtype: DType) -> Result<ValueId> {
        self.full(value, TensorType::scalar(dtype))
    }

    /// A dense constant (row-major values).
    pub fn constant(&mut self, values: Vec<f64>, ty: TensorType) -> Result<ValueId> {
        self.op(Op::Constant(Literal { ty, data: LiteralData::Dense(values) }), &[])
    }

    pub fn iota(&mut self, ty: TensorType, dim: usize) -> Result<ValueId> {
        self.op(Op::Iota { ty, dim }, &[])
    }

    // ---- elementwise ----

    pub fn unary(&mut self, u: UnaryOp, x: ValueId) -> Result<ValueId> {
        self.op(Op::Unary(u), &[x])
    }
    pub fn neg(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Neg, x)
    }
    pub fn exp(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Exp, x)
    }
    pub fn log(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Log, x)
    }
    pub fn sqrt(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Sqrt, x)
    }
    pub fn rsqrt(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Rsqrt, x)
    }
    pub fn tanh(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Tanh, x)
    }
    pub fn logistic(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Logistic, x)
    }
    pub fn sin(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Sin, x)
    }
    pub fn cos(&mut self, x: ValueId) -> Result<ValueId> {
        self.unary(UnaryOp::Cos, x)
    }

    /// `x * sigmoid(x)`.
    pub fn silu(&mut self, x: ValueId) -> Result<ValueId> {
        let s = self.logistic(x)?;
        self.mul(x, s)
    }

    /// A binary op with numpy broadcasting (operands must share a dtype).
    pub fn binary(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId> {
        let (x, y) = self.broadcast_pair(b.name(), x, y)?;
        self.op(Op::Binary(b), &[x, y])
    }
    pub fn add(&mut self, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Add, x, y)
    }
    pub fn sub(&mut self, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Sub, x, y)
    }
    pub fn mul(&mut self, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Mul, x, y)
    }
    pub fn div(&mut self, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Div, x, y)
    }
    pub fn max(&mut self, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Max, x, y)
    }
    pub fn min(&mut self, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Min, x, y)
    }
    pub fn pow(&mut self, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.binary(BinaryOp::Pow, x, y)
    }

    /// `x (op) c` for a scalar constant `c` in x's dtype.
    pub fn binary_scalar(&mut self, b: BinaryOp, x: ValueId, c: f64) -> Result<ValueId> {
        let s = self.scalar(c, self.dtype(x))?;
        self.binary(b, x, s)
    }
    pub fn add_scalar(&mut self, x: ValueId, c: f64) -> Result<ValueId> {
        self.binary_scalar(BinaryOp::Add, x, c)
    }
    pub fn mul_scalar(&mut self, x: ValueId, c: f64) -> Result<ValueId> {
        self.binary_scalar(BinaryOp::Mul, x, c)
    }

    pub fn compare(&mut self, dir: CompareDir, x: ValueId, y: ValueId) -> Result<ValueId> {
        let (x, y) = self.broadcast_pair("compare", x, y)?;
        self.op(Op::Compare(dir), &[x, y])
    }

    /// `select(pred, a, b)` with the predicate and branches broadcast to one shape.
    pub fn select(&mut self, pred: ValueId, a: ValueId, b: ValueId) -> Result<ValueId> {
        let (a, b) = self.broadcast_pair("select", a, b)?;
        let shape = self.shape(a);
        let pred = self.broadcast_to(pred, &shape)?;
        self.op(Op::Select, &[pred, a, b])
    }

    pub fn convert(&mut self, x: ValueId, to: DType) -> Result<ValueId> {
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.op(Op::Convert { to }, &[x])
    }

    // ---- shapes ----

    pub fn broadcast_in_dim(&mut self, x: ValueId, shape: &[i64], dims: &[usize]) -> Result<ValueId> {
        self.op(Op::BroadcastInDim { shape: shape.to_vec(), dims: dims.to_vec() }, &[x])
    }

    /// Numpy-style broadcast of `x` to `shape` (trailing dims aligned).
    pub fn broadcast_to(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId> {
        let src = self.shape(x);
        if src == shape {
            return Ok(x);
        }
        if src.len() > shape.len() {
            return Err(self.shape_error("broadcast", &[x], format!("cannot broadcast to lower rank {shape:?}")));
        }
        let offset = shape.len() - src.len();
        let dims: Vec<usize> = (offset..shape.len()).collect();
        self.broadcast_in_dim(x, shape, &dims)
    }

    fn broadcast_pair(&mut self, op: &str, x: ValueId, y: ValueId) -> Result<(ValueId, ValueId)> {
        let (sx, sy) = (self.shape(x), self.shape(y));
        if sx == sy {
            return Ok((x, y));
        }
        let rank = sx.len().max(sy.len());
        let mut out = vec![1; rank];
        for i in 0..rank {
            let a = if i + sx.len() >= rank { sx[i + sx.len() - rank] } else { 1 };
            let b = if i + sy.len() >= rank { sy[i + sy.len() - rank] } else { 1 };
            out[i] = match (a, b) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => return Err(self.shape_error(op, &[x, y], "shapes do not broadcast".into())),
            };
        }
        Ok((self.broadcast_to(x, &out)?, self.broadcast_to(y, &out)?))
    }

    pub fn reshape(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId> {
        if self.shape(x) == shape {
            return Ok(x);
        }
        self.op(Op::Reshape { shape: shape.to_vec() }, &[x])
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == self.ty(x).rank() {
            return Ok(x);
        }
        self.op(Op::Transpose { perm: perm.to_vec() }, &[x])
    }

    /// Unit-stride slice `[start, limit)` in every dim.
    pub fn slice(&mut self, x: ValueId, start: &[i64], limit: &[i64]) -> Result<ValueId> {
        let strides = vec![1; start.len()];
        self.op(Op::Slice { start: start.to_vec(), limit: limit.to_vec(), strides }, &[x])
    }

    /// `x[.., start..start+len, ..]` along `axis`.
    pub fn slice_axis(&mut self, x: ValueId, axis: usize, start: i64, len: i64) -> Result<ValueId> {
        let shape = self.shape(x);
        let mut lo = vec![0; shape.len()];
        let mut hi = shape;
        lo[axis] = start;
        hi[axis] = start + len;
        self.slice(x, &lo, &hi)
    }

    /// Rows of `table` along `axis` picked by `indices` (an embedding lookup for axis 0).
    pub fn take(&mut self, table: ValueId, indices: ValueId, axis: usize) -> Result<ValueId> {
        self.op(Op::Take { axis }, &[table, indices])
    }

    pub fn concat(&mut self, xs: &[ValueId], dim: usize) -> Result<ValueId> {
        self.op(Op::Concatenate { dim }, xs)
    }

    /// Pads with `value`; negative amounts crop.
    pub fn pad(&mut self, x: ValueId, low: &[i64], high: &[i64], value: f64) -> Result<ValueId> {
        let v = self.scalar(value, self.dtype(x))?;
        let interior = vec![0; low.len()];
        self.op(Op::Pad { low: low.to_vec(), high: high.to_vec(), interior }, &[x, v])
    }

    // ---- contractions ----

    pub fn dot_general(&mut self, a: ValueId, b: ValueId, dims: DotDims) -> Result<ValueId> {
        self.op(Op::DotGeneral(dims), &[a, b])
    }

    /// `a @ b`: a is [..., M, K]; b is [K, N] or [..., K, N] with the same leading dims.
    pub fn matmul(&mut self, a: ValueId, b: ValueId) -> Result<ValueId> {
        let (ra, rb) = (self.ty(a).rank(), self.ty(b).rank());
        if ra < 2 || rb < 2 || (rb != 2 && rb != ra) {
            return Err(self.shape_error("matmul", &[a, b], "expected [..., M, K] @ [K, N] or equal batch dims".into()));
        }
        let batch: Vec<usize> = if rb == 2 { vec![] } else { (0..ra - 2).collect() };
        let dims = DotDims {
            lhs_batch: batch.clone(),
            rhs_batch: batch,
            lhs_contract: vec![ra - 1],
            rhs_contract: vec![rb - 2],
        };
        self.dot_general(a, b, dims)
    }

    /// torch `nn.ConvNd` (N = kernel.len()): weight `{prefix}.weight` [out, in, k...], optional bias.
    pub fn conv(
        &mut self,
        x: ValueId,
        prefix: &str,
        out_channels: i64,
        kernel: &[i64],
        attrs: ConvAttrs,
        bias: bool,
    ) -> Result<ValueId> {
        let t = self.ty(x).clone();
        if t.rank() != kernel.len() + 2 {
            return Err(self.shape_error("conv", &[x], format!("a {}-d kernel needs a rank-{} input", kernel.len(), kernel.len() + 2)));
        }
        let mut wshape = vec![out_channels, t.shape[1] / attrs.feature_group_count];
        wshape.extend_from_slice(kernel);
        let w = self.weight(&format!("{prefix}.weight"), TensorType::new(t.dtype, wshape))?;
        let y = self.op(Op::Convolution(attrs), &[x, w])?;
        if !bias {
            return Ok(y);
        }
        let b = self.weight(&format!("{prefix}.bias"), TensorType::new(t.dtype, vec![out_channels]))?;
        let out_shape = self.shape(y);
        let b = self.broadcast_in_dim(b, &out_shape, &[1])?;
        self.add(y, b)
    }

    // ---- reductions ----

    pub fn reduce(&mut self, x: ValueId, kind: ReduceKind, axes: &[usize]) -> Result<ValueId> {
        self.op(Op::Reduce { kind, axes: axes.to_vec() }, &[x])
    }

    pub fn sum(&mut self, x: ValueId, axes: &[usize]) -> Result<ValueId> {
        self.reduce(x, ReduceKind::Sum, axes)
    }

    /// Mean over `axes`, keeping them as size-1 dims when `keep_dims`.
    pub fn mean(&mut self, x: ValueId, axes: &[usize], keep_dims: bool) -> Result<ValueId> {
        let shape = self.shape(x);
        let n: i64 = axes.iter().map(|&a| shape[a]).product();
        let s = self.sum(x, axes)?;
        let m = self.mul_scalar(s, 1.0 / n as f64)?;
        if !keep_dims {
            return Ok(m);
        }
        let kept: Vec<i64> = shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
        self.reshape(m, &kept)
    }

    // ---- composites ----

    pub fn softmax(&mut self, x: ValueId, axis: usize) -> Result<ValueId> {
        self.op(Op::Softmax { axis }, &[x])
    }

    /// LayerNorm over the last axis.
    pub fn layer_norm(&mut self, x: ValueId, eps: f64, weight: Option<ValueId>, bias: Option<ValueId>) -> Result<ValueId> {
        let mut operands = vec![x];
        operands.extend(weight);
        operands.extend(bias);
        self.op(Op::LayerNorm { eps, has_weight: weight.is_some(), has_bias: bias.is_some() }, &operands)
    }

    /// RMS norm over the last axis.
    pub fn rms_norm(&mut self, x: ValueId, eps: f64, weight: Option<ValueId>) -> Result<ValueId> {
        let mut operands = vec![x];
        operands.extend(weight);
        self.op(Op::RmsNorm { eps, has_weight: weight.is_some() }, &operands)
    }

    /// GroupNorm on [N, C, ...] with optional affine (weight, bias).
    pub fn group_norm(&mut self, x: ValueId, groups: i64, eps: f64, affine: Option<(ValueId, ValueId)>) -> Result<ValueId> {
        let mut operands = vec![x];
        if let Some((w, b)) = affine {
            operands.extend([w, b]);
        }
        self.op(Op::GroupNorm { groups, eps, affine: affine.is_some() }, &operands)
    }

    pub fn gelu(&mut self, x: ValueId, approximate: GeluApprox) -> Result<ValueId> {
        self.op(Op::Gelu { approximate }, &[x])
    }

    /// `softmax(scale * q k^T [mask]) v` on [B, H, S, D]; `kind` says where k and v come from.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        kind: AttentionKind,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        scale: f64,
        mask: Option<ValueId>,
        window: Option<(i64, i64)>,
    ) -> Result<ValueId> {
        let mut operands = vec![q, k, v];
        operands.extend(mask);
        self.op(Op::Attention { kind, scale, has_mask: mask.is_some(), window, window_span: None }, &operands)
    }

    /// A joint text+video attention (`kind=joint`) whose video tokens are positions
    /// `video.0 .. video.1` of the sequence: a window (`sliding_window`) applies among them, the
    /// text tokens stay global.
    pub fn joint_attention(
        &mut self,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        scale: f64,
        mask: Option<ValueId>,
        video: (i64, i64),
    ) -> Result<ValueId> {
        let mut operands = vec![q, k, v];
        operands.extend(mask);
        let op = Op::Attention { kind: AttentionKind::Joint, scale, has_mask: mask.is_some(), window: None, window_span: Some(video) };
        self.op(op, &operands)
    }

    /// [B, S, H*D] -> [B, H, S, D].
    pub fn split_heads(&mut self, x: ValueId, heads: i64) -> Result<ValueId> {
        let s = self.shape(x);
        if s.len() != 3 || s[2] % heads != 0 {
            return Err(self.shape_error("split_heads", &[x], format!("expected [B, S, H*D] with H = {heads}")));
        }
        let r = self.reshape(x, &[s[0], s[1], heads, s[2] / heads])?;
        self.transpose(r, &[0, 2, 1, 3])
    }

    /// [B, H, S, D] -> [B, S, H*D].
    pub fn merge_heads(&mut self, x: ValueId) -> Result<ValueId> {
        let s = self.shape(x);
        if s.len() != 4 {
            return Err(self.shape_error("merge_heads", &[x], "expected [B, H, S, D]".into()));
        }
        let t = self.transpose(x, &[0, 2, 1, 3])?;
        self.reshape(t, &[s[0], s[2], s[1] * s[3]])
    }

    fn shape_error(&self, op: &str, operands: &[ValueId], message: String) -> IrError {
        let operands = operands.iter().map(|&v| self.graph.ty(v).to_string()).collect::<Vec<_>>().join(", ");
        IrError::Shape { op: op.into(), operands, message }
    }
}
