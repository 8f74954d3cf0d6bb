//! The node actor: one task per node, owning its `machine` and `system` regions.
//!
//! The task handles messages (apply sync, observation, operator actions, health) and runs
//! at most one operation at a time as a spawned future that reports back through events,
//! so the actor keeps answering (and refusing) while a long execution runs. Executions
//! persist their phase before and after each step.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::machine::{
    Action, ActionView, Machine, SyncDecision, System, check_action, decide_sync,
};
use super::{ActorEnv, Connected, NodeSnap, ResourceKey, Snap};
use crate::engine::oplog::{OpKind, now_ms};
use crate::engine::state::model::{
    Execution, ExecutionKind, NodePlan, Phase, ServerReading, State, TrackedNode,
};
use crate::providers::{
    HealthReading, LABEL_CLUSTER, LABEL_INSTALL, LABEL_MANAGED, LABEL_NODE, NodeAgent, NodeConfig,
    NodeTarget, ObservedServer, ServerSpec, ServerStatus, StopMode,
};

pub enum NodeMsg {
    /// Converge to the plan; `apply` is the wave's id.
    Sync { apply: u64 },
    /// A new provider reading is in `observed.servers`; also runs a health check.
    Observed,
    Action {
        action: Action,
        /// The operation's number (see `NodeSnap::ops_started`), or why it was refused.
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Cluster membership may have changed: reconfigure if this node's peers differ
    /// from those it was configured with. Replies with the operation's number when it
    /// started one.
    Reconcile { reply: oneshot::Sender<Option<u64>> },
}

/// Cheap to clone; the task ends when every handle is dropped.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::UnboundedSender<NodeMsg>,
}

impl NodeHandle {
    pub fn spawn(env: Arc<ActorEnv>, name: String) -> (NodeHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let key = ResourceKey::Node(name.clone());
        let snap = initial_snap(&env, &name);
        let actor = NodeActor {
            env,
            name,
            key,
            snap,
            published: None,
            inbox: rx,
            events: ev_rx,
            events_tx: ev_tx,
            children: JoinSet::new(),
            sync_for: None,
            pending_sync: None,
        };
        let task = tokio::spawn(actor.run());
        (NodeHandle { tx }, task)
    }

    pub fn send(&self, msg: NodeMsg) -> bool {
        self.tx.send(msg).is_ok()
    }

    pub async fn action(&self, action: Action) -> Result<u64, String> {
        let (reply, rx) = oneshot::channel();
        if !self.send(NodeMsg::Action { action, reply }) {
            return Err("the node's actor has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the node's actor stopped before answering".into()))
    }
}

enum Event {
    Machine(Machine),
    System(System),
    Operation(String),
    OpDone(Result<(), String>),
    Health(HealthReading),
}

struct NodeActor {
    env: Arc<ActorEnv>,
    name: String,
    key: ResourceKey,
    snap: NodeSnap,
    published: Option<NodeSnap>,
    inbox: mpsc::UnboundedReceiver<NodeMsg>,
    events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    /// The running operation and health probes; dropping the actor (logout, removal)
    /// aborts them with it.
    children: JoinSet<()>,
    /// The apply wave the running operation serves.
    sync_for: Option<u64>,
    /// A wave that arrived while busy.
    pending_sync: Option<u64>,
}

fn initial_snap(env: &ActorEnv, name: &str) -> NodeSnap {
    env.cell.read(|s| {
        let tracked = s.tracked.nodes.get(name);
        let reading = s.observed.servers.get(name);
        let machine = match (tracked.and_then(|t| t.server_id.as_ref()), reading) {
            (None, _) => Machine::Absent,
            (Some(_), Some(ServerReading { server: None, .. })) => Machine::Missing,
            (
                Some(_),
                Some(ServerReading {
                    server: Some(sv), ..
                }),
            ) => Machine::from_status(sv.status),
            (Some(_), None) => Machine::Unknown,
        };
        let exec = tracked.and_then(|t| t.execution.as_ref());
        NodeSnap {
            machine,
            system: System::from_execution(exec),
            health: None,
            operation: None,
            last_error: exec.and_then(|e| {
                e.is_retryable()
                    .then(|| e.failure().map(String::from))
                    .flatten()
            }),
            synced_apply: 0,
            ops_started: 0,
            ops_finished: 0,
        }
    })
}

