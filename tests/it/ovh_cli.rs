//! OVHcloud end to end through the real binary, against the local fake: configure from the
//! default variables, add a node with `--apply --wait` (deployed over SSH to a loopback
//! sshd), list it as JSON, act on it, an invalid flavor in OVHcloud's words, destroy it.

#![allow(clippy::unwrap_used)]

use legion_testkit::ovh as ovh_fake;
use legion_testkit::rig as cloud_rig;
use legion_testkit::tmux;

use std::time::Duration;

use cloud_rig::Rig;
use ovh_fake::OvhFake;
use serde_json::Value;

type OvhRig = Rig<OvhFake>;

/// The OVHcloud fake with short tasks, handing out 127.0.0.1; every credential comes from
/// OVHcloud's own default variables.
fn ovh_rig() -> Option<OvhRig> {
    Rig::start("ovh", || {
        let fake = OvhFake::start();
        fake.set_task_duration(Duration::from_millis(30));
        fake.set_server_ipv4("127.0.0.1");
        // Its clock is off: the binary has to learn the offset from /auth/time.
        fake.set_clock_skew(-600);
        let vars = fake.legion_vars();
        (fake, vars)
    })
}

/// How long a dashboard screen that needs real work may take on a loaded machine.
const SLOW_SCREEN: std::time::Duration = std::time::Duration::from_secs(240);
#[test]
fn an_ovh_node_from_the_command_line() {
    let Some(rig) = ovh_rig() else {
        return;
    };
    let (fake, sandbox, dir) = (&rig.fake, rig.sandbox(), rig.dir.path());
    let ok = |args: &[&str]| rig.ok(args);
    let run = |args: &[&str]| rig.run(args);
    ok(&["provider", "verify", "ovh"]);
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    std::fs::write(
        rig.home().join("roles/node.sh"),
        "#!/bin/sh\nset -e\necho \"$LEGION_NODE\" > \"$LEGION_ROOT/role-marker\"\nmkdir -p \"$LEGION_ROOT/var/lib/legion\"\ndate > \"$LEGION_ROOT/var/lib/legion/installed\"\n",
    )
    .unwrap();
    let catalog: Value = serde_json::from_str(&ok(&["catalog", "ovh", "--json"])).unwrap();
    let offer = catalog["defaults"]["offer"].as_str().unwrap().to_string();
    // The cheapest flavor with 2 cores and 2 GB in GRA11.
    assert_eq!(offer, "d2-4", "{}", catalog["defaults"]);
    assert_eq!(catalog["defaults"]["region"], "GRA11");
    assert_eq!(catalog["defaults"]["image"], "Ubuntu 24.04");

    let out = ok(&[
        "nodes",
        "add",
        "ovh-1",
        "--provider",
        "ovh",
        "--apply",
        "--wait",
    ]);
    assert!(out.contains("converged"), "{out}");
    let rows: Value = serde_json::from_str(&ok(&["nodes", "list", "--json"])).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["name"], "ovh-1");
    assert_eq!(row["provider"], "ovh");
    assert_eq!(row["offer"], offer.as_str());
    assert_eq!(row["machine"], "running", "{row}");
    assert_eq!(row["execution"]["status"], "succeeded", "{row}");
    let servers = fake.servers_named("ovh-1");
    assert_eq!(servers.len(), 1);
    let server = &servers[0];
    assert_eq!(row["server_id"], server.id.as_str());
    // Legion's identity rides in the instance name.
    assert!(
        server.name.starts_with("ovh-1@legion:") && server.name.contains("node="),
        "{}",
        server.name
    );
    assert!(server.ssh_key_id.is_some(), "created with the managed key");
    // OVHcloud has no managed firewalls: the cluster's peer rule is an operator task.
    let fw: Value = serde_json::from_str(&ok(&["firewalls", "list", "--json"])).unwrap();
    let tasks: Vec<&str> = fw
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["tasks"].as_array().unwrap())
        .map(|t| t.as_str().unwrap())
        .collect();
    // Management access (the SSH port, from where the node saw Legion) and the peers.
    assert_eq!(tasks.len(), 2, "{fw}");
    let mgmt = format!(
        "open tcp {} from 127.0.0.1/32 on ovh-1 (127.0.0.1)",
        rig.sshd.port()
    );
    assert!(tasks.contains(&mgmt.as_str()), "{fw}");
    assert!(
        tasks
            .iter()
            .any(|t| t.starts_with("open tcp 4413 from 127.0.0.1/32, ")
                && t.ends_with(" on ovh-1 (127.0.0.1)")),
        "{fw}"
    );
    assert_eq!(fake.ssh_keys().len(), 1);
    let identity: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.join("etc/legion/node.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(identity["name"], "ovh-1");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("role-marker"))
            .unwrap()
            .trim(),
        "ovh-1"
    );

    for (action, machine) in [
        ("stop", "stopped"),
        ("start", "running"),
        ("reboot", "running"),
        ("reinstall", "running"),
    ] {
        let out = ok(&["nodes", action, "ovh-1", "--wait"]);
        assert!(out.contains(&format!("done ({machine}")), "{action}: {out}");
    }
    let create_path = format!("{}/instance", fake.project_path());
    assert_eq!(
        fake.request_count("POST", &create_path),
        1,
        "exactly one create"
    );

    // An offer the catalog does not have is refused when planned, with the choices.
    let (code, _, err) = run(&[
        "nodes",
        "add",
        "ovh-2",
        "--provider",
        "ovh",
        "--offer",
        "no-such-flavor",
        "--apply",
        "--wait",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "OVHcloud Public Cloud has no offer \"no-such-flavor\" in GRA11; choose one of:"
        ),
        "{err}"
    );
    ok(&["nodes", "destroy", "ovh-1", "--yes"]);
    assert!(fake.servers().is_empty());

    // Every write the fake saw is in Legion's operation log.
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
        .map(|r| (r.method, r.path))
        .collect();
    assert!(!writes.is_empty());
    for w in &writes {
        assert!(
            logged.contains(w),
            "{w:?} is not in the operation log:\n{logged:?}"
        );
    }
    assert_eq!(
        writes
            .iter()
            .filter(|(m, p)| m == "POST" && *p == create_path)
            .count(),
        1,
        "ovh-1 once; ovh-2 was refused when planned"
    );
    // Every request but the clock and the public price list was signed correctly.
    assert!(
        fake.requests().iter().all(|r| r.authorized
            || r.path == "/auth/time"
            || r.path.starts_with("/order/catalog/public/")),
        "an unsigned or wrongly signed request"
    );
    // No secret reaches the logs.
    for entry in std::fs::read_dir(dir.join("home/logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(ovh_fake::APPLICATION_SECRET));
        assert!(!text.contains(ovh_fake::CONSUMER_KEY));
    }
}

