//! The node log tail as the UI sees it. The thread that follows a node's logs over SSH
//! and its mailbox live in [`crate::ssh::tail`]; this path re-exports them while the
//! views move to the new one (transitional).

pub use crate::ssh::tail::{
    Feed, MAILBOX, MAX_LINE, TailBatch, TailHandle, TailState, clean_line, pair, spawn,
};
