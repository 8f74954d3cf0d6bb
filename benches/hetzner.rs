//! Apply of 100 Hetzner nodes against the local fake API with 100 ms latency per request
//! and the default rate limit (3,600 requests/hour budget, refilled 1/s), against the
//! ideal: every request the fake received, times the latency, over the lane's concurrency.
//!
//! The deployment phases over SSH are answered at once by a stand-in agent, so the figure
//! is the provider side of an apply (creates, action polling, key upload, firewalls).
//!
//! `cargo bench --bench hetzner` (`LEGION_BENCH_HETZNER_NODES` changes the size)

#![allow(clippy::unwrap_used)]

#[path = "../tests/fakes/hetzner.rs"]
mod hetzner_fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use legion::engine::actors::Timings;
use legion::engine::plan::NodeRequest;
use legion::engine::secret::Secret;
use legion::engine::snapshot::ApplyView;
use legion::engine::state::crypto::KdfParams;
use legion::engine::{Engine, EngineConfig};
use legion::providers::hetzner::HetznerModule;
use legion::providers::{
    CatalogPolicy, ComputeApi, ConnectCtx, Credentials, DeploymentProfile, Descriptor, DnsApi,
    DomainApi, Env, FirewallApi, HealthReading, NodeAgent, NodeConfig, NodeTarget, ProviderApi,
    ProviderModule, ProviderResult, Registry, SshKeyApi,
};

/// Hetzner, with node phases answered at once.
struct Module(HetznerModule);
struct Api(Arc<dyn ProviderApi>);
struct Instant0;

impl ProviderModule for Module {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn descriptor(&self) -> Descriptor {
        self.0.descriptor()
    }
    fn catalog_policy(&self) -> CatalogPolicy {
        self.0.catalog_policy()
    }
    fn deployment_profile(&self) -> DeploymentProfile {
        self.0.deployment_profile()
    }
    fn connect(&self, ctx: ConnectCtx) -> ProviderResult<Arc<dyn ProviderApi>> {
        Ok(Arc::new(Api(self.0.connect(ctx)?)))
    }
}

#[async_trait]
impl ProviderApi for Api {
    async fn verify(&self) -> ProviderResult<()> {
        self.0.verify().await
    }
    fn compute(&self) -> Option<&dyn ComputeApi> {
        self.0.compute()
    }
    fn dns(&self) -> Option<&dyn DnsApi> {
        self.0.dns()
    }
    fn firewall(&self) -> Option<&dyn FirewallApi> {
        self.0.firewall()
    }
    fn ssh_keys(&self) -> Option<&dyn SshKeyApi> {
        self.0.ssh_keys()
    }
    fn domains(&self) -> Option<&dyn DomainApi> {
        self.0.domains()
    }
    fn node_agent(&self) -> Option<Arc<dyn NodeAgent>> {
        Some(Arc::new(Instant0))
    }
}

#[async_trait]
impl NodeAgent for Instant0 {
    async fn wait_reachable(&self, _: &NodeTarget) -> Result<(), String> {
        Ok(())
    }
    async fn configure(&self, _: &NodeTarget, _: &NodeConfig) -> Result<(), String> {
        Ok(())
    }
    async fn install(&self, _: &NodeTarget, _: &str) -> Result<(), String> {
        Ok(())
    }
    async fn readiness(&self, _: &NodeTarget) -> Result<(), String> {
        Ok(())
    }
    async fn health(&self, _: &NodeTarget) -> HealthReading {
        HealthReading::Healthy
    }
}

async fn bench(nodes: usize) {
    let latency = Duration::from_millis(100);
    let fake = hetzner_fake::HetznerFake::start();
    fake.set_latency(latency);
    let dir = tempfile::tempdir().unwrap();
    let module = Arc::new(Module(HetznerModule));
    let concurrency = module.descriptor().concurrency;
    let engine = Engine::start(EngineConfig {
        home: dir.path().join("home"),
        registry: Registry::new(vec![module]),
        env: Env::default()
            .with("LEGION_HETZNER_API_URL", &fake.base_url())
            .with("LEGION_HETZNER_ACTION_POLL_MS", "250"),
        timings: Timings::default(),
        kdf: KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        },
        sandboxes: None,
    });
    engine.init(Secret::new("bench")).await.unwrap();
    let mut creds = Credentials::new();
    creds.insert("token".into(), Secret::new(fake.token()));
    engine
        .configure_provider("hetzner".into(), creds)
        .await
        .unwrap();
    // Plan with the catalog's defaults (the catalog read happens before the clock).
    engine.catalog("hetzner".into()).await.unwrap();
    for i in 0..nodes {
        engine
            .upsert_node(NodeRequest {
                name: format!("hz-{i:03}"),
                provider: "hetzner".into(),
                cluster: Some("fleet".into()),
                ..NodeRequest::default()
            })
            .await
            .unwrap();
    }
    fake.clear_requests();
    let start = Instant::now();
    let id = engine.apply().await.unwrap();
    let snap = engine.wait_apply(id).await.unwrap();
    let wall = start.elapsed();
    let requests = fake.requests();
    let writes = requests.iter().filter(|r| r.method != "GET").count();
    let ideal = latency * requests.len() as u32 / concurrency as u32;
    let ok = matches!(snap.apply, ApplyView::Finished { ok: true, .. });
    println!(
        "apply of {nodes} Hetzner nodes against the fake at {} ms latency: {:.2} s wall, ideal {:.2} s ({} requests, {writes} writes, / concurrency {concurrency}); ratio {:.2}; creates {}; converged: {ok}",
        latency.as_millis(),
        wall.as_secs_f64(),
        ideal.as_secs_f64(),
        requests.len(),
        wall.as_secs_f64() / ideal.as_secs_f64(),
        fake.request_count("POST", "/servers"),
    );
    if std::env::var("LEGION_BENCH_TRACE").is_ok() {
        let log = engine.oplog().recent(10_000, None);
        let t0 = log.first().map_or(0, |e| e.ts_ms);
        for e in log.iter().filter(|e| e.ts_ms > 0) {
            eprintln!(
                "{:>6} {} {}",
                e.ts_ms - t0,
                e.resource.clone().unwrap_or_default(),
                e.message
            );
        }
    }
    engine.logout().await.unwrap();
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let nodes = std::env::var("LEGION_BENCH_HETZNER_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(nodes));
}
