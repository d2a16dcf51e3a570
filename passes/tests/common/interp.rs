//! A reference interpreter for the IR, for tests that passes preserve meaning without a device.
//! Everything is computed in f64 and never rounded to the dtype (so a convert between floats is
//! the identity); integer division truncates and conversion to an integer truncates. Composite
//! ops have their own direct implementations here, written from their definitions, so a
//! decomposition is checked against something independent of it.

use vidlower_ir::{
    BinaryOp, CompareDir, DType, DotDims, GeluApprox, Graph, LiteralData, Op, ReduceKind, Type, UnaryOp,
};

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<i64>,
    pub data: Vec<f64>,
}

#[derive(Clone, Debug)]
enum Val {
    T(Tensor),
    Tuple(Vec<Tensor>),
}

impl Val {
    fn t(&self) -> &Tensor {
        match self {
            Val::T(t) => t,
            Val::Tuple(_) => panic!("tuple used as a tensor"),
        }
    }
}

fn strides(shape: &[i64]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as usize;
    }
    s
}

fn unravel(mut i: usize, shape: &[i64]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        let n = shape[d] as usize;
        idx[d] = i % n.max(1);
        i /= n.max(1);
    }
    idx
}

fn ravel(idx: &[usize], shape: &[i64]) -> usize {
    idx.iter().zip(strides(shape)).map(|(i, s)| i * s).sum()
}

fn numel(shape: &[i64]) -> usize {
    shape.iter().product::<i64>() as usize
}

fn tensor_of(shape: &[i64], f: impl Fn(&[usize]) -> f64) -> Tensor {
    let data = (0..numel(shape)).map(|i| f(&unravel(i, shape))).collect();
    Tensor { shape: shape.to_vec(), data }
}

/// Runs `g` on `inputs` (in `g.inputs` order) and returns its outputs in order.
pub fn eval(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    assert_eq!(inputs.len(), g.inputs.len(), "one tensor per graph input");
    let mut vals: Vec<Option<Val>> = vec![None; g.nodes.len()];
    for (&v, t) in g.inputs.iter().zip(inputs) {
        vals[v.index()] = Some(Val::T(t.clone()));
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if node.op.is_graph_input() {
            continue;
        }
        let args: Vec<&Val> = node.operands.iter().map(|o| vals[o.index()].as_ref().unwrap()).collect();
        let out_shape = match &node.ty {
            Type::Tensor(t) => t.shape.clone(),
            Type::Tuple(_) => vec![],
        };
        let dtype = node.ty.tensor().map_or(DType::F64, |t| t.dtype);
        // Only attention needs an operand's dtype: a boolean mask selects, a float mask adds.
        let bool_mask = node.operands.get(3).is_some_and(|&m| g.ty(m).tensor().is_some_and(|t| t.dtype == DType::I1));
        vals[i] = Some(eval_op(&node.op, &args, &out_shape, dtype, bool_mask));
    }
    g.outputs.iter().map(|o| vals[o.value.index()].as_ref().unwrap().t().clone()).collect()
}

