//! MLIR itself as a checker of emitted modules (`--features mlir`; melior 0.27 on LLVM/MLIR 22).
//!
//! Upstream MLIR has no StableHLO dialect, so modules are parsed with unregistered dialects
//! allowed: `stablehlo.*` ops (written in generic form) are kept as opaque operations, while the
//! `builtin` and `func` dialects are real. What MLIR checks is therefore the structure: the SSA
//! names and their types at every use, dominance, region and block arguments, attribute and type
//! syntax, `func.func`'s signature against `func.return`'s operands. Op-specific StableHLO rules
//! (e.g. a `dot_general` result shape) are not checked here: that is the plugin's job.
//!
//! Every call builds its own single-threaded MLIR context, so the functions are thread-safe and
//! what one call loads never leaks into another.

use melior::{
    diagnostic::{Diagnostic, DiagnosticSeverity},
    dialect::{DialectHandle, DialectRegistry},
    ir::{
        operation::{OperationLike, OperationPrintingFlags},
        BytecodeWriterConfig, Module,
    },
    Context,
};
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use thiserror::Error;

/// How much of a note (MLIR attaches "see current operation: ..." with the op printed) to keep.
const NOTE_LIMIT: usize = 600;
/// How much of a source line to quote under a diagnostic.
const SOURCE_LINE_LIMIT: usize = 240;
/// Module lines quoted when MLIR fails without saying where.
const CONTEXT_LINES: usize = 8;

/// One diagnostic from MLIR, with the position in the module text when MLIR gave one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlirDiagnostic {
    /// "error", "warning", "remark" or "note".
    pub severity: &'static str,
    /// 1-based line and column in the module text.
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// MLIR's message, as it prints it.
    pub message: String,
    /// The notes MLIR attached (each cut to a few hundred characters).
    pub notes: Vec<String>,
    /// The module line the diagnostic points at (cut to a few hundred characters).
    pub source_line: Option<String>,
}

impl fmt::Display for MlirDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{l}:{c}: ")?,
            (Some(l), None) => write!(f, "{l}: ")?,
            _ => {}
        }
        write!(f, "{}: {}", self.severity, self.message)?;
        if let Some(src) = &self.source_line {
            write!(f, "\n    | {src}")?;
        }
        for n in &self.notes {
            write!(f, "\n    note: {n}")?;
        }
        Ok(())
    }
}

