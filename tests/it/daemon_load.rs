//! The daemon as commands use it under work: write commands that never subscribe,
//! `apply --wait` on the compact progress stream, and SIGTERM during an apply leaving
//! executions `interrupted` at their phase, which `retry` resumes.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::daemon::{Home, Raw, alive, kill, run};

/// The daemon's own `status`, on a connection of its own.
fn daemon_status(h: &Home, token: &str) -> Value {
    let mut raw = Raw::connect(&h.socket());
    let reply = raw.call(&json!({"id": 1, "token": token, "method": "status"}));
    reply["result"].clone()
}

#[test]
fn write_commands_and_one_shot_readers_through_the_daemon_never_subscribe() {
    let h = Home::new();
    let d = h.start();
    assert_eq!(daemon_status(&h, &d.token)["subscriptions"], 0);
    assert_eq!(daemon_status(&h, &d.token)["lock"], "unlocked");

    let commands: &[&[&str]] = &[
        &["nodes", "add", "n3", "--provider", "mock"],
        &["nodes", "set", "n3", "--cluster", "blue"],
        &["zones", "add", "example.test", "--provider", "mock"],
        &["zones", "remove", "example.test"],
        &["apply", "--wait"],
        &["nodes", "list", "--json"],
        &["nodes", "show", "n3", "--json"],
        &["status", "--json"],
        &["zones", "list", "--json"],
        &["firewalls", "list", "--json"],
        &["nodes", "reboot", "n1"],
        &["nodes", "destroy", "n3", "--yes"],
        &["apply"],
    ];
    for args in commands {
        let (code, out, err) = run(h.via(&d.token).args(*args));
        assert_eq!(code, 0, "legion {args:?}: {out}{err}");
        assert_eq!(
            daemon_status(&h, &d.token)["subscriptions"],
            0,
            "legion {args:?} subscribed"
        );
    }

    // The counter counts: a command that follows the fleet live does subscribe.
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "reboot", "n2", "--wait"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(daemon_status(&h, &d.token)["subscriptions"], 1);
}

#[test]
fn apply_progress_streams_small_events_and_ends_with_the_outcome() {
    let h = Home::new();
    let d = h.start();
    for i in 3..9 {
        let name = format!("n{i}");
        let (code, _, err) =
            run(h
                .via(&d.token)
                .args(["nodes", "add", &name, "--provider", "mock"]));
        assert_eq!(code, 0, "{err}");
    }
    let mut raw = Raw::connect(&h.socket());
    let started = raw.call(&json!({"id": 1, "token": d.token, "method": "apply"}));
    let apply = started["result"]
        .as_u64()
        .unwrap_or_else(|| panic!("{started}"));
    raw.send(
        &json!({"id": 2, "token": d.token, "method": "apply_progress",
        "params": {"apply": apply, "node": "n5"}}),
    );
    let mut events = 0;
    let last = loop {
        let line = raw.recv().expect("the stream ended before the apply did");
        let size = line.to_string().len();
        assert_eq!(line["id"], 2, "{line}");
        if line["event"] == "progress" {
            assert!(size < 4096, "a progress event of {size} bytes: {line}");
            assert!(line["data"]["nodes"].is_object(), "{line}");
            assert!(line["data"].get("nodes").is_some() && line["data"].get("seq").is_some());
            events += 1;
            continue;
        }
        break line;
    };
    assert!(events >= 1, "no progress before the end");
    let result = &last["result"];
    assert_eq!(result["apply"]["state"], "finished", "{last}");
    assert_eq!(result["apply"]["id"], apply, "{last}");
    assert_eq!(result["apply"]["ok"], true, "{last}");
    assert_eq!(result["node"]["name"], "n5", "{last}");
    let counted: u64 = result["nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 8, "{last}");

    // The CLI prints what it always printed, through the daemon too.
    let (code, _, err) = run(h
        .via(&d.token)
        .args(["nodes", "add", "n9", "--provider", "mock"]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(h.via(&d.token).args(["apply", "--wait"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().last().unwrap().ends_with(": converged"),
        "{out}"
    );
    assert_eq!(daemon_status(&h, &d.token)["subscriptions"], 0);
}

/// Rows of `nodes list --json` through a fresh local unlock.
fn rows(h: &Home) -> Vec<Value> {
    serde_json::from_str::<Value>(&h.ok(&["nodes", "list", "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn sigterm_during_an_apply_stops_the_daemon_leaving_interrupted_phases_that_retry_resumes() {
    let h = Home::new();
    // Slow provider calls: the apply is still deploying when the signal comes.
    h.ok(&["provider", "configure", "mock", "--latency-ms", "400"]);
    for i in 3..9 {
        h.ok(&["nodes", "add", &format!("n{i}"), "--provider", "mock"]);
    }
    let d = h.start();
    let (code, _, err) = run(h.via(&d.token).args(["apply"]));
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = run(h.via(&d.token).args(["nodes", "list", "--json"]));
        let busy = serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"]["state"] == "deploying")
            .count();
        if busy >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no node deploying: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Instant::now();
    kill(d.pid, "-TERM");
    while alive(d.pid) {
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "the daemon still runs 20 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!h.socket().exists(), "the daemon left its socket");
    eprintln!("SIGTERM to exit: {:?}", signalled.elapsed());

    // The state file itself says which executions stopped, at which phase.
    let interrupted: Vec<Value> = rows(&h)
        .into_iter()
        .filter(|r| r["status"]["state"] == "interrupted")
        .collect();
    assert!(
        !interrupted.is_empty(),
        "no interrupted execution after SIGTERM: {:?}",
        rows(&h)
    );
    for r in &interrupted {
        assert!(r["status"]["phase"].is_string(), "{r}");
    }
    let ops = std::fs::read_to_string(h.home.join("logs/operations.jsonl")).unwrap();
    assert!(ops.contains("interrupted"), "{ops}");

    // Retry resumes each at its phase.
    h.ok(&["provider", "configure", "mock", "--latency-ms", "5"]);
    for r in &interrupted {
        let name = r["name"].as_str().unwrap();
        let out = h.ok(&["nodes", "retry", name, "--wait"]);
        assert!(out.contains(&format!("retry {name}: done")), "{out}");
    }
    let left: Vec<Value> = rows(&h)
        .into_iter()
        .filter(|r| r["status"]["state"] == "interrupted")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
