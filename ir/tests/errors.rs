//! Bad graphs give errors that name the op, the operand types and what was expected.

use vidlower_ir::text::parse;
use vidlower_ir::*;

fn f32s(shape: &[i64]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

#[test]
fn builder_names_op_and_shapes() {
    let mut b = Builder::new("bad");
    let x = b.input("x", f32s(&[2, 3])).unwrap();
    let y = b.input("y", f32s(&[4, 3])).unwrap();
    let e = b.add(x, y).unwrap_err().to_string();
    assert!(e.contains("add") && e.contains("f32[2,3]") && e.contains("f32[4,3]"), "{e}");

    let e = b.matmul(x, y).unwrap_err().to_string();
    assert!(e.contains("dot_general") && e.contains("size 3") && e.contains("size 4"), "{e}");

    let e = b.reshape(x, &[5]).unwrap_err().to_string();
    assert!(e.contains("reshape") && e.contains("6 elements"), "{e}");

    b.weight("proj.weight", f32s(&[8, 3])).unwrap();
    let e = b.weight("proj.weight", f32s(&[9, 3])).unwrap_err().to_string();
    assert!(e.contains("proj.weight"), "{e}");

    assert!(b.input("x", f32s(&[1])).is_err(), "duplicate input names are refused");
}

#[test]
fn attention_and_conv_shape_errors() {
    let mut b = Builder::new("bad");
    let q = b.input("q", f32s(&[1, 2, 8, 4])).unwrap();
    let k = b.input("k", f32s(&[1, 3, 8, 4])).unwrap();
    let e = b.attention(AttentionKind::SelfAttention, q, k, k, 0.5, None, None).unwrap_err().to_string();
    assert!(e.contains("attention") && e.contains("heads"), "{e}");

    let x = b.input("x", f32s(&[1, 3, 4, 8, 8])).unwrap();
    let e = b.conv(x, "conv", 8, &[3, 3], ConvAttrs::simple(2, 1), true).unwrap_err().to_string();
    assert!(e.contains("conv") && e.contains("rank-4"), "{e}");
    let y = b.conv(x, "conv", 8, &[3, 3, 3], ConvAttrs::simple(3, 1), true).unwrap();
    assert_eq!(b.shape(y), vec![1, 8, 4, 8, 8]);
}

#[test]
fn verifier_catches_wrong_recorded_type() {
    let text = "graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = exp(%0) : f32[3]\n  output \"y\" = %1\n}\n";
    let e = parse(text).unwrap_err().to_string();
    assert!(e.contains("exp") && e.contains("f32[3]") && e.contains("f32[2]"), "{e}");
}

#[test]
fn verifier_catches_tuple_output_and_bad_inputs_list() {
    let mut b = Builder::new("g");
    let x = b.input("x", f32s(&[2])).unwrap();
    b.output("y", x);
    let mut g = b.finish().unwrap();
    g.inputs.clear();
    assert!(verify(&g).unwrap_err().to_string().contains("inputs list"));
}

#[test]
fn parse_errors_have_positions() {
    let e = parse("graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = frobnicate(%0) : f32[2]\n}").unwrap_err();
    match e {
        IrError::Parse { line, message, .. } => {
            assert_eq!(line, 3);
            assert!(message.contains("unknown op `frobnicate`"), "{message}");
        }
        other => panic!("expected a parse error, got {other}"),
    }
    let e = parse("graph @g {\n  %1 = exp(%0) : f32[2]\n}").unwrap_err().to_string();
    assert!(e.contains("%0 is not defined"), "{e}");
    let e = parse("graph @g {\n  %0 = input \"x\" : f33[2]\n}").unwrap_err().to_string();
    assert!(e.contains("unknown dtype `f33`"), "{e}");
    let e = parse("graph @g {\n  %0 = input \"x\" : f32[2]\n  %1 = softmax(%0) {axis=0, bogus=1} : f32[2]\n}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no attribute `bogus`"), "{e}");
}
