//! The change set: what an apply of the current plan would do, resource by resource.
//!
//! Pure functions of the [`State`] (planned, tracked, observed) and of what this engine
//! can reach ([`ChangeEnv`]: the connected providers and the SSH port). The same object
//! feeds `legion plan`, `legion apply`'s confirmation, the dashboard's plan overlay, the
//! per-row pending markers and header counts of every snapshot, and the end of an apply:
//! an apply is converged only when the change set recomputed after a fresh reading is
//! empty.
//!
//! It decides nothing on its own: node changes mirror the node actor's `decide_sync`,
//! derived resources (zones, records, firewall sets, domains) compare the signature of
//! the spec the plan derives (`derive.rs`, the reconcilers) with the one last applied,
//! exactly as their actors do. A change apply cannot make (a resize, a region move, a
//! provider that is not connected, a missing management source) is listed with
//! `blocked` saying why, never left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::actors::Machine;
use super::actors::machine::{SyncDecision, decide_sync};
use super::actors::reconcilers::DomainSpec;
use super::actors::replace::{NodeCaps, NodeDiff, Route, node_diff, route};
use super::derive::{PlanIndex, desired_firewalls_in, desired_zone_in, lockout_among, signature};
use super::state::model::{
    ExecStatus, ExecutionKind, NodePlan, Plan, ServerReading, State, TrackedNode,
};
use crate::providers::{FirewallRule, RrSet, ServerStatus};
use peers::ClusterViews;

/// What kind of resource a change is about; the order is the order they are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Node,
    Zone,
    Record,
    Firewall,
    Domain,
}

impl ResourceKind {
    /// The heading of this kind's group.
    pub fn heading(self) -> &'static str {
        match self {
            ResourceKind::Node => "Nodes",
            ResourceKind::Zone => "DNS zones",
            ResourceKind::Record => "DNS records",
            ResourceKind::Firewall => "Firewall sets",
            ResourceKind::Domain => "Domains",
        }
    }
}

/// What an apply would do to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Create,
    /// Changed in place, field by field.
    Update,
    /// Destroyed and created again (a new server); `reason` says why.
    Replace,
    Delete,
    /// Not observed yet: whether it differs is not known.
    Unknown,
}

impl ChangeAction {
    /// Terraform's markers: `+` create, `~` update, `-/+` replace, `-` delete; `?` unknown.
    pub fn marker(self) -> &'static str {
        match self {
            ChangeAction::Create => "+",
            ChangeAction::Update => "~",
            ChangeAction::Replace => "-/+",
            ChangeAction::Delete => "-",
            ChangeAction::Unknown => "?",
        }
    }
}

impl fmt::Display for ChangeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeAction::Create => "create",
            ChangeAction::Update => "update",
            ChangeAction::Replace => "replace",
            ChangeAction::Delete => "delete",
            ChangeAction::Unknown => "unknown",
        })
    }
}

/// One field's old and new value; `None` where there is none (a create has no old).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ResourceKind,
    /// The resource's name (a record: `name.zone TYPE`).
    pub name: String,
    pub action: ChangeAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Why this change (a replace's cause, what an update resumes, what it waits for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why an apply cannot make this change now, and what to do; `None` when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

impl Change {
    fn new(kind: ResourceKind, name: &str, action: ChangeAction) -> Change {
        Change {
            kind,
            name: name.to_string(),
            action,
            fields: Vec::new(),
            reason: None,
            blocked: None,
        }
    }

    fn field(&mut self, detail: bool, field: &str, old: Option<&str>, new: Option<&str>) {
        if detail {
            self.fields.push(FieldChange {
                field: field.to_string(),
                old: old.map(String::from),
                new: new.map(String::from),
            });
        }
    }

    fn block(&mut self, why: String) {
        self.blocked = Some(match self.blocked.take() {
            Some(b) => format!("{b}; {why}"),
            None => why,
        });
    }

    /// One line: `~ node web-1: offer sim-small -> sim-large (blocked: ...)`.
    pub fn line(&self) -> String {
        let kind = match self.kind {
            ResourceKind::Node => "node",
            ResourceKind::Zone => "zone",
            ResourceKind::Record => "record",
            ResourceKind::Firewall => "firewall set",
            ResourceKind::Domain => "domain",
        };
        let mut out = format!("{} {kind} {}", self.marker(), self.name);
        let fields: Vec<String> = self.fields.iter().map(FieldChange::short).collect();
        if !fields.is_empty() && self.action != ChangeAction::Create {
            out.push_str(": ");
            out.push_str(&fields.join(", "));
        }
        if let Some(r) = &self.reason {
            out.push_str(&format!(" ({r})"));
        }
        if let Some(b) = &self.blocked {
            out.push_str(&format!(" [blocked: {b}]"));
        }
        out
    }

    pub fn marker(&self) -> &'static str {
        if self.blocked.is_some() && self.action != ChangeAction::Unknown {
            "!"
        } else {
            self.action.marker()
        }
    }
}

