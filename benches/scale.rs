//! State scale figures (issue 16), printed as plain lines, at 1k and 10k nodes in clusters
//! of 100 and at 1k and 2k nodes in one cluster, tracked as after an apply:
//! - state bytes per node (the JSON the file encrypts) and the time of one full save
//!   (serialize, encrypt, write, fsync, rename, fsync the directory), median of 5;
//! - one plan edit through the engine (`Engine::edit_plan`, in process, no daemon):
//!   median and p99 of 200 edits into a state of that size;
//! - sequential single edits through the daemon (the real binary, `upsert_node` on its
//!   socket, one request at a time) from an empty plan up to 1k and 10k nodes: total, and
//!   the mean of the first and last tenth.
//!
//! `cargo bench --bench scale` (`LEGION_BENCH_SCALE=quick` skips the 10k daemon run)

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use legion::core::secret::Secret;
use legion::engine::Timings;
use legion::engine::plan::PlanEdit;
use legion::engine::state::crypto::KdfParams;
use legion::engine::state::model::NodePlan;
use legion::engine::state::store::StateFile;
use legion::engine::{Engine, EngineConfig};
use legion::providers::mock::{MockCloud, MockModule};
use legion::providers::{BootMode, Env, Registry};

const FAST: KdfParams = KdfParams {
    m_cost_kib: 1024,
    t_cost: 1,
    p_cost: 1,
};
const PW: &str = "bench password";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A home holding `state` (sealed with small Argon2 settings).
fn home_with(dir: &Path, state: &legion::engine::state::model::State) -> StateFile {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let file = StateFile::in_home(dir);
    let bytes = serde_json::to_vec(state).unwrap();
    file.create(PW.as_bytes(), FAST, &bytes).unwrap();
    file
}

fn bench_size_and_save(n: usize, cluster: usize) {
    let state = common::fleet(n, cluster);
    let bytes = serde_json::to_vec(&state).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = home_with(dir.path(), &state);
    let (key, _) = file.open(PW.as_bytes()).unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let b = serde_json::to_vec(&state).unwrap();
        file.save(&key, &b).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "state of {n} nodes in clusters of {cluster}: {} bytes, {:.0} bytes/node; full save median {:.1} ms",
        bytes.len(),
        bytes.len() as f64 / n as f64,
        ms(times[times.len() / 2])
    );
    // Where a full save's time goes: serialize, seal (AES-GCM and the trailing SHA-256),
    // and the integrity check of the file it replaces (read + SHA-256); the rest is the
    // write, fsyncs and renames.
    let t = Instant::now();
    let b = serde_json::to_vec(&state).unwrap();
    let serialize = t.elapsed();
    let t = Instant::now();
    let sealed = legion::engine::state::crypto::seal(&key, 99, &b).unwrap();
    let seal = t.elapsed();
    let t = Instant::now();
    let current = std::fs::read(file.path()).unwrap();
    legion::engine::state::crypto::check_integrity(&current).unwrap();
    let check = t.elapsed();
    println!(
        "  of which: serialize {:.1} ms, seal {:.1} ms, read and check the old file {:.1} ms ({} bytes sealed)",
        ms(serialize),
        ms(seal),
        ms(check),
        sealed.len()
    );
}

fn new_node(i: usize, cluster: &str) -> NodePlan {
    NodePlan {
        uid: format!("e{i:015x}"),
        cluster: cluster.into(),
        role: "worker".into(),
        provider: "mock".into(),
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "debian-12".into(),
        boot_mode: BootMode::Bios,
    }
}

async fn bench_engine_edit(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    home_with(&home, &common::fleet(n, 100));
    let engine = Engine::start(EngineConfig {
        home,
        registry: Registry::new(vec![Arc::new(MockModule::with_cloud(MockCloud::new(1)))]),
        env: Env::default().with("LEGION_MOCK_NETWORK", "1"),
        timings: Timings::default(),
        kdf: FAST,
        ssh_endpoints: None,
    });
    let t = Instant::now();
    engine.unlock(Secret::new(PW)).await.unwrap();
    let unlock = t.elapsed();
    let mut times = Vec::new();
    for i in 0..200 {
        let edit = PlanEdit::UpsertNode {
            name: format!("extra-{i:04}"),
            node: new_node(i, "fleet"),
        };
        let t = Instant::now();
        engine.edit_plan(edit).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "engine edit_plan into {n} nodes: median {:.2} ms, p99 {:.2} ms (unlock took {:.0} ms)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(unlock)
    );
    let t = Instant::now();
    engine.logout().await.unwrap();
    println!("  logout (final save) {:.0} ms", ms(t.elapsed()));
}

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

fn bench_daemon_edits(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PW}\n")).unwrap();
    ok(legion(&home, &pw).args(["config", "init"]));
    ok(legion(&home, &pw).args(["provider", "configure", "mock", "--latency-ms", "0"]));
    let out = ok(legion(&home, &pw).args(["daemon", "start"]));
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
        .unwrap()
        .to_string();
    let socket = home.join("daemon").join("legion.sock");
    let s = UnixStream::connect(&socket).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    let mut times = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let req = serde_json::json!({
            "id": i,
            "token": token,
            "method": "upsert_node",
            "params": {"request": {
                "name": common::node_name(i),
                "provider": "mock",
                "cluster": common::cluster_name(i / 100),
                "region": "sim-east",
                "offer": "sim-small",
                "image": "debian-12",
            }},
        });
        let t = Instant::now();
        writeln!(w, "{req}").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("\"result\""), "{line}");
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    let tenth = (n / 10).max(1);
    let mean = |s: &[Duration]| ms(s.iter().sum::<Duration>()) / s.len() as f64;
    println!(
        "{n} sequential upsert_node through the daemon: {:.1} s total ({:.2} ms/edit); first tenth {:.2} ms/edit, last tenth {:.2} ms/edit",
        total.as_secs_f64(),
        ms(total) / n as f64,
        mean(&times[..tenth]),
        mean(&times[n - tenth..])
    );
    let state_len = std::fs::metadata(home.join("state.legion"))
        .map(|m| m.len())
        .unwrap_or(0);
    let journal_len = std::fs::metadata(home.join("state.legion.journal"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("  on disk: state.legion {state_len} bytes, journal {journal_len} bytes");
    ok(legion(&home, &pw)
        .env("LEGION_DAEMON_TOKEN", &token)
        .args(["daemon", "stop"]));
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` only checks that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let quick = std::env::var("LEGION_BENCH_SCALE").is_ok_and(|v| v == "quick");
    for (n, cluster) in [(1000, 100), (10_000, 100), (1000, 1000), (2000, 2000)] {
        bench_size_and_save(n, cluster);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in [1000, 10_000] {
        rt.block_on(bench_engine_edit(n));
    }
    bench_daemon_edits(1000);
    if !quick {
        bench_daemon_edits(10_000);
    }
}