/// The dashboard on OVHcloud nodes: the provider's status in the header, a converged
/// node, and OVHcloud's error in words in a failed node's row.
#[test]
fn the_dashboard_shows_ovh_nodes_and_their_errors() {
    let Some(rig) = ovh_rig() else {
        return;
    };
    let ok = |args: &[&str]| rig.ok(args);
    ok(&["nodes", "add", "ovh-good", "--provider", "ovh"]);
    ok(&["apply", "--wait"]);
    // An offer missing from the catalog is refused when planned now, so the failure
    // comes from OVHcloud itself: the next node's build fails.
    ok(&["nodes", "add", "ovh-bad", "--provider", "ovh"]);
    rig.fake.fail_next_build();
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
    let s = t.wait_up_to(SLOW_SCREEN, "OVHcloud rows", |s| {
        s.lines()
            .any(|l| l.contains("│ovh-good ") && l.contains(" running"))
            && s.lines()
                .any(|l| l.contains("│ovh-bad ") && l.contains("OVHcloud:"))
            && s.lines().next().is_some_and(|h| h.contains("ovh:ok"))
    });
    let header = s.lines().next().unwrap();
    assert!(header.contains("ovh:ok"), "{header}");
    let bad = s.lines().find(|l| l.contains("│ovh-bad ")).unwrap();
    assert!(!bad.contains("HTTP"), "{bad}");
    t.text("q");
    t.wait_up_to(SLOW_SCREEN, "the dashboard to exit", |s| {
        s.contains("LEGION-EXITED 0")
    });
}

