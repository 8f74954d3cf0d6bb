//! The STATUS table: one case per row of docs/statecharts.md "How STATUS is derived".

use super::*;
use crate::engine::execution::phases_for;

fn exec(kind: ExecutionKind, status: ExecStatus, at: Phase) -> Execution {
    let mut e = Execution::new(1, kind);
    for p in phases_for(kind) {
        if *p == at {
            break;
        }
        e.start_phase(*p);
        e.finish_phase(*p);
    }
    match status {
        ExecStatus::Running => e.start_phase(at),
        ExecStatus::Failed => {
            e.start_phase(at);
            e.fail_phase(at, "boom".into());
        }
        ExecStatus::Interrupted => {
            e.start_phase(at);
            e.interrupt_if_running();
        }
        ExecStatus::Succeeded => {
            for p in phases_for(kind).iter().skip_while(|p| **p != at) {
                e.start_phase(*p);
                e.finish_phase(*p);
            }
        }
    }
    e
}

struct Case {
    planned: bool,
    has_server: bool,
    live: bool,
    machine: Machine,
    system: System,
    health: Option<HealthReading>,
    operation: Option<&'static str>,
    execution: Option<Execution>,
    freshness: Freshness,
}

fn case() -> Case {
    Case {
        planned: true,
        has_server: true,
        live: true,
        machine: Machine::Running,
        system: System::Ready,
        health: Some(HealthReading::Healthy),
        operation: None,
        execution: Some(exec(
            ExecutionKind::Add,
            ExecStatus::Succeeded,
            Phase::Provision,
        )),
        freshness: Freshness::Current,
    }
}

fn status(c: &Case) -> String {
    node_status(NodeFacts {
        planned: c.planned,
        has_server: c.has_server,
        live: c.live,
        machine: c.machine,
        system: &c.system,
        health: c.health.as_ref(),
        operation: c.operation,
        execution: c.execution.as_ref(),
        freshness: &c.freshness,
    })
    .to_string()
}

#[test]
fn the_status_table() {
    let down = |d: &str| Some(HealthReading::Unreachable(d.into()));
    let stale = Freshness::Stale {
        since_ms: Some((10 * 3600 + 42 * 60) * 1000),
        why: "provider mock is not answering".into(),
    };
    let cases: Vec<(Case, &str)> = vec![
        (case(), "running"),
        (
            Case {
                health: down("ssh: connection refused"),
                system: System::Unreachable("ssh".into()),
                ..case()
            },
            "running · unreachable",
        ),
        (
            Case {
                health: Some(HealthReading::Degraded("disk full".into())),
                ..case()
            },
            "running · degraded",
        ),
        // The last operation dropped the reading; no check since.
        (
            Case {
                health: None,
                ..case()
            },
            "running · unchecked",
        ),
        (
            Case {
                machine: Machine::Stopped,
                system: System::Unreachable("server is stopped".into()),
                health: down("server is stopped"),
                ..case()
            },
            "stopped",
        ),
        (
            Case {
                has_server: false,
                live: false,
                machine: Machine::Absent,
                system: System::Pending,
                health: None,
                execution: None,
                ..case()
            },
            "pending create",
        ),
        (
            Case {
                planned: false,
                ..case()
            },
            "pending delete",
        ),
        (
            Case {
                operation: Some("provisioning"),
                machine: Machine::Provisioning,
                execution: Some(exec(
                    ExecutionKind::Add,
                    ExecStatus::Running,
                    Phase::Provision,
                )),
                ..case()
            },
            "provisioning",
        ),
        (
            Case {
                operation: Some("provisioning: configure"),
                execution: Some(exec(
                    ExecutionKind::Add,
                    ExecStatus::Running,
                    Phase::Configure,
                )),
                ..case()
            },
            "deploying: configure",
        ),
        (
            Case {
                operation: Some("reinstall: image reset"),
                machine: Machine::Reinstalling,
                execution: Some(exec(
                    ExecutionKind::Reinstall,
                    ExecStatus::Running,
                    Phase::ImageReset,
                )),
                ..case()
            },
            "reinstalling: image reset",
        ),
        (
            Case {
                operation: Some("reboot"),
                ..case()
            },
            "rebooting",
        ),
        (
            Case {
                operation: Some("stop"),
                ..case()
            },
            "stopping",
        ),
        // A failed execution wins over a healthy-looking machine, and HEALTH is hidden.
        (
            Case {
                system: System::Failed(Phase::Configure),
                execution: Some(exec(
                    ExecutionKind::Add,
                    ExecStatus::Failed,
                    Phase::Configure,
                )),
                ..case()
            },
            "failed: configure",
        ),
        (
            Case {
                system: System::Interrupted(Phase::WaitReachable),
                execution: Some(exec(
                    ExecutionKind::Add,
                    ExecStatus::Interrupted,
                    Phase::WaitReachable,
                )),
                ..case()
            },
            "interrupted: wait for reachability",
        ),
        // A running record with no operation in flight was cut short.
        (
            Case {
                execution: Some(exec(
                    ExecutionKind::Add,
                    ExecStatus::Running,
                    Phase::Install,
                )),
                ..case()
            },
            "interrupted: install",
        ),
        // A failed provision with no server is still failed, without any actor.
        (
            Case {
                has_server: false,
                live: false,
                machine: Machine::Absent,
                execution: Some(exec(
                    ExecutionKind::Add,
                    ExecStatus::Failed,
                    Phase::Provision,
                )),
                ..case()
            },
            "failed: provision",
        ),
        (
            Case {
                live: false,
                machine: Machine::Unknown,
                system: System::Unknown,
                health: None,
                ..case()
            },
            "unknown",
        ),
        (
            Case {
                machine: Machine::Unknown,
                ..case()
            },
            "unknown",
        ),
        (
            Case {
                machine: Machine::Missing,
                ..case()
            },
            "missing",
        ),
        (
            Case {
                machine: Machine::Rebooting,
                ..case()
            },
            "rebooting",
        ),
        (
            Case {
                system: System::Pending,
                execution: None,
                health: None,
                ..case()
            },
            "running · not deployed",
        ),
        (
            Case {
                freshness: stale.clone(),
                ..case()
            },
            "stale since 10:42",
        ),
        // Not created yet: nothing to be stale about.
        (
            Case {
                has_server: false,
                execution: None,
                machine: Machine::Absent,
                freshness: stale,
                ..case()
            },
            "pending create",
        ),
        (
            Case {
                freshness: Freshness::Stale {
                    since_ms: None,
                    why: "disabled".into(),
                },
                ..case()
            },
            "stale",
        ),
    ];
    for (i, (c, want)) in cases.iter().enumerate() {
        assert_eq!(status(c), *want, "case {i}");
    }
}