impl FieldChange {
    /// `offer sim-small -> sim-large`, `+ tcp 443 from 0.0.0.0/0`, `- www A 1.2.3.4`.
    pub fn short(&self) -> String {
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => format!("{} {o} -> {n}", self.field),
            (None, Some(n)) => format!("{} {n}", self.field),
            (Some(o), None) => format!("{} {o} (removed)", self.field),
            (None, None) => self.field.clone(),
        }
    }
}

/// How many changes of each kind; what the dashboard's header shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub unknown: usize,
    /// Changes an apply cannot make now (counted under their action too).
    pub blocked: usize,
}

impl ChangeCounts {
    pub fn total(&self) -> usize {
        self.create + self.update + self.replace + self.delete + self.unknown
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    fn add(&mut self, c: &Change) {
        match c.action {
            ChangeAction::Create => self.create += 1,
            ChangeAction::Update => self.update += 1,
            ChangeAction::Replace => self.replace += 1,
            ChangeAction::Delete => self.delete += 1,
            ChangeAction::Unknown => self.unknown += 1,
        }
        if c.blocked.is_some() {
            self.blocked += 1;
        }
    }
}

impl fmt::Display for ChangeCounts {
    /// `3 to create, 1 to change, 2 unknown`; `nothing to do` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing to do");
        }
        let parts: Vec<String> = [
            (self.create, "to create"),
            (self.update, "to change"),
            (self.replace, "to replace"),
            (self.delete, "to delete"),
            (self.unknown, "unknown"),
            (self.blocked, "blocked"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Every change an apply of the current plan would make, grouped by kind, then by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    pub changes: Vec<Change>,
    /// Resources that are already as planned.
    pub unchanged: usize,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn counts(&self) -> ChangeCounts {
        let mut c = ChangeCounts::default();
        for ch in &self.changes {
            c.add(ch);
        }
        c
    }
}

/// What the engine can reach, which decides what is blocked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeEnv {
    /// Connected providers (configured and enabled here), and whether each manages
    /// firewalls (those without get operator tasks instead).
    pub providers: BTreeMap<String, bool>,
    /// The SSH port the management rule opens (`LEGION_SSH_PORT`).
    pub ssh_port: u16,
    /// What each connected provider can do to an existing server (resize, rebuild,
    /// create for a replace); a provider missing here is treated as able (it is
    /// blocked as not connected anyway).
    pub caps: BTreeMap<String, NodeCaps>,
}

impl ChangeEnv {
    fn unreachable(&self, provider: &str) -> Option<String> {
        (!self.providers.contains_key(provider)).then(|| {
            format!(
                "provider {provider:?} is not configured or not enabled here \
                 (`legion provider configure {provider}`)"
            )
        })
    }
}

/// The change set of `state`. `detail: false` skips the field lists (the snapshot only
/// needs actions and counts; `legion plan` and the overlay ask for the details).
pub fn compute(state: &State, env: &ChangeEnv, detail: bool) -> ChangeSet {
    let mut set = ChangeSet::default();
    let mut push = |c: Option<Change>| match c {
        Some(c) => set.changes.push(c),
        None => set.unchanged += 1,
    };
    let plan = &state.plan;
    let tracked = &state.tracked;
    let clusters = ClusterViews::of(state);
    let names: BTreeSet<&String> = plan.nodes.keys().chain(tracked.nodes.keys()).collect();
    for name in names {
        let node = NodeView {
            name,
            plan: plan.nodes.get(name),
            tracked: tracked.nodes.get(name),
            reading: state.observed.servers.get(name),
        };
        push(node_change(node, &clusters, env, detail));
    }
    // Built once: each zone and firewall set then costs its cluster's size.
    let index = PlanIndex::of(plan);
    let mut records = Vec::new();
    let zones: BTreeSet<&String> = plan.zones.keys().chain(tracked.zones.keys()).collect();
    for z in zones {
        push(zone_change(state, &index, z, env, detail, &mut records));
    }
    set.changes.append(&mut records);
    let mut clusters = index.clusters().clone();
    clusters.extend(tracked.firewalls.keys().cloned());
    for c in &clusters {
        let change = firewall_change(state, &index, c, env, detail);
        match change {
            Some(ch) => set.changes.push(ch),
            None => set.unchanged += 1,
        }
    }
    let domains: BTreeSet<&String> = plan.domains.keys().chain(tracked.domains.keys()).collect();
    for d in domains {
        let change = domain_change(state, d, env, detail);
        match change {
            Some(ch) => set.changes.push(ch),
            None => set.unchanged += 1,
        }
    }
    set.changes
        .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    set
}

/// One node's plan, tracked record and last reading.
struct NodeView<'a> {
    name: &'a str,
    plan: Option<&'a NodePlan>,
    tracked: Option<&'a TrackedNode>,
    reading: Option<&'a ServerReading>,
}

