//! Faces' rendering. The dashboard comes later; today the plain-text tables used by the
//! headless demo and the CLI. Views only read snapshots; they never change engine state.

pub mod plain;
