//! Printing a graph in the IR text form.

use super::attrs::{op_attrs, Attr};
use crate::graph::Graph;
use crate::op::Op;
use std::fmt::Write;

/// The graph as IR text; `parse` reads it back to an equal graph.
pub fn print(graph: &Graph) -> String {
    let mut out = String::new();
    print_graph(graph, 0, &mut out);
    out
}

fn print_graph(g: &Graph, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    let _ = writeln!(out, "{pad}graph @{} {{", g.name);
    if let Some(mesh) = &g.mesh {
        let _ = writeln!(out, "{pad}  mesh {mesh}");
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let _ = write!(out, "{pad}  %{i} = {}", node.op.name());
        match &node.op {
            Op::Input { name } | Op::Weight { name } => {
                let _ = write!(out, " {}", quote(name));
            }
            _ => {
                let operands: Vec<String> = node.operands.iter().map(|o| o.to_string()).collect();
                let _ = write!(out, "({})", operands.join(", "));
            }
        }
        let attrs = op_attrs(&node.op);
        if !attrs.is_empty() {
            let parts: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={}", attr_text(v))).collect();
            let _ = write!(out, " {{{}}}", parts.join(", "));
        }
        if let Op::While { cond, body } = &node.op {
            out.push_str(" regions {\n");
            print_graph(cond, indent + 2, out);
            print_graph(body, indent + 2, out);
            let _ = write!(out, "{pad}  }}");
        }
        let _ = write!(out, " : {}", node.ty);
        if let Some(s) = &node.sharding {
            let _ = write!(out, " sharding={s}");
        }
        out.push('\n');
    }
    for o in &g.outputs {
        let _ = writeln!(out, "{pad}  output {} = {}", quote(&o.name), o.value);
    }
    let _ = writeln!(out, "{pad}}}");
}

fn attr_text(a: &Attr) -> String {
    match a {
        Attr::Int(i) => i.to_string(),
        // `{:?}` is the shortest text that reads back to the same f64, and always has a `.` or `e`.
        Attr::Float(f) => format!("{f:?}"),
        Attr::Bool(b) => b.to_string(),
        Attr::Str(s) => quote(s),
        Attr::Ident(s) => s.clone(),
        Attr::List(v) => format!("[{}]", v.iter().map(attr_text).collect::<Vec<_>>().join(", ")),
    }
}

pub(super) fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}
