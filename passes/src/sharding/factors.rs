//! The per-op dimension mapping that sharding propagation runs on (the idea of Shardy's sharding
//! rules): each op's operand and result dims are labelled with *factors*, the loop dimensions of
//! the computation. Dims with one factor must be split the same way for the op to run locally on
//! each device; a dim with no factor must be whole (sliced, padded, concatenated, reshaped into a
//! minor position, a head dim inside attention). A factor that appears in operands only is a
//! reduction (dot contraction, reduced axis, the gathered table axis): splitting it leaves partial
//! results that the partitioner combines with an all-reduce, so it never forces a reshard.

use vidlower_ir::{Op, TensorType, Type};

/// The factor of each dim (`None` = must be whole) of one tensor an op reads or writes.
pub type DimFactors = Vec<Option<usize>>;

/// One op's factors: per result (tuple element), per operand, the factor of each dim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpFactors {
    pub results: Vec<DimFactors>,
    /// Per operand: which tuple element it reads (0 for tensors; `get` reads element `index`) and
    /// the factors of that element's dims.
    pub operands: Vec<(usize, DimFactors)>,
}

/// Hands out fresh factor numbers.
#[derive(Default)]
struct Factors(usize);

impl Factors {
    fn fresh(&mut self) -> usize {
        self.0 += 1;
        self.0 - 1
    }

    fn fresh_n(&mut self, n: usize) -> DimFactors {
        (0..n).map(|_| Some(self.fresh())).collect()
    }
}

