//! A node's work: the operations its actor runs on spawned futures (provision, power,
//! image reset, teardown) and the durable executions with their phases. Each reports back
//! to the actor through [`Event`]s and persists its phase before and after each step; the
//! actor (`node.rs`) decides what runs, this file does it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::error::ActorError;
use super::machine::{Action, Machine, System};
use super::replace;
pub(super) use super::step::{Event, connected, persist};
use super::{ActorEnv, Connected};
use crate::core::time::now_ms;
use crate::engine::state::change::Key;
use crate::engine::state::model::{
    ClusterTracked, Execution, ExecutionKind, NodePlan, Phase, ServerReading, TrackedNode,
    membership,
};
use crate::providers::{
    LABEL_CLUSTER, LABEL_INSTALL, LABEL_MANAGED, LABEL_NODE, NodeAgent, NodeConfig, NodeTarget,
    ObservedServer, ServerSpec, ServerStatus, StopMode,
};

pub(super) enum Op {
    Execute {
        /// `None` resumes the recorded execution.
        fresh: Option<ExecutionKind>,
        forget_server: bool,
    },
    Power(Action),
    Teardown,
}

impl Op {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Op::Execute {
                fresh: Some(ExecutionKind::Reinstall),
                ..
            } => "reinstall",
            Op::Execute {
                fresh: Some(ExecutionKind::Resize),
                ..
            } => "resize",
            Op::Execute {
                fresh: Some(ExecutionKind::Replace),
                ..
            } => "replace",
            Op::Execute { fresh: None, .. } => "retry",
            Op::Execute { .. } => "provisioning",
            Op::Power(Action::Start) => "start",
            Op::Power(Action::Stop) => "stop",
            Op::Power(_) => "reboot",
            Op::Teardown => "teardown",
        }
    }
}

pub(super) fn record_addresses(env: &ActorEnv, name: &str, server: &ObservedServer) {
    let differs = env.cell.read(|s| {
        s.tracked.nodes.get(name).is_some_and(|t| {
            t.server_id.as_deref() == Some(server.id.as_str())
                && (t.ipv4 != server.ipv4 || t.ipv6 != server.ipv6)
        })
    });
    if differs {
        env.cell.change(&[Key::TrackedNode(name.to_string())], |s| {
            if let Some(t) = s.tracked.nodes.get_mut(name) {
                t.ipv4 = server.ipv4.clone();
                t.ipv6 = server.ipv6.clone();
            }
        });
    }
}

pub(super) fn agent_target(env: &ActorEnv, name: &str) -> Option<(Arc<dyn NodeAgent>, NodeTarget)> {
    let (provider, target) = env.cell.read(|s| {
        let t = s.tracked.nodes.get(name)?;
        Some((
            t.provider.clone(),
            NodeTarget {
                name: name.to_string(),
                uid: t.uid.clone(),
                server_id: t.server_id.clone()?,
                address: t.address().map(String::from),
            },
        ))
    })?;
    let own = env.providers.get(&provider)?.api.node_agent();
    let agent: Arc<dyn NodeAgent> = match (own, env.ssh.clone()) {
        (Some(own), Some(ssh)) if env.ssh_behind_own_agents => {
            Arc::new(crate::engine::ssh_agent::LayeredAgent { own, ssh })
        }
        (Some(own), _) => own,
        (None, ssh) => ssh?,
    };
    Some((agent, target))
}

/// The managed key's id at the provider, uploading it the first time (providers that
/// manage SSH keys only). The new server then accepts it from its first boot.
pub(super) async fn ensure_managed_key(
    env: &ActorEnv,
    provider: &Connected,
    res: &str,
) -> Result<Option<String>, ActorError> {
    let _one_at_a_time = provider.key_upload.lock().await;
    let (known, public) = env.cell.read(|s| {
        (
            s.tracked.ssh_keys.get(&provider.id).cloned(),
            s.managed_key
                .as_ref()
                .map(|k| k.public_openssh().to_string()),
        )
    });
    let (Some(keys), Some(public)) = (provider.api.ssh_keys(), public) else {
        return Ok(known);
    };
    if known.is_some() {
        return Ok(known);
    }
    let name = format!("legion-{}", env.install_id);
    let id = keys
        .ensure_key(&name, &public, res)
        .await
        .map_err(|e| ActorError::ProviderWhile {
            doing: "uploading Legion's SSH key",
            source: Box::new(e),
        })?;
    persist(env, &[Key::SshKey(provider.id.clone())], |s| {
        s.tracked.ssh_keys.insert(provider.id.clone(), id.clone());
    })
    .await?;
    Ok(Some(id))
}

