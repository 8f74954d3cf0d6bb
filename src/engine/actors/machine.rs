//! The node actor's two regions and its action rules, as plain data and pure functions.
//!
//! `machine` is the provider lifecycle, `system` the deployment and health. The snapshot
//! derives from these enums, and whether an operator action fits is decided here, with
//! a message that says why when it does not.

use serde::{Deserialize, Serialize};

use crate::engine::state::model::{ExecStatus, Execution, NodePlan, Phase, TrackedNode};
use crate::providers::{HealthReading, ServerStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Machine {
    /// No reading yet.
    Unknown,
    /// Planned, no server exists.
    Absent,
    Provisioning,
    Starting,
    Running,
    Stopping,
    Stopped,
    Rebooting,
    Reinstalling,
    Deleting,
    /// Tracked, but the provider says the server does not exist.
    Missing,
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Machine::Unknown => "unknown",
            Machine::Absent => "absent",
            Machine::Provisioning => "provisioning",
            Machine::Starting => "starting",
            Machine::Running => "running",
            Machine::Stopping => "stopping",
            Machine::Stopped => "stopped",
            Machine::Rebooting => "rebooting",
            Machine::Reinstalling => "reinstalling",
            Machine::Deleting => "deleting",
            Machine::Missing => "missing",
        })
    }
}

impl Machine {
    pub fn from_status(status: ServerStatus) -> Machine {
        match status {
            ServerStatus::Provisioning => Machine::Provisioning,
            ServerStatus::Starting => Machine::Starting,
            ServerStatus::Running => Machine::Running,
            ServerStatus::Stopping => Machine::Stopping,
            ServerStatus::Off => Machine::Stopped,
            ServerStatus::Rebooting => Machine::Rebooting,
            ServerStatus::Rebuilding => Machine::Reinstalling,
            ServerStatus::Deleting => Machine::Deleting,
            ServerStatus::Unknown => Machine::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum System {
    Unknown,
    /// Not installed yet.
    Pending,
    Installing(Phase),
    Ready,
    Degraded(String),
    Unreachable(String),
    Failed(Phase),
    Interrupted(Phase),
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            System::Unknown => f.write_str("unknown"),
            System::Pending => f.write_str("pending"),
            System::Installing(p) => write!(f, "installing: {p}"),
            System::Ready => f.write_str("ready"),
            System::Degraded(_) => f.write_str("degraded"),
            System::Unreachable(_) => f.write_str("unreachable"),
            System::Failed(p) => write!(f, "failed: {p}"),
            System::Interrupted(p) => write!(f, "interrupted: {p}"),
        }
    }
}

impl System {
    /// The system region implied by the execution record alone.
    pub fn from_execution(exec: Option<&Execution>) -> System {
        match exec {
            None => System::Pending,
            Some(e) => match e.status {
                ExecStatus::Succeeded => System::Unknown,
                ExecStatus::Running => {
                    System::Installing(e.next_phase().unwrap_or(Phase::Provision))
                }
                ExecStatus::Failed => System::Failed(e.current_phase().unwrap_or(Phase::Provision)),
                ExecStatus::Interrupted => {
                    System::Interrupted(e.current_phase().unwrap_or(Phase::Provision))
                }
            },
        }
    }

    pub fn from_health(h: &HealthReading) -> System {
        match h {
            HealthReading::Healthy => System::Ready,
            HealthReading::Degraded(d) => System::Degraded(d.clone()),
            HealthReading::Unreachable(d) => System::Unreachable(d.clone()),
        }
    }

    /// Installed: health readings may replace this region.
    pub fn is_installed(&self) -> bool {
        matches!(
            self,
            System::Ready | System::Degraded(_) | System::Unreachable(_) | System::Unknown
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
    Reboot,
    Retry,
    Reinstall,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Reboot => "reboot",
            Action::Retry => "retry",
            Action::Reinstall => "reinstall",
        })
    }
}

