//! What a CLI command waits for, on stderr: a command still running after a second
//! prints one line per provider wait it finds in the provider status
//! ("waiting for Hetzner: rate limited until 10:42:13 UTC (37 s)"), so a rate-limited
//! `nodes add` is never silent for minutes.
//!
//! It only reads snapshots, and only once the command has run a second, so a quick command
//! through the daemon never subscribes to them. Stdout stays the command's own.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use crate::engine::snapshot::AppSnapshot;
use crate::link::Link;

/// How long a command runs before its waits are shown.
const QUIET: Duration = Duration::from_secs(1);

/// The lines to print for `snap`'s provider waits not printed yet (`shown` remembers them
/// by provider and end), each a wait with over a second left at `now_ms`.
pub(crate) fn new_waits(
    snap: &AppSnapshot,
    shown: &mut HashSet<(String, u64)>,
    now_ms: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    for p in &snap.providers {
        let Some(w) = &p.waiting else { continue };
        if w.until_ms < now_ms + 1000 || !shown.insert((p.id.clone(), w.until_ms)) {
            continue;
        }
        out.push(w.line(&p.display, now_ms));
    }
    out
}

/// Run `fut`; once it has taken a second, print each provider wait it runs into.
pub(crate) async fn during<T>(link: &Link, fut: impl Future<Output = T>) -> T {
    tokio::pin!(fut);
    tokio::select! {
        out = &mut fut => return out,
        () = tokio::time::sleep(QUIET) => {}
    }
    let mut rx = link.snapshots();
    let mut shown = HashSet::new();
    let mut open = true;
    loop {
        if open {
            let snap = rx.borrow_and_update().clone();
            for line in new_waits(&snap, &mut shown, crate::core::time::now_ms()) {
                eprintln!("legion: {}", crate::core::text::clean(&line));
            }
        }
        tokio::select! {
            out = &mut fut => return out,
            changed = rx.changed(), if open => open = changed.is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::LockState;
    use crate::providers::{ProviderHealth, ProviderStatus, ProviderWait};

    #[test]
    fn each_wait_over_a_second_is_printed_once() {
        let mut snap = AppSnapshot::empty("/h".into(), LockState::Unlocked);
        let status = |id: &str, until_ms| ProviderStatus {
            id: id.into(),
            kind: id.into(),
            display: "Hetzner".into(),
            health: ProviderHealth::RateLimited,
            last_error: None,
            in_flight: 0,
            calls: 1,
            writes: 0,
            rate_limit: None,
            rate_remaining: None,
            failures: 0,
            last_ok_ms: None,
            waiting: Some(ProviderWait {
                reason: "rate limited".into(),
                until_ms,
            }),
        };
        let now = 1_000_000;
        snap.providers = vec![status("hetzner", now + 37_000), status("ovh", now + 500)];
        let mut shown = HashSet::new();
        let lines = new_waits(&snap, &mut shown, now);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("waiting for Hetzner: rate limited until ")
                && lines[0].ends_with("(37 s)"),
            "{lines:?}"
        );
        assert!(new_waits(&snap, &mut shown, now + 10).is_empty());
        // A new wait (a later end) is a new line.
        snap.providers[0] = status("hetzner", now + 60_000);
        assert_eq!(new_waits(&snap, &mut shown, now + 20).len(), 1);
    }
}
