//! Apply changes an existing server to match its plan, or says exactly why it cannot:
//! an offer change is a resize (the server stops for it), an image change a rebuild (same
//! server, fresh disk), a region change a replace (a new server deployed before the old
//! one is destroyed); a provider without resize keeps the change blocked and `apply
//! --wait` exits 1 naming it. A membership change rewrites the other members' peer lists
//! and is in the plan until it is done. A replace killed mid-way resumes from its phase.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use legion_testkit::hetzner::HetznerFake;
use legion_testkit::ovh::OvhFake;
use legion_testkit::rig::Rig;
use legion_testkit::scaleway::ScalewayFake;
use serde_json::Value;

struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    pw: PathBuf,
}

impl Home {
    /// An initialized home with the simulated cloud configured (`latency` ms a call).
    fn mock(latency: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "replace password\n").unwrap();
        let h = Home {
            _dir: dir,
            home,
            pw,
        };
        h.ok(&["config", "init"]);
        h.ok(&["provider", "configure", "mock", "--latency-ms", latency]);
        h
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.env("LEGION_HOME", &self.home)
            .env("LEGION_PASSWORD_FILE", &self.pw)
            .env("LEGION_MOCK_NETWORK", "1")
            .env_remove("LEGION_DAEMON_TOKEN")
            .env_remove("LEGION_SSH_PORT");
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
        assert_eq!(code, 0, "legion {args:?}: {out}{err}");
        out
    }

    fn node(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["nodes", "show", name, "--json"])).unwrap()
    }

    /// Every provider write in the operation log, in order: `(method, path)`.
    fn writes(&self) -> Vec<(String, String)> {
        let log =
            std::fs::read_to_string(self.home.join("logs/operations.jsonl")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "provider_write")
            .map(|v| {
                (
                    v["method"].as_str().unwrap_or_default().to_string(),
                    v["path"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The simulated cloud's servers as it last saved them: `(id, name)`.
    fn cloud_servers(&self) -> Vec<(String, String)> {
        self.cloud()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_string(),
                    m["name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The simulated cloud's server objects as it last saved them.
    fn cloud(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.home.join("mock-cloud.json")).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let mut out = Vec::new();
        let mut stack = vec![&v];
        while let Some(x) = stack.pop() {
            match x {
                Value::Object(m) => {
                    if m.contains_key("offer") && m.contains_key("labels") {
                        out.push(x.clone());
                    }
                    stack.extend(m.values());
                }
                Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
        out
    }

    /// Remove a node from the plan only (no apply), through an engine of this process.
    fn remove_from_plan(&self, node: &str) {
        use legion::core::secret::Secret;
        use legion::engine::plan::PlanEdit;
        use legion::engine::{Engine, EngineConfig};
        use legion::providers::{Env, Registry};
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut config = EngineConfig::new(self.home.clone());
            config.registry = Registry::builtin();
            config.env = Env::default().with("LEGION_MOCK_NETWORK", "1");
            let engine = Engine::start(config);
            engine
                .unlock(Secret::new("replace password"))
                .await
                .unwrap();
            engine
                .edit_plan(PlanEdit::RemoveNode { name: node.into() })
                .await
                .unwrap();
            engine.lock().await.unwrap();
        });
    }
}

/// `plan --detailed-exitcode`: its code and text.
fn plan(run: impl Fn(&[&str]) -> (i32, String, String)) -> (i32, String) {
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert!(code == 0 || code == 2, "plan failed: {out}{err}");
    (code, out)
}

fn server_id(node: &Value) -> String {
    node["server_id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn offer_image_and_region_changes_are_made_by_apply_on_the_simulated_cloud() {
    let h = Home::mock("5");
    h.ok(&["nodes", "add", "web-1", "--provider", "mock"]);
    h.ok(&["nodes", "add", "web-2", "--provider", "mock"]);
    h.ok(&["apply", "--wait"]);
    assert_eq!(plan(|a| h.run(a)).0, 0);
    let first = server_id(&h.node("web-1"));
    assert!(!first.is_empty());

    // Offer: a resize in place.
    h.ok(&["nodes", "set", "web-1", "--offer", "sim-large"]);
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("~   web-1  (update)"), "{out}");
    assert!(out.contains("offer        sim-small -> sim-large"), "{out}");
    assert!(
        out.contains("why: resize: the server stops for it"),
        "{out}"
    );
    let out = h.ok(&["apply", "--wait"]);
    assert!(out.contains("converged"), "{out}");
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 0, "nothing left after the resize: {out}");
    let row = h.node("web-1");
    assert_eq!(server_id(&row), first, "the same server: {row}");
    assert_eq!(row["execution"]["kind"], "resize", "{row}");
    let server = |id: &str| h.cloud().into_iter().find(|s| s["id"] == id);
    // The simulated cloud saves a moment after a change.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server(&first).unwrap()["offer"], "sim-large");
    let writes = h.writes();
    for path in ["shutdown", "change_type", "poweron"] {
        let w = (
            "POST".to_string(),
            format!("/servers/{first}/actions/{path}"),
        );
        assert!(writes.contains(&w), "{w:?} not in {writes:?}");
    }

    // Image: a rebuild of the same server.
    h.ok(&["nodes", "set", "web-1", "--image", "ubuntu-24.04"]);
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("why: rebuild: server {first} keeps its id")),
        "{out}"
    );
    h.ok(&["apply", "--wait"]);
    assert_eq!(plan(|a| h.run(a)).0, 0);
    assert_eq!(server_id(&h.node("web-1")), first);

    // Region: a replace, create before destroy; the peer lists follow the new address.
    h.ok(&["nodes", "set", "web-1", "--region", "sim-west"]);
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("-/+ web-1  (replace)"), "{out}");
    assert!(out.contains("region       sim-east -> sim-west"), "{out}");
    assert!(
        out.contains(&format!("then replace destroys {first}")),
        "{out}"
    );
    let out = h.ok(&["apply", "--wait"]);
    assert!(out.contains("converged"), "{out}");
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 0, "nothing left after the replace: {out}");
    let row = h.node("web-1");
    let second = server_id(&row);
    assert_ne!(second, first, "a new server: {row}");
    assert_eq!(row["region"], "sim-west", "{row}");
    assert_eq!(row["execution"]["kind"], "replace", "{row}");
    let writes = h.writes();
    let created = writes
        .iter()
        .rposition(|w| w.0 == "POST" && w.1 == "/servers")
        .expect("a create");
    let destroyed = writes
        .iter()
        .position(|w| w.0 == "DELETE" && w.1 == format!("/servers/{first}"))
        .expect("the old server was destroyed");
    assert!(created < destroyed, "create before destroy: {writes:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let servers = h.cloud_servers();
    assert!(
        !servers.iter().any(|(id, _)| *id == first),
        "the old server is gone from the cloud: {servers:?}"
    );
    let new = h.cloud().into_iter().find(|s| s["id"] == second.as_str());
    assert_eq!(new.unwrap()["region"], "sim-west");
}

#[test]
fn a_membership_change_rewrites_the_peers_and_is_planned_until_done() {
    let h = Home::mock("5");
    h.ok(&["nodes", "add", "web-1", "--provider", "mock"]);
    h.ok(&["nodes", "add", "web-2", "--provider", "mock"]);
    h.ok(&["apply", "--wait"]);
    h.ok(&["nodes", "add", "web-3", "--provider", "mock"]);
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 2, "{out}");
    for n in ["web-1", "web-2"] {
        assert!(out.contains(&format!("~   {n}  (update)")), "{out}");
    }
    assert!(out.contains("why: membership changed: +web-3"), "{out}");
    let v: Value = serde_json::from_str(&h.ok(&["plan", "--json"])).unwrap();
    let peers = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "node" && c["fields"][0]["field"] == "peers")
        .count();
    assert_eq!(peers, 2, "{v}");
    let out = h.ok(&["apply", "--wait"]);
    assert!(out.contains("converged"), "{out}");
    assert_eq!(plan(|a| h.run(a)).0, 0);
    // Removed: the others' peer lists lose it.
    h.remove_from_plan("web-3");
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("why: membership changed: -web-3"), "{out}");
    h.ok(&["apply", "--wait"]);
    assert_eq!(plan(|a| h.run(a)).0, 0);
}

