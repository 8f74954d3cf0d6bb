//! What a journal record says: the resources one change touched, each with its value
//! after the change (`None`: removed). Replaying a record puts those values back, so a
//! record does not depend on the checks that accepted the change (an edit is validated
//! once, when it is made, never again at replay).
//!
//! [`keys_of`] names what a plan edit touches. It must name everything `apply_edit`
//! changes: the tests below replay every kind of edit and compare.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{
    ClusterPlan, ClusterTracked, DomainPlan, FirewallPlan, NodePlan, SeenFrom, ServerReading,
    State, TrackedNode, ZonePlan,
};
use crate::engine::plan::PlanEdit;
use crate::providers::{ObservedFirewall, ObservedZone};

/// A resource of the state that a change can touch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    PlanNode(String),
    PlanCluster(String),
    PlanZone(String),
    PlanFirewall(String),
    PlanDomain(String),
    ManagementSources,
    TrackedNode(String),
    /// A cluster's membership as its nodes were last configured (`tracked.clusters`).
    TrackedCluster(String),
    /// Legion's SSH key id at a provider (`tracked.ssh_keys`).
    SshKey(String),
    /// The last reading of a node's server (`observed.servers`).
    ObservedServer(String),
    /// A firewall as last read (`observed.firewalls`, by name).
    ObservedFirewall(String),
    /// A zone as last read (`observed.zones`).
    ObservedZone(String),
    NextExecutionId,
    /// The address a node sees Legion connect from (`tracked.seen_from`).
    SeenFrom(String),
}

/// One resource's value after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum Change {
    PlanNode {
        name: String,
        value: Option<NodePlan>,
    },
    PlanCluster {
        name: String,
        value: Option<ClusterPlan>,
    },
    PlanZone {
        name: String,
        value: Option<ZonePlan>,
    },
    PlanFirewall {
        name: String,
        value: Option<FirewallPlan>,
    },
    PlanDomain {
        name: String,
        value: Option<DomainPlan>,
    },
    ManagementSources {
        value: Vec<String>,
    },
    TrackedNode {
        name: String,
        value: Option<Box<TrackedNode>>,
    },
    TrackedCluster {
        name: String,
        value: Option<ClusterTracked>,
    },
    SshKey {
        provider: String,
        value: Option<String>,
    },
    ObservedServer {
        name: String,
        value: Option<ServerReading>,
    },
    ObservedFirewall {
        name: String,
        value: Option<ObservedFirewall>,
    },
    ObservedZone {
        name: String,
        value: Option<ObservedZone>,
    },
    NextExecutionId {
        value: u64,
    },
    SeenFrom {
        name: String,
        value: Option<SeenFrom>,
    },
}

impl Key {
    /// The resource's current value in `s`.
    pub fn capture(&self, s: &State) -> Change {
        match self {
            Key::PlanNode(n) => Change::PlanNode {
                name: n.clone(),
                value: s.plan.nodes.get(n).cloned(),
            },
            Key::PlanCluster(n) => Change::PlanCluster {
                name: n.clone(),
                value: s.plan.clusters.get(n).cloned(),
            },
            Key::PlanZone(n) => Change::PlanZone {
                name: n.clone(),
                value: s.plan.zones.get(n).cloned(),
            },
            Key::PlanFirewall(n) => Change::PlanFirewall {
                name: n.clone(),
                value: s.plan.firewalls.get(n).cloned(),
            },
            Key::PlanDomain(n) => Change::PlanDomain {
                name: n.clone(),
                value: s.plan.domains.get(n).cloned(),
            },
            Key::ManagementSources => Change::ManagementSources {
                value: s.plan.management_sources.clone(),
            },
            Key::TrackedNode(n) => Change::TrackedNode {
                name: n.clone(),
                value: s.tracked.nodes.get(n).cloned().map(Box::new),
            },
            Key::TrackedCluster(n) => Change::TrackedCluster {
                name: n.clone(),
                value: s.tracked.clusters.get(n).cloned(),
            },
            Key::SshKey(p) => Change::SshKey {
                provider: p.clone(),
                value: s.tracked.ssh_keys.get(p).cloned(),
            },
            Key::ObservedServer(n) => Change::ObservedServer {
                name: n.clone(),
                value: s.observed.servers.get(n).cloned(),
            },
            Key::ObservedFirewall(n) => Change::ObservedFirewall {
                name: n.clone(),
                value: s.observed.firewalls.get(n).cloned(),
            },
            Key::ObservedZone(n) => Change::ObservedZone {
                name: n.clone(),
                value: s.observed.zones.get(n).cloned(),
            },
            Key::NextExecutionId => Change::NextExecutionId {
                value: s.next_execution_id,
            },
            Key::SeenFrom(n) => Change::SeenFrom {
                name: n.clone(),
                value: s.tracked.seen_from.get(n).cloned(),
            },
        }
    }
}

