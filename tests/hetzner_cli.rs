//! Hetzner end to end through the real binary, against the local fake: configure with
//! the default variable, add a node with `--apply --wait`, list it as JSON, act on it,
//! destroy it. Plus the gated live tests against the real API (`HCLOUD_TOKEN`).

#![allow(clippy::unwrap_used)]

#[path = "fakes/hetzner.rs"]
mod hetzner_fake;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_hetzner_node_from_the_command_line() {
    let fake = hetzner_fake::HetznerFake::start();
    fake.set_action_duration(Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hetzner e2e\n").unwrap();
    let legion = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.env("LEGION_HOME", dir.path().join("home"))
            .env("LEGION_PASSWORD_FILE", &pw)
            .env("LEGION_HETZNER_API_URL", fake.base_url())
            .env("LEGION_HETZNER_ACTION_POLL_MS", "10")
            .env("HCLOUD_TOKEN", fake.token())
            .env_remove("LEGION_DAEMON_TOKEN")
            .env_remove("LEGION_MOCK_NETWORK");
        c
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = run(legion().args(args));
        assert_eq!(code, 0, "legion {args:?}: {err}\n{out}");
        out
    };
    ok(&["config", "init"]);
    // The token comes from HCLOUD_TOKEN, the descriptor's default variable.
    ok(&["provider", "configure", "hetzner"]);
    ok(&["provider", "verify", "hetzner"]);
    let catalog: Value = serde_json::from_str(&ok(&["catalog", "hetzner", "--json"])).unwrap();
    let offer = catalog["defaults"]["offer"].as_str().unwrap().to_string();
    assert!(!offer.is_empty());

    // The server is created and running; deployment over SSH is the shared node agent's
    // work (not built yet), so the execution stops at its first SSH phase, saying why.
    let (code, out, err) = run(legion().args([
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--apply",
        "--wait",
    ]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("wait for reachability"), "{err}");
    let rows: Value = serde_json::from_str(&ok(&["nodes", "list", "--json"])).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["name"], "hz-1");
    assert_eq!(row["provider"], "hetzner");
    assert_eq!(row["offer"], offer.as_str());
    assert_eq!(row["machine"], "running", "{row}");
    let phases = row["execution"]["phases"].as_array().unwrap();
    assert_eq!(phases[0]["phase"], "provision");
    assert_eq!(phases[0]["status"], "done");
    let server = fake
        .server_by_name("hz-1")
        .expect("the server exists in the fake");
    assert_eq!(server.status, "running");
    assert_eq!(row["server_id"], server.id.to_string());

    let out = ok(&["nodes", "stop", "hz-1", "--wait"]);
    assert!(out.contains("done (stopped"), "{out}");
    assert_eq!(fake.server_by_name("hz-1").unwrap().status, "off");
    let out = ok(&["nodes", "start", "hz-1", "--wait"]);
    assert!(out.contains("done (running"), "{out}");
    ok(&["nodes", "reboot", "hz-1", "--wait"]);

    // A provider error reads as Hetzner's, not as an HTTP status.
    let (code, _, err) = run(legion().args([
        "nodes",
        "add",
        "hz-2",
        "--provider",
        "hetzner",
        "--offer",
        "no-such-type",
        "--apply",
        "--wait",
    ]));
    assert_ne!(code, 0);
    assert!(
        err.contains("Hetzner: invalid input in field 'server_type'") && !err.contains("HTTP"),
        "{err}"
    );
    ok(&["nodes", "destroy", "hz-2", "--yes"]);

    ok(&["nodes", "destroy", "hz-1", "--yes"]);
    assert!(fake.server_by_name("hz-1").is_none());
    assert_eq!(fake.servers().len(), 0);
    // The token never reaches the logs.
    for entry in std::fs::read_dir(dir.path().join("home/logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&fake.token()));
    }
}
