//! Changing an existing server to match the plan: resize (offer), rebuild (image) and
//! replace (region, provider, or an image where the provider has no rebuild).
//!
//! [`node_diff`] and [`route`] are pure: the change set (`engine::changes`) and the node
//! actor ask the same questions, so the plan shows exactly what apply does. The phase
//! bodies below run inside the node's durable execution (`work.rs`), each persisted
//! before and after, so a crash resumes from the recorded phase:
//! - resize: power off, resize, power on, wait for reachability, readiness;
//! - replace: provision a new server (the old one recorded in the execution first, so a
//!   resumed provision never adopts it), deploy it, and only then destroy the old one
//!   (create before destroy: the node keeps serving until its successor is ready).
//!
//! A rebuild is the reinstall execution with the plan's image.

use tokio::sync::mpsc;

use super::error::ActorError;
use super::machine::Machine;
use super::step::{Event, connected, persist};
use super::{ActorEnv, Connected};
use crate::core::time::now_ms;
use crate::engine::state::change::Key;
use crate::engine::state::model::{ExecutionKind, NodePlan, RetiringServer, State, TrackedNode};
use crate::providers::{ObservedServer, ServerStatus, StopMode};

/// What one provider can do to an existing server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCaps {
    /// Change the offer in place.
    pub resize: bool,
    /// Reset the disk to another image, keeping the server.
    pub rebuild: bool,
    /// Create servers at all (a manual host cannot).
    pub create: bool,
}

pub fn node_caps(c: &Connected) -> NodeCaps {
    let compute = c.api.compute();
    NodeCaps {
        resize: compute.is_some_and(|k| k.can_resize()),
        rebuild: compute.is_some() && c.module.descriptor().capabilities.image_reset,
        create: compute.is_some_and(|k| k.can_create()),
    }
}

/// Where a node's server differs from its plan: `(old, new)` per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDiff {
    pub provider: Option<(String, String)>,
    pub region: Option<(String, String)>,
    pub offer: Option<(String, String)>,
    pub image: Option<(String, String)>,
}

impl NodeDiff {
    pub fn is_empty(&self) -> bool {
        self == &NodeDiff::default()
    }

    /// `(field, old, new)` in display order.
    pub fn fields(&self) -> Vec<(&'static str, &str, &str)> {
        [
            ("provider", &self.provider),
            ("region", &self.region),
            ("offer", &self.offer),
            ("image", &self.image),
        ]
        .into_iter()
        .filter_map(|(f, d)| d.as_ref().map(|(o, n)| (f, o.as_str(), n.as_str())))
        .collect()
    }
}

/// The plan against the server as last read (`observed`), or as recorded when nothing
/// was read. An image the provider does not report is taken as unchanged.
pub fn node_diff(
    plan: &NodePlan,
    tracked: &TrackedNode,
    observed: Option<&ObservedServer>,
) -> NodeDiff {
    let pair = |old: &str, new: &str| (old != new).then(|| (old.to_string(), new.to_string()));
    let region = observed.map_or(tracked.region.as_str(), |o| o.region.as_str());
    let offer = observed.map_or(tracked.offer.as_str(), |o| o.offer.as_str());
    let image = match observed {
        Some(o) => o.image.as_deref(),
        None => Some(tracked.image.as_str()),
    };
    NodeDiff {
        provider: pair(&tracked.provider, &plan.provider),
        region: pair(region, &plan.region),
        offer: pair(offer, &plan.offer),
        image: image.and_then(|i| pair(i, &plan.image)),
    }
}

/// How apply makes a [`NodeDiff`] true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Offer only, in place: the server stops for it.
    Resize,
    /// Image only, in place: the disk is reset to the new image.
    Rebuild,
    /// A new server; `cause` says why.
    Replace { cause: String },
    /// Apply cannot; why, and the manual route.
    Blocked(String),
}

impl Route {
    /// The execution that performs it.
    pub fn kind(&self) -> Option<ExecutionKind> {
        match self {
            Route::Resize => Some(ExecutionKind::Resize),
            Route::Rebuild => Some(ExecutionKind::Reinstall),
            Route::Replace { .. } => Some(ExecutionKind::Replace),
            Route::Blocked(_) => None,
        }
    }
}

const MANUAL_ROUTE: &str = "remove the node, apply, and add it again with the new values";

