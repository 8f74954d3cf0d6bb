//! Provider modules and the contract between them and the engine.
//!
//! Each provider is one module implementing [`ProviderModule`]: its descriptor (what the
//! settings form and the CLI flags are made from), credential handling, catalog policy,
//! deployment profile, an `enabled` gate, and `connect`, which returns the adapter
//! surfaces ([`ProviderApi`]). The [`Registry`] is a plain list of modules and has no
//! provider-specific branches. Provider response shapes never leave a provider module.

// The contract's types, the lane and the errors leave the crate through the re-exports
// below; the adapters are public so tests can connect them to the cloud fakes.
pub(crate) mod broker;
pub(crate) mod error;
pub mod hetzner;
pub(crate) mod http;
pub(crate) mod manual;
pub mod mock;
pub mod ovh;
pub mod scaleway;
pub(crate) mod types;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use broker::{Lane, ProviderHealth, ProviderStatus, ProviderWait, WriteOp};
pub use error::{
    AgentError, CredentialError, ErrorClass, ErrorKind, ProviderError, ProviderResult,
};
pub use types::*;

use crate::core::secret::Secret;

/// Credential values by descriptor field id.
pub type Credentials = BTreeMap<String, Secret>;

/// The process environment as the engine saw it at start, injected so tests do not
/// depend on (or mutate) the real environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Env {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.is_empty() && v != "0")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialField {
    pub id: String,
    pub label: String,
    pub secret: bool,
    pub required: bool,
    /// Stable default environment variable (`HCLOUD_TOKEN`).
    pub env_var: Option<String>,
    pub default: Option<String>,
    pub help: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub compute: bool,
    pub dns: bool,
    pub firewall: bool,
    pub domains: bool,
    pub ssh_keys: bool,
    /// Reinstall can reset the server to a fresh provider image.
    pub image_reset: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    pub kind: String,
    pub display_name: String,
    pub credential_fields: Vec<CredentialField>,
    pub capabilities: Capabilities,
    /// Requests this provider's lane runs at once.
    pub concurrency: usize,
}

/// What `connect` gets: the provider's id and credentials, its broker lane (every call
/// goes through it), and the Legion home for providers that keep local files.
pub struct ConnectCtx {
    pub id: String,
    pub credentials: Credentials,
    pub lane: Arc<Lane>,
    pub home: PathBuf,
    pub env: Env,
}

pub trait ProviderModule: Send + Sync {
    fn kind(&self) -> &'static str;
    fn descriptor(&self) -> Descriptor;
    /// A disabled provider's configuration and resources are hidden, never deleted.
    fn enabled(&self, _env: &Env) -> bool {
        true
    }
    /// Trim, fill defaults, reject what cannot work; errors name the field. An override
    /// that validates values starts from [`normalize_fields`].
    fn normalize_credentials(&self, values: Credentials) -> Result<Credentials, CredentialError> {
        normalize_fields(&self.descriptor(), values)
    }
    fn is_configured(&self, creds: &Credentials) -> bool {
        self.descriptor()
            .credential_fields
            .iter()
            .filter(|f| f.required)
            .all(|f| creds.get(&f.id).is_some_and(|v| !v.is_empty()))
    }
    fn catalog_policy(&self) -> CatalogPolicy;
    fn deployment_profile(&self) -> DeploymentProfile;
    /// Who Legion logs in as on this provider's new servers: `root`, or the images'
    /// default user, who has passwordless sudo (cloud images such as OVHcloud's log in as
    /// `ubuntu`). `LEGION_SSH_USER` overrides it for every provider.
    fn ssh_user(&self) -> &'static str {
        "root"
    }
    fn connect(&self, ctx: ConnectCtx) -> ProviderResult<Arc<dyn ProviderApi>>;
}

