use super::*;
use crate::providers::{LABEL_NODE, Protocol};

fn spec(name: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "debian-12".into(),
        ssh_key_id: None,
        labels: BTreeMap::from([
            (LABEL_INSTALL.to_string(), "i1".to_string()),
            (LABEL_NODE.to_string(), format!("uid-{name}")),
        ]),
        user_data: None,
    }
}

#[test]
fn servers_get_sequential_ids_and_documentation_addresses() {
    let mut w = World::default();
    let a = w.create_server(&spec("a")).unwrap();
    let b = w.create_server(&spec("b")).unwrap();
    assert_eq!((a.id.as_str(), b.id.as_str()), ("sv-1", "sv-2"));
    assert_eq!(b.ipv4.as_deref(), Some("198.51.100.2"));
    assert_eq!(b.ipv6.as_deref(), Some("2001:db8::2"));
    assert_eq!(addresses(300).0.as_deref(), Some("203.0.113.46"));
    assert_eq!(addresses(1000).0, None);
}

/// Lookups by id go through an index: right after creates, a delete and a reload.
#[test]
fn servers_are_found_by_id_through_creates_deletes_and_reloads() {
    let mut w = World::default();
    for n in ["a", "b", "c", "d"] {
        w.create_server(&spec(n)).unwrap();
    }
    w.delete_server("sv-2").unwrap();
    let found =
        |w: &World| ["sv-1", "sv-2", "sv-3", "sv-4"].map(|id| w.server(id).map(|s| s.name.clone()));
    assert_eq!(
        found(&w),
        [Some("a".into()), None, Some("c".into()), Some("d".into())]
    );
    let reloaded: World = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
    assert_eq!(found(&reloaded), found(&w));
    assert_eq!(
        w.act("sv-2", &Action::Reboot).map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );
}

#[test]
fn create_refuses_what_a_cloud_would() {
    let mut w = World::default();
    w.create_server(&spec("a")).unwrap();
    let kind = |r: ProviderResult<ObservedServer>| r.map_err(|e| (e.kind, e.code));
    assert_eq!(
        kind(w.create_server(&spec("a"))),
        Err((ErrorKind::Conflict, Some("uniqueness_error".into())))
    );
    let mut s = spec("b");
    s.region = "sim-north".into();
    assert_eq!(
        kind(w.create_server(&s)).unwrap_err().0,
        ErrorKind::InvalidInput
    );
    let mut s = spec("b");
    s.offer = "sim-legacy".into();
    assert_eq!(
        kind(w.create_server(&s)).unwrap_err().0,
        ErrorKind::InvalidInput
    );
    let mut s = spec("b");
    s.ssh_key_id = Some("key-9".into());
    assert_eq!(
        kind(w.create_server(&s)).unwrap_err().0,
        ErrorKind::InvalidInput
    );
    assert_eq!(w.servers.len(), 1);
}

#[test]
fn power_actions() {
    let mut w = World::default();
    let id = w.create_server(&spec("a")).unwrap().id;
    w.act(&id, &Action::Shutdown).unwrap();
    assert_eq!(w.server(&id).unwrap().status, ServerStatus::Off);
    let refused = w.act(&id, &Action::Reboot).unwrap_err();
    assert_eq!(
        (refused.kind, refused.message.as_str()),
        (ErrorKind::InvalidInput, "server is off")
    );
    w.act(
        &id,
        &Action::Rebuild {
            image: "ubuntu-24.04".into(),
        },
    )
    .unwrap();
    let s = w.server(&id).unwrap();
    assert_eq!(
        (s.status, s.image.as_str()),
        (ServerStatus::Running, "ubuntu-24.04")
    );
    assert_eq!(
        w.act("sv-9", &Action::PowerOn).unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn deleting_a_server_detaches_its_firewalls() {
    let mut w = World::default();
    let id = w.create_server(&spec("a")).unwrap().id;
    let fw = w.create_firewall("fw", &BTreeMap::new(), &[]).unwrap().id;
    w.attach(&fw, std::slice::from_ref(&id)).unwrap();
    w.delete_server(&id).unwrap();
    assert!(w.firewall(&fw).unwrap().applied_to.is_empty());
    assert_eq!(w.delete_server(&id).unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn comparisons_ignore_order_and_comments() {
    assert!(same_public_key(
        "ssh-ed25519 AAAA legion@a",
        "ssh-ed25519 AAAA other"
    ));
    assert!(!same_public_key("ssh-ed25519 AAAA", "ssh-ed25519 AAAB"));
    let rule = |sources: &[&str]| FirewallRule {
        protocol: Protocol::Tcp,
        port: Some("22".into()),
        sources: sources.iter().map(|s| s.to_string()).collect(),
        description: "ssh".into(),
    };
    assert_eq!(
        rule_set(&[rule(&["::/0", "0.0.0.0/0"])]),
        rule_set(&[rule(&["0.0.0.0/0", "::/0"])])
    );
    let rr = |values: &[&str]| RrSet {
        name: "www".into(),
        rtype: RecordType::A,
        ttl: 60,
        values: values.iter().map(|s| s.to_string()).collect(),
    };
    assert!(same_rrset(&rr(&["1", "2"]), &rr(&["2", "1"])));
    assert!(!same_rrset(&rr(&["1"]), &rr(&["1", "2"])));
}

#[test]
fn domains_exist_at_the_registrar() {
    let mut w = World::default();
    let (d, changed) = w.domain("Example.com.");
    assert!(changed);
    assert_eq!(d.name, "example.com");
    assert_eq!(d.nameservers, vec!["registrar.sim.invalid".to_string()]);
    w.set_nameservers("example.com", &["ns1.sim.invalid".into()])
        .unwrap();
    let (d, changed) = w.domain("example.com");
    assert!(!changed);
    assert_eq!(d.nameservers, vec!["ns1.sim.invalid".to_string()]);
}
