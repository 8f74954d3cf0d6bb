//! The supervisor: ensures one actor per resource of the unlocked state, stops actors whose
//! resource is gone from both plan and tracked state, wakes derived-resource actors on
//! state changes, and publishes coalesced `AppSnapshot`s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::actors::node::{NodeHandle, NodeMsg};
use super::actors::reconcilers::{DomainReconciler, FirewallReconciler, ZoneReconciler};
use super::actors::sync::{Reconciler, SyncHandle};
use super::actors::{ActorEnv, ResourceKey};
use super::changes::{ChangeEnv, ChangeSet, compute};
use super::derive::planned_clusters;
use super::snapshot::{AppSnapshot, ApplyView, assemble};
use super::state::change::Key;

/// The publisher waits at least this many times what its last publication cost.
const PUBLISH_DUTY: u32 = 4;

#[derive(Default)]
struct Actors {
    nodes: HashMap<String, (NodeHandle, JoinHandle<()>)>,
    zones: HashMap<String, (SyncHandle, JoinHandle<()>)>,
    firewalls: HashMap<String, (SyncHandle, JoinHandle<()>)>,
    domains: HashMap<String, (SyncHandle, JoinHandle<()>)>,
    /// What the firewall actors follow, kept so a keyed change costs what it touched:
    /// each planned node's cluster, the planned nodes per cluster, and the clusters
    /// that have a firewall set for another reason (planned, tracked, applied; those
    /// change only with a full sync).
    node_cluster: HashMap<String, String>,
    cluster_nodes: HashMap<String, usize>,
    fixed_clusters: BTreeSet<String>,
    applied_clusters: BTreeSet<String>,
}

impl Actors {
    fn set_node_cluster(&mut self, node: &str, cluster: Option<&str>) -> Option<String> {
        let old = match cluster {
            Some(c) if self.node_cluster.get(node).is_some_and(|o| o == c) => return None,
            Some(c) => self.node_cluster.insert(node.to_string(), c.to_string()),
            None => self.node_cluster.remove(node),
        };
        if let Some(c) = cluster {
            *self.cluster_nodes.entry(c.to_string()).or_default() += 1;
        }
        if let Some(o) = &old
            && let Some(n) = self.cluster_nodes.get_mut(o)
        {
            *n -= 1;
            if *n == 0 {
                self.cluster_nodes.remove(o);
            }
        }
        old
    }
}

pub struct Supervisor {
    env: Arc<ActorEnv>,
    actors: Mutex<Actors>,
    zone: Arc<ZoneReconciler>,
    firewall: Arc<FirewallReconciler>,
    domain: Arc<DomainReconciler>,
    /// The snapshot's change set, with the state version and providers it was computed
    /// for: a publication caused by actors alone (health checks) reuses it.
    changes: Mutex<Option<(u64, ChangeEnv, Arc<ChangeSet>)>>,
}

fn reconcile_set<R: Reconciler>(
    env: &Arc<ActorEnv>,
    rec: &Arc<R>,
    map: &mut HashMap<String, (SyncHandle, JoinHandle<()>)>,
    wanted: BTreeSet<String>,
) {
    map.retain(|name, (_, task)| {
        let keep = wanted.contains(name);
        if !keep {
            task.abort();
            env.board.remove(&rec.key(name));
        }
        keep
    });
    for name in wanted {
        map.entry(name.clone())
            .or_insert_with(|| SyncHandle::spawn(env.clone(), rec.clone(), name));
    }
}

/// Start or stop the one actor of `name` in `map`.
fn one<R: Reconciler>(
    env: &Arc<ActorEnv>,
    rec: &Arc<R>,
    map: &mut HashMap<String, (SyncHandle, JoinHandle<()>)>,
    name: String,
    keep: bool,
) {
    if keep {
        map.entry(name.clone())
            .or_insert_with(|| SyncHandle::spawn(env.clone(), rec.clone(), name));
    } else if let Some((_, task)) = map.remove(&name) {
        task.abort();
        env.board.remove(&rec.key(&name));
    }
}

