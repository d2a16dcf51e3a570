//! Random graphs aimed at the cleanup passes, which `vidlower_ir::random_graph` (f32 only, splat
//! constants, rotation-only transposes) does not reach: dense and splat constants of f64, i32
//! and i1 through every unary/binary/compare/select/convert, transpose chains with arbitrary
//! permutations, reshape and broadcast chains, identity patterns on either side, and duplicates.
//! Floats are f64 so constant folding (which rounds to the dtype) and the test interpreter
//! (which does not) agree exactly.
//!
//! The sign of a zero is kept out of sight: `canonicalize` turns `x + 0` into `x`, which differs
//! from IEEE only for `x = -0` (XLA's simplifier does the same), and that difference shows only
//! through ops that turn a zero's sign into an infinity's. So floats are never divided by a
//! value that may be zero, never raised to a power, and never rsqrt'ed.

use super::Rng;
use vidlower_ir::{BinaryOp, Builder, CompareDir, DType, Graph, Op, TensorType, UnaryOp, ValueId};

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// A random constant of type `t`: a splat or dense, small integers for i32, 0/1 for i1.
fn constant(b: &mut Builder, rng: &mut Rng, t: &TensorType) -> ValueId {
    let value = |rng: &mut Rng| match t.dtype {
        DType::I1 => rng.below(2) as f64,
        DType::I32 => rng.below(9) as f64 - 4.0,
        _ => {
            let any = (rng.unit() * 8.0 * 64.0).round() / 64.0;
            rng.pick(&[0.0, 1.0, -1.0, 0.5, 2.0, -3.25, any])
        }
    };
    if rng.below(2) == 0 {
        let v = value(rng);
        b.full(v, t.clone()).unwrap()
    } else {
        let vs = (0..t.num_elements()).map(|_| value(rng)).collect();
        b.constant(vs, t.clone()).unwrap()
    }
}

/// A verified graph of 8-40 ops over f64/i32/i1 values, determined by `seed`.
pub fn cleanup_graph(seed: u64) -> Graph {
    let mut rng = Rng(seed);
    let mut b = Builder::new(format!("cleanup_{seed}"));
    let shape = [[2, 3], [3, 2], [1, 3], [6, 1]][rng.below(4)].to_vec();
    let mut pool = vec![b.input("x", TensorType::new(DType::F64, shape.clone())).unwrap()];
    if rng.below(2) == 0 {
        pool.push(b.input("n", TensorType::new(DType::I32, shape.clone())).unwrap());
    }
    // Constants of each dtype from the start, so folding finds constant pairs often.
    for dtype in [DType::F64, DType::F64, DType::I32, DType::I32, DType::I1] {
        let c = constant(&mut b, &mut rng, &TensorType::new(dtype, shape.clone()));
        pool.push(c);
    }
    let steps = 8 + rng.below(33);
    for _ in 0..steps {
        if let Some(v) = step(&mut b, &mut rng, &pool) {
            pool.push(v);
        }
    }
    let last = *pool.last().unwrap();
    b.output("out0", last);
    // About a third of the values are outputs too, so most rewrites are observable and some
    // values are still dead for dce.
    for (k, &v) in pool.iter().enumerate() {
        if rng.below(3) == 0 {
            b.output(&format!("out{}", k + 1), v);
        }
    }
    b.finish().unwrap()
}

/// A float constant of type `t` with no zero in it, to divide by.
fn nonzero_constant(b: &mut Builder, rng: &mut Rng, t: &TensorType) -> ValueId {
    let vs = (0..t.num_elements()).map(|_| rng.pick(&[1.0, -1.0, 0.5, 2.0, -3.25, 0.375])).collect();
    b.constant(vs, t.clone()).unwrap()
}

/// A value of `t` to pair with another: from the pool when one fits, else a new constant.
fn partner(b: &mut Builder, rng: &mut Rng, pool: &[ValueId], t: &TensorType) -> ValueId {
    let same: Vec<ValueId> = pool.iter().copied().filter(|&v| b.ty(v) == t).collect();
    if same.is_empty() || rng.below(3) == 0 {
        constant(b, rng, t)
    } else {
        rng.pick(&same)
    }
}

