//! Scaleway's JSON shapes (only the fields Legion reads) and their mapping into Legion's
//! types. Nothing here does I/O. Security groups are in `firewall.rs`, DNS in `dns.rs`.
//!
//! - Labels are `key=value` tags: [`tags_from_labels`] and [`labels_from_tags`].
//! - A server's Legion id is `zone/uuid` ([`qualified`], [`split_id`]).
//! - A firewall is a security group. Scaleway rules hold one IP range and no description,
//!   so one Legion rule becomes one Scaleway rule per source, in order, and the
//!   descriptions with each rule's count of Scaleway rules are kept in the group's
//!   `description` ([`rules_note`]); reading back regroups them ([`rules_from`]).

mod dns;
mod firewall;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::ZONES;
use crate::providers::{Image, ObservedServer, Offer, Region, ServerStatus};

// The security-group and DNS shapes live in their own files; callers keep naming them
// `schema::…`.
pub(super) use dns::*;
pub(super) use firewall::*;

// ---- ids and tags ---------------------------------------------------------------------

/// `fr-par-1/uuid`: Legion's id of a zonal resource.
pub(super) fn qualified(zone: &str, id: &str) -> String {
    format!("{zone}/{id}")
}

/// The zone and the Scaleway id of a Legion id; an id without a zone is in `default`.
pub(super) fn split_id<'a>(id: &'a str, default: &'a str) -> (&'a str, &'a str) {
    match id.split_once('/') {
        Some((zone, uuid)) => (zone, uuid),
        None => (default, id),
    }
}