impl Supervisor {
    pub fn new(env: Arc<ActorEnv>) -> Supervisor {
        Supervisor {
            actors: Mutex::new(Actors::default()),
            changes: Mutex::new(None),
            zone: Arc::new(ZoneReconciler::default()),
            firewall: Arc::new(FirewallReconciler::new(env.providers.clone(), 22)),
            domain: Arc::new(DomainReconciler),
            env,
        }
    }

    /// The SSH port Legion reaches nodes on (`LEGION_SSH_PORT`), which every managed
    /// firewall keeps open to the management sources; 22 unless set.
    pub fn with_ssh_port(mut self, port: u16) -> Supervisor {
        self.firewall = Arc::new(FirewallReconciler::new(self.env.providers.clone(), port));
        self
    }

    pub fn env(&self) -> &Arc<ActorEnv> {
        &self.env
    }

    /// Why applying the current plan would have a managed firewall set refused for
    /// cutting Legion off from a node (the check the firewall actor makes before its
    /// provider calls, made now so a face can say so before the apply starts).
    pub fn lockouts(&self, state: &crate::engine::state::model::State) -> Vec<String> {
        self.firewall.lockouts(state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Actors> {
        self.actors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ensure an actor for every planned or tracked resource; stop the rest.
    pub fn sync_from_state(&self) {
        let (nodes, zones, node_cluster, fixed, applied, domains) = self.env.cell.read(|s| {
            let nodes: BTreeSet<String> = s
                .plan
                .nodes
                .keys()
                .chain(s.tracked.nodes.keys())
                .cloned()
                .collect();
            let zones: BTreeSet<String> = s
                .plan
                .zones
                .keys()
                .chain(s.tracked.zones.keys())
                .cloned()
                .collect();
            let node_cluster: HashMap<String, String> = s
                .plan
                .nodes
                .iter()
                .map(|(n, p)| (n.clone(), p.cluster.clone()))
                .collect();
            let applied = s
                .tracked
                .applied_plan
                .as_ref()
                .map(planned_clusters)
                .unwrap_or_default();
            let mut fixed: BTreeSet<String> = s.plan.clusters.keys().cloned().collect();
            fixed.extend(s.plan.firewalls.keys().cloned());
            fixed.extend(s.tracked.firewalls.keys().cloned());
            fixed.extend(applied.iter().cloned());
            let domains: BTreeSet<String> = s
                .plan
                .domains
                .keys()
                .chain(s.tracked.domains.keys())
                .cloned()
                .collect();
            (nodes, zones, node_cluster, fixed, applied, domains)
        });
        let mut a = self.lock();
        let a = &mut *a;
        a.cluster_nodes.clear();
        for c in node_cluster.values() {
            *a.cluster_nodes.entry(c.clone()).or_default() += 1;
        }
        a.node_cluster = node_cluster;
        a.fixed_clusters = fixed;
        a.applied_clusters = applied;
        let mut clusters = a.fixed_clusters.clone();
        clusters.extend(a.cluster_nodes.keys().cloned());
        a.nodes.retain(|name, (_, task)| {
            let keep = nodes.contains(name);
            if !keep {
                task.abort();
                self.env.board.remove(&ResourceKey::Node(name.clone()));
            }
            keep
        });
        for name in nodes {
            a.nodes
                .entry(name.clone())
                .or_insert_with(|| NodeHandle::spawn(self.env.clone(), name));
        }
        reconcile_set(&self.env, &self.zone, &mut a.zones, zones);
        reconcile_set(&self.env, &self.firewall, &mut a.firewalls, clusters);
        reconcile_set(&self.env, &self.domain, &mut a.domains, domains);
    }

    /// [`Supervisor::sync_from_state`] for the resources `keys` name only: a plan edit or
    /// an execution's phase costs what it touched, not the fleet's size.
    pub fn sync_keys(&self, keys: &HashSet<Key>) {
        struct Wanted {
            node: Vec<(String, bool, Option<String>)>,
            zone: Vec<(String, bool)>,
            domain: Vec<(String, bool)>,
            fixed: Vec<(String, bool)>,
        }
        let w = self.env.cell.read(|s| {
            let mut w = Wanted {
                node: Vec::new(),
                zone: Vec::new(),
                domain: Vec::new(),
                fixed: Vec::new(),
            };
            for key in keys {
                match key {
                    Key::PlanNode(n) | Key::TrackedNode(n) => {
                        let plan = s.plan.nodes.get(n);
                        let keep = plan.is_some() || s.tracked.nodes.contains_key(n);
                        w.node
                            .push((n.clone(), keep, plan.map(|p| p.cluster.clone())));
                    }
                    Key::PlanZone(n) => w.zone.push((
                        n.clone(),
                        s.plan.zones.contains_key(n) || s.tracked.zones.contains_key(n),
                    )),
                    Key::PlanDomain(n) => w.domain.push((
                        n.clone(),
                        s.plan.domains.contains_key(n) || s.tracked.domains.contains_key(n),
                    )),
                    Key::PlanCluster(c) | Key::PlanFirewall(c) => w.fixed.push((
                        c.clone(),
                        s.plan.clusters.contains_key(c)
                            || s.plan.firewalls.contains_key(c)
                            || s.tracked.firewalls.contains_key(c),
                    )),
                    _ => {}
                }
            }
            w
        });
        let mut a = self.lock();
        let a = &mut *a;
        let mut clusters: BTreeSet<String> = BTreeSet::new();
        for (name, keep, cluster) in w.node {
            if let Some(old) = a.set_node_cluster(&name, cluster.as_deref()) {
                clusters.insert(old);
            }
            clusters.extend(cluster);
            if keep {
                a.nodes
                    .entry(name.clone())
                    .or_insert_with(|| NodeHandle::spawn(self.env.clone(), name));
            } else if let Some((_, task)) = a.nodes.remove(&name) {
                task.abort();
                self.env.board.remove(&ResourceKey::Node(name));
            }
        }
        for (c, fixed) in w.fixed {
            if fixed || a.applied_clusters.contains(&c) {
                a.fixed_clusters.insert(c.clone());
            } else {
                a.fixed_clusters.remove(&c);
            }
            clusters.insert(c);
        }
        for c in clusters {
            let keep = a.fixed_clusters.contains(&c) || a.cluster_nodes.contains_key(&c);
            one(&self.env, &self.firewall, &mut a.firewalls, c, keep);
        }
        for (z, keep) in w.zone {
            one(&self.env, &self.zone, &mut a.zones, z, keep);
        }
        for (d, keep) in w.domain {
            one(&self.env, &self.domain, &mut a.domains, d, keep);
        }
    }

    /// The actor of node `name`, started now if the state follower has not started it
    /// yet (a node planned a moment ago). Does not look at the rest of the state.
    pub fn ensure_node(&self, name: &str) -> NodeHandle {
        self.lock()
            .nodes
            .entry(name.to_string())
            .or_insert_with(|| NodeHandle::spawn(self.env.clone(), name.to_string()))
            .0
            .clone()
    }

    pub fn node(&self, name: &str) -> Option<NodeHandle> {
        self.lock().nodes.get(name).map(|(h, _)| h.clone())
    }

    pub fn node_names(&self) -> Vec<String> {
        self.lock().nodes.keys().cloned().collect()
    }

    /// Send every node actor a message.
    pub fn broadcast_nodes(&self, msg: impl Fn() -> NodeMsg) {
        for (h, _) in self.lock().nodes.values() {
            h.send(msg());
        }
    }

    /// Keys of the derived-resource actors, and send each a sync.
    pub fn sync_derived(&self, apply: Option<u64>) -> Vec<ResourceKey> {
        let a = self.lock();
        let mut keys = Vec::new();
        for (name, (h, _)) in &a.zones {
            h.sync(apply);
            keys.push(ResourceKey::Zone(name.clone()));
        }
        for (name, (h, _)) in &a.firewalls {
            h.sync(apply);
            keys.push(ResourceKey::Firewall(name.clone()));
        }
        for (name, (h, _)) in &a.domains {
            h.sync(apply);
            keys.push(ResourceKey::Domain(name.clone()));
        }
        keys
    }

    /// Stop every actor (logout).
    pub fn stop_all(&self) {
        let a = &mut *self.lock();
        for (_, (_, t)) in a.nodes.drain() {
            t.abort();
        }
        for map in [&mut a.zones, &mut a.firewalls, &mut a.domains] {
            for (_, (_, t)) in map.drain() {
                t.abort();
            }
        }
    }

    /// React to state changes: ensure actors, wake derived resources. Coalesced by the
    /// watch channel: a burst of mutations is one wake.
    pub fn spawn_state_follower(self: &Arc<Self>) -> JoinHandle<()> {
        let sup = Arc::downgrade(self);
        let mut versions = self.env.cell.subscribe();
        tokio::spawn(async move {
            while versions.changed().await.is_ok() {
                versions.borrow_and_update();
                let Some(sup) = sup.upgrade() else { return };
                let touched = sup.env.cell.take_touched();
                if touched.all {
                    sup.sync_from_state();
                } else {
                    sup.sync_keys(&touched.keys);
                }
                sup.sync_derived(None);
            }
        })
    }

    /// Publish an `AppSnapshot` after any board or state change, at most once per
    /// coalescing window.
    pub fn spawn_publisher(
        self: &Arc<Self>,
        home: String,
        out: watch::Sender<Arc<AppSnapshot>>,
        apply: Arc<Mutex<ApplyView>>,
    ) -> JoinHandle<()> {
        let sup = Arc::downgrade(self);
        let mut board = self.env.board.subscribe();
        let mut versions = self.env.cell.subscribe();
        let window = self.env.timings.coalesce;
        tokio::spawn(async move {
            let mut seq = out.borrow().seq;
            // What the last publication cost: the next one waits at least a few times
            // that, so a large fleet's publisher takes a bounded share of the CPU (its
            // publications spread out) instead of assembling back to back while every
            // actor changes. A small fleet costs far less than the window.
            let mut cost = Duration::ZERO;
            loop {
                tokio::select! {
                    r = board.changed() => if r.is_err() { return },
                    r = versions.changed() => if r.is_err() { return },
                }
                tokio::time::sleep(window.max(cost * PUBLISH_DUTY)).await;
                board.borrow_and_update();
                versions.borrow_and_update();
                let Some(sup) = sup.upgrade() else { return };
                let started = std::time::Instant::now();
                let mut snap = sup.assemble(seq + 1, home.clone(), &apply);
                // Only a snapshot that differs wakes the faces.
                out.send_if_modified(|current| {
                    snap.seq = current.seq;
                    if **current == snap {
                        return false;
                    }
                    seq += 1;
                    snap.seq = seq;
                    *current = Arc::new(snap);
                    true
                });
                cost = started.elapsed();
            }
        })
    }

    pub fn assemble(&self, seq: u64, home: String, apply: &Mutex<ApplyView>) -> AppSnapshot {
        let board = self.env.board.snapshot();
        let mut providers: Vec<_> = self
            .env
            .providers
            .all()
            .iter()
            .map(|c| c.lane.status())
            .collect();
        providers.sort_by(|a, b| a.id.cmp(&b.id));
        let apply = apply.lock().map(|a| a.clone()).unwrap_or(ApplyView::Idle);
        let cenv = self.change_env();
        // Read before the state: a change in between only makes the next one recompute.
        let version = self.env.cell.version();
        let mut cache = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        self.env.cell.read(|s| {
            let set = match &*cache {
                Some((v, e, set)) if *v == version && *e == cenv => set.clone(),
                _ => {
                    let set = Arc::new(compute(s, &cenv, false));
                    *cache = Some((version, cenv, set.clone()));
                    set
                }
            };
            let mut snap = assemble(seq, home, s, &board, providers, apply);
            snap.mark_pending(&set);
            snap
        })
    }

    /// What decides which changes are blocked: the connected providers, the SSH port.
    pub fn change_env(&self) -> ChangeEnv {
        ChangeEnv {
            providers: self
                .env
                .providers
                .all()
                .iter()
                .map(|c| (c.id.clone(), c.api.firewall().is_some()))
                .collect(),
            ssh_port: self.firewall.ssh_port,
            caps: self
                .env
                .providers
                .all()
                .iter()
                .map(|c| (c.id.clone(), super::actors::replace::node_caps(c)))
                .collect(),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::oplog::OpLog;
    use crate::engine::actors::{Board, ProviderSet, Timings};
    use crate::engine::plan::{PlanEdit, apply_edit};
    use crate::engine::state::cell::StateCell;
    use crate::engine::state::change::keys_of;
    use crate::engine::state::crypto::KdfParams;
    use crate::engine::state::model::{ClusterPlan, NodePlan, State};
    use crate::engine::state::store::StateFile;
    use crate::providers::BootMode;

    impl Supervisor {
        fn actor_keys(&self) -> BTreeSet<ResourceKey> {
            let a = self.lock();
            let mut out: BTreeSet<ResourceKey> =
                a.nodes.keys().cloned().map(ResourceKey::Node).collect();
            out.extend(a.zones.keys().cloned().map(ResourceKey::Zone));
            out.extend(a.firewalls.keys().cloned().map(ResourceKey::Firewall));
            out.extend(a.domains.keys().cloned().map(ResourceKey::Domain));
            out
        }
    }

    fn node(cluster: &str) -> NodePlan {
        NodePlan {
            uid: format!("u-{cluster}"),
            cluster: cluster.into(),
            role: "app".into(),
            provider: "mock".into(),
            region: "r".into(),
            offer: "o".into(),
            image: "i".into(),
            boot_mode: BootMode::Bios,
        }
    }

    fn upsert(name: &str, cluster: &str) -> PlanEdit {
        PlanEdit::UpsertNode {
            name: name.into(),
            node: node(cluster),
        }
    }

    fn supervisor(cell: &Arc<StateCell>) -> Supervisor {
        let oplog = OpLog::default();
        Supervisor::new(Arc::new(ActorEnv {
            cell: cell.clone(),
            providers: Arc::new(ProviderSet::default()),
            board: Arc::new(Board::new(oplog.clone())),
            oplog,
            timings: Timings::default(),
            install_id: "test".into(),
            ssh: None,
            ssh_behind_own_agents: false,
        }))
    }

    /// The state follower syncs only what a keyed change touched: after every kind of
    /// plan edit (nodes in, out and between clusters, a cluster emptied, clusters and
    /// zones planned and removed) it runs the same actors as a full sync would.
    #[tokio::test]
    async fn keyed_changes_keep_the_actors_of_a_full_sync() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = State::new("i".into());
        let file = StateFile::in_home(dir.path());
        let bytes = serde_json::to_vec(&state).unwrap_or_else(|e| panic!("{e}"));
        let fast = KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        };
        let key = file
            .create(b"pw", fast, &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        let cell = StateCell::start(state, file, key);
        let sup = supervisor(&cell);
        sup.sync_from_state();
        assert!(cell.take_touched().all, "the first look syncs everything");
        let edits = vec![
            upsert("a", "x"),
            upsert("b", "x"),
            upsert("c", "y"),
            upsert("b", "y"),
            PlanEdit::RemoveNode { name: "c".into() },
            upsert("d", "z"),
            PlanEdit::RemoveNode { name: "a".into() },
            PlanEdit::UpsertCluster {
                name: "w".into(),
                cluster: ClusterPlan {
                    dns_zone: None,
                    peer_ports: vec![1],
                },
            },
            PlanEdit::UpsertZone {
                name: "example.test".into(),
                provider: "mock".into(),
            },
            upsert("e", "w"),
            PlanEdit::RemoveNode { name: "e".into() },
            PlanEdit::RemoveZone {
                name: "example.test".into(),
            },
            PlanEdit::RemoveNode { name: "b".into() },
        ];
        for edit in edits {
            let what = format!("{edit:?}");
            let keys = keys_of(&edit);
            cell.try_change(&keys, |s| apply_edit(s, edit))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let touched = cell.take_touched();
            assert!(!touched.all, "{what} was keyed");
            sup.sync_keys(&touched.keys);
            let full = supervisor(&cell);
            full.sync_from_state();
            assert_eq!(sup.actor_keys(), full.actor_keys(), "after {what}");
        }
        assert!(
            sup.actor_keys()
                .contains(&ResourceKey::Firewall("w".into())),
            "a planned cluster keeps its firewall set without nodes"
        );
    }
}
