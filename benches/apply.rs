//! Apply at scale (issue 16), in process (an `Engine`, no daemon), on the simulated cloud
//! at latency 0, so every second is Legion's own overhead. Printed as plain lines:
//! - apply of N nodes in clusters of 100 (1k and 10k) and of 1k nodes in one cluster, from
//!   a plan with nothing created yet to `Finished { ok: true }`: time to converged, nodes/s,
//!   CPU-ms per node (this process: the engine and the simulated cloud it talks to), peak
//!   RSS;
//! - the idle cost of the unlocked engine after that apply: CPU-s and wake-ups (voluntary
//!   context switches of every thread) per minute, over `LEGION_BENCH_IDLE_S` seconds
//!   (default 60).
//!
//! `cargo bench --bench apply` (`LEGION_BENCH_SCALE=quick`: 1k only; `=10k`: 10k only)

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use legion::core::secret::Secret;
use legion::engine::Timings;
use legion::engine::snapshot::ApplyView;
use legion::engine::state::crypto::KdfParams;
use legion::engine::state::store::StateFile;
use legion::engine::{Engine, EngineConfig};
use legion::providers::Credentials;
use legion::providers::mock::{MockCloud, MockModule};
use legion::providers::{Env, Registry};

const FAST: KdfParams = KdfParams {
    m_cost_kib: 1024,
    t_cost: 1,
    p_cost: 1,
};
const PW: &str = "bench password";

/// CPU time of this process (user + system), from /proc (clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn status_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Voluntary context switches of every thread: how often a thread went to sleep and
/// was woken again.
fn wakeups() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(s) = std::fs::read_to_string(task.path().join("status")) {
            total += status_field(&s, "voluntary_ctxt_switches:");
        }
    }
    total
}

/// Peak resident set of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    status_field(&s, "VmHWM:") as f64 / 1024.0
}

/// A home with the mock provider at latency 0 and a plan of `n` nodes in clusters of
/// `cluster`: made through the engine (init, configure), then the plan written into the
/// state file directly (10k plan edits would measure the edits, not the apply).
async fn home_with_plan(home: &Path, n: usize, cluster: usize) {
    let engine = start(home, MockCloud::new(1));
    engine.init(Secret::new(PW)).await.unwrap();
    let mut creds = Credentials::new();
    creds.insert("latency_ms".into(), "0".to_string().into());
    engine
        .configure_provider("mock".into(), creds)
        .await
        .unwrap();
    engine.logout().await.unwrap();
    drop(engine);
    let file = StateFile::in_home(home);
    let (key, bytes) = file.open(PW.as_bytes()).unwrap();
    let mut state: legion::engine::state::model::State = serde_json::from_slice(&bytes).unwrap();
    state.plan = common::planned_fleet(n, cluster);
    file.save(&key, &serde_json::to_vec(&state).unwrap())
        .unwrap();
}

fn start(home: &Path, cloud: Arc<MockCloud>) -> Engine {
    cloud.set_latency(Duration::ZERO);
    Engine::start(EngineConfig {
        home: home.to_path_buf(),
        registry: Registry::new(vec![Arc::new(MockModule::with_cloud(cloud))]),
        env: Env::default().with("LEGION_MOCK_NETWORK", "1"),
        timings: Timings::default(),
        kdf: FAST,
        ssh_endpoints: None,
    })
}

async fn bench_apply(n: usize, cluster: usize, idle: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    home_with_plan(&home, n, cluster).await;
    let engine = start(&home, MockCloud::new(1));
    let t = Instant::now();
    engine.unlock(Secret::new(PW)).await.unwrap();
    let unlock = t.elapsed();
    let (cpu0, wake0, start) = (cpu(), wakeups(), Instant::now());
    let id = engine.apply().await.unwrap();
    let snap = engine.wait_apply(id).await.unwrap();
    let wall = start.elapsed();
    let used = cpu() - cpu0;
    let woke = wakeups() - wake0;
    let converged = match &snap.apply {
        ApplyView::Finished {
            ok,
            failed,
            waiting,
            ..
        } => {
            if !ok {
                println!(
                    "  not converged: {} failed, {} waiting; first: {:?} {:?}",
                    failed.len(),
                    waiting.len(),
                    failed.first(),
                    waiting.first()
                );
            }
            *ok
        }
        _ => false,
    };
    println!(
        "apply of {n} nodes in clusters of {cluster}: {:.1} s to {}, {:.1} nodes/s, {:.2} CPU-ms/node ({:.1} CPU-s), {woke} wake-ups, peak RSS {:.0} MiB (unlock {:.0} ms)",
        wall.as_secs_f64(),
        if converged {
            "converged"
        } else {
            "finished NOT converged"
        },
        n as f64 / wall.as_secs_f64(),
        used.as_secs_f64() * 1e3 / n as f64,
        used.as_secs_f64(),
        peak_rss_mib(),
        unlock.as_secs_f64() * 1e3
    );
    // Let the end of the apply (its last publication, the journal) settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, wake0) = (cpu(), wakeups());
    tokio::time::sleep(idle).await;
    let per_min = 60.0 / idle.as_secs_f64();
    println!(
        "  idle, unlocked, {n} nodes, over {} s: {:.3} CPU-s/min, {:.0} wake-ups/min",
        idle.as_secs(),
        (cpu() - cpu0).as_secs_f64() * per_min,
        (wakeups() - wake0) as f64 * per_min
    );
    let t = Instant::now();
    engine.logout().await.unwrap();
    println!("  logout {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` only checks that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let scale = std::env::var("LEGION_BENCH_SCALE").unwrap_or_default();
    let idle = Duration::from_secs(
        std::env::var("LEGION_BENCH_IDLE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs: &[(usize, usize)] = match scale.as_str() {
        "quick" => &[(1000, 100), (1000, 1000)],
        "10k" => &[(10_000, 100)],
        _ => &[(1000, 100), (1000, 1000), (10_000, 100)],
    };
    for &(n, cluster) in runs {
        rt.block_on(bench_apply(n, cluster, idle));
    }
}
