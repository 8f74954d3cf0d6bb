//! A fake Hetzner Cloud API (v1) for tests: a real HTTP server on 127.0.0.1 that keeps a
//! small in-memory world (servers, SSH keys, firewalls, DNS zones and RRSets, actions) and
//! answers with the documented shapes, status codes and error codes.
//!
//! Start it on its own thread and runtime ([`HetznerFake::start`], for blocking tests and
//! tests that spawn the `legion` binary with `LEGION_HETZNER_API_URL`), or on the test's
//! tokio runtime ([`HetznerFake::start_async`]). The server, fault rules, rate budget and
//! request record are the kit's ([`crate::http`]); this module owns the Hetzner world and
//! how Hetzner answers.
//!
//! Facts follow the published OpenAPI description of the Cloud API (error table, label
//! selector grammar, pagination, rate-limit headers, action commands) and hcloud-go's schema
//! types. Actions finish after a configurable real-time duration (200 ms by default); their
//! effects (server status transitions) are applied lazily whenever the fake is touched.
//!
//! Fault injection and inspection helpers live on the [`HetznerFake`] handle (the common
//! ones through its [`Controls`]) and may be used while the server is running, from any
//! thread.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::http::{
    Controls, Dropped, Exchange, HttpResponse, Query, RateHeaders, Server, Service, lock, page_of,
    reply, utc_datetime,
};
pub use crate::http::{FaultKind, FaultRule, RecordedRequest};

/// The bearer token the fake accepts unless changed with [`HetznerFake::set_token`].
pub const TOKEN: &str = "hz-fake-token-0123456789";

/// Default time an action stays `running` before it finishes.
pub const DEFAULT_ACTION_DURATION: Duration = Duration::from_millis(200);

/// Default `RateLimit-Limit` (requests per hour), as documented.
pub const DEFAULT_RATE_LIMIT: u64 = 3600;

// ---------------------------------------------------------------------------------------
// Public handle
// ---------------------------------------------------------------------------------------

/// A running fake. Dropping it stops the server.
pub struct HetznerFake {
    server: Server,
    shared: Arc<Shared>,
}

/// The common controls: faults, latency, the rate budget, the request record.
impl Deref for HetznerFake {
    type Target = Controls;

