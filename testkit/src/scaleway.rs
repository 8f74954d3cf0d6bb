//! A fake Scaleway API for tests: a real HTTP server on 127.0.0.1 that keeps a small
//! in-memory world (Instances servers, volumes and security groups per zone, Marketplace
//! images, IAM SSH keys, Domains DNS zones and records) and answers with Scaleway's paths,
//! field names, status codes and error bodies.
//!
//! Start it on its own thread and runtime ([`ScalewayFake::start`], for blocking tests and
//! tests that spawn the `legion` binary with `LEGION_SCALEWAY_API_URL`), or on the test's
//! tokio runtime ([`ScalewayFake::start_async`]). The server, fault rules, rate budget and
//! request record are the kit's ([`crate::http`]); this module owns the Scaleway world and
//! how Scaleway answers.
//!
//! Facts follow Scaleway's SDK (scaleway-sdk-go: request and response types, paths, the
//! error types in `scw/errors.go`). Servers are created `stopped`; `poweron`, `poweroff`,
//! `reboot` and `terminate` (`POST …/servers/{id}/action`, answered `202` with a task) move
//! them through `starting`/`stopping` for a configurable real-time duration (200 ms by
//! default), applied lazily whenever the fake is touched. A server in such a transition
//! refuses further actions with `409 transient_state`. The Instance API pages with
//! `page`/`per_page` and the `X-Total-Count` header; IAM, Marketplace and Domains with
//! `page`/`page_size` and `total_count`. Errors come in both of Scaleway's forms: the
//! Instance API's older `{"message", "type": "invalid_request_error", "fields"}` and
//! `unknown_resource`, and the newer `{"type", "message", "details"}` ones.
//!
//! Images and volumes, for reinstall (a root volume swap): the Marketplace's local images
//! (`GET /marketplace/v2/local-images?image_label&zone&type`, one per label, zone, type
//! `instance_local`/`instance_sbs` and architecture, with compatible commercial types)
//! name Instance images (`GET …/images/{id}`) whose `root_volume` is the snapshot root
//! volumes are made from (`l_ssd` of 10 GB, or `sbs_snapshot`), as in the SDK's
//! cassettes. Instance `POST …/volumes` takes precisely one of `size` and
//! `base_snapshot` (the volume then has the snapshot's size and is `fetching` for the
//! action duration); Block Storage `POST /block/v1/zones/{zone}/volumes` takes precisely
//! one of `from_empty` and `from_snapshot` (a size no smaller than the snapshot's) and is
//! `creating` meanwhile. `PATCH …/servers/{id}` with `volumes` replaces the server's
//! volume list (templates by `id`) only while the server is `stopped`, with available
//! volumes attached to no other server and a root at index `0`; otherwise it answers in
//! the older form (`invalid_request_error`; the messages are the fake's words). Volumes
//! left out are detached (Block Storage ones stay busy for the detach delay).
//!
//! Fault injection and inspection helpers live on the [`ScalewayFake`] handle (the common
//! ones through its [`Controls`]) and may be used while the server is running, from any
//! thread.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::http::{
    Controls, Dropped, Exchange, HttpResponse, Query, RateHeaders, Server, Service, lock, page_of,
    reply, unix_now, utc_datetime,
};
pub use crate::http::{FaultKind, FaultRule, RecordedRequest};

/// The secret key the fake accepts unless changed with [`ScalewayFake::set_secret_key`].
pub const SECRET_KEY: &str = "4e1c2a10-5b3d-4c7e-9f00-0123456789ab";
/// The project the fake's default security groups belong to.
pub const PROJECT: &str = "7d0a5b9e-1111-4222-8333-444455556666";
/// The zones the fake serves.
pub const ZONES: &[&str] = &[
    "fr-par-1", "fr-par-2", "fr-par-3", "nl-ams-1", "nl-ams-2", "nl-ams-3", "pl-waw-1", "pl-waw-2",
    "pl-waw-3",
];
/// Default time a server spends `starting` or `stopping`.
pub const DEFAULT_ACTION_DURATION: Duration = Duration::from_millis(200);
/// Default `X-RateLimit-Limit` (requests per window).
pub const DEFAULT_RATE_LIMIT: u64 = 3600;

// ---------------------------------------------------------------------------------------
// Public handle
// ---------------------------------------------------------------------------------------

/// A running fake. Dropping it stops the server.
pub struct ScalewayFake {
    server: Server,
    shared: Arc<Shared>,
}

/// The common controls: faults, latency, the rate budget, the request record.
impl Deref for ScalewayFake {
    type Target = Controls;

