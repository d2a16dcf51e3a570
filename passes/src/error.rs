//! Pass errors: each names the pass (or the pipeline step) that failed and why.

use thiserror::Error;
use vidlower_ir::IrError;

/// Why a pass or a pipeline could not run. The CLI prints the `Display` text as its one line.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PassError {
    /// A pass could not rewrite the graph (a case it does not handle, an internal inconsistency).
    #[error("pass `{pass}`: {message}")]
    Failed { pass: &'static str, message: String },
    /// The IR rejected a node a pass tried to build.
    #[error("pass `{pass}`: {source}")]
    Ir {
        pass: &'static str,
        #[source]
        source: IrError,
    },
    /// The graph handed to the pipeline does not verify, so no pass is to blame.
    #[error("the input graph does not verify: {0}")]
    InvalidInput(#[source] IrError),
    /// The graph stopped verifying after this pass ran.
    #[error("the graph does not verify after pass `{pass}`: {source}")]
    Verify {
        pass: &'static str,
        #[source]
        source: IrError,
    },
    /// A pass changed the executable's parameters or results, which no pass may do.
    #[error("pass `{pass}` changed the graph's interface: {message}")]
    Interface { pass: &'static str, message: String },
    /// A pipeline named a pass that is not registered.
    #[error("unknown pass `{name}`; known passes: {known}")]
    UnknownPass { name: String, known: String },
    /// `--dump-after` named a pass that the pipeline does not run, so the dump would never happen.
    #[error("cannot dump after `{name}`: the pipeline runs {pipeline}")]
    DumpTarget { name: String, pipeline: String },
}

impl PassError {
    /// A `map_err` adapter for IR errors raised while `pass` builds nodes.
    pub fn ir(pass: &'static str) -> impl Fn(IrError) -> PassError {
        move |source| PassError::Ir { pass, source }
    }

    /// A [`PassError::Failed`] for `pass`.
    pub fn failed(pass: &'static str, message: impl Into<String>) -> PassError {
        PassError::Failed { pass, message: message.into() }
    }
}