fn node_change(
    node: NodeView<'_>,
    clusters: &ClusterViews,
    env: &ChangeEnv,
    detail: bool,
) -> Option<Change> {
    let NodeView {
        name,
        plan,
        tracked,
        reading,
    } = node;
    let has_server = tracked.is_some_and(|t| t.server_id.is_some());
    let machine = match reading {
        Some(ServerReading { server: None, .. }) if has_server => Machine::Missing,
        _ => Machine::Unknown,
    };
    let decision = decide_sync(plan, tracked, machine);
    let exec = tracked.and_then(|t| t.execution.as_ref());
    let c = match (plan, decision) {
        (None, SyncDecision::Nothing) => return None,
        (None, _) => {
            let t = tracked?;
            let mut c = Change::new(ResourceKind::Node, name, ChangeAction::Delete);
            c.reason = Some(if has_server {
                "removed from the plan: its server is destroyed".into()
            } else {
                "removed from the plan: Legion forgets it (no server was created)".into()
            });
            c.field(detail, "provider", Some(&t.provider), None);
            c.field(detail, "region", Some(&t.region), None);
            c.field(detail, "offer", Some(&t.offer), None);
            if let Some(id) = &t.server_id {
                c.field(detail, "server", Some(id), None);
            }
            if let Some(why) = env.unreachable(&t.provider) {
                c.block(why);
            }
            return Some(c);
        }
        (Some(p), _) if !has_server => {
            let mut c = Change::new(ResourceKind::Node, name, ChangeAction::Create);
            for (f, v) in [
                ("provider", &p.provider),
                ("region", &p.region),
                ("offer", &p.offer),
                ("image", &p.image),
                ("cluster", &p.cluster),
                ("role", &p.role),
            ] {
                c.field(detail, f, None, Some(v));
            }
            if let Some(e) = exec.filter(|e| e.is_retryable() || e.status == ExecStatus::Running) {
                c.reason = Some(format!(
                    "resumes its {} {} execution{}",
                    status_word(e.status),
                    kind_word(e.kind),
                    e.current_phase()
                        .map(|ph| format!(" at {ph}"))
                        .unwrap_or_default()
                ));
            }
            if let Some(why) = env.unreachable(&p.provider) {
                c.block(why);
            }
            return Some(c);
        }
        (Some(p), d) => {
            let t = tracked?;
            let mut c = Change::new(ResourceKind::Node, name, ChangeAction::Update);
            let deployed = d == SyncDecision::Nothing;
            match d {
                SyncDecision::Reprovision => {
                    c.action = ChangeAction::Replace;
                    c.reason = Some(
                        "its server no longer exists at the provider; apply creates it again"
                            .into(),
                    );
                }
                // An execution still running is work in progress, not a change to make
                // (after a crash it is marked interrupted at unlock and resumes).
                SyncDecision::Resume if exec.is_some_and(|e| e.status == ExecStatus::Running) => {}
                SyncDecision::Resume => {
                    let e = exec?;
                    let phase = e.current_phase().map(|ph| ph.to_string());
                    c.field(
                        detail,
                        "deployment",
                        Some(&format!(
                            "{} at {}",
                            status_word(e.status),
                            phase.as_deref().unwrap_or("start")
                        )),
                        Some("resumed"),
                    );
                    c.reason = Some(format!("resumes its {} execution", kind_word(e.kind)));
                    if let Some(old) = &e.retiring {
                        c.reason = Some(format!(
                            "resumes its {} execution; it then destroys the old server {}",
                            kind_word(e.kind),
                            old.server_id
                        ));
                    }
                }
                SyncDecision::Provision => {
                    c.field(detail, "deployment", Some("not installed"), Some(&p.role));
                    c.reason = Some("installs its role".into());
                }
                SyncDecision::Nothing | SyncDecision::Teardown => {}
            }
            let observed = match reading.map(|r| r.server.as_ref()) {
                Some(Some(o)) => Some(o),
                _ => None,
            };
            // Only a deployed node is compared: one still deploying gets the plan's
            // values when its execution runs.
            let diff = node_diff(p, t, observed);
            let compare = if p.provider != t.provider {
                Some(diff)
            } else if deployed {
                observed.map(|_| diff)
            } else {
                None
            };
            match compare {
                Some(diff) if !diff.is_empty() => server_change(&mut c, &diff, t, p, env, detail),
                // Nothing read yet: whether region, offer and image match is unknown.
                None if deployed && reading.is_none() => {
                    c.action = ChangeAction::Unknown;
                    c.reason = Some(
                        "not observed yet; `legion refresh` reads it from the provider".into(),
                    );
                }
                _ if deployed => {
                    if let Some(why) = clusters.peers_change(name, p, t) {
                        c.field(detail, "peers", None, None);
                        c.reason = Some(why);
                        // The rewrite is a login: a node that is not running keeps its
                        // stale list until it runs again and an apply reaches it.
                        if let Some(o) = observed.filter(|o| o.status != ServerStatus::Running) {
                            c.block(format!(
                                "{name} is {} at the provider; start it (`legion nodes start \
                                 {name}`) and apply to rewrite its peer list",
                                o.status
                            ));
                        }
                    }
                }
                _ => {}
            }
            // Every update the node needs sets a reason or a block; none: in sync.
            if c.action == ChangeAction::Update && c.reason.is_none() && c.blocked.is_none() {
                return None;
            }
            if let Some(why) = env.unreachable(&p.provider) {
                c.block(why);
            }
            c
        }
    };
    Some(c)
}