    fn deref(&self) -> &Controls {
        &self.shared.controls
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeServer {
    pub id: String,
    pub zone: String,
    pub project: String,
    pub name: String,
    /// `stopped`, `starting`, `running`, `stopping`, `stopped in place`, `locked`.
    pub state: String,
    pub state_detail: String,
    pub commercial_type: String,
    /// The Marketplace label it was created from.
    pub image: String,
    pub tags: Vec<String>,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub security_group: String,
    pub volumes: Vec<String>,
    pub boot_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeVolume {
    pub id: String,
    pub zone: String,
    pub name: String,
    pub project: String,
    /// `l_ssd` (Instance API) or `sbs_volume` (Block Storage API).
    pub volume_type: String,
    pub size: u64,
    pub tags: Vec<String>,
    /// The snapshot it was made from (an image's root snapshot for a root volume).
    pub base_snapshot: Option<String>,
    /// Block Storage only: 5000 or 15000.
    pub perf_iops: Option<u64>,
    pub server: Option<String>,
    /// Still detaching from a server until then (deletion refused).
    pub busy_until: Option<Instant>,
    /// Still being filled from its snapshot until then (`fetching` in the Instance API,
    /// `creating` in Block Storage): it cannot be attached yet.
    pub ready_at: Option<Instant>,
}

impl FakeVolume {
    fn ready(&self, now: Instant) -> bool {
        self.ready_at.is_none_or(|t| t <= now)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSshKey {
    pub id: String,
    pub name: String,
    pub public_key: String,
    pub project: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FakeSecurityGroup {
    pub id: String,
    pub zone: String,
    pub project: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub project_default: bool,
    /// Rule objects as the API returns them, by position.
    pub rules: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRecord {
    pub id: String,
    pub name: String,
    pub rtype: String,
    pub data: String,
    pub ttl: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeDnsZone {
    pub domain: String,
    pub subdomain: String,
    pub project: String,
    pub records: Vec<FakeRecord>,
}

impl FakeDnsZone {
    pub fn name(&self) -> String {
        if self.subdomain.is_empty() {
            self.domain.clone()
        } else {
            format!("{}.{}", self.subdomain, self.domain)
        }
    }
}

impl ScalewayFake {
    /// Start on a dedicated thread with its own current-thread tokio runtime.
    pub fn start() -> Self {
        let shared = Arc::new(Shared::new());
        Self {
            server: Server::start("scaleway-fake", shared.clone()),
            shared,
        }
    }

    /// Start on the current tokio runtime (the accept loop and connections are tasks).
    pub async fn start_async() -> Self {
        let shared = Arc::new(Shared::new());
        Self {
            server: Server::start_async(shared.clone()).await,
            shared,
        }
    }

    /// `http://127.0.0.1:PORT`, the value for `LEGION_SCALEWAY_API_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The variables that point Legion at this fake (states polled every 10 ms), with
    /// the credentials in Scaleway's default variables.
    pub fn legion_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LEGION_SCALEWAY_API_URL", self.base_url()),
            ("LEGION_SCALEWAY_ACTION_POLL_MS", "10".into()),
            ("SCW_SECRET_KEY", self.secret_key()),
            ("SCW_DEFAULT_PROJECT_ID", self.project().to_string()),
        ]
    }

    pub fn secret_key(&self) -> String {
        lock(&self.shared.secret).clone()
    }

    pub fn set_secret_key(&self, key: &str) {
        *lock(&self.shared.secret) = key.to_string();
    }

    pub fn project(&self) -> &'static str {
        PROJECT
    }

    // ----- simulated time -------------------------------------------------------------

    /// Give every server created from now on this public IPv4 (a loopback sshd plays the
    /// servers in end-to-end tests).
    pub fn set_server_ipv4(&self, ip: &str) {
        self.world().fixed_ipv4 = Some(ip.to_string());
    }

    /// How long servers stay `starting` or `stopping` (default 200 ms).
    pub fn set_action_duration(&self, duration: Duration) {
        self.world().action_duration = duration;
    }

    /// Enforce security groups for reachability from now on: every new server gets its
    /// own loopback address behind `gates` ([`crate::gate`]); a connection is judged by
    /// the server's group: its inbound rules in position order (the first match's action
    /// wins), else the group's inbound default policy (`accept` for the project's
    /// default group, `drop` for the groups clients create).
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

    /// Remove every rule of a security group behind the client's back (its default
    /// policy stays). False when there is no such group.
    pub fn clear_group_rules(&self, id: &str) -> bool {
        match self.world().groups.get_mut(id) {
            Some(g) => {
                g.rules.clear();
                true
            }
            None => false,
        }
    }

    /// Volumes of a deleted server stay busy (detaching) this long: deleting them is
    /// refused with `precondition_failed` meanwhile.
    pub fn set_volume_detach_delay(&self, delay: Duration) {
        self.world().detach_delay = delay;
    }

    /// Finish every transition now.
    pub fn finish_all_actions(&self) {
        let mut world = self.world();
        let now = Instant::now();
        for t in world.transitions.values_mut() {
            t.finish_at = now;
        }
        world.tick(now);
    }

    // ----- faults (the common ones are on Controls) ------------------------------------

    /// Remove all pending fault rules, latency and action failures; forced locks stay.
    pub fn clear_faults(&self) {
        self.shared.controls.clear_faults();
        self.world().action_failures.clear();
    }

    /// Actions, updates and deletion of this server answer `409 transient_state` until
    /// unlocked, as while another action runs on it.
    pub fn lock_server(&self, id: &str) {
        self.world().forced_locks.insert(id.to_string());
    }

    pub fn unlock_server(&self, id: &str) {
        self.world().forced_locks.remove(id);
    }

    /// Lock a server for `duration`, then unlock it.
    pub fn lock_server_for(&self, id: &str, duration: Duration) {
        self.lock_server(id);
        let shared = self.shared.clone();
        let id = id.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            lock(&shared.world).forced_locks.remove(&id);
        });
    }

    /// The next `action` (`poweron`, `poweroff`, `reboot`; any if empty) is accepted but
    /// fails: the server returns to its former state with `state_detail` set to `detail`.
    pub fn fail_next_action(&self, action: &str, detail: &str) {
        self.world()
            .action_failures
            .push((action.to_string(), detail.to_string()));
    }

    // ----- out-of-band changes ---------------------------------------------------------

    /// Change a server's state behind the client's back. Returns false if unknown.
    pub fn set_server_state(&self, id: &str, state: &str) -> bool {
        let mut world = self.world();
        world.transitions.remove(id);
        match world.servers.get_mut(id) {
            Some(s) => {
                s.state = state.to_string();
                true
            }
            None => false,
        }
    }

    pub fn delete_server_out_of_band(&self, id: &str) -> bool {
        let mut world = self.world();
        world.transitions.remove(id);
        world.servers.remove(id).is_some()
    }

    /// Add a rule to a security group behind the client's back, after its others (the
    /// rule object as `PUT …/rules` takes it, e.g. an outbound drop). False when there is
    /// no such group.
    pub fn add_group_rule(&self, id: &str, rule: Value) -> bool {
        let mut world = self.world();
        let Some(group) = world.groups.get(id).cloned() else {
            return false;
        };
        let Ok(mut rule) = world.normalize_rule(&group.zone, &rule, group.rules.len()) else {
            return false;
        };
        rule["position"] = json!(group.rules.len() + 1);
        if let Some(g) = world.groups.get_mut(id) {
            g.rules.push(rule);
        }
        true
    }

    /// Replace a server's tags behind the client's back.
    pub fn set_server_tags(&self, id: &str, tags: &[&str]) -> bool {
        match self.world().servers.get_mut(id) {
            Some(s) => {
                s.tags = tags.iter().map(|t| t.to_string()).collect();
                true
            }
            None => false,
        }
    }

    /// A `running` server made outside Legion.
    pub fn seed_server(
        &self,
        zone: &str,
        name: &str,
        commercial_type: &str,
        tags: &[&str],
    ) -> String {
        let mut world = self.world();
        let tags = tags.iter().map(|t| t.to_string()).collect();
        let id = world.new_server(zone, PROJECT, name, commercial_type, "ubuntu_noble", tags);
        if let Some(s) = world.servers.get_mut(&id) {
            s.state = "running".into();
        }
        id
    }

    pub fn seed_ssh_key(&self, name: &str, public_key: &str) -> String {
        let mut world = self.world();
        let id = world.uuid();
        world.ssh_keys.insert(
            id.clone(),
            FakeSshKey {
                id: id.clone(),
                name: name.to_string(),
                public_key: public_key.trim().to_string(),
                project: PROJECT.to_string(),
            },
        );
        id
    }

    // ----- inspection ------------------------------------------------------------------

    pub fn servers(&self) -> Vec<FakeServer> {
        self.world().servers.values().cloned().collect()
    }

    pub fn server(&self, id: &str) -> Option<FakeServer> {
        self.world().servers.get(id).cloned()
    }

    pub fn server_by_name(&self, name: &str) -> Option<FakeServer> {
        self.world()
            .servers
            .values()
            .find(|s| s.name == name)
            .cloned()
    }

    pub fn volumes(&self) -> Vec<FakeVolume> {
        self.world().volumes.values().cloned().collect()
    }

    /// The volume a server boots from (index `0`).
    pub fn root_volume(&self, server: &str) -> Option<FakeVolume> {
        let world = self.world();
        let root = world.servers.get(server)?.volumes.first()?.clone();
        world.volumes.get(&root).cloned()
    }

    pub fn ssh_keys(&self) -> Vec<FakeSshKey> {
        self.world().ssh_keys.values().cloned().collect()
    }

    /// Security groups Legion could have made (the projects' default groups left out).
    pub fn security_groups(&self) -> Vec<FakeSecurityGroup> {
        self.world()
            .groups
            .values()
            .filter(|g| !g.project_default)
            .cloned()
            .collect()
    }

    pub fn dns_zones(&self) -> Vec<FakeDnsZone> {
        self.world().dns.values().cloned().collect()
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
    secret: Mutex<String>,
    controls: Controls,
}

impl Shared {
    fn new() -> Self {
        Self {
            world: Mutex::new(World::new()),
            secret: Mutex::new(SECRET_KEY.to_string()),
            controls: Controls::new("", Some(DEFAULT_RATE_LIMIT)),
        }
    }
}

impl Service for Shared {
    async fn handle(&self, req: Exchange) -> Result<HttpResponse, Dropped> {
        answer(self, req).await
    }
}

/// A status, a body and the `X-Total-Count` of a list.
struct Answer {
    status: u16,
    body: Option<Value>,
    total: Option<usize>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            total: None,
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            total: None,
        }
    }
}

async fn answer(shared: &Shared, req: Exchange) -> Result<HttpResponse, Dropped> {
    let method = req.method.clone();
    let path = req.path.clone();
    let token = req.header("x-auth-token");
    let secret = lock(&shared.secret).clone();
    let authorized = token.as_deref().is_some_and(|t| t.trim() == secret);
    shared.controls.record(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: req.query.clone(),
        authorized,
    });
    shared.controls.delay().await;
    let (fault, rate) = shared.controls.admit(&method, &path);
    let rate = rate.as_ref();

    match &fault {
        Some(FaultKind::ServerError) => {
            return Ok(respond(
                &Answer::json(
                    500,
                    json!({"type": "internal_error", "message": "injected: internal error"}),
                ),
                rate,
            ));
        }
        Some(FaultKind::Unavailable) => {
            // Not Scaleway's body: what a load balancer in front says.
            return Ok(respond_text(503, "Service Unavailable", rate));
        }
        Some(FaultKind::Timeout) => return Ok(respond_text(504, "Gateway Timeout", rate)),
        Some(FaultKind::RateLimited { .. }) => {
            return Ok(respond(
                &Answer::json(
                    429,
                    json!({"type": "too_many_requests", "message": "rate limit exceeded, retry later"}),
                ),
                rate,
            ));
        }
        Some(FaultKind::DropBeforeApply) => return Err(Dropped),
        Some(FaultKind::DropAfterApply) | None => {}
    }

    if !authorized {
        let reason = if token.as_deref().is_none_or(|t| t.trim().is_empty()) {
            "invalid_argument"
        } else {
            "not_found"
        };
        return Ok(respond(
            &Answer::json(
                401,
                json!({"message": "authentication is denied", "method": "api_key",
                       "reason": reason, "type": "denied_authentication"}),
            ),
            rate,
        ));
    }

    let body_json = req
        .json()
        .map(|b| b.unwrap_or_else(|| Value::Object(Map::new())))
        .map_err(|e| ApiError::old(400, "invalid_request_error", &format!("invalid JSON: {e}")));
    let result = match body_json {
        Err(e) => Err(e),
        Ok(body_json) => {
            let query = Query::parse(&req.query);
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let mut world = lock(&shared.world);
            world.tick(Instant::now());
            world.route(&method, &segments, &query, &body_json)
        }
    };
    if fault == Some(FaultKind::DropAfterApply) {
        return Err(Dropped);
    }
    Ok(match result {
        Ok(answer) => respond(&answer, rate),
        Err(e) => respond(&Answer::json(e.status, e.body), rate),
    })
}

fn respond(answer: &Answer, rate: Option<&RateHeaders>) -> HttpResponse {
    let mut r = reply(answer.status).rate("X-RateLimit", rate);
    if let Some(total) = answer.total {
        r = r.header("X-Total-Count", total);
    }
    r.json_or_empty(answer.body.as_ref())
}

fn respond_text(status: u16, text: &'static str, rate: Option<&RateHeaders>) -> HttpResponse {
    reply(status).rate("X-RateLimit", rate).text(text)
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct ApiError {
    status: u16,
    body: Value,
}

type ApiResult = Result<Answer, ApiError>;

impl ApiError {
    /// The Instance API's older form.
    fn old(status: u16, kind: &str, message: &str) -> Self {
        Self {
            status,
            body: json!({ "type": kind, "message": message }),
        }
    }

    /// `invalid_request_error` with `fields`.
    fn field(field: &str, message: &str) -> Self {
        Self {
            status: 400,
            body: json!({ "type": "invalid_request_error", "message": "Validation Error",
                          "fields": { field: [message] } }),
        }
    }

    /// The newer `invalid_arguments` form.
    fn argument(name: &str, reason: &str, help: &str) -> Self {
        Self {
            status: 400,
            body: json!({ "type": "invalid_arguments", "message": "invalid argument(s)",
                          "details": [ { "argument_name": name, "reason": reason,
                                         "help_message": help } ] }),
        }
    }

    /// The newer `not_found` form.
    fn not_found(resource: &str, id: &str) -> Self {
        Self {
            status: 404,
            body: json!({ "type": "not_found", "message": "resource is not found",
                          "resource": resource, "resource_id": id }),
        }
    }

    /// The Instance API's older `unknown_resource` form.
    fn unknown(what: &str, id: &str) -> Self {
        Self {
            status: 404,
            body: json!({ "type": "unknown_resource", "message": format!("{what} \"{id}\" not found") }),
        }
    }

    fn transient(id: &str, state: &str) -> Self {
        Self {
            status: 409,
            body: json!({ "type": "transient_state", "message": "resource is in a transient state",
                          "resource": "instance_server", "resource_id": id,
                          "current_state": state }),
        }
    }

    fn route() -> Self {
        Self {
            status: 404,
            body: json!({ "type": "not_found", "message": "route not found" }),
        }
    }

    fn method() -> Self {
        Self {
            status: 405,
            body: json!({ "type": "invalid_request_error", "message": "method not allowed" }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Query strings and pagination
// ---------------------------------------------------------------------------------------

/// Scaleway's paging numbers and `tags` filter.
trait ScalewayQuery {
    fn number(&self, key: &str, default: usize, max: usize) -> Result<usize, ApiError>;
    fn tags(&self) -> Vec<String>;
}

impl ScalewayQuery for Query {
    fn number(&self, key: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1 && *n <= max)
                .ok_or_else(|| {
                    ApiError::argument(key, "constraint", &format!("must be between 1 and {max}"))
                }),
        }
    }

    /// Comma-separated `tags`: every one must be on the resource.
    fn tags(&self) -> Vec<String> {
        self.get("tags")
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The Instance API's paging: `page` and `per_page` (at most 100), `X-Total-Count`.
fn instance_page(key: &str, items: Vec<Value>, query: &Query) -> ApiResult {
    let page = query.number("page", 1, usize::MAX)?;
    let per_page = query.number("per_page", 50, 100)?;
    let total = items.len();
    Ok(Answer {
        status: 200,
        body: Some(json!({ key: page_of(&items, page, per_page) })),
        total: Some(total),
    })
}

/// IAM, Marketplace and Domains paging: `page` and `page_size`, `total_count` in the body.
fn standard_page(key: &str, items: Vec<Value>, query: &Query) -> ApiResult {
    let page = query.number("page", 1, usize::MAX)?;
    let size = query.number("page_size", 20, 100)?;
    let total = items.len();
    Ok(Answer::json(
        200,
        json!({ key: page_of(&items, page, size), "total_count": total }),
    ))
}

// ---------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------

struct ServerType {
    name: &'static str,
    ncpus: u32,
    ram_gib: u64,
    hourly: f64,
    arch: &'static str,
    end_of_service: bool,
    /// `l_ssd` for the older ranges, `sbs_volume` for the newer.
    volume: &'static str,
    /// Zones where it is sold (all when empty).
    zones: &'static [&'static str],
    /// Zones where it is out of stock.
    shortage: &'static [&'static str],
}

const TYPES: &[ServerType] = &[
    ServerType {
        name: "DEV1-S",
        ncpus: 2,
        ram_gib: 2,
        hourly: 0.0088,
        arch: "x86_64",
        end_of_service: false,
        volume: "l_ssd",
        zones: &[],
        shortage: &["pl-waw-3"],
    },
    ServerType {
        name: "DEV1-M",
        ncpus: 3,
        ram_gib: 4,
        hourly: 0.0198,
        arch: "x86_64",
        end_of_service: false,
        volume: "l_ssd",
        zones: &[],
        shortage: &[],
    },
    ServerType {
        name: "PLAY2-PICO",
        ncpus: 1,
        ram_gib: 2,
        hourly: 0.014,
        arch: "x86_64",
        end_of_service: false,
        volume: "sbs_volume",
        zones: &[],
        shortage: &[],
    },
    ServerType {
        name: "PLAY2-NANO",
        ncpus: 2,
        ram_gib: 4,
        hourly: 0.027,
        arch: "x86_64",
        end_of_service: false,
        volume: "sbs_volume",
        zones: &[],
        shortage: &[],
    },
    ServerType {
        name: "PRO2-XXS",
        ncpus: 2,
        ram_gib: 8,
        hourly: 0.055,
        arch: "x86_64",
        end_of_service: false,
        volume: "sbs_volume",
        zones: &[],
        shortage: &[],
    },
    ServerType {
        name: "GP1-XS",
        ncpus: 4,
        ram_gib: 16,
        hourly: 0.091,
        arch: "x86_64",
        end_of_service: true,
        volume: "l_ssd",
        zones: &[],
        shortage: &[],
    },
    ServerType {
        name: "COPARM1-2C-8G",
        ncpus: 2,
        ram_gib: 8,
        hourly: 0.0426,
        arch: "arm64",
        end_of_service: false,
        volume: "sbs_volume",
        zones: &["fr-par-2"],
        shortage: &[],
    },
    ServerType {
        name: "STARDUST1-S",
        ncpus: 1,
        ram_gib: 1,
        hourly: 0.00015,
        arch: "x86_64",
        end_of_service: false,
        volume: "l_ssd",
        zones: &["fr-par-1", "nl-ams-1"],
        shortage: &["fr-par-1"],
    },
];

fn server_type(name: &str, zone: &str) -> Option<&'static ServerType> {
    TYPES
        .iter()
        .find(|t| t.name == name && (t.zones.is_empty() || t.zones.contains(&zone)))
}

struct MarketImage {
    label: &'static str,
    name: &'static str,
    valid_until: Option<&'static str>,
}

const IMAGES: &[MarketImage] = &[
    MarketImage {
        label: "ubuntu_noble",
        name: "Ubuntu 24.04 Noble Numbat",
        valid_until: None,
    },
    MarketImage {
        label: "ubuntu_jammy",
        name: "Ubuntu 22.04 Jammy Jellyfish",
        valid_until: None,
    },
    MarketImage {
        label: "debian_bookworm",
        name: "Debian Bookworm",
        valid_until: None,
    },
    MarketImage {
        label: "ubuntu_focal",
        name: "Ubuntu 20.04 Focal Fossa",
        valid_until: Some("2025-05-31T00:00:00Z"),
    },
];

fn image_uuid(label: &str) -> String {
    let sum: u64 = label.bytes().map(u64::from).sum();
    format!("6c1d2e3f-0000-4000-8000-{sum:012x}")
}

/// A stable number for a string (FNV-1a), for the fake's derived ids.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The Marketplace's local image types, the kind of root volume each makes and the
/// type of its root snapshot.
const LOCAL_KINDS: &[(&str, &str, &str)] = &[
    ("instance_local", "l_ssd", "l_ssd"),
    ("instance_sbs", "sbs_volume", "sbs_snapshot"),
];

/// The size of every image's root snapshot (10 GB, as Scaleway's Ubuntu images).
pub const IMAGE_ROOT_SIZE: u64 = 10_000_000_000;

/// The Instance image id of a Marketplace label in a zone, for one local image type
/// (`instance_local`, `instance_sbs`) and architecture.
pub fn local_image_id(label: &str, zone: &str, kind: &str, arch: &str) -> String {
    let h = fnv(&format!("image/{label}/{zone}/{kind}/{arch}"));
    format!(
        "{:08x}-1a6e-4000-8000-{:012x}",
        h >> 32,
        h & 0xffff_ffff_ffff
    )
}

/// The root snapshot of a label's x86-64 image in a zone for a root volume type
/// (`l_ssd` or `sbs_volume`).
pub fn image_root_snapshot(label: &str, zone: &str, volume_type: &str) -> String {
    let kind = LOCAL_KINDS
        .iter()
        .find(|(_, v, _)| *v == volume_type)
        .map_or("instance_sbs", |(k, _, _)| k);
    let h = fnv(&format!(
        "snapshot/{}",
        local_image_id(label, zone, kind, "x86_64")
    ));
    format!(
        "{:08x}-5a90-4000-8000-{:012x}",
        h >> 32,
        h & 0xffff_ffff_ffff
    )
}

/// `(local image id, label, zone, kind, arch)` of every local image in `zone`.
fn local_images(zone: &str) -> Vec<(String, &'static MarketImage, &'static str, &'static str)> {
    let mut out = Vec::new();
    for image in IMAGES {
        for (kind, _, _) in LOCAL_KINDS {
            out.push((
                local_image_id(image.label, zone, kind, "x86_64"),
                image,
                *kind,
                "x86_64",
            ));
        }
        out.push((
            local_image_id(image.label, zone, "instance_sbs", "arm64"),
            image,
            "instance_sbs",
            "arm64",
        ));
    }
    out
}

/// The commercial types a local image boots: local images only the types with local
/// storage, Block Storage images every type of their architecture.
fn compatible_types(kind: &str, arch: &str) -> Vec<&'static str> {
    TYPES
        .iter()
        .filter(|t| t.arch == arch && (kind == "instance_sbs" || t.volume == "l_ssd"))
        .map(|t| t.name)
        .collect()
}

fn local_image_json(id: &str, image: &MarketImage, zone: &str, kind: &str, arch: &str) -> Value {
    json!({ "id": id, "arch": arch, "zone": zone, "label": image.label, "type": kind,
            "compatible_commercial_types": compatible_types(kind, arch) })
}

/// The Instance API's image of a local image id in `zone`, with its root snapshot.
fn instance_image_json(zone: &str, id: &str) -> Option<Value> {
    let (_, image, kind, arch) = local_images(zone).into_iter().find(|(i, ..)| i == id)?;
    let root = if kind == "instance_local" {
        json!({ "id": image_root_snapshot(image.label, zone, "l_ssd"), "name": image.name,
                "volume_type": "l_ssd", "size": IMAGE_ROOT_SIZE })
    } else if arch == "x86_64" {
        json!({ "id": image_root_snapshot(image.label, zone, "sbs_volume"), "name": "",
                "volume_type": "sbs_snapshot", "size": 0 })
    } else {
        let h = fnv(&format!("snapshot/{id}"));
        json!({ "id": format!("{:08x}-5a90-4000-8000-{:012x}", h >> 32, h & 0xffff_ffff_ffff),
                "name": "", "volume_type": "sbs_snapshot", "size": 0 })
    };
    Some(json!({
        "id": id, "name": image.name, "arch": arch,
        "organization": "51b656e3-4865-41e8-adbc-0c45bdd780db",
        "project": "51b656e3-4865-41e8-adbc-0c45bdd780db",
        "root_volume": root, "extra_volumes": {}, "public": true,
        "creation_date": "2025-07-22T09:11:39.995342+00:00",
        "modification_date": "2025-07-22T09:11:39.995342+00:00",
        "default_bootscript": null, "from_server": "", "state": "available", "tags": [],
        "zone": zone,
    }))
}

/// The snapshot `id` if it is the x86-64 root snapshot of some image in `zone` whose
/// root volumes are `volume_type`.
fn known_root_snapshot(zone: &str, volume_type: &str, id: &str) -> bool {
    IMAGES
        .iter()
        .any(|i| image_root_snapshot(i.label, zone, volume_type) == id)
}

// ---------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------

struct Transition {
    finish_at: Instant,
    /// The state reached.
    to: String,
    /// The state returned to when the action fails, with the failure's detail.
    failure: Option<(String, String)>,
    /// `terminate`: the server is deleted when done.
    delete: bool,
}

struct World {
    next_id: u64,
    servers: BTreeMap<String, FakeServer>,
    volumes: BTreeMap<String, FakeVolume>,
    groups: BTreeMap<String, FakeSecurityGroup>,
    ssh_keys: BTreeMap<String, FakeSshKey>,
    dns: BTreeMap<String, FakeDnsZone>,
    transitions: BTreeMap<String, Transition>,
    forced_locks: BTreeSet<String>,
    action_failures: Vec<(String, String)>,
    action_duration: Duration,
    detach_delay: Duration,
    fixed_ipv4: Option<String>,
    /// Firewall enforcement: new servers get a gated loopback address instead.
    gate: Option<(Arc<crate::gate::Gates>, crate::gate::Verdict)>,
}

impl World {
    fn new() -> Self {
        Self {
            next_id: 1,
            servers: BTreeMap::new(),
            volumes: BTreeMap::new(),
            groups: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            dns: BTreeMap::new(),
            transitions: BTreeMap::new(),
            forced_locks: BTreeSet::new(),
            action_failures: Vec::new(),
            action_duration: DEFAULT_ACTION_DURATION,
            detach_delay: Duration::ZERO,
            fixed_ipv4: None,
            gate: None,
        }
    }

    /// Whether a TCP connection from `from` to `port` of the server at `addr` gets
    /// through its security group (see [`ScalewayFake::enforce_firewalls`]).
    fn allows(&self, addr: &str, port: u16, from: std::net::IpAddr) -> bool {
        let Some(server) = self
            .servers
            .values()
            .find(|s| s.ipv4.as_deref() == Some(addr))
        else {
            return false;
        };
        let Some(group) = self.groups.get(&server.security_group) else {
            return true;
        };
        let mut rules: Vec<&Value> = group.rules.iter().collect();
        rules.sort_by_key(|r| r.get("position").and_then(Value::as_u64).unwrap_or(0));
        for r in rules {
            let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let p = |k: &str| r.get(k).and_then(Value::as_u64);
            let in_ports = match (p("dest_port_from"), p("dest_port_to")) {
                (None, _) => true,
                (Some(a), None) => u64::from(port) == a,
                (Some(a), Some(b)) => (a..=b).contains(&u64::from(port)),
            };
            if text("direction") == "inbound"
                && matches!(text("protocol"), "TCP" | "ANY")
                && in_ports
                && crate::gate::covers(text("ip_range"), from)
            {
                return text("action") == "accept";
            }
        }
        group.project_default
    }

    fn uuid(&mut self) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!(
            "{:08x}-{:04x}-4{:03x}-8000-{:012x}",
            0x5c0a_0000u64 + n,
            n % 0xffff,
            n % 0xfff,
            n
        )
    }

    fn tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .transitions
            .iter()
            .filter(|(_, t)| t.finish_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(t) = self.transitions.remove(&id) else {
                continue;
            };
            if t.delete && t.failure.is_none() {
                self.remove_server(&id, true);
                continue;
            }
            if let Some(s) = self.servers.get_mut(&id) {
                match t.failure {
                    Some((back, detail)) => {
                        s.state = back;
                        s.state_detail = detail;
                    }
                    None => {
                        s.state = t.to;
                        s.state_detail = match s.state.as_str() {
                            "running" => "booted".into(),
                            _ => String::new(),
                        };
                    }
                }
            }
        }
    }

