//! vidlower's IR: a typed SSA graph with static shapes in which model definitions are written.

pub mod dtype;

pub use dtype::DType;
