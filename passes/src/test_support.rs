//! What the passes' unit tests share: run one pass on IR text the way the pass manager runs it
//! (input verified, output verified, interface unchanged), so each test checks only what its
//! pass is for.

use crate::{Pass, PassManager};
use vidlower_ir::text::parse;
use vidlower_ir::Graph;

/// Parses `text`, runs `pass` through a one-pass [`PassManager`] and returns the result; panics
/// (the test fails) when the pass errs, breaks the verifier or changes the graph's interface.
pub(crate) fn run_pass(pass: impl Pass + 'static, text: &str) -> Graph {
    let mut pm = PassManager::new();
    pm.add(Box::new(pass));
    pm.run(parse(text).expect("test IR parses")).unwrap_or_else(|e| panic!("{e}")).graph
}