/// One random op on values of `pool`; `None` when the choice does not fit.
fn step(b: &mut Builder, rng: &mut Rng, pool: &[ValueId]) -> Option<ValueId> {
    let x = rng.pick(pool);
    let t = b.ty(x).clone();
    match rng.below(13) {
        0 => Some(constant(b, rng, &t)),
        1 if t.dtype.is_float() => {
            let ops: Vec<UnaryOp> = UnaryOp::ALL.into_iter().filter(|&u| u != UnaryOp::Rsqrt).collect();
            b.unary(rng.pick(&ops), x).ok()
        }
        1 if t.dtype == DType::I32 => b.unary(rng.pick(&[UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Sign]), x).ok(),
        2 | 3 if t.dtype != DType::I1 => {
            if t.dtype.is_float() && rng.below(5) == 0 {
                let d = nonzero_constant(b, rng, &t);
                return b.binary(BinaryOp::Div, x, d).ok();
            }
            let ops: &[BinaryOp] = if t.dtype.is_float() {
                &[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min]
            } else {
                &[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min]
            };
            let y = partner(b, rng, pool, &t);
            let op = rng.pick(ops);
            if rng.below(2) == 0 { b.binary(op, x, y) } else { b.binary(op, y, x) }.ok()
        }
        4 => {
            let y = partner(b, rng, pool, &t);
            b.compare(rng.pick(&CompareDir::ALL), x, y).ok()
        }
        5 => {
            let pred = if rng.below(2) == 0 {
                let y = partner(b, rng, pool, &t);
                b.compare(CompareDir::Lt, x, y).ok()?
            } else {
                constant(b, rng, &t.with_dtype(DType::I1))
            };
            let y = partner(b, rng, pool, &t);
            b.select(pred, x, y).ok()
        }
        6 => b.convert(x, rng.pick(&[DType::F64, DType::I32, DType::I1])).ok(),
        7 if t.rank() >= 2 => {
            let mut perm: Vec<usize> = (0..t.rank()).collect();
            for i in (1..perm.len()).rev() {
                perm.swap(i, rng.below(i + 1));
            }
            b.op(Op::Transpose { perm }, &[x]).ok()
        }
        8 => {
            let n = t.num_elements();
            let targets = [vec![n], vec![1, n], vec![n, 1], vec![2, n / 2], vec![3, n / 3]];
            let target = targets[rng.below(targets.len())].clone();
            (target.iter().product::<i64>() == n).then(|| b.op(Op::Reshape { shape: target }, &[x]).ok())?
        }
        9 if t.rank() < 4 => {
            // A new dim at a random place, and size-1 dims expanded.
            let at = rng.below(t.rank() + 1);
            let mut out: Vec<i64> = t.shape.iter().map(|&d| if d == 1 { 1 + rng.below(3) as i64 } else { d }).collect();
            out.insert(at, 1 + rng.below(2) as i64);
            let dims: Vec<usize> = (0..=t.rank()).filter(|&d| d != at).collect();
            b.broadcast_in_dim(x, &out, &dims).ok()
        }
        10 if t.dtype != DType::I1 => {
            // An identity pattern, the constant on either side, sometimes a scalar broadcast.
            let (op, c) = rng.pick(&[
                (BinaryOp::Mul, 1.0),
                (BinaryOp::Add, 0.0),
                (BinaryOp::Sub, 0.0),
                (BinaryOp::Div, 1.0),
                (BinaryOp::Mul, 0.0),
            ]);
            let k = if rng.below(2) == 0 { b.scalar(c, t.dtype).ok()? } else { b.full(c, t.clone()).ok()? };
            // `1 / x` would divide by a value that may be zero; see the module note.
            let swap = op != BinaryOp::Div && rng.below(2) == 0;
            if swap { b.binary(op, k, x) } else { b.binary(op, x, k) }.ok()
        }
        11 => {
            let node = b.graph().node(x).clone();
            if node.op.is_graph_input() {
                None
            } else {
                b.op(node.op, &node.operands).ok()
            }
        }
        // The same op with its operands swapped: CSE may merge it only for commutative ops.
        12 => {
            let node = b.graph().node(x).clone();
            match node.op {
                Op::Binary(_) | Op::Compare(_) => b.op(node.op, &[node.operands[1], node.operands[0]]).ok(),
                _ => None,
            }
        }
        _ => None,
    }
}