impl NodeActor {
    async fn run(mut self) {
        self.publish();
        if self.snap.system.is_installed() && self.snap.machine == Machine::Running {
            self.start_health();
        }
        loop {
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(m) => self.handle(m),
                    None => break,
                },
                Some(ev) = self.events.recv() => self.on_event(ev),
                Some(_) = self.children.join_next(), if !self.children.is_empty() => {}
            }
            self.publish();
        }
    }

    fn publish(&mut self) {
        if self.published.as_ref() == Some(&self.snap) {
            return;
        }
        if let Some(prev) = &self.published {
            if prev.machine != self.snap.machine {
                self.env.board.transition(
                    &self.key,
                    format!("machine {}", prev.machine),
                    format!("machine {}", self.snap.machine),
                );
            }
            if prev.system != self.snap.system {
                self.env.board.transition(
                    &self.key,
                    format!("system {}", prev.system),
                    format!("system {}", self.snap.system),
                );
            }
        }
        self.env
            .board
            .put(self.key.clone(), Snap::Node(Arc::new(self.snap.clone())));
        self.published = Some(self.snap.clone());
    }

    fn busy(&self) -> bool {
        self.snap.operation.is_some()
    }

    fn handle(&mut self, msg: NodeMsg) {
        match msg {
            NodeMsg::Sync { apply } => self.on_sync(apply),
            NodeMsg::Observed => self.on_observed(),
            NodeMsg::Reconcile { reply } => {
                let op = self.on_reconcile();
                self.publish();
                let _ = reply.send(op);
            }
            NodeMsg::Action { action, reply } => {
                let result = self.on_action(action);
                // Publish first: whoever waits on the reply sees the operation at once.
                self.publish();
                let _ = reply.send(result);
            }
        }
    }

    fn on_sync(&mut self, apply: u64) {
        if self.busy() {
            self.pending_sync = Some(self.pending_sync.map_or(apply, |p| p.max(apply)));
            return;
        }
        let decision = self.env.cell.read(|s| {
            decide_sync(
                s.plan.nodes.get(&self.name),
                s.tracked.nodes.get(&self.name),
                self.snap.machine,
            )
        });
        let op = match decision {
            SyncDecision::Nothing => {
                self.snap.synced_apply = self.snap.synced_apply.max(apply);
                return;
            }
            SyncDecision::Provision => Op::Execute {
                fresh: Some(ExecutionKind::Add),
                forget_server: false,
            },
            SyncDecision::Reprovision => Op::Execute {
                fresh: Some(ExecutionKind::Add),
                forget_server: true,
            },
            SyncDecision::Resume => Op::Execute {
                fresh: None,
                forget_server: false,
            },
            SyncDecision::Teardown => Op::Teardown,
        };
        self.sync_for = Some(apply);
        self.start(op);
    }

    fn on_reconcile(&mut self) -> Option<u64> {
        if self.busy() || self.snap.machine != Machine::Running {
            return None;
        }
        let stale = self.env.cell.read(|s| {
            let plan = s.plan.nodes.get(&self.name)?;
            let t = s.tracked.nodes.get(&self.name)?;
            let done = t
                .execution
                .as_ref()
                .is_some_and(|e| e.status == crate::engine::state::model::ExecStatus::Succeeded);
            let configured = t.configured_peers.as_ref()?;
            (done && *configured != cluster_peers(s, &self.name, &plan.cluster)).then_some(())
        });
        stale?;
        self.env.oplog.info(
            Some(self.key.to_string()),
            format!(
                "{}: cluster membership changed; writing the new peer list",
                self.name
            ),
        );
        self.start(Op::Execute {
            fresh: Some(ExecutionKind::Reconfigure),
            forget_server: false,
        });
        Some(self.snap.ops_started)
    }

    fn on_observed(&mut self) {
        if self.busy() {
            return;
        }
        let (reading, has_server) = self.env.cell.read(|s| {
            (
                s.observed.servers.get(&self.name).cloned(),
                s.tracked
                    .nodes
                    .get(&self.name)
                    .is_some_and(|t| t.server_id.is_some()),
            )
        });
        let Some(reading) = reading else { return };
        if !has_server {
            return;
        }
        match reading.server {
            None => {
                if self.snap.machine != Machine::Missing {
                    self.snap.machine = Machine::Missing;
                    if self.snap.system.is_installed() {
                        self.snap.system = System::Unreachable("server not found".into());
                    }
                    self.snap.last_error = Some(format!(
                        "the server of {} no longer exists at the provider (deleted outside Legion?); apply re-creates it",
                        self.name
                    ));
                    self.env.oplog.warn(
                        Some(self.key.to_string()),
                        self.snap.last_error.clone().unwrap_or_default(),
                    );
                }
            }
            Some(server) => {
                let machine = Machine::from_status(server.status);
                if machine != self.snap.machine && self.snap.machine != Machine::Unknown {
                    self.env.oplog.info(
                        Some(self.key.to_string()),
                        format!(
                            "{}: provider reports {} (was {})",
                            self.name, machine, self.snap.machine
                        ),
                    );
                }
                if self.snap.machine == Machine::Missing {
                    // The server is back (a provider hiccup): the error no longer holds.
                    self.snap.last_error = None;
                }
                self.snap.machine = machine;
                record_addresses(&self.env, &self.name, &server);
                if self.snap.system.is_installed() {
                    if machine == Machine::Stopped {
                        self.snap.system = System::Unreachable("server is stopped".into());
                    } else if machine == Machine::Running {
                        self.start_health();
                    }
                }
            }
        }
    }

    fn on_action(&mut self, action: Action) -> Result<u64, String> {
        let decision = self.env.cell.read(|s| {
            let tracked = s.tracked.nodes.get(&self.name);
            check_action(
                ActionView {
                    name: &self.name,
                    machine: self.snap.machine,
                    operation: self.snap.operation.as_deref(),
                    has_server: tracked.is_some_and(|t| t.server_id.is_some()),
                    execution: tracked.and_then(|t| t.execution.as_ref()),
                },
                action,
            )
        });
        self.env.oplog.record(
            Some(self.key.to_string()),
            OpKind::Action {
                action: action.to_string(),
                accepted: decision.is_ok(),
            },
            match &decision {
                Ok(()) => format!("{action} {}: accepted", self.name),
                Err(why) => format!("{action} {}: refused: {why}", self.name),
            },
        );
        decision?;
        let op = match action {
            Action::Start | Action::Stop | Action::Reboot => Op::Power(action),
            Action::Retry => Op::Execute {
                fresh: None,
                forget_server: false,
            },
            Action::Reinstall => Op::Execute {
                fresh: Some(ExecutionKind::Reinstall),
                forget_server: false,
            },
        };
        self.start(op);
        Ok(self.snap.ops_started)
    }

    fn start(&mut self, op: Op) {
        self.snap.operation = Some(op.label().to_string());
        self.snap.ops_started += 1;
        self.snap.last_error = None;
        let env = self.env.clone();
        let name = self.name.clone();
        let events = self.events_tx.clone();
        self.children.spawn(async move {
            let result = match op {
                Op::Execute {
                    fresh,
                    forget_server,
                } => run_execution(&env, &name, fresh, forget_server, &events).await,
                Op::Power(action) => power(&env, &name, action, &events).await,
                Op::Teardown => teardown(&env, &name, &events).await,
            };
            let _ = events.send(Event::OpDone(result));
        });
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Machine(m) => {
                self.snap.machine = m;
                if m == Machine::Stopped {
                    let why = "server is stopped".to_string();
                    if self.snap.system.is_installed() {
                        self.snap.system = System::Unreachable(why.clone());
                    }
                    self.snap.health = Some(HealthReading::Unreachable(why));
                }
            }
            Event::System(s) => self.snap.system = s,
            Event::Operation(label) => self.snap.operation = Some(label),
            Event::Health(h) => {
                if self.snap.system.is_installed() && !self.busy() {
                    self.snap.system = if self.snap.machine == Machine::Stopped {
                        System::Unreachable("server is stopped".into())
                    } else {
                        System::from_health(&h)
                    };
                }
                self.snap.health = Some(h);
            }
            Event::OpDone(result) => {
                self.snap.operation = None;
                self.snap.ops_finished = self.snap.ops_started;
                if let Err(e) = &result {
                    self.env
                        .oplog
                        .warn(Some(self.key.to_string()), format!("{}: {e}", self.name));
                }
                if result.is_err() && self.snap.machine == Machine::Provisioning {
                    // The create failed: there is a server only if one was recorded.
                    let has_server = self.env.cell.read(|s| {
                        s.tracked
                            .nodes
                            .get(&self.name)
                            .is_some_and(|t| t.server_id.is_some())
                    });
                    self.snap.machine = if has_server {
                        Machine::Unknown
                    } else {
                        Machine::Absent
                    };
                }
                self.snap.last_error = result.err();
                if let Some(apply) = self.sync_for.take() {
                    self.snap.synced_apply = self.snap.synced_apply.max(apply);
                }
                if self.snap.system.is_installed() && self.snap.machine != Machine::Deleting {
                    self.start_health();
                }
                if let Some(apply) = self.pending_sync.take()
                    && apply > self.snap.synced_apply
                {
                    self.on_sync(apply);
                }
            }
        }
    }

    fn start_health(&mut self) {
        let Some((agent, target)) = agent_target(&self.env, &self.name) else {
            return;
        };
        if self.snap.machine == Machine::Stopped {
            self.snap.system = System::Unreachable("server is stopped".into());
            return;
        }
        let events = self.events_tx.clone();
        self.children.spawn(async move {
            let h = agent.health(&target).await;
            let _ = events.send(Event::Health(h));
        });
    }
}