#[test]
fn stale_keeps_what_it_was() {
    let s = node_status(NodeFacts {
        planned: true,
        has_server: true,
        live: true,
        machine: Machine::Stopped,
        system: &System::Unreachable("server is stopped".into()),
        health: None,
        operation: None,
        execution: None,
        freshness: &Freshness::Stale {
            since_ms: Some(0),
            why: "x".into(),
        },
    });
    assert_eq!(
        s,
        NodeStatus::Stale {
            since_ms: Some(0),
            was: Box::new(NodeStatus::Stopped)
        }
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["state"], "stale");
    assert_eq!(json["was"]["state"], "stopped");
}

#[test]
fn health_is_never_ok_unless_the_system_is_installed_and_idle() {
    let ok = HealthReading::Healthy;
    for system in [
        System::Failed(Phase::Configure),
        System::Installing(Phase::ImageReset),
        System::Interrupted(Phase::Install),
        System::Unknown,
        System::Pending,
    ] {
        assert_eq!(shown_health(&system, None, Some(&ok)), None, "{system}");
    }
    assert_eq!(
        shown_health(&System::Ready, Some("reboot"), Some(&ok)),
        None
    );
    assert_eq!(
        shown_health(&System::Ready, None, Some(&ok)),
        Some(HealthReading::Healthy)
    );
}

fn provider(health: ProviderHealth, failures: u32) -> ProviderStatus {
    ProviderStatus {
        id: "mock".into(),
        kind: "mock".into(),
        display: "Simulated cloud".into(),
        health,
        last_error: Some("Simulated cloud: connection reset".into()),
        in_flight: 0,
        calls: 9,
        writes: 0,
        rate_limit: None,
        rate_remaining: None,
        failures,
        last_ok_ms: Some(60_000),
        waiting: None,
    }
}

#[test]
fn freshness_of_a_provider() {
    assert!(matches!(
        provider_freshness(&[], "mock", Some(5)),
        Freshness::Stale { since_ms: Some(5), why } if why.contains("not enabled")
    ));
    assert_eq!(
        provider_freshness(&[provider(ProviderHealth::Ok, 0)], "mock", Some(5)),
        Freshness::Current
    );
    // One failure is a hiccup; a run of them means the readings are old.
    assert_eq!(
        provider_freshness(&[provider(ProviderHealth::Degraded, 1)], "mock", None),
        Freshness::Current
    );
    assert!(matches!(
        provider_freshness(&[provider(ProviderHealth::Degraded, 3)], "mock", Some(5)),
        Freshness::Stale { since_ms: Some(60_000), why } if why.contains("connection reset")
    ));
    assert_eq!(
        provider_freshness(&[provider(ProviderHealth::RateLimited, 9)], "mock", None),
        Freshness::Current
    );
}

#[test]
fn sync_rows_go_stale_too() {
    use crate::engine::actors::SyncState;
    assert_eq!(
        sync_status(SyncState::Converged, &Freshness::Current).to_string(),
        "converged"
    );
    let s = sync_status(
        SyncState::Converged,
        &Freshness::Stale {
            since_ms: Some(3_600_000),
            why: "x".into(),
        },
    );
    assert_eq!(s.to_string(), "stale since 01:00");
}

