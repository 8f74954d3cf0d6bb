//! Hetzner end to end through the real binary, against the local fake: configure with
//! the default variable, add a node with `--apply --wait`, list it as JSON, act on it,
//! destroy it. Plus the gated live tests against the real API (`HCLOUD_TOKEN`).

#![allow(clippy::unwrap_used)]

use legion_testkit::hetzner as hetzner_fake;
use legion_testkit::rig as cloud_rig;
use legion_testkit::tmux;

use cloud_rig::Rig;
type HetznerRig = Rig<hetzner_fake::HetznerFake>;
use serde_json::Value;

/// How long a dashboard screen that needs real work may take on a loaded machine.
const SLOW_SCREEN: std::time::Duration = std::time::Duration::from_secs(240);
#[test]
fn a_hetzner_node_from_the_command_line() {
    // A real sshd on loopback plays the servers: the fake hands out 127.0.0.1, so the
    // deployment phases run over SSH for real (in a sandbox directory, hostname untouched).
    let Some(rig) = HetznerRig::hetzner() else {
        return;
    };
    let (fake, sandbox, dir) = (&rig.fake, rig.sandbox(), rig.dir.path());
    let ok = |args: &[&str]| rig.ok(args);
    let run = |args: &[&str]| rig.run(args);
    ok(&["provider", "verify", "hetzner"]);
    // The role's install script comes from the home's roles/ folder.
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    std::fs::write(
        rig.home().join("roles/node.sh"),
        "#!/bin/sh\nset -e\necho \"$LEGION_NODE\" > \"$LEGION_ROOT/role-marker\"\nmkdir -p \"$LEGION_ROOT/var/lib/legion\"\ndate > \"$LEGION_ROOT/var/lib/legion/installed\"\n",
    )
    .unwrap();
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
    assert_eq!(
        std::fs::read_to_string(sandbox.join("role-marker"))
            .unwrap()
            .trim(),
        "hz-1",
        "the role's install script ran"
    );

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

    // An offer the catalog does not have is refused when planned, with the choices.
    let (code, _, err) = run(&[
        "nodes",
        "add",
        "hz-2",
        "--provider",
        "hetzner",
        "--offer",
        "no-such-type",
        "--apply",
        "--wait",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Hetzner Cloud has no offer \"no-such-type\" in fsn1; choose one of: cx23"),
        "{err}"
    );
    ok(&["nodes", "destroy", "hz-1", "--yes"]);
    assert!(fake.server_by_name("hz-1").is_none());
    assert_eq!(fake.servers().len(), 0);

    // Every write the fake saw is in Legion's operation log, and no create was repeated.
    let log = std::fs::read_to_string(dir.join("home/logs/operations.jsonl")).unwrap();
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
        1,
        "hz-1 once; hz-2 was refused when planned"
    );
    // The token never reaches the logs.
    for entry in std::fs::read_dir(dir.join("home/logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&fake.token()));
    }
}

