//! Plan edits: pure changes to the operator's plan, validated, never touching a provider.

use serde::{Deserialize, Serialize};

use super::state::model::{
    ClusterPlan, DomainPlan, NodePlan, Plan, RecordPlan, State, Tracked, ZonePlan,
};
use super::validate::{EditError, validate_name};
use crate::providers::{BootMode, FirewallRule, RecordType};

/// A node as the operator asks for it; empty choices take the provider's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRequest {
    pub name: String,
    pub provider: String,
    pub cluster: Option<String>,
    pub role: Option<String>,
    pub region: Option<String>,
    pub offer: Option<String>,
    pub image: Option<String>,
    pub boot_mode: Option<BootMode>,
    /// Whether the name must be new, must exist, or may be either.
    #[serde(default)]
    pub intent: NodeIntent,
}

/// What a [`NodeRequest`] means for a name the plan may already have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeIntent {
    /// Either; empty choices take the catalog's defaults (the call's first meaning, kept
    /// for callers that send whole nodes).
    #[default]
    Upsert,
    /// A new node (`nodes add`, the dashboard's `n`): an existing name is refused, so a
    /// running node is never rewritten by accident.
    Add,
    /// Change a planned node (`nodes set`, the dashboard's `e`): empty choices keep the
    /// node's current values; the provider may be left empty too.
    Set,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "edit", rename_all = "snake_case")]
pub enum PlanEdit {
    /// Resolved by the engine: defaults filled in from the provider's policy.
    UpsertNode {
        name: String,
        node: NodePlan,
    },
    RemoveNode {
        name: String,
    },
    UpsertCluster {
        name: String,
        cluster: ClusterPlan,
    },
    UpsertZone {
        name: String,
        provider: String,
    },
    RemoveZone {
        name: String,
    },
    UpsertRecord {
        zone: String,
        record: RecordPlan,
    },
    RemoveRecord {
        zone: String,
        name: String,
        rtype: RecordType,
    },
    AddFirewallRule {
        cluster: String,
        rule: FirewallRule,
    },
    RemoveFirewallRule {
        cluster: String,
        rule: FirewallRule,
    },
    UpsertDomain {
        name: String,
        domain: DomainPlan,
    },
    RemoveDomain {
        name: String,
    },
    /// Replace the configured management sources (CIDR networks allowed to reach every
    /// node's SSH port through managed firewalls); empty keeps only the recorded ones.
    SetManagementSources {
        sources: Vec<String>,
    },
}

fn validate_zone(name: &str) -> Result<(), EditError> {
    let ok = name.contains('.')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(EditError::Invalid(format!(
            "invalid zone name {name:?}: expected a domain such as example.com"
        )))
    }
}

/// A record's TTL and value, whatever face sent it: a TTL of at least 30 s (as the CLI
/// and the form read it), a literal `A`/`AAAA` value that is an IPv4/IPv6 address, any
/// other literal non-empty and without control characters, a node reference that is a
/// node name.
fn record_value(record: &RecordPlan) -> Result<(), EditError> {
    use super::state::model::RecordValue;
    super::parse::check_ttl(record.ttl).map_err(|error| EditError::Field {
        field: "ttl",
        error,
    })?;
    match &record.value {
        RecordValue::NodeAddress(node) => validate_name("node", node),
        RecordValue::Literal(v) => {
            let ok = match record.rtype {
                RecordType::A => v.parse::<std::net::Ipv4Addr>().is_ok(),
                RecordType::AAAA => v.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => !v.is_empty() && !v.chars().any(char::is_control),
            };
            if ok {
                Ok(())
            } else {
                Err(EditError::Invalid(format!(
                    "{} record {:?}: {v:?} is not {}",
                    record.rtype,
                    record.name,
                    match record.rtype {
                        RecordType::A =>
                            "an IPv4 address (192.0.2.1); `@NODE` names a node's address",
                        RecordType::AAAA =>
                            "an IPv6 address (2001:db8::1); `@NODE` names a node's address",
                        _ => "a value without control characters",
                    }
                )))
            }
        }
    }
}

