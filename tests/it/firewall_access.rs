//! Management access through managed firewalls (issue 14 §1), end to end through the
//! real binary: the Hetzner and Scaleway fakes enforce their firewalls for reachability
//! (each server on its own loopback address behind a forwarder that asks the fake's
//! rules and default policy, `legion_testkit::gate`), a real sshd plays the servers.
//! After an apply SSH still works (the health check logs in through the firewall), a
//! port no rule allows is blocked, and without the management rule SSH is blocked too.
//! Also: `config set management-sources`, and a Scaleway reinstall whose observation
//! converges without another apply.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use legion::engine::state::store::StateFile;
use legion_testkit::gate::{Gates, first_bytes};
use legion_testkit::hetzner::HetznerFake;
use legion_testkit::http::{FaultKind, FaultRule};
use legion_testkit::rig::Rig;
use legion_testkit::scaleway::ScalewayFake;
use serde_json::Value;

/// A port nothing listens on at 127.0.0.1 right now, for the port no rule allows.
fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gates of a rig: the sshd's port and a spare one, both leading to the sshd, so
/// only the firewall tells them apart.
fn gates_for<F>(rig: &Rig<F>) -> (Arc<Gates>, u16) {
    let sshd = SocketAddr::from(([127, 0, 0, 1], rig.sshd.port()));
    let spare = spare_port();
    (
        Gates::new(vec![(rig.sshd.port(), sshd), (spare, sshd)]),
        spare,
    )
}

/// The first bytes on a server's port: an sshd banner when the firewall lets us in.
fn banner(ip: &str, port: u16) -> Option<String> {
    let ip: IpAddr = ip.parse().unwrap();
    first_bytes(ip, port, Duration::from_secs(3)).map(|b| String::from_utf8_lossy(&b).into())
}

fn json(rig: &Rig<impl Sized>, args: &[&str]) -> Value {
    serde_json::from_str(&rig.ok(args)).unwrap()
}

/// `nodes list --json`'s row of `name` (after the CLI's first health check).
fn node_row(rig: &Rig<impl Sized>, name: &str) -> Value {
    let rows = json(rig, &["nodes", "list", "--json"]);
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn a_hetzner_firewall_keeps_ssh_for_legion_and_blocks_the_rest() {
    let Some(rig) = Rig::start("hetzner", || {
        let fake = HetznerFake::start();
        fake.set_action_duration(Duration::from_millis(30));
        let vars = fake.legion_vars();
        (fake, vars)
    }) else {
        return;
    };
    let (gates, spare) = gates_for(&rig);
    rig.fake.enforce_firewalls(gates);
    let ssh_port = rig.sshd.port();

    let out = rig.ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--apply",
        "--wait",
    ]);
    assert!(out.contains("converged"), "{out}");
    let server = rig.fake.server_by_name("hz-1").unwrap();
    let ip = server.ipv4.clone().unwrap();
    assert!(ip.starts_with("127.77."), "a gated address: {ip}");

    // The firewall set carries the management rule: the SSH port Legion uses, from the
    // address the node saw Legion connect from during the first deploy.
    let fws = rig.fake.firewalls();
    assert_eq!(fws.len(), 1, "{fws:?}");
    let fw = &fws[0];
    let mgmt: Vec<&Value> = fw
        .rules
        .iter()
        .filter(|r| r["port"] == ssh_port.to_string().as_str())
        .collect();
    assert_eq!(mgmt.len(), 1, "{:?}", fw.rules);
    assert_eq!(mgmt[0]["source_ips"], serde_json::json!(["127.0.0.1/32"]));
    assert_eq!(mgmt[0]["direction"], "in");
    assert!(!fw.applied_to.is_empty(), "attached to the server");
    let rows = json(&rig, &["firewalls", "list", "--json"]);
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["state"], "converged", "{row}");
    assert!(
        row["summary"]
            .as_str()
            .unwrap()
            .contains("SSH from 127.0.0.1/32"),
        "the sources are shown: {row}"
    );
    let text = rig.ok(&["firewalls", "list"]);
    assert!(text.contains("SSH from 127.0.0.1/32"), "{text}");

    // After the apply: SSH works through the firewall (the health check logs in), a
    // port no rule allows is blocked.
    assert!(
        banner(&ip, ssh_port).is_some_and(|b| b.starts_with("SSH-")),
        "ssh reachable"
    );
    assert_eq!(banner(&ip, spare), None, "a port no rule allows is blocked");
    let row = node_row(&rig, "hz-1");
    assert_eq!(row["system"]["state"], "ready", "{row}");

    // The same firewall without the management rule drops SSH: the fake enforces it.
    let others: Vec<Value> = fw
        .rules
        .iter()
        .filter(|r| r["port"] != ssh_port.to_string().as_str())
        .cloned()
        .collect();
    assert!(rig.fake.set_firewall_rules(fw.id, others));
    assert_eq!(banner(&ip, ssh_port), None, "ssh blocked without the rule");
    let row = node_row(&rig, "hz-1");
    assert_eq!(row["system"]["state"], "unreachable", "{row}");
}

