//! A fake OVHcloud API (`/1.0`) for tests: a real HTTP server on 127.0.0.1 that keeps a
//! small in-memory world (one Public Cloud project with regions, flavors, images,
//! instances and SSH keys; DNS zones with records; the public price list) and answers with
//! OVHcloud's paths, field names, status codes and both error body forms.
//!
//! Start it on its own thread ([`OvhFake::start`], for blocking tests and tests that spawn
//! the `legion` binary with `LEGION_OVH_API_URL`) or on the test's runtime
//! ([`OvhFake::start_async`]). The server, fault rules and request record are the kit's
//! ([`crate::http`]); this module owns the OVHcloud world, its signature check and how
//! OVHcloud answers.
//!
//! Every request but `GET /auth/time` and the public price list must be signed: the fake
//! recomputes `"$1$" + sha1(AS+CK+METHOD+URL+BODY+TS)` over the URL it was reached at and
//! the exact body, and refuses a wrong signature (`INVALID_SIGNATURE`), an unknown key
//! (`INVALID_KEY`, `INVALID_CREDENTIAL`) or a timestamp more than 30 s off its clock
//! (`QUERY_TIME_OUT`). Its clock can be skewed. A GET or DELETE carrying a body is refused.
//!
//! Instances move through OpenStack's statuses over real time (`BUILD` → `ACTIVE`,
//! `SHUTOFF`, `REBOOT`, `REBUILD`, `DELETING` → gone); an action on an instance busy with
//! another task gets Nova's 409 "… while it is in task_state …". Faults (500/503/504 not
//! applied, 429, connections dropped before or after applying, locks, latency, a failing
//! build, an ignored shutdown) are injected on the [`OvhFake`] handle (the common ones
//! through its [`Controls`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{Controls, Dropped, Exchange, HttpResponse, Query, Server, Service, lock, reply};
pub use crate::http::{FaultKind, FaultRule, RecordedRequest};

pub const APPLICATION_KEY: &str = "ak-fake-7kQ2";
pub const APPLICATION_SECRET: &str = "as-fake-secret-0123456789abcdef";
pub const CONSUMER_KEY: &str = "ck-fake-consumer-fedcba9876543210";
pub const PROJECT: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// How far a request's timestamp may be from the fake's clock.
pub const TIME_TOLERANCE_SECS: i64 = 30;
pub const DEFAULT_TASK_DURATION: Duration = Duration::from_millis(200);

pub const REGIONS: [&str; 3] = ["GRA11", "SBG5", "BHS5"];

/// A running fake. Dropping it stops the server.
pub struct OvhFake {
    server: Server,
    shared: Arc<Shared>,
}

/// The common controls: faults, latency, the request record.
impl Deref for OvhFake {
    type Target = Controls;