    /// Delete a server; `with_local` also deletes its `l_ssd` volumes (terminate),
    /// otherwise every volume stays, detached.
    fn remove_server(&mut self, id: &str, with_local: bool) {
        self.transitions.remove(id);
        if self.servers.remove(id).is_none() {
            return;
        }
        let ids: Vec<String> = self
            .volumes
            .values()
            .filter(|v| v.server.as_deref() == Some(id))
            .map(|v| v.id.clone())
            .collect();
        for vid in ids {
            let local = self
                .volumes
                .get(&vid)
                .is_some_and(|v| v.volume_type == "l_ssd");
            if with_local && local {
                self.volumes.remove(&vid);
            } else if let Some(v) = self.volumes.get_mut(&vid) {
                v.server = None;
                if !self.detach_delay.is_zero() {
                    v.busy_until = Some(Instant::now() + self.detach_delay);
                }
            }
        }
    }

    /// The project's default group in `zone`, created on first use as Scaleway does.
    fn default_group(&mut self, zone: &str, project: &str) -> String {
        if let Some(g) = self
            .groups
            .values()
            .find(|g| g.zone == zone && g.project == project && g.project_default)
        {
            return g.id.clone();
        }
        let id = self.uuid();
        self.groups.insert(
            id.clone(),
            FakeSecurityGroup {
                id: id.clone(),
                zone: zone.to_string(),
                project: project.to_string(),
                name: "Default security group".into(),
                description: "Auto generated security group.".into(),
                tags: Vec::new(),
                project_default: true,
                rules: Vec::new(),
            },
        );
        id
    }

