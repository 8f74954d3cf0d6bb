//! Scaleway end to end through the real binary, against the local fake: configure from
//! the default variables (`SCW_SECRET_KEY`, `SCW_DEFAULT_PROJECT_ID`), add a node with
//! `--apply --wait` (a loopback sshd plays the server), list it as JSON, act on it
//! (reinstall included: a new root volume, the same server), destroy it.

#![allow(clippy::unwrap_used)]

use legion_testkit::rig as cloud_rig;
use legion_testkit::scaleway as scaleway_fake;

use std::time::Duration;

use cloud_rig::Rig;
use scaleway_fake::ScalewayFake;
use serde_json::Value;

/// The Scaleway fake with short transitions; the credentials come from the default
/// variables.
fn scaleway_rig() -> Option<Rig<ScalewayFake>> {
    Rig::start("scaleway", || {
        let fake = ScalewayFake::start();
        fake.set_action_duration(Duration::from_millis(30));
        fake.set_server_ipv4("127.0.0.1");
        let vars = fake.legion_vars();
        (fake, vars)
    })
}

#[test]
fn a_scaleway_node_from_the_command_line() {
    let Some(mut rig) = scaleway_rig() else {
        return;
    };
    let (fake, sandbox, dir) = (&rig.fake, rig.sandbox(), rig.dir.path());
    let ok = |args: &[&str]| rig.ok(args);
    ok(&["provider", "verify", "scaleway"]);
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    std::fs::write(
        rig.home().join("roles/node.sh"),
        "#!/bin/sh\nset -e\necho \"$LEGION_NODE\" > \"$LEGION_ROOT/role-marker\"\nmkdir -p \"$LEGION_ROOT/var/lib/legion\"\ndate > \"$LEGION_ROOT/var/lib/legion/installed\"\n",
    )
    .unwrap();
    let catalog: Value = serde_json::from_str(&ok(&["catalog", "scaleway", "--json"])).unwrap();
    let offer = catalog["defaults"]["offer"].as_str().unwrap().to_string();
    assert_eq!(catalog["defaults"]["region"], "fr-par-1");
    assert_eq!(catalog["defaults"]["image"], "ubuntu_noble");

    let out = ok(&[
        "nodes",
        "add",
        "scw-1",
        "--provider",
        "scaleway",
        "--apply",
        "--wait",
    ]);
    assert!(out.contains("converged"), "{out}");
    let rows: Value = serde_json::from_str(&ok(&["nodes", "list", "--json"])).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["name"], "scw-1");
    assert_eq!(row["provider"], "scaleway");
    assert_eq!(row["offer"], offer.as_str());
    assert_eq!(row["machine"], "running", "{row}");
    assert_eq!(row["execution"]["status"], "succeeded", "{row}");
    let server = fake.server_by_name("scw-1").expect("the server exists");
    assert_eq!(row["server_id"], format!("{}/{}", server.zone, server.id));
    assert!(
        server.tags.iter().any(|t| t.starts_with("legion-node=")),
        "labels stored as tags: {:?}",
        server.tags
    );
    assert_eq!(fake.ssh_keys().len(), 1, "the managed key is in IAM");
    let identity: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.join("etc/legion/node.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(identity["name"], "scw-1");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("role-marker"))
            .unwrap()
            .trim(),
        "scw-1"
    );

    for (action, machine) in [
        ("stop", "stopped"),
        ("start", "running"),
        ("reboot", "running"),
    ] {
        let out = ok(&["nodes", action, "scw-1", "--wait"]);
        assert!(out.contains(&format!("done ({machine}")), "{action}: {out}");
    }
    // Reinstall: the same server gets a new root volume from the image, so the machine
    // comes back with a new host key (the engine drops the pinned one) and the SSH
    // phases run again.
    let old_root = fake.root_volume(&server.id).unwrap();
    std::fs::remove_file(sandbox.join("role-marker")).unwrap();
    rig.sshd.restart_with_new_host_key();
    let (fake, ok) = (&rig.fake, |args: &[&str]| rig.ok(args));
    let run = |args: &[&str]| rig.run(args);
    let out = ok(&["nodes", "reinstall", "scw-1", "--wait"]);
    assert!(out.contains("done (running"), "reinstall: {out}");
    let after = fake.server_by_name("scw-1").unwrap();
    assert_eq!(after.id, server.id, "the server is kept");
    assert_eq!(after.ipv4, server.ipv4);
    assert_eq!(after.state, "running");
    let new_root = fake.root_volume(&server.id).unwrap();
    assert_ne!(new_root.id, old_root.id);
    assert_eq!(
        new_root.base_snapshot.as_deref(),
        Some(scaleway_fake::image_root_snapshot("ubuntu_noble", "fr-par-1", "l_ssd").as_str())
    );
    let volumes = fake.volumes();
    assert_eq!(volumes.len(), 1, "the old root is gone: {volumes:?}");
    assert_eq!(
        std::fs::read_to_string(sandbox.join("role-marker"))
            .unwrap()
            .trim(),
        "scw-1",
        "the role ran again"
    );
    let rows: Value = serde_json::from_str(&ok(&["nodes", "list", "--json"])).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["server_id"], format!("{}/{}", server.zone, server.id));
    assert_eq!(row["execution"]["status"], "succeeded", "{row}");
    let servers = "/instance/v1/zones/fr-par-1/servers";
    assert_eq!(fake.request_count("POST", servers), 1, "exactly one create");

    // An offer the catalog does not have is refused when planned, with the choices.
    let (code, _, err) = run(&[
        "nodes",
        "add",
        "scw-2",
        "--provider",
        "scaleway",
        "--offer",
        "NO-SUCH-TYPE",
        "--apply",
        "--wait",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "Scaleway Instances has no offer \"NO-SUCH-TYPE\" in fr-par-1; choose one of:"
        ),
        "{err}"
    );
    ok(&["nodes", "destroy", "scw-1", "--yes"]);
    assert!(fake.server_by_name("scw-1").is_none());
    assert!(fake.servers().is_empty());
    assert!(
        fake.volumes().is_empty(),
        "the volumes went with the server"
    );

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
            .filter(|(m, p)| m == "POST" && p == servers)
            .count(),
        1,
        "scw-1 once; scw-2 was refused when planned"
    );
    assert!(fake.requests().iter().all(|r| r.authorized));
    // The secret key never reaches the home's logs.
    for entry in std::fs::read_dir(dir.join("home/logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&fake.secret_key()));
    }
}