enum Op {
    Execute {
        /// `None` resumes the recorded execution.
        fresh: Option<ExecutionKind>,
        forget_server: bool,
    },
    Power(Action),
    Teardown,
}

impl Op {
    fn label(&self) -> &'static str {
        match self {
            Op::Execute {
                fresh: Some(ExecutionKind::Reinstall),
                ..
            } => "reinstall",
            Op::Execute { fresh: None, .. } => "retry",
            Op::Execute { .. } => "provisioning",
            Op::Power(Action::Start) => "start",
            Op::Power(Action::Stop) => "stop",
            Op::Power(_) => "reboot",
            Op::Teardown => "teardown",
        }
    }
}

fn connected(env: &ActorEnv, provider: &str) -> Result<Arc<Connected>, String> {
    env.providers.require(provider).map_err(|e| e.to_string())
}

fn record_addresses(env: &ActorEnv, name: &str, server: &ObservedServer) {
    let differs = env.cell.read(|s| {
        s.tracked.nodes.get(name).is_some_and(|t| {
            t.server_id.as_deref() == Some(server.id.as_str())
                && (t.ipv4 != server.ipv4 || t.ipv6 != server.ipv6)
        })
    });
    if differs {
        env.cell.mutate(|s| {
            if let Some(t) = s.tracked.nodes.get_mut(name) {
                t.ipv4 = server.ipv4.clone();
                t.ipv6 = server.ipv6.clone();
            }
        });
    }
}

