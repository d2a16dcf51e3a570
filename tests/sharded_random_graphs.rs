//! Property: a random chain of simple ops (elementwise, dot, reduce + broadcast, transpose,
//! reshape, reshard) with random shardings on a 2-axis mesh (parameters, the output and some values in
//! between), compiled for 8 virtual CPU devices in either sharding format and run through
//! `Program`, gives what the unsharded graph gives on one device.

mod common;

use proptest::prelude::*;
use std::collections::HashSet;
use vidlower_backends::ShardingFormat;
use vidlower_ir::{Builder, DType, Graph, Mesh, Op, ReduceKind, Sharding, TensorType, ValueId};
use vidlower_runtime::pjrt::Client;

/// One step of the chain, applied to the current rank-2 value.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `tanh(v * y')` with `y` broadcast or sliced to v's shape by a dot with ones.
    Elementwise,
    /// `v . w` when v has w's row count, else `v . v^T`.
    Dot,
    /// Sum over one dim, broadcast back.
    Reduce(usize),
    Transpose,
    /// Halve one dim, double the other.
    Reshape(bool),
    /// An explicit reshard (replicated without a mesh, a random layout on one).
    Reshard,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Elementwise),
        Just(Step::Dot),
        (0..2usize).prop_map(Step::Reduce),
        Just(Step::Transpose),
        any::<bool>().prop_map(Step::Reshape),
        Just(Step::Reshard),
    ]
}

/// The mesh axes a dim may be split over: none, one, or both in either order.
const SPLITS: [&[&str]; 6] = [&[], &["dp"], &["tp"], &["dp", "tp"], &["tp", "dp"], &[]];

/// A rank-2 sharding from two choices, dropping axes the first dim already uses.
fn sharding(choice: (usize, usize)) -> Sharding {
    let d0: Vec<String> = SPLITS[choice.0 % SPLITS.len()].iter().map(|a| a.to_string()).collect();
    let d1 = SPLITS[choice.1 % SPLITS.len()].iter().map(|a| a.to_string()).filter(|a| !d0.contains(a)).collect();
    Sharding { dims: vec![d0, d1] }
}

/// Whether `s` cuts a tensor of `shape` into whole pieces on `mesh`.
fn divides(s: &Sharding, mesh: &Mesh, shape: &[i64]) -> bool {
    s.shard_shape(mesh, shape).is_some()
}

