//! The change set against hand-built states: every action, every block, the counts.

use std::collections::BTreeMap;

use super::*;
use crate::engine::derive::{desired_firewalls, desired_zone, signature};
use crate::engine::state::model::memberships;
use crate::engine::state::model::{
    ExecStatus, Execution, ExecutionKind, PhaseStatus, RecordPlan, RecordValue, SeenFrom,
    TrackedFirewallSet, TrackedZone, ZonePlan,
};
use crate::providers::{BootMode, ObservedServer, RecordType, ServerStatus};

fn env() -> ChangeEnv {
    ChangeEnv {
        providers: BTreeMap::from([("mock".to_string(), true)]),
        ssh_port: 22,
        caps: BTreeMap::new(),
    }
}

fn node_plan() -> NodePlan {
    NodePlan {
        uid: "u1".into(),
        cluster: "prod".into(),
        role: "default".into(),
        provider: "mock".into(),
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "ubuntu-24.04".into(),
        boot_mode: BootMode::Bios,
    }
}

fn succeeded() -> Execution {
    let mut e = Execution::new(1, ExecutionKind::Add);
    for p in &mut e.phases {
        p.status = PhaseStatus::Done;
    }
    e.status = ExecStatus::Succeeded;
    e
}

fn tracked(exec: Option<Execution>) -> TrackedNode {
    TrackedNode {
        uid: "u1".into(),
        provider: "mock".into(),
        server_id: Some("s-1".into()),
        ipv4: Some("198.51.100.7".into()),
        ipv6: None,
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "ubuntu-24.04".into(),
        host_key: None,
        configured_peers: None,
        configured_membership: None,
        login: None,
        image_user: None,
        execution: exec,
    }
}

fn reading(region: &str, offer: &str) -> ServerReading {
    ServerReading {
        at_ms: 1,
        server: Some(ObservedServer {
            id: "s-1".into(),
            name: "web-1".into(),
            status: ServerStatus::Running,
            ipv4: Some("198.51.100.7".into()),
            ipv6: None,
            region: region.into(),
            offer: offer.into(),
            image: Some("ubuntu-24.04".into()),
            labels: BTreeMap::new(),
        }),
    }
}

/// One node, created and observed as planned; a management source so its firewall set
/// can be derived, and that set recorded as applied.
fn converged() -> State {
    let mut s = State::new("install".into());
    s.plan.nodes.insert("web-1".into(), node_plan());
    s.tracked
        .nodes
        .insert("web-1".into(), tracked(Some(succeeded())));
    s.observed
        .servers
        .insert("web-1".into(), reading("sim-east", "sim-small"));
    s.tracked.seen_from.insert(
        "web-1".into(),
        SeenFrom {
            first: "192.0.2.1".into(),
            last: "192.0.2.1".into(),
        },
    );
    mark_firewall_applied(&mut s);
    s
}

fn mark_firewall_applied(s: &mut State) {
    let (specs, _) = desired_firewalls(&s.plan, &s.tracked, "prod", 22).unwrap();
    s.tracked.firewalls.insert(
        "prod".into(),
        TrackedFirewallSet {
            firewall_ids: BTreeMap::from([("mock".to_string(), "fw-1".to_string())]),
            applied_signature: Some(signature(&specs)),
        },
    );
}

fn only(set: &ChangeSet) -> &Change {
    assert_eq!(set.changes.len(), 1, "{:#?}", set.changes);
    &set.changes[0]
}

#[test]
fn a_converged_state_has_nothing_to_do() {
    let set = compute(&converged(), &env(), true);
    assert!(set.is_empty(), "{:#?}", set.changes);
    assert_eq!(set.unchanged, 2, "the node and its firewall set");
    assert_eq!(set.counts().to_string(), "nothing to do");
}

#[test]
fn a_planned_node_is_created_field_by_field_and_blocked_without_its_provider() {
    let mut s = State::new("i".into());
    s.plan.nodes.insert("web-1".into(), node_plan());
    let set = compute(&s, &env(), true);
    let node = &set.changes[0];
    assert_eq!(node.kind, ResourceKind::Node);
    assert_eq!(node.action, ChangeAction::Create);
    assert_eq!(node.blocked, None);
    let offer = node.fields.iter().find(|f| f.field == "offer").unwrap();
    assert_eq!(
        (offer.old.as_deref(), offer.new.as_deref()),
        (None, Some("sim-small"))
    );
    // Its cluster's firewall set comes with it, waiting for the node's address.
    let fw = &set.changes[1];
    assert_eq!(
        (fw.kind, fw.action),
        (ResourceKind::Firewall, ChangeAction::Create)
    );
    assert!(
        fw.blocked.as_deref().unwrap().contains("management source"),
        "{fw:?}"
    );

    let none = ChangeEnv::default();
    let set = compute(&s, &none, true);
    let why = set.changes[0].blocked.as_deref().unwrap();
    assert!(
        why.contains("\"mock\" is not configured or not enabled"),
        "{why}"
    );
    assert_eq!(set.changes[0].marker(), "!");
}