/// The factors of `op` given its operand and result types (the result's tuple elements, or the
/// one tensor). Every op has a mapping; ops the partitioner cannot split (custom calls) map every
/// dim to `None`, so their operands and results are replicated.
pub fn op_factors(op: &Op, operands: &[&Type], result: &Type) -> OpFactors {
    let tensors = |t: &Type| -> Vec<TensorType> {
        match t {
            Type::Tensor(t) => vec![t.clone()],
            Type::Tuple(ts) => ts.clone(),
        }
    };
    let results = tensors(result);
    let ins: Vec<TensorType> = operands.iter().map(|t| tensors(t).into_iter().next().unwrap_or_else(scalar)).collect();
    let shape = |i: usize| ins[i].shape.as_slice();
    let mut f = Factors::default();
    let rank = results.first().map_or(0, |t| t.rank());
    let out = results.first().map(|t| t.shape.clone()).unwrap_or_default();
    let whole = |n: usize| vec![None; n];
    let simple = |results: Vec<DimFactors>, operands: Vec<DimFactors>| OpFactors {
        results,
        operands: operands.into_iter().map(|d| (0, d)).collect(),
    };

    match op {
        // Elementwise: every dim one factor shared by result and operands (scalars have none).
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Convert { .. }
        | Op::Softmax { .. }
        | Op::Gelu { .. }
        | Op::LayerNorm { .. }
        | Op::RmsNorm { .. } => {
            let r = f.fresh_n(rank);
            // Norm weights and biases are [last dim]: they take the last factor.
            let per_operand = |t: &TensorType| if t.rank() == rank { r.clone() } else { r[rank - t.rank()..].to_vec() };
            simple(vec![r.clone()], ins.iter().map(per_operand).collect())
        }
        Op::GroupNorm { .. } => {
            // The batch splits freely; channels and positions are normalised together.
            let mut r = whole(rank);
            r[0] = Some(f.fresh());
            let operands = ins.iter().map(|t| if t.rank() == rank { r.clone() } else { whole(t.rank()) }).collect();
            simple(vec![r], operands)
        }
        Op::BroadcastInDim { dims, .. } => {
            let r = f.fresh_n(rank);
            let o = dims.iter().enumerate().map(|(i, &d)| if shape(0)[i] == out[d] { r[d] } else { None }).collect();
            simple(vec![r], vec![o])
        }
        Op::Transpose { perm } => {
            let r = f.fresh_n(rank);
            let mut o = whole(rank);
            for (j, &p) in perm.iter().enumerate() {
                o[p] = r[j];
            }
            simple(vec![r], vec![o])
        }
        Op::Reshape { .. } => {
            let (mut r, mut o) = (whole(rank), whole(shape(0).len()));
            for (i, j) in reshape_major_pairs(shape(0), &out) {
                let x = Some(f.fresh());
                (o[i], r[j]) = (x, x);
            }
            simple(vec![r], vec![o])
        }
        Op::Slice { start, limit, strides } => {
            let keep = |i: usize| start[i] == 0 && limit[i] == shape(0)[i] && strides[i] == 1;
            let r: DimFactors = (0..rank).map(|i| if keep(i) { Some(f.fresh()) } else { None }).collect();
            simple(vec![r.clone()], vec![r])
        }
        Op::DynamicSlice { sizes } => {
            let r: DimFactors =
                (0..rank).map(|i| if sizes[i] == shape(0)[i] { Some(f.fresh()) } else { None }).collect();
            let mut operands = vec![r.clone()];
            operands.extend((1..ins.len()).map(|_| Vec::new()));
            simple(vec![r], operands)
        }
        Op::DynamicUpdateSlice => {
            let r: DimFactors = (0..rank).map(|i| if shape(1)[i] == out[i] { Some(f.fresh()) } else { None }).collect();
            let mut operands = vec![r.clone(), r.clone()];
            operands.extend((2..ins.len()).map(|_| Vec::new()));
            simple(vec![r], operands)
        }
        Op::Pad { low, high, interior } => {
            let keep = |i: usize| low[i] == 0 && high[i] == 0 && interior[i] == 0;
            let r: DimFactors = (0..rank).map(|i| if keep(i) { Some(f.fresh()) } else { None }).collect();
            simple(vec![r.clone()], vec![r, Vec::new()])
        }
        Op::Concatenate { dim } => {
            let mut r = f.fresh_n(rank);
            r[*dim] = None;
            simple(vec![r.clone()], vec![r; ins.len()])
        }
        Op::Take { axis } => {
            // result = table[..axis] ++ indices ++ table[axis+1..]; the table axis is gathered.
            let r = f.fresh_n(rank);
            let idx_rank = ins[1].rank();
            let mut table = r[..*axis].to_vec();
            table.push(Some(f.fresh()));
            table.extend_from_slice(&r[axis + idx_rank..]);
            simple(vec![r.clone()], vec![table, r[*axis..axis + idx_rank].to_vec()])
        }
        Op::DotGeneral(d) => {
            let (mut l, mut rr) = (whole(shape(0).len()), whole(shape(1).len()));
            let mut res = Vec::with_capacity(rank);
            for (&a, &b) in d.lhs_batch.iter().zip(&d.rhs_batch) {
                let x = Some(f.fresh());
                (l[a], rr[b]) = (x, x);
                res.push(x);
            }
            for (&a, &b) in d.lhs_contract.iter().zip(&d.rhs_contract) {
                let x = Some(f.fresh());
                (l[a], rr[b]) = (x, x);
            }
            for side in [&mut l, &mut rr] {
                for x in side.iter_mut().filter(|x| x.is_none()) {
                    *x = Some(f.fresh());
                    res.push(*x);
                }
            }
            simple(vec![res], vec![l, rr])
        }
        Op::Convolution(c) => {
            // input [N, C, spatial], kernel [O, I, k...], output [N, O, spatial']
            let (mut x, mut k, mut r) = (whole(shape(0).len()), whole(shape(1).len()), whole(rank));
            let (n, o) = (Some(f.fresh()), Some(f.fresh()));
            (x[0], r[0], k[0], r[1]) = (n, n, o, o);
            if c.feature_group_count == 1 {
                let ci = Some(f.fresh());
                (x[1], k[1]) = (ci, ci);
            }
            simple(vec![r], vec![x, k])
        }
        Op::Reduce { axes, .. } => {
            let o = f.fresh_n(shape(0).len());
            let r = (0..shape(0).len()).filter(|i| !axes.contains(i)).map(|i| o[i]).collect();
            simple(vec![r], vec![o])
        }
        Op::Attention { .. } => attention_factors(&mut f, &ins, &out),
        Op::While { .. } => {
            // The loop state: result element i is operand i (the regions are tied by the pass).
            let rs: Vec<DimFactors> = results.iter().map(|t| f.fresh_n(t.rank())).collect();
            simple(rs.clone(), rs)
        }
        Op::GetTuple { index } => {
            let r = f.fresh_n(rank);
            OpFactors { results: vec![r.clone()], operands: vec![(*index, r)] }
        }
        // A reshard's operand and result are unrelated: it is where layouts may change.
        Op::Reshard => simple(vec![f.fresh_n(rank)], vec![f.fresh_n(rank)]),
        // Sources carry their own factors; nothing to tie.
        Op::Input { .. } | Op::Weight { .. } | Op::Constant(_) | Op::Iota { .. } => {
            simple(vec![f.fresh_n(rank)], vec![])
        }
        Op::CustomCall { .. } => {
            simple(results.iter().map(|t| whole(t.rank())).collect(), ins.iter().map(|t| whole(t.rank())).collect())
        }
    }
}

