//! Live tests against the real Scaleway API. They run only when `SCW_SECRET_KEY` and
//! `SCW_DEFAULT_PROJECT_ID` are set (`SCW_DEFAULT_ZONE` optional) and say clearly that
//! they skipped otherwise.
//!
//! - `live_catalog_smoke` (read-only, free): the catalog parses, the policy's defaults
//!   exist and are orderable.
//! - `live_node_end_to_end` (billed: one small Instance for a few minutes): configure,
//!   add a node, list it as JSON, destroy it. `LEGION_E2E_KEEP_INSTANCE=1` keeps the
//!   server and prints how to reach and delete it.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

fn credentials() -> Option<()> {
    let set = |v: &str| std::env::var(v).is_ok_and(|t| !t.trim().is_empty());
    if set("SCW_SECRET_KEY") && set("SCW_DEFAULT_PROJECT_ID") {
        return Some(());
    }
    // Straight to stderr, past the test harness's capture, so the skip is seen.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: SCW_SECRET_KEY and SCW_DEFAULT_PROJECT_ID are not both set (live Scaleway \
         tests; see TESTING.md)"
    );
    None
}

struct Live {
    dir: tempfile::TempDir,
}

impl Live {
    fn new() -> Live {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "live test password\n").unwrap();
        let live = Live { dir };
        live.ok(&["config", "init"]);
        live.ok(&["provider", "configure", "scaleway"]);
        live
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.env("LEGION_HOME", self.dir.path().join("home"))
            .env("LEGION_PASSWORD_FILE", self.dir.path().join("pw"))
            .env_remove("LEGION_SCALEWAY_API_URL")
            .env_remove("LEGION_DAEMON_TOKEN")
            .env_remove("LEGION_MOCK_NETWORK");
        c
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "legion {args:?}: {err}");
        out
    }
}

#[test]
fn live_catalog_smoke() {
    if credentials().is_none() {
        return;
    }
    let live = Live::new();
    live.ok(&["provider", "verify", "scaleway"]);
    let v: Value = serde_json::from_str(&live.ok(&["catalog", "scaleway", "--json"])).unwrap();
    let defaults = &v["defaults"];
    for key in ["region", "image", "offer"] {
        assert!(defaults[key].is_string(), "no default {key}: {defaults}");
    }
    let offers = v["catalog"]["offers"].as_array().unwrap();
    let offer = offers
        .iter()
        .find(|o| o["id"] == defaults["offer"])
        .unwrap();
    assert!(
        offer["regions"]
            .as_array()
            .unwrap()
            .contains(&defaults["region"])
    );
    println!(
        "live catalog: {} offers, default {} in {} with {}",
        offers.len(),
        defaults["offer"],
        defaults["region"],
        defaults["image"]
    );
}

#[test]
fn live_node_end_to_end() {
    if credentials().is_none() {
        return;
    }
    let live = Live::new();
    let name = format!("legion-e2e-{}", std::process::id());
    let (code, _, err) = live.run(&[
        "nodes",
        "add",
        &name,
        "--provider",
        "scaleway",
        "--apply",
        "--wait",
    ]);
    assert_eq!(code, 0, "add failed: {err}");
    let rows: Value = serde_json::from_str(&live.ok(&["nodes", "list", "--json"])).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["machine"], "running", "{row}");
    // Reinstall: a new root volume from the image, the same server.
    let (code, _, err) = live.run(&["nodes", "reinstall", &name, "--wait"]);
    assert_eq!(code, 0, "reinstall failed: {err}");
    let rows: Value = serde_json::from_str(&live.ok(&["nodes", "list", "--json"])).unwrap();
    let again = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        again["server_id"], row["server_id"],
        "reinstall keeps the server"
    );
    assert_eq!(again["machine"], "running", "{again}");
    let address = row["address"].as_str().unwrap_or("-").to_string();
    if std::env::var("LEGION_E2E_KEEP_INSTANCE").is_ok_and(|v| v == "1") {
        println!(
            "KEPT: server {} ({name}) at {address}; the Legion home is {} (password in pw).\n\
             Reach it: ssh root@{address}\n\
             Delete it: LEGION_HOME={0}/home LEGION_PASSWORD_FILE={0}/pw legion nodes destroy {name} --yes",
            row["server_id"],
            live.dir.path().display()
        );
        let _ = live.dir.keep();
        return;
    }
    live.ok(&["nodes", "destroy", &name, "--yes"]);
    let rows: Value = serde_json::from_str(&live.ok(&["nodes", "list", "--json"])).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != name.as_str())
    );
}
