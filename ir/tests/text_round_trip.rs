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

/// Every primitive op (while regions, tuples, dense constants, shardings, custom calls); the MLIR
/// tests in backends/ verify the module emitted from the same file.
const EVERY_PRIMITIVE: &str = include_str!("data/every_primitive.ir");

/// Every composite op.
const COMPOSITES: &str = r#"
graph @composites {
  %0 = input "x" : f32[2,4]
  %1 = constant() {values=[1.0, -2.5, 3.0, 0.1]} : f32[4]
  %2 = softmax(%0) {axis=1} : f32[2,4]
  %3 = reshape(%0) : f32[1,1,2,4]
  %4 = compare(%3, %3) {dir=GE} : i1[1,1,2,4]
  %5 = slice(%4) {start=[0, 0, 0, 0], limit=[1, 1, 2, 2], strides=[1, 1, 1, 1]} : i1[1,1,2,2]
  %6 = attention(%3, %3, %3, %5) {kind=self, scale=0.5, mask=true, window=[1, 0]} : f32[1,1,2,4]
  %7 = layer_norm(%0, %1, %1) {eps=1e-5, weight=true, bias=true} : f32[2,4]
  %8 = rms_norm(%0) {eps=1e-6, weight=false} : f32[2,4]
  %9 = reshape(%0) : f32[1,4,2]
  %10 = group_norm(%9) {groups=2, eps=1e-6, affine=false} : f32[1,4,2]
  %11 = gelu(%0) {approximate=erf} : f32[2,4]
  %12 = slice(%3) {start=[0, 0, 0, 0], limit=[1, 1, 1, 4], strides=[1, 1, 1, 1]} : f32[1,1,1,4]
  %13 = attention(%6, %12, %12) {kind=cross, scale=0.5, mask=false} : f32[1,1,2,4]
  %14 = attention(%13, %13, %13) {kind=joint, scale=0.25, mask=false} : f32[1,1,2,4]
  output "a" = %14
  output "b" = %10
}
"#;

#[test]
fn every_op_round_trips() {
    let mut names = std::collections::BTreeSet::new();
    for text in [EVERY_PRIMITIVE, COMPOSITES] {
        let g = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let printed = print(&g);
        assert_eq!(parse(&printed).unwrap(), g);
        assert_eq!(print(&parse(&printed).unwrap()), printed);
        names.extend(g.op_counts().into_keys());
    }
    let g = parse(EVERY_PRIMITIVE).unwrap();
    assert_eq!(g.node(ValueId(1)).sharding, Some(Sharding::split(2, 0, "tp")));
    assert_eq!(g.mesh, Some(Mesh::parse("dp=2,tp=2").unwrap()));
    // Every op of the op set appears in one of the two graphs.
    for name in ["input", "weight", "constant", "iota", "compare", "select", "convert", "broadcast_in_dim", "reshape",
        "transpose", "slice", "dynamic_slice", "dynamic_update_slice", "take", "concatenate", "pad", "dot_general",
        "convolution", "reduce", "while", "custom_call", "get", "reshard", "softmax", "attention", "layer_norm", "rms_norm",
        "group_norm", "gelu"]
        .iter()
        .chain(UnaryOp::ALL.iter().map(|u| u.name()).collect::<Vec<_>>().iter())
        .chain(BinaryOp::ALL.iter().map(|b| b.name()).collect::<Vec<_>>().iter())
    {
        assert!(names.contains(name), "no `{name}` in the every-op graphs");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Every attention attribute (kind, scale, mask, window) prints and parses back.
    #[test]
    fn attention_attributes_round_trip(
        kind in 0..3usize,
        scale in -4.0f64..4.0,
        mask in any::<bool>(),
        window in proptest::option::of((-1i64..5, -1i64..5)),
    ) {
        let kind = AttentionKind::ALL[kind];
        let mut b = Builder::new("attn");
        let q = b.input("q", TensorType::new(DType::F32, vec![1, 2, 3, 4])).unwrap();
        let k = if kind == AttentionKind::Cross { b.input("k", TensorType::new(DType::F32, vec![1, 2, 5, 4])).unwrap() } else { q };
        let m = if mask { Some(b.input("m", TensorType::new(DType::I1, vec![1, 1, 3, b.shape(k)[2]])).unwrap()) } else { None };
        let y = b.attention(kind, q, k, k, scale, m, window).unwrap();
        b.output("y", y);
        let g = b.finish().unwrap();
        let text = print(&g);
        prop_assert!(text.contains(&format!("kind={}", kind.name())), "{}", text);
        prop_assert_eq!(parse(&text).unwrap(), g);
    }
}

#[test]
fn attention_kind_is_required_and_checked() {
    let text = |attrs: &str, k: &str| {
        format!("graph @g {{\n  %0 = input \"q\" : f32[1,1,2,4]\n  %1 = input \"k\" : f32[1,1,{k},4]\n  %2 = attention(%0, %1, %1) {{{attrs}}} : f32[1,1,2,4]\n  output \"y\" = %2\n}}\n")
    };
    let e = parse(&text("scale=0.5", "2")).unwrap_err().to_string();
    assert!(e.contains("attention needs attribute `kind`"), "{e}");
    let e = parse(&text("kind=sideways, scale=0.5", "2")).unwrap_err().to_string();
    assert!(e.contains("unknown attention kind `sideways`"), "{e}");
    assert!(parse(&text("kind=cross, scale=0.5", "3")).is_ok());
    for kind in ["self", "joint"] {
        let e = parse(&text(&format!("kind={kind}, scale=0.5"), "3")).unwrap_err().to_string();
        assert!(e.contains(&format!("{kind} attention takes q and k from one sequence: q has 2 tokens, k 3")), "{e}");
    }
    // A window span: positions of the one sequence, printed back as parsed.
    let ok = text("kind=joint, scale=0.5, mask=false, window=[1, 0], window_span=[1, 2]", "2");
    assert_eq!(vidlower_ir::text::print(&parse(&ok).unwrap()).trim_end(), ok.trim_end());
    for (attrs, k) in [("kind=joint, scale=0.5, window_span=[1, 3]", "2"), ("kind=self, scale=0.5, window_span=[1, 1]", "2"), ("kind=cross, scale=0.5, window_span=[0, 1]", "3")] {
        let e = parse(&text(attrs, k)).unwrap_err().to_string();
        assert!(e.contains("window_span") && e.contains("0 <= start < end <= tokens"), "{attrs}: {e}");
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
