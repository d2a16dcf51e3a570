//! Decomposition: every composite op (softmax, attention, layer/rms/group norm, gelu) lowered to
//! primitives, for backends without a better lowering. Each composite's result type is kept; a
//! composite's sharding moves to the node that now produces its value. Loop regions are lowered
//! too. What each lowering computes, and in which precision, is documented in its module.

// pub(crate): exp2_softmax and k_smooth reuse the attention lowering's helpers and the emitter.
pub(crate) mod attention;
pub(crate) mod emit;
mod gelu;
mod norms;

use crate::rewrite::replace_nodes;
use crate::{Pass, PassError};
use emit::Emitter;
use vidlower_ir::{Graph, Op, ValueId};

/// The `decompose` pass.
pub struct Decompose;

impl Decompose {
    /// The registry name.
    pub const NAME: &'static str = "decompose";
}

impl Pass for Decompose {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        decompose(&graph)
    }
}

fn decompose(g: &Graph) -> Result<Graph, PassError> {
    replace_nodes(g, Decompose::NAME, &mut |rw, v, node| {
        if !node.op.is_composite() {
            return Ok(None);
        }
        let args = rw.operands(v);
        lower(&mut Emitter { g: &mut rw.new }, &node.op, &args).map(Some)
    })
}

/// The primitives computing composite `op` on `args`; returns the value replacing it.
fn lower(em: &mut Emitter, op: &Op, args: &[ValueId]) -> Result<ValueId, PassError> {
    let arg = |present: bool, index: &mut usize| {
        present.then(|| {
            *index += 1;
            args[*index]
        })
    };
    let mut next = 0;
    match op {
        Op::Softmax { axis } => attention::softmax_op(em, args[0], *axis),
        Op::Attention { scale, has_mask, window, window_span, .. } => {
            attention::attention(em, args, *scale, *has_mask, *window, *window_span)
        }
        Op::LayerNorm { eps, has_weight, has_bias } => {
            let weight = arg(*has_weight, &mut next);
            let bias = arg(*has_bias, &mut next);
            norms::layer_norm(em, args[0], *eps, weight, bias)
        }
        Op::RmsNorm { eps, has_weight } => norms::rms_norm(em, args[0], *eps, arg(*has_weight, &mut next)),
        Op::GroupNorm { groups, eps, affine } => {
            let params = affine.then(|| (args[1], args[2]));
            norms::group_norm(em, args[0], *groups, *eps, params)
        }
        Op::Gelu { approximate } => gelu::gelu(em, args[0], *approximate),
        other => Err(PassError::failed(Decompose::NAME, format!("{} is not a composite", other.name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(text: &str) -> Graph {
        let input = parse(text).unwrap();
        let out = Decompose.run(input.clone()).unwrap();
        vidlower_ir::verify(&out).unwrap();
        assert!(!out.op_counts().keys().any(|name| [
            "softmax",
            "attention",
            "layer_norm",
            "rms_norm",
            "group_norm",
            "gelu"
        ]
        .contains(name)));
        for (a, b) in input.outputs.iter().zip(&out.outputs) {
            assert_eq!((&a.name, input.ty(a.value)), (&b.name, out.ty(b.value)));
        }
        out
    }

    #[test]
    fn softmax() {
        insta::assert_snapshot!(print(&run(r#"
graph @softmax {
  %0 = input "x" : f32[2,3,5]
  %1 = softmax(%0) {axis=1} : f32[2,3,5]
  output "y" = %1
}"#)));
    }

    #[test]
    fn softmax_in_bf16_computes_in_f32() {
        let out = run(r#"
graph @softmax {
  %0 = input "x" : bf16[4,8]
  %1 = softmax(%0) {axis=1} : bf16[4,8]
  output "y" = %1
}"#);
        let ops: Vec<_> = out.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(ops.first(), Some(&"input"));
        assert_eq!(ops[1], "convert");
        assert_eq!(ops.last(), Some(&"convert"));
        assert!(out.nodes[2..out.nodes.len() - 1]
            .iter()
            .all(|n| n.ty.tensor().unwrap().dtype == vidlower_ir::DType::F32));
    }

    #[test]
    fn attention_with_boolean_mask_and_window() {
        insta::assert_snapshot!(print(&run(r#"
graph @attn {
  %0 = input "q" : bf16[1,2,4,8]
  %1 = input "k" : bf16[1,2,6,8]
  %2 = input "v" : bf16[1,2,6,16]
  %3 = input "mask" : i1[1,1,4,6]
  %4 = attention(%0, %1, %2, %3) {kind=cross, scale=0.35355339059327373, mask=true, window=[1, 2]} : bf16[1,2,4,16]
  output "o" = %4
}"#)));
    }

    #[test]
    fn attention_with_float_mask_and_no_window() {
        insta::assert_snapshot!(print(&run(r#"
graph @attn {
  %0 = input "q" : f32[2,1,3,4]
  %1 = input "k" : f32[2,1,3,4]
  %2 = input "v" : f32[2,1,3,4]
  %3 = input "bias" : f32[2,1,3,3]
  %4 = attention(%0, %1, %2, %3) {kind=self, scale=1.0, mask=true} : f32[2,1,3,4]
  %5 = attention(%0, %1, %2) {kind=self, scale=0.5, mask=false, window=[-1, -1]} : f32[2,1,3,4]
  %6 = attention(%0, %1, %2) {kind=self, scale=0.5, mask=false, window=[-1, 0]} : f32[2,1,3,4]
  output "a" = %4
  output "b" = %5
  output "c" = %6
}"#)));
    }

    #[test]
    fn layer_norm_bf16_with_f32_params() {
        insta::assert_snapshot!(print(&run(r#"
graph @ln {
  %0 = input "x" : bf16[2,4,8]
  %1 = weight "norm.weight" : f32[8]
  %2 = weight "norm.bias" : bf16[8]
  %3 = layer_norm(%0, %1, %2) {eps=1e-6, weight=true, bias=true} : bf16[2,4,8]
  %4 = layer_norm(%0) {eps=1e-5, weight=false, bias=false} : bf16[2,4,8]
  output "a" = %3
  output "b" = %4
}"#)));
    }

    #[test]
    fn layer_norm_with_bias_only_takes_the_right_operand() {
        let out = run(r#"
graph @ln {
  %0 = input "x" : f32[3,8]
  %1 = weight "norm.bias" : f16[8]
  %2 = layer_norm(%0, %1) {eps=1e-5, weight=false, bias=true} : f32[3,8]
  output "y" = %2
}"#);
        let last = out.node(out.outputs[0].value);
        assert_eq!(last.op, Op::Binary(vidlower_ir::BinaryOp::Add));
    }

    #[test]
    fn rms_norm() {
        insta::assert_snapshot!(print(&run(r#"
graph @rms {
  %0 = input "x" : f16[2,8]
  %1 = weight "norm.weight" : f16[8]
  %2 = rms_norm(%0, %1) {eps=1e-6, weight=true} : f16[2,8]
  output "y" = %2
}"#)));
    }

    #[test]
    fn group_norm() {
        insta::assert_snapshot!(print(&run(r#"
graph @gn {
  mesh dp=2
  %0 = input "x" : f32[2,6,3,4]
  %1 = weight "norm.weight" : f32[6]
  %2 = weight "norm.bias" : f32[6]
  %3 = group_norm(%0, %1, %2) {groups=3, eps=1e-6, affine=true} : f32[2,6,3,4]
  %4 = group_norm(%0) {groups=2, eps=1e-6, affine=false} : f32[2,6,3,4] sharding=[{dp},{},{},{}]
  output "a" = %3
  output "b" = %4
}"#)));
    }

    #[test]
    fn gelu_tanh_and_erf() {
        insta::assert_snapshot!(print(&run(r#"
graph @gelu {
  %0 = input "x" : bf16[4]
  %1 = gelu(%0) {approximate=tanh} : bf16[4]
  %2 = input "y" : f32[4]
  %3 = gelu(%2) {approximate=erf} : f32[4]
  output "a" = %1
  output "b" = %3
}"#)));
    }

    #[test]
    fn erf_approximation_is_within_its_bound() {
        // erf to ~1e-13: its Taylor series up to 3 (little cancellation there), erfc's continued
        // fraction beyond.
        fn erf_exact(x: f64) -> f64 {
            let sqrt_pi = std::f64::consts::PI.sqrt();
            let a = x.abs();
            if a > 3.0 {
                let k = (1..=80).rev().fold(a, |k, n| a + (n as f64 / 2.0) / k);
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
        let mut worst: f64 = 0.0;
        for i in -6000..=6000 {
            let x = i as f64 / 1000.0;
            let exact = erf_exact(x);
            worst = worst.max((gelu::erf_reference(x) - exact).abs());
        }
        assert!(worst < 7e-8, "worst error {worst}");
    }

    #[test]
    fn lowers_inside_loops_and_keeps_sharding() {
        let out = run(r#"
graph @loop {
  mesh dp=2
  %0 = input "x" : f32[2,4]
  %1 = softmax(%0) {axis=1} : f32[2,4] sharding=[{dp},{}]
  %2 = while(%1) regions {
    graph @cond {
      %0 = input "x" : f32[2,4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[2,4]
      %1 = gelu(%0) {approximate=tanh} : f32[2,4]
      output "x" = %1
    }
  } : (f32[2,4])
  %3 = get(%2) {index=0} : f32[2,4]
  output "y" = %3
}"#);
        let Op::While { body, .. } = &out.nodes.iter().find(|n| n.op.name() == "while").unwrap().op else {
            unreachable!()
        };
        assert!(body.nodes.iter().all(|n| !n.op.is_composite()));
        let softmax_result = out.nodes.iter().position(|n| n.op.name() == "while").unwrap() - 1;
        assert_eq!(out.nodes[softmax_result].sharding, Some(vidlower_ir::Sharding::split(2, 0, "dp")));
    }
}
