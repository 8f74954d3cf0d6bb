//! Derived resources: DNS records for node endpoints and the cluster firewall sets.
//!
//! Pure functions of the state. The zone and firewall actors call them on every state
//! change and compare a signature of the result with what they last applied, so an
//! unchanged derivation is a no-op and a missing endpoint becomes a waiting reason.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::state::model::{Plan, RecordValue, Tracked};
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

/// The zone's desired RRsets, and what it waits for. `None` when the zone is not planned.
pub fn desired_zone(plan: &Plan, tracked: &Tracked, zone: &str) -> Option<(ZoneSpec, Vec<String>)> {
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
        for (node, np) in &all.nodes {
            if &np.cluster != cluster_name {
                continue;
            }
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
}

/// Every cluster a firewall set exists for: planned ones and those with planned nodes.
pub fn planned_clusters(plan: &Plan) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = plan.clusters.keys().cloned().collect();
    out.extend(plan.firewalls.keys().cloned());
    out.extend(plan.nodes.values().map(|n| n.cluster.clone()));
    out
}

/// The cluster's firewall set, one firewall per provider its nodes run on, and what it
/// waits for. `None` when the cluster is not planned.
pub fn desired_firewalls(
    plan: &Plan,
    tracked: &Tracked,
    cluster: &str,
) -> Option<(Vec<FirewallSpec>, Vec<String>)> {
    if !planned_clusters(plan).contains(cluster) {
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
    for (node, np) in plan.nodes.iter().filter(|(_, n)| n.cluster == cluster) {
        by_provider.entry(np.provider.clone()).or_default();
        let t = tracked.nodes.get(node);
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
        })
        .collect();
    Some((specs, waiting))
}

/// Firewall changes Legion cannot make itself: for each node of `cluster` on a provider
/// whose firewalls Legion does not manage (`unmanaged(provider)`), one line per rule of the
/// cluster's set, for the operator to carry out on the host.
pub fn operator_tasks(
    plan: &Plan,
    tracked: &Tracked,
    cluster: &str,
    unmanaged: impl Fn(&str) -> bool,
) -> Vec<String> {
    let Some((specs, _)) = desired_firewalls(plan, tracked, cluster) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for spec in specs.iter().filter(|s| unmanaged(&s.provider)) {
        let nodes = plan
            .nodes
            .iter()
            .filter(|(_, n)| n.cluster == cluster && n.provider == spec.provider);
        for (node, _) in nodes {
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
        assert!(operator_tasks(&s.plan, &s.tracked, "prod", |_| false).is_empty());
        let tasks = operator_tasks(&s.plan, &s.tracked, "prod", |p| p == "mock");
        assert_eq!(
            tasks,
            [
                "open tcp 4413 from 10.0.0.1/32, 10.0.0.2/32 on a (10.0.0.1)",
                "open tcp 4413 from 10.0.0.1/32, 10.0.0.2/32 on b (10.0.0.2)",
            ]
        );
        // A node without an address has no task yet; nothing is invented.
        for t in s.tracked.nodes.values_mut() {
            t.ipv4 = None;
        }
        assert!(operator_tasks(&s.plan, &s.tracked, "prod", |p| p == "mock").is_empty());
    }

    #[test]
    fn firewall_peer_rules_follow_endpoints() {
        let mut s = state();
        let (specs, waiting) = desired_firewalls(&s.plan, &s.tracked, "prod").unwrap();
        assert_eq!(specs.len(), 1);
        assert!(specs[0].rules.is_empty());
        assert_eq!(waiting.len(), 4);
        track(&mut s, "a", Some("192.0.2.1"));
        track(&mut s, "b", Some("192.0.2.2"));
        let (specs, waiting) = desired_firewalls(&s.plan, &s.tracked, "prod").unwrap();
        assert!(waiting.is_empty());
        assert_eq!(specs[0].server_ids, vec!["sv-a", "sv-b"]);
        assert_eq!(
            specs[0].rules[0].sources,
            vec!["192.0.2.1/32", "192.0.2.2/32"]
        );
        assert!(desired_firewalls(&s.plan, &s.tracked, "other").is_none());
    }
}
