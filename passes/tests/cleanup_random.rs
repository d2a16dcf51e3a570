//! Property tests on graphs built for the cleanup passes (see `common/gen.rs`): canonicalize,
//! cse and dce, alone and as the default pipeline, give bit-for-bit the same outputs on the test
//! interpreter (floats are f64, so folding rounds nothing away), keep the graph verifying and
//! keep its interface.

mod common;

use common::gen::cleanup_graph;
use common::interp::eval;
use common::{assert_close, random_inputs};
use proptest::prelude::*;
use vidlower_passes::{default_pipeline, PassManager};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cleanups_preserve_values_exactly(seed in any::<u64>()) {
        let g = cleanup_graph(seed);
        let inputs = random_inputs(&g, seed);
        let expected = eval(&g, &inputs);
        for names in [&["canonicalize"][..], &["cse"], &["dce"], &["canonicalize", "cse", "dce"]] {
            // The manager verifies after each pass and rejects interface changes.
            let run = PassManager::from_names(names).unwrap().run(g.clone()).unwrap();
            assert_close(&format!("{names:?} on seed {seed}"), &expected, &eval(&run.graph, &inputs), 0.0);
        }
        let run = default_pipeline().run(g.clone()).unwrap();
        prop_assert!(run.graph.op_count() <= g.op_count());
    }
}
