//! The server's limits on a real socket with an engine on an empty (locked) home:
//! `status` and `subscribe` need no unlocked state. Deadlines are shortened through
//! [`Limits`], the one thing a test changes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::*;
use crate::engine::EngineConfig;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Served {
    _dir: tempfile::TempDir,
    endpoint: Endpoint,
    daemon: Arc<Daemon>,
}

async fn serve(limits: Limits) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let endpoint = Endpoint::with_runtime_dir(&home, None);
    let listener = bind(&endpoint).unwrap();
    let engine = Engine::start(EngineConfig::new(home));
    let daemon = Daemon::with_limits(engine, Secret::new(TOKEN), endpoint.clone(), limits);
    let d = daemon.clone();
    tokio::spawn(async move { d.serve(listener).await });
    Served {
        _dir: dir,
        endpoint,
        daemon,
    }
}

struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    async fn connect(s: &Served) -> Client {
        let (r, w) = UnixStream::connect(&s.endpoint.socket)
            .await
            .unwrap()
            .into_split();
        Client {
            r: BufReader::new(r),
            w,
        }
    }

    async fn send(&mut self, v: &Value) {
        self.w.write_all(format!("{v}\n").as_bytes()).await.unwrap();
    }

    /// The next line within 5 s; `None` at the end of the stream.
    async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), self.r.read_line(&mut line))
            .await
            .expect("a line or the end within 5 s")
            .unwrap_or(0);
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }

    /// The next reply (not an event).
    async fn reply(&mut self) -> Value {
        loop {
            let v = self.recv().await.expect("a reply");
            if v.get("event").is_none() {
                return v;
            }
        }
    }
}

fn status(id: u64) -> Value {
    json!({"id": id, "token": TOKEN, "method": "status"})
}

fn short() -> Limits {
    Limits {
        auth_deadline: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        max_unauthenticated: 4,
        evict_after: Duration::ZERO,
        rate: 5000,
    }
}

#[tokio::test]
async fn silent_connections_are_evicted_or_time_out_and_the_owner_gets_in() {
    let s = serve(short()).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(Client::connect(&s).await);
    }
    // The owner, after the flood: served at once.
    let mut owner = Client::connect(&s).await;
    owner.send(&status(1)).await;
    assert_eq!(owner.reply().await["id"], 1);
    assert_eq!(
        s.daemon.status().clients,
        1,
        "only the owner counts as a client"
    );
    // The oldest silent ones were evicted as newer ones came; the newest time out.
    let first = silent[0].recv().await.unwrap();
    assert_eq!(first["error"]["code"], "busy", "{first}");
    assert!(silent[0].recv().await.is_none());
    let last = silent[19].recv().await.unwrap();
    assert_eq!(last["error"]["code"], "unauthorized", "{last}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("300 ms"),
        "{last}"
    );
    assert!(silent[19].recv().await.is_none());
    // A garbage first line is not a second chance: closed.
    let mut junk = Client::connect(&s).await;
    junk.w.write_all(b"hello\n").await.unwrap();
    assert_eq!(junk.recv().await.unwrap()["error"]["code"], "bad_request");
    assert!(junk.recv().await.is_none());
}

#[tokio::test]
async fn a_burst_of_clients_connecting_at_once_is_not_evicted() {
    let s = serve(Limits {
        max_unauthenticated: 4,
        evict_after: Duration::from_secs(2),
        ..short()
    })
    .await;
    let mut burst = Vec::new();
    for _ in 0..20 {
        burst.push(Client::connect(&s).await);
    }
    for (id, c) in burst.iter_mut().enumerate() {
        c.send(&status(id as u64)).await;
    }
    for (id, c) in burst.iter_mut().enumerate() {
        assert_eq!(c.reply().await["id"], id as u64);
    }
    assert_eq!(s.daemon.status().clients, 20);
}

#[tokio::test]
async fn idle_authenticated_connections_close_but_watchers_stay() {
    let s = serve(short()).await;
    let mut idle = Client::connect(&s).await;
    idle.send(&status(1)).await;
    idle.reply().await;
    let mut watcher = Client::connect(&s).await;
    watcher
        .send(&json!({"id": 2, "token": TOKEN, "method": "subscribe", "params": {"logs": true}}))
        .await;
    assert_eq!(watcher.reply().await["id"], 2);
    let closed = idle.recv().await.unwrap();
    assert_eq!(closed["error"]["code"], "unavailable", "{closed}");
    assert!(idle.recv().await.is_none());
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Still served, over twice the idle timeout later.
    watcher.send(&status(3)).await;
    assert_eq!(watcher.reply().await["id"], 3);
}

#[tokio::test]
async fn subscriptions_count_against_the_in_flight_limit() {
    let s = serve(Limits::default()).await;
    let mut c = Client::connect(&s).await;
    let n = 200u64;
    for id in 0..n {
        c.send(&json!({"id": id, "token": TOKEN, "method": "subscribe", "params": {"snapshots": true}}))
            .await;
    }
    let (mut ok, mut busy) = (0, 0);
    for _ in 0..n {
        let r = c.reply().await;
        match r["error"]["code"].as_str() {
            None => ok += 1,
            Some("busy") => busy += 1,
            Some(other) => panic!("{other}: {r}"),
        }
    }
    assert_eq!(
        (ok, busy),
        (MAX_SUBSCRIPTIONS, n as usize - MAX_SUBSCRIPTIONS)
    );
    // Calls still have room beside the subscriptions.
    c.send(&status(999)).await;
    assert_eq!(c.reply().await["id"], 999);
}

#[test]
fn the_bucket_lets_a_burst_through_then_paces() {
    let t0 = Instant::now();
    let mut b = Bucket::new(10);
    b.at = t0;
    for _ in 0..10 {
        assert_eq!(b.delay(t0), Duration::ZERO);
    }
    assert_eq!(b.delay(t0), Duration::from_millis(100));
    // A second later (after waiting its turn) ten more tokens have come.
    let later = t0 + Duration::from_millis(1100);
    for _ in 0..10 {
        assert_eq!(b.delay(later), Duration::ZERO);
    }
    assert!(b.delay(later) > Duration::ZERO);
}

#[test]
fn a_debt_under_a_timer_tick_is_carried_not_slept() {
    let t0 = Instant::now();
    let mut b = Bucket::new(10_000);
    b.at = t0;
    for _ in 0..10_000 {
        assert_eq!(b.delay(t0), Duration::ZERO);
    }
    // Nine tokens short is 0.9 ms: carried. About the tenth makes a whole tick, slept at
    // once (floating point may put it on the eleventh).
    for _ in 0..9 {
        assert_eq!(b.delay(t0), Duration::ZERO);
    }
    let d = match b.delay(t0) {
        d if d.is_zero() => b.delay(t0),
        d => d,
    };
    assert!(
        d >= Duration::from_micros(999) && d <= Duration::from_micros(1101),
        "{d:?}"
    );
}
