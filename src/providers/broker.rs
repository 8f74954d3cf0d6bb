//! The provider broker: one lane per configured provider.
//!
//! A lane queues that provider's calls with bounded concurrency, waits out rate limits,
//! keeps the provider's status (ok, degraded, rate-limited, last error) and is the home of
//! the write wrapper: every provider write goes through [`Lane::write`] or
//! [`Lane::delete`], which log it to the operation log and, on an ambiguous failure, read
//! the provider back and accept success only when the desired final state is visible.
//! Non-idempotent writes are never blindly repeated.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::error::{ErrorKind, ProviderError, ProviderResult};
use crate::core::oplog::{OpKind, OpLog, WriteOutcome};

/// How many times a read is repeated on `429`/`locked`, and a write on `429` (a rejected
/// write was not applied, so repeating it is safe).
const MAX_RETRIES: u32 = 5;
/// Read-back attempts after an ambiguous write, for providers that are briefly
/// eventually consistent.
const VERIFY_DELAYS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_secs(2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderHealth {
    Ok,
    Degraded,
    RateLimited,
}

impl std::fmt::Display for ProviderHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProviderHealth::Ok => "ok",
            ProviderHealth::Degraded => "degraded",
            ProviderHealth::RateLimited => "rate-limited",
        })
    }
}

/// What faces show about a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderStatus {
    pub id: String,
    pub kind: String,
    pub display: String,
    pub health: ProviderHealth,
    pub last_error: Option<String>,
    pub in_flight: u32,
    pub calls: u64,
    pub writes: u64,
    pub rate_limit: Option<u32>,
    pub rate_remaining: Option<u32>,
    /// Provider faults in a row (reset by any success): a run of them means the
    /// provider is not answering and its rows are stale.
    #[serde(default)]
    pub failures: u32,
    /// When a call last succeeded (ms since the epoch): what "stale since" names.
    #[serde(default)]
    pub last_ok_ms: Option<u64>,
    /// A wait in progress before the next call (rate limited): faces show it once it
    /// lasts over a second, so a slow command says what it waits for.
    #[serde(default)]
    pub waiting: Option<ProviderWait>,
}

/// A lane holding its calls back: why, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderWait {
    /// Why it waits ("rate limited").
    pub reason: String,
    /// When the wait ends (ms since the epoch).
    pub until_ms: u64,
}

impl ProviderWait {
    /// `waiting for Hetzner: rate limited until 10:42:13 UTC (37 s)`, at `now_ms`.
    pub fn line(&self, provider: &str, now_ms: u64) -> String {
        let left = self.until_ms.saturating_sub(now_ms).div_ceil(1000);
        format!("{} ({left} s)", self.until_line(provider))
    }