fn f32t(shape: &[i64]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

/// The chain as a graph without a mesh, the values that a sharding may be put on, and the
/// reshards (which always carry one).
fn chain(steps: &[Step]) -> (Graph, Vec<ValueId>, Vec<ValueId>) {
    let mut b = Builder::new("chain");
    let x = b.input("x", f32t(&[8, 16])).unwrap();
    let y = b.input("y", f32t(&[8, 16])).unwrap();
    let w = b.weight("w", f32t(&[16, 8])).unwrap();
    let mut v = x;
    let mut values = Vec::new();
    let mut reshards = Vec::new();
    for s in steps {
        let shape = b.shape(v);
        v = match *s {
            Step::Elementwise => {
                // y reduced or tiled to v's shape keeps both operands data-dependent.
                let ys = b.sum(y, &[0, 1]).unwrap();
                let yb = b.broadcast_in_dim(ys, &shape, &[]).unwrap();
                let yb = b.mul_scalar(yb, 1e-3).unwrap();
                let p = b.mul(v, yb).unwrap();
                let p = b.add(p, v).unwrap();
                b.tanh(p).unwrap()
            }
            Step::Dot if shape[1] == 16 => b.matmul(v, w).unwrap(),
            Step::Dot => {
                let t = b.transpose(v, &[1, 0]).unwrap();
                let d = b.matmul(v, t).unwrap();
                b.mul_scalar(d, 0.1).unwrap()
            }
            Step::Reduce(axis) => {
                let r = b.reduce(v, ReduceKind::Sum, &[axis]).unwrap();
                let keep = [1 - axis];
                let r = b.broadcast_in_dim(r, &shape, &keep).unwrap();
                b.sub(v, r).unwrap()
            }
            Step::Transpose => b.transpose(v, &[1, 0]).unwrap(),
            Step::Reshape(first) => {
                let (a, c) = (shape[0], shape[1]);
                let to = if (first && a % 2 == 0) || c % 2 != 0 { [a / 2, c * 2] } else { [a * 2, c / 2] };
                b.reshape(v, &to).unwrap()
            }
            Step::Reshard => {
                let r = b.op(Op::Reshard, &[v]).unwrap();
                reshards.push(r);
                r
            }
        };
        values.push(v);
    }
    b.output("out", v);
    let mut g = b.graph().clone();
    for &r in &reshards {
        g.nodes[r.index()].sharding = Some(Sharding::replicated(2));
    }
    vidlower_ir::verify(&g).unwrap();
    (g, values, reshards)
}

/// `g` on `mesh` with the parameter, output and in-between shardings chosen by `choices`
/// (cycled); boundary shardings that would not divide are left replicated.
fn shard(g: &Graph, values: &[ValueId], reshards: &[ValueId], mesh: &Mesh, choices: &[(usize, usize)], every: usize) -> Graph {
    let mut g = g.clone();
    let mut pick = choices.iter().cycle().map(|&c| sharding(c));
    let out = g.outputs[0].value;
    for v in g.inputs.clone().into_iter().chain([out]) {
        let s = pick.next().unwrap();
        let ok = divides(&s, mesh, &g.tensor_ty(v).shape);
        g.nodes[v.index()].sharding = Some(if ok { s } else { Sharding::replicated(2) });
    }
    for &v in values.iter().step_by(every.max(1)).chain(reshards) {
        if v != out {
            g.nodes[v.index()].sharding = Some(pick.next().unwrap());
        }
    }
    g.mesh = Some(mesh.clone());
    vidlower_ir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{}", vidlower_ir::text::print(&g)));
    g
}

fn client() -> &'static Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| common::cpu_client(8))
}

proptest! {
    // Each case compiles two executables (~0.1-0.3 s each on the CPU plugin).
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_shardings_match_one_device(
        steps in prop::collection::vec(step(), 1..6),
        choices in prop::collection::vec((0..6usize, 0..6usize), 4..10),
        every in 1..4usize,
        wide in any::<bool>(),
        gspmd in any::<bool>(),
        seed in 0..1000u64,
    ) {
        let (g, values, reshards) = chain(&steps);
        let (weights, inputs) = common::random_params(&g, seed);
        let single = common::program(client(), g.clone(), &[], &weights);
        let want = single.run(&inputs).unwrap().remove(0).1;

        let mesh = Mesh::parse(if wide { "dp=2,tp=4" } else { "dp=2,tp=2" }).unwrap();
        let sharded = shard(&g, &values, &reshards, &mesh, &choices, every);
        let format = if gspmd { ShardingFormat::Gspmd } else { ShardingFormat::Shardy };
        let p = common::sharded_program(client(), &sharded, format, &weights);
        let got = p.run(&inputs).unwrap().remove(0).1;
        prop_assert_eq!(&got.dims, &want.dims);
        let err = common::max_rel_err(&got.to_f64_vec(), &want.to_f64_vec());
        prop_assert!(err < 1e-5, "{:?} {:?}: max relative error {:e}\n{}", format, steps, err, vidlower_ir::text::print(&sharded));
    }
}

/// The cycle of choices reaches every boundary layout the strategy can make, including a dim
/// split over both axes in minor-major order.
#[test]
fn the_strategy_covers_two_axis_layouts() {
    let mesh = Mesh::parse("dp=2,tp=4").unwrap();
    let seen: HashSet<String> = (0..6).flat_map(|a| (0..6).map(move |b| sharding((a, b)).to_string())).collect();
    for s in ["[{},{}]", "[{dp},{tp}]", "[{tp},{dp}]", "[{tp,dp},{}]", "[{},{dp,tp}]", "[{dp},{}]"] {
        assert!(seen.contains(s), "{s} is never generated");
    }
    assert!(divides(&sharding((3, 0)), &mesh, &[8, 16]) && !divides(&sharding((3, 0)), &mesh, &[4, 16]));
}
