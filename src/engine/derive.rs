//! Derived resources: DNS records for node endpoints and the cluster firewall sets.
//!
//! Pure functions of the state. The zone and firewall actors call them on every state
//! change and compare a signature of the result with what they last applied, so an
//! unchanged derivation is a no-op and a missing endpoint becomes a waiting reason.
//!
//! Every firewall set carries management access: TCP to the SSH port Legion uses for
//! each node, from the management sources (the addresses nodes first saw Legion connect
//! from, plus the configured networks). [`lockout`] is the check made before a set is
//! applied: the address a node last saw Legion connect from must stay allowed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::state::model::{Plan, RecordValue, Tracked, TrackedNode};
use crate::providers::{FirewallRule, Protocol, RecordType, RrSet};

/// A short stable digest of a serializable value.
pub fn signature<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex::encode(&digest[..12])
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneSpec {
    pub provider: String,
    pub rrsets: Vec<RrSet>,
}

/// Planned nodes by cluster (in name order) and the clusters a firewall set exists for,
/// built in one pass over a plan: a derivation per cluster then costs that cluster's
/// size, not the fleet's (a pass per cluster made every state change O(clusters x nodes)).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PlanIndex {
    members: HashMap<String, Vec<String>>,
    clusters: BTreeSet<String>,
}

impl PlanIndex {
    pub fn of(plan: &Plan) -> PlanIndex {
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for (name, n) in &plan.nodes {
            members
                .entry(n.cluster.clone())
                .or_default()
                .push(name.clone());
        }
        let mut clusters: BTreeSet<String> = plan.clusters.keys().cloned().collect();
        clusters.extend(plan.firewalls.keys().cloned());
        clusters.extend(members.keys().cloned());
        PlanIndex { members, clusters }
    }

    /// The planned nodes of `cluster`, in name order.
    pub fn members(&self, cluster: &str) -> &[String] {
        self.members.get(cluster).map_or(&[], Vec::as_slice)
    }

    /// [`planned_clusters`] of the indexed plan.
    pub fn clusters(&self) -> &BTreeSet<String> {
        &self.clusters
    }
}

/// The zone's desired RRsets, and what it waits for. `None` when the zone is not planned.
#[cfg(test)]
pub fn desired_zone(plan: &Plan, tracked: &Tracked, zone: &str) -> Option<(ZoneSpec, Vec<String>)> {
    desired_zone_in(plan, &PlanIndex::of(plan), tracked, zone)
}