/// `provider configure ovh` takes each descriptor field as `--FIELD VALUE` or
/// `--FIELD-env VAR`, checks the endpoint by name, and keeps secrets out of its output.
#[test]
fn provider_configure_takes_the_descriptors_flags() {
    let fake = OvhFake::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "flags test\n").unwrap();
    let legion = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_legion"))
            .env("LEGION_HOME", dir.path().join("home"))
            .env("LEGION_PASSWORD_FILE", dir.path().join("pw"))
            .env("LEGION_OVH_API_URL", fake.base_url())
            .env("MY_OVH_SECRET", ovh_fake::APPLICATION_SECRET)
            .env("MY_OVH_CONSUMER", ovh_fake::CONSUMER_KEY)
            .env_remove("LEGION_DAEMON_TOKEN")
            .env_remove("LEGION_MOCK_NETWORK")
            .env_remove("OVH_ENDPOINT")
            .env_remove("OVH_APPLICATION_KEY")
            .env_remove("OVH_APPLICATION_SECRET")
            .env_remove("OVH_CONSUMER_KEY")
            .env_remove("OVH_CLOUD_PROJECT_SERVICE")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(legion(&["config", "init"]).0, 0);
    let (code, _, err) = legion(&[
        "provider",
        "configure",
        "ovh",
        "--endpoint",
        "ovh-mars",
        "--application-key",
        ovh_fake::APPLICATION_KEY,
        "--application-secret-env",
        "MY_OVH_SECRET",
        "--consumer-key-env",
        "MY_OVH_CONSUMER",
        "--project",
        ovh_fake::PROJECT,
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("API endpoint") && err.contains("ovh-eu"),
        "{err}"
    );
    let (code, out, err) = legion(&[
        "provider",
        "configure",
        "ovh",
        "--endpoint",
        "ovh-ca",
        "--application-key",
        ovh_fake::APPLICATION_KEY,
        "--application-secret-env",
        "MY_OVH_SECRET",
        "--consumer-key-env",
        "MY_OVH_CONSUMER",
        "--project",
        ovh_fake::PROJECT,
    ]);
    assert_eq!(code, 0, "{err}");
    for text in [&out, &err] {
        assert!(!text.contains(ovh_fake::APPLICATION_SECRET), "{text}");
        assert!(!text.contains(ovh_fake::CONSUMER_KEY), "{text}");
    }
    let (code, _, err) = legion(&["provider", "verify", "ovh"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = legion(&["provider", "configure", "ovh", "--token", "x"]);
    assert_ne!(code, 0);
    assert!(err.contains("--application-secret-env"), "{err}");
}

/// OVHcloud's images each log in as their distribution's user (the image's `user`):
/// a Debian node is reached as `debian`, an Ubuntu one as `ubuntu`, unless
/// `LEGION_SSH_USER` says otherwise (as it does for the deployment here).
#[test]
fn each_image_logs_in_as_its_own_user() {
    let Some(mut rig) = ovh_rig() else {
        return;
    };
    // Two nodes deploy side by side: each writes in its own directory.
    rig.sandbox_per_node();
    let ok = |args: &[&str]| rig.ok(args);
    let catalog: Value = serde_json::from_str(&ok(&["catalog", "ovh", "--json"])).unwrap();
    let user_of = |name: &str| {
        catalog["catalog"]["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == name)
            .map(|i| i["login_user"].clone())
    };
    assert_eq!(user_of("Debian 12"), Some("debian".into()), "{catalog}");
    assert_eq!(user_of("Ubuntu 24.04"), Some("ubuntu".into()), "{catalog}");
    ok(&[
        "nodes",
        "add",
        "deb-1",
        "--provider",
        "ovh",
        "--image",
        "Debian 12",
    ]);
    ok(&["nodes", "add", "ub-1", "--provider", "ovh"]);
    ok(&["apply", "--wait"]);
    let command_for = |node: &str| {
        let key = rig.dir.path().join(format!("key-{node}"));
        let out = rig
            .cmd()
            .env_remove("LEGION_SSH_USER")
            .args(["ssh-key", "export", "--node", node, "--path"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let deb = command_for("deb-1");
    assert!(
        deb.contains(" -l debian ") && deb.contains(" -- 127.0.0.1"),
        "{deb}"
    );
    let ub = command_for("ub-1");
    assert!(
        ub.contains(" -l ubuntu ") && ub.contains(" -- 127.0.0.1"),
        "{ub}"
    );
}