pub(super) async fn set_execution(
    env: &ActorEnv,
    name: &str,
    f: impl FnOnce(&mut Execution),
) -> Result<(), ActorError> {
    persist(env, &[Key::TrackedNode(name.to_string())], |s| {
        if let Some(e) = s
            .tracked
            .nodes
            .get_mut(name)
            .and_then(|t| t.execution.as_mut())
        {
            f(e);
        }
    })
    .await
}

/// Run (or resume) the node's execution phase by phase, persisting each step.
pub(super) async fn run_execution(
    env: &ActorEnv,
    name: &str,
    fresh: Option<ExecutionKind>,
    forget_server: bool,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    // The plan as of the last apply: edits made since then wait for the next apply.
    let plan = env
        .cell
        .read(|s| {
            s.tracked
                .applied_plan
                .as_ref()
                .and_then(|p| p.nodes.get(name))
                .or_else(|| s.plan.nodes.get(name))
                .cloned()
        })
        .ok_or_else(|| ActorError::precondition(format!("{name} is not in the plan")))?;
    let keys = [
        Key::TrackedNode(name.to_string()),
        Key::ObservedServer(name.to_string()),
        Key::NextExecutionId,
    ];
    persist(env, &keys, |s| {
        let id = s.next_execution_id;
        let tracked = s
            .tracked
            .nodes
            .entry(name.to_string())
            .or_insert_with(|| TrackedNode {
                uid: plan.uid.clone(),
                provider: plan.provider.clone(),
                server_id: None,
                ipv4: None,
                ipv6: None,
                region: plan.region.clone(),
                offer: plan.offer.clone(),
                image: plan.image.clone(),
                host_key: None,
                configured_membership: None,
                configured_peers: None,
                login: None,
                image_user: None,
                execution: None,
            });
        if forget_server {
            tracked.server_id = None;
            tracked.ipv4 = None;
            tracked.ipv6 = None;
            s.observed.servers.remove(name);
        }
        match fresh {
            Some(kind) => {
                tracked.execution = Some(Execution::new(id, kind));
                s.next_execution_id += 1;
            }
            None => {
                if let Some(e) = tracked.execution.as_mut() {
                    e.resume();
                }
            }
        }
    })
    .await?;
    let kind = env
        .cell
        .read(|s| {
            s.tracked
                .nodes
                .get(name)
                .and_then(|t| t.execution.as_ref())
                .map(|e| e.kind)
        })
        .ok_or_else(|| ActorError::precondition(format!("{name} has no execution to run")))?;
    let label = match kind {
        ExecutionKind::Add => "add",
        ExecutionKind::Reinstall => "reinstall",
        ExecutionKind::Reconfigure => "reconfigure",
        ExecutionKind::Resize => "resize",
        ExecutionKind::Replace => "replace",
    };
    loop {
        let next = env.cell.read(|s| {
            s.tracked
                .nodes
                .get(name)
                .and_then(|t| t.execution.as_ref())
                .and_then(Execution::next_phase)
        });
        let Some(phase) = next else { break };
        set_execution(env, name, |e| e.start_phase(phase)).await?;
        let _ = events.send(Event::System(System::Installing(phase)));
        let _ = events.send(Event::Operation(format!("{label}: {phase}")));
        match run_phase(env, name, &plan, phase, fresh.is_none(), events).await {
            Ok(()) => set_execution(env, name, |e| e.finish_phase(phase)).await?,
            Err(e) => {
                set_execution(env, name, |ex| ex.fail_phase(phase, e.to_string())).await?;
                let _ = events.send(Event::System(System::Failed(phase)));
                return Err(ActorError::Phase {
                    phase,
                    source: Box::new(e),
                });
            }
        }
    }
    let _ = events.send(Event::System(System::Unknown));
    Ok(())
}