/// The zone's desired RRsets and what it waits for (see [`desired_zone`]), with the
/// plan's index built once by the caller.
pub fn desired_zone_in(
    plan: &Plan,
    index: &PlanIndex,
    tracked: &Tracked,
    zone: &str,
) -> Option<(ZoneSpec, Vec<String>)> {
    let all = plan;
    let plan = all.zones.get(zone)?;
    let mut sets: BTreeMap<(String, RecordType), (u32, BTreeSet<String>)> = BTreeMap::new();
    let mut waiting = Vec::new();
    let address = |node: &str, rtype: RecordType| {
        let t = tracked.nodes.get(node)?;
        match rtype {
            RecordType::AAAA => t.ipv6.clone(),
            _ => t.ipv4.clone(),
        }
    };
    for r in &plan.records {
        let value = match &r.value {
            RecordValue::Literal(v) => Some(v.clone()),
            RecordValue::NodeAddress(node) => {
                let v = address(node, r.rtype);
                if v.is_none() {
                    waiting.push(format!("node {node} has no address yet"));
                }
                v
            }
        };
        if let Some(v) = value {
            let e = sets
                .entry((r.name.clone(), r.rtype))
                .or_insert((r.ttl, BTreeSet::new()));
            e.1.insert(v);
        }
    }
    for (cluster_name, cluster) in &all.clusters {
        if cluster.dns_zone.as_deref() != Some(zone) {
            continue;
        }
        for node in index.members(cluster_name) {
            let t = tracked.nodes.get(node);
            let v4 = t.and_then(|t| t.ipv4.clone());
            let v6 = t.and_then(|t| t.ipv6.clone());
            if v4.is_none() && v6.is_none() {
                waiting.push(format!("node {node} has no address yet"));
            }
            for (rtype, v) in [(RecordType::A, v4), (RecordType::AAAA, v6)] {
                if let Some(v) = v {
                    sets.entry((node.clone(), rtype))
                        .or_insert((300, BTreeSet::new()))
                        .1
                        .insert(v);
                }
            }
        }
    }
    waiting.sort();
    waiting.dedup();
    let rrsets = sets
        .into_iter()
        .map(|((name, rtype), (ttl, values))| RrSet {
            name,
            rtype,
            ttl,
            values: values.into_iter().collect(),
        })
        .collect();
    Some((
        ZoneSpec {
            provider: plan.provider.clone(),
            rrsets,
        },
        waiting,
    ))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirewallSpec {
    pub provider: String,
    pub name: String,
    pub rules: Vec<FirewallRule>,
    /// Provider server ids the firewall applies to.
    pub server_ids: Vec<String>,
    /// The management sources its SSH rule allows (empty: none known yet, so the set
    /// must not be applied).
    pub management: Vec<String>,
}

/// The description of the rule that keeps Legion's SSH access.
pub const MANAGEMENT_RULE: &str = "legion management (ssh)";

/// The networks allowed to reach every node's SSH port: the configured ones and, for
/// every tracked node, the address it first saw Legion connect from (as a host network).
pub fn management_sources(plan: &Plan, tracked: &Tracked) -> Vec<String> {
    let mut out: BTreeSet<String> = plan.management_sources.iter().cloned().collect();
    for (node, seen) in &tracked.seen_from {
        if tracked.nodes.contains_key(node)
            && let Some(net) = host_network(&seen.first)
        {
            out.insert(net);
        }
    }
    out.into_iter().collect()
}

/// `a.b.c.d/32` or `x::y/128` for an address; `None` for anything else.
pub fn host_network(addr: &str) -> Option<String> {
    match addr.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(format!("{a}/32")),
        IpAddr::V6(a) => Some(format!("{a}/128")),
    }
}

/// Whether the network `cidr` (`10.0.0.0/8`, `2001:db8::/48`) contains `addr`.
pub fn covers(cidr: &str, addr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len), Ok(addr)) = (
        net.parse::<IpAddr>(),
        len.parse::<u32>(),
        addr.trim().parse::<IpAddr>(),
    ) else {
        return false;
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The SSH port Legion uses for a node: its import's port, else the engine's.
pub fn ssh_port(node: Option<&TrackedNode>, default_port: u16) -> u16 {
    node.and_then(|t| t.login.as_ref())
        .map_or(default_port, |l| l.port)
}

/// A firewall set that would cut Legion off from a node it manages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lockout {
    #[error(
        "the firewall set {firewall} would block SSH from {address}, the address node {node} sees you from; \
         add it with `legion config set management-sources {network}` (listing the sources you keep, comma-separated), then apply"
    )]
    Blocks {
        firewall: String,
        node: String,
        address: String,
        network: String,
    },
    #[error(
        "the firewall set {firewall} has no management source, so it would block SSH from everywhere; \
         Legion records the address a node sees it from on the first deploy, or set one with \
         `legion config set management-sources 203.0.113.4/32`"
    )]
    NoSource { firewall: String },
}

/// Before applying `spec`: every node it applies to must still be reachable from the
/// address it last saw Legion connect from. Nodes not reached yet are not checked.
pub fn lockout(spec: &FirewallSpec, plan: &Plan, tracked: &Tracked) -> Result<(), Lockout> {
    lockout_among(spec, plan, tracked, tracked.nodes.keys())
}

