//! Plan edits are checked by the engine whatever face sends them (issue 15): firewall
//! rules, providers, catalog choices, roles, `nodes add` on a name the plan has, and
//! `nodes set`. The engine is driven directly here; `cli_edits` runs the binary.

use legion::core::secret::Secret;
use legion::engine::plan::{NodeIntent, NodeRequest, PlanEdit};
use legion::engine::{Engine, ErrorKind};
use legion::providers::mock::MockCloud;
use legion::providers::{Env, FirewallRule, Protocol};

use crate::support::{Harness, PASSWORD};

fn rule(port: Option<&str>, source: &str) -> FirewallRule {
    FirewallRule {
        protocol: Protocol::Tcp,
        port: port.map(String::from),
        sources: vec![source.into()],
        description: String::new(),
    }
}

fn request(name: &str, intent: NodeIntent) -> NodeRequest {
    NodeRequest {
        name: name.into(),
        provider: "mock".into(),
        cluster: Some("prod".into()),
        intent,
        ..NodeRequest::default()
    }
}

async fn refused(engine: &Engine, edit: PlanEdit) -> String {
    let e = engine.edit_plan(edit).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert_eq!(e.exit_code(), 1);
    e.to_string()
}

#[tokio::test]
async fn firewall_rules_are_checked_whatever_face_sends_them() {
    let h = Harness::new().await;
    let add = |cluster: &str, rule: FirewallRule| PlanEdit::AddFirewallRule {
        cluster: cluster.into(),
        rule,
    };
    let e = refused(&h.engine, add("prod", rule(Some("443"), "0.0.0.0/0"))).await;
    assert!(e.contains("cluster prod has no nodes"), "{e}");
    h.add_node("a", "sim-east").await;
    let e = refused(&h.engine, add("prod", rule(Some("22"), "999.1.1.1/99"))).await;
    assert_eq!(e, "sources: 999.1.1.1/99 is not a CIDR (10.0.0.0/8, ::/0)");
    for port in ["70000", "abc;reboot"] {
        let e = refused(&h.engine, add("prod", rule(Some(port), "0.0.0.0/0"))).await;
        assert_eq!(e, "port: a port (22) or a range (8000-8100)", "{port}");
    }
    let e = refused(&h.engine, add("prod", rule(None, "0.0.0.0/0"))).await;
    assert_eq!(e, "port: required for tcp and udp");
    assert!(h.engine.plan().await.unwrap().firewalls.is_empty());
    h.edit(add("prod", rule(Some("8000-8100"), "10.0.0.0/8")))
        .await;
    assert_eq!(
        h.engine.plan().await.unwrap().firewalls["prod"].rules.len(),
        1
    );
}

#[tokio::test]
async fn node_choices_come_from_the_cached_catalog_with_the_valid_ones_listed() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    // The catalog is cached now: a plan edit makes no provider call.
    let before = h.cloud.calls().len();
    let ask = |region: Option<&str>, offer: Option<&str>, image: Option<&str>| NodeRequest {
        region: region.map(String::from),
        offer: offer.map(String::from),
        image: image.map(String::from),
        ..request("b", NodeIntent::Add)
    };
    let e = h
        .engine
        .upsert_node(ask(Some("sim-north"), None, None))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "Simulated cloud has no region \"sim-north\"; choose one of: sim-east, sim-west"
    );
    let e = h
        .engine
        .upsert_node(ask(None, Some("sim-legacy"), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "no offer \"sim-legacy\" in sim-east; choose one of: sim-small, sim-medium, sim-large"
        ),
        "{e}"
    );
    let e = h
        .engine
        .upsert_node(ask(None, None, Some("debian-11")))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no image \"debian-11\"; choose one of: debian-12, ubuntu-24.04"),
        "{e}"
    );
    h.engine
        .upsert_node(ask(
            Some("sim-west"),
            Some("sim-medium"),
            Some("ubuntu-24.04"),
        ))
        .await
        .unwrap();
    let calls: Vec<_> = h.cloud.calls().into_iter().skip(before).collect();
    assert!(
        calls.iter().all(|(_, path)| path != "/catalog"),
        "a plan edit read the catalog again: {calls:?}"
    );
    // A whole node sent as a plan edit is checked too.
    let mut node = h.engine.plan().await.unwrap().nodes["b"].clone();
    node.offer = "sim-huge".into();
    let e = refused(
        &h.engine,
        PlanEdit::UpsertNode {
            name: "b".into(),
            node,
        },
    )
    .await;
    assert!(e.contains("no offer \"sim-huge\" in sim-west"), "{e}");
}