pub(super) async fn run_phase(
    env: &ActorEnv,
    name: &str,
    plan: &NodePlan,
    phase: Phase,
    resumed: bool,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    let provider = &connected(env, &plan.provider)?;
    let res = format!("node/{name}");
    match phase {
        Phase::Provision => {
            let replacing = env.cell.read(|s| {
                let e = s.tracked.nodes.get(name)?.execution.as_ref()?;
                (e.kind == ExecutionKind::Replace).then_some(e.id)
            });
            let (server_name, old) = match replacing {
                Some(exec) => (
                    replace::successor_name(name, exec),
                    replace::retire_old(env, name, plan).await?,
                ),
                None => (name.to_string(), None),
            };
            let target = Provision {
                server_name: &server_name,
                never_adopt: old.as_deref(),
                resumed,
            };
            provision(env, name, plan, provider, &res, target, events).await
        }
        Phase::ImageReset => image_reset(env, name, plan, provider, &res, events).await,
        Phase::PowerOff => replace::power_off(env, name, events).await,
        Phase::Resize => replace::resize(env, name, plan).await,
        Phase::PowerOn => replace::power_on(env, name, events).await,
        Phase::DestroyOld => replace::destroy_old(env, name).await,
        Phase::WaitReachable => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            tokio::time::timeout(env.timings.reachable_timeout, agent.wait_reachable(&target))
                .await
                .map_err(|_| {
                    ActorError::precondition(format!(
                        "{name} did not become reachable within {}s",
                        env.timings.reachable_timeout.as_secs()
                    ))
                })?
                .map_err(ActorError::from)?;
            if let Some(addr) = agent.client_address() {
                crate::engine::ssh_agent::record_seen(&env.cell, name, &addr).await;
            }
            Ok(())
        }
        Phase::Bootstrap => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            Ok(agent.bootstrap(&target).await?)
        }
        Phase::Configure => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            let members = env.cell.read(|s| membership(s, &plan.cluster));
            let cluster = ClusterTracked::new(members);
            let config = NodeConfig {
                cluster: plan.cluster.clone(),
                role: plan.role.clone(),
                peers: cluster.peers_of(name),
            };
            agent.configure(&target, &config).await?;
            let keys = [
                Key::TrackedNode(name.to_string()),
                Key::TrackedCluster(plan.cluster.clone()),
            ];
            persist(env, &keys, |s| {
                if let Some(t) = s.tracked.nodes.get_mut(name) {
                    t.configured_membership = Some(cluster.membership.clone());
                    t.configured_peers = None;
                }
                // The members are stored once per cluster, as of the latest configure.
                let stored = s.tracked.clusters.entry(plan.cluster.clone()).or_default();
                if stored.membership != cluster.membership {
                    *stored = cluster;
                }
            })
            .await
        }
        Phase::Install => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            Ok(agent.install(&target, &plan.role).await?)
        }
        Phase::Readiness => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            Ok(agent.readiness(&target).await?)
        }
    }
}

pub(super) fn no_agent(provider: &Connected, name: &str) -> ActorError {
    ActorError::precondition(format!(
        "{}: Legion cannot reach {name} for deployment yet (no node agent for this provider)",
        provider.lane.display()
    ))
}

fn no_compute(provider: &Connected) -> ActorError {
    ActorError::precondition(format!("{}: no compute", provider.lane.display()))
}

/// The server a provision phase creates or finds.
pub(super) struct Provision<'a> {
    /// Its name at the provider: the node's, or a replace's successor name.
    pub server_name: &'a str,
    /// A replace's old server: it carries the node's labels too.
    pub never_adopt: Option<&'a str>,
    /// A resumed execution may find the server an unrecorded create left.
    pub resumed: bool,
}