#[test]
fn management_sources_are_configured_and_validated() {
    let Some(rig) = Rig::start("hetzner", || {
        let fake = HetznerFake::start();
        let vars = fake.legion_vars();
        (fake, vars)
    }) else {
        return;
    };
    let out = rig.ok(&[
        "config",
        "set",
        "management-sources",
        "203.0.113.4/32, 2001:db8::/48",
    ]);
    assert!(out.contains("203.0.113.4/32, 2001:db8::/48"), "{out}");
    assert_eq!(
        rig.ok(&["config", "get", "management-sources"]).trim(),
        "2001:db8::/48,203.0.113.4/32"
    );
    let (code, _, err) = rig.run(&["config", "set", "management-sources", "203.0.113.4"]);
    assert_ne!(code, 0);
    assert!(err.contains("203.0.113.4 is not a CIDR"), "{err}");
    // Unchanged by the refused edit; an empty value clears it.
    assert_eq!(
        rig.ok(&["config", "get", "management-sources"]).trim(),
        "2001:db8::/48,203.0.113.4/32"
    );
    rig.ok(&["config", "set", "management-sources", ""]);
    assert_eq!(rig.ok(&["config", "get", "management-sources"]).trim(), "");
}

#[test]
fn a_scaleway_security_group_keeps_ssh_and_a_reinstall_converges() {
    let Some(mut rig) = Rig::start("scaleway", || {
        let fake = ScalewayFake::start();
        fake.set_action_duration(Duration::from_millis(30));
        let vars = fake.legion_vars();
        (fake, vars)
    }) else {
        return;
    };
    let (gates, spare) = gates_for(&rig);
    rig.fake.enforce_firewalls(gates);
    let ssh_port = rig.sshd.port();
    let out = rig.ok(&[
        "nodes",
        "add",
        "scw-1",
        "--provider",
        "scaleway",
        "--apply",
        "--wait",
    ]);
    assert!(out.contains("converged"), "{out}");
    let server = rig.fake.server_by_name("scw-1").unwrap();
    let ip = server.ipv4.clone().unwrap();
    let group = rig
        .fake
        .security_groups()
        .into_iter()
        .find(|g| g.id == server.security_group)
        .unwrap();
    assert!(
        !group.project_default,
        "Legion's group (inbound policy drop)"
    );
    assert!(
        group.rules.iter().any(|r| r["ip_range"] == "127.0.0.1/32"
            && r["dest_port_from"] == u64::from(ssh_port)
            && r["action"] == "accept"),
        "{:?}",
        group.rules
    );
    assert!(banner(&ip, ssh_port).is_some_and(|b| b.starts_with("SSH-")));
    assert_eq!(banner(&ip, spare), None, "dropped by the default policy");
    assert_eq!(node_row(&rig, "scw-1")["system"]["state"], "ready");

    // Reinstall. A reading taken while the server was powering off and on (`stopping`,
    // `starting`) used to outlive the reinstall: the next command showed the node
    // starting / unknown until another apply. Slow power actions (longer than the 3 s
    // observation interval while busy) make sure such readings are taken.
    let id = format!("{}/{}", server.zone, server.id);
    rig.fake.set_action_duration(Duration::from_millis(3500));
    rig.sshd.restart_with_new_host_key();
    let out = rig.ok(&["nodes", "reinstall", "scw-1", "--wait"]);
    assert!(out.contains("done (running"), "reinstall: {out}");
    // The next command shows what the reinstall left in the state, not a fresh reading:
    // its own readings of the server's zone fail.
    rig.fake.inject(
        FaultRule::new(FaultKind::Unavailable, 1000)
            .matching("GET", "/instance/v1/zones/fr-par-1/servers"),
    );
    let row = node_row(&rig, "scw-1");
    rig.fake.clear_faults();
    assert_eq!(row["server_id"], id.as_str());
    assert_eq!(row["machine"], "running", "{row}");
    assert_eq!(row["system"]["state"], "ready", "{row}");

    // Without the group's rules, the default policy drops SSH.
    assert!(rig.fake.clear_group_rules(&group.id));
    assert_eq!(banner(&ip, ssh_port), None);
}