fn eval_op(op: &Op, args: &[&Val], shape: &[i64], dtype: DType, bool_mask: bool) -> Val {
    let a = |k: usize| args[k].t();
    let t = match op {
        Op::Constant(lit) => match &lit.data {
            LiteralData::Splat(v) => tensor_of(shape, |_| *v),
            LiteralData::Dense(vs) => Tensor { shape: shape.to_vec(), data: vs.clone() },
        },
        Op::Iota { dim, .. } => tensor_of(shape, |idx| idx[*dim] as f64),
        Op::Unary(u) => map(a(0), |x| wrap(dtype, unary(*u, x))),
        Op::Binary(b) => zip(a(0), a(1), |x, y| wrap(dtype, binary(*b, x, y, !dtype.is_float()))),
        Op::Compare(d) => zip(a(0), a(1), |x, y| f64::from(u8::from(compare(*d, x, y)))),
        Op::Select => {
            let (p, x, y) = (a(0), a(1), a(2));
            let data = (0..x.data.len())
                .map(|i| {
                    let pi = if p.shape.is_empty() { p.data[0] } else { p.data[i] };
                    if pi != 0.0 {
                        x.data[i]
                    } else {
                        y.data[i]
                    }
                })
                .collect();
            Tensor { shape: x.shape.clone(), data }
        }
        Op::Convert { to } => map(a(0), |x| {
            if *to == DType::I1 {
                f64::from(u8::from(x != 0.0))
            } else if to.is_float() {
                x
            } else {
                wrap(*to, x.trunc())
            }
        }),
        Op::BroadcastInDim { dims, .. } => {
            let x = a(0);
            tensor_of(shape, |idx| {
                let src: Vec<usize> =
                    dims.iter().enumerate().map(|(i, &d)| if x.shape[i] == 1 { 0 } else { idx[d] }).collect();
                x.data[ravel(&src, &x.shape)]
            })
        }
        Op::Reshape { .. } => Tensor { shape: shape.to_vec(), data: a(0).data.clone() },
        Op::Transpose { perm } => {
            let x = a(0);
            tensor_of(shape, |idx| {
                let mut src = vec![0; idx.len()];
                for (i, &p) in perm.iter().enumerate() {
                    src[p] = idx[i];
                }
                x.data[ravel(&src, &x.shape)]
            })
        }
        Op::Slice { start, strides, .. } => {
            let x = a(0);
            tensor_of(shape, |idx| {
                let src: Vec<usize> =
                    idx.iter().enumerate().map(|(d, &i)| start[d] as usize + i * strides[d] as usize).collect();
                x.data[ravel(&src, &x.shape)]
            })
        }
        Op::Concatenate { dim } => tensor_of(shape, |idx| {
            let mut pos = idx[*dim];
            for arg in args {
                let x = arg.t();
                if pos < x.shape[*dim] as usize {
                    let mut src = idx.to_vec();
                    src[*dim] = pos;
                    return x.data[ravel(&src, &x.shape)];
                }
                pos -= x.shape[*dim] as usize;
            }
            unreachable!()
        }),
        Op::DotGeneral(d) => dot(a(0), a(1), d, shape),
        Op::Reduce { kind, axes } => reduce(a(0), *kind, axes, shape),
        Op::While { cond, body } => {
            let mut state: Vec<Tensor> = args.iter().map(|v| v.t().clone()).collect();
            while eval(cond, &state)[0].data[0] != 0.0 {
                state = eval(body, &state);
            }
            return Val::Tuple(state);
        }
        Op::GetTuple { index } => match args[0] {
            Val::Tuple(ts) => ts[*index].clone(),
            Val::T(_) => panic!("get on a tensor"),
        },
        Op::Softmax { axis } => softmax(a(0), *axis),
        Op::Attention { scale, has_mask, window, .. } => {
            attention(a(0), a(1), a(2), has_mask.then(|| (a(3), bool_mask)), *scale, *window)
        }
        Op::LayerNorm { eps, has_weight, has_bias } => {
            let w = has_weight.then(|| a(1));
            let b = has_bias.then(|| a(1 + usize::from(*has_weight)));
            row_norm(a(0), *eps, true, w, b)
        }
        Op::RmsNorm { eps, has_weight } => row_norm(a(0), *eps, false, has_weight.then(|| a(1)), None),
        Op::GroupNorm { groups, eps, affine } => group_norm(a(0), *groups, *eps, affine.then(|| (a(1), a(2)))),
        Op::Gelu { approximate } => map(a(0), |x| match approximate {
            GeluApprox::Tanh => {
                0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
            }
            GeluApprox::Erf => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        }),
        other => panic!("the test interpreter does not run {}", other.name()),
    };
    Val::T(t)
}

/// Integer results wrap at the dtype's width, as StableHLO's do; floats are left alone.
fn wrap(dtype: DType, v: f64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    match dtype {
        DType::I8 => v as i64 as i8 as f64,
        DType::U8 => v as i64 as u8 as f64,
        DType::I32 => v as i64 as i32 as f64,
        _ => v,
    }
}

fn map(x: &Tensor, f: impl Fn(f64) -> f64) -> Tensor {
    Tensor { shape: x.shape.clone(), data: x.data.iter().map(|&v| f(v)).collect() }
}

fn zip(x: &Tensor, y: &Tensor, f: impl Fn(f64, f64) -> f64) -> Tensor {
    Tensor { shape: x.shape.clone(), data: x.data.iter().zip(&y.data).map(|(&a, &b)| f(a, b)).collect() }
}

fn unary(u: UnaryOp, x: f64) -> f64 {
    match u {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Logistic => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Sign if x == 0.0 || x.is_nan() => x,
        UnaryOp::Sign => x.signum(),
    }
}