/// [`lockout`] checking only `nodes` (in that order): the planned members of the
/// spec's cluster are the only nodes its servers can belong to, so a caller with a
/// [`PlanIndex`] checks the cluster, not the fleet.
pub fn lockout_among<'a>(
    spec: &FirewallSpec,
    plan: &Plan,
    tracked: &Tracked,
    nodes: impl IntoIterator<Item = &'a String>,
) -> Result<(), Lockout> {
    if spec.management.is_empty() {
        return Err(Lockout::NoSource {
            firewall: spec.name.clone(),
        });
    }
    let on: HashSet<&str> = spec.server_ids.iter().map(String::as_str).collect();
    for node in nodes {
        let Some(t) = tracked.nodes.get(node) else {
            continue;
        };
        let on_set = t
            .server_id
            .as_ref()
            .is_some_and(|id| t.provider == spec.provider && on.contains(id.as_str()));
        if !on_set || !plan.nodes.contains_key(node) {
            continue;
        }
        let Some(seen) = tracked.seen_from.get(node) else {
            continue;
        };
        if !spec.management.iter().any(|net| covers(net, &seen.last)) {
            return Err(Lockout::Blocks {
                firewall: spec.name.clone(),
                node: node.clone(),
                address: seen.last.clone(),
                network: host_network(&seen.last).unwrap_or_else(|| seen.last.clone()),
            });
        }
    }
    Ok(())
}

/// Every cluster a firewall set exists for: planned ones and those with planned nodes.
pub fn planned_clusters(plan: &Plan) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = plan.clusters.keys().cloned().collect();
    out.extend(plan.firewalls.keys().cloned());
    out.extend(plan.nodes.values().map(|n| n.cluster.clone()));
    out
}

/// The cluster's firewall set, one firewall per provider its nodes run on, and what it
/// waits for. `None` when the cluster is not planned. `default_ssh_port` is the port
/// Legion reaches nodes on when their import does not say another.
#[cfg(test)]
pub fn desired_firewalls(
    plan: &Plan,
    tracked: &Tracked,
    cluster: &str,
    default_ssh_port: u16,
) -> Option<(Vec<FirewallSpec>, Vec<String>)> {
    desired_firewalls_in(
        plan,
        &PlanIndex::of(plan),
        tracked,
        cluster,
        default_ssh_port,
    )
}

/// The cluster's firewall set (see [`desired_firewalls`]), with the plan's index built
/// once by the caller: it costs the cluster's size, not the fleet's.
pub fn desired_firewalls_in(
    plan: &Plan,
    index: &PlanIndex,
    tracked: &Tracked,
    cluster: &str,
    default_ssh_port: u16,
) -> Option<(Vec<FirewallSpec>, Vec<String>)> {
    if !index.clusters().contains(cluster) {
        return None;
    }
    let peer_ports = plan
        .clusters
        .get(cluster)
        .map(|c| c.peer_ports.clone())
        .unwrap_or_else(|| vec![4413]);
    let mut waiting = Vec::new();
    let mut sources = BTreeSet::new();
    let mut by_provider: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut ssh_ports = BTreeSet::new();
    let members = index
        .members(cluster)
        .iter()
        .filter_map(|n| Some((n, plan.nodes.get(n)?)));
    for (node, np) in members {
        by_provider.entry(np.provider.clone()).or_default();
        let t = tracked.nodes.get(node);
        ssh_ports.insert(ssh_port(t, default_ssh_port));
        match t.and_then(|t| t.server_id.clone()) {
            Some(id) => {
                by_provider
                    .entry(np.provider.clone())
                    .or_default()
                    .insert(id);
            }
            None => waiting.push(format!("node {node} has no server yet")),
        }
        let mut any = false;
        if let Some(v4) = t.and_then(|t| t.ipv4.as_ref()) {
            sources.insert(format!("{v4}/32"));
            any = true;
        }
        if let Some(v6) = t.and_then(|t| t.ipv6.as_ref()) {
            sources.insert(format!("{v6}/128"));
            any = true;
        }
        if !any {
            waiting.push(format!("node {node} has no address yet"));
        }
    }
    let mut rules: BTreeSet<FirewallRule> = plan
        .firewalls
        .get(cluster)
        .map(|f| f.rules.iter().cloned().collect())
        .unwrap_or_default();
    if !sources.is_empty() {
        for port in peer_ports {
            rules.insert(FirewallRule {
                protocol: Protocol::Tcp,
                port: Some(port.to_string()),
                sources: sources.iter().cloned().collect(),
                description: format!("cluster {cluster} peers"),
            });
        }
    }
    let management = management_sources(plan, tracked);
    if management.is_empty() {
        waiting.push(
            "no management source yet: a node records the address it sees Legion from on its first deploy \
             (or set one with `legion config set management-sources CIDR`)"
                .into(),
        );
    } else {
        for port in ssh_ports {
            rules.insert(FirewallRule {
                protocol: Protocol::Tcp,
                port: Some(port.to_string()),
                sources: management.clone(),
                description: MANAGEMENT_RULE.into(),
            });
        }
    }
    let rules: Vec<FirewallRule> = rules.into_iter().collect();
    waiting.sort();
    waiting.dedup();
    let specs = by_provider
        .into_iter()
        .map(|(provider, ids)| FirewallSpec {
            provider,
            name: format!("legion-{cluster}"),
            rules: rules.clone(),
            server_ids: ids.into_iter().collect(),
            management: management.clone(),
        })
        .collect();
    Some((specs, waiting))
}

