//! The simulated cloud's resources as plain data, and the operations on them.
//!
//! This is the functional core of the `mock` provider: every operation is a plain
//! function over [`World`] that either changes it or refuses with the error a real cloud
//! would give. It owns no clock, no randomness and no I/O; latency, faults and persistence
//! live in `cloud.rs`. The shapes here are the simulated provider's own and are converted
//! to the normalized types before they leave the mock module.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::providers::{
    Catalog, ErrorKind, FirewallRule, Image, LABEL_INSTALL, ObservedDomain, ObservedFirewall,
    ObservedServer, ObservedZone, Offer, ProviderError, ProviderResult, RecordType, Region, RrSet,
    ServerSpec, ServerStatus,
};

pub const DISPLAY_NAME: &str = "Simulated cloud";
pub const ZONE_NAMESERVERS: [&str; 2] = ["ns1.sim.invalid", "ns2.sim.invalid"];
pub const REGISTRAR_NAMESERVERS: [&str; 1] = ["registrar.sim.invalid"];

/// `(id, name, available)`.
const REGIONS: [(&str, &str, bool); 3] = [
    ("sim-east", "Simulated East", true),
    ("sim-west", "Simulated West", true),
    ("sim-north", "Simulated North", false),
];

struct OfferRow {
    id: &'static str,
    name: &'static str,
    cores: u32,
    memory_mb: u32,
    disk_gb: u32,
    hourly: f64,
    deprecated: bool,
}

const OFFERS: [OfferRow; 4] = [
    OfferRow {
        id: "sim-small",
        name: "Sim Small",
        cores: 1,
        memory_mb: 1024,
        disk_gb: 20,
        hourly: 0.005,
        deprecated: false,
    },
    OfferRow {
        id: "sim-medium",
        name: "Sim Medium",
        cores: 2,
        memory_mb: 4096,
        disk_gb: 40,
        hourly: 0.012,
        deprecated: false,
    },
    OfferRow {
        id: "sim-large",
        name: "Sim Large",
        cores: 4,
        memory_mb: 8192,
        disk_gb: 80,
        hourly: 0.024,
        deprecated: false,
    },
    OfferRow {
        id: "sim-legacy",
        name: "Sim Legacy",
        cores: 1,
        memory_mb: 512,
        disk_gb: 10,
        hourly: 0.004,
        deprecated: true,
    },
];

/// `(id, name, deprecated)`.
const IMAGES: [(&str, &str, bool); 3] = [
    ("debian-12", "Debian 12", false),
    ("ubuntu-24.04", "Ubuntu 24.04", false),
    ("debian-11", "Debian 11", true),
];

/// The simulated provider's catalog, already in Legion's normalized shape.
pub fn catalog() -> Catalog {
    let orderable_in: Vec<String> = REGIONS
        .iter()
        .filter(|r| r.2)
        .map(|r| r.0.to_string())
        .collect();
    Catalog {
        regions: REGIONS
            .iter()
            .map(|&(id, name, available)| Region {
                id: id.into(),
                name: name.into(),
                available,
            })
            .collect(),
        offers: OFFERS
            .iter()
            .map(|o| {
                let regions = if o.deprecated {
                    Vec::new()
                } else {
                    orderable_in.clone()
                };
                Offer {
                    id: o.id.into(),
                    name: o.name.into(),
                    cores: o.cores,
                    memory_mb: o.memory_mb,
                    disk_gb: o.disk_gb,
                    hourly_price: REGIONS
                        .iter()
                        .map(|r| (r.0.to_string(), o.hourly))
                        .collect(),
                    regions,
                    deprecated: o.deprecated,
                    variables: Vec::new(),
                }
            })
            .collect(),
        images: IMAGES
            .iter()
            .map(|&(id, name, deprecated)| Image {
                id: id.into(),
                name: name.into(),
                architecture: "x86_64".into(),
                deprecated,
                login_user: None,
            })
            .collect(),
    }
}

pub fn error(kind: ErrorKind, code: &str, message: impl Into<String>) -> ProviderError {
    let status = match kind {
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::InvalidInput => 422,
        ErrorKind::RateLimited => 429,
        ErrorKind::Unavailable => 503,
        ErrorKind::Unauthorized => 401,
        ErrorKind::Forbidden => 403,
        ErrorKind::Locked => 423,
        _ => 500,
    };
    ProviderError::new(DISPLAY_NAME, kind, message)
        .with_code(code)
        .with_status(status)
}

