//! Engine figures, printed as plain lines:
//! - `AppSnapshot` assembly for 10,000 nodes (median and p99);
//! - a burst of 10,000 actor snapshot changes: how many publications it caused;
//! - apply of 1,000 nodes on the simulated cloud with 50 ms latency, against the ideal
//!   (latency units of the provider calls x latency / lane concurrency).
//!
//! `cargo bench --bench engine` (set `LEGION_BENCH_APPLY_NODES` to change the apply size)

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legion::core::oplog::OpLog;
use legion::core::secret::Secret;
use legion::engine::Timings;
use legion::engine::internals::{ActorEnv, Board, ProviderSet, StateCell, Supervisor};
use legion::engine::plan::NodeRequest;
use legion::engine::snapshot::{AppSnapshot, ApplyView, LockState, assemble};
use legion::engine::snapshot::{Machine, NodeSnap, ResourceKey, Snap, System};
use legion::engine::state::crypto::KdfParams;
use legion::engine::state::store::StateFile;
use legion::engine::{Engine, EngineConfig};
use legion::providers::mock::{MockCloud, MockModule};
use legion::providers::{Credentials, Env, Registry};
use tokio::sync::watch;

const FAST: KdfParams = KdfParams {
    m_cost_kib: 1024,
    t_cost: 1,
    p_cost: 1,
};

fn node_snap(i: u64) -> NodeSnap {
    NodeSnap {
        machine: Machine::Running,
        system: System::Ready,
        health: None,
        operation: i.is_multiple_of(7).then(|| "reboot".to_string()),
        last_error: None,
        error_class: None,
        synced_apply: i,
        ops_started: i,
        ops_finished: i,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn bench_assembly() {
    let n = 10_000;
    let state = common::state_with_nodes(n);
    let mut board = HashMap::new();
    for i in 0..n {
        board.insert(
            ResourceKey::Node(common::node_name(i)),
            Snap::Node(Arc::new(node_snap(i as u64))),
        );
    }
    let mut times = Vec::new();
    for seq in 0..60 {
        let t = Instant::now();
        let snap = assemble(seq, "home".into(), &state, &board, vec![], ApplyView::Idle);
        times.push(t.elapsed());
        assert_eq!(snap.nodes.len(), n);
    }
    times.sort();
    println!(
        "snapshot assembly, 10,000 nodes: median {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

async fn bench_burst() {
    let n = 10_000usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::state_with_nodes(n);
    let file = StateFile::in_home(dir.path());
    let bytes = serde_json::to_vec(&state).expect("serialize");
    let key = file.create(b"bench", FAST, &bytes).expect("create");
    let cell = StateCell::start(state, file, key);
    let oplog = OpLog::default();
    let board = Arc::new(Board::new(oplog.clone()));
    let env = Arc::new(ActorEnv {
        cell,
        providers: Arc::new(ProviderSet::default()),
        board: board.clone(),
        oplog,
        timings: Timings::default(),
        install_id: "bench".into(),
        ssh: None,
        ssh_behind_own_agents: false,
    });
    let sup = Arc::new(Supervisor::new(env));
    let (tx, mut rx) = watch::channel(Arc::new(AppSnapshot::empty(
        "home".into(),
        LockState::Unlocked,
    )));
    let publisher = sup.spawn_publisher("home".into(), tx, Arc::new(Mutex::new(ApplyView::Idle)));
    let counter = tokio::spawn(async move {
        let mut publications = 0u64;
        let mut last = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(500), rx.changed()).await {
                Ok(Ok(())) => {
                    publications += 1;
                    last = Instant::now();
                    rx.borrow_and_update();
                }
                _ => return (publications, last),
            }
        }
    });
    let start = Instant::now();
    let mut writers = Vec::new();
    for w in 0..10u64 {
        let board = board.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..1000u64 {
                let idx = w * 1000 + i;
                board.put(
                    ResourceKey::Node(common::node_name(idx as usize)),
                    Snap::Node(Arc::new(node_snap(idx + 1))),
                );
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let put_done = start.elapsed();
    let (publications, last) = counter.await.expect("counter");
    println!(
        "burst of 10,000 actor changes from 10 tasks: {publications} snapshot publication(s); puts took {:.1} ms, last publication {:.1} ms after the first change",
        put_done.as_secs_f64() * 1e3,
        last.duration_since(start).as_secs_f64() * 1e3
    );
    publisher.abort();
}

async fn bench_apply(nodes: usize) {
    let latency = Duration::from_millis(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let cloud = MockCloud::new(1);
    cloud.set_latency(latency);
    let module = Arc::new(MockModule::with_cloud(cloud.clone()));
    let concurrency = legion::providers::ProviderModule::descriptor(module.as_ref()).concurrency;
    let engine = Engine::start(EngineConfig {
        home: dir.path().join("home"),
        registry: Registry::new(vec![module]),
        env: Env::default().with("LEGION_MOCK_NETWORK", "1"),
        timings: Timings::default(),
        kdf: FAST,
        ssh_endpoints: None,
    });
    engine.init(Secret::new("bench")).await.expect("init");
    let mut creds = Credentials::new();
    creds.insert("latency_ms".into(), latency.as_millis().to_string().into());
    engine
        .configure_provider("mock".into(), creds)
        .await
        .expect("configure");
    for i in 0..nodes {
        engine
            .upsert_node(NodeRequest {
                name: common::node_name(i),
                provider: "mock".into(),
                cluster: Some("fleet".into()),
                region: Some(
                    if i.is_multiple_of(2) {
                        "sim-east"
                    } else {
                        "sim-west"
                    }
                    .into(),
                ),
                ..NodeRequest::default()
            })
            .await
            .expect("plan");
    }
    let calls_before = cloud.calls().len();
    let start = Instant::now();
    let id = engine.apply().await.expect("apply");
    let snap = engine.wait_apply(id).await.expect("wait");
    let wall = start.elapsed();
    let calls: Vec<_> = cloud.calls().into_iter().skip(calls_before).collect();
    // The simulated cloud takes 3 latencies to create a server, 2 to reset one, 1 else.
    let units: u32 = calls
        .iter()
        .map(|(m, p)| match (m.as_str(), p.as_str()) {
            ("POST", "/servers") => 3,
            (_, p) if p.contains("rebuild") => 2,
            _ => 1,
        })
        .sum();
    let ideal = latency * units / concurrency as u32;
    let ok = matches!(snap.apply, ApplyView::Finished { ok: true, .. });
    println!(
        "apply of {nodes} nodes at {} ms latency: {:.2} s wall, ideal {:.2} s ({} provider calls, {units} latency units / concurrency {concurrency}); ratio {:.2}; converged: {ok}",
        latency.as_millis(),
        wall.as_secs_f64(),
        ideal.as_secs_f64(),
        calls.len(),
        wall.as_secs_f64() / ideal.as_secs_f64()
    );
    engine.logout().await.expect("logout");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and only
    // checks that this builds and starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    bench_assembly();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench_burst());
    let nodes = std::env::var("LEGION_BENCH_APPLY_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    rt.block_on(bench_apply(nodes));
}
