//! The pass manager: runs a pipeline, verifies the graph after every pass (a failure names the
//! pass that broke it), checks that no pass changed the executable's interface, times each pass,
//! and dumps the IR text after the passes asked for.

use crate::key::fingerprint;
use crate::registry::{create_pass, DEFAULT_PIPELINE};
use crate::{Pass, PassError};
use std::fmt;
use std::time::{Duration, Instant};
use vidlower_ir::{text, verify, Graph, Op};

/// After which passes the IR text goes to the dump sink.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum DumpAfter {
    /// No dumps.
    #[default]
    None,
    /// After every pass.
    All,
    /// After each run of the pass with this name.
    Pass(String),
}

/// What one pass did.
#[derive(Clone, Debug, PartialEq)]
pub struct PassReport {
    /// The pass's name.
    pub name: &'static str,
    /// Wall time of the pass itself (verification and dumps not included).
    pub duration: Duration,
    /// `Graph::op_count` before the pass (regions included, inputs not).
    pub ops_before: usize,
    /// `Graph::op_count` after the pass.
    pub ops_after: usize,
    /// Whether the graph differs at all after the pass (by a 64-bit fingerprint, floats by bits).
    pub changed: bool,
}

impl fmt::Display for PassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<14} {:>9.3} ms  {:>7} -> {:<7} ops{}",
            self.name,
            self.duration.as_secs_f64() * 1e3,
            self.ops_before,
            self.ops_after,
            if self.changed { "" } else { "  (unchanged)" }
        )
    }
}

/// The result of running a pipeline.
#[derive(Clone, Debug)]
pub struct PipelineRun {
    /// The rewritten, verified graph.
    pub graph: Graph,
    /// One report per pass, in pipeline order.
    pub reports: Vec<PassReport>,
}

/// A pipeline of passes and its dump setting.
#[derive(Default)]
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    dump_after: DumpAfter,
}

/// The pipeline `compile` runs by default (see [`DEFAULT_PIPELINE`]).
pub fn default_pipeline() -> PassManager {
    PassManager::from_names(DEFAULT_PIPELINE).expect("the default pipeline names registered passes")
}

impl PassManager {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pipeline of registered passes by name; an unknown name is an error listing the known ones.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, PassError> {
        let passes = names.iter().map(|n| create_pass(n.as_ref())).collect::<Result<_, _>>()?;
        Ok(PassManager { passes, dump_after: DumpAfter::None })
    }

    /// Appends a pass (one not in the registry, a test's, a target's).
    pub fn add(&mut self, pass: Box<dyn Pass>) -> &mut Self {
        self.passes.push(pass);
        self
    }

    /// The pass names in pipeline order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Sets when to dump. Naming a pass the pipeline does not run is an error, since the dump the
    /// user asked for would silently never come.
    pub fn set_dump_after(&mut self, dump: DumpAfter) -> Result<&mut Self, PassError> {
        if let DumpAfter::Pass(name) = &dump {
            if !self.passes.iter().any(|p| p.name() == name) {
                return Err(PassError::DumpTarget { name: name.clone(), pipeline: self.names().join(", ") });
            }
        }
        self.dump_after = dump;
        Ok(self)
    }

    /// Runs the pipeline without dumping.
    pub fn run(&self, graph: Graph) -> Result<PipelineRun, PassError> {
        self.run_with_dumps(graph, &mut |_, _| {})
    }

    /// Runs the pipeline, handing `(pass name, IR text)` to `sink` after each pass the dump
    /// setting selects.
    pub fn run_with_dumps(&self, graph: Graph, sink: &mut dyn FnMut(&str, &str)) -> Result<PipelineRun, PassError> {
        verify(&graph).map_err(PassError::InvalidInput)?;
        let mut graph = graph;
        let mut reports = Vec::with_capacity(self.passes.len());
        for pass in &self.passes {
            let name = pass.name();
            // A fingerprint and the interface, not a copy: model graphs hold large constants.
            let (fingerprint_before, interface_before) = (fingerprint(&graph), Interface::of(&graph));
            let ops_before = graph.op_count();
            let start = Instant::now();
            graph = pass.run(graph)?;
            let duration = start.elapsed();
            verify(&graph).map_err(|source| PassError::Verify { pass: name, source })?;
            interface_before.check(&graph).map_err(|message| PassError::Interface { pass: name, message })?;
            reports.push(PassReport {
                name,
                duration,
                ops_before,
                ops_after: graph.op_count(),
                changed: fingerprint(&graph) != fingerprint_before,
            });
            let dump = match &self.dump_after {
                DumpAfter::None => false,
                DumpAfter::All => true,
                DumpAfter::Pass(p) => p == name,
            };
            if dump {
                sink(name, &text::print(&graph));
            }
        }
        Ok(PipelineRun { graph, reports })
    }
}

/// What the executable built from a graph takes and returns: parameter kinds, names and types
/// in order, and output names and types in order.
struct Interface {
    params: Vec<String>,
    results: Vec<String>,
}

impl Interface {
    fn of(g: &Graph) -> Self {
        let params = g
            .inputs
            .iter()
            .map(|&v| {
                let kind = if matches!(g.node(v).op, Op::Weight { .. }) { "weight" } else { "input" };
                format!("{kind} \"{}\" : {}", g.input_name(v).unwrap_or("?"), g.ty(v))
            })
            .collect();
        let results = g.outputs.iter().map(|o| format!("\"{}\" : {}", o.name, g.ty(o.value))).collect();
        Interface { params, results }
    }

