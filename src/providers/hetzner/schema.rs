//! Hetzner Cloud JSON shapes and their mapping into Legion's provider types.
//!
//! Only the fields Legion reads are declared; unknown fields are ignored so additions to
//! the API do not break parsing. Nothing here leaves the `hetzner` module: callers get
//! [`Offer`], [`ObservedServer`], [`ObservedFirewall`], [`ObservedZone`] and friends.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::providers::{
    FirewallRule, Image, ObservedFirewall, ObservedServer, ObservedZone, Offer, Protocol,
    RecordType, Region, RrSet, ServerStatus,
};

// ---- catalog ----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct ServerType {
    pub name: String,
    #[serde(default)]
    pub cores: u32,
    /// GB, possibly fractional (`0.5`).
    #[serde(default)]
    pub memory: f64,
    /// GB.
    #[serde(default)]
    pub disk: u32,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub deprecated: Option<bool>,
    #[serde(default)]
    pub deprecation: Option<Value>,
    #[serde(default)]
    pub prices: Vec<TypePrice>,
    /// Per-location availability and deprecation (newer API); absent in older answers,
    /// where the price list says where a type is sold.
    #[serde(default)]
    pub locations: Option<Vec<TypeLocation>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TypePrice {
    pub location: String,
    pub price_hourly: Price,
}

