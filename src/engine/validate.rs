//! The checks every plan edit passes, whatever face sent it (CLI, dashboard, daemon
//! client): firewall rules (protocol, port, CIDR sources, a cluster that has nodes), a
//! node's provider (configured and enabled), its region, offer and image (in the
//! provider's catalog) and its role (a role script in the home's `roles/`).
//!
//! Pure functions over plain values, so the dashboard's forms and the CLI call the same
//! ones before sending and get the same messages; the engine calls them again on what
//! arrives (`plan::apply_edit` for the checks that need only the plan, `Session::edit`
//! for those that need the catalog, the configured providers or the roles folder). The
//! one file read here is the listing of the roles folder ([`roles`]); no provider call is
//! ever made here: the caller passes the catalog it holds.

use std::path::Path;

use super::parse;
use super::state::model::Plan;
use crate::providers::{Catalog, FirewallRule, Protocol};

/// The role every node gets when none is named: its install is Legion's default script
/// (`ssh_agent::DEFAULT_INSTALL`), unless `roles/node.sh` replaces it.
pub const DEFAULT_ROLE: &str = "node";

/// Choices listed in an error before "… and N more".
const SHOWN_CHOICES: usize = 12;

/// A firewall rule's own fields, as the dashboard's rule form checks them: a protocol
/// with a port (or range) when it needs one, CIDR sources, a description without
/// control characters.
pub fn firewall_rule(rule: &FirewallRule) -> Result<(), EditError> {
    let port = rule.port.as_deref().unwrap_or_default();
    let field = |field: &'static str| move |error| EditError::Field { field, error };
    parse::port(port).map_err(field("port"))?;
    parse::port_required(Some(rule.protocol), port).map_err(field("port"))?;
    if rule.protocol == Protocol::Icmp && !port.is_empty() {
        return Err(EditError::Field {
            field: "port",
            error: parse::ParseError::PortForbidden,
        });
    }
    if rule.sources.is_empty() {
        return Err(EditError::Invalid(
            "a firewall rule needs at least one source (0.0.0.0/0 for anywhere)".into(),
        ));
    }
    parse::check_sources(&rule.sources).map_err(field("sources"))?;
    if rule.description.chars().any(char::is_control) || rule.description.len() > 255 {
        return Err(EditError::Invalid(
            "a firewall rule's description is at most 255 characters, none of them control characters"
                .into(),
        ));
    }
    Ok(())
}

/// A rule goes on a cluster's firewall set, attached to its nodes: a cluster without
/// nodes has no set, and the rule would wait unseen.
pub fn rule_cluster(plan: &Plan, cluster: &str) -> Result<(), EditError> {
    if plan.nodes.values().any(|n| n.cluster == cluster) {
        return Ok(());
    }
    let mut clusters: Vec<String> = plan.nodes.values().map(|n| n.cluster.clone()).collect();
    clusters.sort();
    clusters.dedup();
    Err(EditError::NoNodes {
        cluster: cluster.to_string(),
        clusters,
    })
}

/// The provider a node or zone names is configured here (`configured`: the ids of the
/// configured, enabled providers).
pub fn provider_configured(provider: &str, configured: &[String]) -> Result<(), EditError> {
    if configured.iter().any(|c| c == provider) {
        return Ok(());
    }
    Err(EditError::ProviderNotConfigured {
        provider: provider.to_string(),
        configured: configured.to_vec(),
    })
}

/// What a node asks of its provider's catalog; `None` for a field left as it was.
#[derive(Debug, Clone, Copy, Default)]
pub struct Choices<'a> {
    pub region: Option<&'a str>,
    pub offer: Option<&'a str>,
    pub image: Option<&'a str>,
}

