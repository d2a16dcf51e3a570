//! Blockwise attention: each `attention` composite lowered to an online-softmax loop over blocks
//! of keys, so the [Sq, Sk] score matrix never exists; the largest temporary is one
//! [B, H, Sq, bkv] block of scores.
//!
//! Keys (and values, and a mask with a full key dim) are padded with `pad` up to a multiple of
//! the block size. The loop is a `while` whose state is
//! `(i, m, l, acc, q, k, v[, mask][, q0][, end])`: the block counter, the running row max m [B, H, Sq] and
//! row sum l [B, H, Sq], the accumulator acc [B, H, Sq, Dv] (all three in f32 for bf16/f16
//! inputs, else in the input's dtype), the operands (regions only see the loop state), the query
//! block's first row and, with a window, the block to stop at.
//! Iteration i takes keys `i*bkv .. (i+1)*bkv` with `dynamic_slice` and computes
//!
//! ```text
//! s   = scale * q k_blk^T            (masked: -inf where not allowed)
//! m'  = max(m, rowmax s)
//! p   = exp(s - m')
//! l'  = l * exp(m - m') + rowsum p
//! acc = acc * exp(m - m') + p v_blk
//! ```
//!
//! and the result is `acc / l` in the input's dtype. Padded keys are masked out (key position
//! `>= Sk`, from an iota plus the block offset), unlike the seeds' kernel. The op's mask is sliced
//! block by block (a mask whose key dim is 1 is used whole), and a window (left, right) is the same
//! predicate as in `decompose` (`i - left <= j <= i + right`) built per block, and the key loop
//! visits only the blocks the window reaches from the current query rows (its start and end in
//! the loop state; constants when queries are not blocked). While a row has seen only
//! masked keys its max is -inf; the exponentials then use 0 in its place so they give 0, not NaN.
//! A row with no allowed key at all gives 0/0 = NaN, as the dense softmax does.
//!
//! Queries are blocked too when Sq > bq: an outer `while` takes `bq` query rows at a time (q,
//! and a mask with a full query dim, padded to a multiple of bq), runs the key loop for them with
//! the block's first row position in its state (for the window), and writes the rows into the
//! output with `dynamic_update_slice`; padded query rows are sliced off at the end. Peak memory
//! is then O(B H min(Sq, bq) bkv) for the scores. Run the pass before `decompose`; other
//! composites are left alone.

use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use vidlower_ir::{
    BinaryOp, CompareDir, DType, DotDims, Graph, Literal, Op, ReduceKind, TensorType, Type, UnaryOp, ValueId,
};

/// The `blockwise_attention` pass. `bq` and `bkv` are the query and key block sizes, used as caps:
/// a sequence is cut into as few blocks as the cap allows, all of one size (see
/// [`balanced_blocks`]); a sequence shorter than its cap is one block, and one query block means no
/// outer loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockwiseAttention {
    /// Query block cap (rows per outer-loop iteration).
    pub bq: i64,
    /// Key block cap (keys per key-loop iteration).
    pub bkv: i64,
    /// Key slice cap inside a key block: the largest score temporary is [B, H, bq, bkv_compute].
    pub bkv_compute: i64,
    /// Base-2 online softmax (scale * log2 e folded into Q, exp2 for probabilities and rescale).
    pub exp2: bool,
    /// Only attentions with at least this many keys are rewritten (the seeds use the kernel for
    /// long self-attention only); shorter ones are left for later passes. 0 rewrites all.
    pub min_keys: i64,
}

impl BlockwiseAttention {
    /// The registry name.
    pub const NAME: &'static str = "blockwise_attention";
}

impl Default for BlockwiseAttention {
    /// The seeds' splash-kernel block sizes (BQ 3328, BKV 2816, BKV_COMPUTE 256); natural-log
    /// softmax; every attention rewritten.
    fn default() -> Self {
        BlockwiseAttention { bq: 3328, bkv: 2816, bkv_compute: 256, exp2: false, min_keys: 0 }
    }
}

