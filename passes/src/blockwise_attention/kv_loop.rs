//! The key loop of `blockwise_attention`: the online softmax of one block of queries over every
//! key block, each block processed in slices (see the parent module for the recurrence).

use super::loops::{counted_loop, rows_at, End, LoopState};
use crate::decompose::attention::both_in_span;
use crate::decompose::emit::{compute_dtype, Emitter};
use crate::exp2_softmax::{exp2, to_base2};
use crate::PassError;
use vidlower_ir::{BinaryOp, CompareDir, DType, DotDims, Op, ReduceKind, TensorType, UnaryOp, ValueId};

/// The online-softmax loop over key blocks for one block of queries.
pub(super) struct KvLoop {
    /// Real keys (before padding).
    pub sk: i64,
    /// Keys per loop iteration: `slices * slice`.
    pub block: i64,
    /// Keys per score slice inside a block; the largest temporary is [B, H, rows, slice].
    pub slice: i64,
    /// The score scale (1 when it was folded into q).
    pub scale: f64,
    /// Scores are base-2 logits (q carries `scale * log2 e`): exp2 for the probabilities and the
    /// rescale factor, and a float mask turned into base 2.
    pub base2: bool,
    pub window: Option<(i64, i64)>,
    /// With a window: the positions [start, end) it applies among (a joint attention's video
    /// tokens); keys outside it are seen by every query, queries outside it see every key.
    pub span: Option<(i64, i64)>,
}

/// One run of the key loop over blocks `first .. end`.
struct KeyRange {
    first: ValueId,
    end: KeyEnd,
}

enum KeyEnd {
    Const(i64),
    Value(ValueId),
}

/// The running softmax state of a block of query rows: row max, row sum, unnormalised output.
struct Running {
    m: ValueId,
    l: ValueId,
    acc: ValueId,
}

/// What one slice of scores needs besides q and its keys and values.
struct SliceIn {
    /// The slice's first key position (i32 scalar).
    off: ValueId,
    /// The op's mask, whole (its query rows already cut to q's).
    mask: Option<ValueId>,
    /// q's first row position when queries are blocked (for the window).
    q0: Option<ValueId>,
}

impl KvLoop {
    /// The attention of `q` [B, H, rows, D] over padded `kp`, `vp` (and `mask`, already cut to
    /// q's rows), in q's dtype; `q0` is q's first row position when queries are blocked.
    pub fn emit(
        &self,
        em: &mut Emitter,
        q: ValueId,
        kp: ValueId,
        vp: ValueId,
        mask: Option<ValueId>,
        q0: Option<ValueId>,
    ) -> Result<ValueId, PassError> {
        let qt = em.ty(q);
        let dtype = qt.dtype;
        let cdt = compute_dtype(dtype);
        let (b, h, rows) = (qt.shape[0], qt.shape[1], qt.shape[2]);
        let blocks = em.ty(kp).shape[2] / self.block;
        let acc_t = TensorType::new(cdt, [b, h, rows, em.ty(vp).shape[3]]);
        let m0 = em.splat(f64::NEG_INFINITY, TensorType::new(cdt, [b, h, rows]))?;
        let l0 = em.splat(0.0, TensorType::new(cdt, [b, h, rows]))?;
        let acc0 = em.splat(0.0, acc_t.clone())?;
        let mut run = Running { m: m0, l: l0, acc: acc0 };
        // The online softmax carries over from one range of key blocks to the next.
        for range in self.key_ranges(em, rows, blocks, q0)? {
            run = self.key_loop(em, run, range, q, kp, vp, mask, q0)?;
        }
        let l = em.broadcast(run.l, &acc_t.shape, &[0, 1, 2])?;
        let out = em.div(run.acc, l)?;
        em.convert(out, dtype)
    }

