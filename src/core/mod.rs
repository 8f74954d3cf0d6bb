//! The bottom layer: small pieces every other module may use and that depend on nothing
//! else in the crate.
//!
//! It owns [`secret::Secret`] (a string that is never printed), the operation log
//! ([`oplog::OpLog`]), the clock helpers ([`time`]) and the sanitizer for remote text
//! ([`text::clean`]). It must not import `providers`,
//! `engine`, `ssh`, `daemon`, `link` or `views`: everything above points down here, so an
//! import from here upward would make a cycle.

pub mod oplog;
pub mod secret;
pub mod text;
pub(crate) mod time;