impl Pass for BlockwiseAttention {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        if self.bkv < 1 || self.bq < 1 || self.bkv_compute < 1 {
            let (bq, bkv, bkc) = (self.bq, self.bkv, self.bkv_compute);
            let message = format!("block sizes must be >= 1, got bq {bq}, bkv {bkv} and bkv_compute {bkc}");
            return Err(PassError::failed(Self::NAME, message));
        }
        self.rewrite(&graph)
    }
}

impl BlockwiseAttention {
    fn rewrite(&self, g: &Graph) -> Result<Graph, PassError> {
        replace_nodes(g, Self::NAME, &mut |rw, v, node| {
            let Op::Attention { scale, has_mask, window } = node.op else { return Ok(None) };
            let args = rw.operands(v);
            if rw.new.tensor_ty(args[1]).shape[2] < self.min_keys {
                return Ok(None);
            }
            self.lower(&mut E { g: &mut rw.new }, &args, scale, has_mask, window).map(Some)
        })
    }

    fn lower(
        &self,
        em: &mut E,
        args: &[ValueId],
        scale: f64,
        has_mask: bool,
        window: Option<(i64, i64)>,
    ) -> Result<ValueId, PassError> {
        let (q, k, v) = (args[0], args[1], args[2]);
        let qt = em.ty(q);
        let (b, h, sq, d) = (qt.shape[0], qt.shape[1], qt.shape[2], qt.shape[3]);
        let sk = em.ty(k).shape[2];
        let dv = em.ty(v).shape[3];
        let (nkv, bkv) = balanced_blocks(sk, self.bkv);
        let kv_pad = nkv * bkv - sk;
        let (nq, bq) = balanced_blocks(sq, self.bq);
        let q_pad = nq * bq - sq;

        // Operands padded along the key dim (and, with query blocks, q and the mask along queries).
        let kp = pad_dim(em, k, 2, kv_pad)?;
        let vp = pad_dim(em, v, 2, kv_pad)?;
        let mask = if has_mask {
            let m = args[3];
            let mt = em.ty(m);
            let m = if mt.shape[3] == 1 { m } else { pad_dim(em, m, 3, kv_pad)? };
            Some(if nq > 1 && mt.shape[2] != 1 { pad_dim(em, m, 2, q_pad)? } else { m })
        } else {
            None
        };
        let kv = KvLoop { sk, bkv, scale, window };
        if nq == 1 {
            return kv.emit(em, q, kp, vp, mask, None);
        }

        // One block of queries per iteration of an outer loop, written into the output with
        // dynamic_update_slice; the key loop runs inside it.
        let dtype = qt.dtype;
        let qp = pad_dim(em, q, 2, q_pad)?;
        let i32s = TensorType::scalar(DType::I32);
        let j0 = em.splat(0.0, i32s.clone())?;
        let out0 = em.splat(0.0, TensorType::new(dtype, [b, h, nq * bq, dv]))?;
        let mut init = vec![j0, out0, qp, kp, vp];
        init.extend(mask);
        let names = ["j", "out", "q", "k", "v", "mask"];
        let state: Vec<TensorType> = init.iter().map(|&x| em.ty(x)).collect();

        let (mut cond, ins) = region("cond", &state, &names);
        let mut c = E { g: &mut cond };
        let n = c.splat(nq as f64, i32s.clone())?;
        let lt = c.op(Op::Compare(CompareDir::Lt), &[ins[0], n])?;
        cond.add_output("c", lt);

        let (mut body, ins) = region("body", &state, &names);
        let mut e = E { g: &mut body };
        let (j, out, qp, kp, vp) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
        let zero = e.splat(0.0, i32s.clone())?;
        let bq_c = e.splat(bq as f64, i32s.clone())?;
        let q0 = e.binary(BinaryOp::Mul, j, bq_c)?;
        let qb = e.op(Op::DynamicSlice { sizes: vec![b, h, bq, d] }, &[qp, zero, zero, q0, zero])?;
        let mb = match ins.get(5).copied() {
            Some(m) => {
                let mt = e.ty(m);
                Some(if mt.shape[2] == 1 {
                    m
                } else {
                    let sizes = vec![mt.shape[0], mt.shape[1], bq, mt.shape[3]];
                    e.op(Op::DynamicSlice { sizes }, &[m, zero, zero, q0, zero])?
                })
            }
            None => None,
        };
        let ob = kv.emit(&mut e, qb, kp, vp, mb, Some(q0))?;
        let out_new = e.op(Op::DynamicUpdateSlice, &[out, ob, zero, zero, q0, zero])?;
        let one = e.splat(1.0, i32s)?;
        let j_next = e.binary(BinaryOp::Add, j, one)?;
        let mut outs = vec![j_next, out_new];
        outs.extend_from_slice(&ins[2..]);
        for (o, n) in outs.into_iter().zip(names) {
            body.add_output(n, o);
        }

        let lp = em.op(Op::While { cond: Box::new(cond), body: Box::new(body) }, &init)?;
        let out = em.op(Op::GetTuple { index: 1 }, &[lp])?;
        if q_pad == 0 {
            return Ok(out);
        }
        em.op(Op::Slice { start: vec![0; 4], limit: vec![b, h, sq, dv], strides: vec![1; 4] }, &[out])
    }
}

