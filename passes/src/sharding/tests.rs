//! The pass on IR text: snapshots of the laid-out graphs (every value's sharding printed) and
//! checks of what must hold whatever the snapshots say.

use super::*;
use vidlower_ir::AttentionKind;
use vidlower_ir::text::{parse, print};

const ATTENTION_BLOCK: &str = include_str!("../testdata/sharding_attention_block.ir");
/// A counted loop whose state feeds a dot with a column-split weight `w`.
pub(super) const LOOP: &str = include_str!("../testdata/sharding_loop.ir");

/// Column-parallel q/k/v and row-parallel out, the seeds' pattern on the fixture's names.
fn block_rules() -> ShardingRules {
    let rules = [
        (r"attn\.to_[qkv]\.(weight|bias)", vec![Some("tp"), None]),
        (r"attn\.to_out\.0\.(weight|bias)", vec![None, Some("tp")]),
        (r"ff\.net\.0\.proj\.(weight|bias)", vec![Some("tp"), None]),
        (r"ff\.net\.2\.(weight|bias)", vec![None, Some("tp")]),
    ];
    ShardingRules::new(RuleSource::BuiltIn("test"), rules).unwrap()
}

fn run(text: &str, mesh: &str) -> (Graph, ShardingReport) {
    let pass = ShardingPropagation::new(Mesh::parse(mesh).unwrap(), block_rules());
    let (g, report) = pass.propagate(parse(text).unwrap()).unwrap();
    vidlower_ir::verify(&g).unwrap();
    (g, report)
}

/// Every tensor value of `g` and its regions has a sharding.
fn assert_all_sharded(g: &Graph) {
    for (i, n) in g.nodes.iter().enumerate() {
        assert_eq!(n.sharding.is_some(), n.ty.tensor().is_some(), "%{i} = {}", n.op.name());
        if let Op::While { cond, body } = &n.op {
            assert_all_sharded(cond);
            assert_all_sharded(body);
        }
    }
}

fn reshards(g: &Graph) -> usize {
    g.op_counts().get("reshard").copied().unwrap_or(0)
}

#[test]
fn attention_block_context_parallel_on_dp_tp() {
    // 2 heads on tp=2: heads split, the column/row pair needs no reshard.
    let (g, report) = run(ATTENTION_BLOCK, "dp=2,tp=2");
    assert_all_sharded(&g);
    assert_eq!(reshards(&g), 0, "{report}");
    assert_eq!(report.attention[0].1.splits, [("tp".to_string(), AttentionSplit::Heads)]);
    insta::assert_snapshot!(format!("{report}\n{}", print(&g)));
}

#[test]
fn attention_block_sequence_parallel_when_heads_do_not_divide() {
    // 2 heads on tp=4: queries split, keys and values gathered by explicit reshards.
    let (g, report) = run(ATTENTION_BLOCK, "tp=4");
    assert_all_sharded(&g);
    assert_eq!(report.attention[0].1.splits, [("tp".to_string(), AttentionSplit::Queries)]);
    assert!(reshards(&g) >= 2, "k and v must be gathered: {report}");
    let attn = g.nodes.iter().find(|n| matches!(n.op, Op::Attention { .. })).unwrap();
    for (k, want) in [(0, "[{},{},{tp},{}]"), (1, "[{},{},{},{}]"), (2, "[{},{},{},{}]")] {
        let s = g.node(attn.operands[k]).sharding.as_ref().unwrap().to_string();
        assert_eq!(s, want, "attention operand {k}");
    }
    insta::assert_snapshot!(format!("{report}\n{}", print(&g)));
}

#[test]
fn the_ops_kind_not_its_lengths_is_what_the_report_says() {
    // The fixture's attention has 8 queries and 8 keys: as self, joint or cross attention the
    // split is the same, but only the kind says whether keys are the sequence's own (gathered)
    // or the text (replicated).
    for (kind, gathers) in [(AttentionKind::SelfAttention, true), (AttentionKind::Joint, true), (AttentionKind::Cross, false)] {
        let text = ATTENTION_BLOCK.replace("kind=self", &format!("kind={}", kind.name()));
        let (_, report) = run(&text, "tp=4");
        let choice = &report.attention[0].1;
        assert_eq!((choice.kind, choice.gathers_keys()), (kind, gathers));
        assert_eq!(choice.splits, [("tp".to_string(), AttentionSplit::Queries)]);
        assert!(report.to_string().contains(&format!("attention %18: {} attention, 2 heads", kind.name())), "{report}");
    }
}

#[test]
fn the_laid_out_graph_prints_parses_back_and_a_second_run_changes_nothing() {
    let (g, _) = run(ATTENTION_BLOCK, "tp=4");
    let text = print(&g);
    assert!(text.contains("mesh tp=4"), "{text}");
    let back = parse(&text).unwrap();
    assert_eq!(print(&back), text);
    let (again, report) = run(&text, "tp=4");
    assert!(report.reshards.is_empty(), "{report}");
    assert_eq!(print(&again), text);
}