impl std::str::FromStr for Action {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Action, UnknownAction> {
        Ok(match s {
            "start" => Action::Start,
            "stop" => Action::Stop,
            "reboot" => Action::Reboot,
            "retry" => Action::Retry,
            "reinstall" => Action::Reinstall,
            other => return Err(UnknownAction(other.to_string())),
        })
    }
}

/// Everything an action decision needs.
#[derive(Debug, Clone, Copy)]
pub struct ActionView<'a> {
    pub name: &'a str,
    pub machine: Machine,
    pub operation: Option<&'a str>,
    pub has_server: bool,
    pub execution: Option<&'a Execution>,
}

/// Why an action does not fit the node now, in the operator's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// A word that names no [`Action`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?}")]
pub struct UnknownAction(pub String);

/// Whether `action` fits the node now; the error says why not.
pub fn check_action(v: ActionView<'_>, action: Action) -> Result<(), Refusal> {
    let name = v.name;
    if let Some(op) = v.operation {
        return refused(format!(
            "cannot {action} {name}: {op} is in progress; wait for it to finish"
        ));
    }
    if action == Action::Retry {
        return match v.execution {
            // Running with no operation in flight: its process or save failed mid-phase.
            Some(e) if e.is_retryable() || e.status == ExecStatus::Running => Ok(()),
            Some(e) => refused(
                format!(
                    "nothing to retry on {name}: its last {:?} execution {}",
                    e.kind,
                    match e.status {
                        ExecStatus::Succeeded => "succeeded",
                        _ => "is still running",
                    }
                )
                .to_lowercase(),
            ),
            None => refused(format!(
                "nothing to retry on {name}: it has no execution yet"
            )),
        };
    }
    if !v.has_server {
        return refused(format!(
            "cannot {action} {name}: it has no server yet; run apply first"
        ));
    }
    match (action, v.machine) {
        (_, Machine::Deleting) => refused(format!("cannot {action} {name}: it is being deleted")),
        (_, Machine::Missing) => refused(format!(
            "cannot {action} {name}: its server no longer exists at the provider; apply re-creates it"
        )),
        (Action::Start, Machine::Running) => refused(format!("{name} is already running")),
        (Action::Start, Machine::Stopped | Machine::Unknown) => Ok(()),
        (Action::Stop, Machine::Stopped) => refused(format!("{name} is already stopped")),
        (Action::Stop, Machine::Running | Machine::Unknown) => Ok(()),
        (Action::Reboot, Machine::Stopped) => refused(format!(
            "cannot reboot {name}: it is stopped; start it instead"
        )),
        (Action::Reboot, Machine::Running | Machine::Unknown) => Ok(()),
        (Action::Reinstall, Machine::Running | Machine::Stopped | Machine::Unknown) => Ok(()),
        (_, m) => refused(format!("cannot {action} {name} while it is {m}")),
    }
}

fn refused(reason: String) -> Result<(), Refusal> {
    Err(Refusal(reason))
}

/// What an apply wave asks a node actor to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncDecision {
    /// Converged (or settled with a failure the operator must look at).
    Nothing,
    /// A new add execution.
    Provision,
    /// Resume the failed or interrupted execution.
    Resume,
    /// The server vanished: forget it and provision again.
    Reprovision,
    /// Not in the plan any more: destroy the server and forget the node.
    Teardown,
}

