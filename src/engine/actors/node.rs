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

use super::error::ActorError;
use super::machine::{
    Action, ActionView, Machine, SyncDecision, System, check_action, decide_sync,
};
use super::work::*;
use super::{ActorEnv, NodeSnap, ResourceKey, Snap};
use crate::core::oplog::OpKind;
use crate::engine::state::model::{ExecutionKind, ServerReading, membership_id};
use crate::providers::HealthReading;

pub enum NodeMsg {
    /// Converge to the plan; `apply` is the wave's id.
    Sync { apply: u64 },
    /// A new provider reading is in `observed.servers`; also runs a health check.
    Observed,
    Action {
        action: Action,
        /// The operation's number (see `NodeSnap::ops_started`), or why it was refused.
        reply: oneshot::Sender<Result<u64, ActorError>>,
    },
    /// Cluster membership may have changed: reconfigure if this node was configured
    /// with another membership than its cluster's current one (`memberships`: cluster
    /// to [`membership_id`], computed once for every node). Replies with the operation's
    /// number when it started one.
    Reconcile {
        memberships: Arc<BTreeMap<String, String>>,
        reply: oneshot::Sender<Option<u64>>,
    },
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

    pub async fn action(&self, action: Action) -> Result<u64, ActorError> {
        let (reply, rx) = oneshot::channel();
        if !self.send(NodeMsg::Action { action, reply }) {
            return Err(ActorError::Stopped("the node's actor has stopped"));
        }
        rx.await.unwrap_or(Err(ActorError::Stopped(
            "the node's actor stopped before answering",
        )))
    }
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
            error_class: None,
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
            NodeMsg::Reconcile { memberships, reply } => {
                let op = self.on_reconcile(&memberships);
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
            // Deployed: the server itself may still differ from the plan (offer, image,
            // region), which a resize, rebuild or replace execution makes true.
            SyncDecision::Nothing => match super::replace::planned_route(&self.env, &self.name) {
                Some(kind) if self.snap.machine != Machine::Unknown => Op::Execute {
                    fresh: Some(kind),
                    forget_server: false,
                },
                _ => {
                    self.snap.synced_apply = self.snap.synced_apply.max(apply);
                    return;
                }
            },
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

    fn on_reconcile(&mut self, memberships: &BTreeMap<String, String>) -> Option<u64> {
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
            let configured = t.configured_membership.as_ref()?;
            let now = memberships
                .get(&plan.cluster)
                .cloned()
                .unwrap_or_else(|| membership_id(&BTreeMap::new()));
            (done && *configured != now).then_some(())
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

    fn on_action(&mut self, action: Action) -> Result<u64, ActorError> {
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
        decision.map_err(|r| ActorError::Refused(r.0))?;
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
        // The reading described the machine before this operation; `--wait` and the
        // status must see a check taken after it.
        self.snap.health = None;
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
            Event::Health(_, probed_at) if probed_at != self.snap.ops_started => {}
            Event::Health(h, _) => {
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
                self.snap.error_class = result.as_ref().err().and_then(ActorError::class);
                self.snap.last_error = result.err().map(|e| e.to_string());
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
        let probed_at = self.snap.ops_started;
        self.children.spawn(async move {
            let h = agent.health(&target).await;
            let _ = events.send(Event::Health(h, probed_at));
        });
    }
}
