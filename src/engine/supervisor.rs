//! The supervisor: ensures one actor per resource of the unlocked state, stops actors whose
//! resource is gone from both plan and tracked state, wakes derived-resource actors on
//! state changes, and publishes coalesced `AppSnapshot`s.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::actors::node::{NodeHandle, NodeMsg};
use super::actors::reconcilers::{DomainReconciler, FirewallReconciler, ZoneReconciler};
use super::actors::sync::{Reconciler, SyncHandle};
use super::actors::{ActorEnv, ResourceKey};
use super::changes::{ChangeEnv, ChangeSet, compute};
use super::derive::planned_clusters;
use super::snapshot::{AppSnapshot, ApplyView, assemble};

#[derive(Default)]
struct Actors {
    nodes: HashMap<String, (NodeHandle, JoinHandle<()>)>,
    zones: HashMap<String, (SyncHandle, JoinHandle<()>)>,
    firewalls: HashMap<String, (SyncHandle, JoinHandle<()>)>,
    domains: HashMap<String, (SyncHandle, JoinHandle<()>)>,
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

impl Supervisor {
    pub fn new(env: Arc<ActorEnv>) -> Supervisor {
        Supervisor {
            actors: Mutex::new(Actors::default()),
            changes: Mutex::new(None),
            zone: Arc::new(ZoneReconciler),
            firewall: Arc::new(FirewallReconciler {
                providers: env.providers.clone(),
                ssh_port: 22,
            }),
            domain: Arc::new(DomainReconciler),
            env,
        }
    }

    /// The SSH port Legion reaches nodes on (`LEGION_SSH_PORT`), which every managed
    /// firewall keeps open to the management sources; 22 unless set.
    pub fn with_ssh_port(mut self, port: u16) -> Supervisor {
        self.firewall = Arc::new(FirewallReconciler {
            providers: self.env.providers.clone(),
            ssh_port: port,
        });
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
        let (nodes, zones, clusters, domains) = self.env.cell.read(|s| {
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
            let mut clusters = planned_clusters(&s.plan);
            clusters.extend(s.tracked.firewalls.keys().cloned());
            if let Some(applied) = &s.tracked.applied_plan {
                clusters.extend(planned_clusters(applied));
            }
            let domains: BTreeSet<String> = s
                .plan
                .domains
                .keys()
                .chain(s.tracked.domains.keys())
                .cloned()
                .collect();
            (nodes, zones, clusters, domains)
        });
        let mut a = self.lock();
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
                sup.sync_from_state();
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
            loop {
                tokio::select! {
                    r = board.changed() => if r.is_err() { return },
                    r = versions.changed() => if r.is_err() { return },
                }
                tokio::time::sleep(window).await;
                board.borrow_and_update();
                versions.borrow_and_update();
                let Some(sup) = sup.upgrade() else { return };
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