/// Attention on [B, H, S, D]: batch and heads split q, k, v, the mask and the output alike;
/// query rows split q, the mask and the output (sequence parallel); keys and head dims stay whole
/// (each device needs every key of its heads/queries).
fn attention_factors(f: &mut Factors, ins: &[TensorType], out: &[i64]) -> OpFactors {
    let (b, h, sq) = (Some(f.fresh()), Some(f.fresh()), Some(f.fresh()));
    let q = vec![b, h, sq, None];
    let kv = vec![b, h, None, None];
    let mut operands = vec![(0, q.clone()), (0, kv.clone()), (0, kv)];
    if let Some(mask) = ins.get(3) {
        // A mask dim of size 1 broadcasts: it has no factor.
        let m = [b, h, sq].into_iter().enumerate().map(|(i, x)| if mask.shape[i] == out[i] { x } else { None });
        operands.push((0, m.chain([None]).collect()));
    }
    OpFactors { results: vec![q], operands }
}

fn scalar() -> TensorType {
    TensorType::new(vidlower_ir::DType::F32, Vec::<i64>::new())
}

/// For a reshape from `from` to `to`, the pairs (from dim, to dim) that head the same contiguous
/// block of elements: splitting both into n equal parts (when n divides both) cuts the data the
/// same way. Size-1 dims are skipped (they cannot be split); minor dims of a block get no pair.
pub fn reshape_major_pairs(from: &[i64], to: &[i64]) -> Vec<(usize, usize)> {
    if from.contains(&0) || to.contains(&0) {
        return Vec::new();
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    loop {
        while i < from.len() && from[i] == 1 {
            i += 1;
        }
        while j < to.len() && to[j] == 1 {
            j += 1;
        }
        if i >= from.len() || j >= to.len() {
            return pairs;
        }
        pairs.push((i, j));
        let (mut a, mut b) = (from[i], to[j]);
        (i, j) = (i + 1, j + 1);
        while a != b {
            if a < b && i < from.len() {
                a *= from[i];
                i += 1;
            } else if b < a && j < to.len() {
                b *= to[j];
                j += 1;
            } else {
                return pairs;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::parse;
    use vidlower_ir::{DType, DotDims};

    fn t(shape: &[i64]) -> Type {
        Type::Tensor(TensorType::new(DType::F32, shape.to_vec()))
    }

    /// The factors as letters per tensor, e.g. `r:ab q:ab`, so tests read like einsum.
    fn show(op: &Op, operands: &[&[i64]], result: &[i64]) -> String {
        let ts: Vec<Type> = operands.iter().map(|s| t(s)).collect();
        let refs: Vec<&Type> = ts.iter().collect();
        let m = op_factors(op, &refs, &t(result));
        let letters =
            |d: &DimFactors| d.iter().map(|x| x.map_or('_', |i| (b'a' + i as u8) as char)).collect::<String>();
        let mut parts = vec![format!("r:{}", letters(&m.results[0]))];
        parts.extend(m.operands.iter().map(|(_, d)| letters(d)));
        parts.join(" ")
    }

    #[test]
    fn reshape_pairs_match_major_dims_of_each_block() {
        assert_eq!(reshape_major_pairs(&[2, 16, 24], &[2, 16, 2, 12]), [(0, 0), (1, 1), (2, 2)]);
        assert_eq!(reshape_major_pairs(&[2, 16, 2, 12], &[2, 16, 24]), [(0, 0), (1, 1), (2, 2)]);
        assert_eq!(reshape_major_pairs(&[2, 24, 3, 2, 3], &[2, 24, 18]), [(0, 0), (1, 1), (2, 2)]);
        assert_eq!(reshape_major_pairs(&[6, 4], &[4, 6]), [(0, 0)], "no common block boundary inside");
        assert_eq!(reshape_major_pairs(&[1, 8, 1], &[8]), [(1, 0)]);
        assert_eq!(reshape_major_pairs(&[4, 6], &[2, 12]), [(0, 0)]);
        assert_eq!(reshape_major_pairs(&[0, 6], &[6, 0]), []);
    }

    #[test]
    fn primitive_ops_map_dims_like_einsum() {
        let linear = Op::DotGeneral(DotDims { lhs_contract: vec![2], rhs_contract: vec![1], ..Default::default() });
        // [B,S,in] x [out,in] -> [B,S,out]: in is contracted (a), out comes from the weight (d).
        assert_eq!(show(&linear, &[&[2, 4, 8], &[6, 8]], &[2, 4, 6]), "r:bcd bca da");
        let bmm = Op::DotGeneral(DotDims {
            lhs_batch: vec![0],
            rhs_batch: vec![0],
            lhs_contract: vec![2],
            rhs_contract: vec![1],
        });
        assert_eq!(show(&bmm, &[&[2, 4, 8], &[2, 8, 5]], &[2, 4, 5]), "r:acd acb abd");
        assert_eq!(show(&Op::Transpose { perm: vec![0, 2, 1] }, &[&[2, 3, 4]], &[2, 4, 3]), "r:abc acb");
        assert_eq!(show(&Op::Reshape { shape: vec![2, 4, 2, 3] }, &[&[2, 4, 6]], &[2, 4, 2, 3]), "r:abc_ abc");
        let bcast = Op::BroadcastInDim { shape: vec![2, 4, 6], dims: vec![0, 2] };
        assert_eq!(show(&bcast, &[&[1, 6]], &[2, 4, 6]), "r:abc _c");
        let slice = Op::Slice { start: vec![0, 1], limit: vec![4, 6], strides: vec![1, 1] };
        assert_eq!(show(&slice, &[&[4, 6]], &[4, 5]), "r:a_ a_");
        assert_eq!(show(&Op::Concatenate { dim: 1 }, &[&[4, 2], &[4, 3]], &[4, 5]), "r:a_ a_ a_");
        let pad = Op::Pad { low: vec![0, 1], high: vec![0, 0], interior: vec![0, 0] };
        assert_eq!(show(&pad, &[&[4, 6], &[]], &[4, 7]), "r:a_ a_ ");
        let reduce = Op::Reduce { kind: vidlower_ir::ReduceKind::Sum, axes: vec![1] };
        assert_eq!(show(&reduce, &[&[4, 6, 2]], &[4, 2]), "r:ac abc");
        assert_eq!(show(&Op::Take { axis: 0 }, &[&[10, 8], &[2, 3]], &[2, 3, 8]), "r:abc dc ab", "table rows gathered");
        assert_eq!(show(&Op::Select, &[&[], &[4, 2], &[4, 2]], &[4, 2]), "r:ab  ab ab");
        let rms = Op::RmsNorm { eps: 1e-6, has_weight: true };
        assert_eq!(show(&rms, &[&[2, 4, 8], &[8]], &[2, 4, 8]), "r:abc abc c");
    }

    #[test]
    fn convolution_attention_and_custom_calls() {
        let conv = Op::Convolution(vidlower_ir::ConvAttrs::simple(2, 1));
        assert_eq!(show(&conv, &[&[2, 3, 8, 8], &[4, 3, 3, 3]], &[2, 4, 8, 8]), "r:ab__ ac__ bc__");
        let attn = Op::Attention { kind: vidlower_ir::AttentionKind::Cross, scale: 1.0, has_mask: true, window: None, window_span: None };
        let q: &[i64] = &[2, 4, 16, 8];
        let (k, mask): (&[i64], &[i64]) = (&[2, 4, 32, 8], &[2, 1, 16, 32]);
        assert_eq!(show(&attn, &[q, k, k, mask], q), "r:abc_ abc_ ab__ ab__ a_c_");
        let call = Op::CustomCall {
            target: "x".into(),
            backend_config: String::new(),
            has_side_effect: false,
            typed_ffi: false,
            result: vec![TensorType::new(DType::F32, vec![4])],
        };
        assert_eq!(show(&call, &[&[4]], &[4]), "r:_ _");
    }

    #[test]
    fn while_and_get_tie_tuple_elements() {
        let g = parse(crate::sharding::tests::LOOP).unwrap();
        let n = &g.nodes[3];
        let ops: Vec<&Type> = n.operands.iter().map(|&o| g.ty(o)).collect();
        let m = op_factors(&n.op, &ops, &n.ty);
        let operands: Vec<DimFactors> = m.operands.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(m.results, operands, "state element i is operand i");
        let get = op_factors(&g.nodes[4].op, &[&n.ty], &g.nodes[4].ty);
        assert_eq!(get.operands[0].0, 1, "`get` reads tuple element 1");
    }
}