fn not_found(what: &str, id: &str) -> ProviderError {
    error(
        ErrorKind::NotFound,
        "not_found",
        format!("{what} {id} not found"),
    )
}

fn invalid(message: impl Into<String>) -> ProviderError {
    error(ErrorKind::InvalidInput, "invalid_input", message)
}

fn taken(what: &str, name: &str) -> ProviderError {
    error(
        ErrorKind::Conflict,
        "uniqueness_error",
        format!("{what} name {name:?} is already used"),
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimServer {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub region: String,
    pub offer: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

impl SimServer {
    pub fn observed(&self) -> ObservedServer {
        ObservedServer {
            id: self.id.clone(),
            name: self.name.clone(),
            status: self.status,
            ipv4: self.ipv4.clone(),
            ipv6: self.ipv6.clone(),
            region: self.region.clone(),
            offer: self.offer.clone(),
            image: Some(self.image.clone()),
            labels: self.labels.clone(),
        }
    }
}

/// An SSH key as the simulated cloud stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockKey {
    pub id: String,
    pub name: String,
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimZone {
    pub id: String,
    pub name: String,
    pub rrsets: Vec<RrSet>,
}

impl SimZone {
    pub fn observed(&self) -> ObservedZone {
        ObservedZone {
            id: self.id.clone(),
            name: self.name.clone(),
            nameservers: ZONE_NAMESERVERS.iter().map(|s| s.to_string()).collect(),
            rrsets: self.rrsets.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimFirewall {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<FirewallRule>,
    pub applied_to: Vec<String>,
}

impl SimFirewall {
    pub fn observed(&self) -> ObservedFirewall {
        ObservedFirewall {
            id: self.id.clone(),
            name: self.name.clone(),
            rules: self.rules.clone(),
            applied_to: self.applied_to.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// A server power action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    PowerOn,
    Shutdown,
    PowerOff,
    Reboot,
    Rebuild {
        image: String,
    },
    /// Hetzner's `change_type`: the server must be off; it stays off.
    ChangeType {
        offer: String,
    },
}

impl Action {
    /// The action's name in the simulated REST path.
    pub fn path_name(&self) -> &'static str {
        match self {
            Action::PowerOn => "poweron",
            Action::Shutdown => "shutdown",
            Action::PowerOff => "poweroff",
            Action::Reboot => "reboot",
            Action::Rebuild { .. } => "rebuild",
            Action::ChangeType { .. } => "change_type",
        }
    }
}

/// Everything the simulated cloud holds; this is what is saved to `mock-cloud.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct World {
    /// Last number handed out per id prefix (`sv`, `key`, `zn`, `fw`).
    pub counters: BTreeMap<String, u64>,
    pub servers: Vec<SimServer>,
    pub keys: Vec<MockKey>,
    pub zones: Vec<SimZone>,
    pub firewalls: Vec<SimFirewall>,
    pub domains: Vec<ObservedDomain>,
    /// Where each server is in `servers`, by id: a lookup per call made a fleet's calls
    /// O(servers) each. Not saved; rebuilt when it no longer matches `servers`.
    #[serde(skip)]
    index: ServerIndex,
}

/// Server positions by id. Part of no comparison or copy: it is a cache.
#[derive(Debug, Default)]
struct ServerIndex(std::sync::Mutex<HashMap<String, usize>>);

impl Clone for ServerIndex {
    fn clone(&self) -> Self {
        ServerIndex::default()
    }
}

impl PartialEq for ServerIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Two OpenSSH public keys are the same key when type and key data match; the comment
/// does not matter.
pub fn same_public_key(a: &str, b: &str) -> bool {
    let fields = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    fields(a) == fields(b)
}

/// Rules compared as a set: order of rules and of sources does not matter.
pub fn rule_set(rules: &[FirewallRule]) -> BTreeSet<FirewallRule> {
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

/// The same RRset: name, type and TTL equal, values equal as a set.
pub fn same_rrset(a: &RrSet, b: &RrSet) -> bool {
    let values = |r: &RrSet| r.values.iter().cloned().collect::<BTreeSet<_>>();
    a.name == b.name && a.rtype == b.rtype && a.ttl == b.ttl && values(a) == values(b)
}

fn addresses(n: u64) -> (Option<String>, String) {
    // Documentation ranges only (RFC 5737, RFC 3849): a simulated address can never
    // reach a real machine.
    let v4 = match n {
        1..=254 => Some(format!("198.51.100.{n}")),
        255..=508 => Some(format!("203.0.113.{}", n - 254)),
        509..=762 => Some(format!("192.0.2.{}", n - 508)),
        _ => None,
    };
    (v4, format!("2001:db8::{n:x}"))
}

/// `have` carries every label of `want` with the same value.
pub fn has_labels(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The server is the one `spec` asked for: same name and every label of the spec (the
/// node's `legion-node` uid among them). Legion's proof that a create whose response was
/// lost did happen.
pub fn matches_spec(server: &ObservedServer, spec: &ServerSpec) -> bool {
    server.name == spec.name && has_labels(&server.labels, &spec.labels)
}

impl World {
    fn next_number(&mut self, prefix: &str) -> u64 {
        let n = self.counters.entry(prefix.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    /// The position of server `id`, from the index; rebuilt first when it does not
    /// hold every server (one was added, removed, or `servers` was replaced).
    fn position(&self, id: &str) -> Option<usize> {
        let mut index = self.index.0.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = index.len() == self.servers.len()
            && (self.servers.last()).is_none_or(|s| index.get(&s.id) == Some(&(index.len() - 1)));
        if !fresh {
            index.clear();
            index.extend(
                self.servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.id.clone(), i)),
            );
        }
        let i = *index.get(id)?;
        // A position that no longer holds `id` (servers edited in place): look it up.
        (self.servers.get(i).is_some_and(|s| s.id == id))
            .then_some(i)
            .or_else(|| self.servers.iter().position(|s| s.id == id))
    }

    pub fn server(&self, id: &str) -> Option<&SimServer> {
        self.servers.get(self.position(id)?)
    }

    fn server_mut(&mut self, id: &str) -> ProviderResult<&mut SimServer> {
        self.position(id)
            .and_then(|i| self.servers.get_mut(i))
            .ok_or_else(|| not_found("server", id))
    }

    pub fn servers_of(&self, install: Option<&str>) -> Vec<ObservedServer> {
        self.servers
            .iter()
            .filter(|s| {
                install.is_none_or(|i| s.labels.get(LABEL_INSTALL).map(String::as_str) == Some(i))
            })
            .map(SimServer::observed)
            .collect()
    }

    pub fn create_server(&mut self, spec: &ServerSpec) -> ProviderResult<ObservedServer> {
        let catalog = catalog();
        if spec.name.trim().is_empty() {
            return Err(invalid("server name must not be empty"));
        }
        match catalog.regions.iter().find(|r| r.id == spec.region) {
            None => return Err(invalid(format!("unknown region {:?}", spec.region))),
            Some(r) if !r.available => {
                return Err(invalid(format!(
                    "region {} is not available (choose sim-east or sim-west)",
                    r.id
                )));
            }
            Some(_) => {}
        }
        match catalog.offers.iter().find(|o| o.id == spec.offer) {
            None => return Err(invalid(format!("unknown offer {:?}", spec.offer))),
            Some(o) if o.deprecated => {
                return Err(invalid(format!(
                    "offer {} is deprecated and can no longer be ordered",
                    o.id
                )));
            }
            Some(o) if !o.regions.contains(&spec.region) => {
                return Err(invalid(format!(
                    "offer {} is not available in {}",
                    o.id, spec.region
                )));
            }
            Some(_) => {}
        }
        if !catalog.images.iter().any(|i| i.id == spec.image) {
            return Err(invalid(format!("unknown image {:?}", spec.image)));
        }
        if let Some(key) = &spec.ssh_key_id
            && !self.keys.iter().any(|k| &k.id == key)
        {
            return Err(invalid(format!("SSH key {key} does not exist")));
        }
        if self.servers.iter().any(|s| s.name == spec.name) {
            return Err(taken("server", &spec.name));
        }
        let n = self.next_number("sv");
        let (ipv4, ipv6) = addresses(n);
        let server = SimServer {
            id: format!("sv-{n}"),
            name: spec.name.clone(),
            status: ServerStatus::Running,
            ipv4,
            ipv6: Some(ipv6),
            region: spec.region.clone(),
            offer: spec.offer.clone(),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
        };
        let observed = server.observed();
        let mut index = self.index.0.lock().unwrap_or_else(|e| e.into_inner());
        if index.len() == self.servers.len() {
            index.insert(server.id.clone(), self.servers.len());
        }
        drop(index);
        self.servers.push(server);
        Ok(observed)
    }

    pub fn act(&mut self, id: &str, action: &Action) -> ProviderResult<()> {
        if let Action::Rebuild { image } = action
            && !catalog().images.iter().any(|i| &i.id == image)
        {
            return Err(invalid(format!("unknown image {image:?}")));
        }
        if let Action::ChangeType { offer } = action {
            let region = self.server_mut(id)?.region.clone();
            match catalog().offers.iter().find(|o| &o.id == offer) {
                None => return Err(invalid(format!("unknown offer {offer:?}"))),
                Some(o) if !o.regions.contains(&region) => {
                    return Err(invalid(format!(
                        "offer {offer} is not available in {region}"
                    )));
                }
                Some(_) => {}
            }
        }
        let server = self.server_mut(id)?;
        match action {
            Action::PowerOn => server.status = ServerStatus::Running,
            Action::Shutdown | Action::PowerOff => server.status = ServerStatus::Off,
            Action::Reboot => {
                if server.status == ServerStatus::Off {
                    return Err(invalid("server is off"));
                }
                server.status = ServerStatus::Running;
            }
            Action::Rebuild { image } => {
                server.image = image.clone();
                server.status = ServerStatus::Running;
            }
            Action::ChangeType { offer } => {
                if server.status != ServerStatus::Off {
                    return Err(invalid(
                        "the server must be off to change its type (stop it first)",
                    ));
                }
                server.offer = offer.clone();
            }
        }
        Ok(())
    }

    pub fn delete_server(&mut self, id: &str) -> ProviderResult<()> {
        let before = self.servers.len();
        self.servers.retain(|s| s.id != id);
        if self.servers.len() == before {
            return Err(not_found("server", id));
        }
        for fw in &mut self.firewalls {
            fw.applied_to.retain(|s| s != id);
        }
        Ok(())
    }

    pub fn create_key(&mut self, name: &str, public_key: &str) -> ProviderResult<String> {
        if name.trim().is_empty() {
            return Err(invalid("SSH key name must not be empty"));
        }
        if public_key.split_whitespace().count() < 2 {
            return Err(invalid("public key is not in OpenSSH format"));
        }
        if self.keys.iter().any(|k| k.name == name) {
            return Err(taken("SSH key", name));
        }
        let id = format!("key-{}", self.next_number("key"));
        self.keys.push(MockKey {
            id: id.clone(),
            name: name.to_string(),
            public_key: public_key.trim().to_string(),
        });
        Ok(id)
    }

    pub fn delete_key(&mut self, id: &str) -> ProviderResult<()> {
        let before = self.keys.len();
        self.keys.retain(|k| k.id != id);
        if self.keys.len() == before {
            return Err(not_found("SSH key", id));
        }
        Ok(())
    }

    pub fn zone(&self, id: &str) -> Option<&SimZone> {
        self.zones.iter().find(|z| z.id == id)
    }

    pub fn zone_named(&self, name: &str) -> Option<&SimZone> {
        let name = name.trim_end_matches('.');
        self.zones
            .iter()
            .find(|z| z.name.eq_ignore_ascii_case(name))
    }

    fn zone_mut(&mut self, id: &str) -> ProviderResult<&mut SimZone> {
        self.zones
            .iter_mut()
            .find(|z| z.id == id)
            .ok_or_else(|| not_found("zone", id))
    }

    pub fn create_zone(&mut self, name: &str) -> ProviderResult<ObservedZone> {
        let name = name.trim_end_matches('.');
        if !name.contains('.') {
            return Err(invalid(format!("{name:?} is not a domain name")));
        }
        if self.zone_named(name).is_some() {
            return Err(taken("zone", name));
        }
        let zone = SimZone {
            id: format!("zn-{}", self.next_number("zn")),
            name: name.to_ascii_lowercase(),
            rrsets: Vec::new(),
        };
        let observed = zone.observed();
        self.zones.push(zone);
        Ok(observed)
    }

    pub fn delete_zone(&mut self, id: &str) -> ProviderResult<()> {
        let before = self.zones.len();
        self.zones.retain(|z| z.id != id);
        if self.zones.len() == before {
            return Err(not_found("zone", id));
        }
        Ok(())
    }

    pub fn set_rrset(&mut self, zone_id: &str, rrset: &RrSet) -> ProviderResult<()> {
        if rrset.values.is_empty() {
            return Err(invalid("an RRset needs at least one value"));
        }
        let zone = self.zone_mut(zone_id)?;
        match zone
            .rrsets
            .iter_mut()
            .find(|r| r.name == rrset.name && r.rtype == rrset.rtype)
        {
            Some(existing) => *existing = rrset.clone(),
            None => zone.rrsets.push(rrset.clone()),
        }
        Ok(())
    }

    pub fn rrset(&self, zone_id: &str, name: &str, rtype: RecordType) -> Option<&RrSet> {
        self.zone(zone_id)?
            .rrsets
            .iter()
            .find(|r| r.name == name && r.rtype == rtype)
    }

    pub fn delete_rrset(
        &mut self,
        zone_id: &str,
        name: &str,
        rtype: RecordType,
    ) -> ProviderResult<()> {
        let zone = self.zone_mut(zone_id)?;
        let before = zone.rrsets.len();
        zone.rrsets
            .retain(|r| !(r.name == name && r.rtype == rtype));
        if zone.rrsets.len() == before {
            return Err(not_found("RRset", &format!("{name} {rtype}")));
        }
        Ok(())
    }

    pub fn firewall(&self, id: &str) -> Option<&SimFirewall> {
        self.firewalls.iter().find(|f| f.id == id)
    }

    fn firewall_mut(&mut self, id: &str) -> ProviderResult<&mut SimFirewall> {
        self.firewalls
            .iter_mut()
            .find(|f| f.id == id)
            .ok_or_else(|| not_found("firewall", id))
    }

    pub fn firewalls_of(&self, install: Option<&str>) -> Vec<ObservedFirewall> {
        self.firewalls
            .iter()
            .filter(|f| {
                install.is_none_or(|i| f.labels.get(LABEL_INSTALL).map(String::as_str) == Some(i))
            })
            .map(SimFirewall::observed)
            .collect()
    }

    pub fn create_firewall(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
        rules: &[FirewallRule],
    ) -> ProviderResult<ObservedFirewall> {
        if name.trim().is_empty() {
            return Err(invalid("firewall name must not be empty"));
        }
        if self.firewalls.iter().any(|f| f.name == name) {
            return Err(taken("firewall", name));
        }
        let fw = SimFirewall {
            id: format!("fw-{}", self.next_number("fw")),
            name: name.to_string(),
            labels: labels.clone(),
            rules: rules.to_vec(),
            applied_to: Vec::new(),
        };
        let observed = fw.observed();
        self.firewalls.push(fw);
        Ok(observed)
    }

    pub fn set_rules(&mut self, id: &str, rules: &[FirewallRule]) -> ProviderResult<()> {
        self.firewall_mut(id)?.rules = rules.to_vec();
        Ok(())
    }

    pub fn attach(&mut self, id: &str, server_ids: &[String]) -> ProviderResult<()> {
        if let Some(missing) = server_ids.iter().find(|s| self.server(s).is_none()) {
            return Err(invalid(format!("server {missing} does not exist")));
        }
        let fw = self.firewall_mut(id)?;
        for s in server_ids {
            if !fw.applied_to.contains(s) {
                fw.applied_to.push(s.clone());
            }
        }
        Ok(())
    }

    pub fn detach(&mut self, id: &str, server_ids: &[String]) -> ProviderResult<()> {
        self.firewall_mut(id)?
            .applied_to
            .retain(|s| !server_ids.contains(s));
        Ok(())
    }

    pub fn delete_firewall(&mut self, id: &str) -> ProviderResult<()> {
        let before = self.firewalls.len();
        self.firewalls.retain(|f| f.id != id);
        if self.firewalls.len() == before {
            return Err(not_found("firewall", id));
        }
        Ok(())
    }

    /// Every domain exists at the simulated registrar: the first look registers it with
    /// the registrar's nameservers. Returns whether the world changed.
    pub fn domain(&mut self, name: &str) -> (ObservedDomain, bool) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(d) = self.domains.iter().find(|d| d.name == name) {
            return (d.clone(), false);
        }
        let d = ObservedDomain {
            name,
            nameservers: REGISTRAR_NAMESERVERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        self.domains.push(d.clone());
        (d, true)
    }

    pub fn set_nameservers(&mut self, name: &str, ns: &[String]) -> ProviderResult<()> {
        if ns.is_empty() {
            return Err(invalid("a domain needs at least one nameserver"));
        }
        let (domain, _) = self.domain(name);
        if let Some(d) = self.domains.iter_mut().find(|d| d.name == domain.name) {
            d.nameservers = ns.to_vec();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
