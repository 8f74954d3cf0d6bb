//! The actor shape shared by zone, firewall-set and domain actors.
//!
//! Each computes its desired state from the state store, compares its signature with the
//! last one applied, and only then calls the provider (through its [`Reconciler`]). A
//! change that arrives while provider calls are in flight is applied right after, before
//! convergence is reported. A failure is not retried on every state change, only on a
//! new apply wave or a changed desired state.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::error::ActorError;
use super::{ActorEnv, ResourceKey, Snap, SyncSnap, SyncState};
use crate::engine::derive::signature;
use crate::engine::state::model::State;

/// What a reconciler wants for one resource.
pub struct Desired<S> {
    /// `None`: not planned (planned absence when it is still tracked).
    pub spec: Option<S>,
    pub tracked: bool,
    pub waiting: Option<String>,
    pub summary: String,
}

#[async_trait]
pub trait Reconciler: Send + Sync + 'static {
    type Spec: Serialize + Clone + Send + Sync + 'static;
    fn key(&self, name: &str) -> ResourceKey;
    /// `epoch`: the state's [`StateCell::epoch`](crate::engine::state::cell::StateCell::epoch),
    /// under which what a reconciler derived from the applied plan stays valid.
    fn desired(&self, name: &str, state: &State, epoch: u64) -> Desired<Self::Spec>;
    fn applied_signature(&self, name: &str, state: &State) -> Option<String>;
    /// Make the provider match `spec`, then record `signature` as applied.
    async fn converge(
        &self,
        env: &ActorEnv,
        name: &str,
        spec: &Self::Spec,
        signature: &str,
    ) -> Result<(), ActorError>;
    /// Planned absence: remove what Legion made, forget the resource.
    async fn remove(&self, env: &ActorEnv, name: &str) -> Result<(), ActorError>;
    /// Changes the operator has to make by hand (what the provider cannot be asked to
    /// do); shown with the resource, never pretended applied.
    fn tasks(&self, _name: &str, _state: &State, _epoch: u64) -> Vec<String> {
        Vec::new()
    }
}

pub enum SyncMsg {
    /// `Some(apply)` from an apply wave, `None` from a state change.
    Sync(Option<u64>),
}

#[derive(Clone)]
pub struct SyncHandle {
    tx: mpsc::UnboundedSender<SyncMsg>,
}

impl SyncHandle {
    pub fn spawn<R: Reconciler>(
        env: Arc<ActorEnv>,
        reconciler: Arc<R>,
        name: String,
    ) -> (SyncHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let key = reconciler.key(&name);
        let actor = SyncActor {
            env,
            reconciler,
            name,
            key,
            snap: SyncSnap {
                state: SyncState::Pending,
                summary: String::new(),
                waiting: None,
                last_error: None,
                error_class: None,
                previous_error: None,
                operation: None,
                synced_apply: 0,
                applied_count: 0,
                tasks: Vec::new(),
            },
            published: None,
            inbox: rx,
            done: done_rx,
            done_tx,
            busy_for: None,
            again: None,
            failed_signature: None,
            children: JoinSet::new(),
        };
        let task = tokio::spawn(actor.run());
        (SyncHandle { tx }, task)
    }

    pub fn sync(&self, apply: Option<u64>) -> bool {
        self.tx.send(SyncMsg::Sync(apply)).is_ok()
    }
}

struct Done {
    result: Result<(), ActorError>,
    signature: Option<String>,
    apply: Option<u64>,
    waiting: Option<String>,
}

struct SyncActor<R: Reconciler> {
    env: Arc<ActorEnv>,
    reconciler: Arc<R>,
    name: String,
    key: ResourceKey,
    snap: SyncSnap,
    published: Option<SyncSnap>,
    inbox: mpsc::UnboundedReceiver<SyncMsg>,
    done: mpsc::UnboundedReceiver<Done>,
    done_tx: mpsc::UnboundedSender<Done>,
    /// Running: the apply it serves (0 for a state-change wake).
    busy_for: Option<u64>,
    /// Asked again while busy: the newest apply (0 for a wake).
    again: Option<u64>,
    failed_signature: Option<String>,
    /// Provider work in flight; aborted when the actor is dropped.
    children: JoinSet<()>,
}