/// Why MLIR rejected a module (or could not serialise it).
#[derive(Debug, Error)]
pub enum MlirError {
    /// The parser failed. MLIR's parser also runs the verifier on what it parsed, so verifier
    /// errors (e.g. a `func.return` that does not match the signature) arrive here as well.
    #[error("MLIR failed to parse or verify the module:\n{}", render(.diagnostics, .context))]
    Parse { diagnostics: Vec<MlirDiagnostic>, context: String },
    /// The module parsed, but the verifier, run again on the parsed module, failed.
    #[error("MLIR failed to verify the module:\n{}", render(.diagnostics, .context))]
    Verify { diagnostics: Vec<MlirDiagnostic>, context: String },
    /// The text holds a NUL byte, which MLIR's C API cannot take.
    #[error("module text holds a NUL byte at offset {0}")]
    Nul(usize),
    /// Writing bytecode or printing failed.
    #[error("MLIR failed to {what}: {message}")]
    Output { what: &'static str, message: String },
}

impl MlirError {
    /// The diagnostics MLIR reported (empty for `Nul` and `Output`).
    pub fn diagnostics(&self) -> &[MlirDiagnostic] {
        match self {
            MlirError::Parse { diagnostics, .. } | MlirError::Verify { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}

fn render(diagnostics: &[MlirDiagnostic], context: &str) -> String {
    if diagnostics.is_empty() {
        return format!("(MLIR gave no diagnostic) module begins:\n{context}");
    }
    diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n")
}

/// Parses `text` (StableHLO module text, generic or pretty form for builtin/func) and runs the
/// MLIR verifier on it.
pub fn verify_module(text: &str) -> Result<(), MlirError> {
    with_module(text, |_| Ok(()))
}

/// `text` parsed and written as MLIR bytecode (starts with `ML\xefR`), at the writer's current
/// bytecode version. Unregistered ops are written as such: a reader needs unregistered dialects
/// allowed, or the StableHLO dialect registered.
pub fn to_bytecode(text: &str) -> Result<Vec<u8>, MlirError> {
    with_module(text, |module| {
        let config = BytecodeWriterConfig::new();
        module
            .as_operation()
            .write_bytecode_with_config(&config)
            .map_err(|e| MlirError::Output { what: "write bytecode", message: e.to_string() })
    })
}

/// `text` parsed and printed back by MLIR in generic form, without locations, with no elided
/// constants.
pub fn reprint(text: &str) -> Result<String, MlirError> {
    with_module(text, |module| {
        let flags = OperationPrintingFlags::new().print_generic_operation_form();
        module
            .as_operation()
            .to_string_with_flags(flags)
            .map_err(|e| MlirError::Output { what: "print the module", message: e.to_string() })
    })
}

/// Parses and verifies `text` in a fresh context, then hands the module to `f`.
fn with_module<T>(text: &str, f: impl FnOnce(&Module) -> Result<T, MlirError>) -> Result<T, MlirError> {
    if let Some(at) = text.find('\0') {
        return Err(MlirError::Nul(at));
    }
    let registry = DialectRegistry::new();
    DialectHandle::func().insert_dialect(&registry);
    let context = Context::new_with_registry(&registry, false);
    context.set_allow_unregistered_dialects(true);
    context.load_all_available_dialects();

    let collected: Rc<RefCell<Vec<MlirDiagnostic>>> = Rc::default();
    let sink = Rc::clone(&collected);
    let handler = context.attach_diagnostic_handler(move |d: Diagnostic| {
        sink.borrow_mut().push(convert(&d));
        true // handled: nothing goes to stderr
    });

    let result = match Module::parse(&context, text) {
        None => Err(MlirError::Parse { diagnostics: take(&collected, text), context: head(text) }),
        Some(module) => {
            if module.as_operation().verify() {
                f(&module)
            } else {
                Err(MlirError::Verify { diagnostics: take(&collected, text), context: head(text) })
            }
        }
    };
    context.detach_diagnostic_handler(handler);
    result
}

/// The diagnostics collected so far, each with the module line it points at.
fn take(collected: &Rc<RefCell<Vec<MlirDiagnostic>>>, text: &str) -> Vec<MlirDiagnostic> {
    let mut diags = std::mem::take(&mut *collected.borrow_mut());
    let lines: Vec<&str> = text.lines().collect();
    for d in &mut diags {
        if let Some(l) = d.line {
            d.source_line = lines.get(l as usize - 1).map(|s| cut(s.trim(), SOURCE_LINE_LIMIT));
        }
    }
    diags
}

fn convert(d: &Diagnostic) -> MlirDiagnostic {
    let severity = match d.severity() {
        DiagnosticSeverity::Error => "error",
        DiagnosticSeverity::Warning => "warning",
        DiagnosticSeverity::Remark => "remark",
        DiagnosticSeverity::Note => "note",
    };
    let (line, column) = line_col(&d.location().to_string());
    let notes = (0..d.note_count())
        .filter_map(|i| d.note(i).ok())
        .map(|n| {
            let at = match line_col(&n.location().to_string()) {
                (Some(l), Some(c)) => format!("{l}:{c}: "),
                _ => String::new(),
            };
            cut(&format!("{at}{n}"), NOTE_LIMIT)
        })
        .collect();
    MlirDiagnostic { severity, line, column, message: d.to_string(), notes, source_line: None }
}

/// Line and column from a printed location such as `loc("-":3:5)` or `loc(":3:5 to :3:9")`.
fn line_col(loc: &str) -> (Option<u32>, Option<u32>) {
    // The file name is quoted and may hold anything: look after its closing quote.
    let rest = match (loc.find('"'), loc.rfind('"')) {
        (Some(a), Some(b)) if b > a => &loc[b + 1..],
        _ => loc,
    };
    let mut nums = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    match (nums.next().flatten(), nums.next().flatten()) {
        (Some(l), c) if l > 0 => (Some(l), c),
        _ => (None, None),
    }
}

fn head(text: &str) -> String {
    text.lines().take(CONTEXT_LINES).map(|l| cut(l, SOURCE_LINE_LIMIT)).collect::<Vec<_>>().join("\n")
}

fn cut(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ... ({} more characters)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(line_col(r#"loc("-":3:5)"#), (Some(3), Some(5)));
        assert_eq!(line_col(r#"loc("a:1:2":7:9 to :7:12)"#), (Some(7), Some(9)));
        assert_eq!(line_col("loc(unknown)"), (None, None));
    }
}
