//! Seeded random graphs for property tests: round trips of the text form, and passes that must
//! preserve meaning. They mix elementwise, broadcast, reshape, transpose, reduce, dot and
//! composite ops, with dead nodes, duplicates and `x * 1` / `x + 0` patterns for the cleanup passes
//! to find. Values stay bounded (no exp/log chains), so outputs compare with a tolerance.

use crate::builder::Builder;
use crate::graph::{Graph, ValueId};
use crate::op::*;
use crate::types::TensorType;
use crate::DType;

/// A small deterministic generator (SplitMix64), so a failing seed reproduces everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// A verified f32 graph with 1-3 inputs, 4-24 ops and 1-2 outputs, determined by `seed`.
pub fn random_graph(seed: u64) -> Graph {
    let mut rng = Rng(seed);
    let mut b = Builder::new(format!("random_{seed}"));
    let mut values: Vec<ValueId> = Vec::new();
    for i in 0..1 + rng.below(3) {
        let rank = 1 + rng.below(3);
        let shape: Vec<i64> = (0..rank).map(|_| 1 + rng.below(4) as i64).collect();
        values.push(b.input(&format!("x{i}"), TensorType::new(DType::F32, shape)).expect("input"));
    }
    let ops = 4 + rng.below(21);
    let mut attempts = 0;
    while values.len() < ops + 3 && attempts < ops * 20 {
        attempts += 1;
        let x = rng.pick(&values);
        if let Some(v) = random_op(&mut b, &mut rng, x, &values) {
            values.push(v);
        }
    }
    let last = *values.last().unwrap();
    b.output("out0", last);
    if rng.below(2) == 0 {
        let other = rng.pick(&values);
        if other != last {
            b.output("out1", other);
        }
    }
    b.finish().expect("random graphs verify")
}

/// One random op on `x` (and maybe another value); `None` when the choice does not fit the shapes.
fn random_op(b: &mut Builder, rng: &mut Rng, x: ValueId, values: &[ValueId]) -> Option<ValueId> {
    let shape = b.shape(x);
    let rank = shape.len();
    match rng.below(16) {
        0 => b.unary(rng.pick(&[UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Tanh, UnaryOp::Logistic, UnaryOp::Sin, UnaryOp::Cos]), x).ok(),
        1 | 2 => {
            let y = rng.pick(values);
            b.binary(rng.pick(&[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min]), x, y).ok()
        }
        // Identities for canonicalize: x * 1, x + 0, x - 0, x / 1.
        3 => {
            let (op, c) = rng.pick(&[(BinaryOp::Mul, 1.0), (BinaryOp::Add, 0.0), (BinaryOp::Sub, 0.0), (BinaryOp::Div, 1.0)]);
            b.binary_scalar(op, x, c).ok()
        }
        // A constant operand, for folding; sometimes two constants combined.
        4 => {
            let c = b.full((rng.below(5) as f64 - 2.0) * 0.5, b.ty(x).clone()).ok()?;
            if rng.below(2) == 0 {
                let d = b.full(0.25, b.ty(x).clone()).ok()?;
                let cd = b.add(c, d).ok()?;
                b.mul(x, cd).ok()
            } else {
                b.add(x, c).ok()
            }
        }
        // A duplicate of an existing node, for CSE.
        5 => {
            let node = b.graph().node(x).clone();
            if node.op.is_graph_input() {
                return None;
            }
            b.op(node.op, &node.operands).ok()
        }
        6 => {
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.rotate_left(rng.below(rank.max(1)));
            let t = b.transpose(x, &perm).ok()?;
            // Sometimes a transpose chain back, for canonicalize.
            if rng.below(2) == 0 {
                let mut inv = vec![0; rank];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                b.transpose(t, &inv).ok()
            } else {
                Some(t)
            }
        }
        7 => {
            let n: i64 = shape.iter().product();
            let r = b.reshape(x, &[n]).ok()?;
            if rng.below(2) == 0 {
                b.reshape(r, &shape).ok()
            } else {
                Some(r)
            }
        }
        8 if rank < 4 => {
            let mut out = vec![1 + rng.below(3) as i64];
            out.extend(&shape);
            let dims: Vec<usize> = (1..=rank).collect();
            b.broadcast_in_dim(x, &out, &dims).ok()
        }
        9 if rank > 1 => {
            let axis = rng.below(rank);
            b.reduce(x, rng.pick(&ReduceKind::ALL), &[axis]).ok()
        }
        10 if rank >= 1 => {
            // x [.., K] @ w [K, N] against a random constant-free partner: reuse x's own last dim.
            let k = shape[rank - 1];
            let partner = values.iter().copied().find(|&v| b.shape(v).len() == 2 && b.shape(v)[0] == k)?;
            b.matmul(x, partner).ok()
        }
        11 if rank >= 1 => b.softmax(x, rng.below(rank)).ok(),
        12 if rank >= 1 => {
            let last = shape[rank - 1];
            let w = b.full(1.5, TensorType::new(DType::F32, vec![last])).ok()?;
            if rng.below(2) == 0 {
                b.layer_norm(x, 1e-5, Some(w), None).ok()
            } else {
                b.rms_norm(x, 1e-6, Some(w)).ok()
            }
        }
        13 => b.gelu(x, rng.pick(&[GeluApprox::Tanh, GeluApprox::Erf])).ok(),
        14 if rank >= 1 => {
            let axis = rng.below(rank);
            let y = rng.pick(values);
            b.concat(&[x, y], axis).ok()
        }
        15 if rank >= 1 && shape[0] > 1 => b.slice_axis(x, 0, 1, shape[0] - 1).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(random_graph(7), random_graph(7));
        let sizes: std::collections::HashSet<usize> = (0..20).map(|s| random_graph(s).nodes.len()).collect();
        assert!(sizes.len() > 5, "seeds should give graphs of varied size: {sizes:?}");
    }
}