#[test]
fn example_block_on_dp_tp() {
    let cfg = vidlower_frontends::example::ExampleConfig {
        batch: 2,
        seq: 8,
        dim: 16,
        heads: 4,
        mlp_hidden: 32,
        ..Default::default()
    };
    let g = vidlower_frontends::example::example_block(&cfg).unwrap();
    let pass = ShardingPropagation::new(Mesh::parse("dp=2,tp=4").unwrap(), block_rules());
    let (g, report) = pass.propagate(g).unwrap();
    vidlower_ir::verify(&g).unwrap();
    assert_all_sharded(&g);
    assert_eq!(report.weights_split, 10, "q/k/v/ff0 weights and biases, to_out/ff2 weights: {report}");
    assert_eq!(reshards(&g), 0, "{report}");
    insta::assert_snapshot!(format!("{report}\n{}", print(&g)));
}

#[test]
fn loops_carry_the_state_layout_into_their_regions() {
    let rules = ShardingRules::new(RuleSource::BuiltIn("test"), [("w", vec![Some("tp"), None])]).unwrap();
    let pass = ShardingPropagation::new(Mesh::parse("dp=2,tp=4").unwrap(), rules);
    let (g, _) = pass.propagate(parse(LOOP).unwrap()).unwrap();
    vidlower_ir::verify(&g).unwrap();
    assert_all_sharded(&g);
    let Op::While { body, .. } = &g.nodes[3].op else { panic!("the loop moved") };
    assert_eq!(body.node(body.inputs[1]).sharding.as_ref().unwrap().to_string(), "[{dp},{}]");
    assert_eq!(body.node(body.outputs[1].value).sharding.as_ref().unwrap().to_string(), "[{dp},{}]");
    insta::assert_snapshot!(print(&g));
}

#[test]
fn after_decompose_the_primitives_propagate_too() {
    let decomposed = crate::Decompose.run(parse(ATTENTION_BLOCK).unwrap()).unwrap();
    let pass = ShardingPropagation::new(Mesh::parse("dp=2,tp=2").unwrap(), block_rules());
    let (g, report) = pass.propagate(decomposed).unwrap();
    vidlower_ir::verify(&g).unwrap();
    assert_all_sharded(&g);
    assert!(report.attention.is_empty());
    // The scores dot [B,H,Sq,Sk] keeps batch and heads split as the projections left them.
    let scores =
        g.nodes.iter().find(|n| matches!(n.op, Op::DotGeneral(_)) && n.ty.tensor().unwrap().rank() == 4).unwrap();
    assert_eq!(scores.sharding.as_ref().unwrap().to_string(), "[{dp},{tp},{},{}]");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let pass = ShardingPropagation::new(Mesh::parse("tp=4").unwrap(), ShardingRules::none());
    let mut g = parse(ATTENTION_BLOCK).unwrap();
    g.mesh = Some(Mesh::parse("dp=2").unwrap());
    let err = pass.propagate(g).unwrap_err();
    assert!(matches!(err, ShardingError::MeshMismatch { .. }), "{err}");

    let mut g = parse(ATTENTION_BLOCK).unwrap();
    g.nodes[0].sharding = Some(Sharding::split(3, 0, "dp"));
    let err = pass.propagate(g).unwrap_err();
    assert!(matches!(err, ShardingError::Invalid(_)) && err.to_string().contains("axis `dp`"), "{err}");

    let rules = ShardingRules::parse(
        std::path::Path::new("r.json"),
        r#"[{"pattern": "attn\\.to_q\\.weight", "dims": ["tp", null]}]"#,
    );
    let pass = ShardingPropagation::new(Mesh::parse("tp=3").unwrap(), rules.unwrap());
    let err = pass.run(parse(ATTENTION_BLOCK).unwrap()).unwrap_err();
    assert!(err.to_string().contains("r.json") && err.to_string().contains("does not divide 16"), "{err}");

    // A batch the axis does not divide: replicated, with a note.
    let pass = ShardingPropagation::new(Mesh::parse("dp=4").unwrap(), ShardingRules::none());
    let (_, report) = pass.propagate(parse(ATTENTION_BLOCK).unwrap()).unwrap();
    assert!(report.notes.iter().any(|n| n.contains("batch 2 does not divide by dp=4")), "{report}");
}

#[test]
fn runs_in_a_pass_manager_before_decompose() {
    let mut pm = crate::PassManager::new();
    pm.add(Box::new(ShardingPropagation::new(Mesh::parse("dp=2").unwrap(), ShardingRules::none())));
    pm.add(Box::new(crate::Decompose));
    let run = pm.run(parse(ATTENTION_BLOCK).unwrap()).unwrap();
    assert_eq!(run.graph.mesh, Some(Mesh::parse("dp=2").unwrap()));
    let out = run.graph.outputs[0].value;
    assert_eq!(run.graph.node(out).sharding.as_ref().unwrap().to_string(), "[{dp},{},{}]");
}

#[test]
fn attention_that_divides_nowhere_is_left_whole_with_a_note() {
    // 2 heads and 8 queries on tp=3: neither splits; the projections cannot split 16 features
    // either, so the whole block stays replicated and says why.
    let (g, report) = run(ATTENTION_BLOCK, "tp=3");
    assert_all_sharded(&g);
    let choice = &report.attention[0].1;
    assert!(choice.splits.is_empty());
    assert_eq!(choice.notes, ["neither 2 heads nor 8 queries divide by tp=3; replicated on tp"]);
    assert!(
        report.notes.iter().any(|n| n.contains("attn.to_q.weight: dim 0 (16) does not divide by tp=3")),
        "{report}"
    );
    assert!(g.nodes.iter().all(|n| n.sharding.as_ref().is_none_or(|s| s.is_replicated())));
}
