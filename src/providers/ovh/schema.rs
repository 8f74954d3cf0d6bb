//! OVHcloud's JSON shapes (only the fields Legion reads) and their mapping into Legion's
//! types, plus the encoding of Legion's identity labels into an instance name (the
//! Public Cloud instance API has no labels or tags).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::providers::{
    Image, LABEL_CLUSTER, LABEL_INSTALL, LABEL_MANAGED, LABEL_NODE, ObservedServer, Offer,
    RecordType, Region, RrSet, ServerStatus,
};

/// `{"id", "name"}`, the nested flavor and image of an instance's detail.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Named {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct IpAddress {
    pub ip: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub version: u8,
}

/// An instance as `GET /cloud/project/{sn}/instance` lists it (`flavorId`, `imageId`) or
/// as `GET …/instance/{id}` details it (`flavor`, `image` objects).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Instance {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub region: String,
    #[serde(default, rename = "ipAddresses")]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default, rename = "flavorId")]
    pub flavor_id: Option<String>,
    #[serde(default, rename = "imageId")]
    pub image_id: Option<String>,
    #[serde(default)]
    pub flavor: Option<Named>,
    #[serde(default)]
    pub image: Option<Named>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct PlanCodes {
    #[serde(default)]
    pub hourly: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Flavor {
    pub id: String,
    pub name: String,
    pub region: String,
    #[serde(default)]
    pub vcpus: u32,
    /// Megabytes.
    #[serde(default)]
    pub ram: u32,
    /// Gigabytes.
    #[serde(default)]
    pub disk: u32,
    #[serde(default, rename = "osType")]
    pub os_type: String,
    #[serde(default = "yes")]
    pub available: bool,
    #[serde(default, rename = "planCodes")]
    pub plan_codes: PlanCodes,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ImageJson {
    pub id: String,
    pub name: String,
    pub region: String,
    #[serde(default, rename = "type")]
    pub os_type: String,
    #[serde(default)]
    pub status: String,
    /// Who the image logs in as (`ubuntu`, `debian`, `almalinux`, ...).
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct SshKey {
    pub id: String,
    pub name: String,
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

/// One DNS record of `/domain/zone/{zone}/record/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Record {
    pub id: u64,
    #[serde(default, rename = "subDomain")]
    pub sub_domain: String,
    #[serde(rename = "fieldType")]
    pub field_type: String,
    pub target: String,
    #[serde(default)]
    pub ttl: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ZoneJson {
    pub name: String,
    #[serde(default, rename = "nameServers")]
    pub name_servers: Vec<String>,
}

/// The public price list (`/order/catalog/public/cloud`): hourly plans are addons.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct PriceCatalog {
    #[serde(default)]
    pub addons: Vec<Addon>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Addon {
    #[serde(rename = "planCode")]
    pub plan_code: String,
    #[serde(default)]
    pub pricings: Vec<Pricing>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Pricing {
    /// In 10⁻⁸ of the subsidiary's currency.
    pub price: u64,
    #[serde(default, rename = "intervalUnit")]
    pub interval_unit: String,
}

/// Hourly price by plan code.
pub(super) fn hourly_prices(catalog: &PriceCatalog) -> BTreeMap<String, f64> {
    catalog
        .addons
        .iter()
        .filter_map(|a| {
            let p = a.pricings.iter().find(|p| p.interval_unit == "hour")?;
            Some((a.plan_code.clone(), p.price as f64 / 100_000_000.0))
        })
        .collect()
}

/// Offers by flavor name: OVHcloud has one flavor (with its own id) per region.
/// Windows flavors are left out (Legion's nodes are Linux).
pub(super) fn offers(flavors: &[Flavor], prices: &BTreeMap<String, f64>) -> Vec<Offer> {
    let mut by_name: BTreeMap<&str, Offer> = BTreeMap::new();
    for f in flavors.iter().filter(|f| f.os_type != "windows") {
        let offer = by_name.entry(&f.name).or_insert_with(|| Offer {
            id: f.name.clone(),
            name: f.name.clone(),
            cores: f.vcpus,
            memory_mb: f.ram,
            disk_gb: f.disk,
            hourly_price: BTreeMap::new(),
            regions: Vec::new(),
            deprecated: true,
            variables: Vec::new(),
        });
        if f.available {
            offer.deprecated = false;
            if !offer.regions.contains(&f.region) {
                offer.regions.push(f.region.clone());
            }
            if let Some(price) = f.plan_codes.hourly.as_ref().and_then(|c| prices.get(c)) {
                offer.hourly_price.insert(f.region.clone(), *price);
            }
        }
    }
    by_name.into_values().filter(|o| o.cores > 0).collect()
}

pub(super) fn regions(names: &[String]) -> Vec<Region> {
    names
        .iter()
        .map(|n| Region {
            id: n.clone(),
            name: n.clone(),
            available: true,
        })
        .collect()
}

/// Images by name (OVHcloud has one image id per region); deprecated when no region
/// has it `active`; logging in as the image's `user`.
pub(super) fn images(images: &[ImageJson]) -> Vec<Image> {
    let mut by_name: BTreeMap<&str, (bool, Option<&str>)> = BTreeMap::new();
    for i in images.iter().filter(|i| i.os_type != "windows") {
        let (active, user) = by_name.entry(&i.name).or_insert((false, None));
        *active |= i.status.is_empty() || i.status == "active";
        if user.is_none() {
            *user = i.user.as_deref().filter(|u| !u.is_empty());
        }
    }
    by_name
        .into_iter()
        .map(|(name, (active, user))| Image {
            id: name.to_string(),
            name: name.to_string(),
            architecture: "x86".into(),
            deprecated: !active,
            login_user: user.map(String::from),
        })
        .collect()
}

pub(super) fn status(s: &str) -> ServerStatus {
    match s {
        "BUILD" | "BUILDING" => ServerStatus::Provisioning,
        "ACTIVE" => ServerStatus::Running,
        "SHUTOFF" | "STOPPED" | "SHELVED" | "SHELVED_OFFLOADED" => ServerStatus::Off,
        "REBOOT" | "HARD_REBOOT" => ServerStatus::Rebooting,
        "REBUILD" | "REINSTALL" => ServerStatus::Rebuilding,
        "DELETING" | "DELETED" => ServerStatus::Deleting,
        _ => ServerStatus::Unknown,
    }
}

/// Names by id of flavors and images, to name an instance the list gives by ids.
#[derive(Debug, Default, Clone)]
pub(super) struct Names {
    pub flavors: BTreeMap<String, String>,
    pub images: BTreeMap<String, String>,
    /// Ids still unknown after the lists were read again (a private image, a retired
    /// flavor): shown as ids, not looked up on every observation.
    pub unresolved: BTreeSet<String>,
}

impl Names {
    fn known(&self, id: &str, names: &BTreeMap<String, String>) -> bool {
        names.contains_key(id) || self.unresolved.contains(id)
    }

    pub fn knows(&self, i: &Instance) -> bool {
        let flavor_known = i.flavor.is_some()
            || i.flavor_id
                .as_ref()
                .is_none_or(|f| self.known(f, &self.flavors));
        let image_known = i.image.is_some()
            || i.image_id
                .as_ref()
                .is_none_or(|m| self.known(m, &self.images));
        flavor_known && image_known
    }

    /// After the lists were read again: give up on the ids they did not name.
    pub fn settle(&mut self, instances: &[Instance]) {
        for i in instances {
            if let Some(f) = &i.flavor_id
                && !self.flavors.contains_key(f)
            {
                self.unresolved.insert(f.clone());
            }
            if let Some(m) = &i.image_id
                && !self.images.contains_key(m)
            {
                self.unresolved.insert(m.clone());
            }
        }
    }
}

pub(super) fn observed_server(i: Instance, names: &Names) -> ObservedServer {
    let (name, labels) = decode_name(&i.name);
    let public = |v: u8| {
        i.ip_addresses
            .iter()
            .find(|a| a.version == v && (a.kind.is_empty() || a.kind == "public"))
            .map(|a| a.ip.clone())
    };
    let offer = match (&i.flavor, &i.flavor_id) {
        (Some(f), _) if !f.name.is_empty() => f.name.clone(),
        (Some(f), _) => names.flavors.get(&f.id).cloned().unwrap_or(f.id.clone()),
        (None, Some(id)) => names.flavors.get(id).cloned().unwrap_or(id.clone()),
        (None, None) => String::new(),
    };
    let image = match (&i.image, &i.image_id) {
        (Some(m), _) if !m.name.is_empty() => Some(m.name.clone()),
        (Some(m), _) => names.images.get(&m.id).cloned().or(Some(m.id.clone())),
        (None, Some(id)) => names.images.get(id).cloned().or(Some(id.clone())),
        (None, None) => None,
    };
    ObservedServer {
        ipv4: public(4),
        ipv6: public(6),
        id: i.id,
        name,
        status: status(&i.status),
        region: i.region,
        offer,
        image,
        labels,
    }
}

/// What marks the start of Legion's labels in an instance name.
const MARK: &str = "@legion:";

fn short_key(k: &str) -> &str {
    match k {
        LABEL_MANAGED => "managed",
        LABEL_INSTALL => "install",
        LABEL_NODE => "node",
        LABEL_CLUSTER => "cluster",
        other => other,
    }
}

fn long_key(k: &str) -> String {
    match k {
        "managed" => LABEL_MANAGED.into(),
        "install" => LABEL_INSTALL.into(),
        "node" => LABEL_NODE.into(),
        "cluster" => LABEL_CLUSTER.into(),
        other => other.into(),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The instance name carrying Legion's labels: `web-1@legion:install=i1,node=uid-1,…`
/// (the four `legion-*` keys are written short, other keys in full; keys and values are
/// percent-encoded outside `[A-Za-z0-9._-]`). Stable: labels in key order.
pub(super) fn encode_name(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}={}", escape(short_key(k)), escape(v)))
        .collect();
    format!("{name}{MARK}{}", parts.join(","))
}

/// The node's name and Legion's labels out of an instance name. A name without Legion's
/// mark (or with a mark that does not parse) is a name with no labels.
pub(super) fn decode_name(full: &str) -> (String, BTreeMap<String, String>) {
    let Some(at) = full.rfind(MARK) else {
        return (full.to_string(), BTreeMap::new());
    };
    let (name, rest) = (&full[..at], &full[at + MARK.len()..]);
    let mut labels = BTreeMap::new();
    for part in rest.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return (full.to_string(), BTreeMap::new());
        };
        match (unescape(k), unescape(v)) {
            (Some(k), Some(v)) if !k.is_empty() => {
                labels.insert(long_key(&k), v);
            }
            _ => return (full.to_string(), BTreeMap::new()),
        }
    }
    (name.to_string(), labels)
}

/// The key type and base64 of an OpenSSH public key, without the comment.
pub(super) fn same_public_key(a: &str, b: &str) -> bool {
    a.split_whitespace()
        .take(2)
        .eq(b.split_whitespace().take(2))
}

/// `@` for the apex becomes OVHcloud's empty `subDomain`.
pub(super) fn sub_domain(name: &str) -> String {
    if name == "@" {
        String::new()
    } else {
        name.to_string()
    }
}

/// A Legion value as OVHcloud's `target` (TXT quoted).
pub(super) fn target_for(rtype: RecordType, value: &str) -> String {
    if rtype == RecordType::TXT && !(value.starts_with('"') && value.ends_with('"')) {
        format!("\"{}\"", value.replace('"', "\\\""))
    } else {
        value.to_string()
    }
}

/// An OVHcloud `target` as Legion's value (TXT unquoted).
pub(super) fn value_of(rtype: RecordType, target: &str) -> String {
    if rtype == RecordType::TXT
        && target.len() >= 2
        && target.starts_with('"')
        && target.ends_with('"')
    {
        target[1..target.len() - 1].replace("\\\"", "\"")
    } else {
        target.to_string()
    }
}

/// Records grouped into RRsets; types Legion does not model are left out.
pub(super) fn rrsets(records: &[Record]) -> Vec<RrSet> {
    let mut sets: BTreeMap<(String, RecordType), RrSet> = BTreeMap::new();
    for r in records {
        let Ok(rtype) = r.field_type.parse::<RecordType>() else {
            continue;
        };
        let name = if r.sub_domain.is_empty() {
            "@".to_string()
        } else {
            r.sub_domain.clone()
        };
        let set = sets.entry((name.clone(), rtype)).or_insert_with(|| RrSet {
            name,
            rtype,
            ttl: r.ttl.unwrap_or(0),
            values: Vec::new(),
        });
        set.values.push(value_of(rtype, &r.target));
    }
    sets.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_the_instance_name() {
        let labels: BTreeMap<String, String> = [
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_INSTALL.to_string(), "i-1".to_string()),
            (LABEL_NODE.to_string(), "01HX".to_string()),
            (LABEL_CLUSTER.to_string(), "prod".to_string()),
            ("team".to_string(), "a,b=c@legion:".to_string()),
        ]
        .into();
        let encoded = encode_name("web-1", &labels);
        assert!(
            encoded.starts_with("web-1@legion:cluster=prod,install=i-1,managed=true,node=01HX"),
            "{encoded}"
        );
        assert_eq!(decode_name(&encoded), ("web-1".to_string(), labels));
        // A name made outside Legion has no labels.
        assert_eq!(decode_name("my-vm"), ("my-vm".to_string(), BTreeMap::new()));
        assert_eq!(
            decode_name("odd@legion:broken"),
            ("odd@legion:broken".to_string(), BTreeMap::new())
        );
        assert_eq!(encode_name("bare", &BTreeMap::new()), "bare");
    }

    #[test]
    fn statuses_map_to_legions() {
        assert_eq!(status("BUILD"), ServerStatus::Provisioning);
        assert_eq!(status("ACTIVE"), ServerStatus::Running);
        assert_eq!(status("SHUTOFF"), ServerStatus::Off);
        assert_eq!(status("HARD_REBOOT"), ServerStatus::Rebooting);
        assert_eq!(status("REBUILD"), ServerStatus::Rebuilding);
        assert_eq!(status("DELETING"), ServerStatus::Deleting);
        assert_eq!(status("ERROR"), ServerStatus::Unknown);
    }

    #[test]
    fn flavors_become_offers_by_name_with_hourly_prices() {
        let flavor = |id: &str, name: &str, region: &str, available| Flavor {
            id: id.into(),
            name: name.into(),
            region: region.into(),
            vcpus: 2,
            ram: 7000,
            disk: 50,
            os_type: "linux".into(),
            available,
            plan_codes: PlanCodes {
                hourly: Some(format!("{name}.consumption")),
            },
        };
        let prices = hourly_prices(&PriceCatalog {
            addons: vec![Addon {
                plan_code: "b2-7.consumption".into(),
                pricings: vec![Pricing {
                    price: 6_810_000,
                    interval_unit: "hour".into(),
                }],
            }],
        });
        let offers = offers(
            &[
                flavor("f1", "b2-7", "GRA11", true),
                flavor("f2", "b2-7", "SBG5", true),
                flavor("f3", "b2-7", "BHS5", false),
            ],
            &prices,
        );
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].regions, vec!["GRA11", "SBG5"]);
        assert_eq!(offers[0].hourly_price.get("GRA11"), Some(&0.0681));
        assert!(!offers[0].deprecated);
    }

    #[test]
    fn txt_values_are_quoted_on_the_wire_only() {
        assert_eq!(
            target_for(RecordType::TXT, "v=spf1 -all"),
            "\"v=spf1 -all\""
        );
        assert_eq!(value_of(RecordType::TXT, "\"v=spf1 -all\""), "v=spf1 -all");
        assert_eq!(target_for(RecordType::A, "192.0.2.1"), "192.0.2.1");
    }
}
