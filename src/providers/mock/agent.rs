//! The simulated node agent: the post-provisioning phases and health checks of a
//! simulated server, answered from the [`MockCloud`]'s state instead of over SSH.
//!
//! A phase succeeds when the server exists and runs, unless a test or the demo injected
//! an unreachable health reading or a phase failure (`MockCloud::fail_phase`). These are
//! not provider API calls: they do not go through the broker lane and are not recorded
//! in `MockCloud::calls`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::cloud::MockCloud;
use crate::providers::{
    AgentError, HealthReading, NodeAgent, NodeConfig, NodeTarget, ServerStatus,
};

/// `wait_reachable` looks this many times before giving up.
const REACH_ATTEMPTS: u32 = 10;
const REACH_POLL: Duration = Duration::from_millis(500);

pub struct MockAgent {
    cloud: Arc<MockCloud>,
}

impl MockAgent {
    pub fn new(cloud: Arc<MockCloud>) -> MockAgent {
        MockAgent { cloud }
    }

    /// Why the node cannot be reached now, if it cannot.
    fn blocker(&self, node: &NodeTarget) -> Option<String> {
        match self.cloud.server(&node.server_id) {
            None => Some("server not found".into()),
            Some(s) if s.status != ServerStatus::Running => {
                Some(format!("server is not running (status: {})", s.status))
            }
            Some(_) => match self.cloud.injected_health(&node.server_id) {
                Some(HealthReading::Unreachable(why)) => Some(why),
                _ => None,
            },
        }
    }

    async fn phase(&self, node: &NodeTarget, phase: &str, weight: u32) -> Result<(), AgentError> {
        tokio::time::sleep(self.cloud.latency() * weight).await;
        if self.cloud.take_phase_fault(&node.server_id, phase) {
            return Err(AgentError::Failed(format!("simulated failure in {phase}")));
        }
        match self.blocker(node) {
            Some(why) => Err(AgentError::Unreachable(why)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl NodeAgent for MockAgent {
    /// Simulated servers live on this machine: they see Legion from loopback.
    fn client_address(&self) -> Option<String> {
        Some("127.0.0.1".into())
    }

    async fn wait_reachable(&self, node: &NodeTarget) -> Result<(), AgentError> {
        let mut last = String::new();
        for attempt in 0..REACH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(REACH_POLL).await;
            }
            if self.cloud.take_phase_fault(&node.server_id, "reachable") {
                return Err(AgentError::Failed("simulated failure in reachable".into()));
            }
            match self.blocker(node) {
                None => return Ok(()),
                Some(why) => last = why,
            }
        }
        Err(AgentError::Unreachable(last))
    }

    async fn configure(&self, node: &NodeTarget, _config: &NodeConfig) -> Result<(), AgentError> {
        self.phase(node, "configure", 2).await
    }

    async fn install(&self, node: &NodeTarget, _role: &str) -> Result<(), AgentError> {
        self.phase(node, "install", 1).await
    }

    async fn readiness(&self, node: &NodeTarget) -> Result<(), AgentError> {
        self.phase(node, "readiness", 1).await
    }

    async fn health(&self, node: &NodeTarget) -> HealthReading {
        tokio::time::sleep(self.cloud.latency()).await;
        if let Some(reading) = self.cloud.injected_health(&node.server_id) {
            return reading;
        }
        match self.cloud.server(&node.server_id) {
            None => HealthReading::Unreachable("server not found".into()),
            Some(s) if s.status == ServerStatus::Running => HealthReading::Healthy,
            Some(s) if s.status == ServerStatus::Off => {
                HealthReading::Unreachable("server is off".into())
            }
            Some(s) => HealthReading::Unreachable(format!("server is {}", s.status)),
        }
    }
}
