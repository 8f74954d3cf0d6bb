//! What zone, firewall-set and domain actors do at the provider.
//!
//! Each reconciler owns its resource's provider calls (all writes go through the
//! provider's lane and write wrapper), records what it applied in tracked state, and
//! removes only what Legion made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use super::error::ActorError;
use super::sync::{Desired, Reconciler};
use super::{ActorEnv, Connected, ResourceKey};
use crate::engine::derive::{
    FirewallSpec, Lockout, PlanIndex, ZoneSpec, desired_firewalls_in, desired_zone_in, lockout,
    operator_tasks_in,
};
use crate::engine::state::model::{Plan, State, Tracked, TrackedDomain, TrackedZone};
use crate::providers::{LABEL_CLUSTER, LABEL_INSTALL, LABEL_MANAGED, RrSet};

fn provider(env: &ActorEnv, id: &str) -> Result<std::sync::Arc<Connected>, ActorError> {
    env.providers
        .require(id)
        .map_err(|e| ActorError::precondition(e.to_string()))
}

async fn commit(env: &ActorEnv, f: impl FnOnce(&mut State)) -> Result<(), ActorError> {
    Ok(env.cell.commit(f).await?)
}

fn join_waiting(w: Vec<String>) -> Option<String> {
    (!w.is_empty()).then(|| w.join("; "))
}

/// Until the first apply there is nothing to converge to.
fn not_applied<S>(tracked: bool) -> Desired<S> {
    Desired {
        spec: None,
        tracked,
        waiting: Some("not applied yet; apply to create it".into()),
        summary: String::new(),
    }
}

/// The applied plan's [`PlanIndex`], built once per state epoch (the applied plan changes
/// only with an unkeyed change, which advances the epoch) and shared by every actor of a
/// reconciler: each derivation then costs its cluster's size, not the fleet's.
#[derive(Default)]
pub struct IndexCache(std::sync::Mutex<Option<(u64, Arc<PlanIndex>)>>);

impl IndexCache {
    fn get(&self, epoch: u64, plan: &Plan) -> Arc<PlanIndex> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some((at, index)) if *at == epoch => index.clone(),
            _ => {
                let index = Arc::new(PlanIndex::of(plan));
                *slot = Some((epoch, index.clone()));
                index
            }
        }
    }
}

#[derive(Default)]
pub struct ZoneReconciler {
    index: IndexCache,
}

#[async_trait]
impl Reconciler for ZoneReconciler {
    type Spec = ZoneSpec;

    fn key(&self, name: &str) -> ResourceKey {
        ResourceKey::Zone(name.to_string())
    }

    fn desired(&self, name: &str, state: &State, epoch: u64) -> Desired<ZoneSpec> {
        let tracked = state.tracked.zones.contains_key(name);
        let Some(plan) = &state.tracked.applied_plan else {
            return not_applied(tracked);
        };
        let index = self.index.get(epoch, plan);
        match desired_zone_in(plan, &index, &state.tracked, name) {
            Some((spec, waiting)) => Desired {
                summary: format!("{} rrsets", spec.rrsets.len()),
                spec: Some(spec),
                tracked,
                waiting: join_waiting(waiting),
            },
            None => Desired {
                spec: None,
                tracked,
                waiting: None,
                summary: String::new(),
            },
        }
    }

    fn applied_signature(&self, name: &str, state: &State) -> Option<String> {
        state.tracked.zones.get(name)?.applied_signature.clone()
    }

    async fn converge(
        &self,
        env: &ActorEnv,
        name: &str,
        spec: &ZoneSpec,
        signature: &str,
    ) -> Result<(), ActorError> {
        let p = provider(env, &spec.provider)?;
        let dns = p.api.dns().ok_or_else(|| {
            ActorError::precondition(format!("{}: this provider has no DNS", p.lane.display()))
        })?;
        let res = format!("zone/{name}");
        let tracked = env
            .cell
            .read(|s| s.tracked.zones.get(name).cloned())
            .unwrap_or_default();
        let (zone, created) = match dns.get_zone(name).await? {
            Some(z) => (z, tracked.created_by_legion),
            None => (dns.create_zone(name, &res).await?, true),
        };
        let current: BTreeMap<_, _> = zone
            .rrsets
            .iter()
            .map(|r| ((r.name.clone(), r.rtype), r))
            .collect();
        for want in &spec.rrsets {
            let same = current
                .get(&(want.name.clone(), want.rtype))
                .is_some_and(|have| same_rrset(have, want));
            if !same {
                dns.set_rrset(&zone.id, want, &res).await?;
            }
        }
        let wanted: BTreeSet<_> = spec
            .rrsets
            .iter()
            .map(|r| (r.name.clone(), r.rtype))
            .collect();
        for (rname, rtype) in &tracked.managed {
            if !wanted.contains(&(rname.clone(), *rtype))
                && current.contains_key(&(rname.clone(), *rtype))
            {
                dns.delete_rrset(&zone.id, rname, *rtype, &res).await?;
            }
        }
        commit(env, |s| {
            s.tracked.zones.insert(
                name.to_string(),
                TrackedZone {
                    provider: spec.provider.clone(),
                    zone_id: Some(zone.id.clone()),
                    created_by_legion: created,
                    nameservers: zone.nameservers.clone(),
                    managed: wanted.into_iter().collect(),
                    applied_signature: Some(signature.to_string()),
                },
            );
        })
        .await
    }