/// The dashboard on Hetzner nodes from the fake: the provider's status in the header, a
/// converged node, and a Hetzner error in words in a failed node's row.
#[test]
fn the_dashboard_shows_hetzner_nodes_and_their_errors() {
    let Some(rig) = HetznerRig::hetzner() else {
        return;
    };
    let ok = |args: &[&str]| rig.ok(args);
    ok(&["nodes", "add", "hz-good", "--provider", "hetzner"]);
    ok(&["apply", "--wait"]);
    // An offer missing from the catalog is refused when planned now, so the failure
    // comes from Hetzner itself: the create action of the next node fails.
    ok(&["nodes", "add", "hz-bad", "--provider", "hetzner"]);
    rig.fake.fail_next_action(
        "create_server",
        "resource_unavailable",
        "server_type cx23 is sold out in fsn1",
    );
    let (code, _, _) = rig.run(&["apply", "--wait"]);
    assert_eq!(code, 1, "one node cannot be created");

    let cmd = format!(
        "env {} TERM=xterm-256color {}; echo LEGION-EXITED $?; sleep 60",
        rig.env_line(),
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = tmux::Tmux::start(&cmd, 200, 40) else {
        return;
    };
    // Polls the screen until the rows are there. Under load the dashboard's unlock,
    // first provider read and health check over SSH can take many times their usual
    // second, so the deadline is generous; a health check that timed out shows the good
    // node `running · unreachable` until the next one, which is still a running row.
    let s = t.wait_up_to(SLOW_SCREEN, "Hetzner rows", |s| {
        s.lines()
            .any(|l| l.contains("│hz-good ") && l.contains(" running"))
            && s.lines()
                .any(|l| l.contains("│hz-bad ") && l.contains("Hetzner:"))
            && s.lines().next().is_some_and(|h| h.contains("hetzner:ok"))
    });
    let header = s.lines().next().unwrap();
    assert!(header.contains("hetzner:ok"), "{header}");
    let bad = s.lines().find(|l| l.contains("│hz-bad ")).unwrap();
    assert!(bad.contains("server_type"), "{bad}");
    assert!(!bad.contains("HTTP"), "{bad}");
    t.text("q");
    t.wait_up_to(SLOW_SCREEN, "the dashboard to exit", |s| {
        s.contains("LEGION-EXITED 0")
    });
}

/// Host keys are pinned on first contact and checked on every connection: a changed key
/// is refused (naming both fingerprints) by `legion ssh` and by health checks, until the
/// operator re-trusts the node.
#[test]
fn a_changed_host_key_is_refused_until_retrusted() {
    let Some(mut rig) = HetznerRig::hetzner() else {
        return;
    };
    rig.ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--apply",
        "--wait",
    ]);
    let pinned = rig.sshd.host_key_fingerprint();
    let out = rig.ok(&["ssh", "hz-1", "--", "echo", "through-legion-ssh"]);
    assert!(out.contains("through-legion-ssh"), "{out}");
    // A daemon keeps one engine running, so its health checks can be read.
    let start = rig.ok(&["daemon", "start"]);
    let token = start
        .lines()
        .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
        .unwrap()
        .to_string();
    rig.vars.push(("LEGION_DAEMON_TOKEN", token));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(rig.home().join("daemon/daemon.json")).unwrap())
            .unwrap();
    let _stop = StopOnDrop(meta["pid"].as_u64().unwrap());
    let via = |rig: &HetznerRig, args: &[&str]| {
        let out = rig
            .cmd()
            .env("LEGION_DAEMON_TOKEN", &rig.vars.last().unwrap().1)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let health_of = |rig: &HetznerRig| {
        let (_, out, _) = via(rig, &["nodes", "show", "hz-1", "--json"]);
        serde_json::from_str::<Value>(&out).unwrap()["health"].to_string()
    };
    let wait_health = |rig: &HetznerRig, what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let h = health_of(rig);
            if pred(&h) {
                return h;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {h}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_health(&rig, "healthy", &|h| h.contains("healthy"));

    // The server now presents another key (a man in the middle, or a reinstall Legion
    // did not do).
    rig.sshd.restart_with_new_host_key();
    let new = rig.sshd.host_key_fingerprint();
    assert_ne!(pinned, new);
    let (code, out, err) = via(&rig, &["ssh", "hz-1", "--", "echo", "should-not-run"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("should-not-run"));
    assert!(err.contains(&pinned) && err.contains(&new), "{err}");
    // Health checks refuse it too, and say so in the node's row.
    // The reboot itself is the provider's and succeeds, but the node never becomes
    // reachable again: `--wait` says so and exits 1 when its time is up.
    let (code, _, err) = via(
        &rig,
        &["nodes", "reboot", "hz-1", "--wait", "--timeout", "10s"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not running and reachable after 10s"), "{err}");
    let health = wait_health(&rig, "a refused host key", &|h| h.contains("changed"));
    assert!(
        health.contains(&new) && health.contains(&pinned),
        "{health}"
    );

    let (code, out, err) = via(&rig, &["nodes", "retrust", "hz-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&pinned), "{out}");
    let (code, out, err) = via(&rig, &["ssh", "hz-1", "--", "echo", "trusted-again"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("trusted-again"), "{out}");
    assert!(err.contains(&new), "says what it pinned: {err}");
    let (code, _, err) = via(&rig, &["daemon", "stop"]);
    assert_eq!(code, 0, "{err}");
}

/// Stops a daemon even when the test fails half-way.
struct StopOnDrop(u64);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.to_string()])
            .status();
    }
}

/// A failing install names its phase and keeps the remote output's tail; once the
/// script is fixed, retry resumes from the install phase (no second server).
#[test]
fn a_failed_install_is_retried_from_its_phase() {
    let Some(rig) = HetznerRig::hetzner() else {
        return;
    };
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    let script = rig.home().join("roles/web.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho preparing the web role\necho 'apt: unable to locate package nginx-legion' >&2\nexit 3\n",
    )
    .unwrap();
    let (code, out, err) = rig.run(&[
        "nodes",
        "add",
        "hz-web",
        "--provider",
        "hetzner",
        "--role",
        "web",
        "--apply",
        "--wait",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("install failed"), "{err}");
    assert!(
        err.contains("unable to locate package nginx-legion"),
        "the tail: {err}"
    );
    let row: Value = serde_json::from_str(&rig.ok(&["nodes", "show", "hz-web", "--json"])).unwrap();
    assert_eq!(row["system"]["state"], "failed", "{row}");
    assert_eq!(row["system"]["detail"], "install", "{row}");

    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\nmkdir -p \"$LEGION_ROOT/var/lib/legion\"\ndate > \"$LEGION_ROOT/var/lib/legion/installed\"\n",
    )
    .unwrap();
    let out = rig.ok(&["nodes", "retry", "hz-web", "--wait"]);
    assert!(out.contains("done (running"), "{out}");
    let row: Value = serde_json::from_str(&rig.ok(&["nodes", "show", "hz-web", "--json"])).unwrap();
    let phases: Vec<(String, String)> = row["execution"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().into(),
                p["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(phases.iter().all(|(_, s)| s == "done"), "{phases:?}");
    assert!(phases.iter().any(|(p, _)| p == "install"), "{phases:?}");
    assert_eq!(row["execution"]["status"], "succeeded");
    assert_eq!(
        rig.fake.request_count("POST", "/servers"),
        1,
        "resumed, not re-created"
    );
}

/// A role's HTTP probe (`roles/ROLE.probe`) gates readiness: run from the node, a 503
/// fails the readiness phase in words; once the service answers, retry resumes there.
#[test]
fn an_http_probe_gates_readiness() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};
    let has_client = ["curl", "wget"].iter().any(|c| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    });
    if !has_client {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: neither curl nor wget is installed for the node's HTTP probe"
        );
        return;
    }
    let Some(rig) = HetznerRig::hetzner() else {
        return;
    };
    // The "service" on the node: answers the probe with whatever status is set.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let status = Arc::new(AtomicU16::new(503));
    let answer = status.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let code = answer.load(Ordering::Relaxed);
            let _ = write!(
                conn,
                "HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    // A role is planned only with its install script.
    std::fs::write(
        rig.home().join("roles/web.sh"),
        "#!/bin/sh\nset -e\nmkdir -p \"$LEGION_ROOT/var/lib/legion\"\ndate > \"$LEGION_ROOT/var/lib/legion/installed\"\n",
    )
    .unwrap();
    std::fs::write(
        rig.home().join("roles/web.probe"),
        format!("http://127.0.0.1:{port}/healthz\n"),
    )
    .unwrap();
    let (code, out, err) = rig.run(&[
        "nodes",
        "add",
        "hz-probe",
        "--provider",
        "hetzner",
        "--role",
        "web",
        "--apply",
        "--wait",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("readiness failed"), "{err}");
    assert!(
        err.contains(&format!("HTTP probe http://127.0.0.1:{port}/healthz")),
        "{err}"
    );
    let row: Value =
        serde_json::from_str(&rig.ok(&["nodes", "show", "hz-probe", "--json"])).unwrap();
    assert_eq!(row["system"]["detail"], "readiness", "{row}");

    status.store(200, Ordering::Relaxed);
    let out = rig.ok(&["nodes", "retry", "hz-probe", "--wait"]);
    assert!(out.contains("done (running"), "{out}");
    let row: Value =
        serde_json::from_str(&rig.ok(&["nodes", "show", "hz-probe", "--json"])).unwrap();
    assert_eq!(row["execution"]["status"], "succeeded", "{row}");
}

/// Under rate limiting a command says what it waits for: Hetzner answers `429` with its
/// reset time, and `nodes add` (which reads the catalog) prints on stderr which provider
/// it waits for, why and until when, then succeeds once the limit resets.
#[test]
fn a_rate_limited_command_says_what_it_waits_for() {
    let Some(rig) = HetznerRig::hetzner() else {
        return;
    };
    rig.fake
        .rate_limit_next(1, std::time::Duration::from_secs(8));
    let started = std::time::Instant::now();
    let (code, out, err) = rig.run(&["nodes", "add", "hz-1", "--provider", "hetzner"]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("hz-1 is in the plan"), "{out}");
    let line = err
        .lines()
        .find(|l| l.contains("waiting for Hetzner"))
        .unwrap_or_else(|| panic!("no wait was shown on stderr:\n{err}"));
    assert!(
        line.contains(": rate limited") && line.contains(" until ") && line.ends_with(" s)"),
        "{line}"
    );
    assert!(
        !out.contains("waiting for"),
        "stdout stays the command's own: {out}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
}