/// Killed on drop, so a failing assertion leaves no apply running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn named(servers: &[(String, String)], prefix: &str) -> usize {
    servers
        .iter()
        .filter(|(_, n)| n.starts_with(prefix))
        .count()
}

#[test]
fn a_replace_killed_mid_way_resumes_from_its_phase_and_never_creates_twice() {
    let h = Home::mock("250");
    h.ok(&["nodes", "add", "web-1", "--provider", "mock"]);
    h.ok(&["apply", "--wait"]);
    let first = server_id(&h.node("web-1"));
    h.ok(&["nodes", "set", "web-1", "--region", "sim-west"]);

    // Killed once the cloud holds the new server (the deployment phases are running).
    let apply = Killed(
        h.cmd()
            .args(["apply", "--wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while named(&h.cloud_servers(), "web-1-r") == 0 {
        assert!(
            Instant::now() < deadline,
            "the new server was never created"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(apply);

    // A new engine: the replace is interrupted, the old server still recorded.
    let row = h.node("web-1");
    let exec = &row["execution"];
    assert_eq!(exec["kind"], "replace", "{row}");
    assert_eq!(exec["status"], "interrupted", "{row}");
    assert_eq!(exec["retiring"]["server_id"], first.as_str(), "{row}");
    let (code, out) = plan(|a| h.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "why: resumes its replace execution; it then destroys the old server {first}"
        )),
        "{out}"
    );

    let out = h.ok(&["apply", "--wait"]);
    assert!(out.contains("converged"), "{out}");
    assert_eq!(plan(|a| h.run(a)).0, 0);
    let row = h.node("web-1");
    assert_eq!(
        row["execution"]["id"], exec["id"],
        "resumed, not restarted: {row}"
    );
    assert!(row["execution"]["retiring"].is_null(), "{row}");
    assert_ne!(server_id(&row), first);
    assert_eq!(row["region"], "sim-west");
    // Give the simulated cloud's debounced save its moment, then count.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        named(&h.cloud_servers(), "web-1"),
        1,
        "one server left: the new one (created once, the old one destroyed)"
    );
}

/// A role that leaves what the readiness phase checks for.
const ROLE: &str = "#!/bin/sh\nset -e\nmkdir -p \"$LEGION_ROOT/var/lib/legion\"\ndate > \"$LEGION_ROOT/var/lib/legion/installed\"\n";

/// The Hetzner fake with a loopback sshd playing the server.
#[test]
fn hetzner_changes_the_server_type_of_a_stopped_server() {
    let Some(rig) = Rig::<HetznerFake>::hetzner() else {
        return;
    };
    let fake = &rig.fake;
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    std::fs::write(rig.home().join("roles/node.sh"), ROLE).unwrap();
    rig.ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--apply",
        "--wait",
    ]);
    let before = fake.server_by_name("hz-1").unwrap();
    let catalog: Value = serde_json::from_str(&rig.ok(&["catalog", "hetzner", "--json"])).unwrap();
    let bigger = catalog["catalog"]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["deprecated"] != true)
        .filter(|o| {
            o["regions"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|x| x.as_str() == Some(before.location.as_str()))
            })
        })
        .map(|o| o["id"].as_str().unwrap().to_string())
        // Another x86 type: Hetzner refuses a change across architectures (cax is Arm).
        .find(|id| *id != before.server_type && !id.starts_with("cax"))
        .expect("another server type in the location");
    rig.ok(&["nodes", "set", "hz-1", "--offer", &bigger]);
    let (code, out) = plan(|a| rig.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("why: resize: the server stops for it"),
        "{out}"
    );
    let out = rig.ok(&["apply", "--wait"]);
    assert!(out.contains("converged"), "{out}");
    let (code, out) = plan(|a| rig.run(a));
    assert_eq!(code, 0, "{out}");
    let after = fake.server_by_name("hz-1").unwrap();
    assert_eq!(after.id, before.id, "the same server");
    assert_eq!(after.server_type, bigger);
    assert_eq!(after.status, "running");
    let id = before.id;
    for action in ["shutdown", "change_type", "poweron"] {
        assert_eq!(
            fake.request_count("POST", &format!("/servers/{id}/actions/{action}")),
            1,
            "{action}"
        );
    }
}

