//! Executable cache (being written).