    fn new_server(
        &mut self,
        zone: &str,
        project: &str,
        name: &str,
        commercial_type: &str,
        image: &str,
        tags: Vec<String>,
    ) -> String {
        let id = self.uuid();
        let n = self.next_id;
        let volume_type = server_type(commercial_type, zone).map_or("sbs_volume", |t| t.volume);
        let vid = self.uuid();
        let image_name = IMAGES
            .iter()
            .find(|i| i.label == image || image_uuid(i.label) == image)
            .map_or("Image", |i| i.name);
        self.volumes.insert(
            vid.clone(),
            FakeVolume {
                id: vid.clone(),
                zone: zone.to_string(),
                name: if volume_type == "l_ssd" {
                    image_name.to_string()
                } else {
                    format!("{image_name}_sbs_volume_0")
                },
                project: project.to_string(),
                volume_type: volume_type.to_string(),
                size: 20_000_000_000,
                tags: Vec::new(),
                base_snapshot: Some(image_root_snapshot(image, zone, volume_type)),
                perf_iops: (volume_type == "sbs_volume").then_some(5000),
                server: Some(id.clone()),
                busy_until: None,
                ready_at: None,
            },
        );
        let group = self.default_group(zone, project);
        let gated = self
            .gate
            .as_ref()
            .map(|(gates, verdict)| gates.open(verdict.clone()).to_string());
        let ipv4 = gated
            .or_else(|| self.fixed_ipv4.clone())
            .unwrap_or_else(|| format!("51.15.{}.{}", (n / 250) % 250, n % 250 + 2));
        self.servers.insert(
            id.clone(),
            FakeServer {
                id: id.clone(),
                zone: zone.to_string(),
                project: project.to_string(),
                name: name.to_string(),
                state: "stopped".into(),
                state_detail: String::new(),
                commercial_type: commercial_type.to_string(),
                image: image.to_string(),
                tags,
                ipv4: Some(ipv4),
                ipv6: Some(format!("2001:bc8:1234:{n:x}::1")),
                security_group: group,
                volumes: vec![vid],
                boot_type: "local".into(),
            },
        );
        id
    }

    fn locked(&self, id: &str) -> bool {
        self.forced_locks.contains(id) || self.transitions.contains_key(id)
    }

    // ----- JSON ----------------------------------------------------------------------

    fn server_json(&self, s: &FakeServer) -> Value {
        let group_name = self
            .groups
            .get(&s.security_group)
            .map(|g| g.name.clone())
            .unwrap_or_default();
        let volumes: Map<String, Value> = s
            .volumes
            .iter()
            .enumerate()
            .filter_map(|(i, vid)| {
                let v = self.volumes.get(vid)?;
                Some((
                    i.to_string(),
                    if v.volume_type == "sbs_volume" {
                        json!({ "id": v.id, "volume_type": v.volume_type, "boot": false,
                                "zone": v.zone })
                    } else {
                        json!({ "id": v.id, "name": v.name, "volume_type": v.volume_type,
                                "size": v.size, "state": "available", "boot": false,
                                "export_uri": null, "organization": v.project,
                                "project": v.project, "tags": v.tags,
                                "server": { "id": s.id, "name": s.name }, "zone": v.zone })
                    },
                ))
            })
            .collect();
        let allowed: Vec<&str> = match s.state.as_str() {
            "running" => vec!["poweroff", "stop_in_place", "reboot", "backup", "terminate"],
            "stopped" | "stopped in place" => vec!["poweron", "backup"],
            _ => vec![],
        };
        let ip = |addr: &Option<String>, family: &str| {
            addr.as_ref().map(|a| {
                json!({ "id": format!("ip-{}", s.id), "address": a, "family": family,
                        "dynamic": false, "provisioning_mode": "dhcp", "state": "attached" })
            })
        };
        let public_ips: Vec<Value> = [ip(&s.ipv4, "inet"), ip(&s.ipv6, "inet6")]
            .into_iter()
            .flatten()
            .collect();
        json!({
            "id": s.id,
            "name": s.name,
            "organization": s.project,
            "project": s.project,
            "allowed_actions": allowed,
            "tags": s.tags,
            "commercial_type": s.commercial_type,
            "creation_date": "2026-01-01T00:00:00.000000+00:00",
            "dynamic_ip_required": true,
            "routed_ip_enabled": true,
            "enable_ipv6": false,
            "hostname": s.name,
            "image": self.server_image_json(s),
            "protected": false,
            "private_ip": null,
            "public_ip": ip(&s.ipv4, "inet"),
            "public_ips": public_ips,
            "mac_address": "de:00:00:00:00:01",
            "state": s.state,
            "state_detail": s.state_detail,
            "ipv6": null,
            "boot_type": s.boot_type,
            "volumes": volumes,
            "security_group": { "id": s.security_group, "name": group_name },
            "maintenances": [],
            "arch": "x86_64",
            "placement_group": null,
            "private_nics": [],
            "zone": s.zone,
            "end_of_service": false,
        })
    }

    /// The image a server was created from: Scaleway keeps reporting it after the root
    /// volume is replaced.
    fn server_image_json(&self, s: &FakeServer) -> Value {
        let kind = if server_type(&s.commercial_type, &s.zone).is_some_and(|t| t.volume == "l_ssd")
        {
            "instance_local"
        } else {
            "instance_sbs"
        };
        let id = local_image_id(&s.image, &s.zone, kind, "x86_64");
        instance_image_json(&s.zone, &id).unwrap_or_else(|| {
            json!({ "id": image_uuid(&s.image), "name": "", "arch": "x86_64", "public": true,
                    "state": "available", "zone": s.zone })
        })
    }