/// The default credential normalization: values trimmed, empty ones dropped, defaults
/// filled in; a missing required field or an unknown one is refused, naming it.
pub fn normalize_fields(
    desc: &Descriptor,
    values: Credentials,
) -> Result<Credentials, CredentialError> {
    let mut out = Credentials::new();
    for field in &desc.credential_fields {
        let value = values
            .get(&field.id)
            .map(|v| v.expose().trim().to_string())
            .filter(|v| !v.is_empty())
            .or_else(|| field.default.clone());
        match value {
            Some(v) => {
                out.insert(field.id.clone(), Secret::new(v));
            }
            None if field.required => {
                return Err(CredentialError::Missing {
                    provider: desc.display_name.clone(),
                    field: field.label.clone(),
                });
            }
            None => {}
        }
    }
    if let Some(unknown) = values
        .keys()
        .find(|k| !desc.credential_fields.iter().any(|f| &f.id == *k))
    {
        return Err(CredentialError::Unknown {
            provider: desc.display_name.clone(),
            field: unknown.clone(),
        });
    }
    Ok(out)
}

/// The adapter surfaces of one connected provider. A surface the provider lacks is
/// `None`, matching its descriptor's capabilities.
#[async_trait]
pub trait ProviderApi: Send + Sync {
    async fn verify(&self) -> ProviderResult<()>;
    fn compute(&self) -> Option<&dyn ComputeApi> {
        None
    }
    fn dns(&self) -> Option<&dyn DnsApi> {
        None
    }
    fn firewall(&self) -> Option<&dyn FirewallApi> {
        None
    }
    fn ssh_keys(&self) -> Option<&dyn SshKeyApi> {
        None
    }
    fn domains(&self) -> Option<&dyn DomainApi> {
        None
    }
    /// How the node phases after provisioning reach the machine.
    fn node_agent(&self) -> Option<Arc<dyn NodeAgent>> {
        None
    }
    /// Persist anything held locally; called on logout and shutdown.
    async fn flush(&self) {}
}

/// `res` on every write names the Legion resource it serves (`node/web-1`) for the log.
#[async_trait]
pub trait ComputeApi: Send + Sync {
    async fn catalog(&self) -> ProviderResult<Catalog>;
    /// Servers carrying this Legion install's label.
    async fn list_servers(&self, install: &str) -> ProviderResult<Vec<ObservedServer>>;
    /// What observation reads: the servers carrying this install's label. `tracked` are
    /// the server ids Legion tracks on this provider, for providers that cannot list
    /// (manual hosts read each one).
    async fn observe(
        &self,
        install: &str,
        _tracked: &[String],
    ) -> ProviderResult<Vec<ObservedServer>> {
        self.list_servers(install).await
    }
    async fn get_server(&self, id: &str) -> ProviderResult<Option<ObservedServer>>;
    async fn create_server(&self, spec: &ServerSpec, res: &str) -> ProviderResult<ObservedServer>;
    async fn start_server(&self, id: &str, res: &str) -> ProviderResult<()>;
    async fn stop_server(&self, id: &str, mode: StopMode, res: &str) -> ProviderResult<()>;
    async fn reboot_server(&self, id: &str, res: &str) -> ProviderResult<()>;
    /// Reinstall's image reset: the server keeps its id and address, its disk is reset
    /// to `image`.
    async fn reset_image(&self, id: &str, image: &str, res: &str) -> ProviderResult<()>;
    async fn destroy_server(&self, id: &str, res: &str) -> ProviderResult<()>;
    /// Whether this provider creates servers (a manual host is imported, never created):
    /// a replace needs it.
    fn can_create(&self) -> bool {
        true
    }
    /// Whether [`ComputeApi::resize_server`] works here; the change set and the node actor
    /// ask before they plan a resize.
    fn can_resize(&self) -> bool {
        false
    }
    /// Change a stopped server's offer in place (its id, address and disk stay). The
    /// caller stops it first and starts it after; a provider without resize answers
    /// [`ErrorKind::Unsupported`].
    async fn resize_server(&self, _id: &str, offer: &str, _res: &str) -> ProviderResult<()> {
        Err(ProviderError::new(
            "compute",
            ErrorKind::Unsupported,
            format!(
                "this provider cannot change a server's offer in place (to {offer}); \
                 remove the node, apply, and add it again with the new offer"
            ),
        ))
    }
}

