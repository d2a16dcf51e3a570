//! Bit-exact identity of ops and graphs. Ops carry f64 attributes, and derived `PartialEq` says
//! `0.0 == -0.0` and `NaN != NaN`; merging or comparing nodes needs the opposite answers, so floats
//! are compared and hashed by their bits here.

use std::hash::{Hash, Hasher};
use vidlower_ir::{Graph, LiteralData, Op};

/// Whether `a` and `b` are the same op with bit-identical attributes (regions included).
pub fn op_eq_bits(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::Constant(x), Op::Constant(y)) => x.ty == y.ty && data_eq_bits(&x.data, &y.data),
        (
            Op::Attention { kind: k1, scale: s1, has_mask: m1, window: w1, window_span: p1 },
            Op::Attention { kind: k2, scale: s2, has_mask: m2, window: w2, window_span: p2 },
        ) => k1 == k2 && s1.to_bits() == s2.to_bits() && m1 == m2 && w1 == w2 && p1 == p2,
        (
            Op::LayerNorm { eps: e1, has_weight: w1, has_bias: b1 },
            Op::LayerNorm { eps: e2, has_weight: w2, has_bias: b2 },
        ) => e1.to_bits() == e2.to_bits() && w1 == w2 && b1 == b2,
        (Op::RmsNorm { eps: e1, has_weight: w1 }, Op::RmsNorm { eps: e2, has_weight: w2 }) => {
            e1.to_bits() == e2.to_bits() && w1 == w2
        }
        (Op::GroupNorm { groups: g1, eps: e1, affine: a1 }, Op::GroupNorm { groups: g2, eps: e2, affine: a2 }) => {
            g1 == g2 && e1.to_bits() == e2.to_bits() && a1 == a2
        }
        (Op::While { cond: c1, body: b1 }, Op::While { cond: c2, body: b2 }) => {
            graph_eq_bits(c1, c2) && graph_eq_bits(b1, b2)
        }
        // Every other variant carries no float, so derived equality is already exact. A new op
        // with a float attribute belongs in the arms above.
        _ => a == b,
    }
}

fn data_eq_bits(a: &LiteralData, b: &LiteralData) -> bool {
    match (a, b) {
        (LiteralData::Splat(x), LiteralData::Splat(y)) => x.to_bits() == y.to_bits(),
        (LiteralData::Dense(xs), LiteralData::Dense(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| x.to_bits() == y.to_bits())
        }
        _ => false,
    }
}

/// Whether two graphs are identical, floats compared by bits.
pub fn graph_eq_bits(a: &Graph, b: &Graph) -> bool {
    a.name == b.name
        && a.inputs == b.inputs
        && a.outputs == b.outputs
        && a.nodes.len() == b.nodes.len()
        && a.nodes.iter().zip(&b.nodes).all(|(x, y)| {
            x.operands == y.operands && x.ty == y.ty && x.sharding == y.sharding && op_eq_bits(&x.op, &y.op)
        })
}

/// A 64-bit hash of the whole graph (regions in full, floats by bits): the pass manager compares
/// fingerprints to tell whether a pass changed anything, without keeping a copy of the graph.
pub fn fingerprint(g: &Graph) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_graph(g, &mut h);
    h.finish()
}

fn hash_graph(g: &Graph, h: &mut impl Hasher) {
    g.name.hash(h);
    g.nodes.len().hash(h);
    for n in &g.nodes {
        hash_op(&n.op, h);
        if let Op::While { cond, body } = &n.op {
            hash_graph(cond, h);
            hash_graph(body, h);
        }
        (&n.operands, &n.ty, &n.sharding).hash(h);
    }
    g.inputs.hash(h);
    for o in &g.outputs {
        (&o.name, o.value).hash(h);
    }
}

/// Hashes `op` consistently with [`op_eq_bits`]: equal ops hash equally.
pub fn hash_op(op: &Op, h: &mut impl Hasher) {
    std::mem::discriminant(op).hash(h);
    match op {
        Op::Input { name } | Op::Weight { name } => name.hash(h),
        Op::Constant(lit) => {
            lit.ty.hash(h);
            match &lit.data {
                LiteralData::Splat(v) => {
                    0u8.hash(h);
                    v.to_bits().hash(h);
                }
                LiteralData::Dense(vs) => {
                    1u8.hash(h);
                    vs.iter().for_each(|v| v.to_bits().hash(h));
                }
            }
        }
        Op::Iota { ty, dim } => (ty, dim).hash(h),
        Op::Unary(u) => u.hash(h),
        Op::Binary(b) => b.hash(h),
        Op::Compare(d) => d.hash(h),
        Op::Select | Op::DynamicUpdateSlice | Op::Reshard => {}
        Op::Convert { to } => to.hash(h),
        Op::BroadcastInDim { shape, dims } => (shape, dims).hash(h),
        Op::Reshape { shape } => shape.hash(h),
        Op::Transpose { perm } => perm.hash(h),
        Op::Slice { start, limit, strides } => (start, limit, strides).hash(h),
        Op::DynamicSlice { sizes } => sizes.hash(h),
        Op::Concatenate { dim } => dim.hash(h),
        Op::Take { axis } => axis.hash(h),
        Op::Pad { low, high, interior } => (low, high, interior).hash(h),
        Op::DotGeneral(d) => d.hash(h),
        Op::Convolution(c) => c.hash(h),
        Op::Reduce { kind, axes } => (kind, axes).hash(h),
        // Regions are compared in full by `op_eq_bits`; their sizes are a cheap, sufficient hash.
        Op::While { cond, body } => (cond.nodes.len(), body.nodes.len()).hash(h),
        Op::CustomCall { target, backend_config, has_side_effect, typed_ffi, result } => {
            (target, backend_config, has_side_effect, typed_ffi, result).hash(h)
        }
        Op::GetTuple { index } => index.hash(h),
        Op::Softmax { axis } => axis.hash(h),
        Op::Attention { kind, scale, has_mask, window, window_span } => (kind, scale.to_bits(), has_mask, window, window_span).hash(h),
        Op::LayerNorm { eps, has_weight, has_bias } => (eps.to_bits(), has_weight, has_bias).hash(h),
        Op::RmsNorm { eps, has_weight } => (eps.to_bits(), has_weight).hash(h),
        Op::GroupNorm { groups, eps, affine } => (groups, eps.to_bits(), affine).hash(h),
        Op::Gelu { approximate } => approximate.hash(h),
    }
}