/// How apply makes a deployed node's server match its plan (see `actors::replace`).
fn server_change(
    c: &mut Change,
    diff: &NodeDiff,
    t: &TrackedNode,
    p: &NodePlan,
    env: &ChangeEnv,
    detail: bool,
) {
    for (f, old, new) in diff.fields() {
        c.field(detail, f, Some(old), Some(new));
    }
    let old_id = t.server_id.as_deref().unwrap_or("?");
    match route(diff, &t.provider, &p.provider, |p| env.caps.get(p).copied()) {
        Route::Resize => c.reason = Some("resize: the server stops for it".into()),
        Route::Rebuild => {
            c.action = ChangeAction::Replace;
            c.reason = Some(format!(
                "rebuild: server {old_id} keeps its id and address, its disk is reset to the \
                 new image (data on it is lost)"
            ));
        }
        Route::Replace { cause } => {
            c.action = ChangeAction::Replace;
            c.reason = Some(format!(
                "{cause}; a new server is created and deployed first, then replace destroys \
                 {old_id}"
            ));
        }
        Route::Blocked(why) => c.block(why),
    }
}

fn kind_word(k: ExecutionKind) -> &'static str {
    match k {
        ExecutionKind::Add => "add",
        ExecutionKind::Reinstall => "reinstall",
        ExecutionKind::Reconfigure => "reconfigure",
        ExecutionKind::Resize => "resize",
        ExecutionKind::Replace => "replace",
    }
}

fn status_word(s: ExecStatus) -> &'static str {
    match s {
        ExecStatus::Running => "unfinished",
        ExecStatus::Succeeded => "succeeded",
        ExecStatus::Failed => "failed",
        ExecStatus::Interrupted => "interrupted",
    }
}

fn rrset_value(r: &RrSet) -> String {
    let mut v = r.values.clone();
    v.sort();
    format!("{} (ttl {})", v.join(" "), r.ttl)
}

