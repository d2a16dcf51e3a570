//! Canonicalization: constant folding and local simplifications that never change a value's type.
//!
//! - Folding: unary, binary, compare, select and convert on constant operands (evaluated in f64,
//!   rounded to the dtype; see [`fold`]). Splat operands give a splat at any size; dense results
//!   are folded up to [`Canonicalize::FOLD_LIMIT`] elements, so a folded table never bloats the
//!   module. A broadcast or transpose of a splat, and a reshape of a splat or small constant,
//!   become constants.
//! - Shape ops: reshape-of-reshape and transpose-of-transpose and broadcast-of-broadcast collapse
//!   into one op; a reshape, broadcast or transpose that changes nothing, and a convert to the
//!   same dtype, disappear.
//! - Identities: `x*1`, `1*x`, `x+0`, `0+x`, `x-0`, `x/1`, where the constant is a splat of
//!   exactly that value in its dtype, directly or through a broadcast. `x+0 -> x` treats the two
//!   zeros alike (`-0 + 0` is `+0`), which only shows in the sign of a zero. `x*0` is not folded:
//!   it is NaN for infinite or NaN `x`.
//! - `select` on a splat predicate, or with equal branches, becomes the chosen operand.
//!
//! Nodes are rebuilt in order, so each rewrite sees operands already canonical and chains
//! (`reshape(reshape(reshape x))`) collapse in one run. Nodes a rewrite leaves unused stay for
//! `dce` to remove. Loop regions are canonicalized too. A rewritten node keeps its sharding; a
//! node replaced by an existing value loses its own annotation.

mod fold;

use crate::rewrite::{map_regions, Rewriter};
use crate::{Pass, PassError};
use vidlower_ir::{BinaryOp, Graph, Literal, LiteralData, Op, Sharding, TensorType, Type, ValueId};

/// The `canonicalize` pass.
pub struct Canonicalize;

impl Canonicalize {
    /// The registry name.
    pub const NAME: &'static str = "canonicalize";
    /// The largest dense result (in elements) that constant folding materializes.
    pub const FOLD_LIMIT: usize = 4096;
}

impl Pass for Canonicalize {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn run(&self, graph: Graph) -> Result<Graph, PassError> {
        canonicalize(&graph)
    }
}

fn canonicalize(g: &Graph) -> Result<Graph, PassError> {
    let mut rw = Rewriter::new(g);
    for (i, node) in g.nodes.iter().enumerate() {
        let v = ValueId(i as u32);
        if node.op.is_graph_input() {
            rw.copy(v);
            continue;
        }
        let op = map_regions(&node.op, canonicalize)?.unwrap_or_else(|| node.op.clone());
        let operands = rw.operands(v);
        let new = simplify(&mut rw.new, op, operands, &node.ty, node.sharding.clone())?;
        rw.set(v, new);
    }
    Ok(rw.finish())
}

/// What a rule turns a node into.
enum Rewrite {
    /// A value already in the graph.
    Value(ValueId),
    /// Another node, itself simplified before it is added.
    Node(Op, Vec<ValueId>),
}

/// Adds `op(operands)` of type `ty` to `g` after applying rules until none fires.
fn simplify(
    g: &mut Graph,
    mut op: Op,
    mut operands: Vec<ValueId>,
    ty: &Type,
    sharding: Option<Sharding>,
) -> Result<ValueId, PassError> {
    let changed_type = |now: &Type| PassError::failed(Canonicalize::NAME, format!("a rewrite turned {ty} into {now}"));
    // Every rule removes an op or shrinks one, so this terminates.
    while let Some(r) = rule(g, &op, &operands, ty) {
        match r {
            Rewrite::Value(v) if g.ty(v) == ty => return Ok(v),
            Rewrite::Value(v) => return Err(changed_type(g.ty(v))),
            Rewrite::Node(o, args) => (op, operands) = (o, args),
        }
    }
    let v = g.push(op, operands).map_err(PassError::ir(Canonicalize::NAME))?;
    if g.ty(v) != ty {
        return Err(changed_type(g.ty(v)));
    }
    g.nodes[v.index()].sharding = sharding;
    Ok(v)
}