    /// The key blocks of `range` folded into `run`, by a counted loop.
    #[allow(clippy::too_many_arguments)]
    fn key_loop(
        &self,
        em: &mut Emitter,
        run: Running,
        range: KeyRange,
        q: ValueId,
        kp: ValueId,
        vp: ValueId,
        mask: Option<ValueId>,
        q0: Option<ValueId>,
    ) -> Result<Running, PassError> {
        let mut state = LoopState::new("i", range.first);
        for (name, x) in [("m", run.m), ("l", run.l), ("acc", run.acc), ("q", q), ("k", kp), ("v", vp)] {
            state.push(name, x);
        }
        let mask_at = state.push_opt("mask", mask);
        let q0_at = state.push_opt("q0", q0);
        let end = match range.end {
            KeyEnd::Const(n) => End::Const(n),
            KeyEnd::Value(v) => End::State(state.push("end", v)),
        };
        let lp = counted_loop(em, &state, end, |e, ins| {
            let off = e.binary_const(BinaryOp::Mul, ins[0], self.block as f64)?;
            let kb = rows_at(e, ins[5], off, self.block)?;
            let vb = rows_at(e, ins[6], off, self.block)?;
            let run = Running { m: ins[1], l: ins[2], acc: ins[3] };
            let at = SliceIn { off, mask: mask_at.map(|a| ins[a]), q0: q0_at.map(|a| ins[a]) };
            let run = self.block_update(e, run, ins[4], kb, vb, at)?;
            Ok(vec![run.m, run.l, run.acc])
        })?;
        let mut get = |index| em.op(Op::GetTuple { index }, &[lp]);
        Ok(Running { m: get(1)?, l: get(2)?, acc: get(3)? })
    }

    /// The ranges of key blocks this block of query rows visits, in order: all blocks without a
    /// window; the blocks the window reaches with one; with a window span, the blocks holding
    /// keys before the span, then the span's blocks the window reaches (all of them when a row of
    /// the block lies outside the span: it sees every key), then the blocks holding keys after
    /// it. A block that straddles a span edge is visited once, in the outer range; the slice
    /// predicate masks what it must.
    fn key_ranges(&self, em: &mut Emitter, rows: i64, blocks: i64, q0: Option<ValueId>) -> Result<Vec<KeyRange>, PassError> {
        let i32s = TensorType::scalar(DType::I32);
        let konst = |em: &mut Emitter, n: i64| em.splat(n as f64, i32s.clone());
        let window = self.window_range(em, rows, blocks, q0)?;
        let Some((start, end)) = self.span.filter(|_| window.is_some()) else {
            return Ok(vec![match window {
                Some((first, end)) => KeyRange { first, end: KeyEnd::Value(end) },
                None => KeyRange { first: konst(em, 0)?, end: KeyEnd::Const(blocks) },
            }]);
        };
        let (first_w, end_w) = window.expect("filtered on a window");
        // Blocks [0, head) hold keys before the span, [tail, blocks) keys after it.
        let head = (start + self.block - 1) / self.block;
        let tail = if end >= self.sk { blocks } else { (end / self.block).max(head) };
        let mut ranges = Vec::new();
        if head > 0 {
            ranges.push(KeyRange { first: konst(em, 0)?, end: KeyEnd::Const(head) });
        }
        // The window's blocks, clipped to [head, tail), or all of [head, tail) when some row of
        // this block is outside the span.
        let (head_c, tail_c) = (konst(em, head)?, konst(em, tail)?);
        let first = em.binary(BinaryOp::Max, first_w, head_c)?;
        let last = em.binary(BinaryOp::Min, end_w, tail_c)?;
        let (first, last) = match q0 {
            None if start <= 0 && rows <= end => (first, last),
            None => (head_c, tail_c),
            Some(q0) => {
                let lo = em.splat(start as f64, i32s.clone())?;
                let first_in = em.compare(CompareDir::Ge, q0, lo)?;
                let last_row = em.binary_const(BinaryOp::Add, q0, (rows - 1) as f64)?;
                let hi = em.splat(end as f64, i32s.clone())?;
                let last_in = em.compare(CompareDir::Lt, last_row, hi)?;
                let no = em.splat(0.0, i32s.with_dtype(DType::I1))?;
                // The IR has no `and`: select(a, b, false) is a AND b.
                let all_in = em.select(first_in, last_in, no)?;
                (em.select(all_in, first, head_c)?, em.select(all_in, last, tail_c)?)
            }
        };
        ranges.push(KeyRange { first, end: KeyEnd::Value(last) });
        if tail < blocks {
            ranges.push(KeyRange { first: konst(em, tail)?, end: KeyEnd::Const(blocks) });
        }
        Ok(ranges)
    }