    fn instance_volume_json(&self, v: &FakeVolume) -> Value {
        let server = v.server.as_ref().and_then(|id| self.servers.get(id));
        let state = if v.ready(Instant::now()) {
            "available"
        } else {
            "fetching"
        };
        json!({
            "id": v.id, "name": v.name, "export_uri": null, "size": v.size,
            "volume_type": v.volume_type,
            "creation_date": "2026-01-01T00:00:00.000000+00:00",
            "modification_date": "2026-01-01T00:00:00.000000+00:00",
            "organization": v.project, "project": v.project, "tags": v.tags,
            "server": server.map(|s| json!({ "id": s.id, "name": s.name })),
            "state": state, "zone": v.zone,
        })
    }

    fn block_volume_json(&self, v: &FakeVolume) -> Value {
        let now = Instant::now();
        let detaching = v.server.is_none() && v.busy_until.is_some_and(|t| t > now);
        let references: Vec<Value> = match (&v.server, detaching) {
            (Some(server), _) => vec![json!({
                "id": format!("ref-{}", v.id), "product_resource_type": "instance_server",
                "product_resource_id": server, "created_at": "2026-01-01T00:00:00Z",
                "type": "exclusive", "status": "attached" })],
            (None, true) => vec![json!({
                "id": format!("ref-{}", v.id), "product_resource_type": "instance_server",
                "product_resource_id": "", "created_at": "2026-01-01T00:00:00Z",
                "type": "exclusive", "status": "detaching" })],
            (None, false) => Vec::new(),
        };
        let status = if !v.ready(now) {
            "creating"
        } else if v.server.is_some() || detaching {
            "in_use"
        } else {
            "available"
        };
        let iops = v.perf_iops.unwrap_or(5000);
        json!({
            "id": v.id, "name": v.name,
            "type": if iops >= 15000 { "sbs_15k" } else { "sbs_5k" },
            "size": v.size, "project_id": v.project,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "references": references, "parent_snapshot_id": v.base_snapshot,
            "status": status, "tags": v.tags,
            "specs": { "perf_iops": iops, "class": "sbs" },
            "last_detached_at": null, "zone": v.zone,
        })
    }

    fn group_json(&self, g: &FakeSecurityGroup) -> Value {
        let servers: Vec<Value> = self
            .servers
            .values()
            .filter(|s| s.security_group == g.id)
            .map(|s| json!({ "id": s.id, "name": s.name }))
            .collect();
        json!({
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "enable_default_security": true,
            "inbound_default_policy": if g.project_default { "accept" } else { "drop" },
            "outbound_default_policy": "accept",
            "organization": g.project,
            "project": g.project,
            "tags": g.tags,
            "organization_default": false,
            "project_default": g.project_default,
            "creation_date": "2026-01-01T00:00:00.000000+00:00",
            "modification_date": "2026-01-01T00:00:00.000000+00:00",
            "servers": servers,
            "stateful": true,
            "state": "available",
            "zone": g.zone,
        })
    }

    // ----- routing -------------------------------------------------------------------

    fn route(&mut self, method: &str, seg: &[&str], q: &Query, body: &Value) -> ApiResult {
        match seg {
            ["instance", "v1", "zones", zone, rest @ ..] => {
                if !ZONES.contains(zone) {
                    return Err(ApiError::argument(
                        "zone",
                        "unknown",
                        &format!("unknown zone {zone}"),
                    ));
                }
                self.instance(method, zone, rest, q, body)
            }
            ["block", "v1", "zones", zone, "volumes"] if ZONES.contains(zone) => match method {
                "GET" => {
                    let tags = q.tags();
                    let items: Vec<Value> = self
                        .volumes
                        .values()
                        .filter(|v| v.zone == *zone && v.volume_type == "sbs_volume")
                        .filter(|v| q.get("project_id").is_none_or(|p| v.project == p))
                        .filter(|v| q.get("name").is_none_or(|n| v.name.contains(n)))
                        // Block Storage: volumes with one or more of the tags.
                        .filter(|v| tags.is_empty() || tags.iter().any(|t| v.tags.contains(t)))
                        .filter(|v| {
                            q.get("product_resource_id")
                                .is_none_or(|r| v.server.as_deref() == Some(r))
                        })
                        .map(|v| self.block_volume_json(v))
                        .collect();
                    standard_page("volumes", items, q)
                }
                "POST" => self.create_block_volume(zone, body),
                _ => Err(ApiError::method()),
            },
            ["block", "v1", "zones", zone, "volumes", id] => match method {
                "GET" => match self
                    .volumes
                    .get(*id)
                    .filter(|v| v.zone == *zone && v.volume_type == "sbs_volume")
                {
                    Some(v) => Ok(Answer::json(200, self.block_volume_json(v))),
                    None => Err(ApiError::not_found("volume", id)),
                },
                "DELETE" => self.delete_volume(zone, id, "sbs_volume"),
                _ => Err(ApiError::method()),
            },
            ["marketplace", "v2", "local-images"] if method == "GET" => {
                let zone = q.get("zone").unwrap_or("fr-par-1");
                let kind = q.get("type").filter(|t| *t != "unknown_type");
                let items: Vec<Value> = local_images(zone)
                    .into_iter()
                    .filter(|(_, i, ..)| q.get("image_label").is_none_or(|l| i.label == l))
                    .filter(|(_, _, k, _)| kind.is_none_or(|t| *k == t))
                    .map(|(id, i, k, a)| local_image_json(&id, i, zone, k, a))
                    .collect();
                standard_page("local_images", items, q)
            }
            ["marketplace", "v2", "local-images", id] if method == "GET" => ZONES
                .iter()
                .flat_map(|z| local_images(z).into_iter().map(move |l| (*z, l)))
                .find(|(_, (i, ..))| i == id)
                .map(|(z, (i, image, k, a))| {
                    Answer::json(200, local_image_json(&i, image, z, k, a))
                })
                .ok_or_else(|| ApiError::not_found("local_image", id)),
            ["marketplace", "v2", "images"] if method == "GET" => {
                let eol = q.get("include_eol") == Some("true");
                let now = now_rfc3339();
                let items: Vec<Value> = IMAGES
                    .iter()
                    .filter(|i| eol || i.valid_until.is_none_or(|u| u[..19] > *now))
                    .map(|i| {
                        json!({ "id": image_uuid(i.label), "name": i.name, "label": i.label,
                                     "description": "", "categories": ["distribution"],
                                     "valid_until": i.valid_until })
                    })
                    .collect();
                standard_page("images", items, q)
            }
            ["iam", "v1alpha1", "ssh-keys", rest @ ..] => self.iam(method, rest, q, body),
            ["domain", "v2beta1", "dns-zones", rest @ ..] => self.domain(method, rest, q, body),
            _ => Err(ApiError::route()),
        }
    }

    fn instance(
        &mut self,
        method: &str,
        zone: &str,
        seg: &[&str],
        q: &Query,
        body: &Value,
    ) -> ApiResult {
        match (method, seg) {
            ("GET", ["products", "servers"]) => {
                let mut map = Map::new();
                let all: Vec<(&str, Value)> = TYPES
                    .iter()
                    .filter(|t| t.zones.is_empty() || t.zones.contains(&zone))
                    .map(|t| (t.name, json!({
                        "monthly_price": t.hourly * 730.0,
                        "hourly_price": t.hourly,
                        "alt_names": [],
                        "per_volume_constraint": { "l_ssd": { "min_size": 1_000_000_000u64, "max_size": 20_000_000_000u64 } },
                        "volumes_constraint": { "min_size": if t.volume == "l_ssd" { 20_000_000_000u64 } else { 0 }, "max_size": 20_000_000_000u64 },
                        "ncpus": t.ncpus,
                        "gpu": 0,
                        "ram": t.ram_gib * 1024 * 1024 * 1024,
                        "arch": t.arch,
                        "network": { "sum_internal_bandwidth": 300_000_000u64 },
                        "capabilities": { "block_storage": true, "boot_types": ["local", "rescue"] },
                        "end_of_service": t.end_of_service,
                    })))
                    .collect();
                let page = q.number("page", 1, usize::MAX)?;
                let per_page = q.number("per_page", 50, 100)?;
                let total = all.len();
                for (name, v) in all.into_iter().skip((page - 1) * per_page).take(per_page) {
                    map.insert(name.to_string(), v);
                }
                Ok(Answer {
                    status: 200,
                    body: Some(json!({ "servers": map })),
                    total: Some(total),
                })
            }
            ("GET", ["products", "servers", "availability"]) => {
                let map: Map<String, Value> = TYPES
                    .iter()
                    .filter(|t| t.zones.is_empty() || t.zones.contains(&zone))
                    .map(|t| {
                        let a = if t.shortage.contains(&zone) {
                            "shortage"
                        } else {
                            "available"
                        };
                        (t.name.to_string(), json!({ "availability": a }))
                    })
                    .collect();
                let total = map.len();
                Ok(Answer {
                    status: 200,
                    body: Some(json!({ "servers": map })),
                    total: Some(total),
                })
            }
            ("GET", ["servers"]) => {
                let tags = q.tags();
                let items: Vec<Value> = self
                    .servers
                    .values()
                    .filter(|s| s.zone == zone)
                    .filter(|s| q.get("project").is_none_or(|p| s.project == p))
                    .filter(|s| q.get("name").is_none_or(|n| s.name.contains(n)))
                    .filter(|s| tags.iter().all(|t| s.tags.contains(t)))
                    .map(|s| self.server_json(s))
                    .collect();
                instance_page("servers", items, q)
            }
            ("POST", ["servers"]) => self.create_server(zone, body),
            (_, ["servers", id]) => self.server_item(method, zone, id, body),
            ("POST", ["servers", id, "action"]) => self.server_action(zone, id, body),
            (_, ["servers", _, "action"]) => Err(ApiError::method()),
            ("GET", ["images", id]) => match instance_image_json(zone, id) {
                Some(image) => Ok(Answer::json(200, json!({ "image": image }))),
                None => Err(ApiError::unknown("Image", id)),
            },
            ("GET", ["volumes"]) => {
                let tags = q.tags();
                let items: Vec<Value> = self
                    .volumes
                    .values()
                    .filter(|v| v.zone == zone && v.volume_type == "l_ssd")
                    .filter(|v| q.get("project").is_none_or(|p| v.project == p))
                    .filter(|v| q.get("name").is_none_or(|n| v.name.contains(n)))
                    .filter(|v| tags.iter().all(|t| v.tags.contains(t)))
                    .filter(|v| q.get("volume_type").is_none_or(|t| v.volume_type == t))
                    .map(|v| self.instance_volume_json(v))
                    .collect();
                instance_page("volumes", items, q)
            }
            ("POST", ["volumes"]) => self.create_instance_volume(zone, body),
            ("GET", ["volumes", id]) => match self
                .volumes
                .get(*id)
                .filter(|v| v.zone == zone && v.volume_type == "l_ssd")
            {
                Some(v) => Ok(Answer::json(
                    200,
                    json!({ "volume": self.instance_volume_json(v) }),
                )),
                None => Err(ApiError::not_found("instance_volume", id)),
            },
            ("DELETE", ["volumes", id]) => self.delete_volume(zone, id, "l_ssd"),
            ("GET", ["security_groups"]) => {
                let tags = q.tags();
                let project = q.get("project").unwrap_or(PROJECT).to_string();
                // Scaleway makes each project's default group per zone.
                self.default_group(zone, &project);
                let items: Vec<Value> = self
                    .groups
                    .values()
                    .filter(|g| g.zone == zone)
                    .filter(|g| q.get("project").is_none_or(|p| g.project == p))
                    .filter(|g| q.get("name").is_none_or(|n| g.name.contains(n)))
                    .filter(|g| {
                        q.get("project_default")
                            .is_none_or(|d| (d == "true") == g.project_default)
                    })
                    .filter(|g| tags.iter().all(|t| g.tags.contains(t)))
                    .map(|g| self.group_json(g))
                    .collect();
                instance_page("security_groups", items, q)
            }
            ("POST", ["security_groups"]) => self.create_group(zone, body),
            (_, ["security_groups", id]) => self.group_item(method, zone, id, body),
            (_, ["security_groups", id, "rules"]) => self.group_rules(method, zone, id, q, body),
            _ => Err(ApiError::route()),
        }
    }