/// `caps(provider)`: what a connected provider can do (`None`: not connected; the change
/// set blocks that separately, so it is treated here as able).
pub fn route(
    diff: &NodeDiff,
    old: &str,
    new: &str,
    caps: impl Fn(&str) -> Option<NodeCaps>,
) -> Route {
    let able = |p: &str| {
        caps(p).unwrap_or(NodeCaps {
            resize: true,
            rebuild: true,
            create: true,
        })
    };
    let replace = |cause: &str| {
        if able(new).create {
            Route::Replace {
                cause: cause.to_string(),
            }
        } else {
            Route::Blocked(format!(
                "{cause}, and provider {new:?} cannot create servers; {MANUAL_ROUTE}"
            ))
        }
    };
    if diff.provider.is_some() {
        return replace("a provider change needs a new server");
    }
    if diff.region.is_some() {
        return replace("a region change needs a new server");
    }
    match (&diff.offer, &diff.image) {
        (Some(_), Some(_)) => replace("an offer and image change together make a new server"),
        (None, Some(_)) if able(old).rebuild => Route::Rebuild,
        (None, Some(_)) => replace("provider cannot rebuild a server from another image"),
        (Some((from, to)), None) if !able(old).resize => Route::Blocked(format!(
            "provider {old:?} cannot change the offer of an existing server ({from} -> {to}); \
             {MANUAL_ROUTE}"
        )),
        (Some(_), None) => Route::Resize,
        (None, None) => Route::Blocked("nothing differs".into()),
    }
}

/// What an apply wave should run for `name` when its last execution succeeded: the
/// route to its plan, when one is needed and possible. Needs a reading of the server
/// (without one, whether it differs is unknown).
pub(super) fn planned_route(env: &ActorEnv, name: &str) -> Option<ExecutionKind> {
    let (plan, tracked, server) = env.cell.read(|s: &State| {
        Some((
            s.plan.nodes.get(name)?.clone(),
            s.tracked.nodes.get(name)?.clone(),
            s.observed.servers.get(name)?.server.clone()?,
        ))
    })?;
    let diff = node_diff(&plan, &tracked, Some(&server));
    if diff.is_empty() {
        return None;
    }
    let r = route(&diff, &tracked.provider, &plan.provider, |p| {
        env.providers.get(p).map(|c| node_caps(&c))
    });
    if let Route::Blocked(why) = &r {
        env.oplog
            .warn(Some(format!("node/{name}")), format!("{name}: {why}"));
    }
    r.kind()
}

fn res(name: &str) -> String {
    format!("node/{name}")
}

fn server_of(env: &ActorEnv, name: &str) -> Result<(String, String), ActorError> {
    env.cell
        .read(|s| {
            let t = s.tracked.nodes.get(name)?;
            Some((t.provider.clone(), t.server_id.clone()?))
        })
        .ok_or_else(|| ActorError::precondition(format!("{name} has no server to resize")))
}

fn record_status(env: &ActorEnv, name: &str, f: impl FnOnce(&mut ObservedServer)) {
    env.cell.mutate(|s| {
        if let Some(r) = s.observed.servers.get_mut(name) {
            if let Some(sv) = r.server.as_mut() {
                f(sv);
            }
            r.at_ms = now_ms();
        }
    });
}

/// Resize's first phase: the provider changes the type of a stopped server only.
pub(super) async fn power_off(
    env: &ActorEnv,
    name: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    let (provider, id) = server_of(env, name)?;
    let provider = connected(env, &provider)?;
    let compute = compute(&provider)?;
    let now = compute.get_server(&id).await?;
    if now.is_some_and(|s| s.status == ServerStatus::Off) {
        return Ok(());
    }
    let _ = events.send(Event::Machine(Machine::Stopping));
    compute
        .stop_server(&id, StopMode::Graceful, &res(name))
        .await?;
    record_status(env, name, |s| s.status = ServerStatus::Off);
    let _ = events.send(Event::Machine(Machine::Stopped));
    Ok(())
}

