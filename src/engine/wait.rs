//! Waiting on published snapshots: the same predicates whether the engine runs in this
//! process or in the daemon (both faces hold a `watch` receiver of snapshots).

use std::sync::Arc;

use tokio::sync::watch;

use super::EngineError;
use super::snapshot::{AppSnapshot, ApplyView, NodeRow};

pub type Snapshots = watch::Receiver<Arc<AppSnapshot>>;

/// Wait until `pred` holds for a published snapshot. `closed` is the error when the
/// publisher goes away (the engine stopped, or the daemon connection dropped).
pub async fn until(
    mut rx: Snapshots,
    mut pred: impl FnMut(&AppSnapshot) -> bool,
    closed: impl Fn() -> EngineError,
) -> Result<Arc<AppSnapshot>, EngineError> {
    loop {
        let snap = rx.borrow_and_update().clone();
        if pred(&snap) {
            return Ok(snap);
        }
        rx.changed().await.map_err(|_| closed())?;
    }
}

/// Apply `id` has finished; the snapshot's `apply` says how it ended.
pub fn apply_done(id: u64) -> impl FnMut(&AppSnapshot) -> bool {
    move |s| matches!(&s.apply, ApplyView::Finished { id: done, .. } if *done >= id)
}

/// Operation `op` of node `name` has finished (or the node is gone).
pub fn operation_done(name: &str, op: u64) -> impl FnMut(&AppSnapshot) -> bool + '_ {
    move |s| s.node(name).is_none_or(|n| n.ops_finished >= op)
}

/// The node's row once operation `op` has finished; `last_error` says whether it failed.
pub fn operation_row(snap: &AppSnapshot, name: &str) -> Result<NodeRow, EngineError> {
    snap.node(name)
        .cloned()
        .ok_or_else(|| EngineError::NotFound(format!("node {name:?} is gone")))
}
