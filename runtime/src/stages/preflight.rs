//! Before any work: every weight a component's graph takes is in the model directory, with the
//! shape its config implies (a config that does not match its weights, or a truncated
//! checkpoint, is refused naming the tensor and file, instead of failing in stage 2 after stage 1
//! has run). Only the safetensors headers are read.

use super::compiled::use_stored_names;
use super::model::{ModelError, OpenedModel};
use vidlower_frontends::family::{Component, VideoSize};
use vidlower_ir::DType;

/// Checks the weights of `components` for a video of `video` (the graphs' weights do not depend
/// on the sizes; the request's are used so the check builds what the stages build).
pub fn check_weights(model: &OpenedModel, components: &[Component], video: &VideoSize) -> Result<(), ModelError> {
    for &c in components {
        let store = model.weights(c)?;
        let sizes = model.sizes(c, video, 1, 1);
        for g in model.graphs(c, &sizes, DType::F32)? {
            let mut graph = g.graph;
            use_stored_names(&mut graph, &store, &|name| model.weight_aliases(c, name));
            for (name, ty) in graph.weights() {
                store.check(name, &ty.with_dtype(DType::F32))?;
            }
        }
    }
    Ok(())
}
