//! The mapping between ops and their `{key=value}` attributes, shared by the printer and parser
//! so the two cannot drift apart.

use crate::graph::Graph;
use crate::op::*;
use crate::types::{TensorType, Type};

/// One attribute value in the text form.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ident(String),
    List(Vec<Attr>),
}

impl Attr {
    fn ints(v: &[i64]) -> Attr {
        Attr::List(v.iter().map(|&x| Attr::Int(x)).collect())
    }
    fn usizes(v: &[usize]) -> Attr {
        Attr::List(v.iter().map(|&x| Attr::Int(x as i64)).collect())
    }
    fn floats(v: &[f64]) -> Attr {
        Attr::List(v.iter().map(|&x| Attr::Float(x)).collect())
    }
}

/// The attributes printed for `op`, in a fixed order.
pub fn op_attrs(op: &Op) -> Vec<(&'static str, Attr)> {
    match op {
        Op::Constant(lit) => match &lit.data {
            LiteralData::Splat(v) => vec![("value", Attr::Float(*v))],
            LiteralData::Dense(vs) => vec![("values", Attr::floats(vs))],
        },
        Op::Iota { dim, .. } => vec![("dim", Attr::Int(*dim as i64))],
        Op::Compare(d) => vec![("dir", Attr::Ident(d.name().into()))],
        Op::BroadcastInDim { dims, .. } => vec![("dims", Attr::usizes(dims))],
        Op::Transpose { perm } => vec![("perm", Attr::usizes(perm))],
        Op::Slice { start, limit, strides } => {
            vec![("start", Attr::ints(start)), ("limit", Attr::ints(limit)), ("strides", Attr::ints(strides))]
        }
        Op::Concatenate { dim } => vec![("dim", Attr::Int(*dim as i64))],
        Op::Take { axis } => vec![("axis", Attr::Int(*axis as i64))],
        Op::Pad { low, high, interior } => {
            vec![("low", Attr::ints(low)), ("high", Attr::ints(high)), ("interior", Attr::ints(interior))]
        }
        Op::DotGeneral(d) => vec![
            ("lhs_batch", Attr::usizes(&d.lhs_batch)),
            ("rhs_batch", Attr::usizes(&d.rhs_batch)),
            ("lhs_contract", Attr::usizes(&d.lhs_contract)),
            ("rhs_contract", Attr::usizes(&d.rhs_contract)),
        ],
        Op::Convolution(c) => vec![
            ("strides", Attr::ints(&c.strides)),
            ("padding", Attr::List(c.padding.iter().map(|&(l, h)| Attr::ints(&[l, h])).collect())),
            ("lhs_dilation", Attr::ints(&c.lhs_dilation)),
            ("rhs_dilation", Attr::ints(&c.rhs_dilation)),
            ("groups", Attr::Int(c.feature_group_count)),
        ],
        Op::Reduce { kind, axes } => vec![("kind", Attr::Ident(kind.name().into())), ("axes", Attr::usizes(axes))],
        Op::CustomCall { target, backend_config, has_side_effect, typed_ffi, .. } => {
            let mut a = vec![
                ("target", Attr::Str(target.clone())),
                ("backend_config", Attr::Str(backend_config.clone())),
                ("side_effect", Attr::Bool(*has_side_effect)),
            ];
            if *typed_ffi {
                a.push(("typed_ffi", Attr::Bool(true)));
            }
            a
        }
        Op::GetTuple { index } => vec![("index", Attr::Int(*index as i64))],
        Op::Softmax { axis } => vec![("axis", Attr::Int(*axis as i64))],
        Op::Attention { kind, scale, has_mask, window, window_span } => {
            let mut a = vec![("kind", Attr::Ident(kind.name().into())), ("scale", Attr::Float(*scale)), ("mask", Attr::Bool(*has_mask))];
            if let Some((l, r)) = window {
                a.push(("window", Attr::ints(&[*l, *r])));
            }
            if let Some((start, end)) = window_span {
                a.push(("window_span", Attr::ints(&[*start, *end])));
            }
            a
        }
        Op::LayerNorm { eps, has_weight, has_bias } => {
            vec![("eps", Attr::Float(*eps)), ("weight", Attr::Bool(*has_weight)), ("bias", Attr::Bool(*has_bias))]
        }
        Op::RmsNorm { eps, has_weight } => vec![("eps", Attr::Float(*eps)), ("weight", Attr::Bool(*has_weight))],
        Op::GroupNorm { groups, eps, affine } => {
            vec![("groups", Attr::Int(*groups)), ("eps", Attr::Float(*eps)), ("affine", Attr::Bool(*affine))]
        }
        Op::Gelu { approximate } => vec![("approximate", Attr::Ident(approximate.name().into()))],
        Op::Input { .. }
        | Op::Weight { .. }
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Select
        | Op::Convert { .. }
        | Op::Reshape { .. }
        | Op::DynamicSlice { .. }
        | Op::DynamicUpdateSlice
        | Op::Reshard
        | Op::While { .. } => vec![],
    }
}