    /// Checks that `after` has this interface.
    fn check(&self, after: &Graph) -> Result<(), String> {
        let now = Interface::of(after);
        if now.params != self.params {
            return Err(format!("parameters were [{}], now [{}]", self.params.join(", "), now.params.join(", ")));
        }
        if now.results != self.results {
            return Err(format!("outputs were [{}], now [{}]", self.results.join(", "), now.results.join(", ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidlower_ir::text::parse;
    use vidlower_ir::Type;

    const GRAPH: &str = r#"
graph @g {
  %0 = input "x" : f32[2,8]
  %1 = weight "unused" : f32[8]
  %2 = softmax(%0) {axis=1} : f32[2,8]
  %3 = constant() {value=1.0} : f32[2,8]
  %4 = mul(%2, %3) : f32[2,8]
  %5 = exp(%0) : f32[2,8]
  output "y" = %4
}"#;

    /// A pass that breaks its contract in a chosen way.
    struct Breaks(&'static str);

    impl Pass for Breaks {
        fn name(&self) -> &'static str {
            "breaks"
        }
        fn run(&self, mut g: Graph) -> Result<Graph, PassError> {
            match self.0 {
                "type" => g.nodes[5].ty = Type::Tensor(vidlower_ir::TensorType::new(vidlower_ir::DType::F16, [2, 8])),
                "input" => {
                    g.nodes[1].op = Op::Weight { name: "renamed".into() };
                }
                "output" => g.outputs[0].name = "z".into(),
                _ => {}
            }
            Ok(g)
        }
    }

    #[test]
    fn default_pipeline_is_decompose_canonicalize_cse_dce() {
        assert_eq!(default_pipeline().names(), ["decompose", "canonicalize", "cse", "dce"]);
    }

    #[test]
    fn unknown_pass_names_are_rejected_with_the_known_list() {
        let err = PassManager::from_names(&["cse", "fold"]).err().unwrap();
        assert!(matches!(&err, PassError::UnknownPass { name, .. } if name == "fold"));
        assert!(err.to_string().contains("known passes: decompose, canonicalize, cse, dce"));
    }

    #[test]
    fn reports_time_op_counts_and_changes() {
        let run = default_pipeline().run(parse(GRAPH).unwrap()).unwrap();
        let summary: Vec<_> = run.reports.iter().map(|r| (r.name, r.ops_before, r.ops_after, r.changed)).collect();
        // decompose: softmax -> 7 primitives; canonicalize: drops the *1 (leaving dead nodes);
        // cse: nothing to merge; dce: removes the dead exp and constant.
        assert_eq!(
            summary,
            [("decompose", 4, 10, true), ("canonicalize", 10, 9, true), ("cse", 9, 9, false), ("dce", 9, 7, true),]
        );
        assert_eq!(run.graph.op_count(), 7);
        assert!(run.reports[0].to_string().starts_with("decompose"));
    }

    #[test]
    fn dumps_after_all_or_one_pass() {
        let mut pm = default_pipeline();
        let mut seen = Vec::new();
        pm.set_dump_after(DumpAfter::All).unwrap();
        pm.run_with_dumps(parse(GRAPH).unwrap(), &mut |p, text| seen.push((p.to_string(), text.to_string()))).unwrap();
        let names: Vec<_> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["decompose", "canonicalize", "cse", "dce"]);
        // Each dump is IR text that parses back to a valid graph.
        for (_, text) in &seen {
            parse(text).unwrap();
        }

        pm.set_dump_after(DumpAfter::Pass("cse".into())).unwrap();
        let mut count = 0;
        pm.run_with_dumps(parse(GRAPH).unwrap(), &mut |p, _| {
            assert_eq!(p, "cse");
            count += 1;
        })
        .unwrap();
        assert_eq!(count, 1);

        let err = pm.set_dump_after(DumpAfter::Pass("dcee".into())).err().unwrap();
        assert_eq!(err.to_string(), "cannot dump after `dcee`: the pipeline runs decompose, canonicalize, cse, dce");
    }

    #[test]
    fn a_graph_that_stops_verifying_names_the_pass() {
        let mut pm = PassManager::from_names(&["cse"]).unwrap();
        pm.add(Box::new(Breaks("type")));
        let err = pm.run(parse(GRAPH).unwrap()).err().unwrap();
        assert!(matches!(err, PassError::Verify { pass: "breaks", .. }), "{err}");
        assert!(err.to_string().starts_with("the graph does not verify after pass `breaks`"));
    }

    #[test]
    fn interface_changes_are_rejected() {
        for how in ["input", "output"] {
            let mut pm = PassManager::new();
            pm.add(Box::new(Breaks(how)));
            let err = pm.run(parse(GRAPH).unwrap()).err().unwrap();
            assert!(matches!(err, PassError::Interface { pass: "breaks", .. }), "{how}: {err}");
        }
    }

    #[test]
    fn an_invalid_input_graph_is_reported_as_such() {
        let mut g = parse(GRAPH).unwrap();
        g.inputs.reverse();
        let err = default_pipeline().run(g).err().unwrap();
        assert!(matches!(err, PassError::InvalidInput(_)), "{err}");
    }
}
