//! `AppSnapshot`: everything a face shows, in one immutable value.
//!
//! Assembled from actor snapshots joined with planned, tracked and observed records and
//! their field differences. A stored resource whose actor has not published yet shows as
//! `unknown`; it is never hidden. Assembly is a pure function so it can be benchmarked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

// A row's machine and system states and the board that `assemble` joins are the actors'
// types; they are part of what a face reads, so they leave the crate from here.
pub use super::actors::{Machine, NodeSnap, ResourceKey, Snap, SyncSnap, SyncState, System};
use super::changes::{ChangeAction, ChangeCounts, ChangeSet, ResourceKind};
use super::state::model::{Execution, State};
use super::status::{
    Freshness, NodeFacts, NodeStatus, Settlement, SyncStatus, node_status, provider_freshness,
    shown_health, sync_status,
};
use crate::providers::{ErrorClass, HealthReading, ProviderStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// No state file in this home yet.
    Uninitialized,
    Locked,
    Unlocked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApplyView {
    Idle,
    Running {
        id: u64,
        stage: String,
        total: usize,
        settled: usize,
        failed: usize,
    },
    Finished {
        id: u64,
        /// Converged: nothing failed and, after a fresh reading, nothing differs from the
        /// plan.
        ok: bool,
        failed: Vec<String>,
        /// What still differs from the plan after the apply, one change per line with
        /// why (blocked, waiting, not read).
        waiting: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    pub planned: String,
    pub observed: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    pub name: String,
    /// The one state a table shows, derived from the fields below and the provider's
    /// status (`engine::status`).
    pub status: NodeStatus,
    pub cluster: String,
    pub role: String,
    pub provider: String,
    pub region: String,
    pub offer: String,
    pub image: String,
    pub machine: Machine,
    pub system: System,
    /// The latest health check, only while the system is installed and idle: never
    /// `healthy` next to a failed, reinstalling or unknown system.
    pub health: Option<HealthReading>,
    pub address: Option<String>,
    pub server_id: Option<String>,
    pub operation: Option<String>,
    pub last_error: Option<String>,
    /// What kind of provider failure `last_error` is (auth, quota, ambiguous, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    pub waiting: Option<String>,
    /// In the plan; `false` means planned absence (torn down by the next apply).
    pub planned: bool,
    /// An actor has published for this node.
    pub live: bool,
    pub execution: Option<Execution>,
    pub diffs: Vec<FieldDiff>,
    pub ops_started: u64,
    pub ops_finished: u64,
    /// What the next apply would do to this node (`None`: in sync with the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<ChangeAction>,
}

/// A zone, firewall set or domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRow {
    pub name: String,
    pub provider: String,
    /// The one state a table shows: the actor's state, or stale.
    pub status: SyncStatus,
    pub state: SyncState,
    pub summary: String,
    pub waiting: Option<String>,
    /// The current failure; none once the resource converged.
    pub last_error: Option<String>,
    /// As [`NodeRow::error_class`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// The failure before the last success: history, not the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_error: Option<String>,
    pub operation: Option<String>,
    pub planned: bool,
    pub live: bool,
    /// Changes the operator has to make by hand ("open tcp 4413 from 10.0.0.2/32 on
    /// web-1 (203.0.113.5)"): firewall rules on providers Legion cannot manage them on.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// As [`NodeRow::pending`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<ChangeAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSnapshot {
    /// Increases with every publication.
    pub seq: u64,
    pub home: String,
    pub lock: LockState,
    pub providers: Vec<ProviderStatus>,
    pub apply: ApplyView,
    pub nodes: Vec<NodeRow>,
    pub zones: Vec<SyncRow>,
    pub firewalls: Vec<SyncRow>,
    pub domains: Vec<SyncRow>,
    /// The configured management sources (`legion config set management-sources`),
    /// which the settings form edits; the recorded ones are in each firewall's summary.
    #[serde(default)]
    pub management_sources: Vec<String>,
    /// How many changes the next apply would make ("3 to create, 1 to change").
    #[serde(default)]
    pub changes: ChangeCounts,
}

impl AppSnapshot {
    pub fn empty(home: String, lock: LockState) -> AppSnapshot {
        AppSnapshot {
            seq: 0,
            home,
            lock,
            providers: Vec::new(),
            apply: ApplyView::Idle,
            nodes: Vec::new(),
            zones: Vec::new(),
            firewalls: Vec::new(),
            domains: Vec::new(),
            management_sources: Vec::new(),
            changes: ChangeCounts::default(),
        }
    }

    /// Where `snap`'s rows stand; `rows` of a fleet that is settled say nothing.
    pub fn settlement(&self) -> Settlement {
        let snap = self;
        let mut pending = Vec::new();
        let mut failed = Vec::new();
        let mut waiting = Vec::new();
        for n in &snap.nodes {
            let what = || match (&n.last_error, &n.waiting) {
                (Some(e), _) => format!("node {}: {} ({e})", n.name, n.status),
                (None, Some(w)) => format!("node {}: {} ({w})", n.name, n.status),
                _ => format!("node {}: {}", n.name, n.status),
            };
            match &n.status {
                NodeStatus::Failed { .. }
                | NodeStatus::Interrupted { .. }
                | NodeStatus::Missing
                | NodeStatus::Stale { .. }
                | NodeStatus::PendingCreate
                | NodeStatus::PendingDelete => failed.push(what()),
                s if s.is_reachable() && n.diffs.is_empty() && n.last_error.is_none() => {}
                s if s.is_reachable() && n.operation.is_none() => {
                    let d: Vec<String> = n
                        .diffs
                        .iter()
                        .map(|d| {
                            format!(
                                "{}: planned {}, observed {}",
                                d.field, d.planned, d.observed
                            )
                        })
                        .collect();
                    failed.push(format!("node {}: {s}, differs ({})", n.name, d.join("; ")));
                }
                _ => pending.push(what()),
            }
        }
        for (kind, rows) in [
            ("zone", &snap.zones),
            ("firewall set", &snap.firewalls),
            ("domain", &snap.domains),
        ] {
            for r in rows.iter() {
                let what = || {
                    let why = r.last_error.as_deref().or(r.waiting.as_deref());
                    match why {
                        Some(w) => format!("{kind} {}: {} ({w})", r.name, r.status),
                        None => format!("{kind} {}: {}", r.name, r.status),
                    }
                };
                match r.status {
                    SyncStatus::Converged => {}
                    SyncStatus::Failed | SyncStatus::Stale { .. } => failed.push(what()),
                    SyncStatus::Waiting => waiting.push(what()),
                    _ => pending.push(what()),
                }
            }
        }
        // A zone, firewall set or domain waits on nodes (an address, a server, the address
        // a deploy records). Once every node has settled, nothing is left to bring what it
        // waits for (a record for a node no longer planned, say): that is a result, not
        // progress, and waiting on would only wait out the timeout.
        let nodes_settled = pending.is_empty();
        for w in waiting {
            if nodes_settled {
                failed.push(format!(
                    "{w}, and every node has settled: it will not come without a plan change"
                ));
            } else {
                pending.push(w);
            }
        }
        if !failed.is_empty() {
            Settlement::Failed(failed)
        } else if !pending.is_empty() {
            Settlement::Pending(pending)
        } else {
            Settlement::Settled
        }
    }

    /// Put the change set's actions on the snapshot's rows and its counts in the header.
    /// Rows are sorted by name, so each change is one binary search; a record's change is
    /// shown on its zone's row, which the zone's own change already marks.
    pub fn mark_pending(&mut self, set: &ChangeSet) {
        let snap = self;
        fn find<'a, T>(
            rows: &'a mut [T],
            name: &str,
            key: impl Fn(&T) -> &str,
        ) -> Option<&'a mut T> {
            let i = rows.binary_search_by(|r| key(r).cmp(name)).ok()?;
            rows.get_mut(i)
        }
        snap.changes = set.counts();
        for c in &set.changes {
            let slot = match c.kind {
                ResourceKind::Node => {
                    find(&mut snap.nodes, &c.name, |r| &r.name).map(|r| &mut r.pending)
                }
                ResourceKind::Zone => {
                    find(&mut snap.zones, &c.name, |r| &r.name).map(|r| &mut r.pending)
                }
                ResourceKind::Firewall => {
                    find(&mut snap.firewalls, &c.name, |r| &r.name).map(|r| &mut r.pending)
                }
                ResourceKind::Domain => {
                    find(&mut snap.domains, &c.name, |r| &r.name).map(|r| &mut r.pending)
                }
                ResourceKind::Record => None,
            };
            if let Some(slot) = slot {
                *slot = Some(c.action);
            }
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeRow> {
        self.nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// Join state and actor snapshots into rows.
pub fn assemble(
    seq: u64,
    home: String,
    state: &State,
    board: &HashMap<ResourceKey, Snap>,
    providers: Vec<ProviderStatus>,
    apply: ApplyView,
) -> AppSnapshot {
    let mut names: BTreeSet<&String> = state.plan.nodes.keys().collect();
    names.extend(state.tracked.nodes.keys());
    let mut key = ResourceKey::Node(String::new());
    let nodes = names
        .into_iter()
        .map(|name| {
            if let ResourceKey::Node(n) = &mut key {
                n.clone_from(name);
            }
            let snap = match board.get(&key) {
                Some(Snap::Node(s)) => Some(s),
                _ => None,
            };
            node_row(state, name, snap, &providers)
        })
        .collect();
    let zone_names: BTreeSet<&String> = state
        .plan
        .zones
        .keys()
        .chain(state.tracked.zones.keys())
        .collect();
    let zones = zone_names
        .into_iter()
        .map(|z| {
            let provider = state
                .plan
                .zones
                .get(z)
                .map(|p| p.provider.clone())
                .or_else(|| state.tracked.zones.get(z).map(|t| t.provider.clone()))
                .unwrap_or_default();
            sync_row(
                z,
                provider,
                state.plan.zones.contains_key(z),
                board.get(&ResourceKey::Zone(z.clone())),
                &providers,
            )
        })
        .collect();
    // One pass over the planned nodes for every cluster's providers: a pass per cluster
    // made assembly O(clusters x nodes).
    let mut by_cluster: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for n in state.plan.nodes.values() {
        by_cluster
            .entry(n.cluster.as_str())
            .or_default()
            .insert(n.provider.as_str());
    }
    let clusters: BTreeSet<&str> = by_cluster
        .keys()
        .copied()
        .chain(state.plan.clusters.keys().map(String::as_str))
        .chain(state.plan.firewalls.keys().map(String::as_str))
        .chain(state.tracked.firewalls.keys().map(String::as_str))
        .collect();
    let firewalls = clusters
        .into_iter()
        .map(|c| {
            let mut provs: BTreeSet<&str> = by_cluster.get(c).cloned().unwrap_or_default();
            if let Some(t) = state.tracked.firewalls.get(c) {
                provs.extend(t.firewall_ids.keys().map(String::as_str));
            }
            let provider = provs.into_iter().collect::<Vec<_>>().join(",");
            let planned = by_cluster.contains_key(c)
                || state.plan.clusters.contains_key(c)
                || state.plan.firewalls.contains_key(c);
            sync_row(
                c,
                provider,
                planned,
                board.get(&ResourceKey::Firewall(c.to_string())),
                &providers,
            )
        })
        .collect();
    let domain_names: BTreeSet<&String> = state
        .plan
        .domains
        .keys()
        .chain(state.tracked.domains.keys())
        .collect();
    let domains = domain_names
        .into_iter()
        .map(|d| {
            let provider = state
                .plan
                .domains
                .get(d)
                .map(|p| p.registrar.clone())
                .unwrap_or_default();
            sync_row(
                d,
                provider,
                state.plan.domains.contains_key(d),
                board.get(&ResourceKey::Domain(d.clone())),
                &providers,
            )
        })
        .collect();
    AppSnapshot {
        seq,
        home,
        lock: LockState::Unlocked,
        providers,
        apply,
        nodes,
        zones,
        firewalls,
        domains,
        management_sources: state.plan.management_sources.clone(),
        changes: ChangeCounts::default(),
    }
}

fn node_row(
    state: &State,
    name: &str,
    snap: Option<&Arc<NodeSnap>>,
    providers: &[ProviderStatus],
) -> NodeRow {
    let plan = state.plan.nodes.get(name);
    let tracked = state.tracked.nodes.get(name);
    let reading = state.observed.servers.get(name);
    let observed = reading.and_then(|r| r.server.as_ref());
    let pick = |p: Option<&String>, t: Option<&String>| p.or(t).cloned().unwrap_or_default();
    let mut diffs = Vec::new();
    if let (Some(p), Some(o)) = (plan, observed) {
        for (field, planned, seen) in [
            ("region", &p.region, &o.region),
            ("offer", &p.offer, &o.offer),
        ] {
            if planned != seen {
                diffs.push(FieldDiff {
                    field: field.into(),
                    planned: planned.clone(),
                    observed: seen.clone(),
                });
            }
        }
        if let Some(img) = &o.image
            && img != &p.image
        {
            diffs.push(FieldDiff {
                field: "image".into(),
                planned: p.image.clone(),
                observed: img.clone(),
            });
        }
    }
    if plan.is_none() && tracked.is_some() {
        diffs.push(FieldDiff {
            field: "presence".into(),
            planned: "absent".into(),
            observed: "present".into(),
        });
    }
    let provider = pick(plan.map(|p| &p.provider), tracked.map(|t| &t.provider));
    let machine = snap.map_or(Machine::Unknown, |s| s.machine);
    let system = snap.map_or(System::Unknown, |s| s.system.clone());
    let operation = snap.and_then(|s| s.operation.clone());
    let execution = tracked.and_then(|t| t.execution.clone());
    let has_server = tracked.is_some_and(|t| t.server_id.is_some());
    let freshness = provider_freshness(providers, &provider, reading.map(|r| r.at_ms));
    let status = node_status(NodeFacts {
        planned: plan.is_some(),
        has_server,
        live: snap.is_some(),
        machine,
        system: &system,
        health: snap.and_then(|s| s.health.as_ref()),
        operation: operation.as_deref(),
        execution: execution.as_ref(),
        freshness: &freshness,
    });
    let health = shown_health(
        &system,
        operation.as_deref(),
        snap.and_then(|s| s.health.as_ref()),
    );
    NodeRow {
        name: name.to_string(),
        status,
        cluster: plan.map(|p| p.cluster.clone()).unwrap_or_default(),
        role: plan.map(|p| p.role.clone()).unwrap_or_default(),
        provider,
        region: pick(plan.map(|p| &p.region), tracked.map(|t| &t.region)),
        offer: pick(plan.map(|p| &p.offer), tracked.map(|t| &t.offer)),
        image: pick(plan.map(|p| &p.image), tracked.map(|t| &t.image)),
        machine,
        system,
        health,
        address: tracked.and_then(|t| t.address().map(String::from)),
        server_id: tracked.and_then(|t| t.server_id.clone()),
        operation,
        last_error: snap.and_then(|s| s.last_error.clone()),
        error_class: snap.and_then(|s| s.error_class),
        waiting: match (plan.is_some(), has_server) {
            (true, false) if snap.is_none_or(|s| s.operation.is_none()) => {
                Some("not created yet; apply to create it".into())
            }
            (false, true) => Some("removed from the plan; apply to tear it down".into()),
            _ => None,
        },
        planned: plan.is_some(),
        live: snap.is_some(),
        execution,
        diffs,
        ops_started: snap.map_or(0, |s| s.ops_started),
        ops_finished: snap.map_or(0, |s| s.ops_finished),
        pending: None,
    }
}

fn sync_row(
    name: &str,
    provider: String,
    planned: bool,
    snap: Option<&Snap>,
    providers: &[ProviderStatus],
) -> SyncRow {
    let snap: Option<&SyncSnap> = match snap {
        Some(Snap::Sync(s)) => Some(s),
        _ => None,
    };
    let state = snap.map_or(SyncState::Unknown, |s| s.state);
    // A set spread over several providers is as fresh as its stalest provider. A row
    // with no provider yet (a firewall set before any node) has nothing to be stale on.
    let freshness = provider
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| provider_freshness(providers, p, None))
        .find(|f| *f != Freshness::Current)
        .unwrap_or(Freshness::Current);
    // A converged resource has no current error: an error still on the snapshot is the
    // one before the success, kept as history.
    let (last_error, error_class, previous_error) = match snap {
        Some(s) if state == SyncState::Converged => (
            None,
            None,
            s.previous_error.clone().or_else(|| s.last_error.clone()),
        ),
        Some(s) => (
            s.last_error.clone(),
            s.error_class,
            s.previous_error.clone(),
        ),
        None => (None, None, None),
    };
    SyncRow {
        name: name.to_string(),
        provider,
        status: sync_status(state, &freshness),
        state,
        summary: snap.map(|s| s.summary.clone()).unwrap_or_default(),
        waiting: snap.and_then(|s| s.waiting.clone()),
        last_error,
        error_class,
        previous_error,
        operation: snap.and_then(|s| s.operation.clone()),
        planned,
        live: snap.is_some(),
        tasks: snap.map(|s| s.tasks.clone()).unwrap_or_default(),
        pending: None,
    }
}