    fn deref(&self) -> &Controls {
        &self.shared.controls
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeInstance {
    pub id: String,
    /// The full OVHcloud name (with Legion's labels when Legion made it).
    pub name: String,
    pub status: String,
    pub region: String,
    pub flavor_id: String,
    pub image_id: String,
    pub ssh_key_id: Option<String>,
    pub ipv4: String,
    pub ipv6: String,
    pub user_data: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSshKey {
    pub id: String,
    pub name: String,
    pub public_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRecord {
    pub id: u64,
    pub sub_domain: String,
    pub field_type: String,
    pub target: String,
    pub ttl: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeZone {
    pub name: String,
    pub records: Vec<FakeRecord>,
    /// Changes not yet published by `POST /domain/zone/{zone}/refresh`.
    pub pending_changes: u32,
    pub refreshes: u32,
}

impl OvhFake {
    pub fn start() -> Self {
        let shared = Arc::new(Shared::new());
        Self {
            server: Server::start("ovh-fake", shared.clone()),
            shared,
        }
    }

    pub async fn start_async() -> Self {
        let shared = Arc::new(Shared::new());
        Self {
            server: Server::start_async(shared.clone()).await,
            shared,
        }
    }

    /// `http://127.0.0.1:PORT/1.0`, the value for `LEGION_OVH_API_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/1.0", self.server.addr())
    }

    /// The variables that point Legion at this fake (statuses polled every 10 ms), with
    /// every credential in OVHcloud's default variables.
    pub fn legion_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LEGION_OVH_API_URL", self.base_url()),
            ("LEGION_OVH_POLL_MS", "10".into()),
            ("OVH_ENDPOINT", "ovh-eu".into()),
            ("OVH_APPLICATION_KEY", APPLICATION_KEY.into()),
            ("OVH_APPLICATION_SECRET", APPLICATION_SECRET.into()),
            ("OVH_CONSUMER_KEY", CONSUMER_KEY.into()),
            ("OVH_CLOUD_PROJECT_SERVICE", PROJECT.into()),
        ]
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn project(&self) -> &'static str {
        PROJECT
    }

    /// `/cloud/project/{sn}`, the prefix of the project's paths.
    pub fn project_path(&self) -> String {
        format!("/cloud/project/{PROJECT}")
    }

    /// Accept another application secret (the fake then rejects the default one).
    pub fn set_application_secret(&self, secret: &str) {
        lock(&self.shared.auth).secret = secret.to_string();
    }

    /// Move the fake's clock by `secs` relative to the machine's.
    pub fn set_clock_skew(&self, secs: i64) {
        lock(&self.shared.auth).skew = secs;
    }

    pub fn server_time(&self) -> i64 {
        unix_now() + lock(&self.shared.auth).skew
    }

    pub fn set_server_ipv4(&self, ip: &str) {
        self.world().fixed_ipv4 = Some(ip.to_string());
    }

    /// How long a task (build, stop, start, reboot, reinstall, delete) takes.
    pub fn set_task_duration(&self, d: Duration) {
        self.world().task_duration = d;
    }

    // ----- faults (the common ones are on Controls) ------------------------------------

    /// Actions on (and deletion of) this instance get Nova's busy 409 until unlocked.
    pub fn lock_server(&self, id: &str) {
        self.world()
            .locks
            .insert(id.to_string(), "rebooting".into());
    }

    pub fn unlock_server(&self, id: &str) {
        self.world().locks.remove(id);
    }

    pub fn lock_server_for(&self, id: &str, duration: Duration) {
        self.lock_server(id);
        let shared = self.shared.clone();
        let id = id.to_string();
        std::thread::spawn(move || {
            std::thread::sleep(duration);
            lock(&shared.world).locks.remove(&id);
        });
    }

    /// The next instance built ends in `ERROR`.
    pub fn fail_next_build(&self) {
        self.world().fail_builds += 1;
    }

    /// Every image of `GET /image` names this login user (`user`), as a compromised or
    /// buggy API could.
    pub fn set_image_user(&self, user: &str) {
        self.world().image_user = Some(user.to_string());
    }

    /// When set, `stop` is accepted but the instance stays `ACTIVE`.
    pub fn set_ignore_acpi_shutdown(&self, ignore: bool) {
        self.world().ignore_shutdown = ignore;
    }

    // ----- out-of-band changes ---------------------------------------------------------

    pub fn set_server_status(&self, id: &str, status: &str) -> bool {
        let mut w = self.world();
        w.tasks.remove(id);
        match w.instances.get_mut(id) {
            Some(i) => {
                i.status = status.to_string();
                true
            }
            None => false,
        }
    }

    pub fn delete_server_out_of_band(&self, id: &str) -> bool {
        let mut w = self.world();
        w.tasks.remove(id);
        w.instances.remove(id).is_some()
    }

    /// Rename an instance behind the client's back (its labels live in the name).
    pub fn set_server_name(&self, id: &str, name: &str) -> bool {
        match self.world().instances.get_mut(id) {
            Some(i) => {
                i.name = name.to_string();
                true
            }
            None => false,
        }
    }

    /// Point an instance at another image id (e.g. a private snapshot the image list
    /// does not show).
    pub fn set_server_image(&self, id: &str, image_id: &str) -> bool {
        match self.world().instances.get_mut(id) {
            Some(i) => {
                i.image_id = image_id.to_string();
                true
            }
            None => false,
        }
    }

    /// An `ACTIVE` instance made outside Legion, with this full name.
    pub fn seed_server(&self, name: &str, flavor: &str, region: &str) -> String {
        let mut w = self.world();
        let flavor_id = flavor_id(region, flavor);
        let image_id = image_id(region, "Ubuntu 24.04");
        let id = w.new_instance(name, region, &flavor_id, &image_id, None, None);
        if let Some(i) = w.instances.get_mut(&id) {
            i.status = "ACTIVE".into();
        }
        w.tasks.remove(&id);
        id
    }

    pub fn seed_ssh_key(&self, name: &str, public_key: &str) -> String {
        let mut w = self.world();
        let id = w.next_id("key");
        w.keys.insert(
            id.clone(),
            FakeSshKey {
                id: id.clone(),
                name: name.into(),
                public_key: public_key.trim().into(),
            },
        );
        id
    }

    /// A DNS zone in the account (OVHcloud zones come with a domain or an order).
    pub fn seed_zone(&self, name: &str) {
        self.world().zones.insert(
            name.to_string(),
            FakeZone {
                name: name.to_string(),
                records: vec![FakeRecord {
                    id: 1,
                    sub_domain: String::new(),
                    field_type: "NS".into(),
                    target: "dns200.anycast.me.".into(),
                    ttl: 0,
                }],
                pending_changes: 0,
                refreshes: 0,
            },
        );
    }

    // ----- inspection ------------------------------------------------------------------

    pub fn servers(&self) -> Vec<FakeInstance> {
        self.world().instances.values().cloned().collect()
    }

    pub fn server(&self, id: &str) -> Option<FakeInstance> {
        self.world().instances.get(id).cloned()
    }

    /// Instances whose name is `name` or starts with `name@legion:`.
    pub fn servers_named(&self, name: &str) -> Vec<FakeInstance> {
        let prefix = format!("{name}@legion:");
        self.world()
            .instances
            .values()
            .filter(|i| i.name == name || i.name.starts_with(&prefix))
            .cloned()
            .collect()
    }

    pub fn ssh_keys(&self) -> Vec<FakeSshKey> {
        self.world().keys.values().cloned().collect()
    }

    pub fn zone(&self, name: &str) -> Option<FakeZone> {
        self.world().zones.get(name).cloned()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        let mut w = lock(&self.shared.world);
        w.tick(Instant::now());
        w
    }
}

fn unix_now() -> i64 {
    crate::http::unix_now() as i64
}

/// The documented signature, computed here on its own (not with Legion's signer).
pub fn expected_signature(
    secret: &str,
    consumer: &str,
    method: &str,
    url: &str,
    body: &str,
    ts: &str,
) -> String {
    use sha1::Digest;
    let joined = [secret, consumer, method, url, body, ts].join("+");
    let digest = sha1::Sha1::digest(joined.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("$1${hex}")
}

// ---------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------

struct Auth {
    key: String,
    secret: String,
    consumer: String,
    skew: i64,
}

struct Shared {
    world: Mutex<World>,
    auth: Mutex<Auth>,
    controls: Controls,
}

impl Shared {
    fn new() -> Self {
        Self {
            world: Mutex::new(World::new()),
            auth: Mutex::new(Auth {
                key: APPLICATION_KEY.into(),
                secret: APPLICATION_SECRET.into(),
                consumer: CONSUMER_KEY.into(),
                skew: 0,
            }),
            controls: Controls::new("/1.0", None),
        }
    }
}

impl Service for Shared {
    async fn handle(&self, req: Exchange) -> Result<HttpResponse, Dropped> {
        answer(self, req).await
    }
}

/// An error as OVHcloud answers it.
#[derive(Debug)]
struct ApiError {
    status: u16,
    body: Value,
}

impl ApiError {
    /// The API's form: `{"class": "Client::…", "message": …}`.
    fn class(status: u16, class: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "class": class, "message": message.into() }),
        }
    }