#[derive(Debug, Deserialize)]
pub(super) struct Price {
    pub gross: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct TypeLocation {
    pub name: String,
    #[serde(default)]
    pub available: Option<bool>,
    #[serde(default)]
    pub deprecation: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ImageJson {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub deprecated: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Location {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub city: String,
}

/// Legion runs x86-64 nodes; Hetzner's Arm types and images stay out of the catalog.
fn is_x86(architecture: Option<&str>) -> bool {
    architecture.is_none_or(|a| a == "x86")
}

/// Server types as offers: fixed sizes (no variables), gross hourly price per location,
/// orderable where the type is available and not deprecated.
pub(super) fn offers(types: Vec<ServerType>) -> Vec<Offer> {
    types
        .into_iter()
        .filter(|t| is_x86(t.architecture.as_deref()))
        .map(|t| {
            let hourly_price: BTreeMap<String, f64> = t
                .prices
                .iter()
                .filter_map(|p| Some((p.location.clone(), p.price_hourly.gross.parse().ok()?)))
                .collect();
            let regions: Vec<String> = match &t.locations {
                Some(locs) => locs
                    .iter()
                    .filter(|l| l.available != Some(false) && l.deprecation.is_none())
                    .map(|l| l.name.clone())
                    .collect(),
                None => hourly_price.keys().cloned().collect(),
            };
            let deprecated = t.deprecation.is_some() || t.deprecated == Some(true);
            Offer {
                id: t.name.clone(),
                name: t.name.to_uppercase(),
                cores: t.cores,
                memory_mb: (t.memory * 1024.0).round() as u32,
                disk_gb: t.disk,
                hourly_price,
                regions: if deprecated { Vec::new() } else { regions },
                deprecated,
                variables: Vec::new(),
            }
        })
        .collect()
}

/// System images by name (`ubuntu-24.04`): the name is what a create or rebuild takes,
/// and Hetzner picks the build matching the server type's architecture.
pub(super) fn images(images: Vec<ImageJson>) -> Vec<Image> {
    let mut seen = BTreeSet::new();
    images
        .into_iter()
        .filter(|i| is_x86(i.architecture.as_deref()))
        .filter(|i| i.deprecated.is_none())
        .filter(|i| i.status.as_deref().is_none_or(|s| s == "available"))
        .filter_map(|i| {
            let id = i.name.clone().unwrap_or_else(|| i.id.to_string());
            seen.insert(id.clone()).then(|| Image {
                name: if i.description.is_empty() {
                    id.clone()
                } else {
                    i.description.clone()
                },
                id,
                architecture: "x86_64".into(),
                deprecated: false,
                login_user: None,
            })
        })
        .collect()
}

/// Locations as regions; a region is available when some offer can be ordered there.
pub(super) fn regions(locations: Vec<Location>, offers: &[Offer]) -> Vec<Region> {
    locations
        .into_iter()
        .map(|l| {
            let available = offers
                .iter()
                .any(|o| !o.deprecated && o.regions.contains(&l.name));
            let name = match (l.city.is_empty(), l.description.is_empty()) {
                (false, _) => format!("{} ({})", l.city, l.name),
                (true, false) => l.description.clone(),
                (true, true) => l.name.clone(),
            };
            Region {
                id: l.name,
                name,
                available,
            }
        })
        .collect()
}

// ---- servers ----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct Server {
    pub id: u64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub public_net: PublicNet,
    pub server_type: NameOnly,
    #[serde(default)]
    pub location: Option<NameOnly>,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
    #[serde(default)]
    pub image: Option<ServerImage>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct PublicNet {
    #[serde(default)]
    pub ipv4: Option<IpJson>,
    #[serde(default)]
    pub ipv6: Option<IpJson>,
}

#[derive(Debug, Deserialize)]
pub(super) struct IpJson {
    pub ip: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct NameOnly {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Datacenter {
    pub location: NameOnly,
}

#[derive(Debug, Deserialize)]
pub(super) struct ServerImage {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /servers`.
#[derive(Debug, Serialize)]
pub(super) struct CreateServer<'a> {
    pub name: &'a str,
    pub server_type: &'a str,
    pub image: &'a str,
    pub location: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<Value>,
    pub labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<&'a str>,
    pub start_after_create: bool,
}

/// Key ids go out as numbers (what Hetzner returns); anything else is sent as a name,
/// which the API also accepts.
pub(super) fn key_ref(id: &str) -> Value {
    match id.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(id),
    }
}

/// Hetzner's server status as Legion's. `migrating` has no Legion counterpart (the
/// server may be running or off while it moves), so it reads as unknown.
pub(super) fn server_status(status: &str) -> ServerStatus {
    match status {
        "initializing" => ServerStatus::Provisioning,
        "starting" => ServerStatus::Starting,
        "running" => ServerStatus::Running,
        "stopping" => ServerStatus::Stopping,
        "off" => ServerStatus::Off,
        "deleting" => ServerStatus::Deleting,
        "rebuilding" => ServerStatus::Rebuilding,
        _ => ServerStatus::Unknown,
    }
}

/// The server's own address in its IPv6 network: Hetzner assigns a /64 and the server
/// answers on `::1` of it.
fn ipv6_address(network: &str) -> String {
    let prefix = network.split('/').next().unwrap_or(network);
    match prefix.parse::<Ipv6Addr>() {
        Ok(addr) => {
            let mut seg = addr.segments();
            if seg[4..].iter().all(|s| *s == 0) {
                seg[7] = 1;
            }
            Ipv6Addr::from(seg).to_string()
        }
        Err(_) => prefix.to_string(),
    }
}

pub(super) fn observed_server(s: Server) -> ObservedServer {
    let region = s
        .location
        .map(|l| l.name)
        .or(s.datacenter.map(|d| d.location.name))
        .unwrap_or_default();
    ObservedServer {
        id: s.id.to_string(),
        name: s.name,
        status: server_status(&s.status),
        ipv4: s.public_net.ipv4.map(|i| i.ip),
        ipv6: s.public_net.ipv6.map(|i| ipv6_address(&i.ip)),
        region,
        offer: s.server_type.name,
        image: s.image.map(|i| i.name.unwrap_or_else(|| i.id.to_string())),
        labels: s.labels,
    }
}

// ---- SSH keys ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct SshKey {
    pub id: u64,
    pub name: String,
    pub public_key: String,
}

/// Two OpenSSH public keys are the same key when type and key data match; the comment
/// does not matter.
pub(super) fn same_public_key(a: &str, b: &str) -> bool {
    let fields = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    fields(a) == fields(b)
}

// ---- firewalls --------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct Firewall {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub rules: Vec<RuleJson>,
    #[serde(default)]
    pub applied_to: Vec<FirewallResource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RuleJson {
    pub direction: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ips: Vec<String>,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FirewallResource {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub server: Option<IdOnly>,
}

#[derive(Debug, Deserialize)]
pub(super) struct IdOnly {
    pub id: u64,
}

/// `{"type": "server", "server": {"id": …}}` for apply/remove.
pub(super) fn server_resources(ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| serde_json::json!({"type": "server", "server": {"id": key_ref(id)}}))
        .collect()
}

/// Legion's inbound allow rule as Hetzner's: direction `in`, no port for ICMP.
pub(super) fn rule_to_hetzner(rule: &FirewallRule) -> RuleJson {
    RuleJson {
        direction: "in".into(),
        source_ips: rule.sources.clone(),
        destination_ips: Vec::new(),
        protocol: rule.protocol.to_string(),
        port: match rule.protocol {
            Protocol::Icmp => None,
            _ => rule.port.clone(),
        },
        description: (!rule.description.is_empty()).then(|| rule.description.clone()),
    }
}

/// Hetzner's rule as Legion's, when Legion can express it: inbound TCP, UDP or ICMP.
/// Outbound and ESP/GRE rules are not part of Legion's model: they are left out of what
/// Legion compares and kept as they are when it writes the list ([`foreign_rules`]).
pub(super) fn rule_from_hetzner(rule: &RuleJson) -> Option<FirewallRule> {
    if rule.direction != "in" {
        return None;
    }
    let protocol = match rule.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        _ => return None,
    };
    Some(FirewallRule {
        protocol,
        port: match protocol {
            Protocol::Icmp => None,
            _ => rule.port.clone(),
        },
        sources: rule.source_ips.clone(),
        description: rule.description.clone().unwrap_or_default(),
    })
}

/// The rules of a firewall that Legion does not model, which a rewrite keeps.
pub(super) fn foreign_rules(rules: Vec<RuleJson>) -> Vec<RuleJson> {
    rules
        .into_iter()
        .filter(|r| rule_from_hetzner(r).is_none())
        .collect()
}

pub(super) fn observed_firewall(f: Firewall) -> ObservedFirewall {
    ObservedFirewall {
        id: f.id.to_string(),
        name: f.name,
        rules: f.rules.iter().filter_map(rule_from_hetzner).collect(),
        // Only servers applied directly: those applied through a label selector cannot
        // be removed one by one.
        applied_to: f
            .applied_to
            .iter()
            .filter(|r| r.kind == "server")
            .filter_map(|r| r.server.as_ref().map(|s| s.id.to_string()))
            .collect(),
        labels: f.labels,
    }
}

/// Rules compared as a set: order of rules and of sources does not matter.
pub(super) fn rule_set(rules: &[FirewallRule]) -> BTreeSet<FirewallRule> {
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

// ---- DNS --------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(super) struct Zone {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub ttl: u32,
    #[serde(default)]
    pub authoritative_nameservers: Option<ZoneNameservers>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ZoneNameservers {
    #[serde(default)]
    pub assigned: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RrSetJson {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    /// `null`: the zone's default TTL.
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub records: Vec<RecordJson>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RecordJson {
    pub value: String,
}

/// The RRset name Hetzner expects: lower case, `@` for the apex, relative to the zone.
pub(super) fn rrset_name(name: &str) -> String {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() { "@".into() } else { n }
}

/// Hetzner wants TXT data as quoted strings; Legion keeps the text itself.
fn quote_txt(value: &str) -> String {
    if value.starts_with('"') && value.ends_with('"') && value.len() >= 2 {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A single quoted string back to its text; several strings (long TXT data split in
/// 255-byte chunks) are kept as Hetzner shows them.
fn unquote_txt(value: &str) -> String {
    let inner = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner,
        None => return value.to_string(),
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => out.push(n),
                None => return value.to_string(),
            },
            '"' => return value.to_string(),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn records_for(rrset: &RrSet) -> Vec<RecordJson> {
    rrset
        .values
        .iter()
        .map(|v| RecordJson {
            value: match rrset.rtype {
                RecordType::TXT => quote_txt(v),
                _ => v.clone(),
            },
        })
        .collect()
}

/// Hetzner's RRset as Legion's; `None` for types Legion does not model (SOA, PTR, …).
pub(super) fn rrset_from(r: &RrSetJson, zone_ttl: u32) -> Option<RrSet> {
    let rtype: RecordType = r.rtype.parse().ok()?;
    Some(RrSet {
        name: r.name.clone(),
        rtype,
        ttl: r.ttl.unwrap_or(zone_ttl),
        values: r
            .records
            .iter()
            .map(|rec| match rtype {
                RecordType::TXT => unquote_txt(&rec.value),
                _ => rec.value.clone(),
            })
            .collect(),
    })
}

pub(super) fn observed_zone(z: Zone, rrsets: &[RrSetJson]) -> ObservedZone {
    ObservedZone {
        id: z.id.to_string(),
        nameservers: z
            .authoritative_nameservers
            .unwrap_or_default()
            .assigned
            .iter()
            .map(|n| n.trim_end_matches('.').to_string())
            .collect(),
        rrsets: rrsets.iter().filter_map(|r| rrset_from(r, z.ttl)).collect(),
        name: z.name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `GET /server_types` as the hcloud SDK fixtures show it, plus an Arm type and the
    /// per-location availability of the current API.
    fn server_types() -> Vec<ServerType> {
        let body = json!({"server_types": [
            {
                "id": 1, "name": "cx11", "description": "CX11", "cores": 1, "memory": 1,
                "disk": 25,
                "prices": [{"location": "fsn1",
                    "price_hourly": {"net": "1.0000000000", "gross": "1.1900000000000000"},
                    "price_monthly": {"net": "1.0000000000", "gross": "1.1900000000000000"}}],
                "storage_type": "local", "cpu_type": "shared", "architecture": "x86",
                "included_traffic": 21_990_232_555_520_u64, "deprecated": true,
                "deprecation": {"announced": "2023-06-01T00:00:00Z",
                                "unavailable_after": "2023-09-01T00:00:00Z"}
            },
            {
                "id": 2, "name": "cx21", "description": "CX21", "cores": 2, "memory": 4.0,
                "disk": 40,
                "prices": [
                    {"location": "fsn1",
                     "price_hourly": {"net": "0.0080000000", "gross": "0.0095200000000000"},
                     "price_monthly": {"net": "4.9000000000", "gross": "5.8310000000000000"}},
                    {"location": "nbg1",
                     "price_hourly": {"net": "0.0080000000", "gross": "0.0095200000000000"},
                     "price_monthly": {"net": "4.9000000000", "gross": "5.8310000000000000"}}
                ],
                "storage_type": "local", "cpu_type": "shared", "architecture": "x86",
                "included_traffic": 21_990_232_555_520_u64, "deprecated": false, "deprecation": null,
                "locations": [
                    {"id": 1, "name": "nbg1", "deprecation": null, "available": true,
                     "recommended": false},
                    {"id": 2, "name": "fsn1",
                     "deprecation": {"announced": "2023-06-01T00:00:00Z",
                                     "unavailable_after": "2023-09-01T00:00:00Z"},
                     "available": true, "recommended": true}
                ]
            },
            {
                "id": 45, "name": "cax11", "description": "CAX11", "cores": 2, "memory": 4.0,
                "disk": 40, "prices": [], "storage_type": "local", "cpu_type": "shared",
                "architecture": "arm", "deprecated": false, "deprecation": null
            }
        ], "meta": {"pagination": {"page": 1, "per_page": 50, "previous_page": null,
                    "next_page": null, "last_page": 1, "total_entries": 3}}});
        serde_json::from_value(body["server_types"].clone()).unwrap()
    }

    #[test]
    fn server_types_become_offers() {
        let offers = offers(server_types());
        assert_eq!(offers.len(), 2, "the Arm type stays out");
        let cx11 = &offers[0];
        assert!(cx11.deprecated);
        assert!(cx11.regions.is_empty());
        let cx21 = &offers[1];
        assert_eq!(cx21.id, "cx21");
        assert_eq!((cx21.cores, cx21.memory_mb, cx21.disk_gb), (2, 4096, 40));
        assert!(!cx21.deprecated);
        // fsn1 is deprecated for this type, so only nbg1 can be ordered.
        assert_eq!(cx21.regions, vec!["nbg1".to_string()]);
        assert!((cx21.hourly_price["fsn1"] - 0.00952).abs() < 1e-9);
        assert!(cx21.variables.is_empty());
    }

    #[test]
    fn images_skip_deprecated_and_arm_builds() {
        let body = json!([
            {"id": 4711, "type": "system", "status": "available", "name": "ubuntu-24.04",
             "description": "Ubuntu 24.04", "image_size": null, "disk_size": 5,
             "created": "2024-04-25T00:00:00+00:00", "created_from": null, "bound_to": null,
             "os_flavor": "ubuntu", "os_version": "24.04", "rapid_deploy": true,
             "protection": {"delete": false}, "deprecated": null, "deleted": null,
             "labels": {}, "architecture": "x86"},
            {"id": 4712, "type": "system", "status": "available", "name": "ubuntu-24.04",
             "description": "Ubuntu 24.04", "os_flavor": "ubuntu", "architecture": "arm",
             "deprecated": null},
            {"id": 1, "type": "system", "status": "available", "name": "ubuntu-16.04",
             "description": "Ubuntu 16.04", "architecture": "x86",
             "deprecated": "2018-02-28T00:00:00+00:00"}
        ]);
        let images = images(serde_json::from_value(body).unwrap());
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].id, "ubuntu-24.04");
        assert_eq!(images[0].name, "Ubuntu 24.04");
        assert_eq!(images[0].architecture, "x86_64");
    }

    #[test]
    fn locations_are_available_where_an_offer_is() {
        let offers = offers(server_types());
        let locs: Vec<Location> = serde_json::from_value(json!([
            {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE",
             "city": "Falkenstein", "latitude": 50.47612, "longitude": 12.370071,
             "network_zone": "eu-central"},
            {"id": 2, "name": "nbg1", "description": "Nuremberg DC Park 1", "country": "DE",
             "city": "Nuremberg", "latitude": 49.452102, "longitude": 11.076665,
             "network_zone": "eu-central"}
        ]))
        .unwrap();
        let regions = regions(locs, &offers);
        assert_eq!(regions[0].id, "fsn1");
        assert!(!regions[0].available);
        assert_eq!(regions[1].name, "Nuremberg (nbg1)");
        assert!(regions[1].available);
    }

    #[test]
    fn a_server_maps_to_the_observed_server() {
        // The hcloud SDK's `response_simple_server` fixture, with Legion's labels.
        let body = json!({
            "id": 42, "name": "my-server", "status": "running",
            "created": "2016-01-30T23:50+00:00",
            "public_net": {
                "ipv4": {"ip": "1.2.3.4", "id": 1, "blocked": false,
                         "dns_ptr": "server01.example.com"},
                "ipv6": {"ip": "2001:db8::/64", "blocked": false, "id": 2,
                         "dns_ptr": [{"ip": "2001:db8::1", "dns_ptr": "server.example.com"}]},
                "floating_ips": [478], "firewalls": [{"id": 38, "status": "applied"}]
            },
            "private_net": [],
            "server_type": {"id": 1, "name": "cx22", "description": "CX22", "cores": 2,
                            "memory": 4, "disk": 40, "prices": [], "storage_type": "local",
                            "cpu_type": "shared"},
            "location": {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1",
                         "country": "DE", "city": "Falkenstein", "network_zone": "eu-central"},
            "image": {"id": 4711, "type": "system", "status": "available",
                      "name": "ubuntu-24.04", "description": "Ubuntu 24.04"},
            "iso": null, "rescue_enabled": false, "locked": false, "backup_window": "22-02",
            "outgoing_traffic": 123456, "ingoing_traffic": 123456, "included_traffic": 654321,
            "primary_disk_size": 40, "protection": {"delete": false, "rebuild": false},
            "labels": {"legion-install": "i1", "legion-node": "uid-1"}, "volumes": []
        });
        let s = observed_server(serde_json::from_value(body).unwrap());
        assert_eq!(s.id, "42");
        assert_eq!(s.status, ServerStatus::Running);
        assert_eq!(s.ipv4.as_deref(), Some("1.2.3.4"));
        assert_eq!(s.ipv6.as_deref(), Some("2001:db8::1"));
        assert_eq!(s.region, "fsn1");
        assert_eq!(s.offer, "cx22");
        assert_eq!(s.image.as_deref(), Some("ubuntu-24.04"));
        assert_eq!(s.node_uid(), Some("uid-1"));
    }

    #[test]
    fn an_ipv6_only_server_in_an_old_answer_still_maps() {
        let body = json!({
            "id": 7, "name": "v6", "status": "initializing",
            "public_net": {"ipv4": null, "ipv6": {"ip": "2a01:4f8:1c1c:1234::/64"}},
            "server_type": {"name": "cpx11"},
            "datacenter": {"name": "nbg1-dc3", "location": {"name": "nbg1"}},
            "image": null, "labels": {}
        });
        let s = observed_server(serde_json::from_value(body).unwrap());
        assert_eq!(s.status, ServerStatus::Provisioning);
        assert_eq!(s.ipv4, None);
        assert_eq!(s.address(), Some("2a01:4f8:1c1c:1234::1"));
        assert_eq!(s.region, "nbg1");
        assert_eq!(s.image, None);
    }

    #[test]
    fn every_hetzner_status_has_a_legion_status() {
        let cases = [
            ("initializing", ServerStatus::Provisioning),
            ("starting", ServerStatus::Starting),
            ("running", ServerStatus::Running),
            ("stopping", ServerStatus::Stopping),
            ("off", ServerStatus::Off),
            ("deleting", ServerStatus::Deleting),
            ("rebuilding", ServerStatus::Rebuilding),
            ("migrating", ServerStatus::Unknown),
            ("unknown", ServerStatus::Unknown),
        ];
        for (h, l) in cases {
            assert_eq!(server_status(h), l, "{h}");
        }
    }

    #[test]
    fn create_request_carries_labels_and_numeric_key_ids() {
        let labels: BTreeMap<String, String> =
            [("legion-node".to_string(), "uid-1".to_string())].into();
        let body = CreateServer {
            name: "web-1",
            server_type: "cx22",
            image: "ubuntu-24.04",
            location: "fsn1",
            ssh_keys: vec![key_ref("123"), key_ref("legion")],
            labels: &labels,
            user_data: None,
            start_after_create: true,
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["ssh_keys"], json!([123, "legion"]));
        assert_eq!(v["labels"]["legion-node"], "uid-1");
        assert!(v.get("user_data").is_none());
        assert_eq!(v["start_after_create"], true);
    }

    #[test]
    fn firewall_rules_round_trip() {
        let legion = vec![
            FirewallRule {
                protocol: Protocol::Tcp,
                port: Some("22".into()),
                sources: vec!["0.0.0.0/0".into(), "::/0".into()],
                description: "ssh".into(),
            },
            FirewallRule {
                protocol: Protocol::Udp,
                port: Some("1000-2000".into()),
                sources: vec!["10.0.0.0/8".into()],
                description: String::new(),
            },
            FirewallRule {
                protocol: Protocol::Icmp,
                port: None,
                sources: vec!["0.0.0.0/0".into()],
                description: String::new(),
            },
        ];
        let wire: Vec<RuleJson> = legion.iter().map(rule_to_hetzner).collect();
        let v = serde_json::to_value(&wire).unwrap();
        assert_eq!(
            v[0],
            json!({"direction": "in", "source_ips": ["0.0.0.0/0", "::/0"],
                   "protocol": "tcp", "port": "22", "description": "ssh"})
        );
        assert_eq!(v[1]["port"], "1000-2000");
        assert!(v[2].get("port").is_none());
        assert!(v[2].get("description").is_none());
        let back: Vec<FirewallRule> = wire.iter().filter_map(rule_from_hetzner).collect();
        assert_eq!(back, legion);
    }

    #[test]
    fn a_firewall_maps_with_direct_servers_and_inbound_rules_only() {
        // The shape of the hcloud SDK firewall fixture.
        let body = json!({
            "id": 38, "name": "Corporate Intranet Protection", "labels": {},
            "created": "2016-01-30T23:55:00+00:00",
            "rules": [
                {"direction": "in", "source_ips": ["28.239.13.1/32", "28.239.14.0/24",
                 "ff21:1eac:9a3b:ee58:5ca:990c:8bc9:c03b/128"], "destination_ips": [],
                 "protocol": "tcp", "port": "80", "description": "allow http in"},
                {"direction": "out", "source_ips": [], "destination_ips": ["28.239.13.1/32"],
                 "protocol": "tcp", "port": "80", "description": "allow http out"},
                {"direction": "in", "source_ips": ["0.0.0.0/0"], "destination_ips": [],
                 "protocol": "esp", "port": null, "description": null}
            ],
            "applied_to": [
                {"type": "server", "server": {"id": 42}},
                {"type": "label_selector", "label_selector": {"selector": "env=prod"},
                 "applied_to_resources": [{"type": "server", "server": {"id": 43}}]}
            ]
        });
        let f = observed_firewall(serde_json::from_value(body).unwrap());
        assert_eq!(f.id, "38");
        assert_eq!(f.applied_to, vec!["42".to_string()]);
        assert_eq!(f.rules.len(), 1);
        assert_eq!(f.rules[0].port.as_deref(), Some("80"));
        assert_eq!(f.rules[0].description, "allow http in");
        let body = json!([{"type": "server", "server": {"id": 42}}]);
        assert_eq!(
            serde_json::to_value(server_resources(&["42".into()])).unwrap(),
            body
        );
    }

    #[test]
    fn a_zone_maps_with_its_rrsets() {
        // The hcloud SDK's zone and rrset fixtures.
        let zone = json!({
            "id": 42, "name": "example1.com", "created": "2016-01-30T23:55:00+00:00",
            "mode": "primary", "ttl": 10800, "protection": {"delete": false},
            "labels": {"key": "value"},
            "primary_nameservers": [{"address": "198.51.100.1", "port": 53}],
            "record_count": 0, "status": "ok", "registrar": "hetzner",
            "authoritative_nameservers": {
                "assigned": ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.",
                             "helium.ns.hetzner.de."],
                "delegated": [], "delegation_last_check": "2016-01-30T23:55:00+00:00",
                "delegation_status": "valid"}
        });
        let rrsets = json!([
            {"zone": 42, "id": "www/A", "name": "www", "type": "A", "ttl": 3600,
             "labels": {"key": "value"}, "protection": {"change": false},
             "records": [{"value": "198.51.100.1", "comment": "web server"}]},
            {"zone": 42, "id": "@/TXT", "name": "@", "type": "TXT", "ttl": null,
             "labels": {}, "protection": {"change": false},
             "records": [{"value": "\"v=spf1 -all\""}]},
            {"zone": 42, "id": "@/SOA", "name": "@", "type": "SOA", "ttl": 3600,
             "labels": {}, "protection": {"change": false},
             "records": [{"value": "hydrogen.ns.hetzner.com. dns.hetzner.com. 1 86400 10800 3600000 3600"}]}
        ]);
        let rrsets: Vec<RrSetJson> = serde_json::from_value(rrsets).unwrap();
        let z = observed_zone(serde_json::from_value(zone).unwrap(), &rrsets);
        assert_eq!(z.id, "42");
        assert_eq!(z.name, "example1.com");
        assert_eq!(z.nameservers[0], "hydrogen.ns.hetzner.com");
        assert_eq!(z.rrsets.len(), 2, "SOA is not Legion's");
        assert_eq!(
            z.rrsets[0],
            RrSet {
                name: "www".into(),
                rtype: RecordType::A,
                ttl: 3600,
                values: vec!["198.51.100.1".into()],
            }
        );
        // A null TTL is the zone's default; TXT text comes back unquoted.
        assert_eq!(z.rrsets[1].ttl, 10800);
        assert_eq!(z.rrsets[1].values, vec!["v=spf1 -all".to_string()]);
    }

    #[test]
    fn txt_values_are_quoted_for_hetzner() {
        let r = RrSet {
            name: "@".into(),
            rtype: RecordType::TXT,
            ttl: 300,
            values: vec!["say \"hi\"".into(), "\"already\"".into()],
        };
        let wire: Vec<String> = records_for(&r).into_iter().map(|r| r.value).collect();
        assert_eq!(
            wire,
            vec![r#""say \"hi\"""#.to_string(), "\"already\"".into()]
        );
        assert_eq!(unquote_txt(&wire[0]), "say \"hi\"");
        // Split strings stay as they are.
        assert_eq!(unquote_txt(r#""a" "b""#), r#""a" "b""#);
        assert_eq!(rrset_name("WWW."), "www");
        assert_eq!(rrset_name(""), "@");
    }
}
