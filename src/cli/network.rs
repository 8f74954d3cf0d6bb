//! `legion zones`, `records` and `firewalls`: the DNS and firewall entries of the plan.
//!
//! Typed values (record type and value, TTL, protocol, port, sources) go through
//! `engine::parse`, the parser the dashboard's forms use, so both accept the same text
//! with the same messages. Edits touch only the plan; `apply` makes them so.

use clap::Subcommand;
use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::output::{clean, json, outln, print_rows};
use super::session::with_link;
use crate::engine::parse;
use crate::engine::plan::PlanEdit;
use crate::engine::state::model::{RecordPlan, RecordValue};
use crate::engine::validate;
use crate::engine::validate::EditError;
use crate::link::Link;
use crate::providers::{FirewallRule, Protocol};

#[derive(Subcommand)]
pub(crate) enum ZonesCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Plan a zone (apply creates it).
    Add {
        name: String,
        #[arg(long)]
        provider: String,
    },
    /// Remove a zone from the plan (apply deletes what Legion made).
    Remove { name: String },
}

#[derive(Subcommand)]
pub(crate) enum RecordsCommand {
    /// Planned records, of one zone or all.
    List {
        zone: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Plan a record; a VALUE of `@NODE` means that node's address.
    Add {
        zone: String,
        name: String,
        rtype: String,
        value: String,
        #[arg(long, default_value_t = 300)]
        ttl: u32,
    },
    Remove {
        zone: String,
        name: String,
        rtype: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum FirewallsCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add an inbound allow rule to a cluster's firewall set.
    AddRule {
        cluster: String,
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "icmp"])]
        protocol: String,
        /// A port or range (22, 8000-8100); none for icmp.
        #[arg(long)]
        port: Option<String>,
        /// CIDR; repeat for several.
        #[arg(long = "source", required = true)]
        sources: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Remove an extra rule from a cluster's firewall set: RULE is its number in
    /// `firewalls list` (`rule 2`) or its text there (`"tcp 443 from 0.0.0.0/0"`).
    RemoveRule { cluster: String, rule: String },
}

pub(crate) async fn zones(cli: &Cli, command: &ZonesCommand) -> Result<()> {
    with_link(cli, async |engine: &Link| match command {
        ZonesCommand::List { json } => print_rows(&engine.current().await?.zones, *json),
        ZonesCommand::Add { name, provider } => {
            engine
                .edit_plan(PlanEdit::UpsertZone {
                    name: name.clone(),
                    provider: provider.clone(),
                })
                .await?;
            outln!("zone {name} is in the plan; apply creates it");
            Ok(())
        }
        ZonesCommand::Remove { name } => {
            engine
                .edit_plan(PlanEdit::RemoveZone { name: name.clone() })
                .await?;
            outln!("zone {name} removed from the plan; apply deletes what Legion made");
            Ok(())
        }
    })
    .await
}

pub(crate) async fn records(cli: &Cli, command: &RecordsCommand) -> Result<()> {
    with_link(cli, async |engine: &Link| match command {
        RecordsCommand::List { zone, json } => list_records(engine, zone.as_deref(), *json).await,
        RecordsCommand::Add {
            zone,
            name,
            rtype,
            value,
            ttl,
        } => {
            let rtype = parse::record_type(rtype)?;
            let ttl = parse::check_ttl(*ttl).map_err(|e| eyre!("--ttl: {e}"))?;
            engine
                .edit_plan(PlanEdit::UpsertRecord {
                    zone: zone.clone(),
                    record: RecordPlan {
                        name: name.clone(),
                        rtype,
                        ttl,
                        value: parse::record_value(value),
                    },
                })
                .await?;
            outln!("{rtype} {name}.{zone} is in the plan; apply publishes it");
            Ok(())
        }
        RecordsCommand::Remove { zone, name, rtype } => {
            let rtype = parse::record_type(rtype)?;
            engine
                .edit_plan(PlanEdit::RemoveRecord {
                    zone: zone.clone(),
                    name: name.clone(),
                    rtype,
                })
                .await?;
            outln!("{rtype} {name}.{zone} removed from the plan");
            Ok(())
        }
    })
    .await
}

/// `records list [ZONE]`: the plan's records as `{zone, name, type, ttl, value}`.
async fn list_records(engine: &Link, zone: Option<&str>, as_json: bool) -> Result<()> {
    let plan = engine.plan().await?;
    let rows: Vec<serde_json::Value> = plan
        .zones
        .iter()
        .filter(|(z, _)| zone.is_none_or(|w| w == z.as_str()))
        .flat_map(|(z, p)| {
            p.records.iter().map(move |r| {
                serde_json::json!({
                    "zone": z, "name": r.name, "type": r.rtype.to_string(), "ttl": r.ttl,
                    "value": match &r.value {
                        RecordValue::Literal(v) => v.clone(),
                        RecordValue::NodeAddress(n) => format!("@{n}"),
                    },
                })
            })
        })
        .collect();
    if as_json {
        return json(&rows);
    }
    for r in rows {
        outln!(
            "{:<24} {:<16} {:<6} {:>6} {}",
            r["zone"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            r["ttl"],
            clean(r["value"].as_str().unwrap_or(""))
        );
    }
    Ok(())
}

pub(crate) async fn firewalls(cli: &Cli, command: &FirewallsCommand) -> Result<()> {
    with_link(cli, async |engine: &Link| match command {
        FirewallsCommand::List { json } => list_firewalls(engine, *json).await,
        FirewallsCommand::RemoveRule { cluster, rule } => {
            let plan = engine.plan().await?;
            let rules = plan
                .firewalls
                .get(cluster)
                .map(|f| f.rules.as_slice())
                .unwrap_or_default();
            let found = find_rule(rules, rule).ok_or_else(|| {
                let listed: Vec<String> = rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| format!("{} ({r})", i + 1))
                    .collect();
                eyre!(
                    "cluster {cluster} has no extra rule {rule:?}; its rules: {} (see `legion firewalls list`)",
                    if listed.is_empty() { "none".into() } else { listed.join(", ") }
                )
            })?;
            engine
                .edit_plan(PlanEdit::RemoveFirewallRule {
                    cluster: cluster.clone(),
                    rule: found.clone(),
                })
                .await?;
            outln!("rule {found} removed from the firewall set of {cluster}; apply makes it so");
            Ok(())
        }
        FirewallsCommand::AddRule {
            cluster,
            protocol,
            port,
            sources,
            description,
        } => {
            let rule = firewall_rule(protocol, port.as_deref(), sources, description)?;
            engine
                .edit_plan(PlanEdit::AddFirewallRule {
                    cluster: cluster.clone(),
                    rule,
                })
                .await?;
            outln!("rule added to the firewall set of {cluster}; apply makes it so");
            Ok(())
        }
    })
    .await
}