    /// One key block `kb`, `vb` (from key `at.off`) folded into the running state: at once when
    /// it is one slice, else by a loop over its slices, so only one slice of scores is live.
    fn block_update(
        &self,
        e: &mut Emitter,
        run: Running,
        q: ValueId,
        kb: ValueId,
        vb: ValueId,
        at: SliceIn,
    ) -> Result<Running, PassError> {
        let slices = self.block / self.slice;
        if slices == 1 {
            return self.update(e, run, q, kb, vb, &at);
        }
        let s0 = e.splat(0.0, TensorType::scalar(DType::I32))?;
        let mut state = LoopState::new("s", s0);
        for (name, x) in [("m", run.m), ("l", run.l), ("acc", run.acc), ("q", q), ("k", kb), ("v", vb), ("off", at.off)]
        {
            state.push(name, x);
        }
        let mask_at = state.push_opt("mask", at.mask);
        let q0_at = state.push_opt("q0", at.q0);
        let lp = counted_loop(e, &state, End::Const(slices), |e, ins| {
            let start = e.binary_const(BinaryOp::Mul, ins[0], self.slice as f64)?;
            let kc = rows_at(e, ins[5], start, self.slice)?;
            let vc = rows_at(e, ins[6], start, self.slice)?;
            let off = e.add(ins[7], start)?;
            let run = Running { m: ins[1], l: ins[2], acc: ins[3] };
            let at = SliceIn { off, mask: mask_at.map(|a| ins[a]), q0: q0_at.map(|a| ins[a]) };
            let run = self.update(e, run, ins[4], kc, vc, &at)?;
            Ok(vec![run.m, run.l, run.acc])
        })?;
        let mut get = |index| e.op(Op::GetTuple { index }, &[lp]);
        Ok(Running { m: get(1)?, l: get(2)?, acc: get(3)? })
    }

    /// With a window, the key blocks some row of this query block may see: keys from
    /// `first_row - left` to `last_row + right`, as `(first block, end block)` i32 scalars.
    /// Constants without query blocks, else computed from the block's first row `q0`.
    fn window_range(
        &self,
        em: &mut Emitter,
        rows: i64,
        blocks: i64,
        q0: Option<ValueId>,
    ) -> Result<Option<(ValueId, ValueId)>, PassError> {
        let (left, right) = self.window.unwrap_or((-1, -1));
        if left < 0 && right < 0 {
            return Ok(None);
        }
        let (sk, bkv) = (self.sk, self.block);
        let i32s = TensorType::scalar(DType::I32);
        let Some(q0) = q0 else {
            let first = if left >= 0 { (-left).max(0) / bkv } else { 0 };
            let end = if right >= 0 { ((rows - 1 + right).min(sk - 1)) / bkv + 1 } else { blocks };
            return Ok(Some((em.splat(first as f64, i32s.clone())?, em.splat(end as f64, i32s)?)));
        };
        let bkv_c = em.splat(bkv as f64, i32s.clone())?;
        let first = if left >= 0 {
            let lo = em.binary_const(BinaryOp::Sub, q0, left as f64)?;
            let lo = em.binary_const(BinaryOp::Max, lo, 0.0)?;
            em.div(lo, bkv_c)?
        } else {
            em.splat(0.0, i32s.clone())?
        };
        let end = if right >= 0 {
            let hi = em.binary_const(BinaryOp::Add, q0, (rows - 1 + right) as f64)?;
            let hi = em.binary_const(BinaryOp::Min, hi, (sk - 1) as f64)?;
            let last = em.div(hi, bkv_c)?;
            em.binary_const(BinaryOp::Add, last, 1.0)?
        } else {
            em.splat(blocks as f64, i32s)?
        };
        Ok(Some((first, end)))
    }