fn caps(resize: bool, rebuild: bool, create: bool) -> ChangeEnv {
    ChangeEnv {
        caps: BTreeMap::from([(
            "mock".to_string(),
            NodeCaps {
                resize,
                rebuild,
                create,
            },
        )]),
        ..env()
    }
}

#[test]
fn an_offer_change_is_a_resize_where_the_provider_has_one() {
    let mut s = converged();
    s.plan.nodes.get_mut("web-1").unwrap().offer = "sim-large".into();
    let set = compute(&s, &caps(true, true, true), true);
    let c = only(&set);
    assert_eq!(c.action, ChangeAction::Update);
    assert_eq!(
        c.fields,
        [FieldChange {
            field: "offer".into(),
            old: Some("sim-small".into()),
            new: Some("sim-large".into()),
        }]
    );
    assert_eq!(c.blocked, None);
    assert_eq!(
        c.line(),
        "~ node web-1: offer sim-small -> sim-large (resize: the server stops for it)"
    );
    assert_eq!(set.counts().to_string(), "1 to change");
}

#[test]
fn an_offer_change_without_resize_is_blocked_naming_the_provider_and_the_manual_route() {
    let mut s = converged();
    s.plan.nodes.get_mut("web-1").unwrap().offer = "sim-large".into();
    let set = compute(&s, &caps(false, true, true), true);
    let c = only(&set);
    assert_eq!(c.action, ChangeAction::Update);
    let why = c.blocked.as_deref().unwrap();
    assert!(
        why.contains("provider \"mock\" cannot change the offer")
            && why.contains("sim-small -> sim-large")
            && why.contains("remove the node, apply, and add it again"),
        "{why}"
    );
    assert_eq!(
        c.line(),
        format!("! node web-1: offer sim-small -> sim-large [blocked: {why}]")
    );
    let counts = set.counts();
    assert_eq!((counts.update, counts.blocked), (1, 1));
    assert_eq!(counts.to_string(), "1 to change, 1 blocked");
}

#[test]
fn a_region_change_is_a_replace_that_names_the_server_it_destroys() {
    let mut s = converged();
    s.observed
        .servers
        .insert("web-1".into(), reading("sim-west", "sim-small"));
    let c = only(&compute(&s, &caps(true, true, true), true)).clone();
    assert_eq!(c.action, ChangeAction::Replace);
    assert_eq!(
        c.reason.as_deref(),
        Some(
            "a region change needs a new server; a new server is created and deployed \
             first, then replace destroys s-1"
        )
    );
    assert_eq!(c.blocked, None);
    assert_eq!(c.fields[0].old.as_deref(), Some("sim-west"));
    assert!(
        c.line()
            .starts_with("-/+ node web-1: region sim-west -> sim-east (")
    );
    // A provider that cannot create servers (a manual host) cannot move it.
    let c = only(&compute(&s, &caps(true, true, false), true)).clone();
    assert!(
        c.blocked
            .as_deref()
            .unwrap()
            .contains("cannot create servers"),
        "{c:?}"
    );
}

#[test]
fn an_image_change_is_a_rebuild_or_else_a_replace() {
    let mut s = converged();
    s.plan.nodes.get_mut("web-1").unwrap().image = "debian-12".into();
    let c = only(&compute(&s, &caps(true, true, true), true)).clone();
    assert_eq!(c.action, ChangeAction::Replace);
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .starts_with("rebuild: server s-1 keeps its id"),
        "{c:?}"
    );
    let c = only(&compute(&s, &caps(true, false, true), true)).clone();
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .contains("replace destroys s-1"),
        "{c:?}"
    );
    // Offer and image together: one new server does both.
    s.plan.nodes.get_mut("web-1").unwrap().offer = "sim-large".into();
    let c = only(&compute(&s, &caps(true, true, true), true)).clone();
    assert_eq!(c.action, ChangeAction::Replace);
    assert_eq!(c.fields.len(), 2);
}