    async fn remove(&self, env: &ActorEnv, name: &str) -> Result<(), ActorError> {
        let Some(tracked) = env.cell.read(|s| s.tracked.zones.get(name).cloned()) else {
            return Ok(());
        };
        let p = provider(env, &tracked.provider)?;
        let dns = p.api.dns().ok_or_else(|| {
            ActorError::precondition(format!("{}: this provider has no DNS", p.lane.display()))
        })?;
        let res = format!("zone/{name}");
        if let Some(id) = &tracked.zone_id {
            if tracked.created_by_legion {
                dns.delete_zone(id, &res).await?;
            } else {
                for (rname, rtype) in &tracked.managed {
                    dns.delete_rrset(id, rname, *rtype, &res).await?;
                }
            }
        }
        commit(env, |s| {
            s.tracked.zones.remove(name);
            s.observed.zones.remove(name);
        })
        .await
    }
}

fn same_rrset(a: &RrSet, b: &RrSet) -> bool {
    let mut av = a.values.clone();
    let mut bv = b.values.clone();
    av.sort();
    bv.sort();
    a.ttl == b.ttl && av == bv
}

pub struct FirewallReconciler {
    /// To tell which providers have no managed firewalls (their rules become tasks).
    pub providers: Arc<super::ProviderSet>,
    /// The SSH port Legion reaches nodes on (imports may say another): the management
    /// rule opens it.
    pub ssh_port: u16,
    index: IndexCache,
}

#[derive(Clone, Serialize)]
pub struct FirewallSetSpec(pub Vec<FirewallSpec>);

impl FirewallReconciler {
    pub fn new(providers: Arc<super::ProviderSet>, ssh_port: u16) -> FirewallReconciler {
        FirewallReconciler {
            providers,
            ssh_port,
            index: IndexCache::default(),
        }
    }

    /// The first firewall of `specs` Legion manages at its provider that would cut
    /// Legion off from a node (providers without a firewall API get operator tasks).
    fn lockout(
        &self,
        specs: &[FirewallSpec],
        plan: &Plan,
        tracked: &Tracked,
    ) -> Result<(), Lockout> {
        specs
            .iter()
            .filter(|w| {
                self.providers
                    .get(&w.provider)
                    .is_some_and(|c| c.api.firewall().is_some())
            })
            .try_for_each(|w| lockout(w, plan, tracked))
    }

    /// What an apply of the current plan would refuse, one line per firewall set.
    pub fn lockouts(&self, state: &State) -> Vec<String> {
        let index = PlanIndex::of(&state.plan);
        index
            .clusters()
            .iter()
            .filter_map(|c| {
                desired_firewalls_in(&state.plan, &index, &state.tracked, c, self.ssh_port)
            })
            .filter_map(|(specs, _)| self.lockout(&specs, &state.plan, &state.tracked).err())
            .map(|e| e.to_string())
            .collect()
    }
}

#[async_trait]
impl Reconciler for FirewallReconciler {
    type Spec = FirewallSetSpec;

    fn key(&self, name: &str) -> ResourceKey {
        ResourceKey::Firewall(name.to_string())
    }