/// Attributes being read back; each getter removes its key so leftovers can be reported.
pub struct AttrReader {
    op: String,
    attrs: Vec<(String, Attr)>,
}

type R<T> = std::result::Result<T, String>;

impl AttrReader {
    pub fn new(op: &str, attrs: Vec<(String, Attr)>) -> Self {
        AttrReader { op: op.to_string(), attrs }
    }

    fn take(&mut self, key: &str) -> Option<Attr> {
        let i = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(i).1)
    }

    fn need(&mut self, key: &str) -> R<Attr> {
        self.take(key).ok_or_else(|| format!("{} needs attribute `{key}`", self.op))
    }

    fn int_of(&self, key: &str, a: &Attr) -> R<i64> {
        match a {
            Attr::Int(i) => Ok(*i),
            _ => Err(format!("{}: `{key}` must be an integer", self.op)),
        }
    }

    fn float_of(&self, key: &str, a: &Attr) -> R<f64> {
        match a {
            Attr::Float(f) => Ok(*f),
            Attr::Int(i) => Ok(*i as f64),
            _ => Err(format!("{}: `{key}` must be a number", self.op)),
        }
    }

    pub fn int(&mut self, key: &str) -> R<i64> {
        let a = self.need(key)?;
        self.int_of(key, &a)
    }

    pub fn usize(&mut self, key: &str) -> R<usize> {
        let v = self.int(key)?;
        usize::try_from(v).map_err(|_| format!("{}: `{key}` must be >= 0", self.op))
    }

    pub fn float(&mut self, key: &str) -> R<f64> {
        let a = self.need(key)?;
        self.float_of(key, &a)
    }

    pub fn bool_or(&mut self, key: &str, default: bool) -> R<bool> {
        match self.take(key) {
            None => Ok(default),
            Some(Attr::Bool(b)) => Ok(b),
            Some(_) => Err(format!("{}: `{key}` must be true or false", self.op)),
        }
    }

    pub fn string_or(&mut self, key: &str, default: &str) -> R<String> {
        match self.take(key) {
            None => Ok(default.to_string()),
            Some(Attr::Str(s)) => Ok(s),
            Some(_) => Err(format!("{}: `{key}` must be a string", self.op)),
        }
    }

    pub fn ident(&mut self, key: &str) -> R<String> {
        match self.need(key)? {
            Attr::Ident(s) | Attr::Str(s) => Ok(s),
            _ => Err(format!("{}: `{key}` must be a name", self.op)),
        }
    }

    fn list(&mut self, key: &str) -> R<Option<Vec<Attr>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Attr::List(v)) => Ok(Some(v)),
            Some(_) => Err(format!("{}: `{key}` must be a list", self.op)),
        }
    }

    pub fn ints(&mut self, key: &str) -> R<Vec<i64>> {
        let v = self.list(key)?.ok_or_else(|| format!("{} needs attribute `{key}`", self.op))?;
        v.iter().map(|a| self.int_of(key, a)).collect()
    }

    /// A list of ints that may be left out (empty), as dot_general's dim lists.
    pub fn usizes_or_empty(&mut self, key: &str) -> R<Vec<usize>> {
        let v = self.list(key)?.unwrap_or_default();
        v.iter()
            .map(|a| self.int_of(key, a).and_then(|i| usize::try_from(i).map_err(|_| format!("`{key}` entries must be >= 0"))))
            .collect()
    }

    pub fn usizes(&mut self, key: &str) -> R<Vec<usize>> {
        if !self.attrs.iter().any(|(k, _)| k == key) {
            return Err(format!("{} needs attribute `{key}`", self.op));
        }
        self.usizes_or_empty(key)
    }

    pub fn floats(&mut self, key: &str) -> R<Option<Vec<f64>>> {
        match self.list(key)? {
            None => Ok(None),
            Some(v) => v.iter().map(|a| self.float_of(key, a)).collect::<R<Vec<_>>>().map(Some),
        }
    }

    pub fn pairs(&mut self, key: &str) -> R<Vec<(i64, i64)>> {
        let v = self.list(key)?.ok_or_else(|| format!("{} needs attribute `{key}`", self.op))?;
        v.iter()
            .map(|a| match a {
                Attr::List(p) if p.len() == 2 => Ok((self.int_of(key, &p[0])?, self.int_of(key, &p[1])?)),
                _ => Err(format!("{}: `{key}` must be a list of [low, high] pairs", self.op)),
            })
            .collect()
    }

    pub fn finish(self) -> R<()> {
        match self.attrs.first() {
            None => Ok(()),
            Some((k, _)) => Err(format!("{} has no attribute `{k}`", self.op)),
        }
    }
}