#[test]
fn a_membership_change_rewrites_the_other_members_peers() {
    let mut s = converged();
    let members = memberships(&s).remove("prod").unwrap();
    let cluster = crate::engine::state::model::ClusterTracked::new(members);
    s.tracked
        .nodes
        .get_mut("web-1")
        .unwrap()
        .configured_membership = Some(cluster.membership.clone());
    s.tracked.clusters.insert("prod".into(), cluster);
    assert!(compute(&s, &env(), true).is_empty());
    // web-2 planned in the same cluster: web-1's peer list changes with it.
    let mut p2 = node_plan();
    p2.uid = "u2".into();
    s.plan.nodes.insert("web-2".into(), p2);
    let set = compute(&s, &env(), true);
    let web1 = set.changes.iter().find(|c| c.name == "web-1").unwrap();
    assert_eq!(
        web1.line(),
        "~ node web-1: peers (membership changed: +web-2)"
    );
    assert_eq!(web1.action, ChangeAction::Update, "counted as a change");
    // A stopped node cannot be reached to rewrite it: blocked, saying what to do.
    s.observed
        .servers
        .get_mut("web-1")
        .unwrap()
        .server
        .as_mut()
        .unwrap()
        .status = ServerStatus::Off;
    let set = compute(&s, &env(), true);
    let web1 = set.changes.iter().find(|c| c.name == "web-1").unwrap();
    assert!(
        web1.blocked
            .as_deref()
            .unwrap()
            .contains("web-1 is off at the provider; start it (`legion nodes start web-1`)"),
        "{web1:?}"
    );
    s.observed
        .servers
        .insert("web-1".into(), reading("sim-east", "sim-small"));
    // Without details (the snapshot) it is still counted.
    assert!(
        compute(&s, &env(), false)
            .changes
            .iter()
            .any(|c| c.name == "web-1")
    );
    // web-1's peers configured with web-2 in them: nothing left for web-1.
    let mut t2 = tracked(Some(succeeded()));
    t2.uid = "u2".into();
    t2.server_id = Some("s-2".into());
    t2.ipv4 = Some("198.51.100.8".into());
    s.tracked.nodes.insert("web-2".into(), t2);
    let members = memberships(&s).remove("prod").unwrap();
    let cluster = crate::engine::state::model::ClusterTracked::new(members);
    for n in ["web-1", "web-2"] {
        s.tracked.nodes.get_mut(n).unwrap().configured_membership =
            Some(cluster.membership.clone());
    }
    s.tracked.clusters.insert("prod".into(), cluster);
    let set = compute(&s, &env(), true);
    assert!(
        !set.changes
            .iter()
            .any(|c| c.kind == ResourceKind::Node && c.line().contains("peers")),
        "{:#?}",
        set.changes
    );
}

#[test]
fn a_vanished_server_is_replaced_by_the_apply() {
    let mut s = converged();
    s.observed.servers.get_mut("web-1").unwrap().server = None;
    let c = only(&compute(&s, &env(), true)).clone();
    assert_eq!(c.action, ChangeAction::Replace);
    assert_eq!(c.blocked, None, "reprovisioning is what apply does");
    assert!(c.reason.unwrap().contains("no longer exists"));
}

#[test]
fn an_unobserved_node_is_unknown_not_in_sync() {
    let mut s = converged();
    s.observed.servers.clear();
    let set = compute(&s, &env(), true);
    let c = only(&set);
    assert_eq!(c.action, ChangeAction::Unknown);
    assert!(c.reason.as_deref().unwrap().contains("not observed yet"));
    assert_eq!(set.counts().to_string(), "1 unknown");
}