pub(super) fn tags_from_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `key=value` tags back into labels; other tags are not Legion's and are left out.
pub(super) fn labels_from_tags(tags: &[String]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn has_labels(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

// ---- catalog --------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ServerType {
    #[serde(default)]
    pub hourly_price: f64,
    #[serde(default)]
    pub ncpus: u32,
    /// Bytes.
    #[serde(default)]
    pub ram: u64,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub end_of_service: bool,
    #[serde(default)]
    pub volumes_constraint: Option<SizeRange>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct SizeRange {
    #[serde(default)]
    pub min_size: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Availability {
    #[serde(default)]
    pub availability: String,
}

/// A Marketplace image; Legion's image id is its `label`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct MarketImage {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub valid_until: Option<String>,
}

/// One zone's product catalog.
pub(super) struct ZoneProducts {
    pub zone: String,
    pub types: Vec<(String, ServerType)>,
    pub availability: BTreeMap<String, Availability>,
}

/// Offers across zones: orderable where the type is not at end of service and not in
/// shortage. Arm types are left out (Legion's nodes are x86-64).
pub(super) fn offers(zones: &[ZoneProducts]) -> Vec<Offer> {
    let mut by_id: BTreeMap<String, Offer> = BTreeMap::new();
    for z in zones {
        for (name, t) in &z.types {
            if t.arch != "x86_64" || t.ncpus == 0 {
                continue;
            }
            let offer = by_id.entry(name.clone()).or_insert_with(|| Offer {
                id: name.clone(),
                name: name.clone(),
                cores: t.ncpus,
                memory_mb: u32::try_from(t.ram / (1024 * 1024)).unwrap_or(u32::MAX),
                disk_gb: t
                    .volumes_constraint
                    .as_ref()
                    .map(|c| u32::try_from(c.min_size / 1_000_000_000).unwrap_or(0))
                    .filter(|gb| *gb > 0)
                    .unwrap_or(10),
                hourly_price: BTreeMap::new(),
                regions: Vec::new(),
                deprecated: t.end_of_service,
                variables: Vec::new(),
            });
            offer.hourly_price.insert(z.zone.clone(), t.hourly_price);
            let shortage = z
                .availability
                .get(name)
                .is_some_and(|a| a.availability == "shortage");
            if !t.end_of_service && !shortage {
                offer.regions.push(z.zone.clone());
            }
        }
    }
    by_id.into_values().collect()
}

fn zone_city(zone: &str) -> &'static str {
    match zone.split('-').nth(1) {
        Some("par") => "Paris",
        Some("ams") => "Amsterdam",
        Some("waw") => "Warsaw",
        _ => "Scaleway",
    }
}

/// Every Instances zone, available when some offer can be ordered there.
pub(super) fn regions(offers: &[Offer]) -> Vec<Region> {
    ZONES
        .iter()
        .map(|z| Region {
            id: (*z).to_string(),
            name: format!(
                "{} {} ({z})",
                zone_city(z),
                z.rsplit('-').next().unwrap_or("")
            ),
            available: offers.iter().any(|o| o.regions.iter().any(|r| r == z)),
        })
        .collect()
}

/// Marketplace images, deprecated once their `valid_until` has passed.
pub(super) fn images(images: Vec<MarketImage>, now_rfc3339: &str) -> Vec<Image> {
    images
        .into_iter()
        .filter(|i| !i.label.is_empty())
        .map(|i| Image {
            deprecated: i
                .valid_until
                .as_deref()
                .is_some_and(|until| until.get(..19).unwrap_or(until) < now_rfc3339),
            id: i.label,
            name: i.name,
            architecture: "x86_64".into(),
            login_user: None,
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (UTC), for comparing with Scaleway's dates.
pub(super) fn rfc3339(unix: u64) -> String {
    crate::core::time::utc_datetime(unix)
}

// ---- servers --------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub(super) struct IpJson {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct VolumeJson {
    pub id: String,
    #[serde(default)]
    pub volume_type: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A Marketplace local image: one image label made concrete for a zone and a kind of
/// root volume (`instance_local` or `instance_sbs`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct LocalImage {
    pub id: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub compatible_commercial_types: Vec<String>,
}

/// The local image for a server of `commercial_type`: x86-64 and compatible with the
/// type (an image listing no types is taken as compatible with all).
pub(super) fn pick_local_image<'a>(
    images: &'a [LocalImage],
    commercial_type: &str,
) -> Option<&'a LocalImage> {
    images.iter().find(|i| {
        i.arch == "x86_64"
            && (i.compatible_commercial_types.is_empty()
                || i.compatible_commercial_types
                    .iter()
                    .any(|t| t == commercial_type))
    })
}

/// The snapshot an Instance image's root volume is made from (`l_ssd` or
/// `sbs_snapshot`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ImageRoot {
    pub id: String,
    #[serde(default)]
    pub volume_type: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct InstanceImage {
    #[serde(default)]
    pub root_volume: Option<ImageRoot>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ImageEnvelope {
    pub image: InstanceImage,
}

/// An Instance API volume (`l_ssd`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct InstanceVolume {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub server: Option<Summary>,
}

#[derive(Debug, Deserialize)]
pub(super) struct InstanceVolumeEnvelope {
    pub volume: InstanceVolume,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct BlockReference {
    #[serde(default)]
    pub product_resource_type: String,
    #[serde(default)]
    pub product_resource_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct BlockSpecs {
    #[serde(default)]
    pub perf_iops: Option<u32>,
}

/// A Block Storage volume (`sbs_volume` in the Instance API).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct BlockVolume {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub references: Vec<BlockReference>,
    #[serde(default)]
    pub specs: Option<BlockSpecs>,
}

impl BlockVolume {
    /// The server it is attached to (or attaching to, or detaching from).
    pub fn server(&self) -> Option<&str> {
        self.references
            .iter()
            .find(|r| r.product_resource_type == "instance_server")
            .map(|r| r.product_resource_id.as_str())
    }
}

/// The `volumes` map of `PATCH …/servers/{id}` that puts `new_root` at index `0` and
/// keeps every other volume at its index. Volumes are named by id; a Block Storage
/// volume also by its type, an Instance volume by its name, as Scaleway's tools send
/// them.
pub(super) fn volumes_with_root(
    current: &BTreeMap<String, VolumeJson>,
    new_root: &str,
    new_root_type: &str,
    new_root_name: &str,
) -> Value {
    let template = |id: &str, volume_type: &str, name: Option<&str>| {
        if volume_type == "sbs_volume" {
            json!({ "id": id, "volume_type": volume_type })
        } else {
            match name {
                Some(n) => json!({ "id": id, "name": n }),
                None => json!({ "id": id }),
            }
        }
    };
    let mut map = serde_json::Map::new();
    map.insert(
        "0".into(),
        template(new_root, new_root_type, Some(new_root_name)),
    );
    for (index, v) in current.iter().filter(|(i, _)| i.as_str() != "0") {
        map.insert(
            index.clone(),
            template(&v.id, &v.volume_type, v.name.as_deref()),
        );
    }
    Value::Object(map)
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Summary {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Server {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub state_detail: String,
    #[serde(default)]
    pub commercial_type: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub public_ip: Option<IpJson>,
    #[serde(default)]
    pub public_ips: Vec<IpJson>,
    #[serde(default)]
    pub ipv6: Option<IpJson>,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeJson>,
    #[serde(default)]
    pub security_group: Option<Summary>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ServerEnvelope {
    pub server: Server,
}

pub(super) fn server_status(state: &str) -> ServerStatus {
    match state {
        "running" => ServerStatus::Running,
        "starting" => ServerStatus::Starting,
        "stopping" => ServerStatus::Stopping,
        "stopped" | "stopped in place" => ServerStatus::Off,
        _ => ServerStatus::Unknown,
    }
}

/// A server as Legion sees it. Scaleway reports the image's id and name, not the
/// Marketplace label it was created from, so `image` stays unknown.
pub(super) fn observed_server(s: Server, zone: &str) -> ObservedServer {
    let zone = if s.zone.is_empty() { zone } else { &s.zone };
    let family = |f: &str| {
        s.public_ips
            .iter()
            .find(|ip| ip.family.as_deref() == Some(f))
            .and_then(|ip| ip.address.clone())
    };
    let ipv4 = s
        .public_ip
        .as_ref()
        .and_then(|ip| ip.address.clone())
        .or_else(|| family("inet"));
    let ipv6 = family("inet6").or_else(|| s.ipv6.as_ref().and_then(|ip| ip.address.clone()));
    ObservedServer {
        id: qualified(zone, &s.id),
        name: s.name,
        status: server_status(&s.state),
        ipv4,
        ipv6,
        region: zone.to_string(),
        offer: s.commercial_type,
        image: None,
        labels: labels_from_tags(&s.tags),
    }
}

// ---- SSH keys -------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub(super) struct SshKey {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub public_key: String,
}

/// Same key type and key material; the comment does not matter.
pub(super) fn same_public_key(a: &str, b: &str) -> bool {
    let fields = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    fields(a) == fields(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_through_tags() {
        let labels: BTreeMap<String, String> = [
            ("legion-install".to_string(), "i1".to_string()),
            ("legion-node".to_string(), "uid=1".to_string()),
        ]
        .into();
        let tags = tags_from_labels(&labels);
        assert_eq!(tags, ["legion-install=i1", "legion-node=uid=1"]);
        let mut with_foreign = tags.clone();
        with_foreign.push("web".into());
        assert_eq!(labels_from_tags(&with_foreign), labels);
        assert_eq!(split_id("nl-ams-1/abc", "fr-par-1"), ("nl-ams-1", "abc"));
        assert_eq!(split_id("abc", "fr-par-1"), ("fr-par-1", "abc"));
    }

    #[test]
    fn the_local_image_fits_the_type_and_the_root_swap_keeps_other_volumes() {
        let images: Vec<LocalImage> = serde_json::from_value(json!([
            {"id": "arm", "arch": "arm64", "compatible_commercial_types": ["COPARM1-2C-8G"]},
            {"id": "big", "arch": "x86_64", "compatible_commercial_types": ["GP1-XS"]},
            {"id": "dev", "arch": "x86_64", "compatible_commercial_types": ["DEV1-S", "DEV1-M"]},
        ]))
        .unwrap();
        assert_eq!(pick_local_image(&images, "DEV1-M").unwrap().id, "dev");
        assert!(pick_local_image(&images, "PLAY2-NANO").is_none());
        let current: BTreeMap<String, VolumeJson> = serde_json::from_value(json!({
            "0": {"id": "old", "volume_type": "l_ssd", "name": "root"},
            "1": {"id": "data", "volume_type": "sbs_volume"},
            "2": {"id": "scratch", "volume_type": "l_ssd", "name": "extra"},
        }))
        .unwrap();
        let map = volumes_with_root(&current, "new", "l_ssd", "fresh");
        assert_eq!(
            map,
            json!({
                "0": {"id": "new", "name": "fresh"},
                "1": {"id": "data", "volume_type": "sbs_volume"},
                "2": {"id": "scratch", "name": "extra"},
            })
        );
        let map = volumes_with_root(&current, "nb", "sbs_volume", "fresh");
        assert_eq!(map["0"], json!({"id": "nb", "volume_type": "sbs_volume"}));
    }

    #[test]
    fn images_past_their_validity_are_deprecated() {
        let imgs = images(
            vec![
                MarketImage {
                    name: "Ubuntu 24.04".into(),
                    label: "ubuntu_noble".into(),
                    valid_until: None,
                },
                MarketImage {
                    name: "Ubuntu 20.04".into(),
                    label: "ubuntu_focal".into(),
                    valid_until: Some("2025-05-31T00:00:00Z".into()),
                },
            ],
            &rfc3339(1_767_225_600),
        );
        assert!(!imgs[0].deprecated && imgs[1].deprecated);
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00");
        assert_eq!(server_status("stopped in place"), ServerStatus::Off);
    }
}