    fn deref(&self) -> &Controls {
        &self.shared.controls
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeServer {
    pub id: u64,
    pub name: String,
    /// `initializing`, `starting`, `running`, `stopping`, `off`, `rebuilding`, ...
    pub status: String,
    pub server_type: String,
    pub location: String,
    pub image_id: u64,
    pub labels: BTreeMap<String, String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub ssh_keys: Vec<u64>,
    pub user_data: Option<String>,
    pub created: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSshKey {
    pub id: u64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub created: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeApplied {
    Server(u64),
    LabelSelector(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FakeFirewall {
    pub id: u64,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Normalised rule objects as the API returns them.
    pub rules: Vec<Value>,
    pub applied_to: Vec<FakeApplied>,
    pub created: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRecord {
    pub value: String,
    pub comment: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRrSet {
    pub name: String,
    pub rtype: String,
    pub ttl: Option<u64>,
    pub labels: BTreeMap<String, String>,
    pub records: Vec<FakeRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeZone {
    pub id: u64,
    pub name: String,
    pub mode: String,
    pub ttl: u64,
    pub labels: BTreeMap<String, String>,
    pub rrsets: Vec<FakeRrSet>,
    pub created: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeAction {
    pub id: u64,
    pub command: String,
    /// `running`, `success` or `error`.
    pub status: String,
    pub resources: Vec<(u64, String)>,
}

impl HetznerFake {
    /// Start on a dedicated thread with its own current-thread tokio runtime.
    pub fn start() -> Self {
        let shared = Arc::new(Shared::new());
        Self {
            server: Server::start("hetzner-fake", shared.clone()),
            shared,
        }
    }

    /// Start on the current tokio runtime (the accept loop and connections are spawned tasks).
    pub async fn start_async() -> Self {
        let shared = Arc::new(Shared::new());
        Self {
            server: Server::start_async(shared.clone()).await,
            shared,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the value for `LEGION_HETZNER_API_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr())
    }

    /// The variables that point Legion at this fake (actions polled every 10 ms), with
    /// the token in Hetzner's default variable.
    pub fn legion_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LEGION_HETZNER_API_URL", self.base_url()),
            ("LEGION_HETZNER_ACTION_POLL_MS", "10".into()),
            ("HCLOUD_TOKEN", self.token()),
        ]
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The bearer token currently accepted.
    pub fn token(&self) -> String {
        lock(&self.shared.token).clone()
    }

    pub fn set_token(&self, token: &str) {
        *lock(&self.shared.token) = token.to_string();
    }

    // ----- simulated time -------------------------------------------------------------

    /// How long new actions stay `running` (default 200 ms).
    /// Give every server created from now on this public IPv4 (a loopback sshd plays
    /// the servers in end-to-end tests).
    pub fn set_server_ipv4(&self, ip: &str) {
        self.world().fixed_ipv4 = Some(ip.to_string());
    }

    pub fn set_action_duration(&self, duration: Duration) {
        self.world().action_duration = duration;
    }

    /// Enforce firewalls for reachability from now on: every new server gets its own
    /// loopback address behind `gates` ([`crate::gate`]), and a connection gets through
    /// when no firewall is applied to the server or an inbound rule allows its protocol,
    /// port and source (a Hetzner firewall drops everything else).
    pub fn enforce_firewalls(&self, gates: Arc<crate::gate::Gates>) {
        let shared = Arc::downgrade(&self.shared);
        let verdict: crate::gate::Verdict = Arc::new(move |addr, port, from| {
            shared.upgrade().is_some_and(|s| {
                let mut world = lock(&s.world);
                world.tick(Instant::now());
                world.allows(&addr.to_string(), port, from)
            })
        });
        self.world().gate = Some((gates, verdict));
    }

    /// Replace a firewall's rules behind the client's back (the API's rule objects).
    /// False when there is no such firewall.
    pub fn set_firewall_rules(&self, id: u64, rules: Vec<Value>) -> bool {
        match self.world().firewalls.get_mut(&id) {
            Some(fw) => {
                fw.rules = rules;
                true
            }
            None => false,
        }
    }

    /// Finish every running action now (their effects are applied).
    pub fn finish_all_actions(&self) {
        let mut world = self.world();
        let now = Instant::now();
        for action in world.actions.values_mut() {
            if action.finish_at > now {
                action.finish_at = now;
            }
        }
        world.tick(now);
    }

    // ----- faults ----------------------------------------------------------------------

    /// Remove all pending fault rules, latency and action failures; forced locks stay.
    pub fn clear_faults(&self) {
        self.shared.controls.clear_faults();
        self.world().action_failures.clear();
    }

    /// Actions on (and deletion of) this server answer `423 locked` until unlocked.
    pub fn lock_server(&self, id: u64) {
        self.world().forced_locks.insert(id);
    }

    pub fn unlock_server(&self, id: u64) {
        self.world().forced_locks.remove(&id);
    }

    /// Lock a server for `duration` (as while another action runs on it), then unlock.
    pub fn lock_server_for(&self, id: u64, duration: Duration) {
        self.lock_server(id);
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            lock(&shared.world).forced_locks.remove(&id);
        });
    }

    /// The next action whose command starts with `command_prefix` (any action if empty)
    /// ends in status `error` with this code and message; its effect is rolled back.
    pub fn fail_next_action(&self, command_prefix: &str, code: &str, message: &str) {
        self.world().action_failures.push(ActionFailure {
            command_prefix: command_prefix.to_string(),
            code: code.to_string(),
            message: message.to_string(),
        });
    }

    /// When set, `shutdown` actions succeed but the server stays `running` (ACPI ignored).
    pub fn set_ignore_acpi_shutdown(&self, ignore: bool) {
        self.world().ignore_shutdown = ignore;
    }

    // ----- out-of-band changes ---------------------------------------------------------

    /// Change a server's status behind the client's back. Returns false if unknown.
    pub fn set_server_status(&self, id: u64, status: &str) -> bool {
        let mut world = self.world();
        match world.servers.get_mut(&id) {
            Some(server) => {
                server.status = status.to_string();
                true
            }
            None => false,
        }
    }

    /// Delete a server behind the client's back. Returns false if unknown.
    pub fn delete_server_out_of_band(&self, id: u64) -> bool {
        self.world().remove_server(id)
    }

    /// Add a rule to a firewall behind the client's back (as given: the API's rule
    /// object, e.g. an outbound one). False when there is no such firewall.
    pub fn add_firewall_rule(&self, id: u64, rule: Value) -> bool {
        match self.world().firewalls.get_mut(&id) {
            Some(fw) => {
                fw.rules.push(rule);
                true
            }
            None => false,
        }
    }

    /// Replace a server's labels behind the client's back.
    pub fn set_server_labels(&self, id: u64, labels: &[(&str, &str)]) -> bool {
        let mut world = self.world();
        match world.servers.get_mut(&id) {
            Some(server) => {
                server.labels = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                true
            }
            None => false,
        }
    }

    /// Create a `running` server directly (no action), e.g. one made outside Legion.
    pub fn seed_server(
        &self,
        name: &str,
        server_type: &str,
        location: &str,
        labels: &[(&str, &str)],
    ) -> u64 {
        let mut world = self.world();
        let arch = world
            .catalog
            .server_type(&json!(server_type))
            .map(|t| t.architecture)
            .unwrap_or("x86");
        let image_id = world
            .catalog
            .images
            .iter()
            .find(|i| i.name == Some("ubuntu-24.04") && i.architecture == arch)
            .map(|i| i.id)
            .unwrap_or(0);
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let id = world.new_server(
            name,
            server_type,
            location,
            image_id,
            labels,
            true,
            true,
            Vec::new(),
            None,
        );
        if let Some(server) = world.servers.get_mut(&id) {
            server.status = "running".into();
        }
        id
    }

    /// Create an SSH key directly. Panics if the key does not parse.
    pub fn seed_ssh_key(&self, name: &str, public_key: &str) -> u64 {
        let mut world = self.world();
        let fingerprint = ssh_fingerprint(public_key).expect("valid OpenSSH public key");
        let id = world.ids.next(Kind::SshKey);
        world.ssh_keys.insert(
            id,
            FakeSshKey {
                id,
                name: name.to_string(),
                public_key: public_key.trim().to_string(),
                fingerprint,
                labels: BTreeMap::new(),
                created: SystemTime::now(),
            },
        );
        id
    }

    // ----- inspection ------------------------------------------------------------------

    pub fn servers(&self) -> Vec<FakeServer> {
        self.world().servers.values().cloned().collect()
    }

    pub fn server(&self, id: u64) -> Option<FakeServer> {
        self.world().servers.get(&id).cloned()
    }

    pub fn server_by_name(&self, name: &str) -> Option<FakeServer> {
        self.world()
            .servers
            .values()
            .find(|s| s.name == name)
            .cloned()
    }

    pub fn ssh_keys(&self) -> Vec<FakeSshKey> {
        self.world().ssh_keys.values().cloned().collect()
    }

    pub fn firewalls(&self) -> Vec<FakeFirewall> {
        self.world().firewalls.values().cloned().collect()
    }

    pub fn zones(&self) -> Vec<FakeZone> {
        self.world().zones.values().map(|z| z.to_public()).collect()
    }

    /// RRSets of a zone given by name; empty if the zone does not exist.
    pub fn rrsets(&self, zone: &str) -> Vec<FakeRrSet> {
        self.world()
            .zones
            .values()
            .find(|z| z.name == zone)
            .map(|z| z.rrsets.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn actions(&self) -> Vec<FakeAction> {
        self.world()
            .actions
            .values()
            .map(|a| FakeAction {
                id: a.id,
                command: a.command.clone(),
                status: a.status().to_string(),
                resources: a
                    .resources
                    .iter()
                    .map(|(id, t)| (*id, t.to_string()))
                    .collect(),
            })
            .collect()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        let mut world = lock(&self.shared.world);
        world.tick(Instant::now());
        world
    }
}

// ---------------------------------------------------------------------------------------
// Answering
// ---------------------------------------------------------------------------------------

struct Shared {
    world: Mutex<World>,
    token: Mutex<String>,
    controls: Controls,
}

impl Shared {
    fn new() -> Self {
        Self {
            world: Mutex::new(World::new()),
            token: Mutex::new(TOKEN.to_string()),
            controls: Controls::new("/v1", Some(DEFAULT_RATE_LIMIT)),
        }
    }
}

impl Service for Shared {
    async fn handle(&self, req: Exchange) -> Result<HttpResponse, Dropped> {
        answer(self, req).await
    }
}

async fn answer(shared: &Shared, req: Exchange) -> Result<HttpResponse, Dropped> {
    let method = req.method.clone();
    let path = shared.controls.strip(&req.path).to_string();
    let token = lock(&shared.token).clone();
    let authorized = req
        .header("authorization")
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token);
    shared.controls.record(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: req.query.clone(),
        authorized,
    });
    shared.controls.delay().await;

    // Rate limit budget, then injected faults.
    let (fault, rate_headers) = shared.controls.admit(&method, &path);

    let simple = |status: u16, code: &str, message: &str| {
        Ok(respond(
            status,
            Some(&error_body(code, message, None)),
            rate_headers.as_ref(),
        ))
    };
    match &fault {
        Some(FaultKind::ServerError) => {
            return simple(
                500,
                "server_error",
                "injected: error within the API backend",
            );
        }
        Some(FaultKind::Unavailable) => {
            return simple(
                503,
                "unavailable",
                "injected: service currently unavailable",
            );
        }
        Some(FaultKind::Timeout) => {
            return simple(
                504,
                "timeout",
                "injected: request could not be answered in time",
            );
        }
        Some(FaultKind::RateLimited { .. }) => {
            return simple(429, "rate_limit_exceeded", "rate limit exceeded");
        }
        Some(FaultKind::DropBeforeApply) => return Err(Dropped),
        Some(FaultKind::DropAfterApply) | None => {}
    }

    if !authorized {
        return simple(
            401,
            "unauthorized",
            "unable to authenticate: invalid or unknown token",
        );
    }

    let result = if !req.path.starts_with("/v1/") {
        Err(ApiError::not_found("route"))
    } else {
        let body_json = match req.json() {
            Ok(body) => Ok(body.unwrap_or_else(|| Value::Object(Map::new()))),
            Err(e) => Err(ApiError {
                status: 400,
                code: "json_error".into(),
                message: format!("invalid JSON input: {e}"),
                details: None,
            }),
        };
        match body_json {
            Err(e) => Err(e),
            Ok(body_json) => {
                let query = Query::parse(&req.query);
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                let mut world = lock(&shared.world);
                world.tick(Instant::now());
                world.route(&method, &segments, &query, &body_json)
            }
        }
    };

    if fault == Some(FaultKind::DropAfterApply) {
        return Err(Dropped);
    }
    Ok(match result {
        Ok((status, body)) => respond(status, body.as_ref(), rate_headers.as_ref()),
        Err(e) => respond(
            e.status,
            Some(&error_body(&e.code, &e.message, e.details)),
            rate_headers.as_ref(),
        ),
    })
}

fn respond(status: u16, body: Option<&Value>, rate: Option<&RateHeaders>) -> HttpResponse {
    reply(status).rate("RateLimit", rate).json_or_empty(body)
}

fn error_body(code: &str, message: &str, details: Option<Value>) -> Value {
    json!({ "error": { "code": code, "message": message, "details": details } })
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct ApiError {
    status: u16,
    code: String,
    message: String,
    details: Option<Value>,
}

type ApiResult = Result<(u16, Option<Value>), ApiError>;

impl ApiError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            details: None,
        }
    }

    fn not_found(what: &str) -> Self {
        Self::new(404, "not_found", format!("{what} not found"))
    }

    fn invalid_input(field: &str, message: &str) -> Self {
        Self {
            status: 422,
            code: "invalid_input".into(),
            message: format!("invalid input in field '{field}': {message}"),
            details: Some(json!({ "fields": [ { "name": field, "messages": [message] } ] })),
        }
    }

    fn uniqueness(field: &str, message: &str) -> Self {
        Self {
            status: 409,
            code: "uniqueness_error".into(),
            message: message.to_string(),
            details: Some(json!({ "fields": [ { "name": field } ] })),
        }
    }

    fn locked() -> Self {
        Self::new(
            423,
            "locked",
            "server is locked: another action is running or the server is locked",
        )
    }
}

// ---------------------------------------------------------------------------------------
// Query strings and label selectors
// ---------------------------------------------------------------------------------------

/// Hetzner's `label_selector` parameter.
trait LabelSelector {
    fn selector(&self) -> Result<Option<Selector>, ApiError>;
}

impl LabelSelector for Query {
    fn selector(&self) -> Result<Option<Selector>, ApiError> {
        match self.get("label_selector") {
            None => Ok(None),
            Some(raw) => Selector::parse(raw)
                .map(Some)
                .map_err(|m| ApiError::invalid_input("label_selector", &m)),
        }
    }
}

#[derive(Clone, Debug)]
enum Requirement {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// The documented label selector language: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// `k in (a,b)`, `k notin (a,b)`, joined by commas (all must hold).
#[derive(Clone, Debug)]
struct Selector(Vec<Requirement>);

impl Selector {
    fn parse(raw: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        let mut depth = 0usize;
        let mut current = String::new();
        for c in raw.chars() {
            match c {
                '(' => {
                    depth += 1;
                    current.push(c);
                }
                ')' => {
                    depth = depth.checked_sub(1).ok_or("unbalanced parentheses")?;
                    current.push(c);
                }
                ',' if depth == 0 => terms.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
        if depth != 0 {
            return Err("unbalanced parentheses".into());
        }
        terms.push(current);
        let mut reqs = Vec::new();
        for term in terms {
            let term = term.trim();
            if term.is_empty() {
                if raw.trim().is_empty() {
                    continue;
                }
                return Err("empty expression".into());
            }
            reqs.push(Self::parse_term(term)?);
        }
        Ok(Self(reqs))
    }

    fn parse_term(term: &str) -> Result<Requirement, String> {
        let key = |k: &str| -> Result<String, String> {
            let k = k.trim();
            if valid_label_key(k) {
                Ok(k.to_string())
            } else {
                Err(format!("invalid label key '{k}'"))
            }
        };
        let set = |s: &str| -> Result<Vec<String>, String> {
            let s = s.trim();
            let inner = s
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("expected a parenthesised set, got '{s}'"))?;
            inner
                .split(',')
                .map(|v| {
                    let v = v.trim();
                    if valid_label_part(v) {
                        Ok(v.to_string())
                    } else {
                        Err(format!("invalid label value '{v}'"))
                    }
                })
                .collect()
        };
        let value = |v: &str| -> Result<String, String> {
            let v = v.trim();
            if v.is_empty() || valid_label_part(v) {
                Ok(v.to_string())
            } else {
                Err(format!("invalid label value '{v}'"))
            }
        };
        if let Some(rest) = term.strip_prefix('!') {
            return Ok(Requirement::Absent(key(rest)?));
        }
        if let Some((k, v)) = term.split_once("!=") {
            return Ok(Requirement::Ne(key(k)?, value(v)?));
        }
        if let Some((k, v)) = term.split_once("==") {
            return Ok(Requirement::Eq(key(k)?, value(v)?));
        }
        if let Some((k, v)) = term.split_once('=') {
            return Ok(Requirement::Eq(key(k)?, value(v)?));
        }
        if let Some((k, v)) = term.split_once(" notin ") {
            return Ok(Requirement::NotIn(key(k)?, set(v)?));
        }
        if let Some((k, v)) = term.split_once(" in ") {
            return Ok(Requirement::In(key(k)?, set(v)?));
        }
        Ok(Requirement::Exists(key(term)?))
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| match req {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::Ne(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

fn valid_label_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_label_key(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(valid_hostname_label)
                && valid_label_part(name)
        }
        None => valid_label_part(key),
    }
}

fn valid_hostname_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn parse_labels(body: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let mut labels = BTreeMap::new();
    match body.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let Some(v) = v.as_str() else {
                    return Err(ApiError::invalid_input(
                        "labels",
                        "label values must be strings",
                    ));
                };
                if !valid_label_key(k) || k.starts_with("hetzner.cloud/") {
                    return Err(ApiError::invalid_input(
                        "labels",
                        &format!("invalid label key '{k}'"),
                    ));
                }
                if !(v.is_empty() || valid_label_part(v)) {
                    return Err(ApiError::invalid_input(
                        "labels",
                        &format!("invalid label value '{v}'"),
                    ));
                }
                labels.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => return Err(ApiError::invalid_input("labels", "must be an object")),
    }
    Ok(labels)
}

/// Paginate `items` into `{ key: [...], meta: { pagination } }` (default 25, max 50).
fn paginate(key: &str, items: Vec<Value>, query: &Query) -> ApiResult {
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::invalid_input(name, "must be a positive integer")),
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", 25)?.min(50);
    let total = items.len() as u64;
    let last_page = total.div_ceil(per_page).max(1);
    let slice = page_of(&items, page as usize, per_page as usize);
    Ok((
        200,
        Some(json!({
            key: slice,
            "meta": { "pagination": {
                "page": page,
                "per_page": per_page,
                "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
                "next_page": if page < last_page { json!(page + 1) } else { Value::Null },
                "last_page": last_page,
                "total_entries": total,
            } }
        })),
    ))
}

// ---------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------

struct LocationDef {
    id: u64,
    name: &'static str,
    description: &'static str,
    country: &'static str,
    city: &'static str,
    latitude: f64,
    longitude: f64,
    network_zone: &'static str,
    datacenter_id: u64,
    datacenter: &'static str,
}

struct ServerTypeDef {
    id: u64,
    name: &'static str,
    description: &'static str,
    category: &'static str,
    cores: u64,
    memory: f64,
    disk: u64,
    cpu_type: &'static str,
    architecture: &'static str,
    deprecated: bool,
    /// (location, hourly net EUR, monthly net EUR, available)
    prices: Vec<(&'static str, f64, f64, bool)>,
}

struct ImageDef {
    id: u64,
    kind: &'static str,
    name: Option<&'static str>,
    description: &'static str,
    os_flavor: &'static str,
    os_version: Option<&'static str>,
    architecture: &'static str,
    disk_size: f64,
    deprecated: Option<&'static str>,
}

struct Catalog {
    locations: Vec<LocationDef>,
    server_types: Vec<ServerTypeDef>,
    images: Vec<ImageDef>,
}

const EU: [&str; 3] = ["fsn1", "nbg1", "hel1"];

impl Catalog {
    fn new() -> Self {
        let locations = vec![
            LocationDef {
                id: 1,
                name: "fsn1",
                description: "Falkenstein DC Park 1",
                country: "DE",
                city: "Falkenstein",
                latitude: 50.47612,
                longitude: 12.370071,
                network_zone: "eu-central",
                datacenter_id: 4,
                datacenter: "fsn1-dc14",
            },
            LocationDef {
                id: 2,
                name: "nbg1",
                description: "Nuremberg DC Park 1",
                country: "DE",
                city: "Nuremberg",
                latitude: 49.452102,
                longitude: 11.076665,
                network_zone: "eu-central",
                datacenter_id: 2,
                datacenter: "nbg1-dc3",
            },
            LocationDef {
                id: 3,
                name: "hel1",
                description: "Helsinki DC Park 1",
                country: "FI",
                city: "Helsinki",
                latitude: 60.169855,
                longitude: 24.938379,
                network_zone: "eu-central",
                datacenter_id: 3,
                datacenter: "hel1-dc2",
            },
            LocationDef {
                id: 4,
                name: "ash",
                description: "Ashburn, VA",
                country: "US",
                city: "Ashburn, VA",
                latitude: 39.045821,
                longitude: -77.487073,
                network_zone: "us-east",
                datacenter_id: 5,
                datacenter: "ash-dc1",
            },
        ];
        let eu = |hourly: f64, monthly: f64| -> Vec<(&'static str, f64, f64, bool)> {
            EU.iter().map(|l| (*l, hourly, monthly, true)).collect()
        };
        let mut cpx22 = eu(0.0128, 7.99);
        cpx22.push(("ash", 0.0144, 8.99, true));
        let mut cax11 = eu(0.0064, 3.99);
        cax11.push(("ash", 0.0072, 4.49, false));
        let mut ccx13 = eu(0.0224, 13.99);
        ccx13.push(("ash", 0.0256, 15.99, true));
        let server_types = vec![
            ServerTypeDef {
                id: 104,
                name: "cx22",
                description: "CX22",
                category: "cost_optimized",
                cores: 2,
                memory: 4.0,
                disk: 40,
                cpu_type: "shared",
                architecture: "x86",
                deprecated: true,
                prices: EU.iter().map(|l| (*l, 0.0059, 3.79, false)).collect(),
            },
            ServerTypeDef {
                id: 114,
                name: "cx23",
                description: "CX23",
                category: "cost_optimized",
                cores: 2,
                memory: 4.0,
                disk: 40,
                cpu_type: "shared",
                architecture: "x86",
                deprecated: false,
                prices: eu(0.0056, 3.49),
            },
            ServerTypeDef {
                id: 116,
                name: "cpx22",
                description: "CPX22",
                category: "regular_purpose",
                cores: 2,
                memory: 4.0,
                disk: 80,
                cpu_type: "shared",
                architecture: "x86",
                deprecated: false,
                prices: cpx22,
            },
            ServerTypeDef {
                id: 45,
                name: "cax11",
                description: "CAX11",
                category: "cost_optimized",
                cores: 2,
                memory: 4.0,
                disk: 40,
                cpu_type: "shared",
                architecture: "arm",
                deprecated: false,
                prices: cax11,
            },
            ServerTypeDef {
                id: 96,
                name: "ccx13",
                description: "CCX13 Dedicated CPU",
                category: "general_purpose",
                cores: 2,
                memory: 8.0,
                disk: 80,
                cpu_type: "dedicated",
                architecture: "x86",
                deprecated: false,
                prices: ccx13,
            },
        ];
        let images = vec![
            ImageDef {
                id: 161547269,
                kind: "system",
                name: Some("ubuntu-24.04"),
                description: "Ubuntu 24.04",
                os_flavor: "ubuntu",
                os_version: Some("24.04"),
                architecture: "x86",
                disk_size: 5.0,
                deprecated: None,
            },
            ImageDef {
                id: 161547270,
                kind: "system",
                name: Some("ubuntu-24.04"),
                description: "Ubuntu 24.04",
                os_flavor: "ubuntu",
                os_version: Some("24.04"),
                architecture: "arm",
                disk_size: 5.0,
                deprecated: None,
            },
            ImageDef {
                id: 114690387,
                kind: "system",
                name: Some("debian-12"),
                description: "Debian 12",
                os_flavor: "debian",
                os_version: Some("12"),
                architecture: "x86",
                disk_size: 5.0,
                deprecated: None,
            },
            ImageDef {
                id: 114690389,
                kind: "system",
                name: Some("debian-12"),
                description: "Debian 12",
                os_flavor: "debian",
                os_version: Some("12"),
                architecture: "arm",
                disk_size: 5.0,
                deprecated: None,
            },
            ImageDef {
                id: 15512617,
                kind: "system",
                name: Some("ubuntu-20.04"),
                description: "Ubuntu 20.04",
                os_flavor: "ubuntu",
                os_version: Some("20.04"),
                architecture: "x86",
                disk_size: 5.0,
                deprecated: Some("2025-05-01T00:00:00+00:00"),
            },
            ImageDef {
                id: 40093140,
                kind: "app",
                name: Some("docker-ce"),
                description: "Docker CE",
                os_flavor: "ubuntu",
                os_version: Some("24.04"),
                architecture: "x86",
                disk_size: 10.0,
                deprecated: None,
            },
            ImageDef {
                id: 200100300,
                kind: "snapshot",
                name: None,
                description: "legion-base snapshot",
                os_flavor: "debian",
                os_version: None,
                architecture: "x86",
                disk_size: 20.0,
                deprecated: None,
            },
        ];
        Self {
            locations,
            server_types,
            images,
        }
    }

    fn location(&self, v: &Value) -> Option<&LocationDef> {
        let key = id_or_name(v)?;
        self.locations
            .iter()
            .find(|l| l.name == key || l.id.to_string() == key)
    }

    fn location_by_datacenter(&self, v: &Value) -> Option<&LocationDef> {
        let key = id_or_name(v)?;
        self.locations
            .iter()
            .find(|l| l.datacenter == key || l.datacenter_id.to_string() == key)
    }

    fn server_type(&self, v: &Value) -> Option<&ServerTypeDef> {
        let key = id_or_name(v)?;
        self.server_types
            .iter()
            .find(|t| t.name == key || t.id.to_string() == key)
    }

    /// By ID, or by name for the given architecture (names repeat across architectures).
    fn image(&self, v: &Value, architecture: &str) -> Option<&ImageDef> {
        let key = id_or_name(v)?;
        self.images
            .iter()
            .find(|i| i.id.to_string() == key)
            .or_else(|| {
                self.images
                    .iter()
                    .find(|i| i.name == Some(key.as_str()) && i.architecture == architecture)
            })
    }

    fn location_json(&self, l: &LocationDef) -> Value {
        json!({
            "id": l.id,
            "name": l.name,
            "description": l.description,
            "country": l.country,
            "city": l.city,
            "latitude": l.latitude,
            "longitude": l.longitude,
            "network_zone": l.network_zone,
        })
    }

    fn datacenter_json(&self, l: &LocationDef) -> Value {
        json!({
            "id": l.datacenter_id,
            "name": l.datacenter,
            "description": format!("{} virtual DC", l.description),
            "location": self.location_json(l),
        })
    }

    fn server_type_json(&self, t: &ServerTypeDef) -> Value {
        let deprecation = if t.deprecated {
            json!({
                "announced": "2025-09-24T00:00:00+00:00",
                "unavailable_after": "2025-12-31T00:00:00+00:00",
            })
        } else {
            Value::Null
        };
        let money = |net: f64| json!({ "net": format!("{net:.10}"), "gross": format!("{:.10}", net * 1.19) });
        let prices: Vec<Value> = t
            .prices
            .iter()
            .map(|(loc, hourly, monthly, _)| {
                json!({
                    "location": loc,
                    "price_hourly": money(*hourly),
                    "price_monthly": money(*monthly),
                    "included_traffic": if *loc == "ash" { 1_099_511_627_776u64 } else { 21_990_232_555_520u64 },
                    "price_per_tb_traffic": money(1.0),
                })
            })
            .collect();
        let locations: Vec<Value> = t
            .prices
            .iter()
            .filter_map(|(loc, _, _, available)| {
                let l = self.locations.iter().find(|l| l.name == *loc)?;
                Some(json!({
                    "id": l.id,
                    "name": l.name,
                    "deprecation": deprecation,
                    "available": *available,
                    "recommended": *available && !t.deprecated,
                }))
            })
            .collect();
        json!({
            "id": t.id,
            "name": t.name,
            "description": t.description,
            "category": t.category,
            "cores": t.cores,
            "memory": t.memory,
            "disk": t.disk,
            "storage_type": "local",
            "cpu_type": t.cpu_type,
            "architecture": t.architecture,
            "deprecated": t.deprecated,
            "deprecation": deprecation,
            "included_traffic": 0,
            "prices": prices,
            "locations": locations,
        })
    }

    fn image_json(&self, i: &ImageDef) -> Value {
        json!({
            "id": i.id,
            "type": i.kind,
            "status": "available",
            "name": i.name,
            "description": i.description,
            "image_size": if i.kind == "snapshot" { json!(1.8) } else { Value::Null },
            "disk_size": i.disk_size,
            "created": "2024-04-25T10:00:00+00:00",
            "created_from": Value::Null,
            "bound_to": Value::Null,
            "os_flavor": i.os_flavor,
            "os_version": i.os_version,
            "architecture": i.architecture,
            "rapid_deploy": i.kind == "system",
            "protection": { "delete": false },
            "deprecated": i.deprecated,
            "deleted": Value::Null,
            "labels": {},
        })
    }
}

/// A JSON number or string as a lookup key.
fn id_or_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// World
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    Server,
    SshKey,
    Firewall,
    Zone,
    Action,
}

/// Separate ID sequences per kind, from distinct bases so mixed-up IDs are caught.
struct Ids {
    next: [u64; 5],
}

impl Ids {
    fn next(&mut self, kind: Kind) -> u64 {
        let slot = &mut self.next[kind as usize];
        *slot += 1;
        *slot
    }
}

#[derive(Clone, Debug)]
enum Effect {
    None,
    /// Set the server's status on success, or on error.
    ServerStatus {
        id: u64,
        success: &'static str,
        error: &'static str,
    },
}

struct ActionRec {
    id: u64,
    command: String,
    started: SystemTime,
    finish_at: Instant,
    finished: Option<SystemTime>,
    duration: Duration,
    resources: Vec<(u64, &'static str)>,
    failure: Option<(String, String)>,
    effect: Effect,
}

impl ActionRec {
    fn done(&self) -> bool {
        self.finished.is_some()
    }

    fn status(&self) -> &'static str {
        match (&self.finished, &self.failure) {
            (None, _) => "running",
            (Some(_), None) => "success",
            (Some(_), Some(_)) => "error",
        }
    }

    fn json(&self, now: Instant) -> Value {
        let progress = if self.done() {
            100
        } else if self.duration.is_zero() {
            99
        } else {
            let left = self.finish_at.saturating_duration_since(now).as_secs_f64();
            let done = 1.0 - left / self.duration.as_secs_f64();
            ((done * 100.0) as i64).clamp(0, 99)
        };
        let error = match (&self.finished, &self.failure) {
            (Some(_), Some((code, message))) => json!({ "code": code, "message": message }),
            _ => Value::Null,
        };
        json!({
            "id": self.id,
            "command": self.command,
            "status": self.status(),
            "progress": progress,
            "started": rfc3339(self.started),
            "finished": self.finished.map(rfc3339),
            "resources": self.resources.iter().map(|(id, t)| json!({ "id": id, "type": t })).collect::<Vec<_>>(),
            "error": error,
        })
    }
}

struct ActionFailure {
    command_prefix: String,
    code: String,
    message: String,
}

struct ZoneRec {
    id: u64,
    name: String,
    mode: String,
    ttl: u64,
    labels: BTreeMap<String, String>,
    created: SystemTime,
    /// Keyed by (name, type).
    rrsets: BTreeMap<(String, String), FakeRrSet>,
}

impl ZoneRec {
    fn to_public(&self) -> FakeZone {
        FakeZone {
            id: self.id,
            name: self.name.clone(),
            mode: self.mode.clone(),
            ttl: self.ttl,
            labels: self.labels.clone(),
            rrsets: self.rrsets.values().cloned().collect(),
            created: self.created,
        }
    }

    fn json(&self) -> Value {
        let records: usize = self.rrsets.values().map(|r| r.records.len()).sum();
        json!({
            "id": self.id,
            "name": self.name,
            "created": rfc3339(self.created),
            "mode": self.mode,
            "ttl": self.ttl,
            "labels": self.labels,
            "protection": { "delete": false },
            "primary_nameservers": [],
            "authoritative_nameservers": {
                "assigned": NAMESERVERS,
                "delegated": [],
                "delegation_last_check": Value::Null,
                "delegation_status": "unknown",
            },
            "registrar": "other",
            "status": "ok",
            "record_count": records,
        })
    }

    fn rrset_json(&self, r: &FakeRrSet) -> Value {
        json!({
            "id": format!("{}/{}", r.name, r.rtype),
            "name": r.name,
            "type": r.rtype,
            "ttl": r.ttl,
            "labels": r.labels,
            "protection": { "change": false },
            "records": r.records.iter().map(|rec| json!({ "value": rec.value, "comment": rec.comment })).collect::<Vec<_>>(),
            "zone": self.id,
        })
    }
}

const NAMESERVERS: [&str; 3] = [
    "hydrogen.ns.hetzner.com.",
    "oxygen.ns.hetzner.com.",
    "helium.ns.hetzner.de.",
];

const RRSET_TYPES: [&str; 16] = [
    "A", "AAAA", "CAA", "CNAME", "DS", "HINFO", "HTTPS", "MX", "NS", "PTR", "RP", "SOA", "SRV",
    "SVCB", "TLSA", "TXT",
];

struct World {
    catalog: Catalog,
    ids: Ids,
    servers: BTreeMap<u64, FakeServer>,
    ssh_keys: BTreeMap<u64, FakeSshKey>,
    firewalls: BTreeMap<u64, FakeFirewall>,
    zones: BTreeMap<u64, ZoneRec>,
    actions: BTreeMap<u64, ActionRec>,
    action_duration: Duration,
    action_failures: Vec<ActionFailure>,
    forced_locks: BTreeSet<u64>,
    ignore_shutdown: bool,
    ip_counter: u32,
    /// Every new server gets this IPv4 (e.g. 127.0.0.1, so a local sshd stands in for it).
    fixed_ipv4: Option<String>,
    /// Firewall enforcement: new servers get a gated loopback address instead.
    gate: Option<(Arc<crate::gate::Gates>, crate::gate::Verdict)>,
}

impl World {
    fn new() -> Self {
        Self {
            catalog: Catalog::new(),
            ids: Ids {
                next: [5_000_000, 7_000_000, 1_200_000, 300_000, 90_000_000],
            },
            servers: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            firewalls: BTreeMap::new(),
            zones: BTreeMap::new(),
            actions: BTreeMap::new(),
            action_duration: DEFAULT_ACTION_DURATION,
            action_failures: Vec::new(),
            forced_locks: BTreeSet::new(),
            ignore_shutdown: false,
            ip_counter: 0,
            fixed_ipv4: None,
            gate: None,
        }
    }

    /// Finish the actions whose time has come, in order, applying their effects.
    fn tick(&mut self, now: Instant) {
        let mut due: Vec<(Instant, u64)> = self
            .actions
            .values()
            .filter(|a| !a.done() && a.finish_at <= now)
            .map(|a| (a.finish_at, a.id))
            .collect();
        due.sort();
        for (_, id) in due {
            let Some(action) = self.actions.get_mut(&id) else {
                continue;
            };
            action.finished = Some(SystemTime::now());
            let failed = action.failure.is_some();
            if let Effect::ServerStatus { id, success, error } = action.effect.clone()
                && let Some(server) = self.servers.get_mut(&id)
            {
                server.status = if failed { error } else { success }.to_string();
            }
        }
    }

    fn new_action(
        &mut self,
        command: &str,
        resources: Vec<(u64, &'static str)>,
        effect: Effect,
        delay_factor: u32,
    ) -> u64 {
        let id = self.ids.next(Kind::Action);
        let duration = self.action_duration * delay_factor.max(1);
        let failure = self
            .action_failures
            .iter()
            .position(|f| command.starts_with(&f.command_prefix))
            .map(|i| {
                let f = self.action_failures.remove(i);
                (f.code, f.message)
            });
        self.actions.insert(
            id,
            ActionRec {
                id,
                command: command.to_string(),
                started: SystemTime::now(),
                finish_at: Instant::now() + duration,
                finished: None,
                duration,
                resources,
                failure,
                effect,
            },
        );
        if duration.is_zero() {
            self.tick(Instant::now());
        }
        id
    }

    fn action_json(&self, id: u64) -> Value {
        self.actions
            .get(&id)
            .map(|a| a.json(Instant::now()))
            .unwrap_or(Value::Null)
    }

    fn server_locked(&self, id: u64) -> bool {
        self.forced_locks.contains(&id)
            || self
                .actions
                .values()
                .any(|a| !a.done() && a.resources.contains(&(id, "server")))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_server(
        &mut self,
        name: &str,
        server_type: &str,
        location: &str,
        image_id: u64,
        labels: BTreeMap<String, String>,
        ipv4: bool,
        ipv6: bool,
        ssh_keys: Vec<u64>,
        user_data: Option<String>,
    ) -> u64 {
        let id = self.ids.next(Kind::Server);
        self.ip_counter += 1;
        let n = self.ip_counter;
        let gated = self
            .gate
            .as_ref()
            .map(|(gates, verdict)| gates.open(verdict.clone()).to_string());
        self.servers.insert(
            id,
            FakeServer {
                id,
                name: name.to_string(),
                status: "initializing".into(),
                server_type: server_type.to_string(),
                location: location.to_string(),
                image_id,
                labels,
                ipv4: ipv4.then(|| {
                    gated
                        .clone()
                        .or_else(|| self.fixed_ipv4.clone())
                        .unwrap_or_else(|| format!("203.0.{}.{}", 113 + n / 250, 1 + n % 250))
                }),
                ipv6: ipv6.then(|| format!("2001:db8:{n:x}::/64")),
                ssh_keys,
                user_data,
                created: SystemTime::now(),
            },
        );
        id
    }

    fn remove_server(&mut self, id: u64) -> bool {
        let removed = self.servers.remove(&id).is_some();
        for fw in self.firewalls.values_mut() {
            fw.applied_to.retain(|a| *a != FakeApplied::Server(id));
        }
        removed
    }

    fn server_json(&self, s: &FakeServer) -> Value {
        let location = self
            .catalog
            .location(&json!(s.location))
            .or_else(|| self.catalog.locations.first());
        let server_type = self.catalog.server_type(&json!(s.server_type));
        let image = self.catalog.images.iter().find(|i| i.id == s.image_id);
        let firewalls: Vec<Value> = self
            .firewalls
            .values()
            .filter(|fw| self.firewall_applies_to(fw, s))
            .map(|fw| json!({ "id": fw.id, "status": "applied" }))
            .collect();
        let ipv4 = s.ipv4.as_ref().map(|ip| {
            json!({
                "id": s.id * 10 + 4,
                "ip": ip,
                "blocked": false,
                "dns_ptr": format!("static.{}.clients.your-server.de", ip.split('.').rev().collect::<Vec<_>>().join(".")),
            })
        });
        let ipv6 = s
            .ipv6
            .as_ref()
            .map(|ip| json!({ "id": s.id * 10 + 6, "ip": ip, "blocked": false, "dns_ptr": [] }));
        json!({
            "id": s.id,
            "name": s.name,
            "status": s.status,
            "created": rfc3339(s.created),
            "public_net": {
                "ipv4": ipv4,
                "ipv6": ipv6,
                "floating_ips": [],
                "firewalls": firewalls,
            },
            "private_net": [],
            "server_type": server_type.map(|t| self.catalog.server_type_json(t)),
            "location": location.map(|l| self.catalog.location_json(l)),
            "datacenter": location.map(|l| self.catalog.datacenter_json(l)),
            "image": image.map(|i| self.catalog.image_json(i)),
            "iso": Value::Null,
            "rescue_enabled": false,
            "locked": self.forced_locks.contains(&s.id),
            "backup_window": Value::Null,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21_990_232_555_520u64,
            "protection": { "delete": false, "rebuild": false },
            "labels": s.labels,
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": server_type.map(|t| t.disk).unwrap_or(40),
            "placement_group": Value::Null,
        })
    }

    /// Whether a TCP connection from `from` to `port` of the server at `addr` gets
    /// through: no firewall applied lets everything in; with firewalls, an inbound TCP
    /// rule must allow the port and the source (Hetzner drops the rest).
    fn allows(&self, addr: &str, port: u16, from: std::net::IpAddr) -> bool {
        let Some(server) = self
            .servers
            .values()
            .find(|s| s.ipv4.as_deref() == Some(addr))
        else {
            return false;
        };
        let applied: Vec<&FakeFirewall> = self
            .firewalls
            .values()
            .filter(|fw| self.firewall_applies_to(fw, server))
            .collect();
        if applied.is_empty() {
            return true;
        }
        applied.iter().flat_map(|fw| &fw.rules).any(|r| {
            r.get("direction").and_then(Value::as_str) == Some("in")
                && r.get("protocol").and_then(Value::as_str) == Some("tcp")
                && crate::gate::port_in(r.get("port").and_then(Value::as_str), port)
                && r.get("source_ips")
                    .and_then(Value::as_array)
                    .is_some_and(|ips| {
                        ips.iter()
                            .filter_map(Value::as_str)
                            .any(|c| crate::gate::covers(c, from))
                    })
        })
    }

    fn firewall_applies_to(&self, fw: &FakeFirewall, s: &FakeServer) -> bool {
        fw.applied_to.iter().any(|a| match a {
            FakeApplied::Server(id) => *id == s.id,
            FakeApplied::LabelSelector(sel) => {
                Selector::parse(sel).is_ok_and(|sel| sel.matches(&s.labels))
            }
        })
    }

    fn firewall_json(&self, fw: &FakeFirewall) -> Value {
        let applied: Vec<Value> = fw
            .applied_to
            .iter()
            .map(|a| match a {
                FakeApplied::Server(id) => json!({ "type": "server", "server": { "id": id } }),
                FakeApplied::LabelSelector(sel) => {
                    let matched: Vec<Value> = Selector::parse(sel)
                        .map(|parsed| {
                            self.servers
                                .values()
                                .filter(|s| parsed.matches(&s.labels))
                                .map(|s| json!({ "type": "server", "server": { "id": s.id } }))
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({
                        "type": "label_selector",
                        "label_selector": { "selector": sel },
                        "applied_to_resources": matched,
                    })
                }
            })
            .collect();
        json!({
            "id": fw.id,
            "name": fw.name,
            "labels": fw.labels,
            "created": rfc3339(fw.created),
            "rules": fw.rules,
            "applied_to": applied,
        })
    }

    fn ssh_key_json(&self, k: &FakeSshKey) -> Value {
        json!({
            "id": k.id,
            "name": k.name,
            "fingerprint": k.fingerprint,
            "public_key": k.public_key,
            "labels": k.labels,
            "created": rfc3339(k.created),
        })
    }

    // ----- routing ---------------------------------------------------------------------

    fn route(&mut self, method: &str, segs: &[&str], q: &Query, body: &Value) -> ApiResult {
        match (method, segs) {
            ("GET", ["locations"]) => self.list_locations(q),
            ("GET", ["locations", id]) => {
                let l = self
                    .catalog
                    .location(&json!(id))
                    .ok_or_else(|| ApiError::not_found("location"))?;
                Ok((
                    200,
                    Some(json!({ "location": self.catalog.location_json(l) })),
                ))
            }
            ("GET", ["server_types"]) => self.list_server_types(q),
            ("GET", ["server_types", id]) => {
                let t = self
                    .catalog
                    .server_types
                    .iter()
                    .find(|t| t.id.to_string() == *id)
                    .ok_or_else(|| ApiError::not_found("server_type"))?;
                Ok((
                    200,
                    Some(json!({ "server_type": self.catalog.server_type_json(t) })),
                ))
            }
            ("GET", ["images"]) => self.list_images(q),
            ("GET", ["images", id]) => {
                let i = self
                    .catalog
                    .images
                    .iter()
                    .find(|i| i.id.to_string() == *id)
                    .ok_or_else(|| ApiError::not_found("image"))?;
                Ok((200, Some(json!({ "image": self.catalog.image_json(i) }))))
            }

            ("GET", ["actions"]) => self.list_actions(q),
            ("GET", ["actions", id])
            | ("GET", ["servers" | "firewalls" | "zones", "actions", id])
            | ("GET", ["servers" | "firewalls" | "zones", _, "actions", id]) => {
                let id = parse_id(id)?;
                if !self.actions.contains_key(&id) {
                    return Err(ApiError::not_found("action"));
                }
                Ok((200, Some(json!({ "action": self.action_json(id) }))))
            }

            ("GET", ["servers"]) => self.list_servers(q),
            ("POST", ["servers"]) => self.create_server(body),
            ("GET", ["servers", id]) => {
                let id = parse_id(id)?;
                let s = self
                    .servers
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("server"))?;
                Ok((200, Some(json!({ "server": self.server_json(s) }))))
            }
            ("PUT", ["servers", id]) => self.update_server(parse_id(id)?, body),
            ("DELETE", ["servers", id]) => self.delete_server(parse_id(id)?),
            ("POST", ["servers", id, "actions", action]) => {
                self.server_action(parse_id(id)?, action, body)
            }

            ("GET", ["ssh_keys"]) => self.list_ssh_keys(q),
            ("POST", ["ssh_keys"]) => self.create_ssh_key(body),
            ("GET", ["ssh_keys", id]) => {
                let id = parse_id(id)?;
                let k = self
                    .ssh_keys
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("ssh_key"))?;
                Ok((200, Some(json!({ "ssh_key": self.ssh_key_json(k) }))))
            }
            ("PUT", ["ssh_keys", id]) => self.update_ssh_key(parse_id(id)?, body),
            ("DELETE", ["ssh_keys", id]) => {
                let id = parse_id(id)?;
                self.ssh_keys
                    .remove(&id)
                    .ok_or_else(|| ApiError::not_found("ssh_key"))?;
                Ok((204, None))
            }

            ("GET", ["firewalls"]) => self.list_firewalls(q),
            ("POST", ["firewalls"]) => self.create_firewall(body),
            ("GET", ["firewalls", id]) => {
                let id = parse_id(id)?;
                let fw = self
                    .firewalls
                    .get(&id)
                    .ok_or_else(|| ApiError::not_found("firewall"))?;
                Ok((200, Some(json!({ "firewall": self.firewall_json(fw) }))))
            }
            ("PUT", ["firewalls", id]) => self.update_firewall(parse_id(id)?, body),
            ("DELETE", ["firewalls", id]) => self.delete_firewall(parse_id(id)?),
            ("POST", ["firewalls", id, "actions", action]) => {
                self.firewall_action(parse_id(id)?, action, body)
            }

            ("GET", ["zones"]) => self.list_zones(q),
            ("POST", ["zones"]) => self.create_zone(body),
            ("GET", ["zones", zone]) => {
                let z = self.zone(zone)?;
                Ok((200, Some(json!({ "zone": self.zones[&z].json() }))))
            }
            ("PUT", ["zones", zone]) => {
                let z = self.zone(zone)?;
                let labels = parse_labels(body)?;
                let rec = self.zone_mut(z);
                if body.get("labels").is_some() {
                    rec.labels = labels;
                }
                Ok((200, Some(json!({ "zone": rec.json() }))))
            }
            ("DELETE", ["zones", zone]) => {
                let z = self.zone(zone)?;
                self.zones.remove(&z);
                let action = self.new_action("delete_zone", vec![(z, "zone")], Effect::None, 1);
                Ok((201, Some(json!({ "action": self.action_json(action) }))))
            }
            ("POST", ["zones", zone, "actions", "change_ttl"]) => {
                let z = self.zone(zone)?;
                let ttl = parse_ttl(body.get("ttl"))?
                    .ok_or_else(|| ApiError::invalid_input("ttl", "is required"))?;
                self.zone_mut(z).ttl = ttl;
                let action = self.new_action("change_ttl", vec![(z, "zone")], Effect::None, 1);
                Ok((201, Some(json!({ "action": self.action_json(action) }))))
            }
            ("GET", ["zones", zone, "rrsets"]) => self.list_rrsets(zone, q),
            ("POST", ["zones", zone, "rrsets"]) => self.create_rrset(zone, body),
            ("GET", ["zones", zone, "rrsets", name, rtype]) => {
                let z = self.zone(zone)?;
                let rec = &self.zones[&z];
                let r = rec
                    .rrsets
                    .get(&(name.to_string(), rtype.to_string()))
                    .ok_or_else(|| ApiError::not_found("rrset"))?;
                Ok((200, Some(json!({ "rrset": rec.rrset_json(r) }))))
            }
            ("PUT", ["zones", zone, "rrsets", name, rtype]) => {
                let z = self.zone(zone)?;
                let labels = parse_labels(body)?;
                let rec = self.zone_mut(z);
                let key = (name.to_string(), rtype.to_string());
                let r = rec
                    .rrsets
                    .get_mut(&key)
                    .ok_or_else(|| ApiError::not_found("rrset"))?;
                if body.get("labels").is_some() {
                    r.labels = labels;
                }
                let r = r.clone();
                Ok((200, Some(json!({ "rrset": rec.rrset_json(&r) }))))
            }
            ("DELETE", ["zones", zone, "rrsets", name, rtype]) => {
                let z = self.primary_zone(zone)?;
                self.zone_mut(z)
                    .rrsets
                    .remove(&(name.to_string(), rtype.to_string()))
                    .ok_or_else(|| ApiError::not_found("rrset"))?;
                let action = self.new_action("delete_rrset", vec![(z, "zone")], Effect::None, 1);
                Ok((201, Some(json!({ "action": self.action_json(action) }))))
            }
            ("POST", ["zones", zone, "rrsets", name, rtype, "actions", action]) => {
                self.rrset_action(zone, name, rtype, action, body)
            }

            (
                _,
                [
                    "locations" | "server_types" | "images" | "actions" | "servers" | "ssh_keys"
                    | "firewalls" | "zones",
                    ..,
                ],
            ) => {
                if segs.len() <= 2 {
                    Err(ApiError::new(
                        405,
                        "method_not_allowed",
                        "the request method is not allowed",
                    ))
                } else {
                    Err(ApiError::not_found("route"))
                }
            }
            _ => Err(ApiError::not_found("route")),
        }
    }

    // ----- catalog endpoints -----------------------------------------------------------

    fn list_locations(&self, q: &Query) -> ApiResult {
        let items = self
            .catalog
            .locations
            .iter()
            .filter(|l| q.get("name").is_none_or(|n| n == l.name))
            .map(|l| self.catalog.location_json(l))
            .collect();
        paginate("locations", items, q)
    }

    fn list_server_types(&self, q: &Query) -> ApiResult {
        let items = self
            .catalog
            .server_types
            .iter()
            .filter(|t| q.get("name").is_none_or(|n| n == t.name))
            .map(|t| self.catalog.server_type_json(t))
            .collect();
        paginate("server_types", items, q)
    }

    fn list_images(&self, q: &Query) -> ApiResult {
        let types = q.all("type");
        let include_deprecated = q.get("include_deprecated") == Some("true");
        let selector = q.selector()?;
        let items = self
            .catalog
            .images
            .iter()
            .filter(|i| types.is_empty() || types.contains(&i.kind))
            .filter(|i| q.get("architecture").is_none_or(|a| a == i.architecture))
            .filter(|i| q.get("name").is_none_or(|n| Some(n) == i.name))
            .filter(|i| include_deprecated || i.deprecated.is_none())
            .filter(|_| {
                let statuses = q.all("status");
                statuses.is_empty() || statuses.contains(&"available")
            })
            .filter(|_| {
                selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&BTreeMap::new()))
            })
            .map(|i| self.catalog.image_json(i))
            .collect();
        paginate("images", items, q)
    }

    fn list_actions(&self, q: &Query) -> ApiResult {
        let ids: Vec<u64> = q
            .all("id")
            .iter()
            .map(|s| parse_id(s))
            .collect::<Result<_, _>>()?;
        let now = Instant::now();
        let items = self
            .actions
            .values()
            .filter(|a| ids.is_empty() || ids.contains(&a.id))
            .filter(|a| q.all("status").is_empty() || q.all("status").contains(&a.status()))
            .map(|a| a.json(now))
            .collect();
        paginate("actions", items, q)
    }

    // ----- servers ---------------------------------------------------------------------

    fn list_servers(&self, q: &Query) -> ApiResult {
        let selector = q.selector()?;
        let statuses = q.all("status");
        let items = self
            .servers
            .values()
            .filter(|s| q.get("name").is_none_or(|n| n == s.name))
            .filter(|s| statuses.is_empty() || statuses.contains(&s.status.as_str()))
            .filter(|s| selector.as_ref().is_none_or(|sel| sel.matches(&s.labels)))
            .map(|s| self.server_json(s))
            .collect();
        paginate("servers", items, q)
    }

    fn create_server(&mut self, body: &Value) -> ApiResult {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid_input("name", "is required"))?;
        if !valid_hostname(name) {
            return Err(ApiError::invalid_input(
                "name",
                "must be a valid hostname (RFC 1123)",
            ));
        }
        let type_v = body
            .get("server_type")
            .ok_or_else(|| ApiError::invalid_input("server_type", "is required"))?;
        let server_type = self
            .catalog
            .server_type(type_v)
            .ok_or_else(|| ApiError::invalid_input("server_type", "server type not found"))?;
        let location = match (body.get("location"), body.get("datacenter")) {
            (Some(l), _) if !l.is_null() => Some(
                self.catalog
                    .location(l)
                    .ok_or_else(|| ApiError::invalid_input("location", "location not found"))?,
            ),
            (_, Some(dc)) if !dc.is_null() => Some(
                self.catalog
                    .location_by_datacenter(dc)
                    .ok_or_else(|| ApiError::invalid_input("datacenter", "datacenter not found"))?,
            ),
            _ => None,
        };
        let image_v = body
            .get("image")
            .ok_or_else(|| ApiError::invalid_input("image", "is required"))?;
        let image = self
            .catalog
            .image(image_v, server_type.architecture)
            .ok_or_else(|| ApiError::invalid_input("image", "image not found"))?;
        if image.architecture != server_type.architecture {
            return Err(ApiError::invalid_input(
                "image",
                "image architecture does not match the server type",
            ));
        }
        let location = match location {
            Some(l) => l,
            None => server_type
                .prices
                .iter()
                .find(|p| p.3)
                .and_then(|p| self.catalog.locations.iter().find(|l| l.name == p.0))
                .ok_or_else(|| {
                    ApiError::new(
                        412,
                        "resource_unavailable",
                        format!("server type {} is not available", server_type.name),
                    )
                })?,
        };
        let available = server_type
            .prices
            .iter()
            .any(|p| p.0 == location.name && p.3 && !server_type.deprecated);
        if !available {
            return Err(ApiError::new(
                412,
                "resource_unavailable",
                format!(
                    "server type {} is not available in location {}",
                    server_type.name, location.name
                ),
            ));
        }
        let labels = parse_labels(body)?;
        let mut ssh_keys = Vec::new();
        if let Some(keys) = body.get("ssh_keys").and_then(Value::as_array) {
            for key in keys {
                let k = id_or_name(key).unwrap_or_default();
                let found = self
                    .ssh_keys
                    .values()
                    .find(|s| s.id.to_string() == k || s.name == k)
                    .ok_or_else(|| {
                        ApiError::invalid_input("ssh_keys", &format!("ssh key '{k}' not found"))
                    })?;
                ssh_keys.push(found.id);
            }
        }
        let mut firewall_ids = Vec::new();
        if let Some(fws) = body.get("firewalls").and_then(Value::as_array) {
            for fw in fws {
                let id = fw.get("firewall").and_then(Value::as_u64).unwrap_or(0);
                if !self.firewalls.contains_key(&id) {
                    return Err(ApiError::invalid_input(
                        "firewalls",
                        &format!("firewall {id} not found"),
                    ));
                }
                firewall_ids.push(id);
            }
        }
        if self.servers.values().any(|s| s.name == name) {
            return Err(ApiError::uniqueness("name", "server name is already used"));
        }
        let enable = |key: &str| {
            body.get("public_net")
                .and_then(|p| p.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(true)
        };
        let start = body
            .get("start_after_create")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let user_data = body
            .get("user_data")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (type_name, location_name, image_id) = (server_type.name, location.name, image.id);
        let id = self.new_server(
            name,
            type_name,
            location_name,
            image_id,
            labels,
            enable("enable_ipv4"),
            enable("enable_ipv6"),
            ssh_keys.clone(),
            user_data,
        );
        for fw in &firewall_ids {
            if let Some(fw) = self.firewalls.get_mut(fw) {
                fw.applied_to.push(FakeApplied::Server(id));
            }
        }
        let action = self.new_action(
            "create_server",
            vec![(id, "server")],
            Effect::ServerStatus {
                id,
                success: if start { "starting" } else { "off" },
                error: "off",
            },
            1,
        );
        let mut next_actions = Vec::new();
        if start {
            let next = self.new_action(
                "start_server",
                vec![(id, "server")],
                Effect::ServerStatus {
                    id,
                    success: "running",
                    error: "off",
                },
                2,
            );
            next_actions.push(self.action_json(next));
        }
        let root_password = if ssh_keys.is_empty() {
            json!(format!("Fk{}pw{}Xq", id, id % 97))
        } else {
            Value::Null
        };
        let server = self.server_json(&self.servers[&id]);
        Ok((
            201,
            Some(json!({
                "server": server,
                "action": self.action_json(action),
                "next_actions": next_actions,
                "root_password": root_password,
            })),
        ))
    }

    fn update_server(&mut self, id: u64, body: &Value) -> ApiResult {
        let labels = parse_labels(body)?;
        let new_name = body.get("name").and_then(Value::as_str).map(str::to_string);
        if !self.servers.contains_key(&id) {
            return Err(ApiError::not_found("server"));
        }
        if let Some(n) = &new_name {
            if !valid_hostname(n) {
                return Err(ApiError::invalid_input(
                    "name",
                    "must be a valid hostname (RFC 1123)",
                ));
            }
            if self.servers.values().any(|s| s.name == *n && s.id != id) {
                return Err(ApiError::uniqueness("name", "server name is already used"));
            }
        }
        let has_labels = body.get("labels").is_some();
        let Some(s) = self.servers.get_mut(&id) else {
            return Err(ApiError::not_found("server"));
        };
        if let Some(n) = new_name {
            s.name = n;
        }
        if has_labels {
            s.labels = labels;
        }
        let s = s.clone();
        Ok((200, Some(json!({ "server": self.server_json(&s) }))))
    }

    fn delete_server(&mut self, id: u64) -> ApiResult {
        if !self.servers.contains_key(&id) {
            return Err(ApiError::not_found("server"));
        }
        if self.forced_locks.contains(&id) {
            return Err(ApiError::locked());
        }
        // Documented: the server is removed immediately; the action tracks the teardown.
        self.remove_server(id);
        let action = self.new_action("delete_server", vec![(id, "server")], Effect::None, 1);
        Ok((200, Some(json!({ "action": self.action_json(action) }))))
    }

    fn server_action(&mut self, id: u64, action: &str, body: &Value) -> ApiResult {
        let Some(server) = self.servers.get(&id) else {
            return Err(ApiError::not_found("server"));
        };
        let status = server.status.clone();
        let arch = self
            .catalog
            .server_type(&json!(server.server_type))
            .map(|t| t.architecture)
            .unwrap_or("x86");
        let has_keys = !server.ssh_keys.is_empty();
        let known = [
            "poweron",
            "poweroff",
            "shutdown",
            "reboot",
            "reset",
            "rebuild",
            "change_type",
        ];
        if !known.contains(&action) {
            return Err(ApiError::not_found("action endpoint"));
        }
        if self.server_locked(id) {
            return Err(ApiError::locked());
        }
        if action == "change_type" {
            return self.change_type(id, &status, body);
        }
        let was = |s: &str| -> &'static str {
            match s {
                "off" => "off",
                _ => "running",
            }
        };
        let (command, now_status, success, error): (&str, String, &'static str, &'static str) =
            match action {
                "poweron" => (
                    "start_server",
                    if status == "off" {
                        "starting".into()
                    } else {
                        status.clone()
                    },
                    "running",
                    was(&status),
                ),
                "poweroff" => (
                    "stop_server",
                    if status == "off" {
                        status.clone()
                    } else {
                        "stopping".into()
                    },
                    "off",
                    was(&status),
                ),
                "shutdown" => {
                    let ignore = self.ignore_shutdown;
                    (
                        "shutdown_server",
                        status.clone(),
                        if ignore || status != "running" {
                            was(&status)
                        } else {
                            "off"
                        },
                        was(&status),
                    )
                }
                "reboot" => ("reboot_server", status.clone(), "running", was(&status)),
                "reset" => ("reset_server", status.clone(), "running", was(&status)),
                _ => {
                    let image_v = body
                        .get("image")
                        .ok_or_else(|| ApiError::invalid_input("image", "is required"))?;
                    let image = self
                        .catalog
                        .image(image_v, arch)
                        .ok_or_else(|| ApiError::invalid_input("image", "image not found"))?;
                    if image.architecture != arch {
                        return Err(ApiError::invalid_input(
                            "image",
                            "image architecture does not match the server type",
                        ));
                    }
                    let image_id = image.id;
                    if let Some(s) = self.servers.get_mut(&id) {
                        s.image_id = image_id;
                    }
                    (
                        "rebuild_server",
                        "rebuilding".into(),
                        "running",
                        was(&status),
                    )
                }
            };
        if let Some(s) = self.servers.get_mut(&id) {
            s.status = now_status;
        }
        let action_id = self.new_action(
            command,
            vec![(id, "server")],
            Effect::ServerStatus { id, success, error },
            1,
        );
        let mut out = json!({ "action": self.action_json(action_id) });
        if command == "rebuild_server" {
            out["root_password"] = if has_keys {
                Value::Null
            } else {
                json!(format!("Rb{}pw{}", id, action_id % 89))
            };
        }
        Ok((201, Some(out)))
    }

    /// `POST /servers/{id}/actions/change_type`: `server_type` (name or id) and
    /// `upgrade_disk` (required); the server must be off and stays off. The type must be
    /// orderable in the server's location and match its architecture.
    fn change_type(&mut self, id: u64, status: &str, body: &Value) -> ApiResult {
        let type_v = body
            .get("server_type")
            .ok_or_else(|| ApiError::invalid_input("server_type", "is required"))?;
        if !body.get("upgrade_disk").is_some_and(Value::is_boolean) {
            return Err(ApiError::invalid_input("upgrade_disk", "is required"));
        }
        let (location, current) = match self.servers.get(&id) {
            Some(s) => (s.location.clone(), s.server_type.clone()),
            None => return Err(ApiError::not_found("server")),
        };
        let from_arch = self
            .catalog
            .server_type(&json!(current))
            .map(|t| t.architecture)
            .unwrap_or("x86");
        let to = self
            .catalog
            .server_type(type_v)
            .ok_or_else(|| ApiError::invalid_input("server_type", "server type not found"))?;
        if to.architecture != from_arch {
            return Err(ApiError::invalid_input(
                "server_type",
                "server type architecture does not match the server",
            ));
        }
        let orderable = !to.deprecated && to.prices.iter().any(|p| p.0 == location && p.3);
        if !orderable {
            return Err(ApiError::new(
                412,
                "resource_unavailable",
                format!("server type {} is not available in {location}", to.name),
            ));
        }
        if status != "off" {
            return Err(ApiError::new(
                412,
                "server_not_stopped",
                "the server must be powered off to change its type",
            ));
        }
        let name = to.name.to_string();
        if let Some(s) = self.servers.get_mut(&id) {
            s.server_type = name;
        }
        let action_id = self.new_action(
            "change_server_type",
            vec![(id, "server")],
            Effect::ServerStatus {
                id,
                success: "off",
                error: "off",
            },
            1,
        );
        Ok((201, Some(json!({ "action": self.action_json(action_id) }))))
    }

    // ----- SSH keys --------------------------------------------------------------------

    fn list_ssh_keys(&self, q: &Query) -> ApiResult {
        let selector = q.selector()?;
        let items = self
            .ssh_keys
            .values()
            .filter(|k| q.get("name").is_none_or(|n| n == k.name))
            .filter(|k| q.get("fingerprint").is_none_or(|f| f == k.fingerprint))
            .filter(|k| selector.as_ref().is_none_or(|s| s.matches(&k.labels)))
            .map(|k| self.ssh_key_json(k))
            .collect();
        paginate("ssh_keys", items, q)
    }

    fn create_ssh_key(&mut self, body: &Value) -> ApiResult {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::invalid_input("name", "is required"))?;
        let public_key = body
            .get("public_key")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid_input("public_key", "is required"))?;
        let fingerprint = ssh_fingerprint(public_key)
            .ok_or_else(|| ApiError::invalid_input("public_key", "invalid public key"))?;
        let labels = parse_labels(body)?;
        if self.ssh_keys.values().any(|k| k.name == name) {
            return Err(ApiError::uniqueness(
                "name",
                "SSH key with the same name already exists",
            ));
        }
        if self.ssh_keys.values().any(|k| k.fingerprint == fingerprint) {
            return Err(ApiError::uniqueness(
                "public_key",
                "SSH key with the same fingerprint already exists",
            ));
        }
        let id = self.ids.next(Kind::SshKey);
        let key = FakeSshKey {
            id,
            name: name.to_string(),
            public_key: public_key.trim().to_string(),
            fingerprint,
            labels,
            created: SystemTime::now(),
        };
        let out = json!({ "ssh_key": self.ssh_key_json(&key) });
        self.ssh_keys.insert(id, key);
        Ok((201, Some(out)))
    }

    fn update_ssh_key(&mut self, id: u64, body: &Value) -> ApiResult {
        let labels = parse_labels(body)?;
        let new_name = body.get("name").and_then(Value::as_str).map(str::to_string);
        if let Some(n) = &new_name
            && self.ssh_keys.values().any(|k| k.name == *n && k.id != id)
        {
            return Err(ApiError::uniqueness(
                "name",
                "SSH key with the same name already exists",
            ));
        }
        let has_labels = body.get("labels").is_some();
        let key = self
            .ssh_keys
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("ssh_key"))?;
        if let Some(n) = new_name {
            key.name = n;
        }
        if has_labels {
            key.labels = labels;
        }
        let key = key.clone();
        Ok((200, Some(json!({ "ssh_key": self.ssh_key_json(&key) }))))
    }

    // ----- firewalls -------------------------------------------------------------------

    fn list_firewalls(&self, q: &Query) -> ApiResult {
        let selector = q.selector()?;
        let items = self
            .firewalls
            .values()
            .filter(|f| q.get("name").is_none_or(|n| n == f.name))
            .filter(|f| selector.as_ref().is_none_or(|s| s.matches(&f.labels)))
            .map(|f| self.firewall_json(f))
            .collect();
        paginate("firewalls", items, q)
    }

    fn parse_apply(&self, list: Option<&Value>, field: &str) -> Result<Vec<FakeApplied>, ApiError> {
        let mut out = Vec::new();
        let Some(list) = list else { return Ok(out) };
        let Some(items) = list.as_array() else {
            return Err(ApiError::invalid_input(field, "must be an array"));
        };
        for item in items {
            match item.get("type").and_then(Value::as_str) {
                Some("server") => {
                    let id = item
                        .pointer("/server/id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| ApiError::invalid_input(field, "server.id is required"))?;
                    if !self.servers.contains_key(&id) {
                        return Err(ApiError::new(
                            404,
                            "firewall_resource_not_found",
                            format!("server {id} not found"),
                        ));
                    }
                    let entry = FakeApplied::Server(id);
                    if out.contains(&entry) {
                        return Err(ApiError::new(
                            422,
                            "server_already_added",
                            format!("server {id} given more than once"),
                        ));
                    }
                    out.push(entry);
                }
                Some("label_selector") => {
                    let sel = item
                        .pointer("/label_selector/selector")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::invalid_input(field, "label_selector.selector is required")
                        })?;
                    Selector::parse(sel).map_err(|m| ApiError::invalid_input(field, &m))?;
                    out.push(FakeApplied::LabelSelector(sel.to_string()));
                }
                _ => return Err(ApiError::invalid_input(field, "unknown resource type")),
            }
        }
        Ok(out)
    }

    fn apply_actions(&mut self, fw: u64, applied: &[FakeApplied], command: &str) -> Vec<Value> {
        let ids: Vec<u64> = applied
            .iter()
            .map(|a| {
                let resources = match a {
                    FakeApplied::Server(id) => vec![(*id, "server"), (fw, "firewall")],
                    FakeApplied::LabelSelector(_) => vec![(fw, "firewall")],
                };
                self.new_action(command, resources, Effect::None, 1)
            })
            .collect();
        ids.into_iter().map(|id| self.action_json(id)).collect()
    }

    fn create_firewall(&mut self, body: &Value) -> ApiResult {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::invalid_input("name", "is required"))?;
        let labels = parse_labels(body)?;
        let rules = normalize_rules(body.get("rules"))?;
        let applied = self.parse_apply(body.get("apply_to"), "apply_to")?;
        if self.firewalls.values().any(|f| f.name == name) {
            return Err(ApiError::uniqueness(
                "name",
                "firewall name is already used",
            ));
        }
        let id = self.ids.next(Kind::Firewall);
        self.firewalls.insert(
            id,
            FakeFirewall {
                id,
                name: name.to_string(),
                labels,
                rules,
                applied_to: applied.clone(),
                created: SystemTime::now(),
            },
        );
        let mut actions = Vec::new();
        let set = self.new_action(
            "set_firewall_rules",
            vec![(id, "firewall")],
            Effect::None,
            1,
        );
        actions.push(self.action_json(set));
        actions.extend(self.apply_actions(id, &applied, "apply_firewall"));
        Ok((
            201,
            Some(
                json!({ "firewall": self.firewall_json(&self.firewalls[&id]), "actions": actions }),
            ),
        ))
    }

    fn update_firewall(&mut self, id: u64, body: &Value) -> ApiResult {
        let labels = parse_labels(body)?;
        let new_name = body.get("name").and_then(Value::as_str).map(str::to_string);
        if let Some(n) = &new_name
            && self.firewalls.values().any(|f| f.name == *n && f.id != id)
        {
            return Err(ApiError::uniqueness(
                "name",
                "firewall name is already used",
            ));
        }
        let has_labels = body.get("labels").is_some();
        let fw = self
            .firewalls
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        if let Some(n) = new_name {
            fw.name = n;
        }
        if has_labels {
            fw.labels = labels;
        }
        let fw = fw.clone();
        Ok((200, Some(json!({ "firewall": self.firewall_json(&fw) }))))
    }

    fn delete_firewall(&mut self, id: u64) -> ApiResult {
        let fw = self
            .firewalls
            .get(&id)
            .ok_or_else(|| ApiError::not_found("firewall"))?;
        if !fw.applied_to.is_empty() {
            return Err(ApiError::new(
                422,
                "resource_in_use",
                "firewall is still applied to a resource",
            ));
        }
        self.firewalls.remove(&id);
        Ok((204, None))
    }

    fn firewall_action(&mut self, id: u64, action: &str, body: &Value) -> ApiResult {
        if !self.firewalls.contains_key(&id) {
            return Err(ApiError::not_found("firewall"));
        }
        let actions = match action {
            "set_rules" => {
                let rules = normalize_rules(Some(body.get("rules").unwrap_or(&Value::Null)))?;
                if body.get("rules").is_none() {
                    return Err(ApiError::invalid_input("rules", "is required"));
                }
                if let Some(fw) = self.firewalls.get_mut(&id) {
                    fw.rules = rules;
                }
                let set = self.new_action(
                    "set_firewall_rules",
                    vec![(id, "firewall")],
                    Effect::None,
                    1,
                );
                vec![self.action_json(set)]
            }
            "apply_to_resources" => {
                let applied = self.parse_apply(body.get("apply_to"), "apply_to")?;
                let existing = self.firewalls[&id].applied_to.clone();
                if let Some(dup) = applied.iter().find(|a| existing.contains(a)) {
                    return Err(ApiError::new(
                        422,
                        "firewall_already_applied",
                        format!("firewall already applied to {dup:?}"),
                    ));
                }
                if let Some(fw) = self.firewalls.get_mut(&id) {
                    fw.applied_to.extend(applied.iter().cloned());
                }
                self.apply_actions(id, &applied, "apply_firewall")
            }
            "remove_from_resources" => {
                let removed = self.parse_apply(body.get("remove_from"), "remove_from")?;
                if let Some(fw) = self.firewalls.get_mut(&id) {
                    fw.applied_to.retain(|a| !removed.contains(a));
                }
                self.apply_actions(id, &removed, "remove_firewall")
            }
            _ => return Err(ApiError::not_found("action endpoint")),
        };
        Ok((201, Some(json!({ "actions": actions }))))
    }

    // ----- zones -----------------------------------------------------------------------

    fn zone(&self, id_or_name: &str) -> Result<u64, ApiError> {
        self.zones
            .values()
            .find(|z| z.id.to_string() == id_or_name || z.name == id_or_name)
            .map(|z| z.id)
            .ok_or_else(|| ApiError::not_found("zone"))
    }

    fn primary_zone(&self, id_or_name: &str) -> Result<u64, ApiError> {
        let id = self.zone(id_or_name)?;
        if self.zones[&id].mode != "primary" {
            return Err(ApiError::new(
                422,
                "incorrect_zone_mode",
                "this operation is not supported for this zone's mode",
            ));
        }
        Ok(id)
    }

    fn zone_mut(&mut self, id: u64) -> &mut ZoneRec {
        self.zones.get_mut(&id).expect("zone id was just resolved")
    }

    fn list_zones(&self, q: &Query) -> ApiResult {
        let selector = q.selector()?;
        let items = self
            .zones
            .values()
            .filter(|z| q.get("name").is_none_or(|n| n == z.name))
            .filter(|z| q.get("mode").is_none_or(|m| m == z.mode))
            .filter(|z| selector.as_ref().is_none_or(|s| s.matches(&z.labels)))
            .map(|z| z.json())
            .collect();
        paginate("zones", items, q)
    }

    fn create_zone(&mut self, body: &Value) -> ApiResult {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid_input("name", "is required"))?;
        if !(name.contains('.') && valid_hostname(name) && name == name.to_ascii_lowercase()) {
            return Err(ApiError::invalid_input(
                "name",
                "must be a lower-case domain name without trailing dot",
            ));
        }
        let mode = body.get("mode").and_then(Value::as_str).unwrap_or("");
        if mode != "primary" && mode != "secondary" {
            return Err(ApiError::invalid_input(
                "mode",
                "must be one of primary, secondary",
            ));
        }
        let ttl = parse_ttl(body.get("ttl"))?.unwrap_or(3600);
        let labels = parse_labels(body)?;
        if self.zones.values().any(|z| z.name == name) {
            return Err(ApiError::uniqueness("name", "zone name is already used"));
        }
        let mut rrsets = BTreeMap::new();
        if mode == "primary" {
            rrsets.insert(
                ("@".to_string(), "SOA".to_string()),
                FakeRrSet {
                    name: "@".into(),
                    rtype: "SOA".into(),
                    ttl: None,
                    labels: BTreeMap::new(),
                    records: vec![FakeRecord {
                        value: format!(
                            "{} dns.hetzner.com. 2025010101 86400 10800 3600000 3600",
                            NAMESERVERS[0]
                        ),
                        comment: String::new(),
                    }],
                },
            );
            rrsets.insert(
                ("@".to_string(), "NS".to_string()),
                FakeRrSet {
                    name: "@".into(),
                    rtype: "NS".into(),
                    ttl: None,
                    labels: BTreeMap::new(),
                    records: NAMESERVERS
                        .iter()
                        .map(|ns| FakeRecord {
                            value: ns.to_string(),
                            comment: String::new(),
                        })
                        .collect(),
                },
            );
            if let Some(extra) = body.get("rrsets").and_then(Value::as_array) {
                for r in extra {
                    let rrset = parse_rrset(name, r)?;
                    rrsets.insert((rrset.name.clone(), rrset.rtype.clone()), rrset);
                }
            }
        }
        let id = self.ids.next(Kind::Zone);
        self.zones.insert(
            id,
            ZoneRec {
                id,
                name: name.to_string(),
                mode: mode.to_string(),
                ttl,
                labels,
                created: SystemTime::now(),
                rrsets,
            },
        );
        let action = self.new_action("create_zone", vec![(id, "zone")], Effect::None, 1);
        Ok((
            201,
            Some(json!({ "zone": self.zones[&id].json(), "action": self.action_json(action) })),
        ))
    }

    fn list_rrsets(&self, zone: &str, q: &Query) -> ApiResult {
        let z = self.zone(zone)?;
        let rec = &self.zones[&z];
        let selector = q.selector()?;
        let types = q.all("type");
        let items = rec
            .rrsets
            .values()
            .filter(|r| q.get("name").is_none_or(|n| n == r.name))
            .filter(|r| types.is_empty() || types.contains(&r.rtype.as_str()))
            .filter(|r| selector.as_ref().is_none_or(|s| s.matches(&r.labels)))
            .map(|r| rec.rrset_json(r))
            .collect();
        paginate("rrsets", items, q)
    }

    fn create_rrset(&mut self, zone: &str, body: &Value) -> ApiResult {
        let z = self.primary_zone(zone)?;
        let zone_name = self.zones[&z].name.clone();
        let rrset = parse_rrset(&zone_name, body)?;
        let key = (rrset.name.clone(), rrset.rtype.clone());
        let rec = self.zone_mut(z);
        if rec.rrsets.contains_key(&key) {
            return Err(ApiError::uniqueness(
                "name",
                "an RRSet with this name and type already exists",
            ));
        }
        rec.rrsets.insert(key, rrset.clone());
        let out = rec.rrset_json(&rrset);
        let action = self.new_action("create_rrset", vec![(z, "zone")], Effect::None, 1);
        Ok((
            201,
            Some(json!({ "rrset": out, "action": self.action_json(action) })),
        ))
    }

    fn rrset_action(
        &mut self,
        zone: &str,
        name: &str,
        rtype: &str,
        action: &str,
        body: &Value,
    ) -> ApiResult {
        let z = self.primary_zone(zone)?;
        let key = (name.to_string(), rtype.to_string());
        let records =
            || -> Result<Vec<FakeRecord>, ApiError> { parse_records(rtype, body.get("records")) };
        let command = match action {
            "set_records" => {
                let records = records()?;
                let rec = self.zone_mut(z);
                let r = rec
                    .rrsets
                    .get_mut(&key)
                    .ok_or_else(|| ApiError::not_found("rrset"))?;
                r.records = records;
                "set_rrset_records"
            }
            "add_records" => {
                let records = records()?;
                let ttl = parse_ttl(body.get("ttl"))?;
                let zone_name = self.zones[&z].name.clone();
                if !self.zones[&z].rrsets.contains_key(&key) {
                    validate_rrset_key(&zone_name, name, rtype)?;
                }
                let rec = self.zone_mut(z);
                let r = rec.rrsets.entry(key).or_insert_with(|| FakeRrSet {
                    name: name.to_string(),
                    rtype: rtype.to_string(),
                    ttl,
                    labels: BTreeMap::new(),
                    records: Vec::new(),
                });
                for new in records {
                    if !r.records.iter().any(|old| old.value == new.value) {
                        r.records.push(new);
                    }
                }
                if ttl.is_some() {
                    r.ttl = ttl;
                }
                "add_rrset_records"
            }
            "remove_records" => {
                let records = records()?;
                let rec = self.zone_mut(z);
                let r = rec
                    .rrsets
                    .get_mut(&key)
                    .ok_or_else(|| ApiError::not_found("rrset"))?;
                r.records
                    .retain(|old| !records.iter().any(|gone| gone.value == old.value));
                if r.records.is_empty() {
                    rec.rrsets.remove(&key);
                }
                "remove_rrset_records"
            }
            "change_ttl" => {
                let ttl = parse_ttl(body.get("ttl"))?;
                let rec = self.zone_mut(z);
                let r = rec
                    .rrsets
                    .get_mut(&key)
                    .ok_or_else(|| ApiError::not_found("rrset"))?;
                r.ttl = ttl;
                "change_rrset_ttl"
            }
            _ => return Err(ApiError::not_found("action endpoint")),
        };
        let action = self.new_action(command, vec![(z, "zone")], Effect::None, 1);
        Ok((201, Some(json!({ "action": self.action_json(action) }))))
    }
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::invalid_input("id", "must be an integer"))
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(valid_hostname_label)
}

fn parse_ttl(v: Option<&Value>) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|t| (60..=2_147_483_647).contains(t))
            .map(Some)
            .ok_or_else(|| ApiError::invalid_input("ttl", "must be between 60 and 2147483647")),
    }
}

fn validate_rrset_key(zone: &str, name: &str, rtype: &str) -> Result<(), ApiError> {
    if !RRSET_TYPES.contains(&rtype) {
        return Err(ApiError::invalid_input("type", "unsupported record type"));
    }
    let ok_chars = name.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '*')
    });
    if name.is_empty()
        || (name != "@" && !ok_chars)
        || name.ends_with('.')
        || name == zone
        || name.ends_with(&format!(".{zone}"))
    {
        return Err(ApiError::invalid_input(
            "name",
            "must be lower case, relative to the zone, without trailing dot ('@' for the apex)",
        ));
    }
    Ok(())
}

fn parse_records(rtype: &str, v: Option<&Value>) -> Result<Vec<FakeRecord>, ApiError> {
    let items = v
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid_input("records", "is required"))?;
    if items.is_empty() {
        return Err(ApiError::invalid_input("records", "must not be empty"));
    }
    let mut out: Vec<FakeRecord> = Vec::new();
    for item in items {
        let value = item
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid_input("records", "value is required"))?;
        let valid = match rtype {
            "A" => value.parse::<Ipv4Addr>().is_ok(),
            "AAAA" => value.parse::<Ipv6Addr>().is_ok(),
            "TXT" => value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
            _ => !value.trim().is_empty(),
        };
        if !valid {
            return Err(ApiError::invalid_input(
                "records",
                &format!("invalid value '{value}' for record type {rtype}"),
            ));
        }
        if out.iter().any(|r| r.value == value) {
            return Err(ApiError::invalid_input(
                "records",
                "must only contain distinct record values",
            ));
        }
        out.push(FakeRecord {
            value: value.to_string(),
            comment: item
                .get("comment")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    Ok(out)
}

fn parse_rrset(zone: &str, body: &Value) -> Result<FakeRrSet, ApiError> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_input("name", "is required"))?;
    let rtype = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_input("type", "is required"))?;
    validate_rrset_key(zone, name, rtype)?;
    Ok(FakeRrSet {
        name: name.to_string(),
        rtype: rtype.to_string(),
        ttl: parse_ttl(body.get("ttl"))?,
        labels: parse_labels(body)?,
        records: parse_records(rtype, body.get("records"))?,
    })
}

fn normalize_rules(v: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid_input("rules", "must be an array")),
    };
    if items.len() > 50 {
        return Err(ApiError::invalid_input("rules", "at most 50 rules"));
    }
    let mut out = Vec::new();
    for rule in items {
        let direction = rule.get("direction").and_then(Value::as_str).unwrap_or("");
        if direction != "in" && direction != "out" {
            return Err(ApiError::invalid_input(
                "rules",
                "direction must be in or out",
            ));
        }
        let protocol = rule.get("protocol").and_then(Value::as_str).unwrap_or("");
        if !["tcp", "udp", "icmp", "esp", "gre"].contains(&protocol) {
            return Err(ApiError::invalid_input(
                "rules",
                "protocol must be one of tcp, udp, icmp, esp, gre",
            ));
        }
        let port = rule.get("port").and_then(Value::as_str);
        let port_needed = protocol == "tcp" || protocol == "udp";
        match (port_needed, port) {
            (true, None) => {
                return Err(ApiError::invalid_input(
                    "rules",
                    "port is required for tcp and udp",
                ));
            }
            (false, Some(_)) => {
                return Err(ApiError::invalid_input(
                    "rules",
                    "port is only allowed for tcp and udp",
                ));
            }
            (true, Some(p)) if !valid_port(p) => {
                return Err(ApiError::invalid_input("rules", "invalid port"));
            }
            _ => {}
        }
        let ips = |key: &str| -> Vec<String> {
            rule.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (source, destination) = (ips("source_ips"), ips("destination_ips"));
        if direction == "in" && source.is_empty() {
            return Err(ApiError::invalid_input(
                "rules",
                "source_ips are required for direction in",
            ));
        }
        if direction == "out" && destination.is_empty() {
            return Err(ApiError::invalid_input(
                "rules",
                "destination_ips are required for direction out",
            ));
        }
        if source
            .iter()
            .chain(destination.iter())
            .any(|c| !valid_cidr(c))
        {
            return Err(ApiError::invalid_input("rules", "IPs must be CIDR blocks"));
        }
        out.push(json!({
            "direction": direction,
            "source_ips": source,
            "destination_ips": destination,
            "protocol": protocol,
            "port": port,
            "description": rule.get("description").and_then(Value::as_str),
        }));
    }
    Ok(out)
}

fn valid_port(p: &str) -> bool {
    if p == "any" {
        return true;
    }
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|n| n >= 1);
    match p.split_once('-') {
        Some((a, b)) => ok(a) && ok(b),
        None => ok(p),
    }
}

fn valid_cidr(c: &str) -> bool {
    let Some((ip, bits)) = c.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    if ip.parse::<Ipv4Addr>().is_ok() {
        bits <= 32
    } else {
        ip.parse::<Ipv6Addr>().is_ok() && bits <= 128
    }
}

// ---------------------------------------------------------------------------------------
// Time, SSH fingerprints
// ---------------------------------------------------------------------------------------

/// RFC 3339 in UTC with a `+00:00` offset, as the API writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{}+00:00", utc_datetime(secs))
}

/// MD5 fingerprint (colon-separated hex) of an OpenSSH public key line, as the API reports
/// it; `None` if the line is not `<type> <base64 blob> [comment]` with a matching blob.
pub fn ssh_fingerprint(public_key: &str) -> Option<String> {
    let mut parts = public_key.split_whitespace();
    let kind = parts.next()?;
    let blob = base64_decode(parts.next()?)?;
    // The blob starts with the length-prefixed key type.
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    if blob.get(4..4 + len)? != kind.as_bytes() {
        return None;
    }
    let digest = md5(&blob);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let trimmed = s.trim_end_matches('=');
    if !s.len().is_multiple_of(4) || s.len() - trimmed.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in trimmed.bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// MD5 (RFC 1321); enough for fingerprints, written here to avoid a dependency.
pub fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| (((i + 1) as f64).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) = (
        0x6745_2301u32,
        0xefcd_ab89u32,
        0x98ba_dcfeu32,
        0x1032_5476u32,
    );
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, word) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}
