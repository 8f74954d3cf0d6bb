//! Fault matrix: the simulated cloud fails and loses responses at set rates, and the
//! `legion apply --wait` process is SIGKILLed mid-apply. Whatever Legion shows afterwards
//! (every row of `status --json`, the snapshot a face reads) must be supported by an
//! observation or an execution record: an unresolved write shows as interrupted or
//! unknown, never as success; `retry` resumes the recorded execution from its phase; and
//! `nodes … --wait` exits 0 exactly when the node is where the action leads.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const NODES: [&str; 4] = ["fm-1", "fm-2", "fm-3", "fm-4"];

fn legion(home: &std::path::Path, pw: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.env("LEGION_HOME", home)
        .env("LEGION_PASSWORD_FILE", pw)
        .env("LEGION_MOCK_NETWORK", "1")
        .env_remove("LEGION_SSH_PORT");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Killed on drop, so a failing assertion leaves no apply running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn snapshot(home: &std::path::Path, pw: &std::path::Path) -> Value {
    let (code, out, err) = run(legion(home, pw).args(["status", "--json"]));
    assert_eq!(code, 0, "status --json: {err}");
    serde_json::from_str(&out).unwrap()
}

fn node<'a>(snap: &'a Value, name: &str) -> &'a Value {
    snap["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {snap}"))
}

/// Every shown status has evidence behind it; returns the names shown as interrupted or
/// failed (with their execution records).
fn check_supported(snap: &Value) -> Vec<(String, Value)> {
    let mut unresolved = Vec::new();
    for n in snap["nodes"].as_array().unwrap() {
        let name = n["name"].as_str().unwrap();
        let status = n["status"]["state"].as_str().unwrap();
        let exec = &n["execution"];
        let exec_status = exec["status"].as_str();
        let ctx = || format!("{name}: status {status}: {n}");
        match status {
            "running" | "running_degraded" | "running_unreachable" | "running_unchecked" => {
                assert_eq!(n["machine"], "running", "{}", ctx());
                // Success is claimed only by a finished execution.
                assert_eq!(exec_status, Some("succeeded"), "{}", ctx());
                if status != "running_unchecked" {
                    assert!(!n["health"].is_null(), "a health reading: {}", ctx());
                }
            }
            "stopped" => assert_eq!(n["machine"], "stopped", "{}", ctx()),
            "failed" => {
                assert_eq!(exec_status, Some("failed"), "{}", ctx());
                assert!(!n["last_error"].is_null(), "{}", ctx());
                unresolved.push((name.to_string(), exec.clone()));
            }
            "interrupted" => {
                assert!(
                    matches!(exec_status, Some("interrupted" | "running")),
                    "{}",
                    ctx()
                );
                unresolved.push((name.to_string(), exec.clone()));
            }
            "pending_create" => {
                assert!(n["server_id"].is_null(), "{}", ctx());
                assert!(exec.is_null(), "{}", ctx());
            }
            "provisioning" | "deploying" | "reinstalling" | "changing" | "working" => {
                assert!(!n["operation"].is_null(), "{}", ctx());
            }
            "unknown" | "missing" | "stale" => {}
            other => panic!("unexpected status {other}: {}", ctx()),
        }
        // HEALTH is never a reading next to a system that is not installed.
        if !n["health"].is_null() {
            assert!(
                matches!(
                    n["system"]["state"].as_str(),
                    Some("ready" | "degraded" | "unreachable")
                ),
                "health shown with system {}: {n}",
                n["system"]
            );
        }
        // An execution that did not succeed is never shown as success.
        if matches!(exec_status, Some("failed" | "interrupted" | "running")) {
            assert!(
                !status.starts_with("running"),
                "an unfinished execution shown as {status}: {n}"
            );
        }
    }
    for kind in ["zones", "firewalls", "domains"] {
        for r in snap[kind].as_array().unwrap() {
            if r["status"]["state"] == "converged" {
                assert!(r["last_error"].is_null(), "converged with an error: {r}");
            }
        }
    }
    unresolved
}

fn done_phases(exec: &Value) -> Vec<(String, Value)> {
    exec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "done")
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                p["started_ms"].clone(),
            )
        })
        .collect()
}

