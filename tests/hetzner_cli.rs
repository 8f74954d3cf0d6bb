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

#[path = "common/sshd.rs"]
mod sshd;

#[test]
fn a_hetzner_node_from_the_command_line() {
    // A real sshd on loopback plays the servers: the fake hands out 127.0.0.1, so the
    // deployment phases run over SSH for real (in a sandbox directory, hostname untouched).
    let Some(sshd) = sshd::Sshd::start(sshd::SshdOpts::default()) else {
        return;
    };
    let fake = hetzner_fake::HetznerFake::start();
    fake.set_action_duration(Duration::from_millis(30));
    fake.set_server_ipv4("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("node-root");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hetzner e2e\n").unwrap();
    let legion = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.env("LEGION_HOME", dir.path().join("home"))
            .env("LEGION_PASSWORD_FILE", &pw)
            .env("LEGION_HETZNER_API_URL", fake.base_url())
            .env("LEGION_HETZNER_ACTION_POLL_MS", "10")
            .env("HCLOUD_TOKEN", fake.token())
            .env("LEGION_SSH_PORT", sshd.port().to_string())
            .env("LEGION_SSH_USER", sshd::current_user())
            .env("LEGION_SSH_SANDBOX_ROOT", &sandbox)
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
    // The managed key, made at init, is what the servers accept (cloud-init would put
    // it in place from the uploaded key; here the sshd is told directly).
    let public = ok(&["ssh-key", "show"]);
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    sshd.authorize(public.trim());
    // The token comes from HCLOUD_TOKEN, the descriptor's default variable.
    ok(&["provider", "configure", "hetzner"]);
    ok(&["provider", "verify", "hetzner"]);
    let catalog: Value = serde_json::from_str(&ok(&["catalog", "hetzner", "--json"])).unwrap();
    let offer = catalog["defaults"]["offer"].as_str().unwrap().to_string();

    let out = ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--apply",
        "--wait",
    ]);
    assert!(out.contains("converged"), "{out}");
    let rows: Value = serde_json::from_str(&ok(&["nodes", "list", "--json"])).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["name"], "hz-1");
    assert_eq!(row["provider"], "hetzner");
    assert_eq!(row["offer"], offer.as_str());
    assert_eq!(row["machine"], "running", "{row}");
    assert_eq!(row["execution"]["status"], "succeeded", "{row}");
    let server = fake
        .server_by_name("hz-1")
        .expect("the server exists in the fake");
    assert_eq!(row["server_id"], server.id.to_string());
    assert_eq!(server.ssh_keys.len(), 1, "created with the managed key");
    assert_eq!(fake.ssh_keys().len(), 1);
    // The configure phase wrote the node's identity over SSH.
    let identity: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.join("etc/legion/node.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(identity["name"], "hz-1");

    for (action, machine) in [
        ("stop", "stopped"),
        ("start", "running"),
        ("reboot", "running"),
        ("reinstall", "running"),
    ] {
        let out = ok(&["nodes", action, "hz-1", "--wait"]);
        assert!(out.contains(&format!("done ({machine}")), "{action}: {out}");
    }
    assert_eq!(
        fake.request_count("POST", "/servers"),
        1,
        "exactly one create"
    );

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

    // Every write the fake saw is in Legion's operation log, and no create was repeated.
    let log = std::fs::read_to_string(dir.path().join("home/logs/operations.jsonl")).unwrap();
    let logged: Vec<(String, String)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "provider_write")
        .map(|v| {
            (
                v["method"].as_str().unwrap().to_string(),
                v["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let writes: Vec<(String, String)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.method, r.path.trim_start_matches("/v1").to_string()))
        .collect();
    for w in &writes {
        assert!(
            logged.contains(w),
            "{w:?} is not in the operation log:\n{logged:?}"
        );
    }
    assert_eq!(
        writes
            .iter()
            .filter(|(m, p)| m == "POST" && p == "/servers")
            .count(),
        2,
        "hz-1 once, hz-2 once (refused)"
    );
    // The token never reaches the logs.
    for entry in std::fs::read_dir(dir.path().join("home/logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&fake.token()));
    }
}

#[path = "common/tmux.rs"]
mod tmux;

/// The dashboard on Hetzner nodes from the fake: the provider's status in the header, a
/// converged node, and a Hetzner error in words in a failed node's row.
#[test]
fn the_dashboard_shows_hetzner_nodes_and_their_errors() {
    let Some(sshd) = sshd::Sshd::start(sshd::SshdOpts::default()) else {
        return;
    };
    let fake = hetzner_fake::HetznerFake::start();
    fake.set_action_duration(Duration::from_millis(30));
    fake.set_server_ipv4("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hetzner dashboard\n").unwrap();
    let vars = [
        ("LEGION_HOME", dir.path().join("home").display().to_string()),
        ("LEGION_PASSWORD_FILE", pw.display().to_string()),
        ("LEGION_HETZNER_API_URL", fake.base_url()),
        ("LEGION_HETZNER_ACTION_POLL_MS", "10".into()),
        ("HCLOUD_TOKEN", fake.token()),
        ("LEGION_SSH_PORT", sshd.port().to_string()),
        ("LEGION_SSH_USER", sshd::current_user()),
        (
            "LEGION_SSH_SANDBOX_ROOT",
            dir.path().join("node-root").display().to_string(),
        ),
    ];
    let legion = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
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
    sshd.authorize(ok(&["ssh-key", "show"]).trim());
    ok(&["provider", "configure", "hetzner"]);
    ok(&["nodes", "add", "hz-good", "--provider", "hetzner"]);
    ok(&[
        "nodes",
        "add",
        "hz-bad",
        "--provider",
        "hetzner",
        "--offer",
        "cx999",
    ]);
    let (code, _, _) = run(legion().args(["apply", "--wait"]));
    assert_eq!(code, 1, "one node cannot be created");

    let env: String = vars.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let cmd = format!(
        "env {env} TERM=xterm-256color {}; echo LEGION-EXITED $?; sleep 60",
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = tmux::Tmux::start(&cmd, 200, 40) else {
        return;
    };
    let s = t.wait("Hetzner rows", |s| {
        s.lines()
            .any(|l| l.contains("│hz-good ") && l.contains("ready"))
            && s.lines()
                .any(|l| l.contains("│hz-bad ") && l.contains("Hetzner:"))
    });
    let header = s.lines().next().unwrap();
    assert!(header.contains("hetzner:ok"), "{header}");
    let bad = s.lines().find(|l| l.contains("│hz-bad ")).unwrap();
    assert!(bad.contains("server_type"), "{bad}");
    assert!(!bad.contains("HTTP"), "{bad}");
    t.text("q");
    t.wait_for("LEGION-EXITED 0");
}
