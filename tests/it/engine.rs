//! The engine against the simulated cloud, with paused tokio time: apply, node actions and
//! their refusals, out-of-band changes, interrupted executions, ambiguous writes, derived
//! resources and teardown.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use legion::core::oplog::{OpKind, WriteOutcome};
use legion::core::secret::Secret;
use legion::engine::Action;
use legion::engine::EngineError;
use legion::engine::plan::PlanEdit;
use legion::engine::snapshot::{ApplyView, LockState};
use legion::engine::snapshot::{Machine, Snap, SyncState, System};
use legion::engine::state::model::{ExecStatus, Phase};
use legion::providers::{ErrorKind, FirewallRule, Protocol, RecordType, ServerStatus};
use support::{Harness, PASSWORD, apply_ok};

fn ready(n: &legion::engine::snapshot::NodeRow) -> bool {
    n.machine == Machine::Running && n.system == System::Ready
}

#[tokio::test(start_paused = true)]
async fn apply_converges_nodes_zones_and_firewall() {
    let h = Harness::new().await;
    h.cluster_zone("prod.example.test").await;
    for (n, r) in [("a", "sim-east"), ("b", "sim-east"), ("c", "sim-west")] {
        h.add_node(n, r).await;
    }
    // Planning touches nothing at the provider.
    assert!(h.cloud.servers().is_empty());
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    for n in ["a", "b", "c"] {
        let row = h.node(n, ready).await;
        assert!(row.address.is_some());
        assert_eq!(row.execution.unwrap().status, ExecStatus::Succeeded);
    }
    assert_eq!(h.cloud.servers().len(), 3);
    let zone = h
        .cloud
        .zones()
        .into_iter()
        .find(|z| z.name == "prod.example.test")
        .unwrap();
    let names: Vec<_> = zone
        .rrsets
        .iter()
        .filter(|r| r.rtype == RecordType::A)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, vec!["a", "b", "c"]);
    let fw = h.cloud.firewalls();
    assert_eq!(fw.len(), 1);
    assert_eq!(fw[0].applied_to.len(), 3);
    let peers = fw[0]
        .rules
        .iter()
        .find(|r| r.port.as_deref() == Some("4413"))
        .unwrap();
    assert_eq!(
        peers.sources.len(),
        6,
        "an IPv4 and an IPv6 peer source per node"
    );
    // And management access: the SSH port, from where the nodes see Legion.
    assert!(
        fw[0]
            .rules
            .iter()
            .any(|r| r.port.as_deref() == Some("22") && r.sources == ["127.0.0.1/32"]),
        "{:?}",
        fw[0].rules
    );
    let zrow = snap
        .zones
        .iter()
        .find(|z| z.name == "prod.example.test")
        .unwrap();
    assert_eq!(zrow.state, SyncState::Converged);
}

