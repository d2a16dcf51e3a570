//! Blockwise attention: each `attention` composite lowered to an online-softmax loop over blocks
//! of keys, so the [Sq, Sk] score matrix never exists; the largest temporary is one
//! [B, H, bq, bkv_compute] slice of scores.
//!
//! Keys (and values, and a mask with a full key dim) are padded with `pad` up to a multiple of
//! the block size. The key loop is a `while` whose state is
//! `(i, m, l, acc, q, k, v[, mask][, q0][, end])`: the block counter, the running row max m [B, H, Sq] and
//! row sum l [B, H, Sq], the accumulator acc [B, H, Sq, Dv] (all three in f32 for bf16/f16
//! inputs, else in the input's dtype), the operands (regions only see the loop state), the query
//! block's first row and, with a window, the block to stop at.
//! Iteration i takes keys `i*bkv .. (i+1)*bkv` with `dynamic_slice` and, for each slice of
//! `bkv_compute` keys of that block (an inner loop with the same running state), computes
//!
//! ```text
//! s   = scale * q k_slice^T          (masked: -inf where not allowed)
//! m'  = max(m, rowmax s)
//! p   = exp(s - m')
//! l'  = l * exp(m - m') + rowsum p
//! acc = acc * exp(m - m') + p v_slice
//! ```
//!
//! and the result is `acc / l` in the input's dtype. The slices of a block are an inner `while`
//! over `dynamic_slice`s of the block, not an unrolled sequence of static slices: unrolled, the
//! slices' `q k^T` products do not depend on each other, and XLA's CPU scheduler ran them all
//! before the softmax updates, so every slice's scores were live at once (measured at
//! [1, 8, 8192, 64] f32: unrolled 925 MiB peak vs 854 MiB unsliced; the inner loop 477 MiB).
//! With `exp2` the scores are base-2 logits: `scale * log2 e` is folded into q once, before
//! the loops (as `exp2_softmax` does, whose helpers this reuses), a float mask is multiplied by
//! `log2 e` slice by slice, and both exponentials are exp2, emitted as `exp(x * ln 2)`.
//!
//! Padded keys are masked out (key position `>= Sk`, from an iota plus the slice offset), unlike
//! the seeds' kernel. The op's mask is sliced likewise (a mask whose key dim is 1 is used
//! whole), and a window (left, right) is the same predicate as in `decompose`
//! (`i - left <= j <= i + right`) built per slice, and the key loop
//! visits only the blocks the window reaches from the current query rows (its start and end in
//! the loop state; constants when queries are not blocked). While a row has seen only
//! masked keys its max is -inf; the exponentials then use 0 in its place so they give 0, not NaN.
//! A row with no allowed key at all gives 0/0 = NaN, as the dense softmax does.
//!
//! Queries are blocked too when Sq > bq: an outer `while` takes `bq` query rows at a time (q,
//! and a mask with a full query dim, padded to a multiple of bq), runs the key loop for them with
//! the block's first row position in its state (for the window), and writes the rows into the
//! output with `dynamic_update_slice`; padded query rows are sliced off at the end. Peak memory
//! is then O(B H min(Sq, bq) bkv_compute) for the scores. Run the pass before `decompose`; other
//! composites (and attentions with fewer than `min_keys` keys) are left alone.

mod kv_loop;
mod loops;

use crate::decompose::emit::Emitter;
use crate::exp2_softmax::fold_scale_base2;
use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use kv_loop::KvLoop;
use loops::{counted_loop, rows_at, End, LoopState};
use vidlower_ir::{BinaryOp, DType, Graph, Op, TensorType, ValueId};

