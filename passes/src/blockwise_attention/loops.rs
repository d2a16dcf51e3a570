//! Counted `while` loops, the shape of all three loops of the blockwise lowering (query blocks,
//! key blocks, key slices): a counter from a start value up to an end, a few running values the
//! body updates, and the operands it reads, carried unchanged (regions see only the loop state).

use crate::decompose::emit::Emitter;
use crate::PassError;
use vidlower_ir::{BinaryOp, CompareDir, DType, Graph, Op, TensorType, Type, ValueId};

/// Where a counted loop stops: when the counter reaches a constant, or the i32 scalar carried
/// at a state index (a window's last block, computed per query block).
pub(super) enum End {
    Const(i64),
    State(usize),
}

/// A loop's named initial state; entry 0 is the i32 counter.
pub(super) struct LoopState {
    names: Vec<&'static str>,
    init: Vec<ValueId>,
}

impl LoopState {
    pub fn new(counter: &'static str, start: ValueId) -> Self {
        LoopState { names: vec![counter], init: vec![start] }
    }

    /// Adds `v` to the state; returns its index.
    pub fn push(&mut self, name: &'static str, v: ValueId) -> usize {
        self.names.push(name);
        self.init.push(v);
        self.init.len() - 1
    }

    /// Adds `v` if there is one; returns its index.
    pub fn push_opt(&mut self, name: &'static str, v: Option<ValueId>) -> Option<usize> {
        v.map(|v| self.push(name, v))
    }
}

/// `while i < end { state[1..=n] = body(state); i += 1 }`: `body` gets the state (in its region)
/// and returns the n values it updates, which lead the state after the counter; the rest are
/// carried unchanged. Returns the loop's tuple value (`get` index k is state entry k).
pub(super) fn counted_loop(
    em: &mut Emitter,
    state: &LoopState,
    end: End,
    body: impl FnOnce(&mut Emitter, &[ValueId]) -> Result<Vec<ValueId>, PassError>,
) -> Result<ValueId, PassError> {
    let types: Vec<TensorType> = state.init.iter().map(|&v| em.ty(v)).collect();
    let region = |name: &str| {
        let mut g = Graph::new(name);
        let ins: Vec<ValueId> = (types.iter().zip(&state.names))
            .map(|(t, n)| g.push_typed(Op::Input { name: n.to_string() }, vec![], Type::Tensor(t.clone())))
            .collect();
        (g, ins)
    };

    let (mut cond, ins) = region("cond");
    let mut c = Emitter { g: &mut cond };
    let n = match end {
        End::Const(n) => c.splat(n as f64, TensorType::scalar(DType::I32))?,
        End::State(at) => ins[at],
    };
    let lt = c.compare(CompareDir::Lt, ins[0], n)?;
    cond.add_output("c", lt);

    let (mut region_body, ins) = region("body");
    let mut e = Emitter { g: &mut region_body };
    let updated = body(&mut e, &ins)?;
    let next = e.binary_const(BinaryOp::Add, ins[0], 1.0)?;
    let outs = std::iter::once(next).chain(updated.iter().copied()).chain(ins[1 + updated.len()..].iter().copied());
    for (o, n) in outs.zip(&state.names) {
        region_body.add_output(*n, o);
    }
    em.op(Op::While { cond: Box::new(cond), body: Box::new(region_body) }, &state.init)
}

/// Rows `start .. start + n` of `x` [B, H, S, D] along S (`start` an i32 scalar).
pub(super) fn rows_at(e: &mut Emitter, x: ValueId, start: ValueId, n: i64) -> Result<ValueId, PassError> {
    let t = e.ty(x);
    let zero = e.splat(0.0, TensorType::scalar(DType::I32))?;
    let sizes = vec![t.shape[0], t.shape[1], n, t.shape[3]];
    e.op(Op::DynamicSlice { sizes }, &[x, zero, zero, start, zero])
}
