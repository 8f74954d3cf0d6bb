//! [`MockCloud`]: the simulated cloud the `mock` adapter talks to.
//!
//! It plays the provider's side of the wire: every request is recorded, waits the
//! simulated latency, may fail (a deterministic RNG seeded from `seed` decides), and then
//! applies to the [`World`]. It also owns persistence (`mock-cloud.json`, debounced,
//! atomic replace) and the out-of-band API tests and the demo use to change the world
//! behind Legion's back. It knows nothing of the broker lane: the adapter in `api.rs`
//! wraps every call here in one.
//!
//! The state lock is a `std::sync::Mutex` held only for short synchronous sections,
//! never across an `await`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::world::{self, Action, DISPLAY_NAME, MockKey, World};
use crate::providers::{
    Catalog, ErrorKind, FirewallRule, HealthReading, ObservedDomain, ObservedFirewall,
    ObservedServer, ObservedZone, ProviderError, ProviderResult, RecordType, RrSet, ServerSpec,
};

/// The world's file in a Legion home.
pub const FILE_NAME: &str = "mock-cloud.json";
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(150);
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Saves are debounced to at most one per this period.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How many received requests [`MockCloud::calls`] remembers.
const CALL_HISTORY: usize = 10_000;

/// SplitMix64: tiny, fast and good enough to decide simulated faults reproducibly.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the simulated cloud decided to do to one request when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Fail without applying anything.
    Fail(ErrorKind),
    /// Apply, then lose the response.
    Lost,
}

struct State {
    world: World,
    rng: SplitMix64,
    error_rate: f64,
    ambiguous_rate: f64,
    latency: Duration,
    concurrency: usize,
    fail_next: Option<(u32, ErrorKind)>,
    calls: VecDeque<(String, String)>,
    health: BTreeMap<String, HealthReading>,
    phase_faults: BTreeMap<(String, String), u32>,
    create_count: u64,
    dirty: bool,
    /// Extra time a server list takes after it has read the world (a long, paginated or
    /// multi-zone list answers as of when it started).
    list_lag: Duration,
}

/// The simulated cloud. Cheap to share (`Arc`); see the module docs.
pub struct MockCloud {
    state: Mutex<State>,
    /// Where the world is saved; `None` for an in-memory cloud.
    path: Option<PathBuf>,
    /// Serializes saves so an older snapshot never overwrites a newer one.
    save_lock: Mutex<()>,
    autosave: AtomicBool,
    /// Wakes the autosave task after a change (no polling timer while idle).
    changed: Arc<tokio::sync::Notify>,
    /// The simulated API serves at most `concurrency` requests at once.
    permits: Semaphore,
}

impl std::fmt::Debug for MockCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockCloud")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn simulated(kind: ErrorKind) -> ProviderError {
    let mut e = world::error(kind, "simulated_failure", "simulated failure");
    if kind == ErrorKind::RateLimited {
        e.retry_after = Some(Duration::from_secs(1));
    }
    e
}

fn response_lost() -> ProviderError {
    ProviderError::new(
        DISPLAY_NAME,
        ErrorKind::ResponseLost,
        "the response never arrived (simulated)",
    )
    .with_code("response_lost")
}

impl MockCloud {
    /// An in-memory simulated cloud (nothing is saved), with the default latency and no
    /// faults.
    pub fn new(seed: u64) -> Arc<MockCloud> {
        Arc::new(MockCloud::build(World::default(), seed, None))
    }

