//! vidlower's IR: a typed SSA graph with static shapes in which model definitions are written.
//!
//! One node kind ([`Node`]: op, operands, result type, optional sharding) in an arena ([`Graph`]);
//! primitive ops map one-to-one onto StableHLO, composite ops (attention, softmax, norms, gelu)
//! carry meaning for passes. [`Builder`] is the API model code is written in; [`text`] prints and
//! parses the graph; [`verify()`] runs after every pass.

pub mod builder;
pub mod dtype;
pub mod error;
pub mod float_round;
pub mod graph;
pub mod host_tensor;
pub mod infer;
pub mod mesh;
pub mod op;
pub mod random_graph;
pub mod sharding;
pub mod text;
pub mod types;
pub mod verify;


pub use builder::Builder;
pub use dtype::DType;
pub use error::{IrError, Result};
pub use graph::{Graph, Node, Output, ValueId};
pub use host_tensor::{HostTensor, TensorError};
pub use op::{AttentionKind, BinaryOp, CompareDir, ConvAttrs, DotDims, GeluApprox, Literal, LiteralData, Op, ReduceKind, UnaryOp};
pub use mesh::{Mesh, MeshAxis, MeshError};
pub use sharding::Sharding;
pub use types::{TensorType, Type};
pub use verify::verify;