/// `(count, size)` of the blocks covering `n` with blocks of at most `cap`: as few blocks as the cap
/// allows, of equal size, so the padding (`count * size - n`) is less than `count`. For example
/// 75600 keys with a cap of 2816 are 27 blocks of 2800, with no padding.
fn balanced_blocks(n: i64, cap: i64) -> (i64, i64) {
    let n = n.max(1);
    let count = (n + cap - 1) / cap;
    (count, (n + count - 1) / count)
}

/// `x` padded with zeros (false for i1) by `n` at the end of `dim`; `x` itself when `n` is 0.
fn pad_dim(em: &mut E, x: ValueId, dim: usize, n: i64) -> Result<ValueId, PassError> {
    if n == 0 {
        return Ok(x);
    }
    let t = em.ty(x);
    let zero = em.splat(0.0, TensorType::scalar(t.dtype))?;
    let r = t.rank();
    let mut high = vec![0; r];
    high[dim] = n;
    em.op(Op::Pad { low: vec![0; r], high, interior: vec![0; r] }, &[x, zero])
}

/// A loop region taking `state` as its inputs, named by `names`.
fn region(name: &str, state: &[TensorType], names: &[&str]) -> (Graph, Vec<ValueId>) {
    let mut g = Graph::new(name);
    let ins = state
        .iter()
        .zip(names)
        .map(|(t, n)| g.push_typed(Op::Input { name: n.to_string() }, vec![], Type::Tensor(t.clone())))
        .collect();
    (g, ins)
}

/// The online-softmax loop over key blocks for one block of queries.
struct KvLoop {
    /// Real keys (before padding).
    sk: i64,
    bkv: i64,
    scale: f64,
    window: Option<(i64, i64)>,
}

