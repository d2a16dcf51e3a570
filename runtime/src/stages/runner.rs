//! The runtime's side of [`ComponentRunner`]: a family's pipeline logic (stage 1's encoders)
//! hands it a graph and inputs; it lowers the graph through the standard passes, compiles it
//! through the executable cache, uploads the component's weights once, and runs it. A graph
//! seen before (same name and signature) reuses its program.

use super::compiled::{passes_for, prepare, sharding_format, use_stored_names, ComponentTimes};
use crate::cache::ExecutableCache;
use crate::pjrt::Client;
use crate::program::{Program, Signature};
use crate::tensor::HostTensor;
use crate::weights::WeightStore;
use std::collections::HashMap;
use vidlower_frontends::family::{Component, ComponentRunner, FamilyError, Model};
use vidlower_ir::Graph;
use vidlower_passes::pipeline_options::PipelineOptions;

/// Prepared programs of one model, by graph.
pub struct StageRunner<'a> {
    model: &'a dyn Model,
    client: &'a Client,
    cache: Option<&'a ExecutableCache>,
    options: &'a PipelineOptions,
    programs: HashMap<String, Program>,
    weights: HashMap<Component, WeightStore>,
    /// How each program was obtained, in order, for the stage summary.
    pub times: Vec<(String, ComponentTimes)>,
    /// Time spent running programs.
    pub run_time: std::time::Duration,
}

impl<'a> StageRunner<'a> {
    pub fn new(model: &'a dyn Model, client: &'a Client, cache: Option<&'a ExecutableCache>, options: &'a PipelineOptions) -> Self {
        StageRunner { model, client, cache, options, programs: HashMap::new(), weights: HashMap::new(), times: Vec::new(), run_time: Default::default() }
    }

    /// "text_encoder: passes 3 ms, cache hit 12 ms, weights 40 ms; ..." for every program.
    pub fn describe(&self) -> String {
        self.times.iter().map(|(label, t)| format!("{label}: {}", t.describe())).collect::<Vec<_>>().join("; ")
    }

    fn program(&mut self, c: Component, mut graph: Graph) -> Result<&Program, FamilyError> {
        let fail = |message: String| FamilyError::Run { component: c.name(), message };
        let key = format!("{}:{:?}", graph.name, Signature::of(&graph).params);
        if !self.programs.contains_key(&key) {
            if !self.weights.contains_key(&c) {
                let store = WeightStore::open(&self.model.dir().join(c.folder())).map_err(|e| fail(e.to_string()))?;
                self.weights.insert(c, store);
            }
            let weights = &self.weights[&c];
            use_stored_names(&mut graph, weights, &|name| self.model.weight_aliases(c, name));
            let passes = passes_for(self.options, self.model, c);
            let (program, times) =
                prepare(c.name(), graph, passes, sharding_format(self.options), self.client, self.cache, weights).map_err(|e| fail(e.to_string()))?;
            self.times.push((c.name().to_string(), times));
            self.programs.insert(key.clone(), program);
        }
        Ok(&self.programs[&key])
    }
}

impl ComponentRunner for StageRunner<'_> {
    fn run(&mut self, c: Component, graph: Graph, inputs: &HashMap<String, HostTensor>) -> Result<Vec<(String, HostTensor)>, FamilyError> {
        let program = self.program(c, graph)?;
        let start = std::time::Instant::now();
        let out = program.run(inputs).map_err(|e| FamilyError::Run { component: c.name(), message: e.to_string() });
        self.run_time += start.elapsed();
        out
    }
}