pub(super) async fn provision(
    env: &ActorEnv,
    name: &str,
    plan: &NodePlan,
    provider: &Connected,
    res: &str,
    target: Provision<'_>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    let resumed = target.resumed;
    let compute = provider.api.compute().ok_or_else(|| no_compute(provider))?;
    let _ = events.send(Event::Machine(Machine::Provisioning));
    let known = env
        .cell
        .read(|s| s.tracked.nodes.get(name).and_then(|t| t.server_id.clone()));
    let mut server = None;
    if let Some(id) = known {
        server = compute.get_server(&id).await?;
    }
    if server.is_none() && resumed {
        // A create whose outcome was never recorded (crash, lost response) left a server
        // with our labels: adopt it instead of creating a second one.
        server = compute
            .list_servers(&env.install_id)
            .await?
            .into_iter()
            .find(|s| {
                s.node_uid() == Some(plan.uid.as_str()) && Some(s.id.as_str()) != target.never_adopt
            });
        if let Some(s) = &server {
            env.oplog.info(
                Some(res.to_string()),
                format!(
                    "{name}: adopted existing server {} carrying its labels",
                    s.id
                ),
            );
        }
    }
    let server = match server {
        Some(s) => s,
        None => {
            let mut labels = BTreeMap::new();
            labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
            labels.insert(LABEL_INSTALL.to_string(), env.install_id.clone());
            labels.insert(LABEL_NODE.to_string(), plan.uid.clone());
            labels.insert(LABEL_CLUSTER.to_string(), plan.cluster.clone());
            let ssh_key_id = ensure_managed_key(env, provider, res).await?;
            let spec = ServerSpec {
                name: target.server_name.to_string(),
                region: plan.region.clone(),
                offer: plan.offer.clone(),
                image: plan.image.clone(),
                ssh_key_id,
                labels,
                user_data: None,
            };
            compute.create_server(&spec, res).await?
        }
    };
    let image = server.image.clone().unwrap_or_else(|| plan.image.clone());
    let image_user = image_login_user(provider, &image).await;
    persist(
        env,
        &[
            Key::TrackedNode(name.to_string()),
            Key::ObservedServer(name.to_string()),
        ],
        |s| {
            if let Some(t) = s.tracked.nodes.get_mut(name) {
                t.server_id = Some(server.id.clone());
                t.ipv4 = server.ipv4.clone();
                t.ipv6 = server.ipv6.clone();
                t.region = server.region.clone();
                t.offer = server.offer.clone();
                t.image = image.clone();
                t.image_user = image_user.clone();
            }
            s.observed.servers.insert(
                name.to_string(),
                ServerReading {
                    at_ms: now_ms(),
                    server: Some(server.clone()),
                },
            );
        },
    )
    .await?;
    let _ = events.send(Event::Machine(Machine::from_status(server.status)));
    Ok(())
}

/// Who `image` logs in as, when the provider's catalog says (read from the cache, or
/// from the provider once; a catalog that cannot be read leaves the provider's default).
pub(super) async fn image_login_user(provider: &Connected, image: &str) -> Option<String> {
    let catalog = provider.catalog(false).await.ok()?;
    image_user_in(&catalog, image)
}

pub(super) fn image_user_in(catalog: &crate::providers::Catalog, image: &str) -> Option<String> {
    catalog
        .images
        .iter()
        .find(|i| i.id == image)
        .and_then(|i| i.login_user.clone())
}

pub(super) async fn image_reset(
    env: &ActorEnv,
    name: &str,
    plan: &NodePlan,
    provider: &Connected,
    res: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    let compute = provider.api.compute().ok_or_else(|| no_compute(provider))?;
    let (server_id, tracked_image) = env
        .cell
        .read(|s| {
            let t = s.tracked.nodes.get(name)?;
            Some((t.server_id.clone()?, t.image.clone()))
        })
        .ok_or_else(|| ActorError::precondition(format!("{name} has no server to reinstall")))?;
    // The planned image while the provider offers it, then the tracked one; otherwise
    // the policy picks a current one.
    let catalog = provider.catalog(true).await?;
    let current = |id: &str| catalog.images.iter().any(|i| i.id == id && !i.deprecated);
    let image = if current(&plan.image) {
        plan.image.clone()
    } else if current(&tracked_image) {
        tracked_image
    } else {
        provider
            .policy()
            .image(&catalog)
            .map(String::from)
            .ok_or_else(|| {
                ActorError::precondition(format!(
                    "{}: no usable image in the catalog",
                    provider.lane.display()
                ))
            })?
    };
    let _ = events.send(Event::Machine(Machine::Reinstalling));
    compute.reset_image(&server_id, &image, res).await?;
    let image_user = image_user_in(&catalog, &image);
    persist(env, &[Key::TrackedNode(name.to_string())], |s| {
        if let Some(t) = s.tracked.nodes.get_mut(name) {
            t.image = image.clone();
            t.image_user = image_user.clone();
            // A fresh disk has a fresh host key.
            t.host_key = None;
        }
    })
    .await?;
    // Read the server back and record it: a reading taken while the image was reset
    // (Scaleway: `starting` during the power-on) must not outlive the reset, or a
    // restarted engine (the next CLI call) starts from it, shows the node `starting`
    // and never runs its health check until another reading comes.
    let now = match compute.get_server(&server_id).await {
        Ok(Some(server)) => {
            let machine = Machine::from_status(server.status);
            env.cell
                .change(&[Key::ObservedServer(name.to_string())], |s| {
                    s.observed.servers.insert(
                        name.to_string(),
                        ServerReading {
                            at_ms: now_ms(),
                            server: Some(server),
                        },
                    );
                });
            machine
        }
        // The reset itself finished with the server running.
        _ => {
            env.cell
                .change(&[Key::ObservedServer(name.to_string())], |s| {
                    if let Some(r) = s.observed.servers.get_mut(name) {
                        if let Some(sv) = r.server.as_mut() {
                            sv.status = ServerStatus::Running;
                        }
                        r.at_ms = now_ms();
                    }
                });
            Machine::Running
        }
    };
    let _ = events.send(Event::Machine(now));
    Ok(())
}