fn binary(b: BinaryOp, x: f64, y: f64, int: bool) -> f64 {
    let nan = x.is_nan() || y.is_nan();
    match b {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div if int => (x / y).trunc(),
        BinaryOp::Div => x / y,

        BinaryOp::Max if nan => f64::NAN,
        BinaryOp::Max => x.max(y),
        BinaryOp::Min if nan => f64::NAN,
        BinaryOp::Min => x.min(y),
        BinaryOp::Pow => x.powf(y),
    }
}

fn compare(d: CompareDir, x: f64, y: f64) -> bool {
    match d {
        CompareDir::Eq => x == y,
        CompareDir::Ne => x != y,
        CompareDir::Lt => x < y,
        CompareDir::Le => x <= y,
        CompareDir::Gt => x > y,
        CompareDir::Ge => x >= y,
    }
}

fn dot(l: &Tensor, r: &Tensor, d: &DotDims, shape: &[i64]) -> Tensor {
    let lfree: Vec<usize> =
        (0..l.shape.len()).filter(|i| !d.lhs_batch.contains(i) && !d.lhs_contract.contains(i)).collect();
    let rfree: Vec<usize> =
        (0..r.shape.len()).filter(|i| !d.rhs_batch.contains(i) && !d.rhs_contract.contains(i)).collect();
    let cshape: Vec<i64> = d.lhs_contract.iter().map(|&i| l.shape[i]).collect();
    tensor_of(shape, |idx| {
        let (nb, nl) = (d.lhs_batch.len(), lfree.len());
        let mut li = vec![0; l.shape.len()];
        let mut ri = vec![0; r.shape.len()];
        for k in 0..nb {
            li[d.lhs_batch[k]] = idx[k];
            ri[d.rhs_batch[k]] = idx[k];
        }
        for (k, &f) in lfree.iter().enumerate() {
            li[f] = idx[nb + k];
        }
        for (k, &f) in rfree.iter().enumerate() {
            ri[f] = idx[nb + nl + k];
        }
        let mut sum = 0.0;
        for c in 0..numel(&cshape) {
            let ci = unravel(c, &cshape);
            for k in 0..ci.len() {
                li[d.lhs_contract[k]] = ci[k];
                ri[d.rhs_contract[k]] = ci[k];
            }
            sum += l.data[ravel(&li, &l.shape)] * r.data[ravel(&ri, &r.shape)];
        }
        sum
    })
}

fn reduce(x: &Tensor, kind: ReduceKind, axes: &[usize], shape: &[i64]) -> Tensor {
    let init = match kind {
        ReduceKind::Sum => 0.0,
        ReduceKind::Max => f64::NEG_INFINITY,
        ReduceKind::Min => f64::INFINITY,
    };
    let mut out = vec![init; numel(shape)];
    for (i, &v) in x.data.iter().enumerate() {
        let idx = unravel(i, &x.shape);
        let kept: Vec<usize> = idx.iter().enumerate().filter(|(d, _)| !axes.contains(d)).map(|(_, &i)| i).collect();
        let o = &mut out[ravel(&kept, shape)];
        *o = match kind {
            ReduceKind::Sum => *o + v,
            ReduceKind::Max if v.is_nan() || o.is_nan() => f64::NAN,
            ReduceKind::Max => o.max(v),
            ReduceKind::Min if v.is_nan() || o.is_nan() => f64::NAN,
            ReduceKind::Min => o.min(v),
        };
    }
    Tensor { shape: shape.to_vec(), data: out }
}

/// Calls `f` with the flat positions of each line of `x` along `axis`.
fn for_each_line(shape: &[i64], axis: usize, mut f: impl FnMut(&[usize])) {
    let n = shape[axis] as usize;
    let stride = strides(shape)[axis];
    for start in 0..numel(shape) {
        if unravel(start, shape)[axis] == 0 {
            let line: Vec<usize> = (0..n).map(|j| start + j * stride).collect();
            f(&line);
        }
    }
}

fn softmax(x: &Tensor, axis: usize) -> Tensor {
    let mut out = x.clone();
    for_each_line(&x.shape, axis, |line| {
        let m = line.iter().map(|&i| x.data[i]).fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = line.iter().map(|&i| (x.data[i] - m).exp()).sum();
        for &i in line {
            out.data[i] = (x.data[i] - m).exp() / s;
        }
    });
    out
}