/// Firewall changes Legion cannot make itself: for each node of `cluster` on a provider
/// whose firewalls Legion does not manage (`unmanaged(provider)`), one line per rule of the
/// cluster's set, for the operator to carry out on the host.
#[cfg(test)]
pub fn operator_tasks(
    plan: &Plan,
    tracked: &Tracked,
    cluster: &str,
    default_ssh_port: u16,
    unmanaged: impl Fn(&str) -> bool,
) -> Vec<String> {
    let index = PlanIndex::of(plan);
    operator_tasks_in(plan, &index, tracked, cluster, default_ssh_port, unmanaged)
}

/// [`operator_tasks`] with the plan's index built once by the caller.
pub fn operator_tasks_in(
    plan: &Plan,
    index: &PlanIndex,
    tracked: &Tracked,
    cluster: &str,
    default_ssh_port: u16,
    unmanaged: impl Fn(&str) -> bool,
) -> Vec<String> {
    let Some((specs, _)) = desired_firewalls_in(plan, index, tracked, cluster, default_ssh_port)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for spec in specs.iter().filter(|s| unmanaged(&s.provider)) {
        let nodes = index.members(cluster).iter().filter(|n| {
            plan.nodes
                .get(*n)
                .is_some_and(|p| p.provider == spec.provider)
        });
        for node in nodes {
            let Some(addr) = tracked.nodes.get(node).and_then(|t| t.address()) else {
                continue;
            };
            for rule in &spec.rules {
                let what = match &rule.port {
                    Some(p) => format!("{} {p}", rule.protocol),
                    None => rule.protocol.to_string(),
                };
                out.push(format!(
                    "open {what} from {} on {node} ({addr})",
                    rule.sources.join(", ")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::model::*;

    fn state() -> State {
        let mut s = State::new("inst".into());
        s.plan.clusters.insert(
            "prod".into(),
            ClusterPlan {
                dns_zone: Some("example.test".into()),
                peer_ports: vec![4413],
            },
        );
        for n in ["a", "b"] {
            s.plan.nodes.insert(
                n.into(),
                NodePlan {
                    uid: format!("uid-{n}"),
                    cluster: "prod".into(),
                    role: "app".into(),
                    provider: "mock".into(),
                    region: "r".into(),
                    offer: "o".into(),
                    image: "i".into(),
                    boot_mode: Default::default(),
                },
            );
        }
        s.plan.zones.insert(
            "example.test".into(),
            ZonePlan {
                provider: "mock".into(),
                records: vec![RecordPlan {
                    name: "www".into(),
                    rtype: RecordType::A,
                    ttl: 60,
                    value: RecordValue::NodeAddress("a".into()),
                }],
            },
        );
        s
    }

    fn track(s: &mut State, node: &str, ip: Option<&str>) {
        s.tracked.nodes.insert(
            node.into(),
            TrackedNode {
                uid: format!("uid-{node}"),
                provider: "mock".into(),
                server_id: Some(format!("sv-{node}")),
                ipv4: ip.map(String::from),
                ipv6: None,
                region: "r".into(),
                offer: "o".into(),
                image: "i".into(),
                host_key: None,
                configured_membership: None,
                configured_peers: None,
                login: None,
                image_user: None,
                execution: None,
            },
        );
    }

    #[test]
    fn zone_waits_for_endpoints_then_follows_them() {
        let mut s = state();
        let (spec, waiting) = desired_zone(&s.plan, &s.tracked, "example.test").unwrap();
        assert!(spec.rrsets.is_empty());
        assert_eq!(
            waiting,
            vec!["node a has no address yet", "node b has no address yet"]
        );
        track(&mut s, "a", Some("192.0.2.1"));
        let (spec1, waiting) = desired_zone(&s.plan, &s.tracked, "example.test").unwrap();
        assert_eq!(waiting, vec!["node b has no address yet"]);
        let names: Vec<_> = spec1.rrsets.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["a", "www"]);
        // Unchanged state, unchanged signature: the actor no-ops.
        assert_eq!(
            signature(&spec1),
            signature(&desired_zone(&s.plan, &s.tracked, "example.test").unwrap().0)
        );
        track(&mut s, "a", Some("192.0.2.9"));
        let (spec2, _) = desired_zone(&s.plan, &s.tracked, "example.test").unwrap();
        assert_ne!(signature(&spec1), signature(&spec2));
        assert_eq!(spec2.rrsets[1].values, vec!["192.0.2.9"]);
    }

    #[test]
    fn unmanaged_firewalls_become_operator_tasks() {
        let mut s = state();
        track(&mut s, "a", Some("10.0.0.1"));
        track(&mut s, "b", Some("10.0.0.2"));
        seen(&mut s, "a", "198.51.100.7", "198.51.100.7");
        assert!(operator_tasks(&s.plan, &s.tracked, "prod", 22, |_| false).is_empty());
        let tasks = operator_tasks(&s.plan, &s.tracked, "prod", 22, |p| p == "mock");
        // Management access is a task like the others: the operator's own host firewall
        // must keep SSH open from where Legion connects.
        assert_eq!(
            tasks,
            [
                "open tcp 22 from 198.51.100.7/32 on a (10.0.0.1)",
                "open tcp 4413 from 10.0.0.1/32, 10.0.0.2/32 on a (10.0.0.1)",
                "open tcp 22 from 198.51.100.7/32 on b (10.0.0.2)",
                "open tcp 4413 from 10.0.0.1/32, 10.0.0.2/32 on b (10.0.0.2)",
            ]
        );
        // A node without an address has no task yet; nothing is invented.
        for t in s.tracked.nodes.values_mut() {
            t.ipv4 = None;
        }
        assert!(operator_tasks(&s.plan, &s.tracked, "prod", 22, |p| p == "mock").is_empty());
    }

    fn seen(s: &mut State, node: &str, first: &str, last: &str) {
        s.tracked.seen_from.insert(
            node.into(),
            SeenFrom {
                first: first.into(),
                last: last.into(),
            },
        );
    }

    #[test]
    fn firewall_peer_rules_follow_endpoints() {
        let mut s = state();
        let (specs, waiting) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
        assert_eq!(specs.len(), 1);
        assert!(specs[0].rules.is_empty());
        // Two nodes without server and address, and no management source yet.
        assert_eq!(waiting.len(), 5);
        track(&mut s, "a", Some("192.0.2.1"));
        track(&mut s, "b", Some("192.0.2.2"));
        seen(&mut s, "a", "203.0.113.4", "203.0.113.4");
        let (specs, waiting) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
        assert!(waiting.is_empty(), "{waiting:?}");
        assert_eq!(specs[0].server_ids, vec!["sv-a", "sv-b"]);
        let peers = specs[0]
            .rules
            .iter()
            .find(|r| r.port.as_deref() == Some("4413"))
            .unwrap();
        assert_eq!(peers.sources, vec!["192.0.2.1/32", "192.0.2.2/32"]);
        assert!(desired_firewalls(&s.plan, &s.tracked, "other", 22).is_none());
    }

    #[test]
    fn every_firewall_set_keeps_management_access() {
        let mut s = state();
        track(&mut s, "a", Some("192.0.2.1"));
        track(&mut s, "b", Some("192.0.2.2"));
        // Nothing known: no rule set at all, and the reason says how to give one.
        let (specs, waiting) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
        assert!(specs[0].management.is_empty());
        assert!(
            waiting[0].contains("legion config set management-sources"),
            "{waiting:?}"
        );
        // The recorded address plus the configured networks, on the SSH port in use.
        seen(&mut s, "a", "203.0.113.4", "203.0.113.4");
        s.plan.management_sources = vec!["2001:db8::/48".into()];
        let (specs, _) = desired_firewalls(&s.plan, &s.tracked, "prod", 2222).unwrap();
        let mgmt: Vec<_> = specs[0]
            .rules
            .iter()
            .filter(|r| r.description == MANAGEMENT_RULE)
            .collect();
        assert_eq!(mgmt.len(), 1);
        assert_eq!(mgmt[0].port.as_deref(), Some("2222"));
        assert_eq!(mgmt[0].protocol, Protocol::Tcp);
        assert_eq!(mgmt[0].sources, vec!["2001:db8::/48", "203.0.113.4/32"]);
        // An imported node's own port gets its own rule.
        s.tracked.nodes.get_mut("b").unwrap().login = Some(Login {
            user: "ops".into(),
            port: 2200,
            sudo: true,
        });
        let (specs, _) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
        let ports: Vec<_> = specs[0]
            .rules
            .iter()
            .filter(|r| r.description == MANAGEMENT_RULE)
            .filter_map(|r| r.port.clone())
            .collect();
        assert_eq!(ports, vec!["22", "2200"]);
        // A node no longer tracked takes its recorded address with it.
        seen(&mut s, "gone", "198.51.100.99", "198.51.100.99");
        assert!(!management_sources(&s.plan, &s.tracked).contains(&"198.51.100.99/32".to_string()));
    }

    #[test]
    fn a_set_that_blocks_where_legion_connects_from_is_refused() {
        let mut s = state();
        track(&mut s, "a", Some("192.0.2.1"));
        track(&mut s, "b", Some("192.0.2.2"));
        seen(&mut s, "a", "203.0.113.4", "203.0.113.4");
        let (specs, _) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
        assert_eq!(lockout(&specs[0], &s.plan, &s.tracked), Ok(()));
        // The jump host moved: node b now sees Legion from another address.
        seen(&mut s, "b", "203.0.113.4", "198.51.100.7");
        let (specs, _) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
        let err = lockout(&specs[0], &s.plan, &s.tracked).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("would block SSH from 198.51.100.7"), "{text}");
        assert!(text.contains("node b sees you from"), "{text}");
        assert!(
            text.contains("legion config set management-sources 198.51.100.7/32"),
            "{text}"
        );
        // A configured network that covers it lifts the refusal.
        s.plan.management_sources = vec!["198.51.100.0/24".into()];
        let (specs, _) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
        assert_eq!(lockout(&specs[0], &s.plan, &s.tracked), Ok(()));
        // A set with no source at all is never applied.
        let mut bare = specs[0].clone();
        bare.management.clear();
        assert!(matches!(
            lockout(&bare, &s.plan, &s.tracked),
            Err(Lockout::NoSource { .. })
        ));
    }

    #[test]
    fn networks_cover_addresses() {
        assert!(covers("10.0.0.0/8", "10.200.3.4"));
        assert!(!covers("10.0.0.0/8", "11.0.0.1"));
        assert!(covers("0.0.0.0/0", "192.0.2.1"));
        assert!(covers("2001:db8::/48", "2001:db8:0:1::5"));
        assert!(!covers("2001:db8::/48", "2001:db9::1"));
        assert!(!covers("10.0.0.0/8", "2001:db8::1"));
        assert!(covers("127.0.0.1/32", "127.0.0.1"));
        assert!(!covers("not-a-net", "127.0.0.1"));
        assert_eq!(host_network("::1").as_deref(), Some("::1/128"));
        assert_eq!(host_network("nope"), None);
    }
}