fn zone_change(
    state: &State,
    index: &PlanIndex,
    zone: &str,
    env: &ChangeEnv,
    detail: bool,
    records: &mut Vec<Change>,
) -> Option<Change> {
    let tz = state.tracked.zones.get(zone);
    let Some((spec, waiting)) = desired_zone_in(&state.plan, index, &state.tracked, zone) else {
        let tz = tz?;
        let mut c = Change::new(ResourceKind::Zone, zone, ChangeAction::Delete);
        c.reason = Some(if tz.created_by_legion {
            "removed from the plan: Legion created it, so it is deleted".into()
        } else {
            "removed from the plan: Legion's records are deleted, the zone stays".into()
        });
        if let Some(why) = env.unreachable(&tz.provider) {
            c.block(why);
        }
        return Some(c);
    };
    let sig = signature(&spec);
    let applied = tz.and_then(|t| t.applied_signature.as_deref());
    let unreachable = env.unreachable(&spec.provider);
    let waits = (!waiting.is_empty()).then(|| waiting.join("; "));
    if applied.is_none() {
        let mut c = Change::new(ResourceKind::Zone, zone, ChangeAction::Create);
        c.field(detail, "provider", None, Some(&spec.provider));
        for r in &spec.rrsets {
            c.field(
                detail,
                &format!("{} {}", r.name, r.rtype),
                None,
                Some(&rrset_value(r)),
            );
        }
        c.reason = waits.map(|w| format!("waits for: {w}"));
        if let Some(why) = unreachable {
            c.block(why);
        }
        return Some(c);
    }
    if applied == Some(sig.as_str()) {
        // Applied as derived, but something it needs is still missing.
        let w = waits?;
        let mut c = Change::new(ResourceKind::Zone, zone, ChangeAction::Update);
        c.block(format!("waits for: {w}"));
        return Some(c);
    }
    // Record by record against what the provider last showed (or, unread, nothing).
    let observed = state.observed.zones.get(zone);
    let have: BTreeMap<(String, String), &RrSet> = observed
        .map(|o| {
            o.rrsets
                .iter()
                .map(|r| ((r.name.clone(), r.rtype.to_string()), r))
                .collect()
        })
        .unwrap_or_default();
    let managed: BTreeSet<(String, String)> = tz
        .map(|t| {
            t.managed
                .iter()
                .map(|(n, t)| (n.clone(), t.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut wanted = BTreeSet::new();
    let before = records.len();
    for r in &spec.rrsets {
        let key = (r.name.clone(), r.rtype.to_string());
        let rname = format!("{}.{zone} {}", r.name, r.rtype);
        let new = rrset_value(r);
        match have.get(&key) {
            Some(h) if rrset_value(h) == new => {}
            Some(h) => {
                let mut c = Change::new(ResourceKind::Record, &rname, ChangeAction::Update);
                c.field(detail, "value", Some(&rrset_value(h)), Some(&new));
                records.push(c);
            }
            None => {
                let mut c = Change::new(ResourceKind::Record, &rname, ChangeAction::Create);
                c.field(detail, "value", None, Some(&new));
                records.push(c);
            }
        }
        wanted.insert(key);
    }
    for key in managed.difference(&wanted) {
        if let Some(h) = have.get(key) {
            let rname = format!("{}.{zone} {}", key.0, key.1);
            let mut c = Change::new(ResourceKind::Record, &rname, ChangeAction::Delete);
            c.field(detail, "value", Some(&rrset_value(h)), None);
            records.push(c);
        }
    }
    for c in &mut records[before..] {
        if let Some(why) = &unreachable {
            c.block(why.clone());
        }
    }
    let mut c = Change::new(ResourceKind::Zone, zone, ChangeAction::Update);
    c.reason = Some(match (records.len() - before, &waits) {
        (0, _) => "its records differ from the last apply".into(),
        (n, None) => format!("{n} record changes"),
        (n, Some(w)) => format!("{n} record changes; waits for: {w}"),
    });
    if let Some(why) = unreachable {
        c.block(why);
    }
    Some(c)
}

fn rule_text(r: &FirewallRule) -> String {
    format!("{r} ({})", r.description)
}

fn firewall_change(
    state: &State,
    index: &PlanIndex,
    cluster: &str,
    env: &ChangeEnv,
    detail: bool,
) -> Option<Change> {
    let plan: &Plan = &state.plan;
    let tf = state.tracked.firewalls.get(cluster);
    let Some((specs, waiting)) =
        desired_firewalls_in(plan, index, &state.tracked, cluster, env.ssh_port)
    else {
        let tf = tf?;
        let mut c = Change::new(ResourceKind::Firewall, cluster, ChangeAction::Delete);
        c.reason = Some("the cluster left the plan: its firewalls are deleted".into());
        for p in tf.firewall_ids.keys() {
            if let Some(why) = env.unreachable(p) {
                c.block(why);
            }
        }
        return Some(c);
    };
    let sig = signature(&specs);
    let applied = tf.and_then(|t| t.applied_signature.as_deref());
    let waits = (!waiting.is_empty()).then(|| waiting.join("; "));
    let no_source = specs.iter().any(|s| s.management.is_empty());
    if applied == Some(sig.as_str()) {
        let w = waits?;
        let mut c = Change::new(ResourceKind::Firewall, cluster, ChangeAction::Update);
        c.block(format!("waits for: {w}"));
        return Some(c);
    }
    let action = if applied.is_none() {
        ChangeAction::Create
    } else {
        ChangeAction::Update
    };
    let mut c = Change::new(ResourceKind::Firewall, cluster, action);
    if detail {
        let observed = state.observed.firewalls.get(&format!("legion-{cluster}"));
        let have: BTreeSet<String> = observed
            .map(|o| o.rules.iter().map(rule_text).collect())
            .unwrap_or_default();
        let want: BTreeSet<String> = specs
            .first()
            .map(|s| s.rules.iter().map(rule_text).collect())
            .unwrap_or_default();
        for r in want.difference(&have) {
            c.field(detail, "rule", None, Some(r));
        }
        for r in have.difference(&want) {
            c.field(detail, "rule", Some(r), None);
        }
        let servers: usize = specs.iter().map(|s| s.server_ids.len()).sum();
        let was = observed.map(|o| o.applied_to.len().to_string());
        if was.as_deref() != Some(&servers.to_string()) {
            c.field(
                detail,
                "servers",
                was.as_deref(),
                Some(&servers.to_string()),
            );
        }
    }
    if no_source {
        c.block(
            waits
                .clone()
                .unwrap_or_else(|| "no management source yet".into()),
        );
    } else if let Some(w) = &waits {
        c.reason = Some(format!("waits for: {w}"));
    }
    for s in &specs {
        match env.providers.get(&s.provider) {
            None => {
                if let Some(why) = env.unreachable(&s.provider) {
                    c.block(why);
                }
            }
            Some(true) if !no_source => {
                if let Err(e) = lockout_among(s, plan, &state.tracked, index.members(cluster)) {
                    c.block(e.to_string());
                }
            }
            Some(_) => {}
        }
    }
    Some(c)
}

fn domain_change(state: &State, domain: &str, env: &ChangeEnv, detail: bool) -> Option<Change> {
    let td = state.tracked.domains.get(domain);
    let Some(dp) = state.plan.domains.get(domain) else {
        td?;
        let mut c = Change::new(ResourceKind::Domain, domain, ChangeAction::Delete);
        c.reason = Some("Legion stops managing it; its registration and nameservers stay".into());
        return Some(c);
    };
    let ns = state
        .tracked
        .zones
        .get(&dp.zone)
        .map(|z| z.nameservers.clone())
        .unwrap_or_default();
    let applied = td.and_then(|t| t.applied_signature.as_deref());
    let action = if applied.is_none() {
        ChangeAction::Create
    } else {
        ChangeAction::Update
    };
    let mut c = Change::new(ResourceKind::Domain, domain, action);
    if let Some(why) = env.unreachable(&dp.registrar) {
        c.block(why);
    }
    if ns.is_empty() {
        c.field(
            detail,
            "delegates to",
            None,
            Some(&format!("zone {}", dp.zone)),
        );
        if state.plan.zones.contains_key(&dp.zone) {
            c.reason = Some(format!("after zone {} is created", dp.zone));
        } else {
            c.block(format!("zone {} is not planned", dp.zone));
        }
        return Some(c);
    }
    let spec = DomainSpec {
        registrar: dp.registrar.clone(),
        nameservers: ns,
    };
    if applied == Some(signature(&spec).as_str()) {
        return None;
    }
    c.field(
        detail,
        "nameservers",
        None,
        Some(&spec.nameservers.join(", ")),
    );
    Some(c)
}

#[path = "changes_peers.rs"]
mod peers;

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
