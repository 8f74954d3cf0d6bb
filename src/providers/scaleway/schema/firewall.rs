//! Scaleway security groups as Legion firewalls. Scaleway rules hold one IP range and no
//! description, so one Legion rule becomes one Scaleway rule per source, in order, and
//! the descriptions with each rule's count of Scaleway rules are kept in the group's
//! `description` ([`rules_note`]); reading back regroups them ([`rules_from`]). Rules
//! Legion does not model are kept where they were. Nothing here does I/O.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::providers::{FirewallRule, ObservedFirewall, Protocol};

use super::{Summary, labels_from_tags, qualified};

#[derive(Debug, Clone, Deserialize)]
pub(in crate::providers::scaleway) struct SecurityGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub servers: Vec<Summary>,
    #[serde(default)]
    pub project_default: bool,
    #[serde(default)]
    pub zone: String,
}

#[derive(Debug, Deserialize)]
pub(in crate::providers::scaleway) struct SecurityGroupEnvelope {
    pub security_group: SecurityGroup,
}

#[derive(Debug, Clone, Deserialize)]
pub(in crate::providers::scaleway) struct SgRule {
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub ip_range: String,
    #[serde(default)]
    pub dest_port_from: Option<u32>,
    #[serde(default)]
    pub dest_port_to: Option<u32>,
    #[serde(default)]
    pub position: u32,
    #[serde(default = "yes")]
    pub editable: bool,
}

fn yes() -> bool {
    true
}

fn port_range(port: Option<&str>) -> (Option<u32>, Option<u32>) {
    let Some(p) = port else { return (None, None) };
    match p.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok(), b.trim().parse().ok()),
        None => (p.trim().parse().ok(), None),
    }
}

/// The group's rules Legion does not model (outbound, drop; editable ones: the rest are
/// Scaleway's own), in their order, then Legion's: what a rewrite of the group sends, so
/// that someone else's rules survive it. Theirs come first, so a drop still applies
/// before Legion's accepts, as it did.
pub(in crate::providers::scaleway) fn rules_keeping_foreign(
    have: &[SgRule],
    rules: &[FirewallRule],
) -> Vec<Value> {
    let mut foreign: Vec<&SgRule> = have
        .iter()
        .filter(|r| r.editable && !(r.direction == "inbound" && r.action == "accept"))
        .collect();
    foreign.sort_by_key(|r| r.position);
    let kept = foreign
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "action": r.action,
                "direction": r.direction,
                "protocol": r.protocol,
                "ip_range": r.ip_range,
                "dest_port_from": r.dest_port_from,
                "dest_port_to": r.dest_port_to,
                "position": i + 1,
                "editable": true,
            })
        })
        .collect();
    rules_after(kept, rules)
}

/// Legion's rules as Scaleway's inbound accept rules, one per source, after `out`
/// (positions continue from it).
fn rules_after(mut out: Vec<Value>, rules: &[FirewallRule]) -> Vec<Value> {
    for r in rules {
        let (from, to) = port_range(r.port.as_deref());
        let protocol = match r.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Icmp => "ICMP",
        };
        for source in &r.sources {
            let (from, to) = if r.protocol == Protocol::Icmp {
                (None, None)
            } else {
                (from, to)
            };
            out.push(json!({
                "action": "accept",
                "direction": "inbound",
                "protocol": protocol,
                "ip_range": source,
                "dest_port_from": from,
                "dest_port_to": to,
                "position": out.len() + 1,
                "editable": true,
            }));
        }
    }
    out
}

/// What the group's description keeps: each rule's description and its count of
/// Scaleway rules.
pub(in crate::providers::scaleway) fn rules_note(rules: &[FirewallRule]) -> String {
    let entries: Vec<Value> = rules
        .iter()
        .map(|r| json!([r.description, r.sources.len()]))
        .collect();
    json!({ "legion_rules": entries }).to_string()
}

fn parse_note(description: &str) -> Option<Vec<(String, usize)>> {
    let v: Value = serde_json::from_str(description).ok()?;
    v.get("legion_rules")?
        .as_array()?
        .iter()
        .map(|e| {
            let d = e.get(0)?.as_str()?.to_string();
            let n = usize::try_from(e.get(1)?.as_u64()?).ok()?;
            Some((d, n))
        })
        .collect()
}

