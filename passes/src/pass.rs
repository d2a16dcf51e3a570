//! The pass interface.

use crate::PassError;
use vidlower_ir::Graph;

/// A named `Graph -> Graph` rewrite.
///
/// Contract (checked by the [`PassManager`](crate::PassManager) after every pass): the result
/// verifies; `Graph::inputs` keeps the same nodes (names, kinds, types) in the same order, even
/// when an input becomes unused, because it is the executable's parameter list; the outputs keep
/// their names, order and types.
pub trait Pass {
    /// The name pipelines, `--passes` and `--dump-after` use.
    fn name(&self) -> &'static str;
    /// Rewrites `graph`. Passes take the graph by value so one that changes nothing can hand it back.
    fn run(&self, graph: Graph) -> Result<Graph, PassError>;
}
