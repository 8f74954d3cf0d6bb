//! The state: the plain data ([`model`]), the file format's bytes ([`crypto`]), the home's
//! files and lock ([`store`]) and, while unlocked, the in-memory cell that saves it
//! (`cell`, crate-internal). `model` is what calls and snapshots carry; `crypto` and
//! `store` are public for the tests that tamper with a state file.

pub(crate) mod cell;
pub mod crypto;
pub mod model;
pub mod store;