fn put<V>(map: &mut BTreeMap<String, V>, name: String, value: Option<V>) {
    match value {
        Some(v) => {
            map.insert(name, v);
        }
        None => {
            map.remove(&name);
        }
    }
}

impl Change {
    /// Put the recorded value back.
    pub fn apply(self, s: &mut State) {
        match self {
            Change::PlanNode { name, value } => put(&mut s.plan.nodes, name, value),
            Change::PlanCluster { name, value } => put(&mut s.plan.clusters, name, value),
            Change::PlanZone { name, value } => put(&mut s.plan.zones, name, value),
            Change::PlanFirewall { name, value } => put(&mut s.plan.firewalls, name, value),
            Change::PlanDomain { name, value } => put(&mut s.plan.domains, name, value),
            Change::ManagementSources { value } => s.plan.management_sources = value,
            Change::TrackedNode { name, value } => {
                put(&mut s.tracked.nodes, name, value.map(|b| *b))
            }
            Change::TrackedCluster { name, value } => put(&mut s.tracked.clusters, name, value),
            Change::SshKey { provider, value } => put(&mut s.tracked.ssh_keys, provider, value),
            Change::ObservedServer { name, value } => put(&mut s.observed.servers, name, value),
            Change::ObservedFirewall { name, value } => put(&mut s.observed.firewalls, name, value),
            Change::ObservedZone { name, value } => put(&mut s.observed.zones, name, value),
            Change::NextExecutionId { value } => s.next_execution_id = value,
            Change::SeenFrom { name, value } => put(&mut s.tracked.seen_from, name, value),
        }
    }
}

