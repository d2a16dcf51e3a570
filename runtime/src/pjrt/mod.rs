//! PJRT C API binding (being written).