    /// The simulated cloud saved at `path`: loaded when the file exists, created (and
    /// saved at once) when it does not.
    pub fn open(path: impl Into<PathBuf>, seed: u64) -> ProviderResult<Arc<MockCloud>> {
        let path = path.into();
        remove_stale_temps(&path);
        let unreadable = |e: &dyn std::fmt::Display| {
            ProviderError::new(
                DISPLAY_NAME,
                ErrorKind::Other,
                format!(
                    "cannot read the simulated cloud at {}: {e} (delete the file to start a fresh one)",
                    path.display()
                ),
            )
        };
        let (world, fresh) = match std::fs::read(&path) {
            Ok(bytes) => (
                serde_json::from_slice::<World>(&bytes).map_err(|e| unreadable(&e))?,
                false,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (World::default(), true),
            Err(e) => return Err(unreadable(&e)),
        };
        let cloud = Arc::new(MockCloud::build(world, seed, Some(path.clone())));
        if fresh {
            cloud.lock().dirty = true;
            cloud.save().map_err(|e| {
                ProviderError::new(
                    DISPLAY_NAME,
                    ErrorKind::Other,
                    format!("cannot create {}: {e}", path.display()),
                )
            })?;
        }
        Ok(cloud)
    }

    fn build(world: World, seed: u64, path: Option<PathBuf>) -> MockCloud {
        MockCloud {
            state: Mutex::new(State {
                world,
                rng: SplitMix64(seed),
                error_rate: 0.0,
                ambiguous_rate: 0.0,
                latency: DEFAULT_LATENCY,
                concurrency: DEFAULT_CONCURRENCY,
                fail_next: None,
                calls: VecDeque::new(),
                health: BTreeMap::new(),
                phase_faults: BTreeMap::new(),
                create_count: 0,
                dirty: false,
                list_lag: Duration::ZERO,
            }),
            path,
            save_lock: Mutex::new(()),
            autosave: AtomicBool::new(false),
            changed: Arc::new(tokio::sync::Notify::new()),
            permits: Semaphore::new(DEFAULT_CONCURRENCY),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data; a panic elsewhere cannot leave it half-written in a
        // way that matters for a simulation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change the world and mark it for saving.
    fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.lock();
        st.dirty = true;
        f(&mut st)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    // ---- configuration and fault injection -------------------------------------------

    /// Restart the fault sequence from `seed`.
    pub fn set_seed(&self, seed: u64) {
        self.lock().rng = SplitMix64(seed);
    }

    /// `error_rate`: probability that any call fails before anything is applied.
    /// `ambiguous_rate`: probability that a write is applied and its response lost.
    /// Both are clamped to `0..=1`.
    pub fn set_faults(&self, error_rate: f64, ambiguous_rate: f64) {
        let clamp = |p: f64| if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        let mut st = self.lock();
        st.error_rate = clamp(error_rate);
        st.ambiguous_rate = clamp(ambiguous_rate);
    }

    /// `(error_rate, ambiguous_rate)`.
    pub fn fault_rates(&self) -> (f64, f64) {
        let st = self.lock();
        (st.error_rate, st.ambiguous_rate)
    }

    /// Every call waits this long; a server create three times as long (boot), an image
    /// reset twice.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Server lists read the world, then take `lag` more before they answer: servers
    /// created meanwhile are missing from the answer without being gone.
    pub fn set_list_lag(&self, lag: Duration) {
        self.lock().list_lag = lag;
    }

    /// How many requests the simulated API serves at once (at least one).
    pub fn set_concurrency(&self, n: usize) {
        let n = n.max(1);
        let mut st = self.lock();
        if n > st.concurrency {
            self.permits.add_permits(n - st.concurrency);
        } else {
            // Permits in use are not taken back; the limit settles as they return.
            self.permits.forget_permits(st.concurrency - n);
        }
        st.concurrency = n;
    }

    /// The next `n` writes fail with `kind`. A [`ErrorKind::ResponseLost`] write is
    /// applied first and then loses its response; any other kind fails without applying.
    pub fn fail_next_writes(&self, n: u32, kind: ErrorKind) {
        self.lock().fail_next = (n > 0).then_some((n, kind));
    }

    /// Power a server off behind Legion's back. Returns whether it existed.
    pub fn stop_out_of_band(&self, server_id: &str) -> bool {
        self.mutate(|st| st.world.act(server_id, &Action::PowerOff).is_ok())
    }

    /// Delete a server behind Legion's back. Returns whether it existed.
    pub fn delete_out_of_band(&self, server_id: &str) -> bool {
        self.mutate(|st| st.world.delete_server(server_id).is_ok())
    }

    /// What the node agent reports for this server from now on, whatever its status.
    pub fn set_health(&self, server_id: &str, reading: HealthReading) {
        self.lock().health.insert(server_id.to_string(), reading);
    }

    /// Back to health derived from the server's status.
    pub fn clear_health(&self, server_id: &str) {
        self.lock().health.remove(server_id);
    }

    /// The node agent's `phase` (`"reachable"`, `"configure"` or `"readiness"`) fails
    /// the next `times` times for this server.
    pub fn fail_phase(&self, server_id: &str, phase: &str, times: u32) {
        let key = (server_id.to_string(), phase.to_string());
        let mut st = self.lock();
        if times == 0 {
            st.phase_faults.remove(&key);
        } else {
            st.phase_faults.insert(key, times);
        }
    }

    // ---- inspection (no latency, no faults, not recorded) ------------------------------

    pub fn servers(&self) -> Vec<ObservedServer> {
        self.lock().world.servers_of(None)
    }

    pub fn server(&self, id: &str) -> Option<ObservedServer> {
        self.lock().world.server(id).map(world::SimServer::observed)
    }

    pub fn server_by_name(&self, name: &str) -> Option<ObservedServer> {
        let st = self.lock();
        st.world
            .servers
            .iter()
            .find(|s| s.name == name)
            .map(world::SimServer::observed)
    }

    pub fn keys(&self) -> Vec<MockKey> {
        self.lock().world.keys.clone()
    }

    pub fn zones(&self) -> Vec<ObservedZone> {
        let st = self.lock();
        st.world
            .zones
            .iter()
            .map(world::SimZone::observed)
            .collect()
    }

    pub fn firewalls(&self) -> Vec<ObservedFirewall> {
        self.lock().world.firewalls_of(None)
    }

    pub fn domains(&self) -> Vec<ObservedDomain> {
        self.lock().world.domains.clone()
    }

    /// Server creates applied since this cloud was built or loaded.
    pub fn create_count(&self) -> u64 {
        self.lock().create_count
    }

    /// `(method, path)` of every request received, oldest first (the last 10 000).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.lock().calls.iter().cloned().collect()
    }

    /// The injected health reading for a server, if any.
    pub(super) fn injected_health(&self, server_id: &str) -> Option<HealthReading> {
        self.lock().health.get(server_id).cloned()
    }

    /// Consume one injected failure of `phase` for this server.
    pub(super) fn take_phase_fault(&self, server_id: &str, phase: &str) -> bool {
        let key = (server_id.to_string(), phase.to_string());
        let mut st = self.lock();
        match st.phase_faults.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                st.phase_faults.remove(&key);
                true
            }
            None => false,
        }
    }

