//! A face's link to an engine: one in this process, or the daemon's over its socket.
//!
//! The dashboard and the CLI are written against [`Link`]; both variants offer the same
//! calls with the same errors, so a command prints the same output either way.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::core::oplog::OpEntry;
use crate::daemon::client::Remote;
use crate::daemon::protocol::ApplyProgress;
use crate::engine::api::{CatalogReply, EngineApi, engine_calls};
use crate::engine::snapshot::{AppSnapshot, LockState, NodeRow};
use crate::engine::wait::Snapshots;
use crate::engine::{Engine, EngineError};
use crate::providers::Descriptor;

#[derive(Clone)]
pub enum Link {
    /// An engine in this process: unlocked by this process, locked again when done.
    Local(Engine),
    /// The daemon's engine: stays unlocked and running after this process leaves.
    Daemon(Remote),
}

/// The same call on whichever engine this is.
macro_rules! either {
    ($link:expr, $e:ident => $body:expr) => {
        match $link {
            Link::Local($e) => $body,
            Link::Daemon($e) => $body,
        }
    };
}

/// Every engine call, forwarded to whichever engine this link reaches.
macro_rules! forward {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; )*) => {
        impl EngineApi for Link {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$out, EngineError> {
                    either!(self, e => e.$name($($arg),*).await)
                }
            )*
        }

        /// The calls as methods, so a face needs no trait import.
        impl Link {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$out, EngineError> {
                    <Self as EngineApi>::$name(self, $($arg),*).await
                }
            )*
        }
    };
}
mod calls {
    use super::*;
    use crate::core::secret::Secret;
    use crate::engine::actors::Action;
    use crate::engine::import::{ImportReport, ImportRequest};
    use crate::engine::plan::{NodeRequest, PlanEdit};
    use crate::engine::state::model::Plan;
    use crate::providers::Credentials;
    use crate::ssh::ManagedKey;
    use crate::ssh::SshAccess;
    engine_calls!(forward);
}

impl Link {
    pub fn is_daemon(&self) -> bool {
        matches!(self, Link::Daemon(_))
    }

    pub fn home(&self) -> PathBuf {
        either!(self, e => e.home().clone())
    }

    pub fn snapshots(&self) -> Snapshots {
        either!(self, e => e.snapshots())
    }

    /// The latest snapshot received: always live for a local engine, for the daemon's only
    /// once subscribed (`Remote::watch`, as the dashboard does). A command reading once
    /// asks [`Link::current`].
    pub fn snapshot(&self) -> Arc<AppSnapshot> {
        either!(self, e => e.snapshot())
    }

    /// The engine's current snapshot, read once: no subscription through the daemon.
    pub async fn current(&self) -> Result<Arc<AppSnapshot>, EngineError> {
        match self {
            Link::Local(e) => Ok(e.snapshot()),
            Link::Daemon(r) => r.current().await,
        }
    }

    pub fn subscribe_logs(&self) -> broadcast::Receiver<Arc<OpEntry>> {
        match self {
            Link::Local(e) => e.oplog().subscribe(),
            Link::Daemon(r) => r.subscribe_logs(),
        }
    }

    /// The newest operation-log entries (the `logs` call).
    pub async fn recent_logs(
        &self,
        limit: usize,
        resource: Option<&str>,
    ) -> Result<Vec<Arc<OpEntry>>, EngineError> {
        self.logs(limit, resource.map(String::from)).await
    }

    /// The providers enabled for this engine (no round trip: the daemon's were read at
    /// connect).
    pub fn provider_descriptors(&self) -> Vec<Descriptor> {
        either!(self, e => e.provider_descriptors())
    }

    /// A provider's catalog and policy (the `catalog` call, as a pair).
    pub async fn catalog_pair(
        &self,
        kind: String,
    ) -> Result<
        (
            Arc<crate::providers::Catalog>,
            crate::providers::CatalogPolicy,
        ),
        EngineError,
    > {
        let CatalogReply { catalog, policy } = self.catalog(kind).await?;
        Ok((catalog, policy))
    }

    pub async fn wait_for(
        &self,
        pred: impl FnMut(&AppSnapshot) -> bool,
    ) -> Result<Arc<AppSnapshot>, EngineError> {
        either!(self, e => e.wait_for(pred).await)
    }

    /// Wait for apply `id` to finish; `seen` hears how it goes (each change of the apply's
    /// view; through the daemon, its progress events, never whole snapshots). The answer
    /// says how it ended, with `node`'s row if asked.
    pub async fn wait_apply(
        &self,
        id: u64,
        node: Option<&str>,
        mut seen: impl FnMut(&ApplyProgress),
    ) -> Result<ApplyProgress, EngineError> {
        match self {
            Link::Local(e) => {
                let mut last = None;
                let snap = e
                    .wait_for(|s| {
                        if last.as_ref() != Some(&s.apply) {
                            last = Some(s.apply.clone());
                            seen(&ApplyProgress {
                                seq: s.seq,
                                apply: s.apply.clone(),
                                nodes: Default::default(),
                                node: None,
                            });
                        }
                        crate::engine::wait::apply_done(id)(s)
                    })
                    .await?;
                Ok(ApplyProgress::of(&snap, node))
            }
            Link::Daemon(r) => r.follow_apply(id, node, seen).await,
        }
    }

    pub async fn wait_operation(&self, name: &str, op: u64) -> Result<NodeRow, EngineError> {
        let snap = self
            .wait_for(crate::engine::wait::operation_done(name, op))
            .await?;
        crate::engine::wait::operation_row(&snap, name)
    }

    /// Done with the engine: a local one is saved and locked; the daemon's keeps running.
    pub async fn finish(&self) -> Result<(), EngineError> {
        match self {
            Link::Local(e) if e.snapshot().lock == LockState::Unlocked => e.logout().await,
            _ => Ok(()),
        }
    }
}
