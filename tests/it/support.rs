//! Shared test harness: an engine on a temporary Legion home with the simulated cloud
//! injected, so a test can cause out-of-band changes and count what the cloud received.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use legion::core::secret::Secret;
use legion::engine::Timings;
use legion::engine::plan::NodeRequest;
use legion::engine::snapshot::{AppSnapshot, ApplyView, NodeRow};
use legion::engine::state::crypto::KdfParams;
use legion::engine::{Engine, EngineConfig};
use legion::providers::mock::{MockCloud, MockModule};
use legion::providers::{Credentials, Env, Registry};

pub const PASSWORD: &str = "correct horse battery staple";

/// Small key-derivation settings: tests exercise the format, not the cost.
pub const TEST_KDF: KdfParams = KdfParams {
    m_cost_kib: 1024,
    t_cost: 1,
    p_cost: 1,
};

pub fn timings() -> Timings {
    Timings {
        observe_busy: Duration::from_secs(1),
        observe_idle: Duration::from_secs(5),
        observe_max_backoff: Duration::from_secs(60),
        catalog_refresh: Duration::from_secs(3600),
        coalesce: Duration::from_millis(10),
        reachable_timeout: Duration::from_secs(60),
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub cloud: Arc<MockCloud>,
    pub engine: Engine,
}

impl Harness {
    pub fn config(dir: &tempfile::TempDir, cloud: &Arc<MockCloud>) -> EngineConfig {
        EngineConfig {
            home: dir.path().join("home"),
            registry: Registry::new(vec![Arc::new(MockModule::with_cloud(cloud.clone()))]),
            env: Env::default().with("LEGION_MOCK_NETWORK", "1"),
            timings: timings(),
            kdf: TEST_KDF,
            ssh_endpoints: None,
        }
    }

    /// A fresh home, initialized and unlocked, with the simulated cloud configured.
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let cloud = MockCloud::new(7);
        cloud.set_latency(Duration::from_millis(50));
        let engine = Engine::start(Harness::config(&dir, &cloud));
        engine.init(Secret::new(PASSWORD)).await.unwrap();
        let mut creds = Credentials::new();
        creds.insert("latency_ms".into(), "50".into());
        engine
            .configure_provider("mock".into(), creds)
            .await
            .unwrap();
        Harness { dir, cloud, engine }
    }

    /// A second engine on the same home and cloud (a restarted Legion).
    pub fn restart(&self) -> Engine {
        Engine::start(Harness::config(&self.dir, &self.cloud))
    }

    pub async fn add_node(&self, name: &str, region: &str) {
        self.engine
            .upsert_node(NodeRequest {
                name: name.into(),
                provider: "mock".into(),
                cluster: Some("prod".into()),
                region: Some(region.into()),
                ..NodeRequest::default()
            })
            .await
            .unwrap();
    }

    pub async fn apply(&self) -> Arc<AppSnapshot> {
        let id = self.engine.apply().await.unwrap();
        self.engine.wait_apply(id).await.unwrap()
    }

    pub async fn node(&self, name: &str, pred: impl FnMut(&NodeRow) -> bool) -> NodeRow {
        let snap =
            tokio::time::timeout(Duration::from_secs(600), self.engine.wait_node(name, pred))
                .await
                .expect("node did not reach the expected state")
                .unwrap();
        snap.node(name).unwrap().clone()
    }

    pub async fn edit(&self, edit: legion::engine::plan::PlanEdit) {
        self.engine.edit_plan(edit).await.unwrap();
    }

    /// Plan a zone on the simulated cloud.
    pub async fn zone(&self, name: &str) {
        self.edit(legion::engine::plan::PlanEdit::UpsertZone {
            name: name.into(),
            provider: "mock".into(),
        })
        .await;
    }

    /// Plan cluster `prod` with every node's address published in `zone`.
    pub async fn cluster_zone(&self, zone: &str) {
        self.edit(legion::engine::plan::PlanEdit::UpsertCluster {
            name: "prod".into(),
            cluster: legion::engine::state::model::ClusterPlan {
                dns_zone: Some(zone.into()),
                peer_ports: vec![4413],
            },
        })
        .await;
        self.zone(zone).await;
    }

    /// An `A` record `name` in `zone` pointing at `node`'s address.
    pub async fn node_record(&self, zone: &str, name: &str, node: &str) {
        use legion::engine::state::model::{RecordPlan, RecordValue};
        self.edit(legion::engine::plan::PlanEdit::UpsertRecord {
            zone: zone.into(),
            record: RecordPlan {
                name: name.into(),
                rtype: legion::providers::RecordType::A,
                ttl: 60,
                value: RecordValue::NodeAddress(node.into()),
            },
        })
        .await;
    }

    /// Run a node action and wait for its operation to finish.
    pub async fn act(&self, name: &str, action: legion::engine::Action) -> NodeRow {
        let op = self.engine.node_action(name.into(), action).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(600),
            self.engine.wait_operation(name, op),
        )
        .await
        .expect("the operation did not finish")
        .unwrap()
    }

    /// Wait for a snapshot, failing the test (in virtual time) instead of hanging.
    pub async fn wait(&self, pred: impl FnMut(&AppSnapshot) -> bool) -> Arc<AppSnapshot> {
        tokio::time::timeout(Duration::from_secs(3600), self.engine.wait_for(pred))
            .await
            .expect("the snapshot never matched")
            .unwrap()
    }

    pub fn server_id(&self, name: &str) -> String {
        self.cloud.server_by_name(name).unwrap().id
    }
}

pub fn apply_ok(snap: &AppSnapshot) -> bool {
    matches!(&snap.apply, ApplyView::Finished { ok: true, .. })
}
