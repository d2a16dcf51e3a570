//! `decompose` computes what each composite means: the decomposed graph, run on the test
//! interpreter, matches the interpreter's direct implementation of the composite.

mod common;

use common::interp::eval;
use common::{assert_close, random_inputs};
use proptest::prelude::*;
use vidlower_ir::text::parse;
use vidlower_ir::Graph;
use vidlower_passes::{default_pipeline, Decompose, Pass};

/// Checks `decompose` alone and the default pipeline against the composite on a few inputs.
fn check(g: &Graph) {
    let lowered = Decompose.run(g.clone()).unwrap();
    vidlower_ir::verify(&lowered).unwrap();
    assert!(lowered.nodes.iter().all(|n| !n.op.is_composite()));
    let cleaned = default_pipeline().run(g.clone()).unwrap().graph;
    for seed in 0..3 {
        let inputs = random_inputs(g, seed);
        let expected = eval(g, &inputs);
        assert_close(&format!("{} decompose seed {seed}", g.name), &expected, &eval(&lowered, &inputs), 1e-6);
        assert_close(&format!("{} pipeline seed {seed}", g.name), &expected, &eval(&cleaned, &inputs), 1e-6);
    }
}

#[test]
fn softmax_norms_and_gelu() {
    check(
        &parse(
            r#"
graph @composites {
  %0 = input "x" : f32[2,3,8]
  %1 = weight "w" : f32[8]
  %2 = weight "b" : bf16[8]
  %3 = softmax(%0) {axis=1} : f32[2,3,8]
  %4 = softmax(%0) {axis=2} : f32[2,3,8]
  %5 = layer_norm(%0, %1, %2) {eps=1e-5, weight=true, bias=true} : f32[2,3,8]
  %6 = layer_norm(%0, %2) {eps=1e-6, weight=false, bias=true} : f32[2,3,8]
  %7 = layer_norm(%0) {eps=1e-6, weight=false, bias=false} : f32[2,3,8]
  %8 = rms_norm(%0, %1) {eps=1e-6, weight=true} : f32[2,3,8]
  %9 = rms_norm(%0) {eps=1e-6, weight=false} : f32[2,3,8]
  %10 = gelu(%0) {approximate=tanh} : f32[2,3,8]
  %11 = constant() {value=3.0} : f32[2,3,8]
  %12 = mul(%0, %11) : f32[2,3,8]
  %13 = gelu(%12) {approximate=erf} : f32[2,3,8]
  output "s1" = %3
  output "s2" = %4
  output "ln" = %5
  output "ln_bias" = %6
  output "ln_plain" = %7
  output "rms" = %8
  output "rms_plain" = %9
  output "gelu_tanh" = %10
  output "gelu_erf" = %13
}"#,
        )
        .unwrap(),
    );
}

#[test]
fn group_norm_affine_and_plain() {
    check(
        &parse(
            r#"
graph @gn {
  %0 = input "x" : bf16[2,6,2,3,2]
  %1 = weight "w" : f32[6]
  %2 = weight "b" : f32[6]
  %3 = group_norm(%0, %1, %2) {groups=3, eps=1e-6, affine=true} : bf16[2,6,2,3,2]
  %4 = group_norm(%0) {groups=6, eps=1e-5, affine=false} : bf16[2,6,2,3,2]
  %5 = input "y" : f32[3,4]
  %6 = group_norm(%5) {groups=2, eps=1e-5, affine=false} : f32[3,4]
  output "a" = %3
  output "b" = %4
  output "c" = %6
}"#,
        )
        .unwrap(),
    );
}

#[test]
fn erf_gelu_far_out_saturates() {
    // Beyond the clamp at |x/sqrt2| = 4 the approximation is flat; gelu must still be x or 0.
    let g = parse(
        r#"
graph @far {
  %0 = constant() {values=[-12.0, -6.0, -3.0, 0.0, 3.0, 6.0, 12.0]} : f32[7]
  %1 = gelu(%0) {approximate=erf} : f32[7]
  output "y" = %1
}"#,
    )
    .unwrap();
    let got = eval(&Decompose.run(g.clone()).unwrap(), &[]);
    assert_close("far", &eval(&g, &[]), &got, 1e-6);
}

