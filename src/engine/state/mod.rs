//! The state: the plain data ([`model`]), the file format's bytes ([`crypto`]), the home's
//! files and lock ([`store`]), the journal of changes beside the state file ([`journal`],
//! whose records say what [`change`] describes), opening a home's state ([`open`]: file,
//! journal replay, migrations) and, while unlocked, the in-memory cell that saves it
//! (`cell`, crate-internal). `model` is what calls and snapshots carry; `crypto`,
//! `store`, `journal` and `open` are public for the tests that tamper with state files.

pub(crate) mod cell;
pub mod change;
pub mod crypto;
pub mod journal;
pub mod model;
pub mod open;
pub mod store;