fn agent_target(env: &ActorEnv, name: &str) -> Option<(Arc<dyn NodeAgent>, NodeTarget)> {
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
async fn ensure_managed_key(
    env: &ActorEnv,
    provider: &Connected,
    res: &str,
) -> Result<Option<String>, String> {
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
        .map_err(|e| format!("uploading Legion's SSH key: {e}"))?;
    persist(env, |s| {
        s.tracked.ssh_keys.insert(provider.id.clone(), id.clone());
    })
    .await?;
    Ok(Some(id))
}

async fn persist(env: &ActorEnv, f: impl FnOnce(&mut State)) -> Result<(), String> {
    env.cell.commit(f).await.map_err(|e| e.to_string())
}

async fn set_execution(
    env: &ActorEnv,
    name: &str,
    f: impl FnOnce(&mut Execution),
) -> Result<(), String> {
    persist(env, |s| {
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
async fn run_execution(
    env: &ActorEnv,
    name: &str,
    fresh: Option<ExecutionKind>,
    forget_server: bool,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
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
        .ok_or_else(|| format!("{name} is not in the plan"))?;
    persist(env, |s| {
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
        .ok_or_else(|| format!("{name} has no execution to run"))?;
    let label = match kind {
        ExecutionKind::Add => "add",
        ExecutionKind::Reinstall => "reinstall",
        ExecutionKind::Reconfigure => "reconfigure",
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
                let msg = format!("{phase} failed: {e}");
                set_execution(env, name, |ex| ex.fail_phase(phase, e.clone())).await?;
                let _ = events.send(Event::System(System::Failed(phase)));
                return Err(msg);
            }
        }
    }
    let _ = events.send(Event::System(System::Unknown));
    Ok(())
}

async fn run_phase(
    env: &ActorEnv,
    name: &str,
    plan: &NodePlan,
    phase: Phase,
    resumed: bool,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let provider = &connected(env, &plan.provider)?;
    let res = format!("node/{name}");
    match phase {
        Phase::Provision => provision(env, name, plan, provider, &res, resumed, events).await,
        Phase::ImageReset => image_reset(env, name, plan, provider, &res, events).await,
        Phase::WaitReachable => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            tokio::time::timeout(env.timings.reachable_timeout, agent.wait_reachable(&target))
                .await
                .map_err(|_| {
                    format!(
                        "{name} did not become reachable within {}s",
                        env.timings.reachable_timeout.as_secs()
                    )
                })?
                .map_err(|e| e.to_string())
        }
        Phase::Bootstrap => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            agent.bootstrap(&target).await.map_err(|e| e.to_string())
        }
        Phase::Configure => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            let peers = env.cell.read(|s| cluster_peers(s, name, &plan.cluster));
            let config = NodeConfig {
                cluster: plan.cluster.clone(),
                role: plan.role.clone(),
                peers: peers.clone(),
            };
            agent
                .configure(&target, &config)
                .await
                .map_err(|e| e.to_string())?;
            persist(env, |s| {
                if let Some(t) = s.tracked.nodes.get_mut(name) {
                    t.configured_peers = Some(peers);
                }
            })
            .await
        }
        Phase::Install => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            agent
                .install(&target, &plan.role)
                .await
                .map_err(|e| e.to_string())
        }
        Phase::Readiness => {
            let (agent, target) =
                agent_target(env, name).ok_or_else(|| no_agent(provider, name))?;
            agent.readiness(&target).await.map_err(|e| e.to_string())
        }
    }
}

