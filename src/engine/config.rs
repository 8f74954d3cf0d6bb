//! How an engine is set up: its home, providers, environment, timings and key derivation.

use std::path::PathBuf;
use std::sync::Arc;

use super::actors::Timings;
use super::state::crypto::KdfParams;
use crate::providers::{Env, Registry};

/// How an engine is set up; tests inject the registry, environment and timings.
#[derive(Clone)]
pub struct EngineConfig {
    pub home: PathBuf,
    pub registry: Registry,
    pub env: Env,
    pub timings: Timings,
    pub kdf: KdfParams,
    /// Where nodes' sshds are when not at their provider addresses (one local sshd per
    /// simulated node, for instance); `None`: at those addresses.
    pub ssh_endpoints: Option<Arc<dyn crate::ssh::NodeEndpoints>>,
}

impl EngineConfig {
    pub fn new(home: PathBuf) -> EngineConfig {
        EngineConfig {
            home,
            registry: Registry::builtin(),
            env: Env::from_process(),
            timings: Timings::default(),
            kdf: KdfParams::DEFAULT,
            ssh_endpoints: None,
        }
    }
}