impl KvLoop {
    /// The attention of `q` [B, H, bq, D] over padded `kp`, `vp` (and `mask`, already cut to
    /// q's rows), in q's dtype; `q0` is q's first row position when queries are blocked.
    fn emit(
        &self,
        em: &mut E,
        q: ValueId,
        kp: ValueId,
        vp: ValueId,
        mask: Option<ValueId>,
        q0: Option<ValueId>,
    ) -> Result<ValueId, PassError> {
        let KvLoop { sk, bkv, scale, window } = *self;
        let qt = em.ty(q);
        let dtype = qt.dtype;
        let cdt = match dtype {
            DType::BF16 | DType::F16 => DType::F32,
            d => d,
        };
        let (b, h, sq, d) = (qt.shape[0], qt.shape[1], qt.shape[2], qt.shape[3]);
        let skp = em.ty(kp).shape[2];
        let dv = em.ty(vp).shape[3];
        let blocks = skp / bkv;
        let pad = skp - sk;
        // Initial state.
        let row = TensorType::new(cdt, [b, h, sq]);
        let acc_t = TensorType::new(cdt, [b, h, sq, dv]);
        let i32s = TensorType::scalar(DType::I32);
        // With a window, only the key blocks some row of this query block may see are visited:
        // keys from `q_first - left` to `q_last + right`. The range is a constant without query
        // blocks, else computed from the block's first row q0.
        let (left, right) = window.unwrap_or((-1, -1));
        let range = if left >= 0 || right >= 0 {
            let rows = sq;
            Some(match q0 {
                None => {
                    let first = if left >= 0 { (-left).max(0) / bkv } else { 0 };
                    let end = if right >= 0 { ((rows - 1 + right).min(sk - 1)) / bkv + 1 } else { blocks };
                    (em.splat(first as f64, i32s.clone())?, em.splat(end as f64, i32s.clone())?)
                }
                Some(q0) => {
                    let bkv_c = em.splat(bkv as f64, i32s.clone())?;
                    let first = if left >= 0 {
                        let l = em.splat(left as f64, i32s.clone())?;
                        let lo = em.binary(BinaryOp::Sub, q0, l)?;
                        let zero = em.splat(0.0, i32s.clone())?;
                        let lo = em.binary(BinaryOp::Max, lo, zero)?;
                        em.binary(BinaryOp::Div, lo, bkv_c)?
                    } else {
                        em.splat(0.0, i32s.clone())?
                    };
                    let end = if right >= 0 {
                        let r = em.splat((rows - 1 + right) as f64, i32s.clone())?;
                        let hi = em.binary(BinaryOp::Add, q0, r)?;
                        let last_key = em.splat((sk - 1) as f64, i32s.clone())?;
                        let hi = em.binary(BinaryOp::Min, hi, last_key)?;
                        let last = em.binary(BinaryOp::Div, hi, bkv_c)?;
                        let one = em.splat(1.0, i32s.clone())?;
                        em.binary(BinaryOp::Add, last, one)?
                    } else {
                        em.splat(blocks as f64, i32s.clone())?
                    };
                    (first, end)
                }
            })
        } else {
            None
        };
        let i0 = match range {
            Some((first, _)) => first,
            None => em.splat(0.0, i32s.clone())?,
        };
        let m0 = em.splat(f64::NEG_INFINITY, row.clone())?;
        let l0 = em.splat(0.0, row.clone())?;
        let acc0 = em.splat(0.0, acc_t.clone())?;
        let mut init = vec![i0, m0, l0, acc0, q, kp, vp];
        let mut names = vec!["i", "m", "l", "acc", "q", "k", "v"];
        // Regions see only the loop state, so the mask and the query offset travel in it.
        let mask_at = mask.map(|m| {
            init.push(m);
            names.push("mask");
            init.len() - 1
        });
        let q0_at = q0.map(|x| {
            init.push(x);
            names.push("q0");
            init.len() - 1
        });
        let end_at = range.map(|(_, end)| {
            init.push(end);
            names.push("end");
            init.len() - 1
        });
        let state: Vec<TensorType> = init.iter().map(|&x| em.ty(x)).collect();
        let region = |name: &str| region(name, &state, &names);

        // cond: i < blocks (or the window's last block + 1).
        let (mut cond, ins) = region("cond");
        {
            let mut c = E { g: &mut cond };
            let n = match end_at {
                Some(at) => ins[at],
                None => c.splat(blocks as f64, TensorType::scalar(DType::I32))?,
            };
            let lt = c.op(Op::Compare(CompareDir::Lt), &[ins[0], n])?;
            cond.add_output("c", lt);
        }

        // body: one block of keys.
        let (mut body, ins) = region("body");
        let outs = {
            let mut e = E { g: &mut body };
            let (i, m, l, acc, q, kp, vp) = (ins[0], ins[1], ins[2], ins[3], ins[4], ins[5], ins[6]);
            let i32s = TensorType::scalar(DType::I32);
            let zero = e.splat(0.0, i32s.clone())?;
            let bkv_c = e.splat(bkv as f64, i32s.clone())?;
            let off = e.binary(BinaryOp::Mul, i, bkv_c)?;
            let kb = e.op(Op::DynamicSlice { sizes: vec![b, h, bkv, d] }, &[kp, zero, zero, off, zero])?;
            let vb = e.op(Op::DynamicSlice { sizes: vec![b, h, bkv, dv] }, &[vp, zero, zero, off, zero])?;
            let qk =
                DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![3] };
            let s = e.op(Op::DotGeneral(qk), &[q, kb])?;
            let mut s = e.convert(s, cdt)?;
            if scale != 1.0 {
                let c = e.splat_like(scale, s)?;
                s = e.binary(BinaryOp::Mul, s, c)?;
            }
            let shape = vec![b, h, sq, bkv];
            if let Some(mi) = mask_at.map(|at| ins[at]) {
                let mt = e.ty(mi);
                let mb = if mt.shape[3] == 1 {
                    mi
                } else {
                    let sizes = vec![mt.shape[0], mt.shape[1], mt.shape[2], bkv];
                    e.op(Op::DynamicSlice { sizes }, &[mi, zero, zero, zero, off])?
                };
                if mt.dtype == DType::I1 {
                    let mb = e.broadcast(mb, &shape, &[0, 1, 2, 3])?;
                    let neg_inf = e.splat_like(f64::NEG_INFINITY, s)?;
                    s = e.select(mb, s, neg_inf)?;
                } else {
                    let mb = e.convert(mb, cdt)?;
                    let mb = e.broadcast(mb, &shape, &[0, 1, 2, 3])?;
                    s = e.binary(BinaryOp::Add, s, mb)?;
                }
            }
            // Key validity (padding) and the window, as one [Sq, bkv] predicate.
            let (left, right) = window.unwrap_or((-1, -1));
            if pad > 0 || left >= 0 || right >= 0 {
                let pos = TensorType::new(DType::I32, [sq, bkv]);
                let kpos = e.op(Op::Iota { ty: pos.clone(), dim: 1 }, &[])?;
                let offb = e.broadcast(off, &[sq, bkv], &[])?;
                let kpos = e.binary(BinaryOp::Add, kpos, offb)?;
                let mut allowed: Option<ValueId> = None;
                let mut and = |e: &mut E, p: ValueId| -> Result<(), PassError> {
                    allowed = Some(match allowed {
                        // The IR has no `and`: select(a, b, false) is a AND b.
                        Some(a) => {
                            let no = e.splat(0.0, pos.with_dtype(DType::I1))?;
                            e.select(a, p, no)?
                        }
                        None => p,
                    });
                    Ok(())
                };
                if pad > 0 {
                    let n = e.splat(sk as f64, pos.clone())?;
                    let p = e.op(Op::Compare(CompareDir::Lt), &[kpos, n])?;
                    and(&mut e, p)?;
                }
                if left >= 0 || right >= 0 {
                    let mut qpos = e.op(Op::Iota { ty: pos.clone(), dim: 0 }, &[])?;
                    if let Some(q0) = q0_at.map(|at| ins[at]) {
                        let q0b = e.broadcast(q0, &[sq, bkv], &[])?;
                        qpos = e.binary(BinaryOp::Add, qpos, q0b)?;
                    }
                    let rel = e.binary(BinaryOp::Sub, kpos, qpos)?;
                    if left >= 0 {
                        let lo = e.splat(-left as f64, pos.clone())?;
                        let p = e.op(Op::Compare(CompareDir::Ge), &[rel, lo])?;
                        and(&mut e, p)?;
                    }
                    if right >= 0 {
                        let hi = e.splat(right as f64, pos.clone())?;
                        let p = e.op(Op::Compare(CompareDir::Le), &[rel, hi])?;
                        and(&mut e, p)?;
                    }
                }
                let allowed = e.broadcast(allowed.expect("one predicate is set"), &shape, &[2, 3])?;
                let neg_inf = e.splat_like(f64::NEG_INFINITY, s)?;
                s = e.select(allowed, s, neg_inf)?;
            }
            // Online softmax update.
            let rowmax = e.op(Op::Reduce { kind: ReduceKind::Max, axes: vec![3] }, &[s])?;
            let m_new = e.binary(BinaryOp::Max, m, rowmax)?;
            let neg_inf = e.splat_like(f64::NEG_INFINITY, m_new)?;
            let unset = e.op(Op::Compare(CompareDir::Eq), &[m_new, neg_inf])?;
            let zero_row = e.splat_like(0.0, m_new)?;
            let m_safe = e.select(unset, zero_row, m_new)?;
            let m_b = e.broadcast(m_safe, &shape, &[0, 1, 2])?;
            let shifted = e.binary(BinaryOp::Sub, s, m_b)?;
            let p = e.op(Op::Unary(UnaryOp::Exp), &[shifted])?;
            let dm = e.binary(BinaryOp::Sub, m, m_safe)?;
            let alpha = e.op(Op::Unary(UnaryOp::Exp), &[dm])?;
            let l_scaled = e.binary(BinaryOp::Mul, l, alpha)?;
            let rowsum = e.op(Op::Reduce { kind: ReduceKind::Sum, axes: vec![3] }, &[p])?;
            let l_new = e.binary(BinaryOp::Add, l_scaled, rowsum)?;
            let pd = e.convert(p, dtype)?;
            let pv =
                DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![2] };
            let pv = e.op(Op::DotGeneral(pv), &[pd, vb])?;
            let pv = e.convert(pv, cdt)?;
            let alpha_b = e.broadcast(alpha, &acc_t.shape, &[0, 1, 2])?;
            let acc_scaled = e.binary(BinaryOp::Mul, acc, alpha_b)?;
            let acc_new = e.binary(BinaryOp::Add, acc_scaled, pv)?;
            let one = e.splat(1.0, i32s)?;
            let i_next = e.binary(BinaryOp::Add, i, one)?;
            let mut outs = vec![i_next, m_new, l_new, acc_new];
            outs.extend_from_slice(&ins[4..]);
            outs
        };
        for (o, n) in outs.into_iter().zip(&names) {
            body.add_output(*n, o);
        }

        let lp = em.op(Op::While { cond: Box::new(cond), body: Box::new(body) }, &init)?;
        let l = em.op(Op::GetTuple { index: 2 }, &[lp])?;
        let acc = em.op(Op::GetTuple { index: 3 }, &[lp])?;
        let l = em.broadcast(l, &acc_t.shape, &[0, 1, 2])?;
        let out = em.binary(BinaryOp::Div, acc, l)?;
        em.convert(out, dtype)
    }
}