fn rule_of(r: &SgRule) -> Option<FirewallRule> {
    let protocol = match r.protocol.as_str() {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "ICMP" => Protocol::Icmp,
        _ => return None,
    };
    let port = match (protocol, r.dest_port_from, r.dest_port_to) {
        (Protocol::Icmp, _, _) | (_, None, _) => None,
        (_, Some(a), Some(b)) if b != a => Some(format!("{a}-{b}")),
        (_, Some(a), _) => Some(a.to_string()),
    };
    Some(FirewallRule {
        protocol,
        port,
        sources: vec![r.ip_range.clone()],
        description: String::new(),
    })
}

/// Scaleway's rules (editable inbound accepts, by position) as Legion's rules, regrouped
/// by the note in the description; without a usable note, neighbouring rules of the same
/// protocol and port become one rule.
pub(in crate::providers::scaleway) fn rules_from(
    rules: &[SgRule],
    description: &str,
) -> Vec<FirewallRule> {
    let mut ours: Vec<&SgRule> = rules
        .iter()
        .filter(|r| r.editable && r.direction == "inbound" && r.action == "accept")
        .collect();
    ours.sort_by_key(|r| r.position);
    let single: Vec<FirewallRule> = ours.iter().filter_map(|r| rule_of(r)).collect();
    if let Some(note) = parse_note(description)
        && note.iter().map(|(_, n)| n).sum::<usize>() == single.len()
    {
        let mut out = Vec::new();
        let mut it = single.into_iter();
        for (desc, n) in note {
            let group: Vec<FirewallRule> = it.by_ref().take(n).collect();
            let Some(first) = group.first() else { continue };
            if group
                .iter()
                .any(|g| g.protocol != first.protocol || g.port != first.port)
            {
                return regroup(rules_from_singles(&ours));
            }
            out.push(FirewallRule {
                protocol: first.protocol,
                port: first.port.clone(),
                sources: group.iter().flat_map(|g| g.sources.clone()).collect(),
                description: desc,
            });
        }
        return out;
    }
    regroup(single)
}

fn rules_from_singles(rules: &[&SgRule]) -> Vec<FirewallRule> {
    rules.iter().filter_map(|r| rule_of(r)).collect()
}

fn regroup(single: Vec<FirewallRule>) -> Vec<FirewallRule> {
    let mut out: Vec<FirewallRule> = Vec::new();
    for r in single {
        match out.last_mut() {
            Some(last) if last.protocol == r.protocol && last.port == r.port => {
                last.sources.extend(r.sources)
            }
            _ => out.push(r),
        }
    }
    out
}

pub(in crate::providers::scaleway) fn observed_firewall(
    sg: &SecurityGroup,
    rules: &[SgRule],
    zone: &str,
) -> ObservedFirewall {
    let zone = if sg.zone.is_empty() { zone } else { &sg.zone };
    ObservedFirewall {
        id: qualified(zone, &sg.id),
        name: sg.name.clone(),
        rules: rules_from(rules, &sg.description),
        applied_to: sg.servers.iter().map(|s| qualified(zone, &s.id)).collect(),
        labels: labels_from_tags(&sg.tags),
    }
}

/// Rules compared as a set, sources sorted.
pub(in crate::providers::scaleway) fn rule_set(rules: &[FirewallRule]) -> BTreeSet<FirewallRule> {
    rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.sources.sort();
            r.sources.dedup();
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::providers::Protocol;

    use super::*;

    fn rule(port: &str, sources: &[&str], d: &str) -> FirewallRule {
        FirewallRule {
            protocol: Protocol::Tcp,
            port: Some(port.into()),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            description: d.into(),
        }
    }

    #[test]
    fn rules_keep_order_sources_and_descriptions() {
        let rules = vec![
            rule("22", &["10.0.0.0/8", "192.0.2.0/24"], "ssh"),
            rule("8000-8100", &["0.0.0.0/0"], "apps"),
            rule("22", &["172.16.0.0/12"], "ssh again"),
        ];
        let wire = rules_keeping_foreign(&[], &rules);
        assert_eq!(wire.len(), 4);
        assert_eq!(wire[2]["dest_port_to"], 8100);
        assert_eq!(wire[3]["position"], 4);
        let back: Vec<SgRule> = serde_json::from_value(Value::Array(wire)).unwrap();
        assert_eq!(rules_from(&back, &rules_note(&rules)), rules);
        // Without the note, neighbours of the same port are merged.
        let plain = rules_from(&back, "");
        assert_eq!(plain.len(), 3);
        assert_eq!(plain[0].sources.len(), 2);
    }
}