#[test]
fn wait_targets() {
    assert_eq!(Target::of(Action::Stop), Target::Stopped);
    for a in [
        Action::Start,
        Action::Reboot,
        Action::Retry,
        Action::Reinstall,
    ] {
        assert_eq!(Target::of(a), Target::Reachable);
    }
    let r = Target::Reachable;
    assert_eq!(progress(r, &NodeStatus::Running, None), Progress::Reached);
    assert_eq!(
        progress(r, &NodeStatus::RunningUnchecked, None),
        Progress::Pending("running · unchecked".into())
    );
    assert_eq!(
        progress(
            r,
            &NodeStatus::RunningUnreachable { detail: "x".into() },
            None
        ),
        Progress::Pending("running · unreachable".into())
    );
    assert_eq!(
        progress(
            r,
            &NodeStatus::Failed {
                phase: Phase::Configure
            },
            Some("boom")
        ),
        Progress::Failed("failed: configure: boom".into())
    );
    assert!(matches!(
        progress(
            Target::Stopped,
            &NodeStatus::Stale {
                since_ms: None,
                was: Box::new(NodeStatus::Stopped)
            },
            None
        ),
        Progress::Failed(_)
    ));
    assert_eq!(
        progress(Target::Stopped, &NodeStatus::Stopped, None),
        Progress::Reached
    );
    assert_eq!(
        progress(Target::Stopped, &NodeStatus::Running, None),
        Progress::Pending("running".into())
    );
}

fn row(name: &str, status: NodeStatus) -> crate::engine::snapshot::NodeRow {
    crate::engine::snapshot::NodeRow {
        name: name.into(),
        status,
        cluster: "demo".into(),
        role: "worker".into(),
        provider: "mock".into(),
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "debian-12".into(),
        machine: Machine::Running,
        system: System::Ready,
        health: Some(HealthReading::Healthy),
        address: None,
        server_id: Some("sv-1".into()),
        operation: None,
        last_error: None,
        error_class: None,
        pending: None,
        waiting: None,
        planned: true,
        live: true,
        execution: None,
        diffs: vec![],
        ops_started: 0,
        ops_finished: 0,
    }
}

#[test]
fn a_fleet_settles_only_when_every_row_is_running_and_converged() {
    use crate::engine::snapshot::{AppSnapshot, FieldDiff, LockState};
    let mut snap = AppSnapshot::empty("/h".into(), LockState::Unlocked);
    snap.nodes = vec![row("a", NodeStatus::Running), row("b", NodeStatus::Running)];
    assert_eq!(snap.settlement(), Settlement::Settled);
    snap.nodes[1].status = NodeStatus::RunningUnchecked;
    assert_eq!(
        snap.settlement(),
        Settlement::Pending(vec!["node b: running · unchecked".into()])
    );
    snap.nodes[1].status = NodeStatus::Failed {
        phase: Phase::Configure,
    };
    snap.nodes[1].last_error = Some("boom".into());
    assert_eq!(
        snap.settlement(),
        Settlement::Failed(vec!["node b: failed: configure (boom)".into()])
    );
    // Running, but not what the plan says: not in sync.
    snap.nodes[1] = row("b", NodeStatus::Running);
    snap.nodes[1].diffs.push(FieldDiff {
        field: "offer".into(),
        planned: "sim-large".into(),
        observed: "sim-small".into(),
    });
    assert!(matches!(snap.settlement(), Settlement::Failed(r) if r[0].contains("offer")));
}

#[test]
fn a_zone_waiting_once_every_node_has_settled_is_a_result_not_progress() {
    use crate::engine::actors::SyncState;
    use crate::engine::snapshot::{AppSnapshot, LockState, SyncRow};
    let zone = SyncRow {
        name: "example.test".into(),
        provider: "mock".into(),
        status: SyncStatus::Waiting,
        state: SyncState::Waiting,
        summary: String::new(),
        waiting: Some("node east-1 has no address yet".into()),
        last_error: None,
        error_class: None,
        previous_error: None,
        operation: None,
        planned: true,
        live: true,
        tasks: vec![],
        pending: None,
    };
    let mut snap = AppSnapshot::empty("/h".into(), LockState::Unlocked);
    snap.nodes = vec![
        row("a", NodeStatus::Running),
        row("b", NodeStatus::Provisioning),
    ];
    snap.zones = vec![zone];
    // A node still on its way may bring the address: the zone waits with it.
    assert!(matches!(
        snap.settlement(),
        Settlement::Pending(r) if r.len() == 2 && r[1].contains("zone example.test: waiting")
    ));
    // Every node settled (east-1 is not even planned any more): nothing will bring it.
    snap.nodes[1].status = NodeStatus::Running;
    assert_eq!(
        snap.settlement(),
        Settlement::Failed(vec![
            "zone example.test: waiting (node east-1 has no address yet), and every node has \
             settled: it will not come without a plan change"
                .into()
        ])
    );
    snap.zones[0].status = SyncStatus::Converged;
    assert_eq!(snap.settlement(), Settlement::Settled);
}