    fn desired(&self, name: &str, state: &State, epoch: u64) -> Desired<FirewallSetSpec> {
        let tracked = state.tracked.firewalls.contains_key(name);
        let Some(plan) = &state.tracked.applied_plan else {
            return not_applied(tracked);
        };
        let index = self.index.get(epoch, plan);
        match desired_firewalls_in(plan, &index, &state.tracked, name, self.ssh_port) {
            // Without a management source the set would lock Legion out of its nodes:
            // it waits (with the reason) instead of being applied.
            Some((specs, waiting)) if specs.iter().any(|s| s.management.is_empty()) => Desired {
                summary: String::new(),
                spec: None,
                tracked,
                waiting: join_waiting(waiting),
            },
            Some((specs, waiting)) => Desired {
                // The management sources are part of the summary, so the Firewalls view
                // and `firewalls list` say who keeps SSH access.
                summary: format!(
                    "{} rules on {} nodes, SSH from {}",
                    specs.first().map_or(0, |s| s.rules.len()),
                    specs.iter().map(|s| s.server_ids.len()).sum::<usize>(),
                    specs
                        .first()
                        .map(|s| s.management.join(", "))
                        .unwrap_or_default()
                ),
                spec: Some(FirewallSetSpec(specs)),
                tracked,
                waiting: join_waiting(waiting),
            },
            None => Desired {
                spec: None,
                tracked,
                waiting: None,
                summary: String::new(),
            },
        }
    }

    fn applied_signature(&self, name: &str, state: &State) -> Option<String> {
        state.tracked.firewalls.get(name)?.applied_signature.clone()
    }

    /// Rules for nodes on providers without managed firewalls, as of the last apply.
    fn tasks(&self, name: &str, state: &State, epoch: u64) -> Vec<String> {
        let Some(plan) = &state.tracked.applied_plan else {
            return Vec::new();
        };
        let index = self.index.get(epoch, plan);
        operator_tasks_in(plan, &index, &state.tracked, name, self.ssh_port, |p| {
            self.providers
                .get(p)
                .is_some_and(|c| c.api.firewall().is_none())
        })
    }

    async fn converge(
        &self,
        env: &ActorEnv,
        name: &str,
        spec: &FirewallSetSpec,
        signature: &str,
    ) -> Result<(), ActorError> {
        let res = format!("firewall/{name}");
        // Refuse the whole set before any provider call when it would cut Legion off
        // from a node (see `derive::lockout`), checked against the newest state.
        env.cell
            .read(|s| {
                let plan = s.tracked.applied_plan.as_ref().unwrap_or(&s.plan);
                self.lockout(&spec.0, plan, &s.tracked)
            })
            .map_err(|e| ActorError::Refused(e.to_string()))?;
        let mut tracked = env
            .cell
            .read(|s| s.tracked.firewalls.get(name).cloned())
            .unwrap_or_default();
        for want in &spec.0 {
            let p = provider(env, &want.provider)?;
            let Some(fw_api) = p.api.firewall() else {
                // Providers without managed firewalls get operator tasks (see the
                // manual provider); nothing is pretended here.
                continue;
            };
            let existing = fw_api.list_firewalls(&env.install_id).await?;
            let known = tracked.firewall_ids.get(&want.provider);
            let found = existing
                .iter()
                .find(|f| Some(&f.id) == known)
                .or_else(|| existing.iter().find(|f| f.name == want.name))
                .cloned();
            let fw = match found {
                Some(f) => f,
                None => {
                    let mut labels = BTreeMap::new();
                    labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
                    labels.insert(LABEL_INSTALL.to_string(), env.install_id.clone());
                    labels.insert(LABEL_CLUSTER.to_string(), name.to_string());
                    fw_api
                        .create_firewall(&want.name, &labels, &want.rules, &res)
                        .await?
                }
            };
            let have: BTreeSet<_> = fw.rules.iter().collect();
            let wanted: BTreeSet<_> = want.rules.iter().collect();
            if have != wanted {
                fw_api.set_rules(&fw.id, &want.rules, &res).await?;
            }
            let applied: BTreeSet<_> = fw.applied_to.iter().cloned().collect();
            let targets: BTreeSet<_> = want.server_ids.iter().cloned().collect();
            let add: Vec<String> = targets.difference(&applied).cloned().collect();
            let drop: Vec<String> = applied.difference(&targets).cloned().collect();
            if !add.is_empty() {
                fw_api.attach(&fw.id, &add, &res).await?;
            }
            if !drop.is_empty() {
                fw_api.detach(&fw.id, &drop, &res).await?;
            }
            tracked
                .firewall_ids
                .insert(want.provider.clone(), fw.id.clone());
        }
        // Providers the cluster no longer runs on lose their firewall.
        let used: BTreeSet<_> = spec.0.iter().map(|s| s.provider.clone()).collect();
        let stale: Vec<(String, String)> = tracked
            .firewall_ids
            .iter()
            .filter(|(p, _)| !used.contains(*p))
            .map(|(p, id)| (p.clone(), id.clone()))
            .collect();
        for (p_id, fw_id) in stale {
            let p = provider(env, &p_id)?;
            if let Some(fw_api) = p.api.firewall() {
                fw_api.delete_firewall(&fw_id, &res).await?;
            }
            tracked.firewall_ids.remove(&p_id);
        }
        tracked.applied_signature = Some(signature.to_string());
        commit(env, |s| {
            s.tracked.firewalls.insert(name.to_string(), tracked);
        })
        .await
    }