    /// `waiting for Hetzner: rate limited until 10:42:13 UTC`: without the countdown, for
    /// a dashboard that does not redraw while idle.
    pub fn until_line(&self, provider: &str) -> String {
        let unix = self.until_ms / 1000;
        format!(
            "waiting for {provider}: {} until {:02}:{:02}:{:02} UTC",
            self.reason,
            unix / 3600 % 24,
            unix / 60 % 60,
            unix % 60
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct RateInfo {
    limit: u32,
    remaining: u32,
    reset_at: Instant,
}

#[derive(Debug)]
struct LaneState {
    health: ProviderHealth,
    last_error: Option<String>,
    consecutive_failures: u32,
    last_ok_ms: Option<u64>,
    rate: Option<RateInfo>,
    in_flight: u32,
    calls: u64,
    writes: u64,
    /// The wait in progress and how many calls are in it (the longest one is shown).
    waiting: Option<ProviderWait>,
    waiters: u32,
}

/// A provider write as the operation log names it.
#[derive(Debug, Clone)]
pub struct WriteOp {
    pub method: &'static str,
    pub path: String,
    /// The Legion resource it serves (`node/web-1`), for per-resource log views.
    pub resource: Option<String>,
}

impl WriteOp {
    pub fn new(method: &'static str, path: impl Into<String>) -> WriteOp {
        WriteOp {
            method,
            path: path.into(),
            resource: None,
        }
    }

    pub fn for_resource(mut self, resource: Option<String>) -> WriteOp {
        self.resource = resource;
        self
    }
}

type OnChange = Arc<dyn Fn() + Send + Sync>;

pub struct Lane {
    id: String,
    kind: String,
    display: String,
    permits: Semaphore,
    state: Mutex<LaneState>,
    oplog: OpLog,
    on_change: OnChange,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("id", &self.id).finish()
    }
}

impl Lane {
    pub fn new(
        id: impl Into<String>,
        kind: impl Into<String>,
        display: impl Into<String>,
        concurrency: usize,
        oplog: OpLog,
        on_change: OnChange,
    ) -> Lane {
        Lane {
            id: id.into(),
            kind: kind.into(),
            display: display.into(),
            permits: Semaphore::new(concurrency.max(1)),
            state: Mutex::new(LaneState {
                health: ProviderHealth::Ok,
                last_error: None,
                consecutive_failures: 0,
                last_ok_ms: None,
                rate: None,
                in_flight: 0,
                calls: 0,
                writes: 0,
                waiting: None,
                waiters: 0,
            }),
            oplog,
            on_change,
        }
    }

    /// A lane with no status listener, for tests and one-shot CLI calls.
    pub fn detached(id: &str, display: &str, concurrency: usize, oplog: OpLog) -> Lane {
        Lane::new(id, id, display, concurrency, oplog, Arc::new(|| {}))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn oplog(&self) -> &OpLog {
        &self.oplog
    }

    pub fn status(&self) -> ProviderStatus {
        let st = self.lock();
        ProviderStatus {
            id: self.id.clone(),
            kind: self.kind.clone(),
            display: self.display.clone(),
            health: st.health,
            last_error: st.last_error.clone(),
            in_flight: st.in_flight,
            calls: st.calls,
            writes: st.writes,
            rate_limit: st.rate.map(|r| r.limit),
            rate_remaining: st.rate.map(|r| r.remaining),
            failures: st.consecutive_failures,
            last_ok_ms: st.last_ok_ms,
            waiting: st.waiting.clone(),
        }
    }

    /// Sleep `wait` before the next call, with the wait in the lane's status (and the
    /// status listener told) while it lasts, so faces can say what a command waits for.
    async fn hold_back(&self, reason: &str, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        let until_ms = crate::core::time::now_ms() + wait.as_millis() as u64;
        {
            let mut st = self.lock();
            st.waiters += 1;
            if st.waiting.as_ref().is_none_or(|w| w.until_ms < until_ms) {
                st.waiting = Some(ProviderWait {
                    reason: reason.to_string(),
                    until_ms,
                });
            }
        }
        (self.on_change)();
        tokio::time::sleep(wait).await;
        let cleared = {
            let mut st = self.lock();
            st.waiters = st.waiters.saturating_sub(1);
            let done = st.waiters == 0;
            if done {
                st.waiting = None;
            }
            done
        };
        if cleared {
            (self.on_change)();
        }
    }

    /// Near the rate limit (under a tenth of the budget left) or degraded: the
    /// observation scheduler backs off.
    pub fn should_back_off(&self) -> bool {
        let st = self.lock();
        st.health != ProviderHealth::Ok
            || st
                .rate
                .is_some_and(|r| r.limit > 0 && r.remaining * 10 < r.limit)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        // A poisoned lane state is still a valid status record.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rate-limit headers from a response (`RateLimit-Limit`, `-Remaining`, `-Reset`).
    pub fn note_rate_limit(&self, limit: u32, remaining: u32, reset_in: Duration) {
        let changed = {
            let mut st = self.lock();
            let before = st.rate.map(|r| r.remaining);
            st.rate = Some(RateInfo {
                limit,
                remaining,
                reset_at: Instant::now() + reset_in,
            });
            before != Some(remaining) && (remaining == 0 || before == Some(0))
        };
        if changed {
            (self.on_change)();
        }
    }

    /// Run a read with the lane's concurrency bound; repeats on rate limit and `locked`.
    pub async fn read<T, F, Fut>(&self, what: &str, mut call: F) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<T>>,
    {
        let mut attempt = 0;
        loop {
            let result = self.run(&mut call, false).await;
            match result {
                Err(e)
                    if matches!(e.kind, ErrorKind::RateLimited | ErrorKind::Locked)
                        && attempt < MAX_RETRIES =>
                {
                    attempt += 1;
                    let wait = e.retry_after.unwrap_or(Duration::from_secs(1 << attempt));
                    tracing::debug!(provider = %self.id, what, ?wait, "read backs off");
                    self.hold_back(backoff_reason(&e), wait).await;
                }
                other => return other,
            }
        }
    }

    /// A provider write. `verify` reads the provider back after an ambiguous failure and
    /// returns the result only when the desired final state is visible; without a
    /// verifier an ambiguous failure is returned as it is.
    pub async fn write<T, F, Fut, V, VFut>(
        &self,
        op: WriteOp,
        mut call: F,
        verify: Option<V>,
    ) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<T>>,
        V: FnMut() -> VFut,
        VFut: Future<Output = ProviderResult<Option<T>>>,
    {
        let started = Instant::now();
        let mut attempt = 0;
        let first = loop {
            match self.run(&mut call, true).await {
                // Refused before anything was applied (over the rate limit, or the
                // resource busy with another action): repeating is safe. An ambiguous
                // failure is never repeated; it is verified below.
                Err(e)
                    if matches!(e.kind, ErrorKind::RateLimited | ErrorKind::Locked)
                        && attempt < MAX_RETRIES =>
                {
                    attempt += 1;
                    let wait = e.retry_after.unwrap_or(Duration::from_secs(1 << attempt));
                    self.hold_back(backoff_reason(&e), wait).await;
                }
                other => break other,
            }
        };
        let result = match first {
            Err(err) if err.is_ambiguous() => match verify {
                Some(mut verify) => match self.verify_after(&mut verify).await {
                    Some(value) => Ok((value, WriteOutcome::Recovered, Some(err))),
                    None => Err(err),
                },
                None => Err(err),
            },
            Ok(v) => Ok((v, WriteOutcome::Ok, None)),
            Err(err) => Err(err),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((value, outcome, ambiguous)) => {
                let message = match &ambiguous {
                    Some(e) => format!(
                        "{} {} recovered after an ambiguous failure ({e}): the provider shows the desired state",
                        op.method, op.path
                    ),
                    None => format!("{} {} ok", op.method, op.path),
                };
                self.log_write(&op, duration_ms, outcome, message);
                Ok(value)
            }
            Err(err) => {
                self.log_write(
                    &op,
                    duration_ms,
                    WriteOutcome::Failed,
                    format!("{} {} failed: {err}", op.method, op.path),
                );
                Err(err)
            }
        }
    }

    /// A delete: "already gone" is success, and an ambiguous failure is resolved by
    /// asking whether the resource still exists.
    pub async fn delete<F, Fut, E, EFut>(
        &self,
        op: WriteOp,
        mut call: F,
        mut exists: E,
    ) -> ProviderResult<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<()>>,
        E: FnMut() -> EFut,
        EFut: Future<Output = ProviderResult<bool>>,
    {
        let call = move || {
            let fut = call();
            async move {
                match fut.await {
                    Err(e) if e.is_not_found() => Ok(()),
                    other => other,
                }
            }
        };
        let verify = move || {
            let fut = exists();
            async move { fut.await.map(|still_there| (!still_there).then_some(())) }
        };
        self.write(op, call, Some(verify)).await
    }

    async fn verify_after<T, V, VFut>(&self, verify: &mut V) -> Option<T>
    where
        V: FnMut() -> VFut,
        VFut: Future<Output = ProviderResult<Option<T>>>,
    {
        for delay in VERIFY_DELAYS {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match self
                .read("verify after ambiguous write", &mut *verify)
                .await
            {
                Ok(Some(v)) => return Some(v),
                Ok(None) => {}
                Err(e) => tracing::debug!(provider = %self.id, %e, "read-back failed"),
            }
        }
        None
    }

    fn log_write(&self, op: &WriteOp, duration_ms: u64, outcome: WriteOutcome, message: String) {
        self.oplog.record(
            op.resource.clone(),
            OpKind::ProviderWrite {
                provider: self.id.clone(),
                method: op.method.to_string(),
                path: op.path.clone(),
                duration_ms,
                outcome,
            },
            message,
        );
    }

    async fn run<T, F, Fut>(&self, call: &mut F, is_write: bool) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<T>>,
    {
        let _permit = self.permits.acquire().await.map_err(|_| {
            ProviderError::new(&self.display, ErrorKind::Other, "provider lane closed")
        })?;
        self.wait_for_budget().await;
        {
            let mut st = self.lock();
            st.in_flight += 1;
            st.calls += 1;
            if is_write {
                st.writes += 1;
            }
        }
        let result = call().await;
        let changed = {
            let mut st = self.lock();
            st.in_flight = st.in_flight.saturating_sub(1);
            let before = (st.health, st.last_error.clone(), st.consecutive_failures);
            match &result {
                Ok(_) => {
                    st.consecutive_failures = 0;
                    st.health = ProviderHealth::Ok;
                    // Healthy again: the last error is history, not the current state.
                    st.last_error = None;
                    st.last_ok_ms = Some(crate::core::time::now_ms());
                }
                Err(e) if e.kind == ErrorKind::RateLimited => {
                    st.health = ProviderHealth::RateLimited;
                    st.last_error = Some(e.to_string());
                    if let Some(after) = e.retry_after {
                        let limit = st.rate.map(|r| r.limit).unwrap_or(0);
                        st.rate = Some(RateInfo {
                            limit,
                            remaining: 0,
                            reset_at: Instant::now() + after,
                        });
                    }
                }
                Err(e) if e.is_provider_fault() || e.kind == ErrorKind::Unauthorized => {
                    st.consecutive_failures += 1;
                    st.health = ProviderHealth::Degraded;
                    st.last_error = Some(e.to_string());
                }
                // Errors in what was asked (not found, invalid input) say nothing about
                // the provider's health.
                Err(_) => {}
            }
            before != (st.health, st.last_error.clone(), st.consecutive_failures)
        };
        if changed {
            (self.on_change)();
        }
        result
    }

    async fn wait_for_budget(&self) {
        let wait_until = {
            let st = self.lock();
            match st.rate {
                Some(r) if r.remaining == 0 && r.reset_at > Instant::now() => Some(r.reset_at),
                _ => None,
            }
        };
        if let Some(at) = wait_until {
            let wait = at.saturating_duration_since(Instant::now());
            self.hold_back("rate limited (no requests left)", wait)
                .await;
        }
    }
}

/// Why a refused call waits before it is repeated.
fn backoff_reason(e: &ProviderError) -> &'static str {
    match e.kind {
        ErrorKind::Locked => "the resource is busy (locked)",
        _ => "rate limited",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn lane() -> Lane {
        Lane::detached("t", "Test", 2, OpLog::new(100))
    }

    fn err(kind: ErrorKind) -> ProviderError {
        ProviderError::new("Test", kind, "boom")
    }

    #[tokio::test(start_paused = true)]
    async fn ambiguous_write_is_not_repeated_and_recovers_from_read_back() {
        let lane = lane();
        let calls = AtomicU32::new(0);
        let out: ProviderResult<u32> = lane
            .write(
                WriteOp::new("POST", "/servers"),
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err(err(ErrorKind::ResponseLost)) }
                },
                Some(|| async { Ok(Some(7)) }),
            )
            .await;
        assert_eq!(out, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let log = lane.oplog().recent(10, None);
        assert!(matches!(
            &log[0].kind,
            OpKind::ProviderWrite {
                outcome: WriteOutcome::Recovered,
                ..
            }
        ));
        // The read-back succeeded, so the provider answers again.
        assert_eq!(lane.status().health, ProviderHealth::Ok);
        assert_eq!(lane.status().writes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ambiguous_write_without_visible_state_fails() {
        let lane = lane();
        let out: ProviderResult<u32> = lane
            .write(
                WriteOp::new("POST", "/servers"),
                || async { Err(err(ErrorKind::Timeout)) },
                Some(|| async { Ok(None) }),
            )
            .await;
        assert_eq!(out.map_err(|e| e.kind), Err(ErrorKind::Timeout));
    }

    #[tokio::test(start_paused = true)]
    async fn definite_errors_skip_the_read_back() {
        let lane = lane();
        let verified = AtomicU32::new(0);
        let out: ProviderResult<u32> = lane
            .write(
                WriteOp::new("POST", "/servers"),
                || async { Err(err(ErrorKind::InvalidInput)) },
                Some(|| {
                    verified.fetch_add(1, Ordering::SeqCst);
                    async { Ok(Some(1)) }
                }),
            )
            .await;
        assert!(out.is_err());
        assert_eq!(verified.load(Ordering::SeqCst), 0);
        assert_eq!(lane.status().health, ProviderHealth::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn delete_accepts_not_found_and_checks_absence_after_ambiguity() {
        let lane = lane();
        let gone = lane
            .delete(
                WriteOp::new("DELETE", "/servers/1"),
                || async { Err(err(ErrorKind::NotFound)) },
                || async { Ok(true) },
            )
            .await;
        assert_eq!(gone, Ok(()));
        let still_there = lane
            .delete(
                WriteOp::new("DELETE", "/servers/1"),
                || async { Err(err(ErrorKind::Unavailable)) },
                || async { Ok(true) },
            )
            .await;
        assert!(still_there.is_err());
        let recovered = lane
            .delete(
                WriteOp::new("DELETE", "/servers/1"),
                || async { Err(err(ErrorKind::Unavailable)) },
                || async { Ok(false) },
            )
            .await;
        assert_eq!(recovered, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_write_waits_and_repeats() {
        let lane = lane();
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let out: ProviderResult<u32> = lane
            .write(
                WriteOp::new("POST", "/ssh_keys"),
                || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            let mut e = err(ErrorKind::RateLimited);
                            e.retry_after = Some(Duration::from_secs(3));
                            Err(e)
                        } else {
                            Ok(1)
                        }
                    }
                },
                None::<fn() -> std::future::Ready<ProviderResult<Option<u32>>>>,
            )
            .await;
        assert_eq!(out, Ok(1));
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert_eq!(lane.status().health, ProviderHealth::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let lane = Arc::new(lane());
        let peak = Arc::new(AtomicU32::new(0));
        let now = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (lane, peak, now) = (lane.clone(), peak.clone(), now.clone());
            tasks.push(tokio::spawn(async move {
                lane.read("x", || {
                    let (peak, now) = (peak.clone(), now.clone());
                    async move {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, ProviderError>(())
                    }
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_provider_forgets_its_last_error() {
        let lane = lane();
        for _ in 0..3 {
            let out: ProviderResult<()> = lane
                .read("x", || async { Err(err(ErrorKind::Unavailable)) })
                .await;
            assert!(out.is_err());
        }
        let st = lane.status();
        assert_eq!(st.health, ProviderHealth::Degraded);
        assert_eq!(st.failures, 3);
        assert!(st.last_error.is_some());
        assert_eq!(st.last_ok_ms, None);
        lane.read("x", || async { Ok::<_, ProviderError>(()) })
            .await
            .unwrap();
        let st = lane.status();
        assert_eq!(st.health, ProviderHealth::Ok);
        assert_eq!(st.failures, 0);
        assert_eq!(st.last_error, None, "the error is history once it answers");
        assert!(st.last_ok_ms.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_read_shows_what_it_waits_for_until_it_ends() {
        let lane = Arc::new(lane());
        let calls = Arc::new(AtomicU32::new(0));
        let task = {
            let (lane, calls) = (lane.clone(), calls.clone());
            tokio::spawn(async move {
                lane.read("catalog", || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            let mut e = err(ErrorKind::RateLimited);
                            e.retry_after = Some(Duration::from_secs(37));
                            Err(e)
                        } else {
                            Ok(1)
                        }
                    }
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wait = lane.status().waiting.expect("the wait is in the status");
        assert_eq!(wait.reason, "rate limited");
        let left = wait.until_ms.saturating_sub(crate::core::time::now_ms());
        assert!((30_000..=37_000).contains(&left), "{left} ms left");
        assert_eq!(task.await.unwrap(), Ok(1));
        assert_eq!(
            lane.status().waiting,
            None,
            "cleared once the call went through"
        );
        let w = ProviderWait {
            reason: "rate limited".into(),
            // 10:42:13 UTC on some day.
            until_ms: (20_000 * 86_400 + 10 * 3600 + 42 * 60 + 13) * 1000,
        };
        assert_eq!(
            w.line("Hetzner", w.until_ms - 36_400),
            "waiting for Hetzner: rate limited until 10:42:13 UTC (37 s)"
        );
    }
}
