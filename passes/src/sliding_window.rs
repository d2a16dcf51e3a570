//! Sliding-window (local) attention: every self-attention (`kind=self`) gets a window of `left`
//! keys before and `right` keys after each query's own position in the flattened token order, as
//! the seeds' `--window_size` meant to (their flag never reached the kernel), and so does every
//! joint attention whose frontend said where its video tokens are (`window_span`), among those
//! tokens only. This changes the model's meaning on purpose: it is what the flag asks for.
//!
//! The window is an attribute of the composite, so every lowering honours it the same way:
//! `decompose` and `exp2_softmax` mask the scores, and `blockwise_attention` masks them and skips
//! the key blocks no query of a block can reach (which is where the time goes). An attention that
//! already has a window keeps the narrower side of each. A negative size leaves that side
//! unbounded (the IR's convention: `(-1, 0)` is causal). Run it before the attention lowerings.
//!
//! The op's kind decides, never its lengths:
//! - cross attention (text keys) has no positions in common with the queries: left alone;
//! - joint attention (CogVideoX, HunyuanVideo: text and video tokens in one sequence, so queries
//!   and keys have equal lengths) is windowed over its video tokens only: the frontend marks
//!   them (`window_span`, the contiguous positions of the flattened video), the window holds
//!   between two of them, and the text tokens still attend to and are attended by every token
//!   (a flattened index would otherwise window the text by where it happens to sit and cut the
//!   video off from it). A joint attention without a span is left alone.

use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use vidlower_ir::{AttentionKind, Graph, Op};

/// The `sliding_window` pass: `left` and `right` keys around each query of self-attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow {
    pub left: i64,
    pub right: i64,
}

impl SlidingWindow {
    /// The pass name (it takes a window, so it is not in the argument-less registry).
    pub const NAME: &'static str = "sliding_window";
}

impl Pass for SlidingWindow {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        replace_nodes(&graph, Self::NAME, &mut |rw, v, node| {
            let Op::Attention { kind, scale, has_mask, window, window_span } = node.op else {
                return Ok(None);
            };
            let windowed = match kind {
                AttentionKind::SelfAttention => true,
                AttentionKind::Joint => window_span.is_some(),
                AttentionKind::Cross => false,
            };
            if !windowed {
                return Ok(None);
            }
            let window = Some(match window {
                Some((l, r)) => (narrower(l, self.left), narrower(r, self.right)),
                None => (self.left, self.right),
            });
            let args = rw.operands(v);
            let op = Op::Attention { kind, scale, has_mask, window, window_span };
            rw.new.push(op, args).map(Some).map_err(PassError::ir(Self::NAME))
        })
    }
}

/// The narrower of two window sides, where a negative side is unbounded.
fn narrower(a: i64, b: i64) -> i64 {
    match (a < 0, b < 0) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::print;

    const SELF_AND_CROSS: &str = r#"
graph @block {
  %0 = input "x" : f32[1,2,6,4]
  %1 = input "text" : f32[1,2,3,4]
  %2 = attention(%0, %0, %0) {kind=self, scale=0.5, mask=false} : f32[1,2,6,4]
  %3 = attention(%2, %1, %1) {kind=cross, scale=0.5, mask=false} : f32[1,2,6,4]
  %4 = attention(%3, %3, %3) {kind=self, scale=0.5, mask=false, window=[1, 4]} : f32[1,2,6,4]
  output "y" = %4
}"#;

    #[test]
    fn windows_self_attention_only_and_keeps_the_narrower_side() {
        let out = crate::test_support::run_pass(SlidingWindow { left: 2, right: 2 }, SELF_AND_CROSS);
        insta::assert_snapshot!(print(&out));
        let windows: Vec<_> = out
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Attention { window, .. } => Some(window),
                _ => None,
            })
            .collect();
        assert_eq!(windows, vec![Some((2, 2)), None, Some((1, 2))]);
    }

    #[test]
    fn a_negative_side_is_unbounded() {
        assert_eq!((narrower(-1, 3), narrower(3, -1), narrower(-1, -1), narrower(2, 5)), (3, 3, -1, 2));
        let out = crate::test_support::run_pass(SlidingWindow { left: -1, right: 0 }, SELF_AND_CROSS);
        let last = out.nodes.iter().rev().find(|n| n.op.name() == "attention").unwrap();
        let kind = AttentionKind::SelfAttention;
        assert_eq!(last.op, Op::Attention { kind, scale: 0.5, has_mask: false, window: Some((1, 0)), window_span: None });
    }

    /// Queries and keys of equal length everywhere: only the kind tells the self-attention from
    /// the joint text+video one and from a cross attention whose text happens to be as long.
    const EQUAL_LENGTHS: &str = r#"
graph @joint_block {
  %0 = input "tokens" : f32[1,2,6,4]
  %1 = input "text" : f32[1,2,6,4]
  %2 = attention(%0, %0, %0) {kind=joint, scale=0.5, mask=false} : f32[1,2,6,4]
  %3 = attention(%2, %1, %1) {kind=cross, scale=0.5, mask=false} : f32[1,2,6,4]
  %4 = attention(%3, %3, %3) {kind=self, scale=0.5, mask=false} : f32[1,2,6,4]
  output "y" = %4
}"#;

    #[test]
    fn the_kind_decides_not_the_lengths_joint_stays_unwindowed() {
        let out = crate::test_support::run_pass(SlidingWindow { left: 1, right: 1 }, EQUAL_LENGTHS);
        insta::assert_snapshot!(print(&out));
        let windows: Vec<_> = out
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Attention { kind, window, .. } => Some((kind, window)),
                _ => None,
            })
            .collect();
        use AttentionKind::*;
        assert_eq!(windows, vec![(Joint, None), (Cross, None), (SelfAttention, Some((1, 1)))]);
    }

    /// A joint attention whose frontend marked its video tokens gets the window (applied among
    /// them by the lowerings); one without a span stays unwindowed.
    #[test]
    fn joint_attention_with_a_video_span_is_windowed() {
        let src = r#"
graph @joint {
  %0 = input "tokens" : f32[1,2,6,4]
  %1 = attention(%0, %0, %0) {kind=joint, scale=0.5, mask=false, window_span=[2, 6]} : f32[1,2,6,4]
  %2 = attention(%1, %1, %1) {kind=joint, scale=0.5, mask=false} : f32[1,2,6,4]
  output "y" = %2
}"#;
        let out = crate::test_support::run_pass(SlidingWindow { left: 1, right: 0 }, src);
        let ops: Vec<_> = out.nodes.iter().filter(|n| n.op.name() == "attention").map(|n| n.op.clone()).collect();
        let joint = |window, window_span| Op::Attention { kind: AttentionKind::Joint, scale: 0.5, has_mask: false, window, window_span };
        assert_eq!(ops, vec![joint(Some((1, 0)), Some((2, 6))), joint(None, None)]);
        assert!(print(&out).contains("window=[1, 0], window_span=[2, 6]"), "{}", print(&out));
    }
}