fn tensor_result<'a>(op: &str, ty: &'a Type) -> R<&'a TensorType> {
    ty.tensor().ok_or_else(|| format!("{op} has a tensor result"))
}

fn lookup<T: Copy>(what: &str, name: &str, all: &[T], f: impl Fn(T) -> &'static str) -> R<T> {
    all.iter().copied().find(|&x| f(x) == name).ok_or_else(|| format!("unknown {what} `{name}`"))
}

/// Rebuilds an op from its name, attributes, result type and regions (for `while`).
pub fn build_op(name: &str, mut a: AttrReader, ty: &Type, mut regions: Vec<Graph>) -> R<Op> {
    let op = match name {
        "constant" => {
            let ty = tensor_result(name, ty)?.clone();
            let data = match a.floats("values")? {
                Some(vs) => LiteralData::Dense(vs),
                None => LiteralData::Splat(a.float("value")?),
            };
            Op::Constant(Literal { ty, data })
        }
        "iota" => Op::Iota { ty: tensor_result(name, ty)?.clone(), dim: a.usize("dim")? },
        "compare" => Op::Compare(lookup("comparison", &a.ident("dir")?, &CompareDir::ALL, CompareDir::name)?),
        "select" => Op::Select,
        "convert" => Op::Convert { to: tensor_result(name, ty)?.dtype },
        "broadcast_in_dim" => {
            Op::BroadcastInDim { shape: tensor_result(name, ty)?.shape.clone(), dims: a.usizes("dims")? }
        }
        "reshape" => Op::Reshape { shape: tensor_result(name, ty)?.shape.clone() },
        "transpose" => Op::Transpose { perm: a.usizes("perm")? },
        "slice" => Op::Slice { start: a.ints("start")?, limit: a.ints("limit")?, strides: a.ints("strides")? },
        "dynamic_slice" => Op::DynamicSlice { sizes: tensor_result(name, ty)?.shape.clone() },
        "dynamic_update_slice" => Op::DynamicUpdateSlice,
        "take" => Op::Take { axis: a.usize("axis")? },
        "concatenate" => Op::Concatenate { dim: a.usize("dim")? },
        "pad" => Op::Pad { low: a.ints("low")?, high: a.ints("high")?, interior: a.ints("interior")? },
        "dot_general" => Op::DotGeneral(DotDims {
            lhs_batch: a.usizes_or_empty("lhs_batch")?,
            rhs_batch: a.usizes_or_empty("rhs_batch")?,
            lhs_contract: a.usizes_or_empty("lhs_contract")?,
            rhs_contract: a.usizes_or_empty("rhs_contract")?,
        }),
        "convolution" => Op::Convolution(ConvAttrs {
            strides: a.ints("strides")?,
            padding: a.pairs("padding")?,
            lhs_dilation: a.ints("lhs_dilation")?,
            rhs_dilation: a.ints("rhs_dilation")?,
            feature_group_count: a.int("groups")?,
        }),
        "reduce" => Op::Reduce {
            kind: lookup("reduction", &a.ident("kind")?, &ReduceKind::ALL, ReduceKind::name)?,
            axes: a.usizes("axes")?,
        },
        "while" => {
            if regions.len() != 2 {
                return Err("while needs two regions: cond and body".into());
            }
            let body = regions.pop().unwrap();
            let cond = regions.pop().unwrap();
            Op::While { cond: Box::new(cond), body: Box::new(body) }
        }
        "custom_call" => Op::CustomCall {
            target: a.string_or("target", "")?,
            backend_config: a.string_or("backend_config", "")?,
            has_side_effect: a.bool_or("side_effect", false)?,
            typed_ffi: a.bool_or("typed_ffi", false)?,
            result: ty.flatten(),
        },
        "get" => Op::GetTuple { index: a.usize("index")? },
        "reshard" => Op::Reshard,
        "softmax" => Op::Softmax { axis: a.usize("axis")? },
        "attention" => {
            let kind = lookup("attention kind", &a.ident("kind")?, &AttentionKind::ALL, AttentionKind::name)?;
            let scale = a.float("scale")?;
            let has_mask = a.bool_or("mask", false)?;
            let window = match a.list("window")? {
                None => None,
                Some(v) if v.len() == 2 => Some((a.int_of("window", &v[0])?, a.int_of("window", &v[1])?)),
                Some(_) => return Err("attention: `window` must be [left, right]".into()),
            };
            let window_span = match a.list("window_span")? {
                None => None,
                Some(v) if v.len() == 2 => Some((a.int_of("window_span", &v[0])?, a.int_of("window_span", &v[1])?)),
                Some(_) => return Err("attention: `window_span` must be [start, end]".into()),
            };
            Op::Attention { kind, scale, has_mask, window, window_span }
        }
        "layer_norm" => Op::LayerNorm {
            eps: a.float("eps")?,
            has_weight: a.bool_or("weight", false)?,
            has_bias: a.bool_or("bias", false)?,
        },
        "rms_norm" => Op::RmsNorm { eps: a.float("eps")?, has_weight: a.bool_or("weight", false)? },
        "group_norm" => {
            Op::GroupNorm { groups: a.int("groups")?, eps: a.float("eps")?, affine: a.bool_or("affine", false)? }
        }
        "gelu" => Op::Gelu {
            approximate: lookup("gelu form", &a.ident("approximate")?, &[GeluApprox::Tanh, GeluApprox::Erf], GeluApprox::name)?,
        },
        other => {
            if let Ok(u) = lookup("op", other, &UnaryOp::ALL, UnaryOp::name) {
                Op::Unary(u)
            } else if let Ok(b) = lookup("op", other, &BinaryOp::ALL, BinaryOp::name) {
                Op::Binary(b)
            } else {
                return Err(format!("unknown op `{other}`"));
            }
        }
    };
    if name != "while" && !regions.is_empty() {
        return Err(format!("{name} takes no regions"));
    }
    a.finish()?;
    Ok(op)
}
