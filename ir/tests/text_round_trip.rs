//! The text form prints and parses back to an equal graph, for random graphs and for a graph that
//! uses every op (while regions, tuples, dense constants, shardings, custom calls included).

use proptest::prelude::*;
use vidlower_ir::random_graph::random_graph;
use vidlower_ir::text::{parse, print};
use vidlower_ir::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_graphs_round_trip(seed in any::<u64>()) {
        let g = random_graph(seed);
        let text = print(&g);
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &g);
        prop_assert_eq!(print(&back), text);
    }
}

/// A graph that uses every op kind at least once.
const EVERY_OP: &str = r#"
graph @every_op {
  %0 = input "x" : f32[2,4]
  %1 = weight "w.weight" : f32[4,4] sharding=[2,1]
  %2 = input "i" : i32[]
  %3 = constant() {values=[1.0, -2.5, 3.0, 0.1]} : f32[4]
  %4 = constant() {value=0.0} : f32[]
  %5 = iota() {dim=1} : i32[2,4]
  %6 = neg(%0) : f32[2,4]
  %7 = abs(%6) : f32[2,4]
  %8 = exp(%7) : f32[2,4]
  %9 = log(%8) : f32[2,4]
  %10 = sqrt(%8) : f32[2,4]
  %11 = rsqrt(%8) : f32[2,4]
  %12 = tanh(%9) : f32[2,4]
  %13 = logistic(%12) : f32[2,4]
  %14 = sin(%13) : f32[2,4]
  %15 = cos(%14) : f32[2,4]
  %16 = floor(%15) : f32[2,4]
  %17 = sign(%16) : f32[2,4]
  %18 = add(%17, %10) : f32[2,4]
  %19 = sub(%18, %11) : f32[2,4]
  %20 = mul(%19, %0) : f32[2,4]
  %21 = div(%20, %8) : f32[2,4]
  %22 = max(%21, %0) : f32[2,4]
  %23 = min(%22, %0) : f32[2,4]
  %24 = pow(%8, %0) : f32[2,4]
  %25 = compare(%23, %24) {dir=LT} : i1[2,4]
  %26 = select(%25, %23, %24) : f32[2,4]
  %27 = convert(%26) : bf16[2,4]
  %28 = broadcast_in_dim(%3) {dims=[1]} : f32[2,4]
  %29 = reshape(%28) : f32[8]
  %30 = transpose(%0) {perm=[1, 0]} : f32[4,2]
  %31 = slice(%29) {start=[1], limit=[7], strides=[2]} : f32[3]
  %32 = dynamic_slice(%0, %2, %2) : f32[1,2]
  %33 = dynamic_update_slice(%0, %32, %2, %2) : f32[2,4]
  %34 = concatenate(%0, %33) {dim=0} : f32[4,4]
  %35 = pad(%0, %4) {low=[1, 0], high=[0, -1], interior=[0, 1]} : f32[3,6]
  %36 = dot_general(%0, %1) {lhs_batch=[], rhs_batch=[], lhs_contract=[1], rhs_contract=[1]} : f32[2,4]
  %37 = reshape(%0) : f32[1,2,4]
  %38 = constant() {value=0.5} : f32[3,2,2]
  %39 = convolution(%37, %38) {strides=[1], padding=[[1, 1]], lhs_dilation=[1], rhs_dilation=[2], groups=1} : f32[1,3,4]
  %40 = reduce(%36) {kind=max, axes=[1]} : f32[2]
  %41 = while(%2, %0) regions {
    graph @cond {
      %0 = input "i" : i32[]
      %1 = input "acc" : f32[2,4]
      %2 = constant() {value=3.0} : i32[]
      %3 = compare(%0, %2) {dir=LT} : i1[]
      output "continue" = %3
    }
    graph @body {
      %0 = input "i" : i32[]
      %1 = input "acc" : f32[2,4]
      %2 = constant() {value=1.0} : i32[]
      %3 = add(%0, %2) : i32[]
      %4 = add(%1, %1) : f32[2,4]
      output "i" = %3
      output "acc" = %4
    }
  } : (i32[], f32[2,4])
  %42 = get(%41) {index=1} : f32[2,4]
  %43 = custom_call(%0) {target="my_kernel", backend_config="{\"a\": 1}", side_effect=false} : (f32[2,4], f32[2])
  %44 = softmax(%42) {axis=1} : f32[2,4]
  %45 = reshape(%0) : f32[1,1,2,4]
  %46 = compare(%45, %45) {dir=GE} : i1[1,1,2,4]
  %47 = reshape(%46) : i1[1,1,2,4]
  %48 = slice(%47) {start=[0, 0, 0, 0], limit=[1, 1, 2, 2], strides=[1, 1, 1, 1]} : i1[1,1,2,2]
  %49 = attention(%45, %45, %45, %48) {scale=0.5, mask=true, window=[1, 0]} : f32[1,1,2,4]
  %50 = layer_norm(%0, %3, %3) {eps=1e-5, weight=true, bias=true} : f32[2,4]
  %51 = rms_norm(%0) {eps=1e-6, weight=false} : f32[2,4]
  %52 = reshape(%0) : f32[1,4,2]
  %53 = group_norm(%52) {groups=2, eps=1e-6, affine=false} : f32[1,4,2]
  %54 = gelu(%0) {approximate=erf} : f32[2,4]
  output "a" = %27
  output "b" = %34
  output "c" = %53
}
"#;

#[test]
fn every_op_round_trips() {
    let g = parse(EVERY_OP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.inputs.len(), 3);
    assert_eq!(g.node(ValueId(1)).sharding, Some(Sharding { tiles: vec![2, 1] }));
    let text = print(&g);
    assert_eq!(parse(&text).unwrap(), g);
    // Every op name in the op set appears.
    let counts = g.op_counts();
    for name in ["while", "custom_call", "get", "attention", "convolution", "dynamic_update_slice", "iota", "pad"] {
        assert!(counts.contains_key(name), "missing {name}");
    }
}

#[test]
fn special_floats_round_trip() {
    let mut b = Builder::new("specials");
    let x = b.input("x", TensorType::new(DType::F32, vec![4])).unwrap();
    let c = b
        .constant(vec![f64::INFINITY, f64::NEG_INFINITY, 1e-300, -0.0], TensorType::new(DType::F32, vec![4]))
        .unwrap();
    let y = b.add(x, c).unwrap();
    b.output("y", y);
    let g = b.finish().unwrap();
    let back = parse(&print(&g)).unwrap();
    assert_eq!(print(&back), print(&g));
}