fn rule(g: &Graph, op: &Op, args: &[ValueId], ty: &Type) -> Option<Rewrite> {
    let Type::Tensor(t) = ty else { return None };
    if let Some(lit) = fold_constant(g, op, args, t) {
        return Some(Rewrite::Node(Op::Constant(lit), vec![]));
    }
    let inner = |x: ValueId| (&g.node(x).op, g.node(x).operands.first().copied());
    match op {
        Op::Reshape { shape } => {
            let x = args[0];
            if g.tensor_ty(x).shape == *shape {
                return Some(Rewrite::Value(x));
            }
            if let (Op::Reshape { .. }, Some(y)) = inner(x) {
                return Some(Rewrite::Node(op.clone(), vec![y]));
            }
            None
        }
        Op::Transpose { perm } => {
            let x = args[0];
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return Some(Rewrite::Value(x));
            }
            // transpose(transpose(y, p1), p2) has result dim i = y dim p1[p2[i]].
            if let (Op::Transpose { perm: p1 }, Some(y)) = inner(x) {
                return Some(Rewrite::Node(Op::Transpose { perm: perm.iter().map(|&p| p1[p]).collect() }, vec![y]));
            }
            None
        }
        Op::BroadcastInDim { shape, dims } => {
            let x = args[0];
            // Same shape means same rank, and strictly increasing dims are then the identity.
            if g.tensor_ty(x).shape == *shape {
                return Some(Rewrite::Value(x));
            }
            // y dim i goes to inner dim d1[i], which goes to outer dim d2[d1[i]].
            if let (Op::BroadcastInDim { dims: d1, .. }, Some(y)) = inner(x) {
                let dims = d1.iter().map(|&d| dims[d]).collect();
                return Some(Rewrite::Node(Op::BroadcastInDim { shape: shape.clone(), dims }, vec![y]));
            }
            None
        }
        Op::Convert { to } if g.tensor_ty(args[0]).dtype == *to => Some(Rewrite::Value(args[0])),
        Op::Binary(b) => identity(g, *b, args[0], args[1]).map(Rewrite::Value),
        Op::Select => match splat_through_broadcast(g, args[0]) {
            Some(p) => Some(Rewrite::Value(if p != 0.0 { args[1] } else { args[2] })),
            None if args[1] == args[2] => Some(Rewrite::Value(args[1])),
            None => None,
        },
        _ => None,
    }
}

/// The operand `x (b) y` equals, when one side is the identity element of `b`.
fn identity(g: &Graph, b: BinaryOp, x: ValueId, y: ValueId) -> Option<ValueId> {
    let is = |v: ValueId, want: f64| splat_through_broadcast(g, v) == Some(want);
    match b {
        BinaryOp::Mul if is(y, 1.0) => Some(x),
        BinaryOp::Mul if is(x, 1.0) => Some(y),
        BinaryOp::Add if is(y, 0.0) => Some(x),
        BinaryOp::Add if is(x, 0.0) => Some(y),
        BinaryOp::Sub if is(y, 0.0) => Some(x),
        BinaryOp::Div if is(y, 1.0) => Some(x),
        _ => None,
    }
}

/// The constant defining `v`, if it is one.
fn constant(g: &Graph, v: ValueId) -> Option<&Literal> {
    match &g.node(v).op {
        Op::Constant(lit) => Some(lit),
        _ => None,
    }
}

/// The value every element of `v` has, as its dtype holds it, when `v` is a splat constant or a
/// broadcast of one.
fn splat_through_broadcast(g: &Graph, v: ValueId) -> Option<f64> {
    let v = match &g.node(v).op {
        Op::BroadcastInDim { .. } => g.node(v).operands[0],
        _ => v,
    };
    let lit = constant(g, v)?;
    fold::canonical(lit.ty.dtype, lit.as_splat()?)
}

