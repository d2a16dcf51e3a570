//! Snapshot of emitted StableHLO, and the errors the emitter gives.

use vidlower_backends::{emit_module, EmitError, EmitOptions};
use vidlower_ir::text::parse;

const SMALL: &str = r#"
graph @small {
  %0 = input "x" : f32[2,4]
  %1 = weight "w" : f32[4,3] sharding=[2,1]
  %2 = dot_general(%0, %1) {lhs_contract=[1], rhs_contract=[0]} : f32[2,3]
  %3 = constant() {value=1e-6} : f32[]
  %4 = broadcast_in_dim(%3) {dims=[]} : f32[2,3]
  %5 = add(%2, %4) : f32[2,3]
  %6 = reduce(%5) {kind=max, axes=[1]} : f32[2]
  %7 = constant() {value=0.0} : i32[]
  %8 = while(%7, %6) regions {
    graph @cond {
      %0 = input "i" : i32[]
      %1 = input "acc" : f32[2]
      %2 = constant() {value=3.0} : i32[]
      %3 = compare(%0, %2) {dir=LT} : i1[]
      output "c" = %3
    }
    graph @body {
      %0 = input "i" : i32[]
      %1 = input "acc" : f32[2]
      %2 = constant() {value=1.0} : i32[]
      %3 = add(%0, %2) : i32[]
      %4 = exp(%1) : f32[2]
      output "i" = %3
      output "acc" = %4
    }
  } : (i32[], f32[2])
  %9 = get(%8) {index=1} : f32[2]
  output "y" = %9
  output "z" = %5
}
"#;

#[test]
fn small_module_snapshot() {
    let g = parse(SMALL).unwrap();
    let text = emit_module(&g, &EmitOptions { num_partitions: 2 }).unwrap();
    insta::assert_snapshot!(text);
}

#[test]
fn composite_ops_are_refused_with_a_hint() {
    let g = parse("graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = softmax(%0) {axis=0} : f32[2]\n  output \"y\" = %1\n}").unwrap();
    let e = emit_module(&g, &EmitOptions::default()).unwrap_err();
    assert!(matches!(e, EmitError::Composite { node: 1, op: "softmax" }));
    assert!(e.to_string().contains("decompose"));
}

#[test]
fn sharding_must_fit_the_partitions() {
    let g = parse(SMALL).unwrap();
    let e = emit_module(&g, &EmitOptions { num_partitions: 3 }).unwrap_err().to_string();
    assert!(e.contains("2 shards") && e.contains("3 partitions"), "{e}");
}