    /// The authentication layer's form: `{"errorCode", "httpCode", "message"}`.
    fn auth(status: u16, code: &str, message: &str) -> Self {
        let reason = match status {
            400 => "400 Bad Request",
            401 => "401 Unauthorized",
            403 => "403 Forbidden",
            _ => "",
        };
        Self {
            status,
            body: json!({ "errorCode": code, "httpCode": reason, "message": message }),
        }
    }

    fn not_found(what: &str) -> Self {
        Self::class(
            404,
            "Client::NotFound",
            format!("The requested object ({what}) does not exist"),
        )
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::class(400, "Client::BadRequest", message)
    }
}

type ApiResult = Result<(u16, Value), ApiError>;

fn respond(status: u16, body: &Value, retry_after: Option<Duration>) -> HttpResponse {
    let mut r = reply(status);
    if let Some(after) = retry_after {
        r = r.header("Retry-After", after.as_secs().max(1));
    }
    r.json_as("application/json; charset=utf-8", body)
}

async fn answer(shared: &Shared, req: Exchange) -> Result<HttpResponse, Dropped> {
    let method = req.method.clone();
    let raw_path = req.path.clone();
    let path = shared.controls.strip(&raw_path).to_string();
    let query = req.query.clone();
    let host = req.header("host").unwrap_or_default();
    let (app, consumer, ts, sig) = (
        req.header("x-ovh-application"),
        req.header("x-ovh-consumer"),
        req.header("x-ovh-timestamp"),
        req.header("x-ovh-signature"),
    );
    let body = &req.body;
    let body_text = String::from_utf8_lossy(body).to_string();

    shared.controls.delay().await;
    let fault = shared.controls.take_fault(&method, &path);

    // The signature, checked exactly.
    let public =
        method == "GET" && (path == "/auth/time" || path.starts_with("/order/catalog/public/"));
    let auth_result: Result<bool, ApiError> = {
        let a = lock(&shared.auth);
        let url = if query.is_empty() {
            format!("http://{host}{raw_path}")
        } else {
            format!("http://{host}{raw_path}?{query}")
        };
        if public && sig.is_none() {
            Ok(false)
        } else if app.as_deref() != Some(a.key.as_str()) {
            Err(ApiError::auth(
                403,
                "INVALID_KEY",
                "This application key is invalid",
            ))
        } else if consumer.as_deref() != Some(a.consumer.as_str()) {
            Err(ApiError::auth(
                403,
                "INVALID_CREDENTIAL",
                "This credential does not exist",
            ))
        } else {
            let ts = ts.unwrap_or_default();
            let in_time = ts
                .parse::<i64>()
                .is_ok_and(|t| (t - (unix_now() + a.skew)).abs() <= TIME_TOLERANCE_SECS);
            let want = expected_signature(&a.secret, &a.consumer, &method, &url, &body_text, &ts);
            if !in_time {
                Err(ApiError::auth(400, "QUERY_TIME_OUT", "Query out of time"))
            } else if sig.as_deref() != Some(want.as_str()) {
                Err(ApiError::auth(
                    400,
                    "INVALID_SIGNATURE",
                    "Invalid signature",
                ))
            } else {
                Ok(true)
            }
        }
    };
    shared.controls.record(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        authorized: auth_result.as_ref().is_ok_and(|s| *s),
    });

    match &fault {
        Some(FaultKind::ServerError) => {
            let e = ApiError::class(500, "Server::InternalServerError", "Internal server error");
            return Ok(respond(e.status, &e.body, None));
        }
        Some(FaultKind::Unavailable) => {
            let e = ApiError::class(503, "Server::ServiceUnavailable", "Service unavailable");
            return Ok(respond(e.status, &e.body, None));
        }
        Some(FaultKind::Timeout) => {
            let e = ApiError::class(504, "Server::GatewayTimeout", "Gateway timeout");
            return Ok(respond(e.status, &e.body, None));
        }
        Some(FaultKind::RateLimited { reset_in }) => {
            let e = ApiError::class(
                429,
                "Client::TooManyRequests",
                "Too many requests, retry later",
            );
            return Ok(respond(e.status, &e.body, Some(*reset_in)));
        }
        Some(FaultKind::DropBeforeApply) => return Err(Dropped),
        Some(FaultKind::DropAfterApply) | None => {}
    }

    let result = if let Err(e) = auth_result {
        Err(e)
    } else if !raw_path.starts_with("/1.0/") {
        Err(ApiError::class(
            404,
            "Client::NotFound",
            "Got an invalid (or empty) URL",
        ))
    } else if (method == "GET" || method == "DELETE") && !body.is_empty() {
        Err(ApiError::bad(format!(
            "A {method} request must not have a body"
        )))
    } else {
        let parsed = req
            .json()
            .map(|b| b.unwrap_or(Value::Null))
            .map_err(|e| ApiError::bad(format!("Invalid JSON received: {e}")));
        match parsed {
            Err(e) => Err(e),
            Ok(b) => {
                if path == "/auth/time" && method == "GET" {
                    let skew = lock(&shared.auth).skew;
                    Ok((200, json!(unix_now() + skew)))
                } else {
                    let q = Query::parse(&query).into_map();
                    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                    let mut w = lock(&shared.world);
                    w.tick(Instant::now());
                    w.route(&method, &segs, &q, &b)
                }
            }
        }
    };

    if fault == Some(FaultKind::DropAfterApply) {
        return Err(Dropped);
    }
    Ok(match result {
        Ok((status, body)) => respond(status, &body, None),
        Err(e) => respond(e.status, &e.body, None),
    })
}

