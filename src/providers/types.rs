//! Legion's normalized provider types.
//!
//! Every provider module maps its own API shapes into these types; nothing outside a
//! provider module sees a provider's JSON. The engine, the faces and the tests only speak
//! these.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Labels Legion puts on every resource it creates, so ownership can be proven by reading
/// the provider back (ambiguous-write recovery, adoption after a crash).
pub const LABEL_MANAGED: &str = "legion-managed";
pub const LABEL_INSTALL: &str = "legion-install";
pub const LABEL_NODE: &str = "legion-node";
pub const LABEL_CLUSTER: &str = "legion-cluster";

/// A provider's catalog: where it can run servers, what sizes, which images.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub regions: Vec<Region>,
    pub offers: Vec<Offer>,
    pub images: Vec<Image>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub available: bool,
}

/// An instance line. Fixed-size providers have offers with no variables; configurable
/// providers (or the manual provider) add variables such as a disk size or a host address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: String,
    pub name: String,
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    /// Hourly price in the provider's currency, per region where it differs.
    pub hourly_price: BTreeMap<String, f64>,
    /// Regions where the offer can be ordered now.
    pub regions: Vec<String>,
    pub deprecated: bool,
    pub variables: Vec<OfferVariable>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferVariable {
    pub id: String,
    pub label: String,
    pub default: Option<String>,
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub architecture: String,
    pub deprecated: bool,
    /// Who the image logs in as, when the provider says (OVHcloud's `user`: `ubuntu`,
    /// `debian`, ...); `None`: the provider module's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_user: Option<String>,
}

/// How a provider module picks defaults when the operator does not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogPolicy {
    pub default_image: String,
    pub default_region: Option<String>,
    pub default_offer: OfferSelector,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OfferSelector {
    /// This offer when it is available in the region, else the cheapest that fits.
    Preferred {
        id: String,
        min_cores: u32,
        min_memory_mb: u32,
    },
    Cheapest {
        min_cores: u32,
        min_memory_mb: u32,
    },
}

impl CatalogPolicy {
    /// The region to use when none is given: the policy's, when the catalog offers it.
    pub fn region<'a>(&'a self, catalog: &'a Catalog) -> Option<&'a str> {
        let available = |id: &str| catalog.regions.iter().any(|r| r.id == id && r.available);
        match &self.default_region {
            Some(r) if available(r) => Some(r.as_str()),
            _ => catalog
                .regions
                .iter()
                .find(|r| r.available)
                .map(|r| r.id.as_str()),
        }
    }

    /// The image to use when none is given (or when a tracked image left the catalog).
    pub fn image<'a>(&'a self, catalog: &'a Catalog) -> Option<&'a str> {
        let usable = |id: &str| catalog.images.iter().any(|i| i.id == id && !i.deprecated);
        if usable(&self.default_image) {
            return Some(self.default_image.as_str());
        }
        catalog
            .images
            .iter()
            .find(|i| !i.deprecated)
            .map(|i| i.id.as_str())
    }

    /// The offer to use in `region` when none is given.
    pub fn offer<'a>(&self, catalog: &'a Catalog, region: &str) -> Option<&'a Offer> {
        let orderable = |o: &&Offer| !o.deprecated && o.regions.iter().any(|r| r == region);
        let (preferred, min_cores, min_memory_mb) = match &self.default_offer {
            OfferSelector::Preferred {
                id,
                min_cores,
                min_memory_mb,
            } => (Some(id.as_str()), *min_cores, *min_memory_mb),
            OfferSelector::Cheapest {
                min_cores,
                min_memory_mb,
            } => (None, *min_cores, *min_memory_mb),
        };
        if let Some(id) = preferred
            && let Some(o) = catalog.offers.iter().filter(orderable).find(|o| o.id == id)
        {
            return Some(o);
        }
        let price = |o: &Offer| o.hourly_price.get(region).copied().unwrap_or(f64::MAX);
        catalog
            .offers
            .iter()
            .filter(orderable)
            .filter(|o| o.cores >= min_cores && o.memory_mb >= min_memory_mb)
            .min_by(|a, b| price(a).total_cmp(&price(b)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    #[default]
    Bios,
    Efi,
}

impl fmt::Display for BootMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootMode::Bios => "bios",
            BootMode::Efi => "efi",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentProfile {
    pub default_boot_mode: BootMode,
}

/// What Legion asks a provider to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: String,
    pub region: String,
    pub offer: String,
    pub image: String,
    pub ssh_key_id: Option<String>,
    /// Legion's identity of the node (see the `LABEL_*` constants).
    pub labels: BTreeMap<String, String>,
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    Provisioning,
    Starting,
    Running,
    Stopping,
    Off,
    Rebooting,
    Rebuilding,
    Deleting,
    Unknown,
}

impl fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ServerStatus::Provisioning => "provisioning",
            ServerStatus::Starting => "starting",
            ServerStatus::Running => "running",
            ServerStatus::Stopping => "stopping",
            ServerStatus::Off => "off",
            ServerStatus::Rebooting => "rebooting",
            ServerStatus::Rebuilding => "rebuilding",
            ServerStatus::Deleting => "deleting",
            ServerStatus::Unknown => "unknown",
        };
        f.write_str(s)
    }
}

/// A provider's reading of one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedServer {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub region: String,
    pub offer: String,
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ObservedServer {
    pub fn node_uid(&self) -> Option<&str> {
        self.labels.get(LABEL_NODE).map(String::as_str)
    }
    pub fn address(&self) -> Option<&str> {
        self.ipv4.as_deref().or(self.ipv6.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
    TXT,
    MX,
    NS,
    CAA,
    SRV,
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A record type Legion does not manage; holds the name as given, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record type {0:?}")]
pub struct UnknownRecordType(pub String);

impl std::str::FromStr for RecordType {
    type Err = UnknownRecordType;
    fn from_str(s: &str) -> Result<Self, UnknownRecordType> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "A" => RecordType::A,
            "AAAA" => RecordType::AAAA,
            "CNAME" => RecordType::CNAME,
            "TXT" => RecordType::TXT,
            "MX" => RecordType::MX,
            "NS" => RecordType::NS,
            "CAA" => RecordType::CAA,
            "SRV" => RecordType::SRV,
            other => return Err(UnknownRecordType(other.to_string())),
        })
    }
}

/// One RRset: every value of one (name, type) in a zone. `name` is relative to the zone,
/// `@` for the apex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RrSet {
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedZone {
    pub id: String,
    pub name: String,
    pub nameservers: Vec<String>,
    pub rrsets: Vec<RrSet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        })
    }
}

/// An inbound allow rule. Firewalls in Legion are allow-lists for inbound traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FirewallRule {
    pub protocol: Protocol,
    /// `"22"`, `"4413"`, `"8000-8100"`; `None` for ICMP.
    pub port: Option<String>,
    /// CIDRs; `0.0.0.0/0` and `::/0` for anywhere.
    pub sources: Vec<String>,
    pub description: String,
}

impl fmt::Display for FirewallRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.protocol)?;
        if let Some(p) = &self.port {
            write!(f, " {p}")?;
        }
        write!(f, " from {}", self.sources.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedFirewall {
    pub id: String,
    pub name: String,
    pub rules: Vec<FirewallRule>,
    pub applied_to: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedDomain {
    pub name: String,
    pub nameservers: Vec<String>,
}

/// How to stop a server. Legion's `stop` is graceful; the provider module falls back to a
/// hard power-off only when the provider has no graceful shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopMode {
    Graceful,
    Hard,
}