    // ---- persistence -------------------------------------------------------------------

    /// Save the world now if it changed. Blocking; async callers use [`MockCloud::flush`].
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _saving = self.save_lock.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = {
            let mut st = self.lock();
            if !st.dirty {
                return Ok(());
            }
            st.dirty = false;
            serde_json::to_vec_pretty(&st.world).map_err(std::io::Error::other)
        };
        let written = bytes.and_then(|b| write_atomic(path, &b));
        if written.is_err() {
            self.lock().dirty = true;
        }
        written
    }

    /// Save now, off the async runtime's threads.
    pub async fn flush(self: &Arc<Self>) {
        let cloud = self.clone();
        let saved = tokio::task::spawn_blocking(move || cloud.save()).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "simulated cloud: save failed"),
            Err(err) => tracing::warn!(%err, "simulated cloud: save task failed"),
        }
    }

    /// Save in the background at most every 250 ms while the world changes. The task
    /// holds only a weak handle and ends when the cloud is dropped. Needs a tokio
    /// runtime; without one (or for an in-memory cloud) it does nothing.
    pub fn start_autosave(self: &Arc<Self>) {
        if self.path.is_none() || self.autosave.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.autosave.store(false, Ordering::SeqCst);
            return;
        };
        let weak = Arc::downgrade(self);
        let changed = self.changed.clone();
        runtime.spawn(async move {
            loop {
                changed.notified().await;
                // Debounce: a burst of changes is one save.
                tokio::time::sleep(SAVE_EVERY).await;
                let Some(cloud) = weak.upgrade() else { break };
                if cloud.lock().dirty {
                    cloud.flush().await;
                }
            }
        });
    }

    // ---- the simulated API -------------------------------------------------------------

    /// Receive one request: record it and decide its fault.
    fn receive(&self, method: &str, path: &str) -> (Fault, Duration) {
        let write = method != "GET";
        let mut st = self.lock();
        if st.calls.len() == CALL_HISTORY {
            st.calls.pop_front();
        }
        st.calls.push_back((method.to_string(), path.to_string()));
        // Draws happen for every call whatever the rates, so a seed gives the same
        // sequence of draws for the same sequence of calls.
        let fail_draw = st.rng.next_f64();
        let lost_draw = if write { st.rng.next_f64() } else { 1.0 };
        let forced = match st.fail_next {
            Some((n, kind)) if write => {
                st.fail_next = (n > 1).then_some((n - 1, kind));
                Some(kind)
            }
            _ => None,
        };
        let fault = match forced {
            Some(ErrorKind::ResponseLost) => Fault::Lost,
            Some(kind) => Fault::Fail(kind),
            None if fail_draw < st.error_rate => Fault::Fail(ErrorKind::Other),
            None if lost_draw < st.ambiguous_rate => Fault::Lost,
            None => Fault::None,
        };
        (fault, st.latency)
    }

    /// One request: wait `weight` times the latency, then apply under the lock.
    async fn serve<T>(
        &self,
        method: &'static str,
        path: String,
        weight: u32,
        apply: impl FnOnce(&mut State) -> ProviderResult<T>,
    ) -> ProviderResult<T> {
        let _permit = self.permits.acquire().await.map_err(|_| {
            ProviderError::new(DISPLAY_NAME, ErrorKind::Connection, "simulated API closed")
        })?;
        let (fault, latency) = self.receive(method, &path);
        tracing::trace!(method, path = %path, ?fault, "simulated request");
        tokio::time::sleep(latency * weight).await;
        if let Fault::Fail(kind) = fault {
            return Err(simulated(kind));
        }
        let result = {
            let mut st = self.lock();
            if method != "GET" {
                st.dirty = true;
            }
            apply(&mut st)
        };
        if method != "GET" {
            self.changed.notify_one();
        }
        match fault {
            // The request was applied (or refused); either way its answer is gone.
            Fault::Lost => Err(response_lost()),
            _ => result,
        }
    }

    async fn get<T>(&self, path: String, read: impl FnOnce(&World) -> T) -> ProviderResult<T> {
        self.serve("GET", path, 1, |st| Ok(read(&st.world))).await
    }

    pub(super) async fn account(&self) -> ProviderResult<()> {
        self.get("/account".into(), |_| ()).await
    }

    pub(super) async fn catalog(&self) -> ProviderResult<Catalog> {
        self.get("/catalog".into(), |_| world::catalog()).await
    }

    pub(super) async fn list_servers(
        &self,
        install: Option<&str>,
    ) -> ProviderResult<Vec<ObservedServer>> {
        let path = match install {
            Some(i) => format!("/servers?label_selector=legion-install={i}"),
            None => "/servers".into(),
        };
        let servers = self.get(path, |w| w.servers_of(install)).await?;
        let lag = self.lock().list_lag;
        if !lag.is_zero() {
            tokio::time::sleep(lag).await;
        }
        Ok(servers)
    }

    pub(super) async fn get_server(&self, id: &str) -> ProviderResult<Option<ObservedServer>> {
        self.get(format!("/servers/{id}"), |w| {
            w.server(id).map(world::SimServer::observed)
        })
        .await
    }

    pub(super) async fn create_server(&self, spec: &ServerSpec) -> ProviderResult<ObservedServer> {
        self.serve("POST", "/servers".into(), 3, |st| {
            let created = st.world.create_server(spec)?;
            st.create_count += 1;
            Ok(created)
        })
        .await
    }

    pub(super) async fn server_action(&self, id: &str, action: &Action) -> ProviderResult<()> {
        let weight = if matches!(action, Action::Rebuild { .. }) {
            2
        } else {
            1
        };
        let path = format!("/servers/{id}/actions/{}", action.path_name());
        self.serve("POST", path, weight, |st| st.world.act(id, action))
            .await
    }

    pub(super) async fn delete_server(&self, id: &str) -> ProviderResult<()> {
        self.serve("DELETE", format!("/servers/{id}"), 1, |st| {
            st.health.remove(id);
            st.world.delete_server(id)
        })
        .await
    }

    pub(super) async fn list_keys(&self) -> ProviderResult<Vec<MockKey>> {
        self.get("/ssh_keys".into(), |w| w.keys.clone()).await
    }

    pub(super) async fn get_key(&self, id: &str) -> ProviderResult<Option<MockKey>> {
        self.get(format!("/ssh_keys/{id}"), |w| {
            w.keys.iter().find(|k| k.id == id).cloned()
        })
        .await
    }

    pub(super) async fn create_key(&self, name: &str, public_key: &str) -> ProviderResult<String> {
        self.serve("POST", "/ssh_keys".into(), 1, |st| {
            st.world.create_key(name, public_key)
        })
        .await
    }

    pub(super) async fn delete_key(&self, id: &str) -> ProviderResult<()> {
        self.serve("DELETE", format!("/ssh_keys/{id}"), 1, |st| {
            st.world.delete_key(id)
        })
        .await
    }

    pub(super) async fn list_zones(&self) -> ProviderResult<Vec<ObservedZone>> {
        self.get("/zones".into(), |w| {
            w.zones.iter().map(world::SimZone::observed).collect()
        })
        .await
    }

    pub(super) async fn zone_named(&self, name: &str) -> ProviderResult<Option<ObservedZone>> {
        self.get(format!("/zones?name={name}"), |w| {
            w.zone_named(name).map(world::SimZone::observed)
        })
        .await
    }

    pub(super) async fn get_zone(&self, id: &str) -> ProviderResult<Option<ObservedZone>> {
        self.get(format!("/zones/{id}"), |w| {
            w.zone(id).map(world::SimZone::observed)
        })
        .await
    }

    pub(super) async fn create_zone(&self, name: &str) -> ProviderResult<ObservedZone> {
        self.serve("POST", "/zones".into(), 1, |st| st.world.create_zone(name))
            .await
    }

    pub(super) async fn delete_zone(&self, id: &str) -> ProviderResult<()> {
        self.serve("DELETE", format!("/zones/{id}"), 1, |st| {
            st.world.delete_zone(id)
        })
        .await
    }

    pub(super) async fn get_rrset(
        &self,
        zone_id: &str,
        name: &str,
        rtype: RecordType,
    ) -> ProviderResult<Option<RrSet>> {
        self.get(format!("/zones/{zone_id}/rrsets/{name}/{rtype}"), |w| {
            w.rrset(zone_id, name, rtype).cloned()
        })
        .await
    }

    pub(super) async fn set_rrset(&self, zone_id: &str, rrset: &RrSet) -> ProviderResult<()> {
        let path = format!("/zones/{zone_id}/rrsets/{}/{}", rrset.name, rrset.rtype);
        self.serve("PUT", path, 1, |st| st.world.set_rrset(zone_id, rrset))
            .await
    }

    pub(super) async fn delete_rrset(
        &self,
        zone_id: &str,
        name: &str,
        rtype: RecordType,
    ) -> ProviderResult<()> {
        let path = format!("/zones/{zone_id}/rrsets/{name}/{rtype}");
        self.serve("DELETE", path, 1, |st| {
            st.world.delete_rrset(zone_id, name, rtype)
        })
        .await
    }

    pub(super) async fn list_firewalls(
        &self,
        install: Option<&str>,
    ) -> ProviderResult<Vec<ObservedFirewall>> {
        let path = match install {
            Some(i) => format!("/firewalls?label_selector=legion-install={i}"),
            None => "/firewalls".into(),
        };
        self.get(path, |w| w.firewalls_of(install)).await
    }

    pub(super) async fn get_firewall(&self, id: &str) -> ProviderResult<Option<ObservedFirewall>> {
        self.get(format!("/firewalls/{id}"), |w| {
            w.firewall(id).map(world::SimFirewall::observed)
        })
        .await
    }

    pub(super) async fn create_firewall(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        rules: &[FirewallRule],
    ) -> ProviderResult<ObservedFirewall> {
        self.serve("POST", "/firewalls".into(), 1, |st| {
            st.world.create_firewall(name, labels, rules)
        })
        .await
    }

    pub(super) async fn set_rules(&self, id: &str, rules: &[FirewallRule]) -> ProviderResult<()> {
        self.serve("PUT", format!("/firewalls/{id}/rules"), 1, |st| {
            st.world.set_rules(id, rules)
        })
        .await
    }

    pub(super) async fn attach(&self, id: &str, server_ids: &[String]) -> ProviderResult<()> {
        let path = format!("/firewalls/{id}/actions/apply_to_resources");
        self.serve("POST", path, 1, |st| st.world.attach(id, server_ids))
            .await
    }

    pub(super) async fn detach(&self, id: &str, server_ids: &[String]) -> ProviderResult<()> {
        let path = format!("/firewalls/{id}/actions/remove_from_resources");
        self.serve("POST", path, 1, |st| st.world.detach(id, server_ids))
            .await
    }

    pub(super) async fn delete_firewall(&self, id: &str) -> ProviderResult<()> {
        self.serve("DELETE", format!("/firewalls/{id}"), 1, |st| {
            st.world.delete_firewall(id)
        })
        .await
    }

    pub(super) async fn get_domain(&self, name: &str) -> ProviderResult<ObservedDomain> {
        self.serve("GET", format!("/domains/{name}"), 1, |st| {
            let (domain, registered) = st.world.domain(name);
            st.dirty |= registered;
            Ok(domain)
        })
        .await
    }

    pub(super) async fn set_nameservers(&self, name: &str, ns: &[String]) -> ProviderResult<()> {
        let path = format!("/domains/{name}/nameservers");
        self.serve("PUT", path, 1, |st| st.world.set_nameservers(name, ns))
            .await
    }
}

