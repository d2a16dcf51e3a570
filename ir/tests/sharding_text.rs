//! Meshes and shardings in the IR text: they print and parse back, `while` regions use the
//! graph's mesh, and the verifier names the node and what was wrong with a sharding.

use vidlower_ir::text::{parse, print};
use vidlower_ir::*;

const SHARDED: &str = r#"graph @sharded {
  mesh dp=2,tp=4
  %0 = input "x" : f32[4,8] sharding=[{dp},{}]
  %1 = weight "w" : f32[8,8] sharding=[{},{tp}]
  %2 = dot_general(%0, %1) {lhs_batch=[], rhs_batch=[], lhs_contract=[1], rhs_contract=[0]} : f32[4,8] sharding=[{dp},{tp}]
  %3 = reshard(%2) : f32[4,8] sharding=[{},{dp,tp}]
  %4 = constant() {value=0.0} : i32[]
  %5 = while(%4, %3) regions {
    graph @cond {
      %0 = input "i" : i32[]
      %1 = input "acc" : f32[4,8]
      %2 = constant() {value=2.0} : i32[]
      %3 = compare(%0, %2) {dir=LT} : i1[]
      output "continue" = %3
    }
    graph @body {
      %0 = input "i" : i32[]
      %1 = input "acc" : f32[4,8] sharding=[{},{dp,tp}]
      %2 = constant() {value=1.0} : i32[]
      %3 = add(%0, %2) : i32[]
      %4 = add(%1, %1) : f32[4,8] sharding=[{tp},{}]
      output "i" = %3
      output "acc" = %4
    }
  } : (i32[], f32[4,8])
  %6 = get(%5) {index=1} : f32[4,8]
  output "y" = %6
}
"#;

#[test]
fn mesh_and_shardings_round_trip() {
    let g = parse(SHARDED).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.mesh.as_ref().map(|m| m.to_string()).as_deref(), Some("dp=2,tp=4"));
    assert_eq!(g.node(ValueId(1)).sharding, Some(Sharding::split(2, 1, "tp")));
    assert_eq!(g.node(ValueId(3)).sharding.as_ref().unwrap().dims[1], ["dp", "tp"]);
    assert_eq!(print(&g), SHARDED);
}

/// `SHARDED` with `from` replaced by `to`, parsed; the error text.
fn error_after(from: &str, to: &str) -> String {
    assert!(SHARDED.contains(from), "{from}");
    parse(&SHARDED.replacen(from, to, 1)).unwrap_err().to_string()
}

#[test]
fn verifier_names_the_node_and_the_bad_sharding() {
    let e = error_after("f32[4,8] sharding=[{dp},{}]", "f32[4,8] sharding=[{dp}]");
    assert!(e.contains("%0 = input") && e.contains("[{dp}]") && e.contains("f32[4,8]"), "{e}");
    let e = error_after("sharding=[{},{tp}]", "sharding=[{},{sp}]");
    assert!(e.contains("%1 = weight") && e.contains("no axis `sp`") && e.contains("dp=2,tp=4"), "{e}");
    let e = error_after("sharding=[{dp},{tp}]", "sharding=[{tp},{tp}]");
    assert!(e.contains("%2 = dot_general") && e.contains("`tp` twice"), "{e}");
    let e = error_after("  mesh dp=2,tp=4\n", "");
    assert!(e.contains("has no mesh") && e.contains("`dp`"), "{e}");
    let e = error_after(" : f32[4,8] sharding=[{},{dp,tp}]\n  %4", " : f32[4,8]\n  %4");
    assert!(e.contains("reshard needs a sharding"), "{e}");
    // Inside a region the graph's mesh applies.
    let e = error_after("add(%1, %1) : f32[4,8] sharding=[{tp},{}]", "add(%1, %1) : f32[4,8] sharding=[{fsdp},{}]");
    assert!(e.contains("no axis `fsdp`"), "{e}");
}

#[test]
fn bad_mesh_headers_are_parse_errors() {
    let e = error_after("mesh dp=2,tp=4", "mesh dp=2,dp=4");
    assert!(e.contains("line 2") && e.contains("`dp` is named twice"), "{e}");
    let e = error_after("mesh dp=2,tp=4", "mesh dp=0");
    assert!(e.contains("size 0"), "{e}");
    let e = error_after("mesh dp=2,tp=4", "mesh dp");
    assert!(e.contains("expected `=`"), "{e}");
}

#[test]
fn reshard_keeps_its_operand_type() {
    let g = parse(SHARDED).unwrap();
    let t = vidlower_ir::infer::infer_type(&Op::Reshard, &[g.ty(ValueId(2))]).unwrap();
    assert_eq!(&t, g.ty(ValueId(2)));
    assert!(vidlower_ir::infer::infer_type(&Op::Reshard, &[]).is_err());
}
