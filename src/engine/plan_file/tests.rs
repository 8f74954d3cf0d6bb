//! `build` and the export: a round trip changes nothing, every refusal is collected with
//! its path, replace and merge differ only in what the document leaves out.

use super::text::{Format, parse, render};
use super::*;
use crate::engine::state::model::{FirewallPlan, ZonePlan};

/// Resolves as the engine does for a node whose fields are all given: keeps the planned
/// node's uid; refuses the offer `bad` as a catalog would.
struct Fake;

impl ResolveNode for Fake {
    fn resolve(
        &self,
        _name: &str,
        e: &NodeEntry,
        base: Option<&NodePlan>,
    ) -> Result<NodePlan, EngineError> {
        let offer = e.offer.clone().unwrap_or_else(|| "sim-small".into());
        if offer == "bad" {
            return Err(EngineError::Invalid(
                "Simulated cloud has no offer \"bad\" in sim-east; choose one of: sim-small".into(),
            ));
        }
        Ok(NodePlan {
            uid: base.map_or_else(|| "fresh".into(), |b| b.uid.clone()),
            cluster: e.cluster.clone().unwrap_or_else(|| "default".into()),
            role: e.role.clone().unwrap_or_else(|| "node".into()),
            provider: e.provider.clone(),
            region: e.region.clone().unwrap_or_else(|| "sim-east".into()),
            offer,
            image: e.image.clone().unwrap_or_else(|| "debian-12".into()),
            boot_mode: e.boot_mode.unwrap_or_default(),
        })
    }
}

fn node(uid: &str, cluster: &str) -> NodePlan {
    NodePlan {
        uid: uid.into(),
        cluster: cluster.into(),
        role: "node".into(),
        provider: "mock".into(),
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "debian-12".into(),
        boot_mode: BootMode::Bios,
    }
}

fn plan() -> Plan {
    let mut p = Plan::default();
    p.nodes.insert("web-1".into(), node("u1", "prod"));
    p.nodes.insert("web-2".into(), node("u2", "prod"));
    p.nodes.insert("db-1".into(), node("u3", "data"));
    p.clusters.insert(
        "prod".into(),
        ClusterPlan {
            dns_zone: Some("example.test".into()),
            peer_ports: vec![4413, 7000],
        },
    );
    p.clusters.insert("data".into(), ClusterPlan::default());
    p.zones.insert(
        "example.test".into(),
        ZonePlan {
            provider: "mock".into(),
            records: vec![
                RecordPlan {
                    name: "api".into(),
                    rtype: RecordType::A,
                    ttl: 60,
                    value: RecordValue::NodeAddress("web-1".into()),
                },
                RecordPlan {
                    name: "www".into(),
                    rtype: RecordType::A,
                    ttl: 300,
                    value: RecordValue::Literal("192.0.2.1".into()),
                },
            ],
        },
    );
    p.firewalls.insert(
        "prod".into(),
        FirewallPlan {
            rules: vec![FirewallRule {
                protocol: Protocol::Tcp,
                port: Some("443".into()),
                sources: vec!["0.0.0.0/0".into()],
                description: "web".into(),
            }],
        },
    );
    p.domains.insert(
        "example.com".into(),
        DomainPlan {
            registrar: "mock".into(),
            zone: "example.test".into(),
        },
    );
    p.management_sources = vec!["203.0.113.0/24".into()];
    p
}

#[test]
fn an_exported_plan_imports_as_itself_in_json_and_toml() {
    let p = plan();
    let doc = PlanDocument::from_plan(&p);
    for format in [Format::Json, Format::Toml] {
        let text = render(&doc, format).unwrap();
        let back = parse(&text, format).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, doc, "{format:?}:\n{text}");
        let built = build(&p, &Tracked::default(), &back, ImportMode::Replace, &Fake).unwrap();
        assert_eq!(built, p, "{format:?}");
        assert!(PlanDiff::between(&p, &built).is_empty());
        assert!(PlanDiff::between(&p, &built).keys().is_empty());
    }
    // Stable: the same plan gives the same text, without uids.
    let text = render(&doc, Format::Json).unwrap();
    assert_eq!(
        text,
        render(&PlanDocument::from_plan(&p), Format::Json).unwrap()
    );
    assert!(!text.contains("\"u1\""), "{text}");
}

