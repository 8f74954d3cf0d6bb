//! Apply of 100 nodes on every real cloud Legion has (Hetzner, Scaleway, OVHcloud), each
//! against its local fake API with 100 ms latency per request and the fake's default rate
//! limit, against the ideal: every request the fake received, times the latency, over the
//! lane's concurrency.
//!
//! The deployment phases over SSH are answered at once by a stand-in agent, so the figure
//! is the provider side of an apply (creates, action polling, key upload, firewalls).
//!
//! `cargo bench --bench clouds` runs every cloud one after the other, each with its own
//! engine; `cargo bench --bench clouds -- hetzner,ovh` or `LEGION_BENCH_CLOUDS=hetzner,ovh`
//! picks some. `LEGION_BENCH_NODES` (or the older `LEGION_BENCH_HETZNER_NODES`) changes
//! the size; `LEGION_BENCH_TRACE=1` prints the operation log after each apply.

#![allow(clippy::unwrap_used)]

use legion_testkit::hetzner as hetzner_fake;
use legion_testkit::http::Controls;
use legion_testkit::ovh as ovh_fake;
use legion_testkit::scaleway as scaleway_fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use legion::core::secret::Secret;
use legion::engine::Timings;
use legion::engine::plan::NodeRequest;
use legion::engine::snapshot::ApplyView;
use legion::engine::state::crypto::KdfParams;
use legion::engine::{Engine, EngineConfig};
use legion::providers::hetzner::{self, HetznerModule};
use legion::providers::ovh::{self, OvhModule};
use legion::providers::scaleway::{self, ScalewayModule};
use legion::providers::{
    AgentError, CatalogPolicy, ComputeApi, ConnectCtx, Credentials, DeploymentProfile, Descriptor,
    DnsApi, DomainApi, Env, FirewallApi, HealthReading, NodeAgent, NodeConfig, NodeTarget,
    ProviderApi, ProviderModule, ProviderResult, Registry, SshKeyApi,
};

const LATENCY: Duration = Duration::from_millis(100);
/// The first interval between polls of an action, operation or status, in milliseconds.
const POLL_MS: &str = "250";

/// What the shared apply needs of a running fake.
trait Fake {
    fn base_url(&self) -> String;
    fn set_latency(&self, latency: Duration);
    fn clear_requests(&self);
    /// The method and path (without the API version) of every request received.
    fn recorded(&self) -> Vec<(String, String)>;
}

macro_rules! fake {
    ($($fake:ty),*) => {$(
        impl Fake for $fake {
            fn base_url(&self) -> String {
                <$fake>::base_url(self)
            }
            fn set_latency(&self, latency: Duration) {
                Controls::set_latency(self, latency)
            }
            fn clear_requests(&self) {
                Controls::clear_requests(self)
            }
            fn recorded(&self) -> Vec<(String, String)> {
                self.requests().into_iter().map(|r| (r.method, r.path)).collect()
            }
        }
    )*};
}

fake!(
    hetzner_fake::HetznerFake,
    scaleway_fake::ScalewayFake,
    ovh_fake::OvhFake
);