    async fn remove(&self, env: &ActorEnv, name: &str) -> Result<(), ActorError> {
        let Some(tracked) = env.cell.read(|s| s.tracked.firewalls.get(name).cloned()) else {
            return Ok(());
        };
        let res = format!("firewall/{name}");
        for (p_id, fw_id) in &tracked.firewall_ids {
            let p = provider(env, p_id)?;
            if let Some(fw_api) = p.api.firewall() {
                fw_api.delete_firewall(fw_id, &res).await?;
            }
        }
        commit(env, |s| {
            s.tracked.firewalls.remove(name);
        })
        .await
    }
}

pub struct DomainReconciler;

#[derive(Clone, Serialize)]
pub struct DomainSpec {
    pub registrar: String,
    pub nameservers: Vec<String>,
}

#[async_trait]
impl Reconciler for DomainReconciler {
    type Spec = DomainSpec;

    fn key(&self, name: &str) -> ResourceKey {
        ResourceKey::Domain(name.to_string())
    }

    fn desired(&self, name: &str, state: &State, _epoch: u64) -> Desired<DomainSpec> {
        let tracked = state.tracked.domains.contains_key(name);
        let Some(applied) = &state.tracked.applied_plan else {
            return not_applied(tracked);
        };
        let Some(plan) = applied.domains.get(name) else {
            return Desired {
                spec: None,
                tracked,
                waiting: None,
                summary: String::new(),
            };
        };
        let ns = state
            .tracked
            .zones
            .get(&plan.zone)
            .map(|z| z.nameservers.clone())
            .unwrap_or_default();
        if ns.is_empty() {
            return Desired {
                spec: None,
                tracked,
                waiting: Some(format!("zone {} is not created yet", plan.zone)),
                summary: format!("delegates to zone {}", plan.zone),
            };
        }
        Desired {
            summary: format!("delegates to {}", ns.join(", ")),
            spec: Some(DomainSpec {
                registrar: plan.registrar.clone(),
                nameservers: ns,
            }),
            tracked,
            waiting: None,
        }
    }

    fn applied_signature(&self, name: &str, state: &State) -> Option<String> {
        state.tracked.domains.get(name)?.applied_signature.clone()
    }

    async fn converge(
        &self,
        env: &ActorEnv,
        name: &str,
        spec: &DomainSpec,
        signature: &str,
    ) -> Result<(), ActorError> {
        let p = provider(env, &spec.registrar)?;
        let domains = p.api.domains().ok_or_else(|| {
            ActorError::precondition(format!(
                "{}: this provider registers no domains",
                p.lane.display()
            ))
        })?;
        let res = format!("domain/{name}");
        let current = domains.get_domain(name).await?.ok_or_else(|| {
            ActorError::precondition(format!(
                "{}: domain {name} is not in this account",
                p.lane.display()
            ))
        })?;
        let mut have = current.nameservers.clone();
        have.sort();
        let mut want = spec.nameservers.clone();
        want.sort();
        if have != want {
            domains
                .set_nameservers(name, &spec.nameservers, &res)
                .await?;
        }
        commit(env, |s| {
            s.tracked.domains.insert(
                name.to_string(),
                TrackedDomain {
                    applied_signature: Some(signature.to_string()),
                },
            );
        })
        .await
    }

    async fn remove(&self, env: &ActorEnv, name: &str) -> Result<(), ActorError> {
        // The registration and its delegation stay: removing a domain from the plan only
        // stops Legion from managing it.
        env.oplog.info(
            Some(format!("domain/{name}")),
            format!(
                "{name} is no longer managed; its registration and nameservers are left as they are"
            ),
        );
        commit(env, |s| {
            s.tracked.domains.remove(name);
        })
        .await
    }
}