impl Drop for MockCloud {
    fn drop(&mut self) {
        // Let the autosave task see the cloud is gone and end.
        self.changed.notify_one();
        // The last change before a shutdown that skipped `flush` is not lost.
        if let Err(err) = self.save() {
            tracing::warn!(%err, "simulated cloud: final save failed");
        }
    }
}

/// Replace `path` with `bytes` atomically: temp file in the same directory, fsync,
/// rename, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| FILE_NAME.into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        // 0600 from creation: the world names the operator's keys and servers.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // Durability of the rename itself; not every platform can open a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes `.<name>.<pid>.tmp` files whose writer is gone (a kill between create and
/// rename), as the state store does with its own; best effort, and never our own pid's.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let (prefix, own) = (format!(".{}.", name.to_string_lossy()), std::process::id());
    // Without /proc every writer would look dead.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    for entry in entries.flatten() {
        let file = entry.file_name();
        let pid = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix)?.strip_suffix(".tmp"));
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != own && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let x = SplitMix64(7).next_f64();
        assert!((0.0..1.0).contains(&x));
    }

    #[test]
    fn forced_faults_count_writes_only() {
        let cloud = MockCloud::new(1);
        cloud.fail_next_writes(2, ErrorKind::Timeout);
        assert_eq!(cloud.receive("GET", "/servers").0, Fault::None);
        assert_eq!(
            cloud.receive("POST", "/servers").0,
            Fault::Fail(ErrorKind::Timeout)
        );
        assert_eq!(
            cloud.receive("DELETE", "/servers/sv-1").0,
            Fault::Fail(ErrorKind::Timeout)
        );
        assert_eq!(cloud.receive("POST", "/servers").0, Fault::None);
        cloud.fail_next_writes(1, ErrorKind::ResponseLost);
        assert_eq!(cloud.receive("POST", "/servers").0, Fault::Lost);
        assert_eq!(cloud.calls().len(), 5);
    }

    #[test]
    fn rates_decide_faults() {
        let cloud = MockCloud::new(1);
        cloud.set_faults(1.0, 0.0);
        assert_eq!(cloud.receive("GET", "/x").0, Fault::Fail(ErrorKind::Other));
        cloud.set_faults(0.0, 1.0);
        assert_eq!(cloud.receive("GET", "/x").0, Fault::None);
        assert_eq!(cloud.receive("PUT", "/x").0, Fault::Lost);
    }

    #[test]
    fn open_creates_then_reloads_the_world() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let cloud = MockCloud::open(&path, 1).unwrap();
        assert!(path.exists());
        cloud.mutate(|st| st.world.create_key("k", "ssh-ed25519 AAAA").unwrap());
        cloud.save().unwrap();
        drop(cloud);
        let again = MockCloud::open(&path, 1).unwrap();
        assert_eq!(again.keys().len(), 1);
        std::fs::write(&path, b"{ not json").unwrap();
        let err = MockCloud::open(&path, 1).unwrap_err();
        assert!(err.message.contains("delete the file"), "{err}");
    }
}