/// Appends typed ops to a graph (the pass's own small emitter).
struct E<'g> {
    g: &'g mut Graph,
}

impl E<'_> {
    fn op(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, PassError> {
        self.g.push(op, args.to_vec()).map_err(PassError::ir(BlockwiseAttention::NAME))
    }

    fn ty(&self, v: ValueId) -> TensorType {
        self.g.tensor_ty(v).clone()
    }

    fn splat(&mut self, value: f64, ty: TensorType) -> Result<ValueId, PassError> {
        self.op(Op::Constant(Literal::splat(ty, value)), &[])
    }

    fn splat_like(&mut self, value: f64, like: ValueId) -> Result<ValueId, PassError> {
        let ty = self.ty(like);
        self.splat(value, ty)
    }

    fn binary(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId, PassError> {
        self.op(Op::Binary(b), &[x, y])
    }

    fn select(&mut self, p: ValueId, t: ValueId, f: ValueId) -> Result<ValueId, PassError> {
        self.op(Op::Select, &[p, t, f])
    }

    fn convert(&mut self, x: ValueId, to: DType) -> Result<ValueId, PassError> {
        if self.ty(x).dtype == to {
            return Ok(x);
        }
        self.op(Op::Convert { to }, &[x])
    }

    fn broadcast(&mut self, x: ValueId, shape: &[i64], dims: &[usize]) -> Result<ValueId, PassError> {
        self.op(Op::BroadcastInDim { shape: shape.to_vec(), dims: dims.to_vec() }, &[x])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(bkv: i64, text: &str) -> Graph {
        let input = parse(text).unwrap();
        let out = BlockwiseAttention { bkv, ..Default::default() }.run(input.clone()).unwrap();
        vidlower_ir::verify(&out).unwrap();
        assert!(!out.op_counts().contains_key("attention"));
        assert_eq!(input.inputs.len(), out.inputs.len());
        for (a, b) in input.inputs.iter().zip(&out.inputs) {
            assert_eq!((&input.node(*a).op, input.ty(*a)), (&out.node(*b).op, out.ty(*b)));
        }
        for (a, b) in input.outputs.iter().zip(&out.outputs) {
            assert_eq!((&a.name, input.ty(a.value)), (&b.name, out.ty(b.value)));
        }
        out
    }

    #[test]
    fn padded_keys_with_boolean_mask_and_window() {
        insta::assert_snapshot!(print(&run(
            4,
            r#"
graph @attn {
  %0 = input "q" : bf16[1,2,3,8]
  %1 = input "k" : bf16[1,2,7,8]
  %2 = input "v" : bf16[1,2,7,16]
  %3 = input "mask" : i1[1,1,3,7]
  %4 = attention(%0, %1, %2, %3) {scale=0.35355339059327373, mask=true, window=[1, 2]} : bf16[1,2,3,16]
  output "o" = %4
}"#
        )));
    }

    #[test]
    fn exact_blocks_without_mask_need_no_padding_or_predicate() {
        let out = run(
            2,
            r#"
graph @attn {
  %0 = input "q" : f32[2,1,3,4]
  %1 = input "k" : f32[2,1,4,4]
  %2 = input "v" : f32[2,1,4,4]
  %3 = attention(%0, %1, %2) {scale=0.5, mask=false} : f32[2,1,3,4]
  output "a" = %3
}"#,
        );
        let counts = out.op_counts();
        assert_eq!(counts.get("while"), Some(&1));
        assert_eq!(counts.get("pad"), None);
        assert_eq!(counts.get("iota"), None);
        assert_eq!(counts.get("dynamic_slice"), Some(&2));
    }

    #[test]
    fn float_mask_with_unit_key_dim_is_not_sliced_and_loops_are_lowered() {
        let out = run(
            2,
            r#"
graph @attn {
  %0 = input "q" : f32[1,1,3,4]
  %1 = input "k" : f32[1,1,5,4]
  %2 = input "v" : f32[1,1,5,4]
  %3 = input "bias" : f32[1,1,3,1]
  %4 = attention(%0, %1, %2, %3) {scale=1.0, mask=true} : f32[1,1,3,4] sharding=[1,1,1,1]
  %5 = while(%4) regions {
    graph @cond {
      %0 = input "x" : f32[1,1,3,4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[1,1,3,4]
      %1 = attention(%0, %0, %0) {scale=0.5, mask=false, window=[-1, 0]} : f32[1,1,3,4]
      output "x" = %1
    }
  } : (f32[1,1,3,4])
  %6 = get(%5) {index=0} : f32[1,1,3,4]
  output "y" = %6
}"#,
        );
        assert_eq!(out.op_counts().get("while"), Some(&3));
        // Key blocks of K and V and no block of the [.., 1] mask.
        assert_eq!(out.op_counts().get("dynamic_slice"), Some(&4));
        let outer = out.nodes.iter().position(|n| n.op.name() == "while").unwrap();
        assert!(out.nodes[outer + 1..].iter().any(|n| n.sharding.is_some()));
    }

    #[test]
    fn query_blocks_with_float_mask_and_window() {
        insta::assert_snapshot!(print(&{
            let input = parse(
                r#"
graph @attn {
  %0 = input "q" : f32[1,1,5,2]
  %1 = input "k" : f32[1,1,3,2]
  %2 = input "v" : f32[1,1,3,2]
  %3 = input "bias" : f32[1,1,5,3]
  %4 = attention(%0, %1, %2, %3) {scale=1.0, mask=true, window=[1, 0]} : f32[1,1,5,2]
  output "o" = %4
}"#,
            )
            .unwrap();
            let out = BlockwiseAttention { bq: 2, bkv: 2, ..Default::default() }.run(input).unwrap();
            vidlower_ir::verify(&out).unwrap();
            assert_eq!(out.op_counts().get("while"), Some(&2));
            assert_eq!(out.op_counts().get("attention"), None);
            out
        }));
    }

    #[test]
    fn blocks_are_balanced_under_the_cap() {
        assert_eq!(balanced_blocks(75600, 2816), (27, 2800));
        assert_eq!(balanced_blocks(4096, 3328), (2, 2048));
        assert_eq!(balanced_blocks(6, 4), (2, 3));
        assert_eq!(balanced_blocks(7, 4), (2, 4));
        assert_eq!(balanced_blocks(3, 2816), (1, 3));
    }

    #[test]
    fn min_keys_leaves_short_attentions_alone() {
        let text = r#"
graph @attn {
  %0 = input "q" : f32[1,1,3,4]
  %1 = input "k" : f32[1,1,5,4]
  %2 = input "v" : f32[1,1,5,4]
  %3 = attention(%0, %1, %2) {scale=0.5, mask=false} : f32[1,1,3,4]
  %4 = attention(%0, %0, %0) {scale=0.5, mask=false} : f32[1,1,3,4]
  %5 = add(%3, %4) : f32[1,1,3,4]
  output "o" = %5
}"#;
        let pass = BlockwiseAttention { bkv: 2, min_keys: 4, ..Default::default() };
        let out = pass.run(parse(text).unwrap()).unwrap();
        // The 5-key attention is a loop; the 3-key one stays for decompose.
        assert_eq!((out.op_counts().get("while"), out.op_counts().get("attention")), (Some(&1), Some(&1)));
        let all = BlockwiseAttention { min_keys: 3, ..pass }.run(parse(text).unwrap()).unwrap();
        assert_eq!((all.op_counts().get("while"), all.op_counts().get("attention")), (Some(&2), None));
    }

    #[test]
    fn zero_block_size_is_refused() {
        let err = BlockwiseAttention { bq: 1, bkv: 0, ..Default::default() }.run(parse_empty()).unwrap_err();
        assert!(err.to_string().contains("bkv 0"));
        let err = BlockwiseAttention { bkv_compute: 0, ..Default::default() }.run(parse_empty()).unwrap_err();
        assert!(err.to_string().contains("bkv_compute 0"), "{err}");
    }

    fn parse_empty() -> Graph {
        parse("graph @g {\n  %0 = input \"x\" : f32[1]\n  output \"y\" = %0\n}").unwrap()
    }
}