/// Apply one edit to the plan. Errors leave the state unchanged.
pub fn apply_edit(state: &mut State, edit: PlanEdit) -> Result<(), EditError> {
    edit_plan(&mut state.plan, &state.tracked, edit)
}

/// Apply one edit to `plan` (`tracked`: what is deployed, for the edits it forbids).
/// Errors leave the plan unchanged. A whole-document import runs its entries through
/// this too (`plan_file::build`), so every face gets the same checks and messages.
pub fn edit_plan(plan: &mut Plan, tracked: &Tracked, edit: PlanEdit) -> Result<(), EditError> {
    match edit {
        PlanEdit::UpsertNode { name, node } => {
            validate_name("node", &name)?;
            validate_name("cluster", &node.cluster)?;
            validate_name("role", &node.role)?;
            if let Some(existing) = plan.nodes.get(&name)
                && existing.provider != node.provider
                && tracked.nodes.contains_key(&name)
            {
                return Err(EditError::Conflict(format!(
                    "{name} already runs on {}; remove it and add a new node to move providers",
                    existing.provider
                )));
            }
            let uid = plan.nodes.get(&name).map(|n| n.uid.clone());
            let node = NodePlan {
                uid: uid.unwrap_or(node.uid),
                ..node
            };
            plan.clusters.entry(node.cluster.clone()).or_default();
            plan.nodes.insert(name, node);
        }
        PlanEdit::RemoveNode { name } => {
            if plan.nodes.remove(&name).is_none() {
                return Err(EditError::NotFound(format!("no node {name:?} in the plan")));
            }
        }
        PlanEdit::UpsertCluster { name, cluster } => {
            validate_name("cluster", &name)?;
            if let Some(z) = &cluster.dns_zone {
                validate_zone(z)?;
            }
            plan.clusters.insert(name, cluster);
        }
        PlanEdit::UpsertZone { name, provider } => {
            validate_zone(&name)?;
            let records = plan
                .zones
                .get(&name)
                .map(|z| z.records.clone())
                .unwrap_or_default();
            plan.zones.insert(name, ZonePlan { provider, records });
        }
        PlanEdit::RemoveZone { name } => {
            if plan.zones.remove(&name).is_none() {
                return Err(EditError::NotFound(format!("no zone {name:?} in the plan")));
            }
        }
        PlanEdit::UpsertRecord { zone, record } => {
            let z = plan.zones.get_mut(&zone).ok_or_else(|| {
                EditError::NotFound(format!("no zone {zone:?} in the plan; add the zone first"))
            })?;
            if record.name != "@" {
                validate_name("record", &record.name)?;
            }
            record_value(&record)?;
            z.records.retain(|r| {
                !(r.name == record.name && r.rtype == record.rtype && r.value == record.value)
            });
            z.records.push(record);
            z.records.sort();
        }
        PlanEdit::RemoveRecord { zone, name, rtype } => {
            let z = plan
                .zones
                .get_mut(&zone)
                .ok_or_else(|| EditError::NotFound(format!("no zone {zone:?} in the plan")))?;
            let before = z.records.len();
            z.records.retain(|r| !(r.name == name && r.rtype == rtype));
            if z.records.len() == before {
                return Err(EditError::NotFound(format!(
                    "no {rtype} record {name:?} in zone {zone}"
                )));
            }
        }
        PlanEdit::AddFirewallRule { cluster, rule } => {
            validate_name("cluster", &cluster)?;
            super::validate::firewall_rule(&rule)?;
            super::validate::rule_cluster(plan, &cluster)?;
            let f = plan.firewalls.entry(cluster).or_default();
            if !f.rules.contains(&rule) {
                f.rules.push(rule);
            }
        }
        PlanEdit::RemoveFirewallRule { cluster, rule } => {
            let f = plan.firewalls.get_mut(&cluster).ok_or_else(|| {
                EditError::NotFound(format!("cluster {cluster:?} has no firewall rules"))
            })?;
            let before = f.rules.len();
            f.rules.retain(|r| r != &rule);
            if f.rules.len() == before {
                return Err(EditError::NotFound(format!(
                    "cluster {cluster} has no rule {rule}"
                )));
            }
        }
        PlanEdit::UpsertDomain { name, domain } => {
            validate_zone(&name)?;
            if !plan.zones.contains_key(&domain.zone) {
                return Err(EditError::NotFound(format!(
                    "no zone {:?} in the plan to delegate to",
                    domain.zone
                )));
            }
            plan.domains.insert(name, domain);
        }
        PlanEdit::RemoveDomain { name } => {
            if plan.domains.remove(&name).is_none() {
                return Err(EditError::NotFound(format!(
                    "no domain {name:?} in the plan"
                )));
            }
        }
        PlanEdit::SetManagementSources { sources } => {
            if let Some(bad) = sources.iter().find(|s| !super::parse::is_cidr(s)) {
                return Err(EditError::Invalid(format!(
                    "management source {bad:?} is not a network such as 203.0.113.4/32 or 2001:db8::/48"
                )));
            }
            let mut sources = sources;
            sources.sort();
            sources.dedup();
            plan.management_sources = sources;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::model::RecordValue;

    fn node(uid: &str) -> NodePlan {
        NodePlan {
            uid: uid.into(),
            cluster: "prod".into(),
            role: "app".into(),
            provider: "mock".into(),
            region: "r".into(),
            offer: "o".into(),
            image: "i".into(),
            boot_mode: BootMode::Bios,
        }
    }

    #[test]
    fn upsert_keeps_identity_and_validates() {
        let mut s = State::new("i".into());
        apply_edit(
            &mut s,
            PlanEdit::UpsertNode {
                name: "web-1".into(),
                node: node("u1"),
            },
        )
        .unwrap();
        apply_edit(
            &mut s,
            PlanEdit::UpsertNode {
                name: "web-1".into(),
                node: node("u2"),
            },
        )
        .unwrap();
        assert_eq!(s.plan.nodes["web-1"].uid, "u1");
        assert!(s.plan.clusters.contains_key("prod"));
        let e = apply_edit(
            &mut s,
            PlanEdit::UpsertNode {
                name: "Web_1".into(),
                node: node("u"),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid node name"), "{e}");
        let e = apply_edit(
            &mut s,
            PlanEdit::RemoveNode {
                name: "nope".into(),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("no node"), "{e}");
    }

    #[test]
    fn records_need_their_zone() {
        let mut s = State::new("i".into());
        let record = RecordPlan {
            name: "www".into(),
            rtype: RecordType::A,
            ttl: 60,
            value: RecordValue::Literal("192.0.2.1".into()),
        };
        let e = apply_edit(
            &mut s,
            PlanEdit::UpsertRecord {
                zone: "example.test".into(),
                record: record.clone(),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("add the zone first"), "{e}");
        apply_edit(
            &mut s,
            PlanEdit::UpsertZone {
                name: "example.test".into(),
                provider: "mock".into(),
            },
        )
        .unwrap();
        apply_edit(
            &mut s,
            PlanEdit::UpsertRecord {
                zone: "example.test".into(),
                record: record.clone(),
            },
        )
        .unwrap();
        apply_edit(
            &mut s,
            PlanEdit::UpsertRecord {
                zone: "example.test".into(),
                record,
            },
        )
        .unwrap();
        assert_eq!(s.plan.zones["example.test"].records.len(), 1);
        for (rtype, ttl, value, why) in [
            (RecordType::A, 300, "not-an-ip", "is not an IPv4 address"),
            (RecordType::AAAA, 300, "192.0.2.1", "is not an IPv6 address"),
            (RecordType::TXT, 300, "", "without control characters"),
            (
                RecordType::A,
                5,
                "192.0.2.1",
                "ttl: a number of seconds, at least 30",
            ),
        ] {
            let e = apply_edit(
                &mut s,
                PlanEdit::UpsertRecord {
                    zone: "example.test".into(),
                    record: RecordPlan {
                        name: "bad".into(),
                        rtype,
                        ttl,
                        value: RecordValue::Literal(value.into()),
                    },
                },
            )
            .unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        assert_eq!(s.plan.zones["example.test"].records.len(), 1);
        assert!(
            apply_edit(
                &mut s,
                PlanEdit::UpsertZone {
                    name: "nodot".into(),
                    provider: "mock".into()
                }
            )
            .is_err()
        );
    }
}