/// `op(args)` evaluated, when every operand is a constant and the result is worth materializing.
fn fold_constant(g: &Graph, op: &Op, args: &[ValueId], t: &TensorType) -> Option<Literal> {
    let elementwise = matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Convert { .. });
    let layout = matches!(op, Op::BroadcastInDim { .. } | Op::Transpose { .. } | Op::Reshape { .. });
    if !(elementwise || layout) {
        return None;
    }
    let lits: Vec<&Literal> = args.iter().map(|&a| constant(g, a)).collect::<Option<_>>()?;
    if layout {
        if let Some(s) = lits[0].as_splat() {
            return Some(Literal::splat(t.clone(), s));
        }
        let small = t.num_elements() as usize <= Canonicalize::FOLD_LIMIT;
        // A reshape keeps the row-major order, so the values carry over unchanged.
        return (matches!(op, Op::Reshape { .. }) && small)
            .then(|| Literal { ty: t.clone(), data: lits[0].data.clone() });
    }
    let all_splat = lits.iter().all(|l| matches!(l.data, LiteralData::Splat(_)));
    let n = if all_splat { 1 } else { t.num_elements() as usize };
    if n > Canonicalize::FOLD_LIMIT {
        return None;
    }
    // The dtype the op computes in: its value operands' (select's predicate is i1).
    let dtype = lits[if matches!(op, Op::Select) { 1 } else { 0 }].ty.dtype;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // A scalar operand (select's predicate may be one) applies to every element.
        let val = |k: usize| {
            let l = lits[k];
            fold::canonical(l.ty.dtype, l.get(if l.ty.shape.is_empty() { 0 } else { i }))
        };
        out.push(match op {
            Op::Unary(u) => fold::unary(*u, dtype, val(0)?)?,
            Op::Binary(b) => fold::binary(*b, dtype, val(0)?, val(1)?)?,
            Op::Compare(d) => fold::compare(*d, val(0)?, val(1)?),
            Op::Select => val(if val(0)? != 0.0 { 1 } else { 2 })?,
            Op::Convert { to } => fold::convert(dtype, *to, val(0)?)?,
            _ => unreachable!(),
        });
    }
    let data = if all_splat { LiteralData::Splat(out[0]) } else { LiteralData::Dense(out) };
    Some(Literal { ty: t.clone(), data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::{parse, print};

    fn run(text: &str) -> Graph {
        let out = Canonicalize.run(parse(text).unwrap()).unwrap();
        vidlower_ir::verify(&out).unwrap();
        out
    }

    /// The literal output `name` ends up as.
    fn out_literal<'g>(g: &'g Graph, name: &str) -> &'g Literal {
        let o = g.outputs.iter().find(|o| o.name == name).unwrap();
        constant(g, o.value).unwrap_or_else(|| panic!("{name} is not a constant"))
    }

    #[test]
    fn folds_two_plus_three_to_five() {
        let out = run(r#"
graph @f {
  %0 = constant() {value=2.0} : f32[]
  %1 = constant() {value=3.0} : f32[]
  %2 = add(%0, %1) : f32[]
  output "y" = %2
}"#);
        assert_eq!(out_literal(&out, "y").as_splat(), Some(5.0));
    }

    #[test]
    fn folds_elementwise_chains() {
        insta::assert_snapshot!(print(&run(r#"
graph @fold {
  %0 = constant() {value=2.0} : f32[2]
  %1 = constant() {values=[1.0, -4.0]} : f32[2]
  %2 = mul(%0, %1) : f32[2]
  %3 = abs(%2) : f32[2]
  %4 = sqrt(%3) : f32[2]
  %5 = compare(%2, %0) {dir=LT} : i1[2]
  %6 = select(%5, %4, %0) : f32[2]
  %7 = convert(%6) : i32[2]
  %8 = constant() {value=0.1} : f32[3]
  %9 = convert(%8) : bf16[3]
  %10 = constant() {value=127.0} : i8[]
  %11 = constant() {value=1.0} : i8[]
  %12 = add(%10, %11) : i8[]
  %13 = constant() {value=0.0} : i32[]
  %14 = div(%13, %13) : i32[]
  output "a" = %7
  output "b" = %9
  output "c" = %12
  output "d" = %14
}"#)));
    }

    #[test]
    fn folding_rounds_to_the_dtype() {
        let out = run(r#"
graph @r {
  %0 = constant() {value=1.0} : bf16[]
  %1 = constant() {value=0.001} : bf16[]
  %2 = add(%0, %1) : bf16[]
  %3 = constant() {value=1.0} : f32[]
  %4 = constant() {value=3.0} : f32[]
  %5 = div(%3, %4) : f32[]
  output "a" = %2
  output "b" = %5
}"#);
        assert_eq!(out_literal(&out, "a").as_splat(), Some(1.0));
        assert_eq!(out_literal(&out, "b").as_splat(), Some((1.0f32 / 3.0) as f64));
    }

    #[test]
    fn large_dense_results_are_not_folded_but_splats_are() {
        let n = Canonicalize::FOLD_LIMIT + 1;
        let values = vec!["1.0"; n].join(", ");
        let text = format!(
            r#"
graph @big {{
  %0 = constant() {{values=[{values}]}} : f32[{n}]
  %1 = exp(%0) : f32[{n}]
  %2 = constant() {{value=1.0}} : f32[{n}]
  %3 = exp(%2) : f32[{n}]
  output "a" = %1
  output "b" = %3
}}"#
        );
        let out = run(&text);
        assert_eq!(out.nodes[out.outputs[0].value.index()].op.name(), "exp");
        assert_eq!(out_literal(&out, "b").as_splat(), Some(1f64.exp() as f32 as f64));
    }

    #[test]
    fn collapses_shape_op_chains() {
        insta::assert_snapshot!(print(&run(r#"
graph @shapes {
  %0 = input "x" : f32[2,3,4]
  %1 = reshape(%0) : f32[6,4]
  %2 = reshape(%1) : f32[24]
  %3 = reshape(%2) : f32[2,3,4]
  %4 = transpose(%0) {perm=[1,2,0]} : f32[3,4,2]
  %5 = transpose(%4) {perm=[2,0,1]} : f32[2,3,4]
  %6 = transpose(%4) {perm=[1,0,2]} : f32[4,3,2]
  %7 = transpose(%0) {perm=[0,1,2]} : f32[2,3,4]
  %8 = input "v" : f32[3]
  %9 = broadcast_in_dim(%8) {dims=[1]} : f32[4,3]
  %10 = broadcast_in_dim(%9) {dims=[1,2]} : f32[2,4,3]
  %11 = broadcast_in_dim(%8) {dims=[0]} : f32[3]
  %12 = convert(%0) : f32[2,3,4]
  %13 = convert(%0) : bf16[2,3,4]
  output "a" = %3
  output "b" = %5
  output "c" = %6
  output "d" = %7
  output "e" = %10
  output "f" = %11
  output "g" = %12
  output "h" = %13
}"#)));
    }

    #[test]
    fn removes_identities_but_not_times_zero() {
        insta::assert_snapshot!(print(&run(r#"
graph @ident {
  %0 = input "x" : f32[2,3]
  %1 = constant() {value=1.0} : f32[]
  %2 = broadcast_in_dim(%1) {dims=[]} : f32[2,3]
  %3 = mul(%0, %2) : f32[2,3]
  %4 = mul(%2, %3) : f32[2,3]
  %5 = constant() {value=0.0} : f32[2,3]
  %6 = add(%4, %5) : f32[2,3]
  %7 = add(%5, %6) : f32[2,3]
  %8 = sub(%7, %5) : f32[2,3]
  %9 = div(%8, %2) : f32[2,3]
  %10 = mul(%9, %5) : f32[2,3]
  %11 = sub(%5, %9) : f32[2,3]
  %12 = div(%2, %9) : f32[2,3]
  %13 = constant() {value=1.0000001} : f32[2,3]
  %14 = mul(%9, %13) : f32[2,3]
  output "same" = %9
  output "times_zero" = %10
  output "zero_minus" = %11
  output "one_over" = %12
  output "almost_one" = %14
}"#)));
    }

    #[test]
    fn identity_follows_the_dtype_rounding_and_integer_types() {
        let out = run(r#"
graph @i {
  %0 = input "x" : bf16[4]
  %1 = constant() {value=1.001} : bf16[4]
  %2 = mul(%0, %1) : bf16[4]
  %3 = input "n" : i32[4]
  %4 = constant() {value=0.0} : i32[4]
  %5 = add(%3, %4) : i32[4]
  output "a" = %2
  output "b" = %5
}"#);
        // 1.001 is 1.0 in bf16, so the multiply is by one.
        assert_eq!(out.outputs[0].value, out.inputs[0]);
        assert_eq!(out.outputs[1].value, out.inputs[1]);
    }

    #[test]
    fn select_on_a_known_predicate_and_splat_broadcasts() {
        let out = run(r#"
graph @s {
  %0 = input "a" : f32[4]
  %1 = input "b" : f32[4]
  %2 = constant() {value=1.0} : i1[]
  %3 = broadcast_in_dim(%2) {dims=[]} : i1[4]
  %4 = select(%3, %0, %1) : f32[4]
  %5 = input "p" : i1[4]
  %6 = select(%5, %1, %1) : f32[4]
  %7 = constant() {value=-2.5} : f32[1,4]
  %8 = broadcast_in_dim(%7) {dims=[0,2]} : f32[3,5,4]
  %9 = transpose(%8) {perm=[2,1,0]} : f32[4,5,3]
  output "a" = %4
  output "b" = %6
  output "c" = %9
}"#);
        assert_eq!(out.outputs[0].value, out.inputs[0]);
        assert_eq!(out.outputs[1].value, out.inputs[1]);
        let c = out_literal(&out, "c");
        assert_eq!((c.as_splat(), c.ty.shape.clone()), (Some(-2.5), vec![4, 5, 3]));
    }

    #[test]
    fn rewritten_nodes_keep_sharding_and_regions_are_canonicalized() {
        insta::assert_snapshot!(print(&run(r#"
graph @loop {
  mesh dp=2
  %0 = input "x" : f32[4,8]
  %1 = transpose(%0) {perm=[1,0]} : f32[8,4]
  %2 = transpose(%1) {perm=[1,0]} : f32[4,8]
  %3 = reshape(%2) : f32[32]
  %4 = reshape(%3) : f32[8,4] sharding=[{dp},{}]
  %5 = while(%4) regions {
    graph @cond {
      %0 = input "x" : f32[8,4]
      %1 = constant() {value=0.0} : i1[]
      output "c" = %1
    }
    graph @body {
      %0 = input "x" : f32[8,4]
      %1 = constant() {value=1.0} : f32[8,4]
      %2 = mul(%0, %1) : f32[8,4]
      output "x" = %2
    }
  } : (f32[8,4])
  %6 = get(%5) {index=0} : f32[8,4]
  output "y" = %6
}"#)));
    }

    /// A reshard is a layout constraint, not an identity: canonicalize (and the rest of the
    /// default pipeline) keeps each one with its sharding, even of a constant or of another
    /// reshard, and the graph keeps its mesh.
    #[test]
    fn reshards_are_kept_by_the_default_pipeline() {
        let g = parse(
            r#"
graph @r {
  mesh dp=2,tp=2
  %0 = input "x" : f32[4,4] sharding=[{dp},{}]
  %1 = constant() {value=1.0} : f32[4,4]
  %2 = reshard(%1) : f32[4,4] sharding=[{tp},{}]
  %3 = reshard(%0) : f32[4,4] sharding=[{},{tp}]
  %4 = reshard(%3) : f32[4,4] sharding=[{dp},{}]
  %5 = add(%4, %2) : f32[4,4]
  output "y" = %5
}"#,
        )
        .unwrap();
        let out = crate::default_pipeline().run(g.clone()).unwrap().graph;
        assert_eq!(out.mesh, g.mesh);
        let reshards = |g: &Graph| -> Vec<String> {
            g.nodes.iter().filter(|n| n.op == Op::Reshard).map(|n| n.sharding.as_ref().unwrap().to_string()).collect()
        };
        assert_eq!(reshards(&out), ["[{tp},{}]", "[{},{tp}]", "[{dp},{}]"]);
    }
}