/// One cloud: its module, its running fake, and how Legion reaches the fake.
struct Cloud {
    module: Arc<dyn ProviderModule>,
    fake: Box<dyn Fake>,
    /// The base URL and poll interval variables.
    env: Env,
    credentials: Vec<(&'static str, String)>,
    /// The path of a server create (`POST`), as the fake records it.
    create: String,
}

impl Cloud {
    /// `vars`: the variables of the base URL and of the first poll interval.
    fn new(
        module: impl ProviderModule + 'static,
        vars: [&str; 2],
        credentials: Vec<(&'static str, String)>,
        create: impl Into<String>,
        fake: impl Fake + 'static,
    ) -> Cloud {
        Cloud {
            module: Arc::new(module),
            env: Env::default()
                .with(vars[0], &fake.base_url())
                .with(vars[1], POLL_MS),
            credentials,
            create: create.into(),
            fake: Box::new(fake),
        }
    }
}

fn hetzner() -> Cloud {
    let fake = hetzner_fake::HetznerFake::start();
    let credentials = vec![(hetzner::TOKEN_FIELD, fake.token())];
    let vars = [hetzner::API_URL_VAR, hetzner::ACTION_POLL_VAR];
    Cloud::new(HetznerModule, vars, credentials, "/servers", fake)
}

fn scaleway() -> Cloud {
    let fake = scaleway_fake::ScalewayFake::start();
    let credentials = vec![
        (scaleway::SECRET_KEY_FIELD, fake.secret_key()),
        (scaleway::PROJECT_FIELD, fake.project().into()),
    ];
    let vars = [scaleway::API_URL_VAR, scaleway::ACTION_POLL_VAR];
    let create = format!("/instance/v1/zones/{}/servers", scaleway::DEFAULT_ZONE);
    Cloud::new(ScalewayModule, vars, credentials, create, fake)
}

fn ovh() -> Cloud {
    let fake = ovh_fake::OvhFake::start();
    let credentials = [
        (ovh::ENDPOINT_FIELD, "ovh-eu"),
        (ovh::APPLICATION_KEY_FIELD, ovh_fake::APPLICATION_KEY),
        (ovh::APPLICATION_SECRET_FIELD, ovh_fake::APPLICATION_SECRET),
        (ovh::CONSUMER_KEY_FIELD, ovh_fake::CONSUMER_KEY),
        (ovh::PROJECT_FIELD, ovh_fake::PROJECT),
    ];
    let credentials = credentials.map(|(k, v)| (k, v.to_string())).to_vec();
    let create = format!("{}/instance", fake.project_path());
    let vars = [ovh::API_URL_VAR, ovh::POLL_VAR];
    Cloud::new(OvhModule, vars, credentials, create, fake)
}

type Start = fn() -> Cloud;

/// Every cloud by its provider kind, in the order they run.
const CLOUDS: [(&str, Start); 3] = [
    (hetzner::KIND, hetzner),
    (scaleway::KIND, scaleway),
    (ovh::KIND, ovh),
];

/// A cloud's module, with node phases answered at once.
struct Module(Arc<dyn ProviderModule>);
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
    async fn wait_reachable(&self, _: &NodeTarget) -> Result<(), AgentError> {
        Ok(())
    }
    async fn configure(&self, _: &NodeTarget, _: &NodeConfig) -> Result<(), AgentError> {
        Ok(())
    }
    async fn install(&self, _: &NodeTarget, _: &str) -> Result<(), AgentError> {
        Ok(())
    }
    async fn readiness(&self, _: &NodeTarget) -> Result<(), AgentError> {
        Ok(())
    }
    async fn health(&self, _: &NodeTarget) -> HealthReading {
        HealthReading::Healthy
    }
}

async fn bench(cloud: Cloud, nodes: usize) {
    cloud.fake.set_latency(LATENCY);
    let kind = cloud.module.kind();
    let descriptor = cloud.module.descriptor();
    let concurrency = descriptor.concurrency;
    // "Hetzner" of "Hetzner Cloud", "OVHcloud" of "OVHcloud Public Cloud".
    let display = descriptor.display_name.split(' ').next().unwrap_or(kind);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::start(EngineConfig {
        home: dir.path().join("home"),
        registry: Registry::new(vec![Arc::new(Module(cloud.module))]),
        env: cloud.env,
        timings: Timings::default(),
        kdf: KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        },
        ssh_endpoints: None,
    });
    engine.init(Secret::new("bench")).await.unwrap();
    let creds: Credentials = cloud
        .credentials
        .into_iter()
        .map(|(field, value)| (field.to_string(), Secret::new(value)))
        .collect();
    engine.configure_provider(kind.into(), creds).await.unwrap();
    // Plan with the catalog's defaults (the catalog read happens before the clock).
    engine.catalog(kind.into()).await.unwrap();
    for i in 0..nodes {
        engine
            .upsert_node(NodeRequest {
                name: format!("{kind}-{i:03}"),
                provider: kind.into(),
                cluster: Some("fleet".into()),
                ..NodeRequest::default()
            })
            .await
            .unwrap();
    }
    cloud.fake.clear_requests();
    let start = Instant::now();
    let id = engine.apply().await.unwrap();
    let snap = engine.wait_apply(id).await.unwrap();
    let wall = start.elapsed();
    let requests = cloud.fake.recorded();
    let writes = requests.iter().filter(|(m, _)| m != "GET").count();
    let creates = requests
        .iter()
        .filter(|(m, p)| m == "POST" && *p == cloud.create)
        .count();
    let ideal = LATENCY * requests.len() as u32 / concurrency as u32;
    let ok = matches!(snap.apply, ApplyView::Finished { ok: true, .. });
    println!(
        "apply of {nodes} {display} nodes against the fake at {} ms latency: {:.2} s wall, ideal {:.2} s ({} requests, {writes} writes, / concurrency {concurrency}); ratio {:.2}; creates {creates}; converged: {ok}",
        LATENCY.as_millis(),
        wall.as_secs_f64(),
        ideal.as_secs_f64(),
        requests.len(),
        wall.as_secs_f64() / ideal.as_secs_f64(),
    );
    // One observation round (what `ctrl-r` and `legion refresh` run; the engine runs one
    // every 30 s when idle), the fleet in place: median of 5.
    let mut rounds = Vec::new();
    for _ in 0..5 {
        cloud.fake.clear_requests();
        let start = Instant::now();
        engine.refresh().await.unwrap();
        rounds.push((start.elapsed(), cloud.fake.recorded().len()));
    }
    rounds.sort();
    let (round, round_requests) = rounds[rounds.len() / 2];
    println!(
        "refresh of {nodes} {display} nodes (one observation round), median of 5: {:.2} s, {round_requests} {} (one after another: {:.2} s)",
        round.as_secs_f64(),
        if round_requests == 1 {
            "request"
        } else {
            "requests"
        },
        (LATENCY * round_requests as u32).as_secs_f64(),
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
    let nodes = ["LEGION_BENCH_NODES", "LEGION_BENCH_HETZNER_NODES"]
        .iter()
        .find_map(|var| std::env::var(var).ok()?.parse().ok())
        .unwrap_or(100);
    // `-- hetzner,ovh` (cargo passes `--bench` too), else `LEGION_BENCH_CLOUDS`, else all.
    let selection = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect::<Vec<_>>()
        .join(",");
    let selection = match selection.is_empty() {
        true => std::env::var("LEGION_BENCH_CLOUDS").unwrap_or_default(),
        false => selection,
    };
    let wanted: Vec<&str> = selection
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let known: Vec<&str> = CLOUDS.iter().map(|(kind, _)| *kind).collect();
    if let Some(unknown) = wanted.iter().find(|w| !known.contains(w)) {
        eprintln!("unknown cloud {unknown:?}: one of {}", known.join(", "));
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (kind, start) in CLOUDS {
        if wanted.is_empty() || wanted.contains(&kind) {
            runtime.block_on(bench(start(), nodes));
        }
    }
}