#[test]
fn every_refusal_is_collected_with_its_path() {
    let p = plan();
    let mut doc = PlanDocument::from_plan(&p);
    doc.nodes.insert(
        "Web_3".into(),
        NodeEntry {
            provider: "mock".into(),
            ..Default::default()
        },
    );
    doc.nodes.get_mut("db-1").unwrap().offer = Some("bad".into());
    doc.firewalls.get_mut("prod").unwrap().push(RuleEntry {
        protocol: Protocol::Tcp,
        port: Some("70000".into()),
        sources: vec!["0.0.0.0/0".into()],
        description: String::new(),
    });
    doc.zones.get_mut("example.test").unwrap().records[1].node = Some("web-2".into());
    doc.domains.get_mut("example.com").unwrap().zone = "other.test".into();
    let problems = build(&p, &Tracked::default(), &doc, ImportMode::Replace, &Fake).unwrap_err();
    let mut paths: Vec<String> = problems.iter().map(|p| p.path.join(".")).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "domains.example.com",
            "firewalls.prod.1",
            "nodes.Web_3",
            "nodes.db-1",
            "zones.example.test.records.1",
        ],
        "{problems:#?}"
    );
    let text = |path: &str| {
        problems
            .iter()
            .find(|p| p.path.join(".") == path)
            .map(|p| p.message.clone())
            .unwrap_or_default()
    };
    assert!(text("nodes.Web_3").contains("invalid node name"));
    assert!(text("nodes.db-1").contains("no offer \"bad\""));
    assert_eq!(
        text("firewalls.prod.1"),
        "port: a port (22) or a range (8000-8100)"
    );
    assert!(text("zones.example.test.records.1").contains("exactly one of"));
    assert!(text("domains.example.com").contains("no zone \"other.test\""));
    let mut newer = PlanDocument::from_plan(&p);
    newer.version = 2;
    let e = build(&p, &Tracked::default(), &newer, ImportMode::Replace, &Fake).unwrap_err();
    assert_eq!(e[0].path, ["version"]);
}

#[test]
fn replace_removes_what_the_document_leaves_out_and_merge_keeps_it() {
    let p = plan();
    let mut doc = PlanDocument {
        version: VERSION,
        ..Default::default()
    };
    doc.nodes.insert(
        "web-1".into(),
        NodeEntry {
            provider: "mock".into(),
            cluster: Some("prod".into()),
            offer: Some("sim-large".into()),
            ..Default::default()
        },
    );
    doc.nodes.insert(
        "web-9".into(),
        NodeEntry {
            provider: "mock".into(),
            cluster: Some("prod".into()),
            ..Default::default()
        },
    );
    let replaced = build(&p, &Tracked::default(), &doc, ImportMode::Replace, &Fake).unwrap();
    assert_eq!(
        replaced.nodes.keys().collect::<Vec<_>>(),
        ["web-1", "web-9"]
    );
    assert_eq!(
        replaced.nodes["web-1"].uid, "u1",
        "a node keeps its identity"
    );
    assert_eq!(replaced.nodes["web-9"].uid, "fresh");
    assert!(replaced.zones.is_empty() && replaced.firewalls.is_empty());
    assert!(replaced.domains.is_empty() && replaced.management_sources.is_empty());
    // A cluster still used keeps its settings only if the document names it.
    assert_eq!(replaced.clusters.keys().collect::<Vec<_>>(), ["prod"]);
    let diff = PlanDiff::between(&p, &replaced);
    assert_eq!(diff.nodes.added, ["web-9"]);
    assert_eq!(diff.nodes.changed, ["web-1"]);
    assert_eq!(diff.nodes.removed, ["db-1", "web-2"]);
    assert!(diff.management_sources);

    let merged = build(&p, &Tracked::default(), &doc, ImportMode::Merge, &Fake).unwrap();
    assert_eq!(merged.nodes.len(), 4);
    assert_eq!(merged.nodes["web-1"].offer, "sim-large");
    assert_eq!(merged.zones, p.zones);
    assert_eq!(merged.firewalls, p.firewalls);
    assert_eq!(merged.management_sources, p.management_sources);
    let diff = PlanDiff::between(&p, &merged);
    assert!(diff.nodes.removed.is_empty());
    assert_eq!(diff.keys().len(), 2, "web-1 and web-9 only: {diff:?}");
}

#[test]
fn a_deployed_node_cannot_move_providers_by_import() {
    let p = plan();
    let mut tracked = Tracked::default();
    let mut t: crate::engine::state::model::TrackedNode =
        serde_json::from_value(serde_json::json!({
            "uid": "u1", "provider": "mock", "region": "sim-east", "offer": "sim-small",
            "image": "debian-12"
        }))
        .unwrap();
    t.server_id = Some("sv-1".into());
    tracked.nodes.insert("web-1".into(), t);
    let mut doc = PlanDocument::from_plan(&p);
    doc.nodes.get_mut("web-1").unwrap().provider = "hetzner".into();
    let e = build(&p, &tracked, &doc, ImportMode::Replace, &Fake).unwrap_err();
    assert_eq!(e[0].path, ["nodes", "web-1"]);
    assert!(e[0].message.contains("already runs on mock"), "{e:?}");
}