/// What a plan edit touches.
pub fn keys_of(edit: &PlanEdit) -> Vec<Key> {
    match edit {
        PlanEdit::UpsertNode { name, node } => vec![
            Key::PlanNode(name.clone()),
            Key::PlanCluster(node.cluster.clone()),
        ],
        PlanEdit::RemoveNode { name } => vec![Key::PlanNode(name.clone())],
        PlanEdit::UpsertCluster { name, .. } => vec![Key::PlanCluster(name.clone())],
        PlanEdit::UpsertZone { name, .. } | PlanEdit::RemoveZone { name } => {
            vec![Key::PlanZone(name.clone())]
        }
        PlanEdit::UpsertRecord { zone, .. } | PlanEdit::RemoveRecord { zone, .. } => {
            vec![Key::PlanZone(zone.clone())]
        }
        PlanEdit::AddFirewallRule { cluster, .. }
        | PlanEdit::RemoveFirewallRule { cluster, .. } => {
            vec![Key::PlanFirewall(cluster.clone())]
        }
        PlanEdit::UpsertDomain { name, .. } | PlanEdit::RemoveDomain { name } => {
            vec![Key::PlanDomain(name.clone())]
        }
        PlanEdit::SetManagementSources { .. } => vec![Key::ManagementSources],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::apply_edit;
    use crate::engine::state::model::{RecordPlan, RecordValue};
    use crate::providers::{BootMode, FirewallRule, Protocol, RecordType};

    fn node(cluster: &str) -> NodePlan {
        NodePlan {
            uid: "u1".into(),
            cluster: cluster.into(),
            role: "app".into(),
            provider: "mock".into(),
            region: "r".into(),
            offer: "o".into(),
            image: "i".into(),
            boot_mode: BootMode::Bios,
        }
    }

    fn rule() -> FirewallRule {
        FirewallRule {
            protocol: Protocol::Tcp,
            port: Some("443".into()),
            sources: vec!["0.0.0.0/0".into()],
            description: "web".into(),
        }
    }

    fn edits() -> Vec<PlanEdit> {
        vec![
            PlanEdit::UpsertNode {
                name: "web-1".into(),
                node: node("prod"),
            },
            PlanEdit::UpsertNode {
                name: "web-2".into(),
                node: node("edge"),
            },
            PlanEdit::UpsertCluster {
                name: "prod".into(),
                cluster: ClusterPlan {
                    dns_zone: Some("example.test".into()),
                    peer_ports: vec![1, 2],
                },
            },
            PlanEdit::UpsertZone {
                name: "example.test".into(),
                provider: "mock".into(),
            },
            PlanEdit::UpsertRecord {
                zone: "example.test".into(),
                record: RecordPlan {
                    name: "www".into(),
                    rtype: RecordType::A,
                    ttl: 300,
                    value: RecordValue::Literal("192.0.2.1".into()),
                },
            },
            PlanEdit::AddFirewallRule {
                cluster: "prod".into(),
                rule: rule(),
            },
            PlanEdit::UpsertDomain {
                name: "example.test".into(),
                domain: DomainPlan {
                    registrar: "mock".into(),
                    zone: "example.test".into(),
                },
            },
            PlanEdit::SetManagementSources {
                sources: vec!["203.0.113.0/24".into()],
            },
            PlanEdit::RemoveRecord {
                zone: "example.test".into(),
                name: "www".into(),
                rtype: RecordType::A,
            },
            PlanEdit::RemoveFirewallRule {
                cluster: "prod".into(),
                rule: rule(),
            },
            PlanEdit::RemoveDomain {
                name: "example.test".into(),
            },
            PlanEdit::RemoveZone {
                name: "example.test".into(),
            },
            PlanEdit::RemoveNode {
                name: "web-1".into(),
            },
        ]
    }

    /// Every kind of edit, applied to one state and replayed from its captured changes
    /// (through JSON, as the journal stores them) onto another: the plans stay equal.
    #[test]
    fn replaying_captured_changes_equals_applying_the_edits() {
        let mut live = State::new("i".into());
        let mut replayed = State::new("i".into());
        for edit in edits() {
            let keys = keys_of(&edit);
            let what = format!("{edit:?}");
            apply_edit(&mut live, edit).unwrap_or_else(|e| panic!("{what}: {e}"));
            let changes: Vec<Change> = keys.iter().map(|k| k.capture(&live)).collect();
            let bytes = serde_json::to_vec(&changes).unwrap_or_else(|e| panic!("{e}"));
            let back: Vec<Change> =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
            for c in back {
                c.apply(&mut replayed);
            }
            assert_eq!(live.plan, replayed.plan, "after {what}");
        }
    }

    /// What actors and observation record by key (an execution, a cluster's membership,
    /// a key id, readings, the execution counter), captured and replayed through JSON:
    /// the replayed state equals the live one, removals included.
    #[test]
    fn replaying_actor_changes_equals_the_live_state() {
        use crate::engine::state::model::{ClusterTracked, ServerReading, TrackedNode};
        let mut live = State::new("i".into());
        let mut replayed = State::new("i".into());
        let tracked = TrackedNode {
            uid: "u1".into(),
            provider: "mock".into(),
            server_id: Some("sv-1".into()),
            ipv4: Some("192.0.2.1".into()),
            ipv6: None,
            region: "r".into(),
            offer: "o".into(),
            image: "i".into(),
            host_key: None,
            configured_membership: Some("0123456789abcdef".into()),
            configured_peers: None,
            login: None,
            image_user: None,
            execution: None,
        };
        type Step = (Vec<Key>, Box<dyn Fn(&mut State)>);
        let steps: Vec<Step> = vec![
            (
                vec![Key::TrackedNode("web-1".into()), Key::NextExecutionId],
                Box::new(move |s| {
                    s.tracked.nodes.insert("web-1".into(), tracked.clone());
                    s.next_execution_id += 1;
                }),
            ),
            (
                vec![Key::TrackedCluster("prod".into())],
                Box::new(|s| {
                    let mut members = BTreeMap::new();
                    members.insert("web-1".to_string(), "192.0.2.1".to_string());
                    s.tracked
                        .clusters
                        .insert("prod".into(), ClusterTracked::new(members));
                }),
            ),
            (
                vec![Key::SeenFrom("web-1".into())],
                Box::new(|s| {
                    s.tracked.seen_from.insert(
                        "web-1".into(),
                        SeenFrom {
                            first: "192.0.2.9".into(),
                            last: "192.0.2.9".into(),
                        },
                    );
                }),
            ),
            (
                vec![Key::SshKey("mock".into())],
                Box::new(|s| {
                    s.tracked.ssh_keys.insert("mock".into(), "key-1".into());
                }),
            ),
            (
                vec![Key::ObservedServer("web-1".into())],
                Box::new(|s| {
                    s.observed.servers.insert(
                        "web-1".into(),
                        ServerReading {
                            at_ms: 7,
                            server: None,
                        },
                    );
                }),
            ),
            (
                vec![Key::ObservedFirewall("legion-prod".into())],
                Box::new(|s| {
                    s.observed.firewalls.insert(
                        "legion-prod".into(),
                        ObservedFirewall {
                            id: "fw-1".into(),
                            name: "legion-prod".into(),
                            rules: vec![rule()],
                            applied_to: vec!["sv-1".into()],
                            labels: BTreeMap::new(),
                        },
                    );
                }),
            ),
            (
                vec![Key::ObservedZone("example.test".into())],
                Box::new(|s| {
                    s.observed.zones.insert(
                        "example.test".into(),
                        ObservedZone {
                            id: "zn-1".into(),
                            name: "example.test".into(),
                            nameservers: vec!["ns1.example.test".into()],
                            rrsets: Vec::new(),
                        },
                    );
                }),
            ),
            (
                vec![
                    Key::TrackedNode("web-1".into()),
                    Key::ObservedServer("web-1".into()),
                    Key::SshKey("mock".into()),
                ],
                Box::new(|s| {
                    s.tracked.nodes.remove("web-1");
                    s.observed.servers.remove("web-1");
                    s.tracked.ssh_keys.remove("mock");
                }),
            ),
        ];
        for (i, (keys, change)) in steps.iter().enumerate() {
            change(&mut live);
            let changes: Vec<Change> = keys.iter().map(|k| k.capture(&live)).collect();
            let bytes = serde_json::to_vec(&changes).unwrap_or_else(|e| panic!("{e}"));
            let back: Vec<Change> =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
            for c in back {
                c.apply(&mut replayed);
            }
            let json = |s: &State| serde_json::to_value(s).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(json(&live), json(&replayed), "after step {i}");
        }
    }

    /// The cell applies an edit in place, without a copy to roll back to: an edit that is
    /// refused must leave the state as it was.
    #[test]
    fn a_refused_edit_changes_nothing() {
        let mut s = State::new("i".into());
        for edit in edits() {
            let _ = apply_edit(&mut s, edit);
        }
        let refused = vec![
            PlanEdit::UpsertNode {
                name: "bad name!".into(),
                node: node("prod"),
            },
            PlanEdit::UpsertNode {
                name: "ok".into(),
                node: node("bad cluster!"),
            },
            PlanEdit::RemoveNode {
                name: "absent".into(),
            },
            PlanEdit::RemoveZone {
                name: "absent.test".into(),
            },
            PlanEdit::RemoveRecord {
                zone: "absent.test".into(),
                name: "www".into(),
                rtype: RecordType::A,
            },
            PlanEdit::RemoveFirewallRule {
                cluster: "prod".into(),
                rule: rule(),
            },
            PlanEdit::UpsertDomain {
                name: "d.test".into(),
                domain: DomainPlan {
                    registrar: "mock".into(),
                    zone: "absent.test".into(),
                },
            },
            PlanEdit::SetManagementSources {
                sources: vec!["not a network".into()],
            },
        ];
        for edit in refused {
            let before = s.plan.clone();
            let what = format!("{edit:?}");
            assert!(apply_edit(&mut s, edit).is_err(), "{what} was accepted");
            assert_eq!(s.plan, before, "{what} changed the plan");
        }
    }
}