impl<R: Reconciler> SyncActor<R> {
    async fn run(mut self) {
        self.evaluate(None);
        self.publish();
        loop {
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(SyncMsg::Sync(apply)) => {
                        if self.busy_for.is_some() {
                            let a = apply.unwrap_or(0);
                            self.again = Some(self.again.map_or(a, |x| x.max(a)));
                        } else {
                            self.evaluate(apply);
                        }
                    }
                    None => break,
                },
                Some(done) = self.done.recv() => self.finish(done),
                Some(_) = self.children.join_next(), if !self.children.is_empty() => {}
            }
            self.publish();
        }
    }

    fn publish(&mut self) {
        if self.published.as_ref() == Some(&self.snap) {
            return;
        }
        if let Some(prev) = &self.published
            && prev.state != self.snap.state
        {
            self.env.board.transition(
                &self.key,
                prev.state.to_string(),
                self.snap.state.to_string(),
            );
        }
        self.env
            .board
            .put(self.key.clone(), Snap::Sync(Arc::new(self.snap.clone())));
        self.published = Some(self.snap.clone());
    }

    fn evaluate(&mut self, apply: Option<u64>) {
        let (desired, applied, tasks) = self.env.cell.read_at(|s, epoch| {
            (
                self.reconciler.desired(&self.name, s, epoch),
                self.reconciler.applied_signature(&self.name, s),
                self.reconciler.tasks(&self.name, s, epoch),
            )
        });
        self.snap.summary = desired.summary.clone();
        self.snap.tasks = tasks;
        let settle = |snap: &mut SyncSnap| {
            if let Some(a) = apply {
                snap.synced_apply = snap.synced_apply.max(a);
            }
        };
        match desired.spec {
            // Planned, but a prerequisite is missing.
            None if desired.waiting.is_some() => {
                self.failed_signature = None;
                self.snap.state = SyncState::Waiting;
                self.snap.waiting = desired.waiting;
                settle(&mut self.snap);
            }
            None if !desired.tracked => {
                self.failed_signature = None;
                self.snap.waiting = None;
                self.snap.state = SyncState::Unknown;
                settle(&mut self.snap);
            }
            None => {
                if apply.is_none() {
                    // Teardown only happens in an apply: editing the plan touches nothing.
                    self.snap.state = SyncState::Pending;
                    self.snap.waiting = Some("removed from the plan; apply to delete".into());
                    return;
                }
                self.snap.state = SyncState::Deleting;
                self.snap.operation = Some("delete".into());
                self.spawn(apply, None, None);
            }
            Some(spec) => {
                let sig = signature(&spec);
                if applied.as_deref() == Some(sig.as_str()) {
                    self.snap.state = if desired.waiting.is_some() {
                        SyncState::Waiting
                    } else {
                        SyncState::Converged
                    };
                    self.snap.waiting = desired.waiting;
                    self.snap.clear_error();
                    settle(&mut self.snap);
                    return;
                }
                if apply.is_none() && self.failed_signature.as_deref() == Some(sig.as_str()) {
                    return;
                }
                self.snap.state = SyncState::Syncing;
                self.snap.operation = Some("sync".into());
                self.spawn(apply, Some((spec, sig)), desired.waiting);
            }
        }
    }

    fn spawn(
        &mut self,
        apply: Option<u64>,
        work: Option<(R::Spec, String)>,
        waiting: Option<String>,
    ) {
        self.busy_for = Some(apply.unwrap_or(0));
        let env = self.env.clone();
        let rec = self.reconciler.clone();
        let name = self.name.clone();
        let done = self.done_tx.clone();
        self.children.spawn(async move {
            let (result, signature) = match work {
                Some((spec, sig)) => (rec.converge(&env, &name, &spec, &sig).await, Some(sig)),
                None => (rec.remove(&env, &name).await, None),
            };
            let _ = done.send(Done {
                result,
                signature,
                apply,
                waiting,
            });
        });
    }

    fn finish(&mut self, done: Done) {
        self.busy_for = None;
        self.snap.operation = None;
        match done.result {
            Ok(()) => {
                self.snap.applied_count += 1;
                self.failed_signature = None;
                self.snap.clear_error();
                self.snap.state = match (&done.signature, &done.waiting) {
                    (None, _) => SyncState::Unknown,
                    (Some(_), Some(_)) => SyncState::Waiting,
                    (Some(_), None) => SyncState::Converged,
                };
                self.snap.waiting = done.waiting;
            }
            Err(e) => {
                self.env
                    .oplog
                    .warn(Some(self.key.to_string()), format!("{}: {e}", self.key));
                self.failed_signature = done.signature;
                self.snap.state = SyncState::Failed;
                self.snap.error_class = e.class();
                self.snap.last_error = Some(e.to_string());
            }
        }
        let again = self.again.take();
        match (again, done.apply) {
            // Something changed while the provider calls ran: apply the newest desired
            // state before reporting this wave as settled.
            (Some(a), apply) => {
                let wave = apply.max(Some(a)).filter(|w| *w > 0);
                if self.snap.state == SyncState::Failed && wave.is_none() {
                    return;
                }
                self.evaluate(wave);
            }
            (None, Some(a)) => self.snap.synced_apply = self.snap.synced_apply.max(a),
            (None, None) => {}
        }
    }
}

impl SyncSnap {
    /// A success: the current error becomes history.
    fn clear_error(&mut self) {
        if let Some(e) = self.last_error.take() {
            self.previous_error = Some(e);
        }
        self.error_class = None;
    }
}