#[tokio::test(start_paused = true)]
async fn every_node_action_and_every_refusal() {
    let h = Harness::new().await;
    h.add_node("web", "sim-east").await;
    // Before apply: nothing to act on.
    let e = h
        .engine
        .node_action("web".into(), Action::Start)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no server yet"), "{e}");
    let e = h
        .engine
        .node_action("web".into(), Action::Retry)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nothing to retry"), "{e}");
    let e = h
        .engine
        .node_action("ghost".into(), Action::Start)
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::NotFound(_)), "{e}");
    h.apply().await;
    h.node("web", ready).await;
    let id = h.server_id("web");

    let e = h
        .engine
        .node_action("web".into(), Action::Start)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already running"), "{e}");
    let e = h
        .engine
        .node_action("web".into(), Action::Retry)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("succeeded"), "{e}");

    h.engine
        .node_action("web".into(), Action::Stop)
        .await
        .unwrap();
    // A second action while the first runs is refused with the reason.
    let e = h
        .engine
        .node_action("web".into(), Action::Reboot)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("stop is in progress"), "{e}");
    let row = h.node("web", |n| n.machine == Machine::Stopped).await;
    assert!(
        matches!(row.system, System::Unreachable(_)),
        "{:?}",
        row.system
    );
    assert_eq!(h.cloud.server(&id).unwrap().status, ServerStatus::Off);
    let _ = row.ops_finished;

    let e = h
        .engine
        .node_action("web".into(), Action::Stop)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already stopped"), "{e}");
    let e = h
        .engine
        .node_action("web".into(), Action::Reboot)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("start it instead"), "{e}");

    let row = h.act("web", Action::Start).await;
    assert_eq!(row.machine, Machine::Running);
    assert!(row.last_error.is_none());
    h.node("web", ready).await;
    assert_eq!(h.cloud.server(&id).unwrap().status, ServerStatus::Running);

    let row = h.act("web", Action::Reboot).await;
    assert!(row.last_error.is_none(), "{:?}", row.last_error);
    h.node("web", ready).await;

    let row = h.act("web", Action::Reinstall).await;
    assert!(row.last_error.is_none(), "{:?}", row.last_error);
    let exec = row.execution.unwrap();
    assert_eq!(exec.status, ExecStatus::Succeeded);
    assert_eq!(exec.phases[0].phase, Phase::ImageReset);
    assert_eq!(row.machine, Machine::Running);
    assert!(
        h.cloud
            .calls()
            .iter()
            .any(|(m, p)| m == "POST" && (p.contains("rebuild") || p.contains("reset"))),
        "{:?}",
        h.cloud.calls()
    );
    // Same server, reset in place.
    assert_eq!(h.server_id("web"), id);

    let log = h.engine.oplog().recent(1000, Some("node/web"));
    assert!(log.iter().any(|e| matches!(
        &e.kind,
        OpKind::Action {
            accepted: false,
            ..
        }
    )));
    assert!(
        log.iter()
            .any(|e| matches!(&e.kind, OpKind::Transition { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_resumes_a_failed_phase() {
    let h = Harness::new().await;
    h.add_node("db", "sim-east").await;
    h.apply().await;
    h.node("db", ready).await;
    let id = h.server_id("db");
    h.cloud.fail_phase(&id, "configure", 1);
    let row = h.act("db", Action::Reinstall).await;
    assert_eq!(row.system, System::Failed(Phase::Configure));
    assert!(row.last_error.unwrap().contains("configure"));
    let exec = row.execution.unwrap();
    assert_eq!(exec.status, ExecStatus::Failed);
    let row = h.act("db", Action::Retry).await;
    assert!(row.last_error.is_none());
    let row = h.node("db", ready).await;
    let exec = row.execution.unwrap();
    assert_eq!(exec.status, ExecStatus::Succeeded);
    // The image reset ran once: retry resumed at configure.
    let resets = h
        .cloud
        .calls()
        .iter()
        .filter(|(m, p)| m == "POST" && (p.contains("rebuild") || p.contains("reset")))
        .count();
    assert_eq!(resets, 1, "{:?}", h.cloud.calls());
}

#[tokio::test(start_paused = true)]
async fn a_second_apply_is_refused_while_one_runs() {
    let h = Harness::new().await;
    h.cloud.set_latency(Duration::from_secs(5));
    h.add_node("a", "sim-east").await;
    let first = h.engine.apply().await.unwrap();
    let e = h.engine.apply().await.unwrap_err();
    assert!(
        matches!(e, EngineError::ApplyRunning(id) if id == first),
        "{e}"
    );
    assert!(e.to_string().contains("already running"));
    // Node actions do not take the apply lock: the node answers for itself.
    h.engine
        .wait_for(|s| s.node("a").is_some_and(|n| n.operation.is_some()))
        .await
        .unwrap();
    let e = h
        .engine
        .node_action("a".into(), Action::Stop)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("in progress"), "{e}");
    let snap = h.engine.wait_apply(first).await.unwrap();
    assert!(apply_ok(&snap));
    let second = h.engine.apply().await.unwrap();
    assert!(second > first);
    h.engine.wait_apply(second).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn out_of_band_changes_reach_the_snapshot_within_one_interval() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    h.add_node("b", "sim-east").await;
    h.apply().await;
    h.node("a", ready).await;
    h.node("b", ready).await;
    let interval = support::timings().observe_idle;

    let start = tokio::time::Instant::now();
    assert!(h.cloud.stop_out_of_band(&h.server_id("a")));
    let row = h.node("a", |n| n.machine == Machine::Stopped).await;
    assert!(
        start.elapsed() <= interval + Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(row.system, System::Unreachable(_)));
    // Shown, never silently overwritten: nobody starts it again.
    tokio::time::sleep(interval * 3).await;
    assert_eq!(
        h.cloud.server(&h.server_id("a")).unwrap().status,
        ServerStatus::Off
    );

    let b_id = h.server_id("b");
    let start = tokio::time::Instant::now();
    assert!(h.cloud.delete_out_of_band(&b_id));
    let row = h.node("b", |n| n.machine == Machine::Missing).await;
    assert!(start.elapsed() <= interval + Duration::from_secs(1));
    assert!(row.last_error.unwrap().contains("no longer exists"));
    // An apply re-creates it, explicitly. The stopped node's peer list still names b's
    // old address: the apply says so instead of claiming convergence.
    let snap = h.apply().await;
    match &snap.apply {
        ApplyView::Finished {
            ok: false,
            failed,
            waiting,
            ..
        } => {
            assert!(failed.is_empty(), "{:?}", snap.apply);
            assert_eq!(waiting.len(), 1, "{waiting:?}");
            assert!(waiting[0].contains("node a: peers"), "{waiting:?}");
            assert!(waiting[0].contains("start it"), "{waiting:?}");
        }
        other => panic!("{other:?}"),
    }
    let row = h.node("b", ready).await;
    assert_ne!(row.server_id.unwrap(), b_id);
    // Started and applied again: its peers are rewritten, and the apply converges.
    h.engine
        .node_action("a".into(), Action::Start)
        .await
        .unwrap();
    h.node("a", |n| {
        n.machine == Machine::Running && n.operation.is_none()
    })
    .await;
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_execution_is_marked_and_resumed_without_duplicates() {
    let h = Harness::new().await;
    h.cloud.set_latency(Duration::from_secs(2));
    h.add_node("a", "sim-east").await;
    h.engine.apply().await.unwrap();
    // Wait until the add is past provisioning and into a later phase, then "crash".
    h.engine
        .wait_for(|s| {
            s.node("a").is_some_and(|n| {
                matches!(
                    n.system,
                    System::Installing(Phase::WaitReachable | Phase::Configure)
                )
            })
        })
        .await
        .unwrap();
    h.engine.logout().await.unwrap();
    let engine = h.restart();
    engine.unlock(Secret::new(PASSWORD)).await.unwrap();
    let snap = engine
        .wait_for(|s| s.node("a").is_some_and(|n| n.live))
        .await
        .unwrap();
    let row = snap.node("a").unwrap();
    let exec = row.execution.clone().unwrap();
    assert_eq!(exec.status, ExecStatus::Interrupted);
    assert!(
        matches!(row.system, System::Interrupted(_)),
        "{:?}",
        row.system
    );
    engine.node_action("a".into(), Action::Retry).await.unwrap();
    let snap = engine
        .wait_for(|s| {
            s.node("a")
                .is_some_and(|n| n.operation.is_none() && ready(n))
        })
        .await
        .unwrap();
    assert_eq!(
        snap.node("a").unwrap().execution.as_ref().unwrap().status,
        ExecStatus::Succeeded
    );
    assert_eq!(h.cloud.create_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn interrupted_during_provision_adopts_the_server_instead_of_creating_another() {
    let h = Harness::new().await;
    h.cloud.set_latency(Duration::from_secs(2));
    h.add_node("a", "sim-east").await;
    h.engine.apply().await.unwrap();
    h.engine
        .wait_for(|s| {
            s.node("a")
                .is_some_and(|n| n.system == System::Installing(Phase::Provision))
        })
        .await
        .unwrap();
    // The create is on the wire; let the cloud apply it, then "crash" before Legion
    // records the server id.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    h.engine.logout().await.unwrap();
    let engine = h.restart();
    engine.unlock(Secret::new(PASSWORD)).await.unwrap();
    engine.node_action("a".into(), Action::Retry).await.unwrap();
    engine
        .wait_for(|s| {
            s.node("a")
                .is_some_and(|n| n.operation.is_none() && ready(n))
        })
        .await
        .unwrap();
    assert_eq!(h.cloud.servers().len(), 1);
    assert_eq!(h.cloud.create_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_create_response_does_not_duplicate_the_server() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    h.apply().await;
    h.node("a", ready).await;
    // The next write on the wire is b's create: the cloud applies it and the response
    // is lost.
    h.add_node("b", "sim-east").await;
    h.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    h.node("b", ready).await;
    assert_eq!(h.cloud.create_count(), 2);
    assert_eq!(h.cloud.servers().len(), 2);
    let recovered = h
        .engine
        .oplog()
        .recent(1000, Some("node/b"))
        .iter()
        .any(|e| {
            matches!(
                &e.kind,
                OpKind::ProviderWrite {
                    outcome: WriteOutcome::Recovered,
                    ..
                }
            )
        });
    assert!(recovered, "{:#?}", h.engine.oplog().recent(1000, None));
}

#[tokio::test(start_paused = true)]
async fn derived_records_and_rules_follow_endpoints_and_noop_when_unchanged() {
    let h = Harness::new().await;
    h.cluster_zone("prod.example.test").await;
    h.node_record("prod.example.test", "www", "a").await;
    h.add_node("a", "sim-east").await;
    h.apply().await;
    h.node("a", ready).await;
    let sets_before = h.cloud.calls().iter().filter(|(m, _)| m != "GET").count();

    // An unrelated state change wakes the zone actor; its signature is unchanged: no write.
    // (A cluster of its own, with no nodes: a firewall rule needs nodes now.)
    h.engine
        .edit_plan(PlanEdit::UpsertCluster {
            name: "other".into(),
            cluster: Default::default(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let writes_after: Vec<_> = h
        .cloud
        .calls()
        .into_iter()
        .filter(|(m, _)| m != "GET")
        .collect();
    assert_eq!(
        writes_after.len(),
        sets_before,
        "no-op wake wrote: {writes_after:?}"
    );

    // A new node gets its record and peer rule after it has an endpoint.
    h.add_node("b", "sim-west").await;
    h.apply().await;
    let b = h.node("b", ready).await;
    let b_ip = b.address.unwrap();
    let zone = h
        .cloud
        .zones()
        .into_iter()
        .find(|z| z.name == "prod.example.test")
        .unwrap();
    assert!(
        zone.rrsets
            .iter()
            .any(|r| r.name == "b" && r.values == vec![b_ip.clone()])
    );
    let fw = h
        .cloud
        .firewalls()
        .into_iter()
        .find(|f| f.name == "legion-prod")
        .unwrap();
    assert!(
        fw.rules
            .iter()
            .any(|r| r.sources.contains(&format!("{b_ip}/32")))
    );

    // Removing a node removes its derived record and its peer source.
    h.engine
        .edit_plan(PlanEdit::RemoveNode { name: "b".into() })
        .await
        .unwrap();
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    assert!(snap.node("b").is_none());
    let zone = h
        .cloud
        .zones()
        .into_iter()
        .find(|z| z.name == "prod.example.test")
        .unwrap();
    assert!(!zone.rrsets.iter().any(|r| r.name == "b"));
    let fw = h
        .cloud
        .firewalls()
        .into_iter()
        .find(|f| f.name == "legion-prod")
        .unwrap();
    assert!(
        !fw.rules
            .iter()
            .any(|r| r.sources.contains(&format!("{b_ip}/32")))
    );
    assert_eq!(h.cloud.servers().len(), 1, "b's server was destroyed");
}

#[tokio::test(start_paused = true)]
async fn a_zone_waits_for_endpoints_instead_of_failing() {
    let h = Harness::new().await;
    h.cloud.set_latency(Duration::from_secs(3));
    h.zone("w.example.test").await;
    h.node_record("w.example.test", "www", "a").await;
    h.add_node("a", "sim-east").await;
    h.engine.apply().await.unwrap();
    // While the node provisions, the zone shows why it waits (once the zone has taken
    // the apply in: before, it waits for the apply itself).
    let snap = h
        .engine
        .wait_for(|s| {
            s.zones.iter().any(|z| {
                z.state == SyncState::Waiting
                    && z.waiting
                        .as_deref()
                        .is_some_and(|w| !w.contains("not applied yet"))
            })
        })
        .await
        .unwrap();
    let z = snap
        .zones
        .iter()
        .find(|z| z.name == "w.example.test")
        .unwrap();
    assert!(
        z.waiting
            .as_deref()
            .unwrap()
            .contains("node a has no address yet"),
        "{z:?}"
    );
    let snap = h
        .engine
        .wait_for(|s| matches!(s.apply, ApplyView::Finished { .. }))
        .await
        .unwrap();
    let z = snap
        .zones
        .iter()
        .find(|z| z.name == "w.example.test")
        .unwrap();
    assert_eq!(z.state, SyncState::Converged, "{z:?}");
}

#[tokio::test(start_paused = true)]
async fn locked_engines_refuse_and_state_survives_restart() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    h.apply().await;
    h.node("a", ready).await;
    h.engine.logout().await.unwrap();
    assert_eq!(h.engine.snapshot().lock, LockState::Locked);
    assert!(matches!(h.engine.apply().await, Err(EngineError::Locked)));
    assert!(matches!(
        h.engine.node_action("a".into(), Action::Stop).await,
        Err(EngineError::Locked)
    ));
    let e = h.engine.unlock(Secret::new("wrong")).await.unwrap_err();
    assert!(e.is_wrong_password(), "{e}");
    h.engine.unlock(Secret::new(PASSWORD)).await.unwrap();
    let row = h.node("a", ready).await;
    assert_eq!(row.server_id.unwrap(), h.server_id("a"));
    // Password change re-encrypts: the old one no longer opens the state.
    h.engine
        .change_password(Secret::new(PASSWORD), Secret::new("new pass"))
        .await
        .unwrap();
    h.engine.logout().await.unwrap();
    assert!(
        h.engine
            .unlock(Secret::new(PASSWORD))
            .await
            .unwrap_err()
            .is_wrong_password()
    );
    h.engine.unlock(Secret::new("new pass")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stored_resource_without_an_actor_shows_as_unknown() {
    use legion::engine::snapshot::assemble;
    use legion::engine::state::model::{NodePlan, State};
    let mut state = State::new("i".into());
    state.plan.nodes.insert(
        "a".into(),
        NodePlan {
            uid: "u".into(),
            cluster: "c".into(),
            role: "r".into(),
            provider: "mock".into(),
            region: "x".into(),
            offer: "o".into(),
            image: "i".into(),
            boot_mode: Default::default(),
        },
    );
    let snap = assemble(
        1,
        "h".into(),
        &state,
        &Default::default(),
        vec![],
        ApplyView::Idle,
    );
    let row = snap.node("a").unwrap();
    assert_eq!(row.machine, Machine::Unknown);
    assert!(!row.live);
    let _ = Snap::Node; // the board type exists for faces that join themselves
}

#[tokio::test(start_paused = true)]
async fn a_lost_delete_response_still_tears_the_node_down() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    h.add_node("b", "sim-east").await;
    h.apply().await;
    h.node("b", ready).await;
    let b_id = h.server_id("b");
    h.engine
        .edit_plan(PlanEdit::RemoveNode { name: "b".into() })
        .await
        .unwrap();
    // The node is planned absent but nothing happens before apply.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(h.cloud.server(&b_id).is_some());
    let row = h.engine.snapshot().node("b").cloned().unwrap();
    assert!(!row.planned);
    assert!(row.diffs.iter().any(|d| d.field == "presence"));
    h.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    assert!(h.cloud.server(&b_id).is_none());
    assert!(snap.node("b").is_none());
    let log = h.engine.oplog().recent(1000, Some("node/b"));
    assert!(log.iter().any(|e| matches!(&e.kind, OpKind::ProviderWrite { method, outcome: WriteOutcome::Recovered, .. } if method == "DELETE")), "{log:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_lost_firewall_update_is_verified_not_repeated() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    h.apply().await;
    h.node("a", ready).await;
    h.engine
        .edit_plan(PlanEdit::AddFirewallRule {
            cluster: "prod".into(),
            rule: FirewallRule {
                protocol: Protocol::Tcp,
                port: Some("443".into()),
                sources: vec!["0.0.0.0/0".into()],
                description: "https".into(),
            },
        })
        .await
        .unwrap();
    h.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    let fw = h.cloud.firewalls();
    assert_eq!(fw.len(), 1, "no second firewall");
    assert!(fw[0].rules.iter().any(|r| r.port.as_deref() == Some("443")));
    let puts = h
        .cloud
        .calls()
        .iter()
        .filter(|(m, p)| m == "PUT" && p.ends_with("/rules"))
        .count();
    let log = h.engine.oplog().recent(1000, Some("firewall/prod"));
    assert!(
        log.iter().any(|e| matches!(
            &e.kind,
            OpKind::ProviderWrite {
                outcome: WriteOutcome::Recovered,
                ..
            }
        )),
        "{log:#?}"
    );
    // The first apply created the firewall with its rules (it waited for the node's
    // management source and addresses); this one's PUT was lost and verified, not
    // repeated.
    assert_eq!(puts, 1, "{:?}", h.cloud.calls());
}

#[tokio::test(start_paused = true)]
async fn a_failing_provider_shows_degraded_and_nothing_exits() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    h.apply().await;
    h.node("a", ready).await;
    h.cloud.set_faults(1.0, 0.0);
    assert!(h.engine.refresh().await.is_err());
    let snap = h
        .wait(|s| {
            s.providers
                .iter()
                .any(|p| p.health == legion::providers::ProviderHealth::Degraded)
        })
        .await;
    let p = &snap.providers[0];
    assert!(
        p.last_error
            .as_deref()
            .unwrap()
            .contains("simulated failure"),
        "{p:?}"
    );
    // The node keeps its last known state; the engine keeps serving.
    assert_eq!(snap.node("a").unwrap().machine, Machine::Running);
    h.cloud.set_faults(0.0, 0.0);
    h.engine.refresh().await.unwrap();
    h.wait(|s| s.providers[0].health == legion::providers::ProviderHealth::Ok)
        .await;
}

#[tokio::test(start_paused = true)]
async fn secrets_stay_out_of_debug_logs_and_snapshots() {
    use legion::engine::state::model::{ProviderConfig, State};
    let mut state = State::new("i".into());
    let mut creds = legion::providers::Credentials::new();
    creds.insert("token".into(), Secret::new("s3cr3t-t0ken"));
    state.providers.insert(
        "x".into(),
        ProviderConfig {
            kind: "x".into(),
            credentials: creds,
        },
    );
    assert!(!format!("{state:?}").contains("s3cr3t"));

    let h = Harness::new().await;
    let mut creds = legion::providers::Credentials::new();
    creds.insert("seed".into(), Secret::new("424242"));
    h.engine
        .configure_provider("mock".into(), creds)
        .await
        .unwrap();
    h.add_node("a", "sim-east").await;
    h.apply().await;
    h.engine.logout().await.unwrap();
    let json = serde_json::to_string(&*h.engine.snapshot()).unwrap();
    assert!(!json.contains(PASSWORD));
    let log = std::fs::read_to_string(h.dir.path().join("home/logs/operations.jsonl")).unwrap();
    assert!(!log.is_empty());
    assert!(!log.contains(PASSWORD) && !log.contains("424242"));
    // The state file holds them only encrypted.
    let raw = std::fs::read(h.dir.path().join("home/state.legion")).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"424242"));
}

#[tokio::test(start_paused = true)]
async fn a_domain_is_delegated_to_its_zone_after_the_zone_exists() {
    use legion::engine::state::model::DomainPlan;
    let h = Harness::new().await;
    h.zone("shop.example.test").await;
    let e = h
        .engine
        .edit_plan(PlanEdit::UpsertDomain {
            name: "shop.example.test".into(),
            domain: DomainPlan {
                registrar: "mock".into(),
                zone: "nope.example.test".into(),
            },
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no zone"), "{e}");
    h.engine
        .edit_plan(PlanEdit::UpsertDomain {
            name: "shop.example.test".into(),
            domain: DomainPlan {
                registrar: "mock".into(),
                zone: "shop.example.test".into(),
            },
        })
        .await
        .unwrap();
    // Nothing at the registrar before apply.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        h.cloud
            .domains()
            .iter()
            .all(|d| d.nameservers != vec!["ns1.sim.invalid", "ns2.sim.invalid"])
    );
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    let snap = h
        .wait(|s| {
            s.domains
                .first()
                .is_some_and(|d| d.state == SyncState::Converged)
        })
        .await;
    assert!(
        snap.domains[0].summary.contains("ns1.sim.invalid"),
        "{:?}",
        snap.domains[0]
    );
    let d = h
        .cloud
        .domains()
        .into_iter()
        .find(|d| d.name == "shop.example.test")
        .unwrap();
    let zone = h
        .cloud
        .zones()
        .into_iter()
        .find(|z| z.name == "shop.example.test")
        .unwrap();
    assert_eq!(d.nameservers, zone.nameservers);
}

/// When a cluster gains a member, the nodes already in it are reconfigured with the new
/// peer list during the apply (and only then): configure and readiness, no new server.
#[tokio::test(start_paused = true)]
async fn a_new_member_reconfigures_the_cluster_peers() {
    use legion::engine::state::model::ExecutionKind;
    let h = Harness::new().await;
    for n in ["a", "b"] {
        h.add_node(n, "sim-east").await;
    }
    assert!(apply_ok(&*h.apply().await));
    let a = h.node("a", ready).await;
    assert_eq!(a.execution.unwrap().kind, ExecutionKind::Add);
    // A second apply with nothing changed reconfigures nothing.
    assert!(apply_ok(&*h.apply().await));
    assert_eq!(
        h.node("a", ready).await.execution.unwrap().kind,
        ExecutionKind::Add
    );

    h.add_node("c", "sim-west").await;
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    for n in ["a", "b"] {
        let row = h.node(n, ready).await;
        let e = row.execution.unwrap();
        assert_eq!(e.kind, ExecutionKind::Reconfigure, "{n}");
        assert_eq!(e.status, ExecStatus::Succeeded, "{n}");
        assert!(e.phases.iter().any(|p| p.phase == Phase::Configure));
    }
    let c = h.node("c", ready).await;
    assert_eq!(c.execution.unwrap().kind, ExecutionKind::Add);
    assert_eq!(h.cloud.servers().len(), 3, "no server re-created");
    let log = h.engine.oplog().recent(1000, Some("node/a"));
    assert!(
        log.iter()
            .any(|e| e.message.contains("cluster membership changed")),
        "the reason is logged"
    );
}

#[tokio::test(start_paused = true)]
async fn a_simulated_node_without_a_sandbox_says_what_is_missing_for_a_shell() {
    let h = Harness::new().await;
    h.add_node("a", "sim-east").await;
    let snap = h.apply().await;
    assert!(apply_ok(&snap));
    h.node("a", ready).await;
    let err = h.engine.ssh_access("a".into()).await.unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.code(), "refused", "{msg}");
    assert!(msg.contains("a is a simulated node"), "{msg}");
    assert!(msg.contains("install openssh-server"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn a_server_created_during_a_slow_list_is_not_taken_for_gone() {
    // Lists answer as of when they started, 5 s later: every create of the apply lands
    // while one is under way.
    let h = Harness::new().await;
    h.cloud.set_list_lag(Duration::from_secs(5));
    for (n, r) in [("a", "sim-east"), ("b", "sim-east"), ("c", "sim-west")] {
        h.add_node(n, r).await;
    }
    let snap = h.apply().await;
    assert!(apply_ok(&snap), "{:?}", snap.apply);
    // Several readings later, still there and ready, never called missing.
    tokio::time::sleep(Duration::from_secs(30)).await;
    for n in ["a", "b", "c"] {
        let row = h.node(n, ready).await;
        assert_ne!(row.machine, Machine::Missing);
        assert!(row.last_error.is_none(), "{row:?}");
    }
    let log = h.engine.oplog().recent(10_000, None);
    assert!(
        !log.iter().any(|e| e.message.contains("no longer exists")),
        "a fresh server was taken for deleted"
    );
    assert_eq!(h.cloud.servers().len(), 3);
}
