//! The daemon through the real binary: its socket, token, metadata, limits and recovery,
//! the CLI going through it, and the dashboard attaching to it.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use legion_testkit::tmux;

/// A home with the simulated cloud configured and two nodes applied.
pub(crate) struct Home {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) home: PathBuf,
    pub(crate) pw: PathBuf,
}

impl Home {
    pub(crate) fn new() -> Home {
        Home::at("home")
    }

    /// A home at `sub` inside a fresh temporary directory.
    pub(crate) fn at(sub: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join(sub);
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "daemon test password\n").unwrap();
        let h = Home { dir, home, pw };
        h.ok(&["config", "init"]);
        h.ok(&["provider", "configure", "mock", "--latency-ms", "5"]);
        h.ok(&["nodes", "add", "n1", "--provider", "mock"]);
        h.ok(&[
            "nodes",
            "add",
            "n2",
            "--provider",
            "mock",
            "--apply",
            "--wait",
        ]);
        h
    }

    /// `legion` on this home without a token: it unlocks the state itself.
    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.env("LEGION_HOME", &self.home)
            .env("LEGION_PASSWORD_FILE", &self.pw)
            .env("LEGION_MOCK_NETWORK", "1")
            .env_remove("LEGION_DAEMON_TOKEN");
        c
    }

    /// `legion` through the daemon (no password at hand).
    pub(crate) fn via(&self, token: &str) -> Command {
        let mut c = self.cmd();
        c.env_remove("LEGION_PASSWORD_FILE")
            .env("LEGION_DAEMON_TOKEN", token);
        c
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = run(self.cmd().args(args));
        assert_eq!(code, 0, "legion {args:?}: {err}");
        out
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.home.join("daemon").join("legion.sock")
    }

    pub(crate) fn metadata(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.home.join("daemon/daemon.json")).unwrap())
            .unwrap()
    }

    /// `legion daemon start`; returns the daemon (stopped on drop) and its token.
    pub(crate) fn start(&self) -> Daemon {
        let (code, out, err) = run(self.cmd().args(["daemon", "start"]));
        assert_eq!(code, 0, "daemon start: {err}");
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
            .unwrap_or_else(|| panic!("no token line in {out:?}"))
            .to_string();
        Daemon {
            pid: self.metadata()["pid"].as_u64().unwrap() as u32,
            token,
            stderr: err,
        }
    }
}

pub(crate) struct Daemon {
    pub(crate) pid: u32,
    pub(crate) token: String,
    pub(crate) stderr: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill(self.pid, "-TERM");
    }
}

pub(crate) fn kill(pid: u32, signal: &str) {
    // Quiet: a daemon already stopped by its test is no news.
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

pub(crate) fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw protocol client.
pub(crate) struct Raw {
    pub(crate) w: UnixStream,
    pub(crate) r: BufReader<UnixStream>,
}

impl Raw {
    pub(crate) fn connect(socket: &Path) -> Raw {
        let w = UnixStream::connect(socket).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    pub(crate) fn send_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.w.write_all(line)?;
        self.w.write_all(b"\n")
    }

    pub(crate) fn send(&mut self, v: &Value) {
        self.send_line(v.to_string().as_bytes()).unwrap();
    }

    /// The next line, or None at end of stream.
    pub(crate) fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
            // A reset after the daemon closed on us also ends the stream.
            Err(_) => None,
        }
    }

    pub(crate) fn call(&mut self, v: &Value) -> Value {
        self.send(v);
        self.recv().expect("a reply")
    }
}

