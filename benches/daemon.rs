//! Daemon figures, printed as plain lines:
//! - `legion nodes list --json` with a fresh unlock versus through the daemon (median of
//!   20 runs each, the real binary, 50 nodes on the simulated cloud), beside the cost of
//!   starting the binary at all (`legion --version`), which bounds what the daemon can save;
//! - requests per second one daemon answers (`status`, and `snapshot` of 50 nodes) from
//!   8 connections pipelining requests for 3 seconds each.
//!
//! `cargo bench --bench daemon`

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const NODES: usize = 50;
const RUNS: usize = 20;

fn legion(home: &Path, pw: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.env("LEGION_HOME", home)
        .env("LEGION_PASSWORD_FILE", pw)
        .env("LEGION_MOCK_NETWORK", "1")
        .env_remove("LEGION_DAEMON_TOKEN");
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(mut make: impl FnMut() -> Command, expect: &str) -> Duration {
    let runs = (0..RUNS)
        .map(|_| {
            let mut c = make();
            let t = Instant::now();
            let out = ok(&mut c);
            let d = t.elapsed();
            assert!(out.starts_with(expect), "{out}");
            d
        })
        .collect();
    median(runs)
}

/// Requests answered per second over `secs`, from `conns` pipelining connections.
fn throughput(socket: &Path, token: &str, method: &str, conns: usize, secs: u64) -> f64 {
    let until = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let socket = socket.to_path_buf();
            let token = token.to_string();
            let method = method.to_string();
            std::thread::spawn(move || {
                let s = UnixStream::connect(&socket).unwrap();
                let mut r = BufReader::with_capacity(1 << 20, s.try_clone().unwrap());
                let mut w = std::io::BufWriter::new(s);
                let mut line = String::new();
                let (mut sent, mut answered) = (0u64, 0u64);
                // Keep up to 32 requests in flight.
                while Instant::now() < until {
                    while sent - answered < 32 {
                        writeln!(
                            w,
                            r#"{{"id":{sent},"token":"{token}","method":"{method}"}}"#
                        )
                        .unwrap();
                        sent += 1;
                    }
                    w.flush().unwrap();
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    assert!(line.contains("\"result\""), "{line}");
                    answered += 1;
                }
                while answered < sent {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let start = Instant::now();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64().max(secs as f64)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "bench password\n").unwrap();
    ok(legion(&home, &pw).args(["config", "init"]));
    ok(legion(&home, &pw).args(["provider", "configure", "mock", "--latency-ms", "0"]));
    for i in 0..NODES {
        ok(legion(&home, &pw).args(["nodes", "add", &format!("n{i:03}"), "--provider", "mock"]));
    }
    ok(legion(&home, &pw).args(["apply", "--wait"]));

    let fresh = time_runs(
        || {
            let mut c = legion(&home, &pw);
            c.args(["nodes", "list", "--json"]);
            c
        },
        "[",
    );

    let out = ok(legion(&home, &pw).args(["daemon", "start"]));
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
        .unwrap()
        .to_string();
    let via = time_runs(
        || {
            let mut c = legion(&home, &pw);
            c.env_remove("LEGION_PASSWORD_FILE")
                .env("LEGION_DAEMON_TOKEN", &token)
                .args(["nodes", "list", "--json"]);
            c
        },
        "[",
    );
    let start = time_runs(
        || {
            let mut c = legion(&home, &pw);
            c.arg("--version");
            c
        },
        "legion",
    );
    println!(
        "nodes list --json ({NODES} nodes), median of {RUNS}: fresh unlock {:.1} ms, through the daemon {:.1} ms ({:.1}x faster); starting the binary (--version) {:.1} ms, so the daemon's part is {:.1} ms",
        fresh.as_secs_f64() * 1e3,
        via.as_secs_f64() * 1e3,
        fresh.as_secs_f64() / via.as_secs_f64(),
        start.as_secs_f64() * 1e3,
        via.saturating_sub(start).as_secs_f64() * 1e3
    );

    let socket = home.join("daemon").join("legion.sock");
    for method in ["status", "snapshot"] {
        let rps = throughput(&socket, &token, method, 8, 3);
        println!("daemon `{method}` requests/s from 8 pipelining connections: {rps:.0}");
    }
    ok(legion(&home, &pw)
        .env("LEGION_DAEMON_TOKEN", &token)
        .args(["daemon", "stop"]));
}
