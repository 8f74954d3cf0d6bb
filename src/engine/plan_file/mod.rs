//! The plan as one document (`legion plan export` / `legion plan import FILE`): every
//! value of the plan an operator sets (nodes, clusters, DNS zones and records, firewall
//! rules, domains, management sources), versioned, in JSON or TOML.
//!
//! This module owns the document's shape ([`PlanDocument`]), the export of a plan into it
//! ([`PlanDocument::from_plan`]) and the pure half of an import: [`build`] turns a
//! document into the plan it asks for by running the same plan edits, with the same
//! checks (`plan::edit_plan`, `validate`), as every other face, and collects every
//! refusal with where in the document it belongs ([`Problem::path`]) instead of stopping
//! at the first. It never reads a file, a provider or the state: the engine's import
//! (`edits.rs`) gathers the catalogs and roles first, and [`text`] maps paths back to
//! lines of the file the operator wrote.
//!
//! What the document leaves out on purpose: node uids (identity Legion gives a node;
//! a node keeps its uid across an import, a new one gets a fresh uid), credentials, and
//! everything tracked or observed.

mod import;
pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::EngineError;
use super::plan::{PlanEdit, edit_plan};
use super::state::change::Key;
use super::state::model::{
    ClusterPlan, DomainPlan, NodePlan, Plan, RecordPlan, RecordValue, Tracked,
};
use crate::providers::{BootMode, FirewallRule, Protocol, RecordType};

/// The document version this Legion writes and reads.
pub const VERSION: u32 = 1;

/// The whole desired fleet. Maps are sorted by name, so an export is stable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDocument {
    /// Always [`VERSION`]; another value is refused (a newer Legion's document).
    pub version: u32,
    /// Networks (CIDR) every managed firewall lets reach the nodes' SSH port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub management_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, ClusterEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zones: BTreeMap<String, ZoneEntry>,
    /// Extra inbound rules per cluster firewall set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub firewalls: BTreeMap<String, Vec<RuleEntry>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, DomainEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterEntry {
    /// Every node of the cluster gets `A`/`AAAA` records `<node>.<zone>` in this zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_zone: Option<String>,
    /// TCP ports the cluster's nodes may reach on each other (default 4413).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_ports: Option<Vec<u16>>,
}

/// A node. Only the provider is required: a field left out keeps the planned node's
/// value, or for a new node takes the provider's default (as `legion nodes add` does).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_mode: Option<BootMode>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneEntry {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordEntry>,
}

/// A record: a literal `value`, or `node`, the public address of a planned node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordEntry {
    /// Relative to the zone; `@` for the apex.
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn default_ttl() -> u32 {
    300
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    pub protocol: Protocol,
    /// `"22"` or `"8000-8100"`; none for ICMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    pub registrar: String,
    pub zone: String,
}

impl PlanDocument {
    /// The plan as a document: every operator-set value, nothing tracked, no uid.
    pub fn from_plan(plan: &Plan) -> PlanDocument {
        let default_ports = ClusterPlan::default().peer_ports;
        PlanDocument {
            version: VERSION,
            management_sources: plan.management_sources.clone(),
            clusters: plan
                .clusters
                .iter()
                .map(|(name, c)| {
                    let entry = ClusterEntry {
                        dns_zone: c.dns_zone.clone(),
                        peer_ports: (c.peer_ports != default_ports).then(|| c.peer_ports.clone()),
                    };
                    (name.clone(), entry)
                })
                .collect(),
            nodes: plan
                .nodes
                .iter()
                .map(|(name, n)| {
                    let entry = NodeEntry {
                        provider: n.provider.clone(),
                        cluster: Some(n.cluster.clone()),
                        role: Some(n.role.clone()),
                        region: Some(n.region.clone()),
                        offer: Some(n.offer.clone()),
                        image: Some(n.image.clone()),
                        boot_mode: Some(n.boot_mode),
                    };
                    (name.clone(), entry)
                })
                .collect(),
            zones: plan
                .zones
                .iter()
                .map(|(name, z)| {
                    let records = z.records.iter().map(RecordEntry::from_plan).collect();
                    let entry = ZoneEntry {
                        provider: z.provider.clone(),
                        records,
                    };
                    (name.clone(), entry)
                })
                .collect(),
            firewalls: plan
                .firewalls
                .iter()
                .filter(|(_, f)| !f.rules.is_empty())
                .map(|(name, f)| {
                    (
                        name.clone(),
                        f.rules.iter().map(RuleEntry::from_rule).collect(),
                    )
                })
                .collect(),
            domains: plan
                .domains
                .iter()
                .map(|(name, d)| {
                    let entry = DomainEntry {
                        registrar: d.registrar.clone(),
                        zone: d.zone.clone(),
                    };
                    (name.clone(), entry)
                })
                .collect(),
        }
    }
}