#[async_trait]
pub trait DnsApi: Send + Sync {
    async fn list_zones(&self) -> ProviderResult<Vec<ObservedZone>>;
    async fn get_zone(&self, name: &str) -> ProviderResult<Option<ObservedZone>>;
    async fn create_zone(&self, name: &str, res: &str) -> ProviderResult<ObservedZone>;
    async fn delete_zone(&self, id: &str, res: &str) -> ProviderResult<()>;
    /// Create or replace one RRset.
    async fn set_rrset(&self, zone_id: &str, rrset: &RrSet, res: &str) -> ProviderResult<()>;
    async fn delete_rrset(
        &self,
        zone_id: &str,
        name: &str,
        rtype: RecordType,
        res: &str,
    ) -> ProviderResult<()>;
}

#[async_trait]
pub trait FirewallApi: Send + Sync {
    async fn list_firewalls(&self, install: &str) -> ProviderResult<Vec<ObservedFirewall>>;
    async fn create_firewall(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        rules: &[FirewallRule],
        res: &str,
    ) -> ProviderResult<ObservedFirewall>;
    async fn set_rules(&self, id: &str, rules: &[FirewallRule], res: &str) -> ProviderResult<()>;
    async fn attach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()>;
    async fn detach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()>;
    async fn delete_firewall(&self, id: &str, res: &str) -> ProviderResult<()>;
}

#[async_trait]
pub trait SshKeyApi: Send + Sync {
    /// Find the key by name and public key, or create it. Returns its id.
    async fn ensure_key(&self, name: &str, public_key: &str, res: &str) -> ProviderResult<String>;
    async fn delete_key(&self, id: &str, res: &str) -> ProviderResult<()>;
}

#[async_trait]
pub trait DomainApi: Send + Sync {
    async fn get_domain(&self, name: &str) -> ProviderResult<Option<ObservedDomain>>;
    async fn set_nameservers(&self, name: &str, ns: &[String], res: &str) -> ProviderResult<()>;
}

/// The machine a node phase talks to.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTarget {
    pub name: String,
    pub uid: String,
    pub server_id: String,
    pub address: Option<String>,
}

/// What the configure phase writes to a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub cluster: String,
    pub role: String,
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum HealthReading {
    Healthy,
    Degraded(String),
    Unreachable(String),
}

/// The post-provisioning phases and health checks. The simulated cloud answers them
/// itself; real providers reach the node over SSH.
#[async_trait]
pub trait NodeAgent: Send + Sync {
    async fn wait_reachable(&self, node: &NodeTarget) -> Result<(), AgentError>;
    /// Check the login can act as root and make sure the managed key stays authorized.
    async fn bootstrap(&self, _node: &NodeTarget) -> Result<(), AgentError> {
        Ok(())
    }
    async fn configure(&self, node: &NodeTarget, config: &NodeConfig) -> Result<(), AgentError>;
    /// Upload and run the install script of the node's role.
    async fn install(&self, node: &NodeTarget, role: &str) -> Result<(), AgentError>;
    async fn readiness(&self, node: &NodeTarget) -> Result<(), AgentError>;
    async fn health(&self, node: &NodeTarget) -> HealthReading;
    /// The address the node sees Legion connect from, when the agent knows it without a
    /// login (the simulated cloud: its servers are this machine's). It becomes a
    /// management source of the managed firewalls; the SSH agent records what
    /// `SSH_CONNECTION` says on the node itself, so it answers `None`.
    fn client_address(&self) -> Option<String> {
        None
    }
}

/// The list of provider modules. Lookups only; no provider-specific branches.
#[derive(Clone)]
pub struct Registry {
    modules: Vec<Arc<dyn ProviderModule>>,
}

impl Registry {
    pub fn new(modules: Vec<Arc<dyn ProviderModule>>) -> Registry {
        Registry { modules }
    }

    /// Every provider Legion ships.
    pub fn builtin() -> Registry {
        Registry::new(vec![
            Arc::new(mock::MockModule::default()),
            Arc::new(hetzner::HetznerModule),
            Arc::new(manual::ManualModule),
            Arc::new(scaleway::ScalewayModule),
            Arc::new(ovh::OvhModule),
        ])
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn ProviderModule>> {
        self.modules.iter().find(|m| m.kind() == kind)
    }

    pub fn enabled<'a>(
        &'a self,
        env: &'a Env,
    ) -> impl Iterator<Item = &'a Arc<dyn ProviderModule>> {
        self.modules.iter().filter(move |m| m.enabled(env))
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.modules.iter().map(|m| m.kind()).collect()
    }
}
