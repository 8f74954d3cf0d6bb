//! One STATUS per row: the single state a table shows for a node, zone, firewall set or
//! domain, derived from what Legion has evidence for.
//!
//! Everything here is a pure function over a row's facts (machine and system regions, the
//! latest health reading, the operation in flight, the execution record) and over the
//! provider's status: a status is only as good as the observation or record behind it, so
//! a row of a provider that is disabled or not answering says `stale since HH:MM` instead
//! of repeating its last reading as if it were current. The detailed fields stay on the
//! row (`nodes show`, `--json`, the detail view); this module must not reach the state,
//! the actors or a provider. `--wait` asks [`progress`] whether an action's target holds.

use serde::{Deserialize, Serialize};

use super::actors::{Action, Machine, System};
use super::state::model::{ExecStatus, Execution, ExecutionKind, Phase};
use crate::providers::{HealthReading, ProviderHealth, ProviderStatus};

/// Consecutive failed calls after which a degraded provider counts as not answering: one
/// injected 5xx is a hiccup, three in a row (with the observer backing off between
/// rounds) mean its readings no longer describe the fleet.
pub const UNREACHABLE_AFTER: u32 = 3;

/// A node's one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeStatus {
    /// Planned, no server yet; the next apply creates it.
    PendingCreate,
    /// Tracked, no longer planned; the next apply tears it down.
    PendingDelete,
    /// The server is being created.
    Provisioning,
    /// An add or reconfigure execution is running this phase.
    Deploying {
        phase: Phase,
    },
    /// A reinstall execution is running this phase.
    Reinstalling {
        phase: Phase,
    },
    /// A provider-side transition: starting, stopping, rebooting, reinstalling, deleting.
    Changing {
        machine: Machine,
    },
    /// An operation whose record has not been written yet (its label).
    Working {
        operation: String,
    },
    /// Running, and the latest health check (taken after the last operation) passed.
    Running,
    /// Running and reachable, but the health check reports a problem.
    RunningDegraded {
        detail: String,
    },
    /// Running, but the latest health check could not reach it.
    RunningUnreachable {
        detail: String,
    },
    /// Running; no health check since the last operation yet.
    RunningUnchecked,
    /// Running, never deployed (an imported host before its first apply).
    RunningNotDeployed,
    Stopped,
    Failed {
        phase: Phase,
    },
    Interrupted {
        phase: Phase,
    },
    /// The provider says the server no longer exists.
    Missing,
    /// Nothing observed or recorded supports a state.
    Unknown,
    /// The provider is disabled or not answering: `was` is the last status Legion had
    /// evidence for, `since_ms` when the provider last answered (or the reading's time).
    Stale {
        since_ms: Option<u64>,
        was: Box<NodeStatus>,
    },
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeStatus::PendingCreate => f.write_str("pending create"),
            NodeStatus::PendingDelete => f.write_str("pending delete"),
            NodeStatus::Provisioning => f.write_str("provisioning"),
            NodeStatus::Deploying { phase } => write!(f, "deploying: {phase}"),
            NodeStatus::Reinstalling { phase } => write!(f, "reinstalling: {phase}"),
            NodeStatus::Changing { machine } => write!(f, "{machine}"),
            NodeStatus::Working { operation } => f.write_str(operation),
            NodeStatus::Running => f.write_str("running"),
            NodeStatus::RunningDegraded { .. } => f.write_str("running · degraded"),
            NodeStatus::RunningUnreachable { .. } => f.write_str("running · unreachable"),
            NodeStatus::RunningUnchecked => f.write_str("running · unchecked"),
            NodeStatus::RunningNotDeployed => f.write_str("running · not deployed"),
            NodeStatus::Stopped => f.write_str("stopped"),
            NodeStatus::Failed { phase } => write!(f, "failed: {phase}"),
            NodeStatus::Interrupted { phase } => write!(f, "interrupted: {phase}"),
            NodeStatus::Missing => f.write_str("missing"),
            NodeStatus::Unknown => f.write_str("unknown"),
            NodeStatus::Stale { since_ms, .. } => stale_label(f, *since_ms),
        }
    }
}

impl NodeStatus {
    /// Running and reachable (degraded services still answer).
    pub fn is_reachable(&self) -> bool {
        matches!(
            self,
            NodeStatus::Running | NodeStatus::RunningDegraded { .. }
        )
    }
}

fn stale_label(f: &mut std::fmt::Formatter<'_>, since_ms: Option<u64>) -> std::fmt::Result {
    match since_ms {
        Some(ms) => write!(f, "stale since {}", hh_mm(ms)),
        None => f.write_str("stale"),
    }
}

/// `HH:MM` UTC of a time in milliseconds since the epoch.
pub fn hh_mm(ms: u64) -> String {
    let secs = (ms / 1000) % 86_400;
    format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// Whether a provider's readings are current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    Current,
    /// Disabled, not configured in this engine, or not answering; `why` says which.
    Stale {
        since_ms: Option<u64>,
        why: String,
    },
}