// ---------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------

/// (name, vcpus, ram MB, disk GB, hourly price in 10⁻⁸ EUR, os type)
type FlavorDef = (&'static str, u32, u32, u32, u64, &'static str);
type ImageDef = (&'static str, &'static str, &'static str);

const FLAVORS: [FlavorDef; 6] = [
    ("d2-2", 1, 2000, 25, 990_000, "linux"),
    ("d2-4", 2, 4000, 50, 1_840_000, "linux"),
    ("b2-7", 2, 7000, 50, 6_810_000, "linux"),
    ("c3-4", 2, 4000, 50, 4_620_000, "linux"),
    ("b3-8", 2, 8000, 50, 7_040_000, "linux"),
    ("win-b2-7", 2, 7000, 50, 9_900_000, "windows"),
];

/// (name, type, status)
const IMAGES: [ImageDef; 4] = [
    ("Ubuntu 24.04", "linux", "active"),
    ("Debian 12", "linux", "active"),
    ("Ubuntu 18.04", "linux", "deprecated"),
    ("Windows Server 2022 Standard", "windows", "active"),
];

fn slug(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The per-region flavor id (OVHcloud's are UUIDs; the fake's are readable).
pub fn flavor_id(region: &str, name: &str) -> String {
    format!("flv-{}-{}", slug(region), slug(name))
}

pub fn image_id(region: &str, name: &str) -> String {
    format!("img-{}-{}", slug(region), slug(name))
}

/// d2-4 cannot be ordered in BHS5 (shows `available: false`).
fn flavor_available(region: &str, name: &str) -> bool {
    !(region == "BHS5" && name == "d2-4")
}

struct Task {
    until: Instant,
    /// The status the instance takes when the task is done; `None` removes it.
    then: Option<String>,
    task_state: &'static str,
    new_image: Option<String>,
}

struct World {
    instances: BTreeMap<String, FakeInstance>,
    tasks: BTreeMap<String, Task>,
    locks: BTreeMap<String, String>,
    keys: BTreeMap<String, FakeSshKey>,
    zones: BTreeMap<String, FakeZone>,
    next: u64,
    next_record: u64,
    task_duration: Duration,
    fixed_ipv4: Option<String>,
    fail_builds: u32,
    ignore_shutdown: bool,
    /// Every image's `user` when set (a hostile or unusual login user from the API).
    image_user: Option<String>,
}

impl World {
    fn new() -> Self {
        Self {
            instances: BTreeMap::new(),
            tasks: BTreeMap::new(),
            locks: BTreeMap::new(),
            keys: BTreeMap::new(),
            zones: BTreeMap::new(),
            next: 0,
            next_record: 100,
            task_duration: DEFAULT_TASK_DURATION,
            fixed_ipv4: None,
            fail_builds: 0,
            ignore_shutdown: false,
            image_user: None,
        }
    }

    fn next_id(&mut self, kind: &str) -> String {
        self.next += 1;
        format!(
            "{kind}-{:08x}-{:04x}",
            0x5eed_0000u64 + self.next,
            self.next
        )
    }

    fn tick(&mut self, now: Instant) {
        let done: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            let Some(task) = self.tasks.remove(&id) else {
                continue;
            };
            match task.then {
                None => {
                    self.instances.remove(&id);
                }
                Some(status) => {
                    if let Some(i) = self.instances.get_mut(&id) {
                        i.status = status;
                        if let Some(img) = task.new_image {
                            i.image_id = img;
                        }
                    }
                }
            }
        }
    }

    fn new_instance(
        &mut self,
        name: &str,
        region: &str,
        flavor_id: &str,
        image_id: &str,
        ssh_key_id: Option<String>,
        user_data: Option<String>,
    ) -> String {
        let id = self.next_id("inst");
        let n = self.next;
        let ipv4 = self
            .fixed_ipv4
            .clone()
            .unwrap_or_else(|| format!("51.68.{}.{}", (n / 250) % 250, n % 250 + 1));
        let failed = self.fail_builds > 0;
        if failed {
            self.fail_builds -= 1;
        }
        self.instances.insert(
            id.clone(),
            FakeInstance {
                id: id.clone(),
                name: name.into(),
                status: "BUILD".into(),
                region: region.into(),
                flavor_id: flavor_id.into(),
                image_id: image_id.into(),
                ssh_key_id,
                ipv4,
                ipv6: format!("2001:41d0:304:200::{n:x}"),
                user_data,
            },
        );
        self.tasks.insert(
            id.clone(),
            Task {
                until: Instant::now() + self.task_duration,
                then: Some(if failed { "ERROR" } else { "ACTIVE" }.into()),
                task_state: "spawning",
                new_image: None,
            },
        );
        id
    }

    fn flavor_json(region: &str, f: &FlavorDef) -> Value {
        json!({
            "id": flavor_id(region, f.0),
            "name": f.0,
            "region": region,
            "vcpus": f.1,
            "ram": f.2,
            "disk": f.3,
            "type": "ovh.ssd.eg",
            "osType": f.5,
            "available": flavor_available(region, f.0),
            "inboundBandwidth": 250,
            "outboundBandwidth": 250,
            "quota": 20,
            "planCodes": {
                "hourly": format!("{}.consumption", f.0),
                "monthly": format!("{}.monthly.postpaid", f.0),
            },
            "capabilities": [],
        })
    }

    fn image_json(region: &str, i: &ImageDef) -> Value {
        json!({
            "id": image_id(region, i.0),
            "name": i.0,
            "region": region,
            "type": i.1,
            "status": i.2,
            "visibility": "public",
            "minDisk": 0,
            "size": 2.5,
            "user": match i.0 {
                n if n.starts_with("Windows") => "Administrator",
                n if n.starts_with("Debian") => "debian",
                _ => "ubuntu",
            },
            "creationDate": "2024-04-25T09:02:20Z",
            "flavorType": null,
            "planCode": null,
            "tags": [],
        })
    }

    fn find_flavor(id: &str) -> Option<(String, &'static FlavorDef)> {
        REGIONS.iter().find_map(|r| {
            FLAVORS
                .iter()
                .find(|f| flavor_id(r, f.0) == id)
                .map(|f| (r.to_string(), f))
        })
    }

    fn find_image(id: &str) -> Option<(String, &'static ImageDef)> {
        REGIONS.iter().find_map(|r| {
            IMAGES
                .iter()
                .find(|i| image_id(r, i.0) == id)
                .map(|i| (r.to_string(), i))
        })
    }

    fn instance_json(&self, i: &FakeInstance, detail: bool) -> Value {
        let mut v = json!({
            "id": i.id,
            "name": i.name,
            "status": i.status,
            "region": i.region,
            "created": "2026-11-23T10:00:00Z",
            "monthlyBilling": null,
            "planCode": Self::find_flavor(&i.flavor_id).map(|(_, f)| format!("{}.consumption", f.0)),
            "operationIds": [],
            "ipAddresses": [
                {"ip": i.ipv4, "type": "public", "version": 4, "networkId": "ext-net", "gatewayIp": "51.68.0.1"},
                {"ip": i.ipv6, "type": "public", "version": 6, "networkId": "ext-net", "gatewayIp": "2001:41d0:304:200::1"},
            ],
        });
        if detail {
            v["flavor"] = Self::find_flavor(&i.flavor_id)
                .map(|(r, f)| Self::flavor_json(&r, f))
                .unwrap_or(Value::Null);
            v["image"] = Self::find_image(&i.image_id)
                .map(|(r, m)| Self::image_json(&r, m))
                .unwrap_or(Value::Null);
            v["sshKey"] = i
                .ssh_key_id
                .as_ref()
                .and_then(|k| self.keys.get(k))
                .map(key_json)
                .unwrap_or(Value::Null);
        } else {
            v["flavorId"] = json!(i.flavor_id);
            v["imageId"] = json!(i.image_id);
            v["sshKeyId"] = json!(i.ssh_key_id);
        }
        v
    }

    fn route(
        &mut self,
        method: &str,
        segs: &[&str],
        q: &BTreeMap<String, String>,
        body: &Value,
    ) -> ApiResult {
        match (method, segs) {
            ("GET", ["order", "catalog", "public", "cloud"]) => Ok((200, price_catalog())),
            ("GET", ["cloud", "project", sn]) => {
                self.project(sn)?;
                Ok((
                    200,
                    json!({"project_id": PROJECT, "projectName": "legion-fake", "description": "legion-fake", "status": "ok", "planCode": "project.2018", "unleash": false}),
                ))
            }
            (_, ["cloud", "project", sn, rest @ ..]) => {
                self.project(sn)?;
                self.cloud(method, rest, q, body)
            }
            (_, ["domain", "zone", rest @ ..]) => self.dns(method, rest, q, body),
            _ => Err(ApiError::class(
                404,
                "Client::NotFound",
                "Got an invalid (or empty) URL",
            )),
        }
    }

    fn project(&self, sn: &str) -> Result<(), ApiError> {
        if sn == PROJECT {
            Ok(())
        } else {
            Err(ApiError::class(
                404,
                "Client::NotFound",
                format!("This service does not exist ({sn})"),
            ))
        }
    }

    fn cloud(
        &mut self,
        method: &str,
        rest: &[&str],
        q: &BTreeMap<String, String>,
        body: &Value,
    ) -> ApiResult {
        let region_filter = q.get("region").cloned();
        let in_region = |r: &str| region_filter.as_deref().is_none_or(|f| f == r);
        match (method, rest) {
            ("GET", ["region"]) => Ok((200, json!(REGIONS))),
            ("GET", ["flavor"]) => Ok((
                200,
                Value::Array(
                    REGIONS
                        .iter()
                        .filter(|r| in_region(r))
                        .flat_map(|r| FLAVORS.iter().map(move |f| Self::flavor_json(r, f)))
                        .collect(),
                ),
            )),
            ("GET", ["image"]) => {
                let os = q.get("osType").cloned();
                Ok((
                    200,
                    Value::Array(
                        REGIONS
                            .iter()
                            .filter(|r| in_region(r))
                            .flat_map(|r| IMAGES.iter().map(move |i| (r, i)))
                            .filter(|(_, i)| os.as_deref().is_none_or(|o| o == i.1))
                            .map(|(r, i)| {
                                let mut v = Self::image_json(r, i);
                                if let Some(user) = &self.image_user {
                                    v["user"] = json!(user);
                                }
                                v
                            })
                            .collect(),
                    ),
                ))
            }
            ("GET", ["instance"]) => Ok((
                200,
                Value::Array(
                    self.instances
                        .values()
                        .filter(|i| in_region(&i.region))
                        .map(|i| self.instance_json(i, false))
                        .collect(),
                ),
            )),
            ("POST", ["instance"]) => self.create_instance(body),
            ("GET", ["instance", id]) => {
                let i = self
                    .instances
                    .get(*id)
                    .ok_or_else(|| ApiError::not_found(&format!("instanceId = {id}")))?;
                Ok((200, self.instance_json(i, true)))
            }
            ("DELETE", ["instance", id]) => {
                // Nova deletes an instance whatever task it is busy with; only a forced
                // lock refuses it.
                if let Some(state) = self.locks.get(*id) {
                    return Err(ApiError::class(
                        409,
                        "Client::Conflict",
                        format!("Cannot 'delete' instance {id} while it is in task_state {state}"),
                    ));
                }
                let i = self
                    .instances
                    .get_mut(*id)
                    .ok_or_else(|| ApiError::not_found(&format!("instanceId = {id}")))?;
                i.status = "DELETING".into();
                self.tasks.insert(
                    id.to_string(),
                    Task {
                        until: Instant::now() + self.task_duration,
                        then: None,
                        task_state: "deleting",
                        new_image: None,
                    },
                );
                Ok((200, Value::Null))
            }
            ("POST", ["instance", id, action]) => self.instance_action(id, action, body),
            ("GET", ["sshkey"]) => Ok((
                200,
                Value::Array(self.keys.values().map(key_json).collect()),
            )),
            ("POST", ["sshkey"]) => {
                let name = str_field(body, "name")?;
                let public_key = str_field(body, "publicKey")?;
                if !public_key.starts_with("ssh-") && !public_key.starts_with("ecdsa-") {
                    return Err(ApiError::bad("Invalid public key"));
                }
                if self.keys.values().any(|k| k.name == name) {
                    return Err(ApiError::class(
                        409,
                        "Client::Conflict",
                        format!("An SSH key named {name} already exists"),
                    ));
                }
                let id = self.next_id("key");
                let key = FakeSshKey {
                    id: id.clone(),
                    name,
                    public_key: public_key.trim().into(),
                };
                let out = key_json(&key);
                self.keys.insert(id, key);
                Ok((200, out))
            }
            ("GET", ["sshkey", id]) => self
                .keys
                .get(*id)
                .map(|k| (200, key_json(k)))
                .ok_or_else(|| ApiError::not_found(&format!("keyId = {id}"))),
            ("DELETE", ["sshkey", id]) => self
                .keys
                .remove(*id)
                .map(|_| (200, Value::Null))
                .ok_or_else(|| ApiError::not_found(&format!("keyId = {id}"))),
            _ => Err(ApiError::class(
                404,
                "Client::NotFound",
                "Got an invalid (or empty) URL",
            )),
        }
    }

    fn create_instance(&mut self, body: &Value) -> ApiResult {
        let name = str_field(body, "name")?;
        let region = str_field(body, "region")?;
        let flavor = str_field(body, "flavorId")?;
        if !REGIONS.contains(&region.as_str()) {
            return Err(ApiError::bad(format!("Invalid region {region}")));
        }
        match Self::find_flavor(&flavor) {
            Some((r, f)) if r == region && flavor_available(&r, f.0) => {}
            Some((r, f)) if r == region => {
                return Err(ApiError::bad(format!(
                    "Flavor {} is not available in region {region}",
                    f.0
                )));
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "Invalid flavorId: flavor {flavor} does not exist in region {region}"
                )));
            }
        }
        let image = str_field(body, "imageId")?;
        if Self::find_image(&image).is_none_or(|(r, _)| r != region) {
            return Err(ApiError::bad(format!(
                "Invalid imageId: image {image} does not exist in region {region}"
            )));
        }
        let key = match body.get("sshKeyId") {
            Some(Value::String(k)) => {
                if !self.keys.contains_key(k) {
                    return Err(ApiError::not_found(&format!("sshKeyId = {k}")));
                }
                Some(k.clone())
            }
            None | Some(Value::Null) => None,
            Some(_) => return Err(ApiError::bad("Invalid sshKeyId")),
        };
        if !matches!(body.get("monthlyBilling"), None | Some(Value::Bool(_))) {
            return Err(ApiError::bad("Invalid monthlyBilling"));
        }
        let user_data = body
            .get("userData")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = self.new_instance(&name, &region, &flavor, &image, key, user_data);
        let i = self.instances.get(&id).cloned().expect("just created");
        Ok((200, self.instance_json(&i, false)))
    }

    /// Nova's refusal of an action on an instance busy with another task.
    fn instance_busy(&self, id: &str, action: &str) -> Result<(), ApiError> {
        let state = self
            .locks
            .get(id)
            .cloned()
            .or_else(|| self.tasks.get(id).map(|t| t.task_state.to_string()));
        match state {
            Some(state) => Err(ApiError::class(
                409,
                "Client::Conflict",
                format!("Cannot '{action}' instance {id} while it is in task_state {state}"),
            )),
            None => Ok(()),
        }
    }

    fn instance_action(&mut self, id: &str, action: &str, body: &Value) -> ApiResult {
        if !self.instances.contains_key(id) {
            return Err(ApiError::not_found(&format!("instanceId = {id}")));
        }
        self.instance_busy(id, action)?;
        let status = self.instances[id].status.clone();
        let region = self.instances[id].region.clone();
        let vm_state = |s: &str| match s {
            "ACTIVE" => "active",
            "SHUTOFF" => "stopped",
            "BUILD" => "building",
            _ => "error",
        };
        let refuse = |action: &str| {
            Err(ApiError::class(
                409,
                "Client::Conflict",
                format!(
                    "Cannot '{action}' instance {id} while it is in vm_state {}",
                    vm_state(&status)
                ),
            ))
        };
        let until = Instant::now() + self.task_duration;
        let (interim, then, task_state, new_image) = match action {
            "start" => {
                if status != "SHUTOFF" {
                    return refuse("start");
                }
                ("SHUTOFF", "ACTIVE", "powering-on", None)
            }
            "stop" => {
                if status != "ACTIVE" {
                    return refuse("stop");
                }
                let then = if self.ignore_shutdown {
                    "ACTIVE"
                } else {
                    "SHUTOFF"
                };
                ("ACTIVE", then, "powering-off", None)
            }
            "reboot" => {
                let kind = str_field(body, "type")?;
                let interim = match kind.as_str() {
                    "soft" => "REBOOT",
                    "hard" => "HARD_REBOOT",
                    other => return Err(ApiError::bad(format!("Invalid reboot type {other}"))),
                };
                if status != "ACTIVE" && !(kind == "hard" && status == "SHUTOFF") {
                    return refuse("reboot");
                }
                (interim, "ACTIVE", "rebooting", None)
            }
            "reinstall" => {
                let image = str_field(body, "imageId")?;
                if Self::find_image(&image).is_none_or(|(r, _)| r != region) {
                    return Err(ApiError::bad(format!(
                        "Invalid imageId: image {image} does not exist in region {region}"
                    )));
                }
                ("REBUILD", "ACTIVE", "rebuilding", Some(image))
            }
            // `POST /instance/{id}/resize` with `flavorId` (the region's flavor id):
            // OVHcloud confirms the resize itself; the instance keeps its power state.
            "resize" => {
                let flavor = str_field(body, "flavorId")?;
                match Self::find_flavor(&flavor) {
                    Some((r, f)) if r == region && flavor_available(&r, f.0) => {}
                    _ => {
                        return Err(ApiError::bad(format!(
                            "Invalid flavorId: flavor {flavor} does not exist in region {region}"
                        )));
                    }
                }
                if status != "ACTIVE" && status != "SHUTOFF" {
                    return refuse("resize");
                }
                if let Some(i) = self.instances.get_mut(id) {
                    i.flavor_id = flavor;
                }
                let then: &'static str = if status == "ACTIVE" {
                    "ACTIVE"
                } else {
                    "SHUTOFF"
                };
                ("RESIZE", then, "resize_prep", None)
            }
            _ => {
                return Err(ApiError::class(
                    404,
                    "Client::NotFound",
                    "Got an invalid (or empty) URL",
                ));
            }
        };
        if let Some(i) = self.instances.get_mut(id) {
            i.status = interim.into();
        }
        self.tasks.insert(
            id.to_string(),
            Task {
                until,
                then: Some(then.into()),
                task_state,
                new_image,
            },
        );
        if action == "reinstall" || action == "resize" {
            let i = self.instances[id].clone();
            return Ok((200, self.instance_json(&i, false)));
        }
        Ok((200, Value::Null))
    }

    fn dns(
        &mut self,
        method: &str,
        rest: &[&str],
        q: &BTreeMap<String, String>,
        body: &Value,
    ) -> ApiResult {
        if let ("GET", []) = (method, rest) {
            return Ok((200, json!(self.zones.keys().collect::<Vec<_>>())));
        }
        let Some((zone_name, rest)) = rest.split_first() else {
            return Err(ApiError::not_found("zone"));
        };
        let next_record = &mut self.next_record;
        let zone = self.zones.get_mut(*zone_name).ok_or_else(|| {
            ApiError::class(
                404,
                "Client::NotFound",
                format!("This service does not exist ({zone_name})"),
            )
        })?;
        match (method, rest) {
            ("GET", []) => Ok((
                200,
                json!({
                    "name": zone.name,
                    "nameServers": ["dns200.anycast.me", "ns200.anycast.me"],
                    "dnssecSupported": true,
                    "hasDnsAnycast": false,
                    "lastUpdate": "2026-11-23T10:00:00+01:00",
                }),
            )),
            ("GET", ["record"]) => {
                let ft = q.get("fieldType");
                let sd = q.get("subDomain");
                Ok((
                    200,
                    json!(
                        zone.records
                            .iter()
                            .filter(|r| ft.is_none_or(|f| *f == r.field_type))
                            .filter(|r| sd.is_none_or(|s| *s == r.sub_domain))
                            .map(|r| r.id)
                            .collect::<Vec<_>>()
                    ),
                ))
            }
            ("POST", ["record"]) => {
                let field_type = str_field(body, "fieldType")?;
                const TYPES: [&str; 10] = [
                    "A", "AAAA", "CNAME", "TXT", "MX", "NS", "CAA", "SRV", "SPF", "PTR",
                ];
                if !TYPES.contains(&field_type.as_str()) {
                    return Err(ApiError::bad(format!("Invalid fieldType {field_type}")));
                }
                let target = str_field(body, "target")?;
                let sub_domain = body
                    .get("subDomain")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let ttl = body.get("ttl").and_then(Value::as_u64).unwrap_or(0) as u32;
                *next_record += 1;
                let r = FakeRecord {
                    id: *next_record,
                    sub_domain,
                    field_type,
                    target,
                    ttl,
                };
                let out = record_json(&zone.name, &r);
                zone.records.push(r);
                zone.pending_changes += 1;
                Ok((200, out))
            }
            (_, ["record", id]) => {
                let id: u64 = id
                    .parse()
                    .map_err(|_| ApiError::bad(format!("Invalid id {id}")))?;
                let zone_name = zone.name.clone();
                let pos = zone
                    .records
                    .iter()
                    .position(|r| r.id == id)
                    .ok_or_else(|| ApiError::not_found(&format!("id = {id}")))?;
                match method {
                    "GET" => Ok((200, record_json(&zone_name, &zone.records[pos]))),
                    "PUT" => {
                        let r = &mut zone.records[pos];
                        if let Some(t) = body.get("target").and_then(Value::as_str) {
                            r.target = t.into();
                        }
                        if let Some(s) = body.get("subDomain").and_then(Value::as_str) {
                            r.sub_domain = s.into();
                        }
                        if let Some(t) = body.get("ttl").and_then(Value::as_u64) {
                            r.ttl = t as u32;
                        }
                        zone.pending_changes += 1;
                        Ok((200, Value::Null))
                    }
                    "DELETE" => {
                        zone.records.remove(pos);
                        zone.pending_changes += 1;
                        Ok((200, Value::Null))
                    }
                    _ => Err(ApiError::class(
                        405,
                        "Client::MethodNotAllowed",
                        "Method not allowed",
                    )),
                }
            }
            ("POST", ["refresh"]) => {
                zone.pending_changes = 0;
                zone.refreshes += 1;
                Ok((200, Value::Null))
            }
            _ => Err(ApiError::class(
                404,
                "Client::NotFound",
                "Got an invalid (or empty) URL",
            )),
        }
    }
}