impl RecordEntry {
    fn from_plan(r: &RecordPlan) -> RecordEntry {
        let (value, node) = match &r.value {
            RecordValue::Literal(v) => (Some(v.clone()), None),
            RecordValue::NodeAddress(n) => (None, Some(n.clone())),
        };
        RecordEntry {
            name: r.name.clone(),
            rtype: r.rtype,
            ttl: r.ttl,
            value,
            node,
        }
    }

    fn to_plan(&self) -> Result<RecordPlan, RecordValueError> {
        let value = match (&self.value, &self.node) {
            (Some(v), None) => RecordValue::Literal(v.clone()),
            (None, Some(n)) => RecordValue::NodeAddress(n.clone()),
            _ => {
                return Err(RecordValueError {
                    name: self.name.clone(),
                });
            }
        };
        Ok(RecordPlan {
            name: self.name.clone(),
            rtype: self.rtype,
            ttl: self.ttl,
            value,
        })
    }
}

impl RuleEntry {
    fn from_rule(r: &FirewallRule) -> RuleEntry {
        RuleEntry {
            protocol: r.protocol,
            port: r.port.clone(),
            sources: r.sources.clone(),
            description: r.description.clone(),
        }
    }

    fn to_rule(&self) -> FirewallRule {
        FirewallRule {
            protocol: self.protocol,
            port: self.port.clone(),
            sources: self.sources.clone(),
            description: self.description.clone(),
        }
    }
}

/// What an import does with the plan's entries the document does not name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// The document is the whole desired plan: what it does not name is removed.
    #[default]
    Replace,
    /// Entries of the document replace the plan's entries of the same name; the others
    /// stay.
    Merge,
}

/// One refusal, and where it belongs: a path into the document (`["nodes", "web-1"]`,
/// `["zones", "example.test", "records", "2"]`) and, when known, the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub path: Vec<String>,
    #[serde(default)]
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    fn at(path: &[&str], field: Option<&str>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.iter().map(|s| s.to_string()).collect(),
            field: field.map(String::from),
            message: message.into(),
        }
    }
}

/// The entries of one kind an import adds, changes and removes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl EntryChanges {
    fn between<V: PartialEq>(old: &BTreeMap<String, V>, new: &BTreeMap<String, V>) -> Self {
        let mut c = EntryChanges::default();
        for (name, v) in new {
            match old.get(name) {
                None => c.added.push(name.clone()),
                Some(o) if o != v => c.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        c.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        c
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.added.iter().chain(&self.changed).chain(&self.removed)
    }
}

/// What an import changes in the plan, per kind of entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanDiff {
    pub nodes: EntryChanges,
    pub clusters: EntryChanges,
    pub zones: EntryChanges,
    pub firewalls: EntryChanges,
    pub domains: EntryChanges,
    pub management_sources: bool,
}

impl PlanDiff {
    pub fn between(old: &Plan, new: &Plan) -> PlanDiff {
        PlanDiff {
            nodes: EntryChanges::between(&old.nodes, &new.nodes),
            clusters: EntryChanges::between(&old.clusters, &new.clusters),
            zones: EntryChanges::between(&old.zones, &new.zones),
            firewalls: EntryChanges::between(&old.firewalls, &new.firewalls),
            domains: EntryChanges::between(&old.domains, &new.domains),
            management_sources: old.management_sources != new.management_sources,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.clusters.is_empty()
            && self.zones.is_empty()
            && self.firewalls.is_empty()
            && self.domains.is_empty()
            && !self.management_sources
    }

    /// The resources the change touches: what its one journal record holds.
    pub fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        keys.extend(self.nodes.names().cloned().map(Key::PlanNode));
        keys.extend(self.clusters.names().cloned().map(Key::PlanCluster));
        keys.extend(self.zones.names().cloned().map(Key::PlanZone));
        keys.extend(self.firewalls.names().cloned().map(Key::PlanFirewall));
        keys.extend(self.domains.names().cloned().map(Key::PlanDomain));
        if self.management_sources {
            keys.push(Key::ManagementSources);
        }
        keys
    }
}

/// The engine's answer to an import: the refusals (nothing changed), or what changed
/// (`applied`) or would change (a dry run, or a document that changes nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub problems: Vec<Problem>,
    pub diff: PlanDiff,
    pub applied: bool,
}

/// Turns a node entry into a resolved, checked node: the engine's node resolution
/// (`Session::resolve_with`) with the provider's catalog and the roles gathered once.
/// `base` is the planned node of that name on the same provider, if any.
pub trait ResolveNode {
    fn resolve(
        &self,
        name: &str,
        entry: &NodeEntry,
        base: Option<&NodePlan>,
    ) -> Result<NodePlan, EngineError>;
}

