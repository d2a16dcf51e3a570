//! Parsing the IR text form back into a graph; the result is verified before it is returned.

use super::attrs::{build_op, Attr, AttrReader};
use crate::error::{IrError, Result};
use crate::graph::{Graph, ValueId};
use crate::mesh::Mesh;
use crate::op::Op;
use crate::sharding::Sharding;
use crate::types::{TensorType, Type};
use crate::DType;
use std::collections::HashMap;

/// Parses one `graph @name { ... }` and verifies it.
pub fn parse(text: &str) -> Result<Graph> {
    let mut p = Parser { tokens: lex(text)?, pos: 0 };
    let g = p.graph()?;
    if p.pos < p.tokens.len() {
        return Err(p.error("expected end of input after the graph"));
    }
    crate::verify::verify(&g)?;
    Ok(g)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Value(String),
    Global(String),
    Str(String),
    Int(i64),
    Float(f64),
    Punct(char),
}

struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn lex(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut line_start) = (0, 1, 0);
    let mut out = Vec::new();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    while i < chars.len() {
        let c = chars[i];
        let column = i - line_start + 1;
        let err = |message: String| IrError::Parse { line, column, message };
        if c == '\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let tok = if c == '%' || c == '@' {
            i += 1;
            while i < chars.len() && word(chars[i]) {
                i += 1;
            }
            let name: String = chars[start + 1..i].iter().collect();
            if name.is_empty() {
                return Err(err(format!("`{c}` must be followed by a name")));
            }
            if c == '%' {
                Tok::Value(name)
            } else {
                Tok::Global(name)
            }
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err("unterminated string".into())),
                    Some('"') => break,
                    Some('\\') => {
                        s.push(match chars.get(i + 1) {
                            Some('n') => '\n',
                            Some(&c) => c,
                            None => return Err(err("unterminated string".into())),
                        });
                        i += 2;
                    }
                    Some(&c) => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
            Tok::Str(s)
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric())) {
            i += 1;
            while i < chars.len()
                && (word(chars[i]) || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            if let Ok(v) = s.parse::<i64>() {
                Tok::Int(v)
            } else if let Ok(v) = s.parse::<f64>() {
                Tok::Float(v)
            } else {
                return Err(err(format!("bad number `{s}`")));
            }
        } else if word(c) {
            while i < chars.len() && word(chars[i]) {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            match s.as_str() {
                "inf" | "NaN" => Tok::Float(s.parse().unwrap()),
                _ => Tok::Ident(s),
            }
        } else if "=(){}[],:".contains(c) {
            i += 1;
            Tok::Punct(c)
        } else {
            return Err(err(format!("unexpected character `{c}`")));
        };
        out.push(Token { tok, line, column });
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> IrError {
        let (line, column) = match self.tokens.get(self.pos).or(self.tokens.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
        };
        IrError::Parse { line, column, message: message.into() }
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> Result<Tok> {
        let t = self.tokens.get(self.pos).map(|t| t.tok.clone()).ok_or_else(|| self.error("unexpected end of input"))?;
        self.pos += 1;
        Ok(t)
    }

    fn is_punct(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(i)) if i == s)
    }

    fn expect_punct(&mut self, c: char) -> Result<()> {
        if self.is_punct(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected `{c}`")))
        }
    }

    fn expect_ident(&mut self, s: &str) -> Result<()> {
        if self.is_ident(s) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected `{s}`")))
        }
    }

    fn graph(&mut self) -> Result<Graph> {
        self.expect_ident("graph")?;
        let name = match self.next()? {
            Tok::Global(n) => n,
            _ => return Err(self.error("expected the graph name `@name`")),
        };
        self.expect_punct('{')?;
        let mut g = Graph::new(name);
        if self.is_ident("mesh") {
            self.pos += 1;
            g.mesh = Some(self.mesh()?);
        }
        let mut names: HashMap<String, ValueId> = HashMap::new();
        while !self.is_punct('}') {
            if self.is_ident("output") {
                self.pos += 1;
                let name = self.string()?;
                self.expect_punct('=')?;
                let v = self.value(&names)?;
                g.add_output(name, v);
            } else {
                self.node(&mut g, &mut names)?;
            }
        }
        self.expect_punct('}')?;
        Ok(g)
    }

    fn string(&mut self) -> Result<String> {
        match self.next()? {
            Tok::Str(s) => Ok(s),
            _ => Err(self.error("expected a quoted string")),
        }
    }

    fn value(&mut self, names: &HashMap<String, ValueId>) -> Result<ValueId> {
        match self.next()? {
            Tok::Value(n) => names.get(&n).copied().ok_or_else(|| {
                self.pos -= 1;
                self.error(format!("%{n} is not defined"))
            }),
            _ => Err(self.error("expected a value `%name`")),
        }
    }

    fn node(&mut self, g: &mut Graph, names: &mut HashMap<String, ValueId>) -> Result<()> {
        let result = match self.next()? {
            Tok::Value(n) => n,
            _ => {
                self.pos -= 1;
                return Err(self.error("expected `%name = op ...` or `output`"));
            }
        };
        if names.contains_key(&result) {
            self.pos -= 1;
            return Err(self.error(format!("%{result} is defined twice")));
        }
        self.expect_punct('=')?;
        let op_pos = self.pos;
        let op_name = match self.next()? {
            Tok::Ident(s) => s,
            _ => return Err(self.error("expected an op name")),
        };
        let mut operands = Vec::new();
        let mut input_name = None;
        if op_name == "input" || op_name == "weight" {
            input_name = Some(self.string()?);
        } else {
            self.expect_punct('(')?;
            while !self.is_punct(')') {
                operands.push(self.value(names)?);
                if !self.is_punct(')') {
                    self.expect_punct(',')?;
                }
            }
            self.expect_punct(')')?;
        }
        let attrs = if self.is_punct('{') { self.attrs()? } else { vec![] };
        let mut regions = Vec::new();
        if self.is_ident("regions") {
            self.pos += 1;
            self.expect_punct('{')?;
            while !self.is_punct('}') {
                regions.push(self.graph()?);
            }
            self.expect_punct('}')?;
        }
        self.expect_punct(':')?;
        let ty = self.ty()?;
        let op = match input_name {
            Some(name) if op_name == "input" => Op::Input { name },
            Some(name) => Op::Weight { name },
            None => build_op(&op_name, AttrReader::new(&op_name, attrs), &ty, regions).map_err(|m| {
                self.pos = op_pos;
                self.error(m)
            })?,
        };
        let id = g.push_typed(op, operands, ty);
        if self.is_ident("sharding") {
            self.pos += 1;
            self.expect_punct('=')?;
            g.nodes[id.index()].sharding = Some(self.sharding()?);
        }
        names.insert(result, id);
        Ok(())
    }

    /// `dp=2,tp=4` after `mesh`.
    fn mesh(&mut self) -> Result<Mesh> {
        let start = self.pos;
        let mut axes = Vec::new();
        loop {
            let name = match self.next()? {
                Tok::Ident(n) => n,
                _ => return Err(self.error("expected a mesh axis `name=size`")),
            };
            self.expect_punct('=')?;
            let size = match self.next()? {
                Tok::Int(n) => u32::try_from(n).map_err(|_| self.error(format!("mesh axis `{name}`: bad size {n}")))?,
                _ => return Err(self.error(format!("mesh axis `{name}` needs an integer size"))),
            };
            axes.push((name, size));
            if !self.is_punct(',') {
                break;
            }
            self.pos += 1;
        }
        Mesh::new(axes).map_err(|e| {
            self.pos = start;
            self.error(e.to_string())
        })
    }

    /// `[{dp},{},{dp,tp}]`: per dim, the mesh axes that split it.
    fn sharding(&mut self) -> Result<Sharding> {
        self.expect_punct('[')?;
        let mut dims = Vec::new();
        while !self.is_punct(']') {
            self.expect_punct('{')?;
            let mut axes = Vec::new();
            while !self.is_punct('}') {
                match self.next()? {
                    Tok::Ident(a) => axes.push(a),
                    _ => return Err(self.error("expected a mesh axis name")),
                }
                if !self.is_punct('}') {
                    self.expect_punct(',')?;
                }
            }
            self.expect_punct('}')?;
            dims.push(axes);
            if !self.is_punct(']') {
                self.expect_punct(',')?;
            }
        }
        self.expect_punct(']')?;
        Ok(Sharding { dims })
    }

    fn attrs(&mut self) -> Result<Vec<(String, Attr)>> {
        self.expect_punct('{')?;
        let mut out = Vec::new();
        while !self.is_punct('}') {
            let key = match self.next()? {
                Tok::Ident(k) => k,
                _ => return Err(self.error("expected an attribute name")),
            };
            self.expect_punct('=')?;
            out.push((key, self.attr()?));
            if !self.is_punct('}') {
                self.expect_punct(',')?;
            }
        }
        self.expect_punct('}')?;
        Ok(out)
    }

    fn attr(&mut self) -> Result<Attr> {
        Ok(match self.next()? {
            Tok::Int(i) => Attr::Int(i),
            Tok::Float(f) => Attr::Float(f),
            Tok::Str(s) => Attr::Str(s),
            Tok::Ident(s) if s == "true" || s == "false" => Attr::Bool(s == "true"),
            Tok::Ident(s) => Attr::Ident(s),
            Tok::Punct('[') => {
                let mut v = Vec::new();
                while !self.is_punct(']') {
                    v.push(self.attr()?);
                    if !self.is_punct(']') {
                        self.expect_punct(',')?;
                    }
                }
                self.expect_punct(']')?;
                Attr::List(v)
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("expected an attribute value"));
            }
        })
    }

    fn int_list(&mut self) -> Result<Vec<i64>> {
        self.expect_punct('[')?;
        let mut v = Vec::new();
        while !self.is_punct(']') {
            match self.next()? {
                Tok::Int(i) => v.push(i),
                _ => return Err(self.error("expected an integer")),
            }
            if !self.is_punct(']') {
                self.expect_punct(',')?;
            }
        }
        self.expect_punct(']')?;
        Ok(v)
    }

    fn tensor_ty(&mut self) -> Result<TensorType> {
        let dtype: DType = match self.next()? {
            Tok::Ident(s) => s.parse().map_err(|m: String| {
                self.pos -= 1;
                self.error(m)
            })?,
            _ => return Err(self.error("expected a tensor type such as f32[2,3]")),
        };
        Ok(TensorType::new(dtype, self.int_list()?))
    }

    fn ty(&mut self) -> Result<Type> {
        if self.is_punct('(') {
            self.pos += 1;
            let mut v = Vec::new();
            while !self.is_punct(')') {
                v.push(self.tensor_ty()?);
                if !self.is_punct(')') {
                    self.expect_punct(',')?;
                }
            }
            self.expect_punct(')')?;
            Ok(Type::Tuple(v))
        } else {
            Ok(Type::Tensor(self.tensor_ty()?))
        }
    }
}