pub fn decide_sync(
    plan: Option<&NodePlan>,
    tracked: Option<&TrackedNode>,
    machine: Machine,
) -> SyncDecision {
    match (plan, tracked) {
        (None, None) => SyncDecision::Nothing,
        (None, Some(_)) => SyncDecision::Teardown,
        (Some(_), None) => SyncDecision::Provision,
        (Some(_), Some(t)) => {
            if machine == Machine::Missing {
                return SyncDecision::Reprovision;
            }
            match &t.execution {
                None => SyncDecision::Provision,
                Some(e) if e.is_retryable() || e.status == ExecStatus::Running => {
                    SyncDecision::Resume
                }
                Some(_) => SyncDecision::Nothing,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::model::ExecutionKind;

    fn view(machine: Machine) -> ActionView<'static> {
        ActionView {
            name: "web-1",
            machine,
            operation: None,
            has_server: true,
            execution: None,
        }
    }

    #[test]
    fn actions_that_fit() {
        assert_eq!(check_action(view(Machine::Stopped), Action::Start), Ok(()));
        assert_eq!(check_action(view(Machine::Running), Action::Stop), Ok(()));
        assert_eq!(check_action(view(Machine::Running), Action::Reboot), Ok(()));
        assert_eq!(
            check_action(view(Machine::Stopped), Action::Reinstall),
            Ok(())
        );
    }

    #[test]
    fn refusals_say_why() {
        let e = check_action(view(Machine::Running), Action::Start)
            .unwrap_err()
            .0;
        assert!(e.contains("already running"), "{e}");
        let e = check_action(view(Machine::Stopped), Action::Stop)
            .unwrap_err()
            .0;
        assert!(e.contains("already stopped"), "{e}");
        let e = check_action(view(Machine::Deleting), Action::Stop)
            .unwrap_err()
            .0;
        assert!(e.contains("being deleted"), "{e}");
        let e = check_action(view(Machine::Stopped), Action::Reboot)
            .unwrap_err()
            .0;
        assert!(e.contains("start it instead"), "{e}");
        let e = check_action(view(Machine::Running), Action::Retry)
            .unwrap_err()
            .0;
        assert!(e.contains("nothing to retry"), "{e}");
        let busy = ActionView {
            operation: Some("reboot"),
            ..view(Machine::Running)
        };
        let e = check_action(busy, Action::Stop).unwrap_err().0;
        assert!(e.contains("reboot is in progress"), "{e}");
        let no_server = ActionView {
            has_server: false,
            ..view(Machine::Absent)
        };
        assert!(
            check_action(no_server, Action::Start)
                .unwrap_err()
                .0
                .contains("apply")
        );
    }

    #[test]
    fn retry_needs_a_failed_execution() {
        let mut e = Execution::new(1, ExecutionKind::Add);
        e.fail_phase(Phase::Configure, "x".into());
        let v = ActionView {
            execution: Some(&e),
            ..view(Machine::Running)
        };
        assert_eq!(check_action(v, Action::Retry), Ok(()));
        let mut done = Execution::new(2, ExecutionKind::Add);
        for p in crate::engine::execution::phases_for(ExecutionKind::Add) {
            done.start_phase(*p);
            done.finish_phase(*p);
        }
        let v = ActionView {
            execution: Some(&done),
            ..view(Machine::Running)
        };
        assert!(
            check_action(v, Action::Retry)
                .unwrap_err()
                .0
                .contains("succeeded")
        );
    }

    #[test]
    fn sync_decisions() {
        let plan = NodePlan {
            uid: "u".into(),
            cluster: "c".into(),
            role: "r".into(),
            provider: "mock".into(),
            region: "x".into(),
            offer: "o".into(),
            image: "i".into(),
            boot_mode: Default::default(),
        };
        let mut tracked = TrackedNode {
            uid: "u".into(),
            provider: "mock".into(),
            server_id: Some("s".into()),
            ipv4: None,
            ipv6: None,
            region: "x".into(),
            offer: "o".into(),
            image: "i".into(),
            host_key: None,
            configured_membership: None,
            configured_peers: None,
            login: None,
            image_user: None,
            execution: None,
        };
        assert_eq!(
            decide_sync(Some(&plan), None, Machine::Absent),
            SyncDecision::Provision
        );
        assert_eq!(
            decide_sync(None, Some(&tracked), Machine::Running),
            SyncDecision::Teardown
        );
        assert_eq!(
            decide_sync(Some(&plan), Some(&tracked), Machine::Missing),
            SyncDecision::Reprovision
        );
        let mut e = Execution::new(1, ExecutionKind::Add);
        e.interrupt_if_running();
        tracked.execution = Some(e);
        assert_eq!(
            decide_sync(Some(&plan), Some(&tracked), Machine::Running),
            SyncDecision::Resume
        );
    }
}