/// The plan `doc` asks for, starting from `base` (`mode` says what happens to what the
/// document does not name), or every refusal. Each entry goes through the plan edit the
/// other faces send, so the checks and messages are theirs.
pub fn build(
    base: &Plan,
    tracked: &Tracked,
    doc: &PlanDocument,
    mode: ImportMode,
    nodes: &dyn ResolveNode,
) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    if doc.version != VERSION {
        problems.push(Problem::at(
            &["version"],
            None,
            format!(
                "document version {} is not one this Legion reads (it reads {VERSION}); export the plan again with this Legion",
                doc.version
            ),
        ));
        return Err(problems);
    }
    let mut plan = base.clone();
    let replace = mode == ImportMode::Replace;
    let mut edit = |plan: &mut Plan, path: &[&str], field: Option<&str>, e: PlanEdit| {
        if let Err(err) = edit_plan(plan, tracked, e) {
            problems.push(Problem::at(path, field, err.to_string()));
        }
    };
    if replace {
        // Removals first, so a rule or a domain is checked against what stays.
        plan.nodes.retain(|name, _| doc.nodes.contains_key(name));
        plan.zones.retain(|name, _| doc.zones.contains_key(name));
        plan.firewalls.clear();
        plan.domains.clear();
    }
    for (name, c) in &doc.clusters {
        let cluster = ClusterPlan {
            dns_zone: c.dns_zone.clone(),
            peer_ports: c
                .peer_ports
                .clone()
                .unwrap_or_else(|| ClusterPlan::default().peer_ports),
        };
        let path = ["clusters", name.as_str()];
        edit(
            &mut plan,
            &path,
            None,
            PlanEdit::UpsertCluster {
                name: name.clone(),
                cluster,
            },
        );
    }
    let mut node_problems = Vec::new();
    for (name, entry) in &doc.nodes {
        // A node moving to another provider is resolved as a new one (its old region
        // and offer mean nothing there); the edit refuses the move if it is deployed.
        let base_node = plan
            .nodes
            .get(name)
            .filter(|b| b.provider == entry.provider);
        let path = ["nodes", name.as_str()];
        match nodes.resolve(name, entry, base_node) {
            Ok(node) => edit(
                &mut plan,
                &path,
                None,
                PlanEdit::UpsertNode {
                    name: name.clone(),
                    node,
                },
            ),
            Err(e) => node_problems.push(Problem::at(&path, None, e.to_string())),
        }
    }
    for (name, z) in &doc.zones {
        let path = ["zones", name.as_str()];
        edit(
            &mut plan,
            &path,
            None,
            PlanEdit::UpsertZone {
                name: name.clone(),
                provider: z.provider.clone(),
            },
        );
        let Some(zone) = plan.zones.get_mut(name) else {
            continue;
        };
        // The zone's records are the document's, not added to the planned ones.
        zone.records.clear();
        for (i, r) in z.records.iter().enumerate() {
            let index = i.to_string();
            let path = ["zones", name.as_str(), "records", index.as_str()];
            match r.to_plan() {
                Ok(record) => edit(
                    &mut plan,
                    &path,
                    None,
                    PlanEdit::UpsertRecord {
                        zone: name.clone(),
                        record,
                    },
                ),
                Err(m) => node_problems.push(Problem::at(&path, None, m.to_string())),
            }
        }
    }
    for (cluster, rules) in &doc.firewalls {
        plan.firewalls.remove(cluster);
        for (i, r) in rules.iter().enumerate() {
            let index = i.to_string();
            let path = ["firewalls", cluster.as_str(), index.as_str()];
            edit(
                &mut plan,
                &path,
                None,
                PlanEdit::AddFirewallRule {
                    cluster: cluster.clone(),
                    rule: r.to_rule(),
                },
            );
        }
    }
    for (name, d) in &doc.domains {
        let path = ["domains", name.as_str()];
        edit(
            &mut plan,
            &path,
            None,
            PlanEdit::UpsertDomain {
                name: name.clone(),
                domain: DomainPlan {
                    registrar: d.registrar.clone(),
                    zone: d.zone.clone(),
                },
            },
        );
    }
    if replace || !doc.management_sources.is_empty() {
        edit(
            &mut plan,
            &["management_sources"],
            None,
            PlanEdit::SetManagementSources {
                sources: doc.management_sources.clone(),
            },
        );
    }
    if replace {
        // A cluster the document does not name stays only while a node is in it (a
        // node's edit plans its cluster with the defaults).
        let used: std::collections::BTreeSet<&String> =
            plan.nodes.values().map(|n| &n.cluster).collect();
        plan.clusters
            .retain(|c, _| doc.clusters.contains_key(c) || used.contains(c));
    }
    problems.extend(node_problems);
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// A record entry with both or neither of `value` and `node`.
#[derive(Debug, thiserror::Error)]
#[error("record {name:?} needs exactly one of `value` (a literal) or `node` (a node's address)")]
pub struct RecordValueError {
    name: String,
}

#[cfg(test)]
mod tests;