#[test]
fn every_request_needs_the_token_and_a_wrong_one_closes_the_connection() {
    let h = Home::new();
    let d = h.start();

    let mut c = Raw::connect(&h.socket());
    let r = c.call(&json!({"id": 1, "method": "status"}));
    assert_eq!(r["error"]["code"], "unauthorized", "{r}");
    assert!(c.recv().is_none(), "closed after a missing token");

    let mut c = Raw::connect(&h.socket());
    let last = if d.token.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &d.token[..63]);
    assert_ne!(wrong, d.token);
    let r = c.call(&json!({"id": 2, "token": wrong, "method": "snapshot"}));
    assert_eq!(r["error"]["code"], "unauthorized", "{r}");
    assert!(r.get("result").is_none());
    assert!(c.recv().is_none(), "closed after a wrong token");

    let mut c = Raw::connect(&h.socket());
    let r = c.call(&json!({"id": 3, "token": d.token, "method": "status"}));
    assert_eq!(r["id"], 3);
    assert_eq!(r["result"]["pid"], d.pid);

    // The CLI: a wrong token is exit 3 (like a wrong password), no daemon is exit 4.
    let (code, _, err) = run(h.via(&wrong).args(["nodes", "list"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("token"), "{err}");
    let (code, _, err) = run(h.cmd().args(["daemon", "stop"]));
    assert_eq!(code, 1, "stop without the token: {err}");
    assert!(err.contains("LEGION_DAEMON_TOKEN"), "{err}");
    assert!(alive(d.pid));
    let (code, out, err) = run(h.via(&d.token).args(["daemon", "stop"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stopped"), "{out}");
    assert!(!h.socket().exists(), "the socket is removed on stop");
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 4, "daemon unavailable: {err}");
    assert!(err.contains("no daemon runs"), "{err}");
}

#[test]
fn metadata_holds_no_token_and_every_file_is_private() {
    let h = Home::new();
    let d = h.start();
    let dir = h.home.join("daemon");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("daemon.json")), 0o600);
    assert_eq!(mode(&h.socket()), 0o600);
    let raw = std::fs::read_to_string(dir.join("daemon.json")).unwrap();
    assert!(!raw.contains(&d.token), "the token is never written");
    let meta = h.metadata();
    let mut keys: Vec<&str> = meta
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["created", "endpoint", "pid", "state", "version"]);
    assert_eq!(meta["endpoint"], h.socket().display().to_string());
    // Nor in the diagnostics or the daemon's argv.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid)).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&d.token));
    for entry in std::fs::read_dir(h.home.join("logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&d.token));
        assert!(!text.contains("daemon test password"));
    }
    assert!(!d.stderr.contains(&d.token));
}

#[test]
fn oversized_and_malformed_lines_are_refused_while_others_are_served() {
    let h = Home::new();
    let d = h.start();
    let status = |id: u64| json!({"id": id, "token": d.token, "method": "status"});
    let mut other = Raw::connect(&h.socket());
    assert_eq!(other.call(&status(1))["result"]["pid"], d.pid);

    let mut bad = Raw::connect(&h.socket());
    // The first line must carry the token (see daemon_trust for one that does not);
    // after it, a malformed line is answered and the connection stays.
    assert_eq!(bad.call(&status(0))["result"]["pid"], d.pid);
    bad.send_line(b"this is not json").unwrap();
    assert_eq!(bad.recv().unwrap()["error"]["code"], "bad_request");
    bad.send_line(b"[1,2,3]").unwrap();
    assert_eq!(bad.recv().unwrap()["error"]["code"], "bad_request");
    let r = bad.call(&json!({"id": 5, "token": d.token, "method": "no_such_method"}));
    assert_eq!(r["error"]["code"], "bad_request");
    assert_eq!(r["id"], 5);
    // The same connection still works after malformed lines.
    assert_eq!(bad.call(&status(6))["result"]["pid"], d.pid);
    assert_eq!(other.call(&status(2))["result"]["pid"], d.pid);

    // A line over the bound: refused and the connection closed, without the daemon
    // buffering it whole.
    let big = vec![b'x'; 5 << 20];
    let _ = bad.send_line(&big);
    let r = bad.recv().unwrap();
    assert_eq!(r["error"]["code"], "too_large", "{r}");
    assert!(bad.recv().is_none());
    assert_eq!(other.call(&status(3))["result"]["pid"], d.pid);
    let fresh = Raw::connect(&h.socket()).call(&status(4));
    assert_eq!(fresh["result"]["pid"], d.pid);
}

#[test]
fn fifty_clients_times_a_hundred_requests_all_answered() {
    let h = Home::new();
    let d = h.start();
    let socket = h.socket();
    let threads: Vec<_> = (0..50)
        .map(|c| {
            let socket = socket.clone();
            let token = d.token.clone();
            std::thread::spawn(move || {
                let mut raw = Raw::connect(&socket);
                // Pipelined: all hundred written before reading (replies come by id).
                let mut writer = raw.w.try_clone().unwrap();
                let sender = std::thread::spawn(move || {
                    for i in 0..100u64 {
                        let method = ["status", "plan", "providers", "snapshot"][i as usize % 4];
                        let line = json!({"id": c * 1000 + i, "token": token, "method": method});
                        writeln!(writer, "{line}").unwrap();
                    }
                });
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..100 {
                    let r = raw.recv().expect("a reply");
                    let id = r["id"].as_u64().unwrap();
                    assert!(r.get("error").is_none(), "{r}");
                    let result = &r["result"];
                    match id % 1000 % 4 {
                        0 => assert!(result["pid"].is_u64(), "{r}"),
                        1 => assert_eq!(result["nodes"].as_object().unwrap().len(), 2, "{r}"),
                        2 => assert!(
                            result
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|p| p["kind"] == "mock")
                        ),
                        _ => assert_eq!(result["nodes"].as_array().unwrap().len(), 2),
                    }
                    assert_eq!(id / 1000, c);
                    assert!(seen.insert(id), "one reply per request");
                }
                sender.join().unwrap();
                seen.len()
            })
        })
        .collect();
    let answered: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, 5000);
    let r = Raw::connect(&socket).call(&json!({"id": 1, "token": d.token, "method": "status"}));
    assert!(r["result"]["requests"].as_u64().unwrap() >= 5000);
}