fn scaleway_rig() -> Option<Rig<ScalewayFake>> {
    Rig::start("scaleway", || {
        let fake = ScalewayFake::start();
        fake.set_action_duration(Duration::from_millis(30));
        fake.set_server_ipv4("127.0.0.1");
        let vars = fake.legion_vars();
        (fake, vars)
    })
}

/// A provider without resize: the change stays blocked, with the reason and the manual
/// route, and `apply --wait` exits 1 naming it; the server is untouched.
#[test]
fn without_resize_the_offer_change_is_blocked_and_apply_exits_one_naming_it() {
    let Some(rig) = scaleway_rig() else {
        return;
    };
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    std::fs::write(rig.home().join("roles/node.sh"), ROLE).unwrap();
    rig.ok(&[
        "nodes",
        "add",
        "scw-1",
        "--provider",
        "scaleway",
        "--apply",
        "--wait",
    ]);
    let before = rig.fake.server_by_name("scw-1").unwrap();
    let catalog: Value = serde_json::from_str(&rig.ok(&["catalog", "scaleway", "--json"])).unwrap();
    let row: Value = serde_json::from_str(&rig.ok(&["nodes", "show", "scw-1", "--json"])).unwrap();
    let other = another_offer(&catalog, &row);
    rig.ok(&["nodes", "set", "scw-1", "--offer", &other]);
    let (code, out) = plan(|a| rig.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("!   scw-1  (update)"), "{out}");
    assert!(
        out.contains("blocked: provider \"scaleway\" cannot change the offer"),
        "{out}"
    );
    assert!(
        out.contains("remove the node, apply, and add it again"),
        "{out}"
    );
    let (code, out, err) = rig.run(&["apply", "--wait"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("scw-1"), "{out}");
    assert!(out.contains("cannot change the offer"), "{out}");
    assert!(err.contains("did not converge"), "{err}");
    let after = rig.fake.server_by_name("scw-1").unwrap();
    assert_eq!(after, before, "the server is untouched");
}

/// OVHcloud: `POST /instance/{id}/resize` with the region's flavor id, on the stopped
/// instance, which is started again after.
#[test]
fn ovh_resizes_an_instance_to_another_flavor() {
    let Some(rig) = Rig::start("ovh", || {
        let fake = OvhFake::start();
        fake.set_task_duration(Duration::from_millis(30));
        fake.set_server_ipv4("127.0.0.1");
        let vars = fake.legion_vars();
        (fake, vars)
    }) else {
        return;
    };
    std::fs::create_dir_all(rig.home().join("roles")).unwrap();
    std::fs::write(rig.home().join("roles/node.sh"), ROLE).unwrap();
    rig.ok(&[
        "nodes",
        "add",
        "ovh-1",
        "--provider",
        "ovh",
        "--apply",
        "--wait",
    ]);
    let before = rig.fake.servers().into_iter().next().unwrap();
    let catalog: Value = serde_json::from_str(&rig.ok(&["catalog", "ovh", "--json"])).unwrap();
    let row: Value = serde_json::from_str(&rig.ok(&["nodes", "show", "ovh-1", "--json"])).unwrap();
    let other = another_offer(&catalog, &row);
    rig.ok(&["nodes", "set", "ovh-1", "--offer", &other]);
    let (code, out) = plan(|a| rig.run(a));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("why: resize: the server stops for it"),
        "{out}"
    );
    let out = rig.ok(&["apply", "--wait"]);
    assert!(out.contains("converged"), "{out}");
    let (code, out) = plan(|a| rig.run(a));
    assert_eq!(code, 0, "the fresh reading shows the new flavor: {out}");
    let after = rig.fake.server(&before.id).unwrap();
    assert_ne!(after.flavor_id, before.flavor_id);
    assert_eq!(after.status, "ACTIVE");
}

/// An orderable offer in the node's region other than its own.
fn another_offer(catalog: &Value, row: &Value) -> String {
    catalog["catalog"]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["deprecated"] != true)
        .filter(|o| {
            o["regions"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| *x == row["region"]))
        })
        .map(|o| o["id"].as_str().unwrap().to_string())
        .find(|id| Some(id.as_str()) != row["offer"].as_str())
        .expect("another offer in the region")
}