/// The region, offer and image a node names are in `catalog` (of the provider shown as
/// `provider`): an available region, an offer orderable there, an image that is not
/// deprecated. `region` is the node's region whether it changed or not: the offer is
/// checked in it.
pub fn catalog_choices(
    provider: &str,
    catalog: &Catalog,
    region: &str,
    asked: Choices<'_>,
) -> Result<(), EditError> {
    let not_in = |what: &'static str, value: &str, choices: Vec<String>, context: String| {
        EditError::NotInCatalog {
            provider: provider.to_string(),
            what,
            value: value.to_string(),
            context,
            choices,
        }
    };
    if let Some(r) = asked.region
        && !catalog.regions.iter().any(|c| c.id == r && c.available)
    {
        let choices = catalog
            .regions
            .iter()
            .filter(|c| c.available)
            .map(|c| c.id.clone())
            .collect();
        return Err(not_in("region", r, choices, String::new()));
    }
    if let Some(o) = asked.offer {
        let orderable =
            |c: &&crate::providers::Offer| !c.deprecated && c.regions.iter().any(|x| x == region);
        if !catalog.offers.iter().filter(orderable).any(|c| c.id == o) {
            let choices = catalog
                .offers
                .iter()
                .filter(orderable)
                .map(|c| c.id.clone())
                .collect();
            return Err(not_in("offer", o, choices, format!(" in {region}")));
        }
    }
    if let Some(i) = asked.image
        && !catalog.images.iter().any(|c| c.id == i && !c.deprecated)
    {
        let choices = catalog
            .images
            .iter()
            .filter(|c| !c.deprecated)
            .map(|c| c.id.clone())
            .collect();
        return Err(not_in("image", i, choices, String::new()));
    }
    Ok(())
}

/// The roles the home defines: [`DEFAULT_ROLE`] and every `roles/<role>.sh`, sorted.
pub fn roles(roles_dir: Option<&Path>) -> Vec<String> {
    let mut found = vec![DEFAULT_ROLE.to_string()];
    if let Some(entries) = roles_dir.and_then(|d| std::fs::read_dir(d).ok()) {
        found.extend(entries.flatten().filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let role = name.strip_suffix(".sh")?;
            validate_name("role", role)
                .is_ok()
                .then(|| role.to_string())
        }));
    }
    found.sort();
    found.dedup();
    found
}

/// A role names an install script: [`DEFAULT_ROLE`] (Legion's default install) or one
/// of `roles` (from [`roles`]). Anything else would fall back to the default install
/// without a word, which is not what the operator asked for.
pub fn role(role: &str, roles: &[String]) -> Result<(), EditError> {
    if roles.iter().any(|r| r == role) {
        return Ok(());
    }
    Err(EditError::UnknownRole {
        role: role.to_string(),
        roles: roles.to_vec(),
    })
}

/// Why a plan edit was not made; the plan is unchanged. Every variant is the operator's
/// mistake or a conflict with what is deployed (exit code 1, wire kind `invalid`,
/// `not_found` or `refused`), and says what the valid choices are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// A name, zone or rule that is not valid, with the rule it breaks.
    #[error("{0}")]
    Invalid(String),
    /// A typed field refused with the message its form shows beside it.
    #[error("{field}: {error}")]
    Field {
        field: &'static str,
        error: super::parse::ParseError,
    },
    /// A node or zone names a provider that is not configured here.
    #[error(
        "provider {provider:?} is not configured; configured here: {} (configure it with `legion provider configure {provider}`)",
        super::validate::list(configured)
    )]
    ProviderNotConfigured {
        provider: String,
        configured: Vec<String>,
    },
    /// A region, offer or image the provider's catalog does not have (`context`: where,
    /// " in fsn1" for an offer).
    #[error(
        "{provider} has no {what} {value:?}{context}; choose one of: {}",
        super::validate::list(choices)
    )]
    NotInCatalog {
        provider: String,
        what: &'static str,
        value: String,
        context: String,
        choices: Vec<String>,
    },
    /// A role with no install script in the home's `roles/`.
    #[error(
        "role {role:?} has no install script (put it in HOME/roles/{role}.sh); roles here: {}",
        super::validate::list(roles)
    )]
    UnknownRole { role: String, roles: Vec<String> },
    /// A firewall rule for a cluster none of whose nodes is planned.
    #[error(
        "cluster {cluster} has no nodes, so it has no firewall set for the rule; add a node to it first (clusters with nodes: {})",
        super::validate::list(clusters)
    )]
    NoNodes {
        cluster: String,
        clusters: Vec<String>,
    },
    /// `nodes add` of a name the plan has.
    #[error(
        "node {0} exists; change it with `legion nodes set {0} --offer …` (or --image, --region, --role, --cluster)"
    )]
    Exists(String),
    /// The edit names something the plan does not have.
    #[error("{0}")]
    NotFound(String),
    /// The edit contradicts what is deployed (moving a running node between providers).
    #[error("{0}")]
    Conflict(String),
}