#[tokio::test]
async fn names_roles_and_providers_are_refused_with_the_choices() {
    let h = Harness::new().await;
    let e = h
        .engine
        .upsert_node(request("Web_1", NodeIntent::Add))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid node name \"Web_1\""), "{e}");
    let web = NodeRequest {
        role: Some("web".into()),
        ..request("web-1", NodeIntent::Add)
    };
    let e = h.engine.upsert_node(web.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(
        e.to_string().contains(
            "role \"web\" has no install script (put it in HOME/roles/web.sh); roles here: node"
        ),
        "{e}"
    );
    let roles = h.dir.path().join("home/roles");
    std::fs::create_dir_all(&roles).unwrap();
    std::fs::write(roles.join("web.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    h.engine.upsert_node(web).await.unwrap();
    assert_eq!(h.engine.plan().await.unwrap().nodes["web-1"].role, "web");

    let e = refused(
        &h.engine,
        PlanEdit::UpsertZone {
            name: "example.test".into(),
            provider: "hetzner".into(),
        },
    )
    .await;
    assert!(e.contains("unknown provider \"hetzner\""), "{e}");
}

#[tokio::test]
async fn a_provider_must_be_configured_and_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = MockCloud::new(7);
    let engine = Engine::start(Harness::config(&dir, &cloud));
    engine.init(Secret::new(PASSWORD)).await.unwrap();
    let e = engine
        .upsert_node(request("a", NodeIntent::Add))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert_eq!(
        e.to_string(),
        "provider \"mock\" is not configured; configured here: none (configure it with `legion provider configure mock`)"
    );
    engine.logout().await.unwrap();

    let mut config = Harness::config(&dir, &cloud);
    config.env = Env::default();
    let engine = Engine::start(config);
    engine.unlock(Secret::new(PASSWORD)).await.unwrap();
    let e = engine
        .upsert_node(request("a", NodeIntent::Add))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not enabled here"), "{e}");
    engine.logout().await.unwrap();
}

#[tokio::test]
async fn add_refuses_an_existing_name_and_set_changes_only_what_it_names() {
    let h = Harness::new().await;
    h.engine
        .upsert_node(NodeRequest {
            region: Some("sim-west".into()),
            ..request("a", NodeIntent::Add)
        })
        .await
        .unwrap();
    let planned = h.engine.plan().await.unwrap().nodes["a"].clone();
    let e = h
        .engine
        .upsert_node(request("a", NodeIntent::Add))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "node a exists; change it with `legion nodes set a --offer …` (or --image, --region, --role, --cluster)"
    );
    assert_eq!(h.engine.plan().await.unwrap().nodes["a"], planned);

    h.engine
        .upsert_node(NodeRequest {
            name: "a".into(),
            offer: Some("sim-large".into()),
            intent: NodeIntent::Set,
            ..NodeRequest::default()
        })
        .await
        .unwrap();
    let after = h.engine.plan().await.unwrap().nodes["a"].clone();
    assert_eq!(after.offer, "sim-large");
    assert_eq!(
        (after.region.as_str(), &after.uid, &after.image),
        ("sim-west", &planned.uid, &planned.image),
        "what set does not name stays"
    );
    let e = h
        .engine
        .upsert_node(NodeRequest {
            name: "nope".into(),
            offer: Some("sim-large".into()),
            intent: NodeIntent::Set,
            ..NodeRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}