/// The `blockwise_attention` pass. `bq`, `bkv` and `bkv_compute` are the query block, key block
/// and key slice sizes, used as caps: a sequence is cut into as few blocks as the cap allows,
/// all of one size (see [`balanced_blocks`]), and a key block into as few slices (the block is
/// then a whole number of slices, see [`key_blocks`]); a sequence shorter than its cap is one
/// block, one query block means no outer loop and one slice no slicing.
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
    /// Only attentions with at least this many keys are rewritten, whatever their kind (self,
    /// cross or joint): the key count is what decides whether the [Sq, Sk] scores are worth
    /// avoiding, not where the keys come from. Shorter ones are left for later passes. 0
    /// rewrites all.
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
            let Op::Attention { scale, has_mask, window, window_span, .. } = node.op else { return Ok(None) };
            let args = rw.operands(v);
            if rw.new.tensor_ty(args[1]).shape[2] < self.min_keys {
                return Ok(None);
            }
            // A span matters only with a window.
            let span = window.and(window_span);
            self.lower(&mut Emitter { g: &mut rw.new }, &args, scale, has_mask, window, span).map(Some)
        })
    }

    fn lower(
        &self,
        em: &mut Emitter,
        args: &[ValueId],
        scale: f64,
        has_mask: bool,
        window: Option<(i64, i64)>,
        span: Option<(i64, i64)>,
    ) -> Result<ValueId, PassError> {
        let (q, k, v) = (args[0], args[1], args[2]);
        let qt = em.ty(q);
        let (b, h, sq) = (qt.shape[0], qt.shape[1], qt.shape[2]);
        let sk = em.ty(k).shape[2];
        let dv = em.ty(v).shape[3];
        let (nkv, block, slice) = key_blocks(sk, self.bkv, self.bkv_compute);
        let kv_pad = nkv * block - sk;
        let (nq, bq) = balanced_blocks(sq, self.bq);
        let q_pad = nq * bq - sq;
        let (q, scale) = if self.exp2 { (fold_scale_base2(em, q, scale)?, 1.0) } else { (q, scale) };

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
        let kv = KvLoop { sk, block, slice, scale, base2: self.exp2, window, span };
        if nq == 1 {
            return kv.emit(em, q, kp, vp, mask, None);
        }

        // One block of queries per iteration of an outer loop, written into the output with
        // dynamic_update_slice; the key loop runs inside it.
        let qp = pad_dim(em, q, 2, q_pad)?;
        let j0 = em.splat(0.0, TensorType::scalar(DType::I32))?;
        let out0 = em.splat(0.0, TensorType::new(qt.dtype, [b, h, nq * bq, dv]))?;
        let mut state = LoopState::new("j", j0);
        for (name, x) in [("out", out0), ("q", qp), ("k", kp), ("v", vp)] {
            state.push(name, x);
        }
        let mask_at = state.push_opt("mask", mask);
        let lp = counted_loop(em, &state, End::Const(nq), |e, ins| {
            let q0 = e.binary_const(BinaryOp::Mul, ins[0], bq as f64)?;
            let qb = rows_at(e, ins[2], q0, bq)?;
            // The mask's rows of this block (all of it when its query dim is 1).
            let mb = match mask_at.map(|at| ins[at]) {
                Some(m) if e.ty(m).shape[2] != 1 => Some(rows_at(e, m, q0, bq)?),
                m => m,
            };
            let ob = kv.emit(e, qb, ins[3], ins[4], mb, Some(q0))?;
            let zero = e.splat(0.0, TensorType::scalar(DType::I32))?;
            Ok(vec![e.op(Op::DynamicUpdateSlice, &[ins[1], ob, zero, zero, q0, zero])?])
        })?;
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

/// `(blocks, block, slice)` for `sk` keys: balanced key blocks under `bkv`, each cut into
/// balanced slices under `bkv_compute`, the block then rounded up to a whole number of slices
/// (so it may exceed `bkv` by less than its slice count) and the block count recomputed, so the
/// padding is less than one block. Wan's 75600 keys at 2816/256 are 27 blocks of 11 x 255
/// (135 padded keys); a `bkv_compute` of at least the block means one slice per block.
fn key_blocks(sk: i64, bkv: i64, bkv_compute: i64) -> (i64, i64, i64) {
    let (_, block) = balanced_blocks(sk, bkv);
    let (slices, slice) = balanced_blocks(block, bkv_compute);
    let block = slices * slice;
    ((sk.max(1) + block - 1) / block, block, slice)
}

/// `x` padded with zeros (false for i1) by `n` at the end of `dim`; `x` itself when `n` is 0.
fn pad_dim(em: &mut Emitter, x: ValueId, dim: usize, n: i64) -> Result<ValueId, PassError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(bkv: i64, text: &str) -> Graph {
        let out = crate::test_support::run_pass(BlockwiseAttention { bkv, ..Default::default() }, text);
        assert!(!out.op_counts().contains_key("attention"));
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
  %4 = attention(%0, %1, %2, %3) {kind=cross, scale=0.35355339059327373, mask=true, window=[1, 2]} : bf16[1,2,3,16]
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
  %3 = attention(%0, %1, %2) {kind=cross, scale=0.5, mask=false} : f32[2,1,3,4]
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
  %4 = attention(%0, %1, %2, %3) {kind=cross, scale=1.0, mask=true} : f32[1,1,3,4] sharding=[{},{},{},{}]
  %5 = while(%4) regions {
    graph @cond {
      %0 = input "x" : f32[1,1,3,4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[1,1,3,4]
      %1 = attention(%0, %0, %0) {kind=self, scale=0.5, mask=false, window=[-1, 0]} : f32[1,1,3,4]
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
  %4 = attention(%0, %1, %2, %3) {kind=cross, scale=1.0, mask=true, window=[1, 0]} : f32[1,1,5,2]
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
    fn key_slices_in_base_2_with_float_mask() {
        // 7 keys: one block of 8 (2 slices of 4 under bkv_compute 4; the 8th key padded); q
        // carries scale * log2 e, the mask slices are scaled by log2 e.
        let input = parse(
            r#"
graph @attn {
  %0 = input "q" : f32[1,1,2,2]
  %1 = input "k" : f32[1,1,7,2]
  %2 = input "v" : f32[1,1,7,2]
  %3 = input "bias" : f32[1,1,1,7]
  %4 = attention(%0, %1, %2, %3) {kind=cross, scale=0.5, mask=true} : f32[1,1,2,2]
  output "o" = %4
}"#,
        )
        .unwrap();
        let pass = BlockwiseAttention { bkv: 8, bkv_compute: 4, exp2: true, ..Default::default() };
        let out = pass.run(input).unwrap();
        vidlower_ir::verify(&out).unwrap();
        // The key loop's body runs a loop of 2 slices; its body has the scores [1, 1, 2, 4] and
        // two exp2 (probabilities and rescale).
        let inner_loop = |g: &Graph| match g.nodes.iter().map(|n| &n.op).find(|op| op.name() == "while") {
            Some(Op::While { cond, body }) => (cond.clone(), body.clone()),
            _ => panic!("no loop in @{}", g.name),
        };
        let (cond, slice) = inner_loop(&inner_loop(&out).1);
        let Op::Constant(slices) = &cond.node(cond.node(cond.outputs[0].value).operands[1]).op else { panic!() };
        assert_eq!(slices.as_splat(), Some(2.0));
        let exps = slice.nodes.iter().filter(|n| n.op == Op::Unary(vidlower_ir::UnaryOp::Exp)).count();
        assert_eq!(exps, 2);
        let dot = slice.nodes.iter().find(|n| n.op.name() == "dot_general").unwrap();
        assert_eq!(dot.ty.tensor().unwrap().shape, [1, 1, 2, 4]);
        insta::assert_snapshot!(print(&out));
    }

    #[test]
    fn key_blocks_are_whole_slices() {
        assert_eq!(key_blocks(75600, 2816, 256), (27, 2805, 255));
        assert_eq!(key_blocks(32768, 2816, 256), (12, 2739, 249));
        assert_eq!(key_blocks(7, 8, 4), (1, 8, 4));
        assert_eq!(key_blocks(7, 4, 1 << 20), (2, 4, 4));
        // Slices that make the block larger never leave a whole block of padding.
        assert_eq!(key_blocks(1000, 10, 3), (84, 12, 3));
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
  %3 = attention(%0, %1, %2) {kind=cross, scale=0.5, mask=false} : f32[1,1,3,4]
  %4 = attention(%0, %0, %0) {kind=self, scale=0.5, mask=false} : f32[1,1,3,4]
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
    fn min_keys_is_the_same_threshold_for_every_kind() {
        let text = r#"
graph @attn {
  %0 = input "x" : f32[1,1,5,4]
  %1 = input "text" : f32[1,1,5,4]
  %2 = attention(%0, %0, %0) {kind=self, scale=0.5, mask=false} : f32[1,1,5,4]
  %3 = attention(%0, %1, %1) {kind=cross, scale=0.5, mask=false} : f32[1,1,5,4]
  %4 = attention(%1, %1, %1) {kind=joint, scale=0.5, mask=false} : f32[1,1,5,4]
  %5 = add(%2, %3) : f32[1,1,5,4]
  %6 = add(%5, %4) : f32[1,1,5,4]
  output "o" = %6
}"#;
        let counts = |min_keys: i64| {
            let out = BlockwiseAttention { bkv: 2, min_keys, ..Default::default() }.run(parse(text).unwrap()).unwrap();
            let c = out.op_counts();
            (c.get("while").copied(), c.get("attention").copied())
        };
        assert_eq!(counts(5), (Some(3), None), "5 keys reach the threshold whatever the kind");
        assert_eq!(counts(6), (None, Some(3)), "below it no kind is rewritten");
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