impl From<EditError> for crate::engine::EngineError {
    fn from(e: EditError) -> Self {
        use crate::engine::EngineError;
        match e {
            EditError::NotFound(m) => EngineError::NotFound(m),
            EditError::Conflict(m) => EngineError::Refused(m),
            e => EngineError::Invalid(e.to_string()),
        }
    }
}

/// A DNS-label-like name: what servers, clusters and records can be called.
pub fn validate_name(what: &str, name: &str) -> Result<(), EditError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(EditError::Invalid(format!(
            "invalid {what} name {name:?}: use 1-63 lowercase letters, digits and '-', not starting or ending with '-'"
        )))
    }
}

/// `a, b, c` or `a, b, … and 30 more`, for the choices an error lists.
pub(crate) fn list(choices: &[String]) -> String {
    if choices.is_empty() {
        return "none".into();
    }
    let shown: Vec<&str> = choices
        .iter()
        .take(SHOWN_CHOICES)
        .map(String::as_str)
        .collect();
    match choices.len().saturating_sub(SHOWN_CHOICES) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::model::NodePlan;
    use crate::providers::{BootMode, Image, Offer, Region};

    fn rule(protocol: Protocol, port: Option<&str>, sources: &[&str]) -> FirewallRule {
        FirewallRule {
            protocol,
            port: port.map(String::from),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
        }
    }

    #[test]
    fn rules_the_cli_used_to_store_unchecked_are_refused() {
        let bad_source = firewall_rule(&rule(Protocol::Tcp, Some("22"), &["999.1.1.1/99"]));
        assert_eq!(
            bad_source.unwrap_err().to_string(),
            "sources: 999.1.1.1/99 is not a CIDR (10.0.0.0/8, ::/0)"
        );
        for port in ["70000", "abc;reboot", "0", "10-5", "1-2-3", "-22"] {
            let e = firewall_rule(&rule(Protocol::Tcp, Some(port), &["0.0.0.0/0"]));
            assert_eq!(
                e.unwrap_err().to_string(),
                "port: a port (22) or a range (8000-8100)",
                "{port}"
            );
        }
        let e = firewall_rule(&rule(Protocol::Udp, None, &["::/0"])).unwrap_err();
        assert_eq!(e.to_string(), "port: required for tcp and udp");
        let e = firewall_rule(&rule(Protocol::Icmp, Some("22"), &["::/0"])).unwrap_err();
        assert!(e.to_string().starts_with("port: "), "{e}");
        assert!(firewall_rule(&rule(Protocol::Tcp, Some("22"), &[])).is_err());
        let mut sneaky = rule(Protocol::Tcp, Some("22"), &["::/0"]);
        sneaky.description = "ok\x1b[2J".into();
        assert!(firewall_rule(&sneaky).is_err());
        assert_eq!(
            firewall_rule(&rule(Protocol::Tcp, Some("1-65535"), &["10.0.0.0/8"])),
            Ok(())
        );
        assert_eq!(
            firewall_rule(&rule(Protocol::Icmp, None, &["::/0"])),
            Ok(())
        );
    }

    #[test]
    fn a_rule_needs_a_cluster_with_nodes() {
        let mut plan = Plan::default();
        let e = rule_cluster(&plan, "prod").unwrap_err().to_string();
        assert!(e.contains("cluster prod has no nodes"), "{e}");
        plan.nodes.insert(
            "web-1".into(),
            NodePlan {
                uid: "u".into(),
                cluster: "web".into(),
                role: "node".into(),
                provider: "mock".into(),
                region: "r".into(),
                offer: "o".into(),
                image: "i".into(),
                boot_mode: BootMode::Bios,
            },
        );
        let e = rule_cluster(&plan, "prod").unwrap_err().to_string();
        assert!(e.ends_with("(clusters with nodes: web)"), "{e}");
        assert_eq!(rule_cluster(&plan, "web"), Ok(()));
    }

    fn catalog() -> Catalog {
        let region = |id: &str, available| Region {
            id: id.into(),
            name: id.into(),
            available,
        };
        let offer = |id: &str, regions: &[&str], deprecated| Offer {
            id: id.into(),
            name: id.into(),
            cores: 1,
            memory_mb: 1024,
            disk_gb: 10,
            hourly_price: Default::default(),
            regions: regions.iter().map(|r| r.to_string()).collect(),
            deprecated,
            variables: vec![],
        };
        let image = |id: &str, deprecated| Image {
            id: id.into(),
            name: id.into(),
            architecture: "x86".into(),
            deprecated,
            login_user: None,
        };
        Catalog {
            regions: vec![
                region("fsn1", true),
                region("nbg1", true),
                region("old", false),
            ],
            offers: vec![
                offer("cx22", &["fsn1", "nbg1"], false),
                offer("cx52", &["nbg1"], false),
                offer("cx11", &["fsn1"], true),
            ],
            images: vec![image("debian-12", false), image("debian-10", true)],
        }
    }

    #[test]
    fn choices_come_from_the_catalog_and_errors_list_them() {
        let c = catalog();
        let ask = |region, offer, image| Choices {
            region,
            offer,
            image,
        };
        let ok = catalog_choices("Hetzner", &c, "fsn1", ask(Some("fsn1"), Some("cx22"), None));
        assert_eq!(ok, Ok(()));
        let e = catalog_choices("Hetzner", &c, "old", ask(Some("old"), None, None));
        assert_eq!(
            e.unwrap_err().to_string(),
            "Hetzner has no region \"old\"; choose one of: fsn1, nbg1"
        );
        let e = catalog_choices("Hetzner", &c, "fsn1", ask(None, Some("cx52"), None));
        assert_eq!(
            e.unwrap_err().to_string(),
            "Hetzner has no offer \"cx52\" in fsn1; choose one of: cx22"
        );
        let e = catalog_choices("Hetzner", &c, "fsn1", ask(None, None, Some("debian-10")));
        assert_eq!(
            e.unwrap_err().to_string(),
            "Hetzner has no image \"debian-10\"; choose one of: debian-12"
        );
        // Fields left as they were are not checked (an offer the catalog dropped since).
        assert_eq!(
            catalog_choices("Hetzner", &c, "fsn1", Choices::default()),
            Ok(())
        );
    }

    #[test]
    fn roles_are_the_default_and_the_scripts_of_the_home() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(roles(Some(dir.path())), ["node"]);
        std::fs::write(dir.path().join("web.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("web.probe"), "http://127.0.0.1/\n").unwrap();
        std::fs::write(dir.path().join("db.logs"), "/var/log/db\n").unwrap();
        let known = roles(Some(dir.path()));
        assert_eq!(known, ["node", "web"]);
        assert_eq!(role("web", &known), Ok(()));
        let e = role("db", &known).unwrap_err().to_string();
        assert!(e.contains("role \"db\" has no install script"), "{e}");
        assert!(e.ends_with("roles here: node, web"), "{e}");
        assert_eq!(roles(None), ["node"]);
    }

    #[test]
    fn providers_must_be_configured() {
        let e = provider_configured("mock", &["hetzner".into()]).unwrap_err();
        assert!(e.to_string().contains("configured here: hetzner"), "{e}");
        let e = provider_configured("mock", &[]).unwrap_err();
        assert!(e.to_string().contains("configured here: none"), "{e}");
        assert_eq!(provider_configured("mock", &["mock".into()]), Ok(()));
    }

    #[test]
    fn long_lists_are_cut() {
        let many: Vec<String> = (0..20).map(|i| format!("o{i}")).collect();
        assert!(list(&many).ends_with("o11 and 8 more"), "{}", list(&many));
    }
}