/// The addresses of the other planned nodes of `cluster`, sorted.
fn cluster_peers(s: &State, name: &str, cluster: &str) -> Vec<String> {
    let mut peers: Vec<String> = s
        .plan
        .nodes
        .iter()
        .filter(|(n, p)| p.cluster == cluster && n.as_str() != name)
        .filter_map(|(n, _)| s.tracked.nodes.get(n)?.address().map(String::from))
        .collect();
    peers.sort();
    peers
}

fn no_agent(provider: &Connected, name: &str) -> String {
    format!(
        "{}: Legion cannot reach {name} for deployment yet (no node agent for this provider)",
        provider.lane.display()
    )
}

async fn provision(
    env: &ActorEnv,
    name: &str,
    plan: &NodePlan,
    provider: &Connected,
    res: &str,
    resumed: bool,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let compute = provider
        .api
        .compute()
        .ok_or_else(|| format!("{}: no compute", provider.lane.display()))?;
    let _ = events.send(Event::Machine(Machine::Provisioning));
    let known = env
        .cell
        .read(|s| s.tracked.nodes.get(name).and_then(|t| t.server_id.clone()));
    let mut server = None;
    if let Some(id) = known {
        server = compute.get_server(&id).await.map_err(|e| e.to_string())?;
    }
    if server.is_none() && resumed {
        // A create whose outcome was never recorded (crash, lost response) left a server
        // with our labels: adopt it instead of creating a second one.
        server = compute
            .list_servers(&env.install_id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|s| s.node_uid() == Some(plan.uid.as_str()));
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
                name: name.to_string(),
                region: plan.region.clone(),
                offer: plan.offer.clone(),
                image: plan.image.clone(),
                ssh_key_id,
                labels,
                user_data: None,
            };
            compute
                .create_server(&spec, res)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    let image = server.image.clone().unwrap_or_else(|| plan.image.clone());
    let image_user = image_login_user(provider, &image).await;
    persist(env, |s| {
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
    })
    .await?;
    let _ = events.send(Event::Machine(Machine::from_status(server.status)));
    Ok(())
}

