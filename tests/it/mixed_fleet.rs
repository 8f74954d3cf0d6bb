//! A mixed fleet: one Legion home configured for Hetzner, Scaleway and OVHcloud at once
//! (their local fakes, one loopback sshd playing every server), one cluster spread over
//! the three clouds, and the dashboard listing them together with each provider's status.
//! The same fleet, for a person: `cargo run --example mixed-fleet` (see README).

#![allow(clippy::unwrap_used)]

use legion_testkit::rig as cloud_rig;
use legion_testkit::three_clouds;
use legion_testkit::tmux;

use std::time::Duration;

use cloud_rig::Rig;
use serde_json::Value;
use three_clouds::{Clouds, KINDS};

/// One node per cloud, all in the `web` cluster.
const FLEET: [(&str, &str); 3] = [
    ("web-1", "hetzner"),
    ("web-2", "scaleway"),
    ("web-3", "ovh"),
];

fn row<'a>(screen: &'a str, node: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(&format!("│{node} ")))
        .unwrap_or("")
}

#[test]
fn one_dashboard_lists_a_cluster_spread_over_three_clouds() {
    let Some(mut rig) = Rig::start_clouds(&KINDS, || Clouds::start(Duration::from_millis(30)))
    else {
        return;
    };
    rig.sandbox_per_node();
    let clouds = &rig.fake;
    // A slow cloud: `nodes add` with no offer reads the catalog it needs instead of
    // refusing because the engine it just started has not loaded it yet.
    clouds.scaleway.set_latency(Duration::from_millis(300));
    for (name, kind) in FLEET {
        rig.ok(&["nodes", "add", name, "--provider", kind, "--cluster", "web"]);
    }
    clouds.scaleway.set_latency(Duration::ZERO);
    let (code, out, err) = rig.run(&["apply", "--wait"]);
    if code != 0 {
        let nodes = rig.ok(&["nodes", "list", "--json"]);
        let log = rig.ok(&["logs"]);
        panic!("apply: {err}\n{out}\n{nodes}\n{log}");
    }

    // The CLI's one table across the three clouds.
    let rows: Value = serde_json::from_str(&rig.ok(&["nodes", "list", "--json"])).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (name, kind) in FLEET {
        let r = rows.iter().find(|r| r["name"] == name).unwrap();
        assert_eq!(r["provider"], kind, "{r}");
        assert_eq!(r["machine"], "running", "{r}");
        assert_eq!(r["execution"]["status"], "succeeded", "{r}");
        // A fresh engine checked its health before answering.
        assert_eq!(r["system"]["state"], "ready", "{r}");
    }
    // Each server is at its own cloud, and only there.
    assert!(clouds.hetzner.server_by_name("web-1").is_some());
    assert!(clouds.hetzner.server_by_name("web-2").is_none());
    let scw = clouds.scaleway.server_by_name("web-2").unwrap();
    assert!(clouds.scaleway.server_by_name("web-3").is_none());
    assert_eq!(clouds.ovh.servers_named("web-3").len(), 1);
    // Each node knows its identity and its two peers, whatever their cloud (one sshd
    // plays every server, so every address is 127.0.0.1).
    for (name, _) in FLEET {
        let dir = rig.sandbox_of(name).join("etc/legion");
        let identity = std::fs::read_to_string(dir.join("node.json")).unwrap();
        let identity: Value = serde_json::from_str(&identity).unwrap();
        assert_eq!(identity["name"], name);
        assert_eq!(identity["cluster"], "web");
        let peers = std::fs::read_to_string(dir.join("peers")).unwrap();
        assert_eq!(
            peers.lines().collect::<Vec<_>>(),
            ["127.0.0.1"; 2],
            "{peers}"
        );
    }
    // The cluster's firewall: applied where the cloud has firewalls, tasks where not.
    let fw = rig.ok(&["firewalls", "list"]);
    assert!(
        fw.contains("operator task:") && fw.contains("on web-3"),
        "{fw}"
    );
    assert!(!fw.contains("on web-1") && !fw.contains("on web-2"), "{fw}");

    let cmd = format!(
        "env {} TERM=xterm-256color {}; echo LEGION-EXITED $?; sleep 60",
        rig.env_line(),
        rig.bin.display()
    );
    let Some(t) = tmux::Tmux::start(&cmd, 200, 40) else {
        return;
    };
    let s = t.wait("the three clouds' nodes, ready", |s| {
        FLEET
            .iter()
            .all(|(name, kind)| row(s, name).contains(kind) && row(s, name).contains(" running  "))
    });
    let header = s.lines().next().unwrap();
    for kind in KINDS {
        assert!(header.contains(&format!("{kind}:ok")), "{header}");
    }

    // The cluster's firewall set spans the three clouds; the column says so in full.
    t.text("3");
    t.wait("the web set over three clouds", |s| {
        row(s, "web").contains("hetzner,ovh,scaleway") && s.contains("operator tasks 2")
    });
    t.text("1");
    t.wait_for("Nodes 3/3");

    // Out of band: someone stops the Scaleway server in its console, and OVHcloud's API
    // stops answering. A refresh (ctrl-r) reads every cloud now; each row says its own.
    assert!(clouds.scaleway.set_server_state(&scw.id, "stopped"));
    clouds.ovh.unavailable_next(100_000);
    t.keys(&["C-r"]);
    let s = t.wait("Scaleway's stop and OVHcloud's outage", |s| {
        let header = s.lines().next().unwrap_or("");
        header.contains("ovh:degraded")
            && row(s, "web-3").contains("provider degraded")
            && row(s, "web-2").contains("stopped")
    });
    let header = s.lines().next().unwrap();
    assert!(header.contains("hetzner:ok"), "{header}");
    assert!(header.contains("scaleway:ok"), "{header}");
    assert!(row(&s, "web-1").contains(" running  "), "{s}");
    assert!(!row(&s, "web-1").contains("provider"), "{s}");

    // OVHcloud answers again: the next refresh says so.
    clouds.ovh.clear_faults();
    t.keys(&["C-r"]);
    t.wait("OVHcloud back", |s| {
        s.lines().next().unwrap_or("").contains("ovh:ok")
            && !row(s, "web-3").contains("provider degraded")
    });
    t.text("q");
    t.wait_for("LEGION-EXITED 0");
}