fn str_field(body: &Value, name: &str) -> Result<String, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad(format!("Missing parameter {name}")))
}

fn key_json(k: &FakeSshKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "publicKey": k.public_key,
        "fingerPrint": format!("{:x}", k.public_key.len()),
        "regions": REGIONS,
    })
}

fn record_json(zone: &str, r: &FakeRecord) -> Value {
    json!({
        "id": r.id,
        "zone": zone,
        "subDomain": r.sub_domain,
        "fieldType": r.field_type,
        "target": r.target,
        "ttl": r.ttl,
    })
}

fn price_catalog() -> Value {
    let mut addons = Vec::new();
    for f in FLAVORS {
        addons.push(json!({
            "planCode": format!("{}.consumption", f.0),
            "invoiceName": format!("{} instance", f.0),
            "product": format!("publiccloud-instance-{}", f.0),
            "pricingType": "consumption",
            "pricings": [{
                "capacities": ["consumption"],
                "description": "Consumption",
                "interval": 1,
                "intervalUnit": "hour",
                "price": f.4,
                "tax": 0,
            }],
        }));
        addons.push(json!({
            "planCode": format!("{}.monthly.postpaid", f.0),
            "invoiceName": format!("{} instance (monthly)", f.0),
            "pricings": [{
                "capacities": ["renew"],
                "intervalUnit": "month",
                "interval": 1,
                "price": f.4 * 500,
                "tax": 0,
            }],
        }));
    }
    json!({
        "catalogId": 1,
        "locale": {"currencyCode": "EUR", "subsidiary": "FR", "taxRate": 20},
        "plans": [],
        "addons": addons,
    })
}
