//! Snapshot of emitted StableHLO, and the errors the emitter gives.

use vidlower_backends::{emit_module, EmitError, EmitOptions, ShardingFormat};
use vidlower_ir::text::parse;

const SMALL: &str = r#"
graph @small {
  mesh dp=2,tp=4
  %0 = input "x" : f32[2,4] sharding=[{dp},{}]
  %1 = weight "w" : f32[4,3] sharding=[{},{tp}]
  %2 = dot_general(%0, %1) {lhs_contract=[1], rhs_contract=[0]} : f32[2,3]
  %3 = constant() {value=1e-6} : f32[]
  %4 = broadcast_in_dim(%3) {dims=[]} : f32[2,3]
  %5 = add(%2, %4) : f32[2,3] sharding=[{dp},{tp}]
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
      %4 = exp(%1) : f32[2] sharding=[{dp}]
      output "i" = %3
      output "acc" = %4
    }
  } : (i32[], f32[2])
  %9 = get(%8) {index=1} : f32[2]
  %10 = reshard(%5) : f32[2,3] sharding=[{},{tp}]
  output "y" = %9
  output "z" = %10
}
"#;

/// Shardy: one `sdy.mesh`, `#sdy.sharding` on arguments and results, per-value shardings on
/// ops (inside the loop too), `sdy.sharding_constraint`; 8 partitions from the mesh.
#[test]
fn small_module_snapshot_shardy() {
    let g = parse(SMALL).unwrap();
    let text = emit_module(&g, &EmitOptions { sharding: ShardingFormat::Shardy }).unwrap();
    assert!(text.contains("mhlo.num_partitions = 8 : i32") && !text.contains("mhlo.sharding"), "{text}");
    insta::assert_snapshot!(text);
}

/// GSPMD: `mhlo.sharding` strings with the mesh's device order, the reshard as `@Sharding`.
#[test]
fn small_module_snapshot_gspmd() {
    let g = parse(SMALL).unwrap();
    let text = emit_module(&g, &EmitOptions { sharding: ShardingFormat::Gspmd }).unwrap();
    assert!(text.contains("mhlo.num_partitions = 8 : i32") && !text.contains("sdy."), "{text}");
    assert!(text.contains(r#""{devices=[1,4,2]<=[2,4]T(1,0) last_tile_dim_replicate}""#), "{text}");
    insta::assert_snapshot!(text);
}

/// Without a mesh: one partition, no annotations, and a reshard is its operand.
#[test]
fn no_mesh_means_one_partition_and_no_annotations() {
    let text = SMALL
        .replace("  mesh dp=2,tp=4\n", "")
        .replace(" sharding=[{dp},{}]", "")
        .replace(" sharding=[{},{tp}]", " sharding=[{},{}]")
        .replace(" sharding=[{dp},{tp}]", "")
        .replace(" sharding=[{dp}]", "");
    let g = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for sharding in [ShardingFormat::Shardy, ShardingFormat::Gspmd] {
        let m = emit_module(&g, &EmitOptions { sharding }).unwrap();
        assert!(m.contains("mhlo.num_partitions = 1 : i32"), "{m}");
        assert!(!m.contains("sdy") && !m.contains("mhlo.sharding") && !m.contains("Sharding"), "{m}");
        assert!(m.contains(r#""func.return"(%v8#1, %v5)"#), "{m}");
    }
}

#[test]
fn composite_ops_are_refused_with_a_hint() {
    let g = parse("graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = softmax(%0) {axis=0} : f32[2]\n  output \"y\" = %1\n}").unwrap();
    let e = emit_module(&g, &EmitOptions::default()).unwrap_err();
    assert!(matches!(e, EmitError::Composite { node: 1, op: "softmax" }));
    assert!(e.to_string().contains("decompose"));
}
