//! IR errors: each names the op, the operand types and what was expected.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// An op was given operands (or attributes) whose types or shapes it cannot take.
    #[error("{op}: {message} (operands: {operands})")]
    Shape { op: String, operands: String, message: String },
    /// A value id that does not exist, or is used before it is defined.
    #[error("{0}")]
    Value(String),
    /// The verifier found a node whose recorded type or structure is wrong.
    #[error("verify: %{node} = {op}: {message}")]
    Verify { node: u32, op: String, message: String },
    /// The IR text could not be parsed.
    #[error("parse error at line {line}, column {column}: {message}")]
    Parse { line: usize, column: usize, message: String },
}

pub type Result<T, E = IrError> = std::result::Result<T, E>;