/// The health reading (and the `system` region it feeds) is an observation each engine
/// makes on its own schedule: a freshly unlocked engine may not have it yet. Everything
/// else must match field for field.
fn stable(mut v: Value) -> Value {
    for r in v.as_array_mut().unwrap() {
        let o = r.as_object_mut().unwrap();
        assert!(o.remove("health").is_some() && o.remove("system").is_some());
    }
    v
}

#[test]
fn the_cli_through_the_daemon_prints_the_same_json_and_leaves_it_running() {
    let h = Home::new();
    let local: Value = serde_json::from_str(&h.ok(&["nodes", "list", "--json"])).unwrap();
    let d = h.start();
    let (code, out, err) = run(h.via(&d.token).args(["nodes", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    let via: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stable(via), stable(local.clone()));
    assert_eq!(local.as_array().unwrap().len(), 2);

    // `status` says which path it took.
    let (_, out, _) = run(h.via(&d.token).args(["status", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["engine"]["path"], "daemon");
    assert_eq!(v["engine"]["pid"], d.pid);

    // Without the token the state is held by the daemon: exit 3, and how to get in.
    let (code, _, err) = run(h.cmd().args(["nodes", "list"]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("LEGION_DAEMON_TOKEN"), "{err}");

    // `logs --follow` streams from the daemon's subscription.
    let mut follow = h
        .via(&d.token)
        .args(["logs", "--follow", "--json", "--node", "n1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    // Actions through the daemon; --wait follows the operation to its end.
    for (action, machine) in [
        ("stop", "stopped"),
        ("start", "running"),
        ("reboot", "running"),
    ] {
        let (code, out, err) = run(h.via(&d.token).args(["nodes", action, "n1", "--wait"]));
        assert_eq!(code, 0, "{action}: {err}");
        assert!(
            out.contains(&format!("{action} n1: done ({machine}")),
            "{out}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut streamed = Vec::new();
    while !streamed
        .iter()
        .any(|l: &String| l.contains("machine stopping -> machine stopped"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .expect("the stop in the followed log");
        let entry: Value = serde_json::from_str(&line).unwrap();
        assert!(
            entry["resource"] == "node/n1" || entry["resource"].is_null(),
            "{entry}"
        );
        streamed.push(line);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "start", "n1"]));
    assert_eq!(code, 1, "a refusal is a failure: {err}");
    assert!(err.contains("already running"), "{err}");

    // A command that does not wait returns while the daemon carries on.
    let (code, _, _) = run(h.via(&d.token).args(["nodes", "stop", "n2"]));
    assert_eq!(code, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = run(h.via(&d.token).args(["nodes", "show", "n2", "--json"]));
        let row: Value = serde_json::from_str(&out).unwrap();
        if row["machine"] == "stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "n2 never stopped: {row}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    // Stopping saves the state: without the daemon it opens with the password again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.socket().exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows: Value = serde_json::from_str(&h.ok(&["nodes", "list", "--json"])).unwrap();
    let n2 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "n2")
        .unwrap();
    assert_eq!(n2["machine"], "stopped");
}

#[test]
fn a_killed_daemon_leaves_a_stale_socket_that_the_next_start_recovers() {
    let h = Home::new();
    let d = h.start();
    kill(d.pid, "-KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(d.pid) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(h.socket().exists(), "SIGKILL leaves the socket behind");

    // Not trusted: the CLI says the daemon is unavailable and why.
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("stale"), "{err}");
    // Without a token the stale files do not stand in the way of a local unlock.
    h.ok(&["nodes", "list"]);

    let d2 = h.start();
    assert!(d2.stderr.contains("stale"), "{}", d2.stderr);
    assert_ne!(d2.pid, d.pid);
    assert_eq!(h.metadata()["pid"], d2.pid);
    let (code, out, err) = run(h.via(&d2.token).args(["nodes", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A second start while it runs is refused and changes nothing.
    let (code, _, err) = run(h.cmd().args(["daemon", "start"]));
    assert_eq!(code, 1);
    assert!(err.contains("already"), "{err}");
    assert!(alive(d2.pid));
    // `daemon status` reports it.
    let (code, out, _) = run(h.via(&d2.token).args(["daemon", "status", "--json"]));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["lock"], "unlocked");
    std::mem::forget(d);
}

#[test]
fn the_dashboard_attaches_and_detaching_leaves_the_engine_working() {
    let h = Home::new();
    let d = h.start();
    let cmd = format!(
        "env LEGION_HOME={} LEGION_DAEMON_TOKEN={} TERM=xterm-256color {} --attach; echo LEGION-EXITED $?; sleep 60",
        h.home.display(),
        d.token,
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = tmux::Tmux::start(&cmd, 160, 40) else {
        return;
    };
    let s = t.wait("the attached dashboard", |s| {
        s.contains(&format!("daemon pid {}", d.pid)) && s.contains("│n2 ")
    });
    assert!(s.contains("quitting leaves its engine running"), "{s}");
    // Stop n1 from the dashboard and quit before it has finished.
    t.text("o");
    t.wait_for("stop n1?");
    t.keys(&["Tab"]);
    t.keys(&["Enter"]);
    t.text("q");
    t.wait_for("LEGION-EXITED 0");
    assert!(alive(d.pid), "detaching does not stop the daemon");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = run(h.via(&d.token).args(["nodes", "show", "n1", "--json"]));
        assert_eq!(code, 0, "{err}");
        let row: Value = serde_json::from_str(&out).unwrap();
        if row["machine"] == "stopped" {
            break;
        }
        assert!(Instant::now() < deadline, "the stop never finished: {row}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Attach again: the engine is still unlocked and shows the result.
    drop(t);
    let Some(t) = tmux::Tmux::start(&cmd, 160, 40) else {
        return;
    };
    t.wait("n1 stopped on reattach", |s| {
        s.lines()
            .any(|l| l.contains("│n1 ") && l.contains("stopped"))
    });
}