/// `firewalls list`: each firewall set, then the plan's extra rules of each cluster,
/// numbered as `remove-rule` takes them. `--json` prints the rows alone.
async fn list_firewalls(engine: &Link, as_json: bool) -> Result<()> {
    let snap = engine.current().await?;
    if as_json {
        return print_rows(&snap.firewalls, true);
    }
    print_rows(&snap.firewalls, false)?;
    let plan = engine.plan().await?;
    for (cluster, set) in plan.firewalls.iter().filter(|(_, f)| !f.rules.is_empty()) {
        outln!("extra rules of cluster {}:", clean(cluster));
        for (i, r) in set.rules.iter().enumerate() {
            let note = if r.description.is_empty() {
                String::new()
            } else {
                format!("  ({})", clean(&r.description))
            };
            outln!("  rule {}: {}{note}", i + 1, clean(&r.to_string()));
        }
    }
    Ok(())
}

/// The rule `firewalls remove-rule` names: its number in `firewalls list` or its text.
fn find_rule<'a>(rules: &'a [FirewallRule], which: &str) -> Option<&'a FirewallRule> {
    let which = which.trim();
    let which = which.strip_prefix("rule ").unwrap_or(which);
    match which.parse::<usize>() {
        Ok(n) => n.checked_sub(1).and_then(|i| rules.get(i)),
        Err(_) => rules.iter().find(|r| r.to_string() == which),
    }
}

/// The rule `firewalls add-rule` plans, checked as the dashboard's rule form checks it.
fn firewall_rule(
    protocol: &str,
    port: Option<&str>,
    sources: &[String],
    description: &str,
) -> Result<FirewallRule> {
    let protocol: Protocol = parse::protocol(protocol).map_err(|e| eyre!("--protocol: {e}"))?;
    // `--port ''` is no port, as an empty field is in the form.
    let port = port.unwrap_or_default();
    let rule = FirewallRule {
        protocol,
        port: (!port.is_empty()).then(|| port.to_string()),
        sources: sources.to_vec(),
        description: description.to_string(),
    };
    // The engine's own check (it checks again what arrives), named by the flag here.
    validate::firewall_rule(&rule).map_err(|e| match e {
        EditError::Field { field, error } => {
            let flag = if field == "sources" { "source" } else { field };
            eyre!("--{flag}: {error}")
        }
        e => eyre!(e),
    })?;
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &str, port: Option<&str>, sources: &[&str]) -> Result<FirewallRule> {
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        firewall_rule(protocol, port, &sources, "")
    }

    #[test]
    fn add_rule_checks_what_the_form_checks() {
        let err = rule("tcp", None, &["0.0.0.0/0"]).unwrap_err().to_string();
        assert_eq!(err, "--port: required for tcp and udp");
        let err = rule("tcp", Some("70000"), &["0.0.0.0/0"])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--port: a port (22) or a range (8000-8100)");
        let err = rule("udp", Some("http"), &["0.0.0.0/0"])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--port: a port (22) or a range (8000-8100)");
        let err = rule("tcp", Some("22"), &["10.0.0.1"])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--source: 10.0.0.1 is not a CIDR (10.0.0.0/8, ::/0)");
        let err = rule("tcp", Some("22"), &["999.1.1.1/99"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--source: 999.1.1.1/99 is not a CIDR (10.0.0.0/8, ::/0)"
        );
        let ok = rule("icmp", None, &["::/0"]).unwrap();
        assert_eq!((ok.protocol, ok.port), (Protocol::Icmp, None));
        let ok = rule("tcp", Some("8000-8100"), &["10.0.0.0/8"]).unwrap();
        assert_eq!(ok.port.as_deref(), Some("8000-8100"));
    }

    #[test]
    fn remove_rule_takes_the_number_or_the_text_list_shows() {
        let rules = vec![
            rule("tcp", Some("443"), &["0.0.0.0/0"]).unwrap(),
            rule("udp", Some("53"), &["10.0.0.0/8"]).unwrap(),
        ];
        assert_eq!(find_rule(&rules, "2"), Some(&rules[1]));
        assert_eq!(find_rule(&rules, "rule 1"), Some(&rules[0]));
        assert_eq!(find_rule(&rules, "udp 53 from 10.0.0.0/8"), Some(&rules[1]));
        assert_eq!(find_rule(&rules, "0"), None);
        assert_eq!(find_rule(&rules, "3"), None);
        assert_eq!(find_rule(&rules, "tcp 22 from 0.0.0.0/0"), None);
    }
}
