//! The decrypted state: what the operator planned, what Legion tracks, what it observed.
//!
//! Plain data with serde; the store encrypts it, the engine mutates it through
//! [`super::cell::StateCell`]. Plan edits never touch a provider: only the actors, driven
//! by apply and by observation, turn the plan into provider calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::secret::Secret;
use crate::providers::{
    BootMode, FirewallRule, ObservedFirewall, ObservedServer, ObservedZone, RecordType,
};

pub const STATE_SCHEMA: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub schema: u32,
    /// Random per home; labels every provider resource this Legion owns.
    pub install_id: String,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub plan: Plan,
    pub tracked: Tracked,
    pub observed: Observed,
    /// Execution ids are unique within a home.
    pub next_execution_id: u64,
    /// Apply ids too.
    #[serde(default)]
    pub next_apply_id: u64,
    /// Legion's own SSH key (ed25519), made at init; never leaves the encrypted state
    /// except through `legion ssh-key export`.
    #[serde(default)]
    pub managed_key: Option<crate::ssh::ManagedKey>,
}

impl State {
    pub fn new(install_id: String) -> State {
        State {
            schema: STATE_SCHEMA,
            install_id,
            providers: BTreeMap::new(),
            plan: Plan::default(),
            tracked: Tracked::default(),
            observed: Observed::default(),
            next_execution_id: 1,
            next_apply_id: 1,
            managed_key: None,
        }
    }

