//! What a journal record says: the resources one change touched, each with its value
//! after the change (`None`: removed). Replaying a record puts those values back, so a
//! record does not depend on the checks that accepted the change (an edit is validated
//! once, when it is made, never again at replay).
//!
//! [`keys_of`] names what a plan edit touches. It must name everything `apply_edit`
//! changes: the tests below replay every kind of edit and compare.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{ClusterPlan, DomainPlan, FirewallPlan, NodePlan, State, TrackedNode, ZonePlan};
use crate::engine::plan::PlanEdit;

/// A resource of the state that a change can touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    PlanNode(String),
    PlanCluster(String),
    PlanZone(String),
    PlanFirewall(String),
    PlanDomain(String),
    ManagementSources,
    TrackedNode(String),
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