/// Who `image` logs in as, when the provider's catalog says (read from the cache, or
/// from the provider once; a catalog that cannot be read leaves the provider's default).
async fn image_login_user(provider: &Connected, image: &str) -> Option<String> {
    let catalog = provider.catalog(false).await.ok()?;
    image_user_in(&catalog, image)
}

fn image_user_in(catalog: &crate::providers::Catalog, image: &str) -> Option<String> {
    catalog
        .images
        .iter()
        .find(|i| i.id == image)
        .and_then(|i| i.login_user.clone())
}

async fn image_reset(
    env: &ActorEnv,
    name: &str,
    plan: &NodePlan,
    provider: &Connected,
    res: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let compute = provider
        .api
        .compute()
        .ok_or_else(|| format!("{}: no compute", provider.lane.display()))?;
    let (server_id, tracked_image) = env
        .cell
        .read(|s| {
            let t = s.tracked.nodes.get(name)?;
            Some((t.server_id.clone()?, t.image.clone()))
        })
        .ok_or_else(|| format!("{name} has no server to reinstall"))?;
    // Reuse the tracked image while the provider still offers it; otherwise the policy
    // picks a current one.
    let catalog = provider.catalog(true).await.map_err(|e| e.to_string())?;
    let current = |id: &str| catalog.images.iter().any(|i| i.id == id && !i.deprecated);
    let image = if current(&tracked_image) {
        tracked_image
    } else if current(&plan.image) {
        plan.image.clone()
    } else {
        provider
            .policy()
            .image(&catalog)
            .map(String::from)
            .ok_or_else(|| {
                format!(
                    "{}: no usable image in the catalog",
                    provider.lane.display()
                )
            })?
    };
    let _ = events.send(Event::Machine(Machine::Reinstalling));
    compute
        .reset_image(&server_id, &image, res)
        .await
        .map_err(|e| e.to_string())?;
    let image_user = image_user_in(&catalog, &image);
    persist(env, |s| {
        if let Some(t) = s.tracked.nodes.get_mut(name) {
            t.image = image.clone();
            t.image_user = image_user.clone();
            // A fresh disk has a fresh host key.
            t.host_key = None;
        }
    })
    .await?;
    let _ = events.send(Event::Machine(Machine::Running));
    Ok(())
}

async fn power(
    env: &ActorEnv,
    name: &str,
    action: Action,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
    let (provider, server_id) = env
        .cell
        .read(|s| {
            let t = s.tracked.nodes.get(name)?;
            Some((t.provider.clone(), t.server_id.clone()?))
        })
        .ok_or_else(|| format!("{name} has no server"))?;
    let provider = connected(env, &provider)?;
    let compute = provider
        .api
        .compute()
        .ok_or_else(|| format!("{}: no compute", provider.lane.display()))?;
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
            env.cell.mutate(|s| {
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
            Err(e.to_string())
        }
    }
}

async fn teardown(
    env: &ActorEnv,
    name: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), String> {
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
            .ok_or_else(|| format!("{}: no compute", provider.lane.display()))?;
        compute
            .destroy_server(id, &format!("node/{name}"))
            .await
            .map_err(|e| e.to_string())?;
    }
    persist(env, |s| {
        s.tracked.nodes.remove(name);
        s.observed.servers.remove(name);
    })
    .await?;
    let _ = events.send(Event::Machine(Machine::Absent));
    let _ = events.send(Event::System(System::Pending));
    Ok(())
}