/// How current the readings of provider `id` are, given the providers this engine has
/// connected and the time of the row's last recorded reading (for a provider that is not
/// connected at all, that reading is the last evidence there is).
pub fn provider_freshness(
    providers: &[ProviderStatus],
    id: &str,
    reading_ms: Option<u64>,
) -> Freshness {
    match providers.iter().find(|p| p.id == id) {
        None => Freshness::Stale {
            since_ms: reading_ms,
            why: format!("provider {id} is not enabled or not configured here"),
        },
        Some(p) if p.health == ProviderHealth::Degraded && p.failures >= UNREACHABLE_AFTER => {
            Freshness::Stale {
                since_ms: p.last_ok_ms.or(reading_ms),
                why: format!(
                    "provider {id} is not answering ({} failed calls in a row{})",
                    p.failures,
                    p.last_error
                        .as_deref()
                        .map(|e| format!("; last: {e}"))
                        .unwrap_or_default()
                ),
            }
        }
        Some(_) => Freshness::Current,
    }
}

/// Everything a node's status is derived from.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    pub planned: bool,
    pub has_server: bool,
    /// Its actor has published (this engine holds a belief about it).
    pub live: bool,
    pub machine: Machine,
    pub system: &'a System,
    /// The latest health reading; the actor drops it when an operation starts, so it is
    /// never older than the last operation.
    pub health: Option<&'a HealthReading>,
    pub operation: Option<&'a str>,
    pub execution: Option<&'a Execution>,
    pub freshness: &'a Freshness,
}

/// The node's one status.
pub fn node_status(f: NodeFacts<'_>) -> NodeStatus {
    let base = current_status(&f);
    match f.freshness {
        // Nothing exists at the provider yet: there is no reading to be stale.
        Freshness::Stale { since_ms, .. } if f.has_server => NodeStatus::Stale {
            since_ms: *since_ms,
            was: Box::new(base),
        },
        _ => base,
    }
}

fn current_status(f: &NodeFacts<'_>) -> NodeStatus {
    let exec = f.execution;
    if let Some(op) = f.operation {
        return busy_status(op, f.machine, exec);
    }
    // The execution record speaks for itself, actor or not.
    if let Some(e) = exec {
        let phase = e
            .current_phase()
            .or(e.next_phase())
            .unwrap_or(Phase::Provision);
        match e.status {
            ExecStatus::Failed => return NodeStatus::Failed { phase },
            // A running record with nothing running it: Legion stopped (or its save
            // failed) mid-phase; `retry` resumes it.
            ExecStatus::Interrupted | ExecStatus::Running => {
                return NodeStatus::Interrupted { phase };
            }
            ExecStatus::Succeeded => {}
        }
    }
    if !f.has_server {
        return if f.planned {
            NodeStatus::PendingCreate
        } else {
            NodeStatus::Unknown
        };
    }
    if !f.planned {
        return NodeStatus::PendingDelete;
    }
    if !f.live {
        return NodeStatus::Unknown;
    }
    match f.machine {
        Machine::Unknown => NodeStatus::Unknown,
        Machine::Absent => NodeStatus::PendingCreate,
        Machine::Missing => NodeStatus::Missing,
        Machine::Provisioning => NodeStatus::Provisioning,
        Machine::Stopped => NodeStatus::Stopped,
        m @ (Machine::Starting
        | Machine::Stopping
        | Machine::Rebooting
        | Machine::Reinstalling
        | Machine::Deleting) => NodeStatus::Changing { machine: m },
        Machine::Running => running_status(f.system, f.health),
    }
}

fn busy_status(op: &str, machine: Machine, exec: Option<&Execution>) -> NodeStatus {
    match op {
        "teardown" => {
            return NodeStatus::Changing {
                machine: Machine::Deleting,
            };
        }
        "start" => {
            return NodeStatus::Changing {
                machine: Machine::Starting,
            };
        }
        "stop" => {
            return NodeStatus::Changing {
                machine: Machine::Stopping,
            };
        }
        "reboot" => {
            return NodeStatus::Changing {
                machine: Machine::Rebooting,
            };
        }
        _ => {}
    }
    match exec {
        Some(e) if e.status == ExecStatus::Running => {
            let phase = e
                .current_phase()
                .or(e.next_phase())
                .unwrap_or(Phase::Provision);
            match (e.kind, phase) {
                (_, Phase::Provision) => NodeStatus::Provisioning,
                (ExecutionKind::Reinstall, phase) => NodeStatus::Reinstalling { phase },
                (_, phase) => NodeStatus::Deploying { phase },
            }
        }
        _ if machine == Machine::Provisioning => NodeStatus::Provisioning,
        _ => NodeStatus::Working {
            operation: op.to_string(),
        },
    }
}