    fn create_server(&mut self, zone: &str, body: &Value) -> ApiResult {
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let name = text("name");
        let commercial_type = text("commercial_type");
        let image = text("image");
        let project = text("project");
        if commercial_type.is_empty() {
            return Err(ApiError::argument("commercial_type", "required", ""));
        }
        if project.is_empty() {
            return Err(ApiError::argument("project", "required", ""));
        }
        let Some(t) = server_type(&commercial_type, zone) else {
            return Err(ApiError::field(
                "commercial_type",
                &format!("'{commercial_type}' is not a valid commercial type in {zone}"),
            ));
        };
        if t.end_of_service {
            return Err(ApiError::field(
                "commercial_type",
                &format!("'{commercial_type}' has reached its end of service"),
            ));
        }
        if t.shortage.contains(&zone) {
            return Err(ApiError {
                status: 412,
                body: json!({ "type": "out_of_stock", "resource": commercial_type,
                              "message": format!("{commercial_type} is out of stock in {zone}") }),
            });
        }
        let local = local_images(zone).into_iter().find(|(id, ..)| *id == image);
        let image = match &local {
            Some((_, i, _, _)) => i.label.to_string(),
            None => image,
        };
        let valid_image = IMAGES.iter().any(|i| i.label == image)
            || IMAGES.iter().any(|i| image_uuid(i.label) == image);
        if !valid_image {
            return Err(ApiError::argument(
                "image",
                "constraint",
                &format!("no image with label or id {image:?} in {zone}"),
            ));
        }
        let tags: Vec<String> = match body.get("tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for t in a {
                    match t.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => return Err(ApiError::field("tags", "must be a list of strings")),
                    }
                }
                out
            }
            Some(_) => return Err(ApiError::field("tags", "must be a list of strings")),
        };
        let name = if name.is_empty() {
            "srv-fake".to_string()
        } else {
            name
        };
        let id = self.new_server(zone, &project, &name, &commercial_type, &image, tags);
        if let Some(sg) = body.get("security_group").and_then(Value::as_str) {
            match self.groups.get(sg) {
                Some(g) if g.zone == zone => {
                    if let Some(s) = self.servers.get_mut(&id) {
                        s.security_group = sg.to_string();
                    }
                }
                _ => {
                    self.remove_server(&id, true);
                    return Err(ApiError::unknown("Security group", sg));
                }
            }
        }
        let s = &self.servers[&id];
        Ok(Answer::json(201, json!({ "server": self.server_json(s) })))
    }

    fn server_item(&mut self, method: &str, zone: &str, id: &str, body: &Value) -> ApiResult {
        let Some(s) = self.servers.get(id).filter(|s| s.zone == zone) else {
            return Err(ApiError::not_found("instance_server", id));
        };
        match method {
            "GET" => Ok(Answer::json(200, json!({ "server": self.server_json(s) }))),
            "PATCH" => {
                if self.locked(id) {
                    return Err(ApiError::transient(id, &s.state));
                }
                let mut s = s.clone();
                if let Some(name) = body.get("name").and_then(Value::as_str) {
                    s.name = name.to_string();
                }
                if let Some(tags) = body.get("tags").and_then(Value::as_array) {
                    s.tags = tags
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                }
                if let Some(sg) = body.get("security_group") {
                    let sg_id = sg.get("id").and_then(Value::as_str).unwrap_or("");
                    match self.groups.get(sg_id) {
                        Some(g) if g.zone == zone => s.security_group = sg_id.to_string(),
                        _ => return Err(ApiError::unknown("Security group", sg_id)),
                    }
                }
                let detached = match body.get("volumes") {
                    Some(volumes) => {
                        let (list, detached) = self.server_volumes(&s, zone, volumes)?;
                        s.volumes = list;
                        detached
                    }
                    None => Vec::new(),
                };
                let now = Instant::now();
                for vid in &s.volumes {
                    if let Some(v) = self.volumes.get_mut(vid) {
                        v.server = Some(id.to_string());
                    }
                }
                for vid in detached {
                    if let Some(v) = self.volumes.get_mut(&vid) {
                        v.server = None;
                        if v.volume_type == "sbs_volume" && !self.detach_delay.is_zero() {
                            v.busy_until = Some(now + self.detach_delay);
                        }
                    }
                }
                self.servers.insert(id.to_string(), s.clone());
                Ok(Answer::json(200, json!({ "server": self.server_json(&s) })))
            }
            "DELETE" => {
                if self.locked(id) {
                    return Err(ApiError::transient(id, &s.state));
                }
                if !matches!(s.state.as_str(), "stopped" | "stopped in place") {
                    return Err(ApiError::old(
                        400,
                        "invalid_request_error",
                        "instance should be powered off.",
                    ));
                }
                self.remove_server(id, false);
                Ok(Answer::empty(204))
            }
            _ => Err(ApiError::method()),
        }
    }

    fn server_action(&mut self, zone: &str, id: &str, body: &Value) -> ApiResult {
        let Some(s) = self.servers.get(id).filter(|s| s.zone == zone).cloned() else {
            return Err(ApiError::not_found("instance_server", id));
        };
        let action = body
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("poweron");
        if self.locked(id) {
            return Err(ApiError::transient(id, &s.state));
        }
        let stopped = matches!(s.state.as_str(), "stopped" | "stopped in place");
        let (during, to, delete) = match (action, s.state.as_str()) {
            ("poweron", _) if stopped => ("starting", "running", false),
            ("poweroff", "running") => ("stopping", "stopped", false),
            ("stop_in_place", "running") => ("stopping", "stopped in place", false),
            ("reboot", "running") => ("running", "running", false),
            ("terminate", "running") => ("stopping", "stopped", true),
            (
                "poweron" | "poweroff" | "stop_in_place" | "reboot" | "terminate" | "backup",
                state,
            ) => {
                return Err(ApiError::old(
                    400,
                    "invalid_request_error",
                    &format!("action {action} is not allowed in state {state}"),
                ));
            }
            (other, _) => {
                return Err(ApiError::argument(
                    "action",
                    "constraint",
                    &format!("unknown action {other:?}"),
                ));
            }
        };
        let failure = self
            .action_failures
            .iter()
            .position(|(a, _)| a.is_empty() || a == action)
            .map(|i| self.action_failures.remove(i))
            .map(|(_, detail)| (s.state.clone(), detail));
        let task_id = self.uuid();
        if let Some(server) = self.servers.get_mut(id) {
            server.state = during.to_string();
            server.state_detail = if action == "reboot" {
                "rebooting".into()
            } else {
                String::new()
            };
        }
        self.transitions.insert(
            id.to_string(),
            Transition {
                finish_at: Instant::now() + self.action_duration,
                to: to.to_string(),
                failure,
                delete,
            },
        );
        Ok(Answer::json(
            202,
            json!({ "task": { "id": task_id, "description": format!("server_{action}"),
                              "status": "pending", "progress": 0,
                              "href_from": format!("/servers/{id}/action"),
                              "href_result": format!("/servers/{id}"),
                              "started_at": "2026-01-01T00:00:00.000000+00:00",
                              "terminated_at": null, "zone": zone } }),
        ))
    }

    /// The volume list a `volumes` map of `PATCH …/servers/{id}` gives `s`, and the
    /// volumes it detaches. Only a stopped server's volumes change; every template names
    /// an existing volume of the zone (by `id`), available and attached to no other
    /// server; index `0`, the root, is required.
    fn server_volumes(
        &self,
        s: &FakeServer,
        zone: &str,
        volumes: &Value,
    ) -> Result<(Vec<String>, Vec<String>), ApiError> {
        if s.state != "stopped" {
            return Err(ApiError::old(
                400,
                "invalid_request_error",
                "The server must be stopped to change its volumes.",
            ));
        }
        let Some(map) = volumes.as_object() else {
            return Err(ApiError::field(
                "volumes",
                "must be a map of volume templates",
            ));
        };
        let mut indexed: Vec<(usize, String)> = Vec::new();
        for (key, template) in map {
            let Ok(index) = key.parse::<usize>() else {
                return Err(ApiError::field(
                    "volumes",
                    &format!("{key:?} is not an index"),
                ));
            };
            let Some(vid) = template.get("id").and_then(Value::as_str) else {
                return Err(ApiError::argument(
                    "volumes.id",
                    "required",
                    "the fake attaches existing volumes only",
                ));
            };
            let Some(v) = self.volumes.get(vid).filter(|v| v.zone == zone) else {
                return Err(ApiError::unknown("Volume", vid));
            };
            if v.server.as_deref().is_some_and(|other| other != s.id) {
                return Err(ApiError::old(
                    400,
                    "invalid_request_error",
                    &format!("volume {vid} is already attached to another server"),
                ));
            }
            if !v.ready(Instant::now()) {
                return Err(ApiError::old(
                    400,
                    "invalid_request_error",
                    &format!("volume {vid} is not available yet"),
                ));
            }
            if indexed.iter().any(|(_, other)| other == vid) {
                return Err(ApiError::field(
                    "volumes",
                    &format!("volume {vid} is listed twice"),
                ));
            }
            indexed.push((index, vid.to_string()));
        }
        indexed.sort();
        if indexed.first().is_none_or(|(i, _)| *i != 0) {
            return Err(ApiError::field(
                "volumes",
                "a root volume (index 0) is required",
            ));
        }
        let list: Vec<String> = indexed.into_iter().map(|(_, v)| v).collect();
        let detached = s
            .volumes
            .iter()
            .filter(|v| !list.contains(v))
            .cloned()
            .collect();
        Ok((list, detached))
    }

    fn string_list(body: &Value, key: &str) -> Result<Vec<String>, ApiError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::field(key, "must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(ApiError::field(key, "must be a list of strings")),
        }
    }

    /// `POST /instance/v1/zones/{zone}/volumes`: an `l_ssd` volume, empty (`size`) or
    /// from a snapshot (`base_snapshot`, the size taken from it): precisely one of them.
    fn create_instance_volume(&mut self, zone: &str, body: &Value) -> ApiResult {
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(project) = text("project").or_else(|| text("organization")) else {
            return Err(ApiError::argument("project", "required", ""));
        };
        let volume_type = text("volume_type").unwrap_or_else(|| "l_ssd".into());
        if volume_type != "l_ssd" {
            return Err(ApiError::argument(
                "volume_type",
                "constraint",
                "only l_ssd volumes are made here; Block Storage volumes are made with the \
                 Block Storage API",
            ));
        }
        let size = body.get("size").and_then(Value::as_u64);
        let snapshot = text("base_snapshot");
        let (size, base_snapshot, ready_at) = match (size, snapshot) {
            (Some(size), None) if size > 0 && size % 512 == 0 => (size, None, None),
            (Some(_), None) => {
                return Err(ApiError::argument(
                    "size",
                    "constraint",
                    "a multiple of 512",
                ));
            }
            (None, Some(snap)) => {
                if !known_root_snapshot(zone, "l_ssd", &snap) {
                    return Err(ApiError::unknown("Snapshot", &snap));
                }
                let ready = Instant::now() + self.action_duration;
                (IMAGE_ROOT_SIZE, Some(snap), Some(ready))
            }
            _ => {
                return Err(ApiError::argument(
                    "size",
                    "constraint",
                    "precisely one of size, base_snapshot must be set",
                ));
            }
        };
        let id = self.uuid();
        let volume = FakeVolume {
            id: id.clone(),
            zone: zone.to_string(),
            name: text("name").unwrap_or_else(|| format!("vol-{}", &id[..8])),
            project,
            volume_type,
            size,
            tags: Self::string_list(body, "tags")?,
            base_snapshot,
            perf_iops: None,
            server: None,
            busy_until: None,
            ready_at,
        };
        let json = self.instance_volume_json(&volume);
        self.volumes.insert(id, volume);
        Ok(Answer::json(201, json!({ "volume": json })))
    }

    /// `POST /block/v1/zones/{zone}/volumes`: precisely one of `from_empty` and
    /// `from_snapshot` (its `size` optional, never below the snapshot's); `perf_iops`
    /// 5000 or 15000.
    fn create_block_volume(&mut self, zone: &str, body: &Value) -> ApiResult {
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(project) = text("project_id") else {
            return Err(ApiError::argument("project_id", "required", ""));
        };
        let iops = match body.get("perf_iops") {
            None | Some(Value::Null) => 5000,
            Some(v) => match v.as_u64() {
                Some(n @ (5000 | 15000)) => n,
                _ => {
                    return Err(ApiError::argument(
                        "perf_iops",
                        "constraint",
                        "5000 or 15000",
                    ));
                }
            },
        };
        let from_empty = body.get("from_empty").filter(|v| !v.is_null());
        let from_snapshot = body.get("from_snapshot").filter(|v| !v.is_null());
        let (size, base_snapshot, ready_at) = match (from_empty, from_snapshot) {
            (Some(e), None) => match e.get("size").and_then(Value::as_u64) {
                Some(size) if size >= 1_000_000_000 => (size, None, None),
                _ => {
                    return Err(ApiError::argument(
                        "from_empty.size",
                        "constraint",
                        "at least 1 GB",
                    ));
                }
            },
            (None, Some(f)) => {
                let snap = f
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if !known_root_snapshot(zone, "sbs_volume", &snap) {
                    return Err(ApiError::not_found("snapshot", &snap));
                }
                let size = match f.get("size") {
                    None | Some(Value::Null) => IMAGE_ROOT_SIZE,
                    Some(v) => match v.as_u64() {
                        Some(size) if size >= IMAGE_ROOT_SIZE => size,
                        _ => {
                            return Err(ApiError::argument(
                                "from_snapshot.size",
                                "constraint",
                                "must not be below the snapshot's size",
                            ));
                        }
                    },
                };
                (
                    size,
                    Some(snap),
                    Some(Instant::now() + self.action_duration),
                )
            }
            _ => {
                return Err(ApiError::argument(
                    "from_empty",
                    "constraint",
                    "precisely one of from_empty, from_snapshot must be set",
                ));
            }
        };
        let id = self.uuid();
        let volume = FakeVolume {
            id: id.clone(),
            zone: zone.to_string(),
            name: text("name").unwrap_or_default(),
            project,
            volume_type: "sbs_volume".into(),
            size,
            tags: Self::string_list(body, "tags")?,
            base_snapshot,
            perf_iops: Some(iops),
            server: None,
            busy_until: None,
            ready_at,
        };
        let json = self.block_volume_json(&volume);
        self.volumes.insert(id, volume);
        Ok(Answer::json(200, json))
    }

    fn delete_volume(&mut self, zone: &str, id: &str, volume_type: &str) -> ApiResult {
        let Some(v) = self
            .volumes
            .get(id)
            .filter(|v| v.zone == zone && v.volume_type == volume_type)
        else {
            let resource = if volume_type == "l_ssd" {
                "instance_volume"
            } else {
                "volume"
            };
            return Err(ApiError::not_found(resource, id));
        };
        if v.server.is_some() || v.busy_until.is_some_and(|t| t > Instant::now()) {
            return Err(ApiError {
                status: 412,
                body: json!({ "type": "precondition_failed", "precondition": "resource_still_in_use",
                              "help_message": "the volume is attached to a server",
                              "message": "precondition failed" }),
            });
        }
        self.volumes.remove(id);
        Ok(Answer::empty(204))
    }

    fn create_group(&mut self, zone: &str, body: &Value) -> ApiResult {
        let text = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let name = text("name");
        let project = text("project");
        if name.is_empty() {
            return Err(ApiError::argument("name", "required", ""));
        }
        if project.is_empty() {
            return Err(ApiError::argument("project", "required", ""));
        }
        let tags: Vec<String> = body
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let id = self.uuid();
        let g = FakeSecurityGroup {
            id: id.clone(),
            zone: zone.to_string(),
            project,
            name,
            description: text("description"),
            tags,
            project_default: false,
            rules: Vec::new(),
        };
        let json = self.group_json(&g);
        self.groups.insert(id, g);
        Ok(Answer::json(201, json!({ "security_group": json })))
    }

    fn group_item(&mut self, method: &str, zone: &str, id: &str, body: &Value) -> ApiResult {
        let Some(g) = self.groups.get(id).filter(|g| g.zone == zone).cloned() else {
            return Err(ApiError::unknown("Security group", id));
        };
        match method {
            "GET" => Ok(Answer::json(
                200,
                json!({ "security_group": self.group_json(&g) }),
            )),
            "PATCH" => {
                let mut g = g;
                if let Some(d) = body.get("description").and_then(Value::as_str) {
                    g.description = d.to_string();
                }
                if let Some(n) = body.get("name").and_then(Value::as_str) {
                    g.name = n.to_string();
                }
                if let Some(tags) = body.get("tags").and_then(Value::as_array) {
                    g.tags = tags
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                }
                let json = self.group_json(&g);
                self.groups.insert(id.to_string(), g);
                Ok(Answer::json(200, json!({ "security_group": json })))
            }
            "DELETE" => {
                if g.project_default {
                    return Err(ApiError::old(
                        400,
                        "invalid_request_error",
                        "cannot delete the project's default security group",
                    ));
                }
                if self.servers.values().any(|s| s.security_group == id) {
                    return Err(ApiError::old(
                        400,
                        "invalid_request_error",
                        "group is in use. you cannot delete it.",
                    ));
                }
                self.groups.remove(id);
                Ok(Answer::empty(204))
            }
            _ => Err(ApiError::method()),
        }
    }

    fn group_rules(
        &mut self,
        method: &str,
        zone: &str,
        id: &str,
        q: &Query,
        body: &Value,
    ) -> ApiResult {
        let Some(g) = self.groups.get(id).filter(|g| g.zone == zone).cloned() else {
            return Err(ApiError::unknown("Security group", id));
        };
        match method {
            "GET" => instance_page("rules", g.rules.clone(), q),
            "PUT" => {
                let Some(rules) = body.get("rules").and_then(Value::as_array) else {
                    return Err(ApiError::argument("rules", "required", ""));
                };
                let mut out = Vec::new();
                for (i, r) in rules.iter().enumerate() {
                    out.push(self.normalize_rule(zone, r, i)?);
                }
                out.sort_by_key(|r| r.get("position").and_then(Value::as_u64).unwrap_or(0));
                if let Some(g) = self.groups.get_mut(id) {
                    g.rules = out.clone();
                }
                Ok(Answer::json(200, json!({ "rules": out })))
            }
            _ => Err(ApiError::method()),
        }
    }

    fn normalize_rule(&mut self, zone: &str, r: &Value, index: usize) -> Result<Value, ApiError> {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let protocol = text("protocol");
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "ICMP" | "ANY") {
            return Err(ApiError::argument(
                "protocol",
                "constraint",
                "one of TCP, UDP, ICMP, ANY",
            ));
        }
        let direction = text("direction");
        if !matches!(direction.as_str(), "inbound" | "outbound") {
            return Err(ApiError::argument(
                "direction",
                "constraint",
                "inbound or outbound",
            ));
        }
        let action = text("action");
        if !matches!(action.as_str(), "accept" | "drop") {
            return Err(ApiError::argument("action", "constraint", "accept or drop"));
        }
        let ip_range = text("ip_range");
        if !valid_cidr(&ip_range) {
            return Err(ApiError::argument(
                "ip_range",
                "format",
                "an IPv4 or IPv6 network",
            ));
        }
        let port = |k: &str| -> Result<Option<u64>, ApiError> {
            match r.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|p| (1..=65535).contains(p))
                    .map(Some)
                    .ok_or_else(|| {
                        ApiError::argument(k, "constraint", "a port between 1 and 65535")
                    }),
            }
        };
        let from = port("dest_port_from")?;
        let to = port("dest_port_to")?;
        if let (Some(a), Some(b)) = (from, to)
            && b < a
        {
            return Err(ApiError::argument(
                "dest_port_to",
                "constraint",
                "must not be below dest_port_from",
            ));
        }
        let position = r
            .get("position")
            .and_then(Value::as_u64)
            .unwrap_or(index as u64 + 1);
        Ok(json!({
            "id": self.uuid(),
            "protocol": protocol,
            "direction": direction,
            "action": action,
            "ip_range": ip_range,
            "dest_port_from": from,
            "dest_port_to": if to == from { None } else { to },
            "position": position,
            "editable": true,
            "zone": zone,
        }))
    }

    // ----- IAM -------------------------------------------------------------------------

    fn key_json(k: &FakeSshKey) -> Value {
        json!({
            "id": k.id, "name": k.name, "public_key": k.public_key,
            "fingerprint": format!("256 MD5:{} (ssh-ed25519)", &k.id[..8]),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "organization_id": k.project, "project_id": k.project, "disabled": false,
        })
    }

    fn iam(&mut self, method: &str, seg: &[&str], q: &Query, body: &Value) -> ApiResult {
        match (method, seg) {
            ("GET", []) => {
                let items: Vec<Value> = self
                    .ssh_keys
                    .values()
                    .filter(|k| q.get("project_id").is_none_or(|p| k.project == p))
                    .filter(|k| q.get("name").is_none_or(|n| k.name.contains(n)))
                    .map(Self::key_json)
                    .collect();
                standard_page("ssh_keys", items, q)
            }
            ("POST", []) => {
                let text = |k: &str| {
                    body.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .trim()
                        .to_string()
                };
                let name = text("name");
                let public_key = text("public_key");
                let project = text("project_id");
                if project.is_empty() {
                    return Err(ApiError::argument("project_id", "required", ""));
                }
                let mut parts = public_key.split_whitespace();
                let well_formed = matches!(parts.next(), Some(t) if t.starts_with("ssh-") || t.starts_with("ecdsa-"))
                    && parts.next().is_some_and(|k| k.len() > 16);
                if !well_formed {
                    return Err(ApiError::argument(
                        "public_key",
                        "format",
                        "not an OpenSSH public key",
                    ));
                }
                let material = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                if self.ssh_keys.values().any(|k| {
                    k.project == project && material(&k.public_key) == material(&public_key)
                }) {
                    return Err(ApiError {
                        status: 409,
                        body: json!({ "type": "conflict", "message": "SSH key with this fingerprint already exists",
                                      "resource": "ssh_key" }),
                    });
                }
                let id = self.uuid();
                let key = FakeSshKey {
                    id: id.clone(),
                    name,
                    public_key,
                    project,
                };
                let json = Self::key_json(&key);
                self.ssh_keys.insert(id, key);
                Ok(Answer::json(200, json))
            }
            ("GET", [id]) => match self.ssh_keys.get(*id) {
                Some(k) => Ok(Answer::json(200, Self::key_json(k))),
                None => Err(ApiError::not_found("ssh_key", id)),
            },
            ("DELETE", [id]) => match self.ssh_keys.remove(*id) {
                Some(_) => Ok(Answer::empty(204)),
                None => Err(ApiError::not_found("ssh_key", id)),
            },
            _ => Err(ApiError::route()),
        }
    }

    // ----- Domains ---------------------------------------------------------------------

    fn zone_json(z: &FakeDnsZone) -> Value {
        json!({
            "domain": z.domain, "subdomain": z.subdomain,
            "ns": ["ns0.dom.scw.cloud", "ns1.dom.scw.cloud"],
            "ns_default": ["ns0.dom.scw.cloud", "ns1.dom.scw.cloud"],
            "ns_master": [], "status": "active", "message": null,
            "updated_at": "2026-01-01T00:00:00Z", "project_id": z.project,
            "linked_products": [],
        })
    }

    fn record_json(r: &FakeRecord) -> Value {
        json!({ "id": r.id, "data": r.data, "name": r.name, "priority": 0, "ttl": r.ttl,
                "type": r.rtype, "comment": null, "updated_at": "2026-01-01T00:00:00Z" })
    }

    fn domain(&mut self, method: &str, seg: &[&str], q: &Query, body: &Value) -> ApiResult {
        match (method, seg) {
            ("GET", []) => {
                let items: Vec<Value> = self
                    .dns
                    .values()
                    .filter(|z| q.get("project_id").is_none_or(|p| z.project == p))
                    .filter(|z| q.get("dns_zone").is_none_or(|n| z.name() == n))
                    .filter(|z| q.get("domain").is_none_or(|d| z.domain == d))
                    .map(Self::zone_json)
                    .collect();
                standard_page("dns_zones", items, q)
            }
            ("POST", []) => {
                let text = |k: &str| {
                    body.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                };
                let domain = text("domain");
                let subdomain = text("subdomain");
                let project = body
                    .get("project_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if domain.is_empty() || !domain.contains('.') {
                    return Err(ApiError::argument(
                        "domain",
                        "format",
                        "a domain name such as example.com",
                    ));
                }
                if project.is_empty() {
                    return Err(ApiError::argument("project_id", "required", ""));
                }
                let zone = FakeDnsZone {
                    domain,
                    subdomain,
                    project,
                    records: Vec::new(),
                };
                let name = zone.name();
                if self.dns.contains_key(&name) {
                    return Err(ApiError {
                        status: 409,
                        body: json!({ "type": "already_exists", "message": format!("dns zone {name} already exists"),
                                      "resource": "dns_zone", "resource_id": name }),
                    });
                }
                let json = Self::zone_json(&zone);
                self.dns.insert(name, zone);
                Ok(Answer::json(200, json))
            }
            ("DELETE", [zone]) => match self.dns.remove(*zone) {
                Some(_) => Ok(Answer::json(200, json!({}))),
                None => Err(ApiError::not_found("dns_zone", zone)),
            },
            ("GET", [zone, "records"]) => {
                let Some(z) = self.dns.get(*zone) else {
                    return Err(ApiError::not_found("dns_zone", zone));
                };
                let items: Vec<Value> = z
                    .records
                    .iter()
                    .filter(|r| q.get("name").is_none_or(|n| r.name == n))
                    .filter(|r| q.get("type").is_none_or(|t| r.rtype == t))
                    .map(Self::record_json)
                    .collect();
                standard_page("records", items, q)
            }
            ("PATCH", [zone, "records"]) => self.change_records(zone, body),
            _ => Err(ApiError::route()),
        }
    }

    fn change_records(&mut self, zone: &str, body: &Value) -> ApiResult {
        if !self.dns.contains_key(zone) {
            return Err(ApiError::not_found("dns_zone", zone));
        }
        let Some(changes) = body.get("changes").and_then(Value::as_array) else {
            return Err(ApiError::argument("changes", "required", ""));
        };
        let mut records = self.dns[zone].records.clone();
        let id_fields = |c: &Value| -> Result<(String, String), ApiError> {
            let f = c
                .get("id_fields")
                .ok_or_else(|| ApiError::argument("id_fields", "required", ""))?;
            Ok((
                f.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                f.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ))
        };
        for change in changes {
            if let Some(set) = change.get("set") {
                let (name, rtype) = id_fields(set)?;
                let mut new = Vec::new();
                for r in set
                    .get("records")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let data = r
                        .get("data")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if data.is_empty() {
                        return Err(ApiError::argument("records.data", "required", ""));
                    }
                    let ttl = r.get("ttl").and_then(Value::as_u64).unwrap_or(3600);
                    new.push(FakeRecord {
                        id: self.uuid(),
                        name: name.clone(),
                        rtype: rtype.clone(),
                        data,
                        ttl,
                    });
                }
                records.retain(|r| !(r.name == name && r.rtype == rtype));
                records.extend(new);
            } else if let Some(del) = change.get("delete") {
                let (name, rtype) = id_fields(del)?;
                let before = records.len();
                records.retain(|r| !(r.name == name && r.rtype == rtype));
                if records.len() == before {
                    return Err(ApiError::not_found(
                        "dns_record",
                        &format!("{name}/{rtype}"),
                    ));
                }
            } else if let Some(add) = change.get("add") {
                for r in add
                    .get("records")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    records.push(FakeRecord {
                        id: self.uuid(),
                        name: text("name"),
                        rtype: text("type"),
                        data: text("data"),
                        ttl: r.get("ttl").and_then(Value::as_u64).unwrap_or(3600),
                    });
                }
            } else {
                return Err(ApiError::argument(
                    "changes",
                    "constraint",
                    "one of add, set, delete, clear",
                ));
            }
        }
        if let Some(z) = self.dns.get_mut(zone) {
            z.records = records.clone();
        }
        let all = body
            .get("return_all_records")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let out: Vec<Value> = if all {
            records.iter().map(Self::record_json).collect()
        } else {
            Vec::new()
        };
        Ok(Answer::json(200, json!({ "records": out })))
    }
}

fn valid_cidr(c: &str) -> bool {
    let (addr, bits) = c
        .split_once('/')
        .unwrap_or((c, if c.contains(':') { "128" } else { "32" }));
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    if addr.parse::<std::net::Ipv4Addr>().is_ok() {
        bits <= 32
    } else if addr.parse::<std::net::Ipv6Addr>().is_ok() {
        bits <= 128
    } else {
        false
    }
}

/// `YYYY-MM-DDTHH:MM:SS` now, UTC.
fn now_rfc3339() -> String {
    utc_datetime(unix_now())
}