pub(super) async fn resize(env: &ActorEnv, name: &str, plan: &NodePlan) -> Result<(), ActorError> {
    let (provider, id) = server_of(env, name)?;
    let provider = connected(env, &provider)?;
    let compute = compute(&provider)?;
    // A resumed resize whose write went through (response lost, crash) is done already.
    let done = compute
        .get_server(&id)
        .await?
        .is_some_and(|s| s.offer == plan.offer);
    if !done {
        compute.resize_server(&id, &plan.offer, &res(name)).await?;
    }
    persist(
        env,
        &[
            Key::TrackedNode(name.to_string()),
            Key::ObservedServer(name.to_string()),
        ],
        |s| {
            if let Some(t) = s.tracked.nodes.get_mut(name) {
                t.offer = plan.offer.clone();
            }
            if let Some(sv) = s
                .observed
                .servers
                .get_mut(name)
                .and_then(|r| r.server.as_mut())
            {
                sv.offer = plan.offer.clone();
            }
        },
    )
    .await
}

pub(super) async fn power_on(
    env: &ActorEnv,
    name: &str,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), ActorError> {
    let (provider, id) = server_of(env, name)?;
    let provider = connected(env, &provider)?;
    let compute = compute(&provider)?;
    let now = compute.get_server(&id).await?;
    if !now.is_some_and(|s| s.status == ServerStatus::Running) {
        let _ = events.send(Event::Machine(Machine::Starting));
        compute.start_server(&id, &res(name)).await?;
    }
    record_status(env, name, |s| s.status = ServerStatus::Running);
    let _ = events.send(Event::Machine(Machine::Running));
    Ok(())
}

/// A replace's provision starts here: the old server moves into the execution record
/// (once; a resumed replace finds it there) and the node forgets its address, so its
/// successor's provision creates a new server and the derived resources follow it.
/// Returns the old server's id, which provisioning must never adopt.
pub(super) async fn retire_old(
    env: &ActorEnv,
    name: &str,
    plan: &NodePlan,
) -> Result<Option<String>, ActorError> {
    let recorded = env.cell.read(|s| {
        let e = s.tracked.nodes.get(name)?.execution.as_ref()?;
        Some(e.retiring.as_ref().map(|r| r.server_id.clone()))
    });
    if let Some(Some(id)) = recorded {
        return Ok(Some(id));
    }
    let old = env.cell.read(|s| {
        let t = s.tracked.nodes.get(name)?;
        Some(RetiringServer {
            provider: t.provider.clone(),
            server_id: t.server_id.clone()?,
            region: t.region.clone(),
        })
    });
    let Some(old) = old else { return Ok(None) };
    let id = old.server_id.clone();
    env.oplog.info(
        Some(res(name)),
        format!(
            "{name}: replacing server {} in {}: a new one is created and deployed first",
            old.server_id, old.region
        ),
    );
    persist(
        env,
        &[
            Key::TrackedNode(name.to_string()),
            Key::ObservedServer(name.to_string()),
        ],
        |s| {
            if let Some(t) = s.tracked.nodes.get_mut(name) {
                t.provider = plan.provider.clone();
                t.server_id = None;
                t.ipv4 = None;
                t.ipv6 = None;
                t.host_key = None;
                if let Some(e) = t.execution.as_mut() {
                    e.retiring = Some(old);
                }
            }
            s.observed.servers.remove(name);
        },
    )
    .await?;
    Ok(Some(id))
}

/// The name a replace's new server gets: providers refuse two servers with one name, and
/// the old one still exists. Fixed per execution, so a resumed create finds its server.
pub(super) fn successor_name(name: &str, execution: u64) -> String {
    format!("{name}-r{execution}")
}

/// A replace's last phase: the new server is deployed and ready, the old one goes.
pub(super) async fn destroy_old(env: &ActorEnv, name: &str) -> Result<(), ActorError> {
    let old = env.cell.read(|s| {
        s.tracked
            .nodes
            .get(name)?
            .execution
            .as_ref()?
            .retiring
            .clone()
    });
    let Some(old) = old else { return Ok(()) };
    let provider = connected(env, &old.provider)?;
    compute(&provider)?
        .destroy_server(&old.server_id, &res(name))
        .await?;
    env.oplog.info(
        Some(res(name)),
        format!("{name}: destroyed its old server {}", old.server_id),
    );
    persist(env, &[Key::TrackedNode(name.to_string())], |s| {
        if let Some(e) = s
            .tracked
            .nodes
            .get_mut(name)
            .and_then(|t| t.execution.as_mut())
        {
            e.retiring = None;
        }
    })
    .await
}

fn compute(provider: &Connected) -> Result<&dyn crate::providers::ComputeApi, ActorError> {
    provider
        .api
        .compute()
        .ok_or_else(|| ActorError::precondition(format!("{}: no compute", provider.lane.display())))
}