    /// Bring a state read from an older Legion to the current shape; `true` when
    /// something changed (the next save writes it).
    ///
    /// Peer lists stored per node become membership ids: a node whose list is what its
    /// cluster's current membership gives it records that membership (stored once for
    /// the cluster); any other was configured with an older membership and gets an id
    /// no membership has, so the next apply rewrites its peers, as it would have.
    pub fn migrate(&mut self) -> bool {
        let legacy: Vec<String> = self
            .tracked
            .nodes
            .iter()
            .filter(|(_, t)| t.configured_peers.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        if legacy.is_empty() {
            return false;
        }
        let current: BTreeMap<String, ClusterTracked> = memberships(self)
            .into_iter()
            .map(|(c, m)| (c, ClusterTracked::new(m)))
            .collect();
        for name in legacy {
            let cluster = self.plan.nodes.get(&name).map(|p| p.cluster.clone());
            let Some(t) = self.tracked.nodes.get_mut(&name) else {
                continue;
            };
            let peers = t.configured_peers.take();
            let now = cluster.as_ref().and_then(|c| current.get(c));
            t.configured_membership = match (peers, now) {
                (Some(peers), Some(now)) if peers == now.peers_of(&name) => {
                    if let Some(c) = &cluster {
                        self.tracked.clusters.insert(c.clone(), now.clone());
                    }
                    Some(now.membership.clone())
                }
                _ => Some(STALE_MEMBERSHIP.to_string()),
            };
        }
        true
    }
}

/// The membership id of a node configured with a peer list that no current membership
/// gives: never equal to a [`membership_id`] (those are hex).
pub const STALE_MEMBERSHIP: &str = "older";

/// A configured provider. The id is the provider kind (one account per kind for now).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub kind: String,
    pub credentials: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub clusters: BTreeMap<String, ClusterPlan>,
    pub nodes: BTreeMap<String, NodePlan>,
    pub zones: BTreeMap<String, ZonePlan>,
    /// Extra inbound rules per cluster firewall set, on top of the derived peer rules.
    pub firewalls: BTreeMap<String, FirewallPlan>,
    pub domains: BTreeMap<String, DomainPlan>,
    /// Extra networks (CIDR) every managed firewall lets reach the nodes' SSH port, on
    /// top of the addresses nodes saw Legion connect from (`legion config set
    /// management-sources`).
    #[serde(default)]
    pub management_sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterPlan {
    /// When set, every node of the cluster gets `A`/`AAAA` records `<node>.<zone>`.
    pub dns_zone: Option<String>,
    /// TCP ports cluster peers may reach on each other.
    pub peer_ports: Vec<u16>,
}

impl Default for ClusterPlan {
    fn default() -> Self {
        ClusterPlan {
            dns_zone: None,
            peer_ports: vec![4413],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Stable identity, put on the server as a label; survives renames of nothing else.
    pub uid: String,
    pub cluster: String,
    pub role: String,
    pub provider: String,
    pub region: String,
    pub offer: String,
    pub image: String,
    pub boot_mode: BootMode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZonePlan {
    pub provider: String,
    pub records: Vec<RecordPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordPlan {
    /// Relative to the zone; `@` for the apex.
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    pub value: RecordValue,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum RecordValue {
    Literal(String),
    /// The public address of a node, resolved from tracked state when it has one.
    NodeAddress(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirewallPlan {
    pub rules: Vec<FirewallRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainPlan {
    /// Where the domain is registered.
    pub registrar: String,
    /// The planned zone whose nameservers the domain should delegate to.
    pub zone: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tracked {
    pub nodes: BTreeMap<String, TrackedNode>,
    pub zones: BTreeMap<String, TrackedZone>,
    pub firewalls: BTreeMap<String, TrackedFirewallSet>,
    pub domains: BTreeMap<String, TrackedDomain>,
    /// Managed SSH key id per provider.
    pub ssh_keys: BTreeMap<String, String>,
    /// The plan as of the last apply. Derived resources (zones, firewall sets, domains)
    /// follow tracked endpoints between applies from this copy, so editing the plan
    /// touches no provider until the next apply.
    #[serde(default)]
    pub applied_plan: Option<Plan>,
    /// Per node, the address it saw Legion connect from (`SSH_CONNECTION`): the first
    /// one is a management source of every managed firewall; the latest is checked
    /// against the firewall before it is applied.
    #[serde(default)]
    pub seen_from: BTreeMap<String, SeenFrom>,
    /// Per cluster, the membership its nodes were last configured against, stored once:
    /// a node records only which membership it was configured with
    /// ([`TrackedNode::configured_membership`]), so the state grows linearly with the
    /// fleet whatever the cluster sizes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, ClusterTracked>,
}

/// A cluster's membership: its planned nodes that have an address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTracked {
    /// [`membership_id`] of `members`.
    pub membership: String,
    /// Node name to address.
    pub members: BTreeMap<String, String>,
}

impl ClusterTracked {
    pub fn new(members: BTreeMap<String, String>) -> ClusterTracked {
        ClusterTracked {
            membership: membership_id(&members),
            members,
        }
    }

    /// The peer list a member is configured with: the other members' addresses, sorted.
    pub fn peers_of(&self, name: &str) -> Vec<String> {
        let mut peers: Vec<String> = self
            .members
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(_, a)| a.clone())
            .collect();
        peers.sort();
        peers
    }
}

/// A short, stable name for a membership (16 hex digits of its SHA-256): equal names,
/// equal memberships. Nodes store it instead of their peer list.
pub fn membership_id(members: &BTreeMap<String, String>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (name, addr) in members {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update(addr.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}

/// Every cluster's current membership (planned nodes with a tracked address), in one
/// pass over the plan.
pub fn memberships(s: &State) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, p) in &s.plan.nodes {
        if let Some(addr) = s.tracked.nodes.get(name).and_then(TrackedNode::address) {
            out.entry(p.cluster.clone())
                .or_default()
                .insert(name.clone(), addr.to_string());
        }
    }
    out
}

/// One cluster's current membership.
pub fn membership(s: &State, cluster: &str) -> BTreeMap<String, String> {
    s.plan
        .nodes
        .iter()
        .filter(|(_, p)| p.cluster == cluster)
        .filter_map(|(n, _)| {
            let addr = s.tracked.nodes.get(n)?.address()?;
            Some((n.clone(), addr.to_string()))
        })
        .collect()
}

/// Where a node saw Legion's SSH connections come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFrom {
    /// Recorded once, during the node's first deploy, before any firewall was attached.
    pub first: String,
    /// The latest connection's address (deploy phases and health checks).
    pub last: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedNode {
    pub uid: String,
    pub provider: String,
    pub server_id: Option<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub region: String,
    pub offer: String,
    pub image: String,
    /// SHA-256 fingerprint pinned on first contact.
    pub host_key: Option<String>,
    /// The cluster membership ([`membership_id`]) the node was last configured with;
    /// an apply reconfigures nodes whose cluster membership changed since. The members
    /// themselves are stored once per cluster ([`Tracked::clusters`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_membership: Option<String>,
    /// The peer list itself, as state files before membership per cluster kept it (one
    /// copy per node: O(cluster²)). Read to migrate ([`State::migrate`]), never written.
    #[serde(default, skip_serializing)]
    pub configured_peers: Option<Vec<String>>,
    /// How to log in when it is not the engine's default (root on port 22): imported
    /// hosts keep the user and port they were imported with.
    #[serde(default)]
    pub login: Option<Login>,
    /// Who the node's image logs in as, when the provider's catalog says (OVHcloud:
    /// `ubuntu`, `debian`, ...); recorded at create and reinstall.
    #[serde(default)]
    pub image_user: Option<String>,
    pub execution: Option<Execution>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub user: String,
    pub port: u16,
    /// The user is not root and has passwordless sudo (detected at import): commands
    /// that write system files run under `sudo -n`.
    #[serde(default)]
    pub sudo: bool,
}

impl TrackedNode {
    pub fn address(&self) -> Option<&str> {
        self.ipv4.as_deref().or(self.ipv6.as_deref())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackedZone {
    pub provider: String,
    pub zone_id: Option<String>,
    pub created_by_legion: bool,
    /// The zone's authoritative nameservers, as the provider reported them.
    pub nameservers: Vec<String>,
    /// The RRsets Legion manages in this zone; others are left alone.
    pub managed: Vec<(String, RecordType)>,
    /// Signature of the last desired state applied successfully.
    pub applied_signature: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackedFirewallSet {
    /// Firewall id per provider.
    pub firewall_ids: BTreeMap<String, String>,
    pub applied_signature: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackedDomain {
    pub applied_signature: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observed {
    pub servers: BTreeMap<String, ServerReading>,
    pub zones: BTreeMap<String, ObservedZone>,
    pub firewalls: BTreeMap<String, ObservedFirewall>,
}

/// The last provider reading of a node's server. `server: None` means the provider said
/// it does not exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerReading {
    pub at_ms: u64,
    pub server: Option<ObservedServer>,
}

/// A durable phase machine run for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: u64,
    pub kind: ExecutionKind,
    pub status: ExecStatus,
    pub phases: Vec<PhaseRecord>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// A replace's old server, destroyed by its last phase: recorded before the new
    /// server is created, so a resumed replace never adopts it and never forgets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<RetiringServer>,
}

/// The server a replace retires once the new one is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiringServer {
    pub provider: String,
    pub server_id: String,
    pub region: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionKind {
    Add,
    Reinstall,
    Reconfigure,
    /// An offer change in place: power off, change the server type, power on.
    Resize,
    /// A new server (region, provider, or image where no rebuild exists), deployed before
    /// the old one is destroyed.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Running,
    Succeeded,
    Failed,
    /// Found running when the engine started: the process died mid-phase.
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Provision,
    ImageReset,
    WaitReachable,
    /// The login can act as root (root, or passwordless sudo) and the managed key is in
    /// its `authorized_keys`.
    Bootstrap,
    Configure,
    /// The role's install script, uploaded and run.
    Install,
    Readiness,
    /// A resize's first step: the provider changes the type of a stopped server only.
    PowerOff,
    Resize,
    PowerOn,
    /// A replace's last step: the old server goes once the new one is ready.
    DestroyOld,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Provision => "provision",
            Phase::ImageReset => "image reset",
            Phase::WaitReachable => "wait for reachability",
            Phase::Bootstrap => "bootstrap",
            Phase::Configure => "configure",
            Phase::Install => "install",
            Phase::Readiness => "readiness",
            Phase::PowerOff => "power off",
            Phase::Resize => "resize",
            Phase::PowerOn => "power on",
            Phase::DestroyOld => "destroy the old server",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Pending,
    Running,
    Done,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub phase: Phase,
    pub status: PhaseStatus,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub error: Option<String>,
}
