//! vidlower's model frontends: model definitions written in the IR builder API.
//! Until the first model family lands, the built-in `example` graph (an attention + MLP block)
//! is what every CLI command works on.

pub mod example;
pub mod random_weights;
