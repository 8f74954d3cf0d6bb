//! Daemon figures, printed as plain lines:
//! - `legion nodes list --json` with a fresh unlock versus through the daemon (median of
//!   20 runs each, the real binary, 50 nodes on the simulated cloud), beside the cost of
//!   starting the binary at all (`legion --version`), which bounds what the daemon can save;
//! - requests per second one daemon answers (`status`, and `snapshot` of 50 nodes) from
//!   8 connections pipelining requests for 3 seconds each;
//! - under load, at 1,000 and 10,000 nodes (clusters of 100, simulated cloud at latency
//!   0): p50/p99 of `status` and of `snapshot` (the socket call `nodes list --json`
//!   makes) while the apply runs, the same for the whole `legion nodes list --json`
//!   process, and the time from SIGTERM to the daemon's exit in the middle of the apply.
//!
//! `cargo bench --bench daemon` (`LEGION_BENCH_DAEMON_LOAD=1000,10000` picks the load
//! sizes, `LEGION_BENCH_LOAD_SECS=30` how long the apply runs before the SIGTERM)

#![allow(clippy::unwrap_used)]

mod common;

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

    let sizes = std::env::var("LEGION_BENCH_DAEMON_LOAD").unwrap_or_else(|_| "1000,10000".into());
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        under_load(n);
    }
}

/// A home whose plan holds `n` nodes in clusters of 100 on the simulated cloud (latency
/// 0), nothing created yet: the state made by the real CLI, the plan written into it.
fn planned_home(dir: &Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    use legion::engine::state::crypto::KdfParams;
    use legion::engine::state::store::StateFile;
    let seed = dir.join("seed");
    let home = dir.join(format!("home-{n}"));
    let pw = dir.join("pw");
    std::fs::write(&pw, "bench password\n").unwrap();
    ok(legion(&seed, &pw).args(["config", "init"]));
    ok(legion(&seed, &pw).args(["provider", "configure", "mock", "--latency-ms", "0"]));
    let opened =
        legion::engine::state::open::open(&StateFile::in_home(&seed), b"bench password").unwrap();
    let mut state = opened.state;
    let fleet = common::fleet(n, 100);
    state.plan.nodes = fleet.plan.nodes;
    state.plan.clusters = fleet.plan.clusters;
    for c in state.plan.clusters.values_mut() {
        c.dns_zone = None;
    }
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let fast = KdfParams {
        m_cost_kib: 1024,
        t_cost: 1,
        p_cost: 1,
    };
    StateFile::in_home(&home)
        .create(
            b"bench password",
            fast,
            &serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
    std::fs::remove_dir_all(&seed).unwrap();
    (home, pw)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// One connection asking `method` every `every` until `stop`; each answer's latency.
fn probe(
    socket: &Path,
    token: &str,
    method: &'static str,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    let socket = socket.to_path_buf();
    let token = token.to_string();
    std::thread::spawn(move || {
        let s = UnixStream::connect(&socket).unwrap();
        let mut r = BufReader::with_capacity(1 << 20, s.try_clone().unwrap());
        let mut w = s;
        let mut line = String::new();
        let mut times = Vec::new();
        let mut id = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            id += 1;
            let t = Instant::now();
            writeln!(w, r#"{{"id":{id},"token":"{token}","method":"{method}"}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            times.push(t.elapsed());
            assert!(
                line.contains("\"result\""),
                "{}",
                &line[..line.len().min(300)]
            );
            std::thread::sleep(every);
        }
        times
    })
}

/// Requests during a running apply of `n` nodes, then SIGTERM in its middle.
fn under_load(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (home, pw) = planned_home(dir.path(), n);
    let out = ok(legion(&home, &pw).args(["daemon", "start"]));
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
        .unwrap()
        .to_string();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("daemon/daemon.json")).unwrap()).unwrap();
    let pid = meta["pid"].as_u64().unwrap();
    let socket = home.join("daemon").join("legion.sock");
    let via = || {
        let mut c = legion(&home, &pw);
        c.env_remove("LEGION_PASSWORD_FILE")
            .env("LEGION_DAEMON_TOKEN", &token);
        c
    };
    let started = Instant::now();
    ok(via().args(["apply"]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let status = probe(
        &socket,
        &token,
        "status",
        Duration::from_millis(20),
        stop.clone(),
    );
    let snapshot = probe(
        &socket,
        &token,
        "snapshot",
        Duration::from_millis(100),
        stop.clone(),
    );
    let secs: u64 = std::env::var("LEGION_BENCH_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut cli = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let out = ok(via().args(["nodes", "list", "--json"]));
        cli.push(t.elapsed());
        assert!(out.starts_with('['));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut status = status.join().unwrap();
    let mut snapshot = snapshot.join().unwrap();
    status.sort();
    snapshot.sort();
    cli.sort();
    let raw = |snapshot: &[u8]| -> serde_json::Value { serde_json::from_slice(snapshot).unwrap() };
    let mut s = UnixStream::connect(&socket).unwrap();
    writeln!(s, r#"{{"id":1,"token":"{token}","method":"snapshot"}}"#).unwrap();
    let mut line = Vec::new();
    BufReader::new(s.try_clone().unwrap())
        .read_until(b'\n', &mut line)
        .unwrap();
    let snap = raw(&line);
    let nodes = snap["result"]["nodes"].as_array().unwrap();
    let running = nodes
        .iter()
        .filter(|r| r["status"]["state"] == "running")
        .count();
    println!(
        "under load, {n} nodes, {secs} s into the apply ({running} running): status p50 {:.1} ms p99 {:.1} ms ({} calls); snapshot ({} KiB) p50 {:.1} ms p99 {:.1} ms ({} calls); `legion nodes list --json` p50 {:.1} ms p99 {:.1} ms ({} runs)",
        pct(&status, 0.5),
        pct(&status, 0.99),
        status.len(),
        line.len() / 1024,
        pct(&snapshot, 0.5),
        pct(&snapshot, 0.99),
        snapshot.len(),
        pct(&cli, 0.5),
        pct(&cli, 0.99),
        cli.len()
    );
    let t = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    // Gone entirely (init reaps it), not just a zombie: a dying process's threads may
    // still be finishing a write, and its state lock is released only then.
    while Path::new(&format!("/proc/{pid}")).exists() {
        if t.elapsed() > Duration::from_secs(120) {
            println!("  SIGTERM: still running after 120 s; killed");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone = t.elapsed();
    let rows: serde_json::Value =
        serde_json::from_str(&ok(legion(&home, &pw).args(["nodes", "list", "--json"]))).unwrap();
    let interrupted = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"]["state"] == "interrupted")
        .count();
    println!(
        "  SIGTERM during the {n}-node apply: exited after {:.0} ms, {interrupted} executions interrupted",
        gone.as_secs_f64() * 1e3
    );
}