#[test]
fn killed_mid_apply_under_injected_faults_shows_only_what_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "fault matrix\n").unwrap();
    assert_eq!(run(legion(&home, &pw).args(["config", "init"])).0, 0);
    let (code, _, err) = run(legion(&home, &pw).args([
        "provider",
        "configure",
        "mock",
        "--seed",
        "11",
        "--latency-ms",
        "300",
        "--error-rate",
        "0.08",
        "--ambiguous-rate",
        "0.08",
    ]));
    assert_eq!(code, 0, "{err}");
    for n in NODES {
        let (code, _, err) =
            run(legion(&home, &pw).args(["nodes", "add", n, "--provider", "mock"]));
        assert_eq!(code, 0, "{err}");
    }

    // The apply, killed once the cloud holds a server (the executions are mid-way).
    let apply = Killed(
        legion(&home, &pw)
            .args(["apply", "--wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cloud = home.join("mock-cloud.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&cloud).is_ok_and(|c| NODES.iter().any(|n| c.contains(n))) {
        assert!(Instant::now() < deadline, "no server was ever created");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(400));
    drop(apply);

    // A new engine: every execution found running is interrupted, nothing assumed.
    let snap = snapshot(&home, &pw);
    let unresolved = check_supported(&snap);
    assert!(
        unresolved.iter().any(|(_, e)| e["status"] == "interrupted"),
        "the kill landed after every execution ended; nothing was tested: {snap}"
    );

    // `retry --wait` resumes the recorded execution: the same id, the phases done before
    // the kill not run again. Its exit code says where the node is.
    for (name, before) in &unresolved {
        let (code, out, err) =
            run(legion(&home, &pw).args(["nodes", "retry", name, "--wait", "--timeout", "60s"]));
        let snap = snapshot(&home, &pw);
        check_supported(&snap);
        // `nodes show` gives a new engine's first health check its moment (`status`
        // does not: there a node nobody checked yet is `running · unchecked`).
        let (_, shown, _) = run(legion(&home, &pw).args(["nodes", "show", name, "--json"]));
        let row: Value = serde_json::from_str(&shown).unwrap();
        let row = &row;
        if code == 0 {
            assert!(out.contains("done (running"), "{name}: {out}");
            assert!(
                matches!(
                    row["status"]["state"].as_str(),
                    Some("running" | "running_degraded")
                ),
                "retry exited 0 but {name} is {}",
                row["status"]
            );
        } else {
            assert_eq!(code, 1, "{name}: {err}");
            assert!(err.contains(&format!("retry {name}")), "{name}: {err}");
            assert_ne!(
                row["status"]["state"], "running",
                "exit 1 but running: {row}"
            );
        }
        let after = &row["execution"];
        assert_eq!(
            after["id"], before["id"],
            "{name}: a new execution, not a resume"
        );
        for (phase, started) in done_phases(before) {
            let again = after["phases"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["phase"] == phase.as_str())
                .unwrap();
            assert_eq!(
                again["started_ms"], started,
                "{name}: phase {phase} ran again after the resume"
            );
        }
    }

    // Without faults, an apply settles the rest; then every node is running, and
    // `--wait` on an action exits 0 with the state it reached.
    let (code, _, err) = run(legion(&home, &pw).args([
        "provider",
        "configure",
        "mock",
        "--error-rate",
        "0",
        "--ambiguous-rate",
        "0",
    ]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(legion(&home, &pw).args(["apply", "--wait"]));
    assert_eq!(code, 0, "{out}{err}");
    let snap = snapshot(&home, &pw);
    check_supported(&snap);
    let (code, out, err) = run(legion(&home, &pw).args(["nodes", "stop", "fm-1", "--wait"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stop fm-1: done (stopped)"), "{out}");
    assert_eq!(
        node(&snapshot(&home, &pw), "fm-1")["status"]["state"],
        "stopped"
    );
    let (code, out, err) = run(legion(&home, &pw).args(["nodes", "start", "fm-1", "--wait"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("start fm-1: done (running)"), "{out}");
}

/// Every write fails: `--wait` exits 1 with the reason and the row does not claim the
/// target state.
#[test]
fn wait_exits_one_when_the_action_fails() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "fault matrix\n").unwrap();
    assert_eq!(run(legion(&home, &pw).args(["config", "init"])).0, 0);
    let (code, _, err) =
        run(legion(&home, &pw).args(["provider", "configure", "mock", "--latency-ms", "5"]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(legion(&home, &pw).args([
        "nodes",
        "add",
        "fx-1",
        "--provider",
        "mock",
        "--apply",
        "--wait",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) =
        run(legion(&home, &pw).args(["provider", "configure", "mock", "--error-rate", "1"]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(legion(&home, &pw).args(["nodes", "stop", "fx-1", "--wait"]));
    assert_eq!(code, 1, "stop with every call failing: {out}{err}");
    // Failed (`stop fx-1 failed: …`), or refused once the provider stopped answering.
    assert!(err.contains("fx-1"), "{err}");
    let row = node(&snapshot(&home, &pw), "fx-1").clone();
    assert_ne!(row["status"]["state"], "stopped", "{row}");
}