fn running_status(system: &System, health: Option<&HealthReading>) -> NodeStatus {
    match system {
        System::Pending => NodeStatus::RunningNotDeployed,
        System::Failed(phase) => NodeStatus::Failed { phase: *phase },
        System::Interrupted(phase) => NodeStatus::Interrupted { phase: *phase },
        System::Installing(phase) => NodeStatus::Deploying { phase: *phase },
        System::Ready | System::Degraded(_) | System::Unreachable(_) | System::Unknown => {
            match health {
                Some(HealthReading::Healthy) => NodeStatus::Running,
                Some(HealthReading::Degraded(d)) => {
                    NodeStatus::RunningDegraded { detail: d.clone() }
                }
                Some(HealthReading::Unreachable(d)) => {
                    NodeStatus::RunningUnreachable { detail: d.clone() }
                }
                None => NodeStatus::RunningUnchecked,
            }
        }
    }
}

/// The health a row shows: a reading only while the system is installed and nothing is
/// running on it, so HEALTH never says `ok` while the system failed, is being
/// (re)installed or is unknown.
pub fn shown_health(
    system: &System,
    operation: Option<&str>,
    health: Option<&HealthReading>,
) -> Option<HealthReading> {
    let installed = matches!(
        system,
        System::Ready | System::Degraded(_) | System::Unreachable(_)
    );
    (installed && operation.is_none())
        .then(|| health.cloned())
        .flatten()
}

/// A zone's, firewall set's or domain's one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncStatus {
    Unknown,
    Pending,
    Syncing,
    Converged,
    Waiting,
    Failed,
    Deleting,
    /// As [`NodeStatus::Stale`]; `was` is the actor's state.
    Stale {
        since_ms: Option<u64>,
        was: super::actors::SyncState,
    },
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncStatus::Unknown => f.write_str("unknown"),
            SyncStatus::Pending => f.write_str("pending"),
            SyncStatus::Syncing => f.write_str("syncing"),
            SyncStatus::Converged => f.write_str("converged"),
            SyncStatus::Waiting => f.write_str("waiting"),
            SyncStatus::Failed => f.write_str("failed"),
            SyncStatus::Deleting => f.write_str("deleting"),
            SyncStatus::Stale { since_ms, .. } => stale_label(f, *since_ms),
        }
    }
}

/// The status of a derived resource in state `state` whose providers have `freshness`
/// (the first stale one of a set spread over several providers wins).
pub fn sync_status(state: super::actors::SyncState, freshness: &Freshness) -> SyncStatus {
    use super::actors::SyncState as S;
    if let Freshness::Stale { since_ms, .. } = freshness {
        return SyncStatus::Stale {
            since_ms: *since_ms,
            was: state,
        };
    }
    match state {
        S::Unknown => SyncStatus::Unknown,
        S::Pending => SyncStatus::Pending,
        S::Syncing => SyncStatus::Syncing,
        S::Converged => SyncStatus::Converged,
        S::Waiting => SyncStatus::Waiting,
        S::Failed => SyncStatus::Failed,
        S::Deleting => SyncStatus::Deleting,
    }
}

/// What an action is waited for until (`--wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Running, and a health check after the action reached it.
    Reachable,
    Stopped,
}

impl Target {
    pub fn of(action: Action) -> Target {
        match action {
            Action::Stop => Target::Stopped,
            Action::Start | Action::Reboot | Action::Retry | Action::Reinstall => Target::Reachable,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Target::Reachable => "running and reachable",
            Target::Stopped => "stopped",
        })
    }
}

/// Where a node stands against a wait's target, once its operation has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Reached,
    /// Not yet; the status it has now.
    Pending(String),
    /// It will not get there without the operator: why.
    Failed(String),
}

/// Whether `status` (with the row's `last_error`) meets `target`.
pub fn progress(target: Target, status: &NodeStatus, last_error: Option<&str>) -> Progress {
    let with_error = |s: String| match last_error {
        Some(e) => format!("{s}: {e}"),
        None => s,
    };
    match (target, status) {
        (Target::Reachable, s) if s.is_reachable() => Progress::Reached,
        (Target::Stopped, NodeStatus::Stopped) => Progress::Reached,
        (
            _,
            s @ (NodeStatus::Failed { .. }
            | NodeStatus::Interrupted { .. }
            | NodeStatus::Missing
            | NodeStatus::PendingCreate
            | NodeStatus::PendingDelete),
        ) => Progress::Failed(with_error(s.to_string())),
        (_, s @ NodeStatus::Stale { .. }) => Progress::Failed(format!(
            "{s}: its provider is not answering, so the result cannot be confirmed"
        )),
        (_, s) => Progress::Pending(s.to_string()),
    }
}

/// Whether a whole fleet is settled: every node running and reachable with nothing
/// differing from the plan, every zone, firewall set and domain converged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Settled,
    /// Rows still on their way (unknown, unchecked, busy, waiting), each with its status.
    Pending(Vec<String>),
    /// Rows that will not settle without the operator.
    Failed(Vec<String>),
}

#[cfg(test)]
mod tests;