/// The settings form: `e` in the Firewalls view edits the configured management
/// sources, prefilled from the snapshot; a bad network is refused beside its field.
#[test]
fn the_firewalls_view_edits_the_management_sources() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use legion::engine::plan::PlanEdit;
    use legion::engine::snapshot::{AppSnapshot, LockState};
    use legion::views::app::{App, Effect, Options, UiEvent};

    let mut snap = AppSnapshot::empty("/home/op".into(), LockState::Unlocked);
    snap.management_sources = vec!["203.0.113.4/32".into()];
    let snap = Arc::new(snap);
    let mut app = App::new(
        snap.clone(),
        Options {
            readonly: false,
            demo: None,
            attached: None,
            theme: legion::views::theme::Theme::builtin("dark").unwrap(),
            keymap: legion::views::keymap::Keymap::defaults(),
            providers: Vec::new(),
        },
    );
    app.handle(UiEvent::Snapshot(snap));
    let mut key = |code: KeyCode| app.handle(UiEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    key(KeyCode::Char('3'));
    key(KeyCode::Char('e'));
    for c in ", 2001:db8::/48x".chars() {
        key(KeyCode::Char(c));
    }
    assert!(key(KeyCode::Enter).is_empty(), "refused: not a network");
    key(KeyCode::Backspace);
    let fx = key(KeyCode::Enter);
    assert!(
        matches!(fx.as_slice(), [Effect::EditPlan(PlanEdit::SetManagementSources { sources })]
            if sources == &["203.0.113.4/32".to_string(), "2001:db8::/48".to_string()]),
        "{fx:?}"
    );
}

/// The operator moved (a new jump host, a changed NAT): the node now sees Legion from an
/// address no management source covers. `apply` says so before it starts (the engine's
/// `lockouts` call), and the firewall actor refuses the changed set before any provider
/// call: the rules at the provider stay as they were.
#[test]
fn apply_warns_and_refuses_a_set_that_would_lock_legion_out() {
    let Some(rig) = Rig::start("hetzner", || {
        let fake = HetznerFake::start();
        fake.set_action_duration(Duration::from_millis(30));
        let vars = fake.legion_vars();
        (fake, vars)
    }) else {
        return;
    };
    let (gates, _) = gates_for(&rig);
    rig.fake.enforce_firewalls(gates);
    let out = rig.ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--cluster",
        "web",
        "--apply",
        "--wait",
    ]);
    assert!(out.contains("converged"), "{out}");
    let (_, _, quiet) = rig.run(&["apply", "--wait"]);
    assert!(
        !quiet.contains("would block SSH"),
        "no warning yet: {quiet}"
    );
    let before = rig.fake.firewalls();

    // Legion's record of where the node last saw it from, as a later health check over
    // a changed NAT would leave it.
    let file = StateFile::in_home(&rig.home());
    let (key, plain) = file.open(b"hetzner end to end").unwrap();
    let mut state: Value = serde_json::from_slice(&plain).unwrap();
    // The first address moves too, so the management rule (which keeps it) no longer
    // covers where Legion connects from, whichever address the next health check sees.
    state["tracked"]["seen_from"]["hz-1"]["first"] = "203.0.113.9".into();
    state["tracked"]["seen_from"]["hz-1"]["last"] = "198.51.100.7".into();
    file.save(&key, &serde_json::to_vec(&state).unwrap())
        .unwrap();

    rig.ok(&[
        "firewalls",
        "add-rule",
        "web",
        "--port",
        "443",
        "--source",
        "0.0.0.0/0",
    ]);
    let (code, out, err) = rig.run(&["apply", "--wait"]);
    // Said before the apply starts (a health check during the apply may already have
    // recorded the loopback address the test's sshd really sees).
    assert!(
        err.contains("warning: the firewall set")
            && err.contains("the address node hz-1 sees you from")
            && (err.contains("would block SSH from 198.51.100.7")
                || err.contains("would block SSH from 127.0.0.1"))
            && err.contains("legion config set management-sources"),
        "said before the apply: {err}"
    );
    assert_ne!(code, 0, "the apply did not converge: {out}");
    let rows = json(&rig, &["firewalls", "list", "--json"]);
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["state"], "failed", "{row}");
    assert_eq!(
        rig.fake.firewalls()[0].rules,
        before[0].rules,
        "nothing was sent to the provider"
    );

    // Adding the address the node sees clears the warning and applies the set.
    rig.ok(&[
        "config",
        "set",
        "management-sources",
        "198.51.100.7/32,127.0.0.0/8",
    ]);
    let (code, out, err) = rig.run(&["apply", "--wait"]);
    assert!(!err.contains("would block SSH"), "{err}");
    assert_eq!(code, 0, "{out}\n{err}");
}