    /// One slice of keys `kc`, `vc` [B, H, n, D] folded into the running state:
    ///
    /// ```text
    /// s = scale q kc^T (masked)   m' = max(m, rowmax s)   p = exp(s - m')   a = exp(m - m')
    /// l' = l a + rowsum p          acc' = acc a + p vc
    /// ```
    /// (exp2 for both exponentials in base 2).
    fn update(
        &self,
        e: &mut Emitter,
        run: Running,
        q: ValueId,
        kc: ValueId,
        vc: ValueId,
        at: &SliceIn,
    ) -> Result<Running, PassError> {
        let dtype = e.ty(q).dtype;
        let cdt = compute_dtype(dtype);
        let qk = DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![3] };
        let s = e.op(Op::DotGeneral(qk), &[q, kc])?;
        let mut s = e.convert(s, cdt)?;
        if self.scale != 1.0 {
            s = e.binary_const(BinaryOp::Mul, s, self.scale)?;
        }
        if let Some(mask) = at.mask {
            s = self.apply_mask(e, s, mask, at.off)?;
        }
        s = self.mask_positions(e, s, at)?;
        let shape = e.ty(s).shape;
        let rowmax = e.reduce(ReduceKind::Max, s, &[3])?;
        let m_new = e.binary(BinaryOp::Max, run.m, rowmax)?;
        // While a row has seen only masked keys its max is -inf: use 0 so the exponentials give 0.
        let neg_inf = e.splat_like(f64::NEG_INFINITY, m_new)?;
        let unset = e.compare(CompareDir::Eq, m_new, neg_inf)?;
        let zero_row = e.splat_like(0.0, m_new)?;
        let m_safe = e.select(unset, zero_row, m_new)?;
        let m_b = e.unreduce(m_safe, &shape, &[3])?;
        let shifted = e.sub(s, m_b)?;
        let p = self.exp(e, shifted)?;
        let dm = e.sub(run.m, m_safe)?;
        let alpha = self.exp(e, dm)?;
        let l_scaled = e.mul(run.l, alpha)?;
        let rowsum = e.reduce(ReduceKind::Sum, p, &[3])?;
        let l = e.add(l_scaled, rowsum)?;
        let pd = e.convert(p, dtype)?;
        let pv = DotDims { lhs_batch: vec![0, 1], rhs_batch: vec![0, 1], lhs_contract: vec![3], rhs_contract: vec![2] };
        let pv = e.op(Op::DotGeneral(pv), &[pd, vc])?;
        let pv = e.convert(pv, cdt)?;
        let acc_shape = e.ty(run.acc).shape;
        let alpha_b = e.unreduce(alpha, &acc_shape, &[3])?;
        let acc_scaled = e.mul(run.acc, alpha_b)?;
        let acc = e.add(acc_scaled, pv)?;
        Ok(Running { m: m_new, l, acc })
    }

    /// `e^x`, or `2^x` for base-2 scores.
    fn exp(&self, e: &mut Emitter, x: ValueId) -> Result<ValueId, PassError> {
        if self.base2 {
            exp2(e, x)
        } else {
            e.unary(UnaryOp::Exp, x)
        }
    }

    /// Scores `s` [B, H, rows, n] with the op's mask applied: its keys `off .. off + n` (a mask
    /// whose key dim is 1 is used whole); a boolean mask selects -inf, a float one is added (in
    /// base 2 when the scores are).
    fn apply_mask(&self, e: &mut Emitter, s: ValueId, mask: ValueId, off: ValueId) -> Result<ValueId, PassError> {
        let shape = e.ty(s).shape;
        let mt = e.ty(mask);
        let mb = if mt.shape[3] == 1 {
            mask
        } else {
            let zero = e.splat(0.0, TensorType::scalar(DType::I32))?;
            let sizes = vec![mt.shape[0], mt.shape[1], mt.shape[2], shape[3]];
            e.op(Op::DynamicSlice { sizes }, &[mask, zero, zero, zero, off])?
        };
        if mt.dtype == DType::I1 {
            let mb = e.broadcast(mb, &shape, &[0, 1, 2, 3])?;
            let neg_inf = e.splat_like(f64::NEG_INFINITY, s)?;
            return e.select(mb, s, neg_inf);
        }
        let mut mb = e.convert(mb, e.ty(s).dtype)?;
        if self.base2 {
            mb = to_base2(e, mb)?;
        }
        let mb = e.broadcast(mb, &shape, &[0, 1, 2, 3])?;
        e.add(s, mb)
    }

    /// Scores with -inf at padded keys (position `>= sk`) and outside the window, from one
    /// [rows, n] predicate of key and query positions.
    fn mask_positions(&self, e: &mut Emitter, s: ValueId, at: &SliceIn) -> Result<ValueId, PassError> {
        let shape = e.ty(s).shape;
        let (rows, n) = (shape[2], shape[3]);
        // The caller pads to the next multiple of the block, so padding means sk is not one.
        let padded = self.sk % self.block != 0;
        let (left, right) = self.window.unwrap_or((-1, -1));
        if !padded && left < 0 && right < 0 {
            return Ok(s);
        }
        let pos = TensorType::new(DType::I32, [rows, n]);
        let kpos = e.op(Op::Iota { ty: pos.clone(), dim: 1 }, &[])?;
        let offb = e.broadcast(at.off, &[rows, n], &[])?;
        let kpos = e.add(kpos, offb)?;
        let mut preds = Vec::new();
        if padded {
            let n = e.splat(self.sk as f64, pos.clone())?;
            preds.push(e.compare(CompareDir::Lt, kpos, n)?);
        }
        // The IR has no `and`: select(a, b, false) is a AND b.
        let and = |e: &mut Emitter, a: ValueId, b: ValueId| {
            let no = e.splat(0.0, pos.with_dtype(DType::I1))?;
            e.select(a, b, no)
        };
        if left >= 0 || right >= 0 {
            let mut qpos = e.op(Op::Iota { ty: pos.clone(), dim: 0 }, &[])?;
            if let Some(q0) = at.q0 {
                let q0b = e.broadcast(q0, &[rows, n], &[])?;
                qpos = e.add(qpos, q0b)?;
            }
            let rel = e.sub(kpos, qpos)?;
            let mut in_window = Vec::new();
            if left >= 0 {
                let lo = e.splat(-left as f64, pos.clone())?;
                in_window.push(e.compare(CompareDir::Ge, rel, lo)?);
            }
            if right >= 0 {
                let hi = e.splat(right as f64, pos.clone())?;
                in_window.push(e.compare(CompareDir::Le, rel, hi)?);
            }
            let mut ok = in_window[0];
            if let Some(&other) = in_window.get(1) {
                ok = and(e, ok, other)?;
            }
            // Only between two positions in the span: a pair with one outside is kept.
            if let Some(span) = self.span {
                let inside = both_in_span(e, qpos, kpos, span)?;
                let yes = e.splat(1.0, pos.with_dtype(DType::I1))?;
                ok = e.select(inside, ok, yes)?;
            }
            preds.push(ok);
        }
        let mut allowed = preds[0];
        for &p in &preds[1..] {
            allowed = and(e, allowed, p)?;
        }
        let allowed = e.broadcast(allowed, &shape, &[2, 3])?;
        let neg_inf = e.splat_like(f64::NEG_INFINITY, s)?;
        e.select(allowed, s, neg_inf)
    }
}