pub(super) async fn power(
    env: &ActorEnv,
    name: &str,
    action: Action,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    let (provider, server_id) = env
        .cell
        .read(|s| {
            let t = s.tracked.nodes.get(name)?;
            Some((t.provider.clone(), t.server_id.clone()?))
        })
        .ok_or_else(|| ActorError::precondition(format!("{name} has no server")))?;
    let provider = connected(env, &provider)?;
    let compute = provider
        .api
        .compute()
        .ok_or_else(|| no_compute(&provider))?;
    let res = format!("node/{name}");
    let (during, after) = match action {
        Action::Start => (Machine::Starting, Machine::Running),
        Action::Stop => (Machine::Stopping, Machine::Stopped),
        _ => (Machine::Rebooting, Machine::Running),
    };
    let _ = events.send(Event::Machine(during));
    let result = match action {
        Action::Start => compute.start_server(&server_id, &res).await,
        Action::Stop => {
            compute
                .stop_server(&server_id, StopMode::Graceful, &res)
                .await
        }
        _ => compute.reboot_server(&server_id, &res).await,
    };
    match result {
        Ok(()) => {
            // The provider confirmed it: that is a reading too, so a restarted engine (a
            // CLI call, say) starts from it rather than from an older one.
            let status = if after == Machine::Stopped {
                ServerStatus::Off
            } else {
                ServerStatus::Running
            };
            env.cell
                .change(&[Key::ObservedServer(name.to_string())], |s| {
                    if let Some(r) = s.observed.servers.get_mut(name) {
                        if let Some(sv) = r.server.as_mut() {
                            sv.status = status;
                        }
                        r.at_ms = now_ms();
                    }
                });
            let _ = events.send(Event::Machine(after));
            Ok(())
        }
        Err(e) => {
            // What the machine is now is unknown until the next reading.
            let now = compute
                .get_server(&server_id)
                .await
                .ok()
                .flatten()
                .map(|s| Machine::from_status(s.status))
                .unwrap_or(Machine::Unknown);
            let _ = events.send(Event::Machine(now));
            Err(e.into())
        }
    }
}

pub(super) async fn teardown(
    env: &ActorEnv,
    name: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    let tracked = env.cell.read(|s| s.tracked.nodes.get(name).cloned());
    let Some(tracked) = tracked else {
        return Ok(());
    };
    let _ = events.send(Event::Machine(Machine::Deleting));
    if let Some(id) = &tracked.server_id {
        let provider = connected(env, &tracked.provider)?;
        let compute = provider
            .api
            .compute()
            .ok_or_else(|| no_compute(&provider))?;
        compute.destroy_server(id, &format!("node/{name}")).await?;
    }
    persist(
        env,
        &[
            Key::TrackedNode(name.to_string()),
            Key::ObservedServer(name.to_string()),
        ],
        |s| {
            s.tracked.nodes.remove(name);
            s.observed.servers.remove(name);
        },
    )
    .await?;
    let _ = events.send(Event::Machine(Machine::Absent));
    let _ = events.send(Event::System(System::Pending));
    Ok(())
}