/// An attention graph: q [b,h,sq,d], k [b,h,sk,d], v [b,h,sk,dv], and an optional mask whose
/// dims of size 1 broadcast.
fn attention_graph(dims: [i64; 6], mask: Option<(&str, [bool; 4])>, scale: f64, window: Option<(i64, i64)>) -> Graph {
    let [b, h, sq, sk, d, dv] = dims;
    let mut text = format!(
        "graph @attn {{\n  %0 = input \"q\" : f32[{b},{h},{sq},{d}]\n  %1 = input \"k\" : f32[{b},{h},{sk},{d}]\n  %2 = input \"v\" : f32[{b},{h},{sk},{dv}]\n"
    );
    let window_attr = window.map(|(l, r)| format!(", window=[{l}, {r}]")).unwrap_or_default();
    let kind = if sq == sk { "self" } else { "cross" };
    match mask {
        Some((dtype, full)) => {
            let m: Vec<String> =
                [b, h, sq, sk].iter().zip(full).map(|(&n, f)| if f { n } else { 1 }).map(|n| n.to_string()).collect();
            text += &format!("  %3 = input \"mask\" : {dtype}[{}]\n", m.join(","));
            text += &format!(
                "  %4 = attention(%0, %1, %2, %3) {{kind={kind}, scale={scale:?}, mask=true{window_attr}}} : f32[{b},{h},{sq},{dv}]\n  output \"o\" = %4\n}}"
            );
        }
        None => {
            text += &format!(
                "  %3 = attention(%0, %1, %2) {{kind={kind}, scale={scale:?}, mask=false{window_attr}}} : f32[{b},{h},{sq},{dv}]\n  output \"o\" = %3\n}}"
            );
        }
    }
    parse(&text).unwrap()
}

#[test]
fn attention_forms() {
    check(&attention_graph([1, 2, 4, 6, 8, 3], None, 0.35, None));
    check(&attention_graph([2, 1, 5, 5, 4, 4], Some(("i1", [false, false, true, true])), 0.5, None));
    check(&attention_graph([2, 2, 3, 4, 4, 2], Some(("f32", [true, false, false, true])), 1.0, None));
    check(&attention_graph([1, 1, 6, 6, 2, 2], None, 1.0, Some((1, 1))));
    check(&attention_graph([1, 1, 6, 6, 2, 2], None, 1.0, Some((-1, 0))));
    check(&attention_graph([1, 1, 6, 6, 2, 2], None, 1.0, Some((2, -1))));
    check(&attention_graph([1, 2, 5, 7, 3, 2], Some(("i1", [true, true, true, true])), 0.7, Some((2, 3))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn attention_matches_its_definition(
        dims in (1i64..3, 1i64..3, 1i64..6, 1i64..6, 1i64..5, 1i64..4),
        mask in prop_oneof![Just(None), Just(Some("i1")), Just(Some("f32"))],
        full in any::<[bool; 4]>(),
        scale in 0.1f64..2.0,
        window in prop_oneof![Just(None), (-1i64..4, -1i64..4).prop_map(Some)],
    ) {
        let (b, h, sq, sk, d, dv) = dims;
        check(&attention_graph([b, h, sq, sk, d, dv], mask.map(|m| (m, full)), scale, window));
    }

    #[test]
    fn group_norm_matches_its_definition(n in 1i64..3, groups in 1i64..4, per_group in 1i64..3, rest in prop::collection::vec(1i64..4, 0..3)) {
        let c = groups * per_group;
        let mut shape = vec![n, c];
        shape.extend(&rest);
        let s = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        let text = format!(r#"
graph @gn {{
  %0 = input "x" : f32[{s}]
  %1 = weight "w" : f32[{c}]
  %2 = weight "b" : f32[{c}]
  %3 = group_norm(%0, %1, %2) {{groups={groups}, eps=1e-5, affine=true}} : f32[{s}]
  output "y" = %3
}}"#);
        check(&parse(&text).unwrap());
    }
}