#[test]
fn a_failed_execution_is_resumed_and_a_removed_node_deleted() {
    let mut s = converged();
    let mut e = succeeded();
    e.status = ExecStatus::Failed;
    e.phases[3].status = PhaseStatus::Failed;
    s.tracked.nodes.get_mut("web-1").unwrap().execution = Some(e);
    let c = only(&compute(&s, &env(), true)).clone();
    assert_eq!(c.action, ChangeAction::Update);
    assert_eq!(c.fields[0].old.as_deref(), Some("failed at configure"));
    assert_eq!(c.reason.as_deref(), Some("resumes its add execution"));

    let mut s = converged();
    s.plan.nodes.clear();
    let set = compute(&s, &env(), true);
    assert_eq!(set.changes[0].action, ChangeAction::Delete);
    assert_eq!(set.changes[0].kind, ResourceKind::Node);
    assert!(
        set.changes[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("destroyed")
    );
    assert_eq!(
        (set.changes[1].kind, set.changes[1].action),
        (ResourceKind::Firewall, ChangeAction::Delete)
    );
}

#[test]
fn zones_are_created_then_changed_record_by_record() {
    let mut s = converged();
    s.plan.zones.insert(
        "example.test".into(),
        ZonePlan {
            provider: "mock".into(),
            records: vec![RecordPlan {
                name: "www".into(),
                rtype: RecordType::A,
                ttl: 300,
                value: RecordValue::NodeAddress("web-1".into()),
            }],
        },
    );
    let c = only(&compute(&s, &env(), true)).clone();
    assert_eq!(
        (c.kind, c.action),
        (ResourceKind::Zone, ChangeAction::Create)
    );
    assert!(
        c.fields
            .iter()
            .any(|f| f.field == "www A" && f.new.as_deref() == Some("198.51.100.7 (ttl 300)")),
        "{c:?}"
    );

    // Applied as planned: nothing to do.
    let (spec, _) = desired_zone(&s.plan, &s.tracked, "example.test").unwrap();
    s.tracked.zones.insert(
        "example.test".into(),
        TrackedZone {
            provider: "mock".into(),
            zone_id: Some("z1".into()),
            created_by_legion: true,
            nameservers: vec!["ns1.sim".into()],
            managed: vec![("www".into(), RecordType::A)],
            applied_signature: Some(signature(&spec)),
        },
    );
    s.observed.zones.insert(
        "example.test".into(),
        crate::providers::ObservedZone {
            id: "z1".into(),
            name: "example.test".into(),
            nameservers: vec![],
            rrsets: spec.rrsets.clone(),
        },
    );
    assert!(compute(&s, &env(), true).is_empty());

    // A literal record added: the record is created, the zone is updated.
    s.plan
        .zones
        .get_mut("example.test")
        .unwrap()
        .records
        .push(RecordPlan {
            name: "@".into(),
            rtype: RecordType::TXT,
            ttl: 600,
            value: RecordValue::Literal("hello".into()),
        });
    let set = compute(&s, &env(), true);
    let kinds: Vec<_> = set.changes.iter().map(|c| (c.kind, c.action)).collect();
    assert_eq!(
        kinds,
        [
            (ResourceKind::Zone, ChangeAction::Update),
            (ResourceKind::Record, ChangeAction::Create)
        ]
    );
    assert_eq!(set.changes[1].name, "@.example.test TXT");
}

#[test]
fn a_firewall_rule_shows_as_added_and_a_lockout_blocks_the_set() {
    let mut s = converged();
    s.plan
        .firewalls
        .entry("prod".into())
        .or_default()
        .rules
        .push(FirewallRule {
            protocol: crate::providers::Protocol::Tcp,
            port: Some("443".into()),
            sources: vec!["0.0.0.0/0".into()],
            description: "https".into(),
        });
    let c = only(&compute(&s, &env(), true)).clone();
    assert_eq!(
        (c.kind, c.action),
        (ResourceKind::Firewall, ChangeAction::Update)
    );
    assert!(
        c.fields
            .iter()
            .any(|f| f.field == "rule" && f.new.as_deref().unwrap().contains("443")),
        "{c:?}"
    );
    assert_eq!(c.blocked, None);

    // The node now sees Legion from an address no management source covers.
    s.tracked.seen_from.get_mut("web-1").unwrap().last = "203.0.113.9".into();
    let c = only(&compute(&s, &env(), true)).clone();
    assert!(c.blocked.unwrap().contains("203.0.113.9"));
}

#[test]
fn without_details_the_actions_and_counts_are_the_same() {
    let mut s = converged();
    s.plan.nodes.get_mut("web-1").unwrap().offer = "sim-large".into();
    let mut other = node_plan();
    other.uid = "u2".into();
    s.plan.nodes.insert("web-2".into(), other);
    let full = compute(&s, &env(), true);
    let lean = compute(&s, &env(), false);
    assert_eq!(full.counts(), lean.counts());
    let actions = |set: &ChangeSet| -> Vec<_> {
        set.changes
            .iter()
            .map(|c| (c.kind, c.name.clone(), c.action))
            .collect()
    };
    assert_eq!(actions(&full), actions(&lean));
    assert!(lean.changes.iter().all(|c| c.fields.is_empty()));
}
