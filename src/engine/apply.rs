//! Apply (materialize): the only path from plan to cloud. One at a time; nodes first, then
//! the cluster peer lists, then the derived resources (zones, firewalls, domains) that
//! depend on node endpoints. Progress comes from actor snapshots, never a guess. It ends
//! with a fresh reading of the providers it touched and the change set recomputed: it is
//! converged only when nothing is left, otherwise `Finished.waiting` lists each remaining
//! difference and why.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::actors::{ResourceKey, Snap, SyncState};
use super::changes::{self, ChangeSet};
use super::error::EngineError;
use super::observe;
use super::session::Session;
use super::snapshot::ApplyView;
use super::state::model::{State, membership_id, memberships};
use crate::core::oplog::OpKind;

impl Session {
    pub(crate) async fn refresh(&self) -> Result<(), EngineError> {
        let mut errors = Vec::new();
        for p in self.supervisor.env().providers.all() {
            if let Err(e) = observe::observe_provider(&self.supervisor, &p).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Providers(errors))
        }
    }

    /// One observation round of every provider the plan or the tracked state uses (the
    /// end of an apply: what it reports must come from a fresh reading).
    async fn refresh_affected(&self) -> Result<(), EngineError> {
        let used: BTreeSet<String> = self.cell.read(|s| {
            let nodes = s.plan.nodes.values().map(|n| &n.provider);
            let tracked = s.tracked.nodes.values().map(|n| &n.provider);
            let zones = s.plan.zones.values().map(|z| &z.provider);
            let tzones = s.tracked.zones.values().map(|z| &z.provider);
            nodes
                .chain(tracked)
                .chain(zones)
                .chain(tzones)
                .cloned()
                .collect()
        });
        let mut errors = Vec::new();
        for p in self.supervisor.env().providers.all() {
            if used.contains(&p.id)
                && let Err(e) = observe::observe_provider(&self.supervisor, &p).await
            {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Providers(errors))
        }
    }

    /// What an apply of the current plan would change, with every field.
    pub(crate) fn changes(&self) -> ChangeSet {
        let env = self.supervisor.change_env();
        self.cell.read(|s| changes::compute(s, &env, true))
    }

    pub(crate) fn start_apply(self: &Arc<Self>) -> Result<u64, EngineError> {
        let guard = self.apply_lock.clone().try_lock_owned().map_err(|_| {
            let running = match &*self.apply.lock().unwrap_or_else(|e| e.into_inner()) {
                ApplyView::Running { id, .. } => *id,
                _ => 0,
            };
            EngineError::ApplyRunning(running)
        })?;
        // Apply ids continue across sessions (the log refers to them).
        let (id, _) = self.cell.mutate(|s| {
            let id = s.next_apply_id.max(1);
            s.next_apply_id = id + 1;
            id
        });
        self.set_apply(ApplyView::Running {
            id,
            stage: "starting".into(),
            total: 0,
            settled: 0,
            failed: 0,
        });
        let session = Arc::downgrade(self);
        self.track(tokio::spawn(async move {
            let _guard = guard;
            if let Some(session) = session.upgrade() {
                session.run_apply(id).await;
            }
        }));
        Ok(id)
    }

    pub(crate) fn set_apply(&self, view: ApplyView) {
        if let Ok(mut a) = self.apply.lock() {
            *a = view;
        }
        self.supervisor.env().board.bump();
    }

    /// Waves: nodes first, then the derived resources that depend on their endpoints.
    pub(crate) async fn run_apply(&self, id: u64) {
        let env = self.supervisor.env().clone();
        env.oplog
            .record(None, OpKind::Apply, format!("apply #{id} started"));
        // From here on, derived resources follow this plan.
        if let Err(e) = self
            .cell
            .commit(|s| s.tracked.applied_plan = Some(s.plan.clone()))
            .await
        {
            env.oplog
                .warn(None, format!("apply #{id} could not start: {e}"));
            self.set_apply(ApplyView::Finished {
                id,
                ok: false,
                failed: vec![format!("state: {e}")],
                waiting: Vec::new(),
            });
            return;
        }
        self.supervisor.sync_from_state();
        let nodes: Vec<ResourceKey> = self
            .supervisor
            .node_names()
            .into_iter()
            .map(ResourceKey::Node)
            .collect();
        self.supervisor
            .broadcast_nodes(|| super::actors::node::NodeMsg::Sync { apply: id });
        self.wait_settled(id, "nodes", &nodes).await;
        self.reconcile_clusters(id).await;
        let derived = self.supervisor.sync_derived(Some(id));
        self.wait_settled(id, "zones, firewalls and domains", &derived)
            .await;
        // Converged means planned == observed: read every affected provider again and
        // recompute the change set; whatever is left is listed with why.
        self.set_apply(ApplyView::Running {
            id,
            stage: "reading the providers".into(),
            total: 0,
            settled: 0,
            failed: 0,
        });
        let mut waiting = Vec::new();
        if let Err(e) = self.refresh_affected().await {
            waiting.push(format!(
                "not read again, so not known to match the plan: {e}"
            ));
        }
        waiting.extend(self.changes().changes.iter().map(|c| c.line()));
        let board = env.board.snapshot();
        let mut failed = Vec::new();
        for key in nodes.iter().chain(derived.iter()) {
            match board.get(key) {
                Some(Snap::Node(n)) if n.last_error.is_some() => failed.push(key.to_string()),
                Some(Snap::Sync(s)) if s.state == SyncState::Failed => failed.push(key.to_string()),
                _ => {}
            }
        }
        let ok = failed.is_empty() && waiting.is_empty();
        env.oplog.record(
            None,
            OpKind::Apply,
            if ok {
                format!("apply #{id} finished: converged")
            } else if failed.is_empty() {
                format!(
                    "apply #{id} finished: not converged, {} still differ from the plan",
                    waiting.len()
                )
            } else {
                format!(
                    "apply #{id} finished: {} failed ({})",
                    failed.len(),
                    failed.join(", ")
                )
            },
        );
        self.set_apply(ApplyView::Finished {
            id,
            ok,
            failed,
            waiting,
        });
    }

    /// Nodes whose cluster gained or lost members since they were configured write the
    /// new peer list (a reconfigure: configure and readiness); wait for them. Every
    /// cluster's membership is computed once here, in one pass over the plan; each node
    /// then compares one id.
    pub(crate) async fn reconcile_clusters(&self, id: u64) {
        let env = self.supervisor.env().clone();
        let memberships: Arc<BTreeMap<String, String>> = Arc::new(self.cell.read(|s| {
            memberships(s)
                .into_iter()
                .map(|(cluster, members)| (cluster, membership_id(&members)))
                .collect()
        }));
        let mut started = Vec::new();
        for name in self.supervisor.node_names() {
            let Some(handle) = self.supervisor.node(&name) else {
                continue;
            };
            let (reply, rx) = oneshot::channel();
            if !handle.send(super::actors::node::NodeMsg::Reconcile {
                memberships: memberships.clone(),
                reply,
            }) {
                continue;
            }
            if let Ok(Some(op)) = rx.await {
                started.push((name, op));
            }
        }
        if started.is_empty() {
            return;
        }
        let total = started.len();
        let mut changes = env.board.subscribe();
        loop {
            let done = started
                .iter()
                .filter(|(n, op)| env.board.node(n).is_none_or(|s| s.ops_finished >= *op))
                .count();
            self.show_progress(ApplyView::Running {
                id,
                stage: "cluster peer lists".to_string(),
                total,
                settled: done,
                failed: 0,
            });
            if done == total || changes.changed().await.is_err() {
                return;
            }
            // Count again once per window, not once per change of every node.
            tokio::time::sleep(env.timings.coalesce).await;
        }
    }

    /// Publishes the apply's progress when it changed. The publication bumps the board,
    /// so the waiter's next `changed()` returns once more and finds nothing new; it must
    /// not mark the board seen after the bump instead (`borrow_and_update`), which would
    /// also swallow an actor's publication made in between and wait forever for it.
    fn show_progress(&self, view: ApplyView) {
        let changed = self.apply.lock().map(|a| *a != view).unwrap_or(true);
        if changed {
            self.set_apply(view);
        }
    }

    /// Wait until every resource of `keys` has settled for apply `id`, showing the
    /// count. Only the keys not yet settled are looked at again, once per coalescing
    /// window at most, in one read of the state and one of the board: a change costs
    /// what is left, and the fleet's wave of changes is not re-counted change by change.
    pub(crate) async fn wait_settled(&self, id: u64, stage: &str, keys: &[ResourceKey]) {
        let env = self.supervisor.env().clone();
        let mut changes = env.board.subscribe();
        let mut pending: Vec<&ResourceKey> = keys.iter().collect();
        let mut failed = 0;
        loop {
            // Gone from plan and tracked state: torn down. Checked first, because an
            // actor stopped mid-publication can leave a last snapshot on the board.
            let stored: Vec<bool> = env.cell.read(|s| {
                let firewalls = pending
                    .iter()
                    .any(|k| matches!(k, ResourceKey::Firewall(_)));
                let clusters = if firewalls {
                    Clusters::of(s)
                } else {
                    Clusters::default()
                };
                pending
                    .iter()
                    .map(|k| still_stored(s, &clusters, k))
                    .collect()
            });
            let mut left = Vec::with_capacity(pending.len());
            env.board.with(|board| {
                for (key, stored) in pending.iter().zip(stored) {
                    if !stored {
                        continue;
                    }
                    match board.get(*key) {
                        Some(Snap::Node(n)) if n.synced_apply >= id => {
                            if n.last_error.is_some() {
                                failed += 1;
                            }
                        }
                        Some(Snap::Sync(s)) if s.synced_apply >= id => {
                            if s.state == SyncState::Failed {
                                failed += 1;
                            }
                        }
                        _ => left.push(*key),
                    }
                }
            });
            pending = left;
            let view = ApplyView::Running {
                id,
                stage: stage.to_string(),
                total: keys.len(),
                settled: keys.len() - pending.len(),
                failed,
            };
            self.show_progress(view);
            if pending.is_empty() {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(env.timings.coalesce).await;
        }
    }
}

/// The clusters a firewall set is stored for, computed once per look rather than once
/// per firewall key.
#[derive(Default)]
struct Clusters {
    planned: BTreeSet<String>,
    applied: BTreeSet<String>,
}

impl Clusters {
    fn of(s: &State) -> Clusters {
        Clusters {
            planned: super::derive::planned_clusters(&s.plan),
            applied: s
                .tracked
                .applied_plan
                .as_ref()
                .map(super::derive::planned_clusters)
                .unwrap_or_default(),
        }
    }
}

fn still_stored(s: &State, clusters: &Clusters, key: &ResourceKey) -> bool {
    match key {
        ResourceKey::Node(n) => s.plan.nodes.contains_key(n) || s.tracked.nodes.contains_key(n),
        ResourceKey::Zone(n) => s.plan.zones.contains_key(n) || s.tracked.zones.contains_key(n),
        ResourceKey::Firewall(n) => {
            clusters.planned.contains(n)
                || s.tracked.firewalls.contains_key(n)
                || clusters.applied.contains(n)
        }
        ResourceKey::Domain(n) => {
            s.plan.domains.contains_key(n) || s.tracked.domains.contains_key(n)
        }
    }
}