fn row_norm(x: &Tensor, eps: f64, center: bool, w: Option<&Tensor>, b: Option<&Tensor>) -> Tensor {
    let mut out = x.clone();
    for_each_line(&x.shape, x.shape.len() - 1, |line| {
        let n = line.len() as f64;
        let mean = if center { line.iter().map(|&i| x.data[i]).sum::<f64>() / n } else { 0.0 };
        let var = line.iter().map(|&i| (x.data[i] - mean).powi(2)).sum::<f64>() / n;
        for (j, &i) in line.iter().enumerate() {
            let y = (x.data[i] - mean) / (var + eps).sqrt();
            out.data[i] = y * w.map_or(1.0, |w| w.data[j]) + b.map_or(0.0, |b| b.data[j]);
        }
    });
    out
}

fn group_norm(x: &Tensor, groups: i64, eps: f64, affine: Option<(&Tensor, &Tensor)>) -> Tensor {
    let (n, c) = (x.shape[0] as usize, x.shape[1] as usize);
    let per_channel = numel(&x.shape[2..]);
    let cg = c / groups as usize;
    let mut out = x.clone();
    for s in 0..n {
        for g in 0..groups as usize {
            let idx: Vec<usize> = (g * cg..(g + 1) * cg)
                .flat_map(|ch| (0..per_channel).map(move |p| (s * c + ch) * per_channel + p))
                .collect();
            let m = idx.iter().map(|&i| x.data[i]).sum::<f64>() / idx.len() as f64;
            let var = idx.iter().map(|&i| (x.data[i] - m).powi(2)).sum::<f64>() / idx.len() as f64;
            for &i in &idx {
                let ch = (i / per_channel) % c;
                let y = (x.data[i] - m) / (var + eps).sqrt();
                out.data[i] = match affine {
                    Some((w, b)) => y * w.data[ch] + b.data[ch],
                    None => y,
                };
            }
        }
    }
    out
}

fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<(&Tensor, bool)>,
    scale: f64,
    window: Option<(i64, i64)>,
) -> Tensor {
    let (b, h, sq, d) = (q.shape[0] as usize, q.shape[1] as usize, q.shape[2] as usize, q.shape[3] as usize);
    let (sk, dv) = (k.shape[2] as usize, v.shape[3] as usize);
    let at = |t: &Tensor, i: [usize; 4]| {
        let idx: Vec<usize> = i.iter().zip(&t.shape).map(|(&i, &n)| if n == 1 { 0 } else { i }).collect();
        t.data[ravel(&idx, &t.shape)]
    };
    let mut out = vec![0.0; b * h * sq * dv];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..sq {
                let scores: Vec<f64> = (0..sk)
                    .map(|j| {
                        let mut s = scale * (0..d).map(|e| at(q, [bi, hi, i, e]) * at(k, [bi, hi, j, e])).sum::<f64>();
                        match mask {
                            Some((m, true)) if at(m, [bi, hi, i, j]) == 0.0 => s = f64::NEG_INFINITY,
                            Some((m, false)) => s += at(m, [bi, hi, i, j]),
                            _ => {}
                        }
                        if let Some((l, r)) = window {
                            let off = j as i64 - i as i64;
                            if (l >= 0 && off < -l) || (r >= 0 && off > r) {
                                s = f64::NEG_INFINITY;
                            }
                        }
                        s
                    })
                    .collect();
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let total: f64 = e.iter().sum();
                for c in 0..dv {
                    let o: f64 = (0..sk).map(|j| e[j] / total * at(v, [bi, hi, j, c])).sum();
                    out[((bi * h + hi) * sq + i) * dv + c] = o;
                }
            }
        }
    }
    Tensor { shape: vec![b as i64, h as i64, sq as i64, dv as i64], data: out }
}

/// erf to ~1e-13: the Taylor series for |x| <= 3 (where its terms stay below 1e3, so little
/// cancels), else 1 - erfc(x) by erfc's continued fraction, which converges fast there.
pub fn erf(x: f64) -> f64 {
    let sqrt_pi = std::f64::consts::PI.sqrt();
    if x.abs() > 3.0 {
        let a = x.abs();
        let mut k = a;
        for n in (1..=80).rev() {
            k = a + (n as f64 / 2.0) / k;
        }
        return x.signum() * (1.0 - (-a * a).exp() / sqrt_pi / k);
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-18 {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * 2.0 / sqrt_pi
}
