//! The observation scheduler: reads each provider's inventory on an adaptive interval and
//! feeds the readings to the actors.
//!
//! Short while an operation is in flight on the provider, long when idle, doubling up to
//! a cap while the provider is degraded or near its rate limit. An out-of-band change
//! (a server stopped in the provider's console, deleted by someone else) reaches the
//! snapshot within one interval and is shown, never silently overwritten. The catalog
//! refreshes on its own, slower interval.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::actors::Connected;
use super::actors::machine::Machine;
use super::actors::node::NodeMsg;
use super::state::change::Key;
use super::state::model::ServerReading;
use super::supervisor::Supervisor;
use crate::core::time::now_ms;
use crate::providers::ObservedServer;

/// Read one provider's servers and zones once and hand them to the actors.
pub async fn observe_provider(
    sup: &Supervisor,
    provider: &Connected,
) -> Result<(), crate::providers::ProviderError> {
    let env = sup.env();
    let Some(compute) = provider.api.compute() else {
        return Ok(());
    };
    let ids: Vec<String> = env.cell.read(|s| {
        s.tracked
            .nodes
            .values()
            .filter(|t| t.provider == provider.id)
            .filter_map(|t| t.server_id.clone())
            .collect()
    });
    let servers = compute.observe(&env.install_id, &ids).await?;
    let tracked: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let now = now_ms();
    // By id: a linear search per node made a round O(nodes x servers).
    let servers: HashMap<&str, &ObservedServer> =
        servers.iter().map(|sv| (sv.id.as_str(), sv)).collect();
    // Nodes of this provider whose reading changed. Only servers known before the
    // reading began: one created while it was under way (a list of several zones, each
    // read through a busy lane, can span seconds) may be absent from it without being
    // gone; the next reading speaks for it. An unchanged reading is not written: its
    // time alone is not worth a save.
    let changed: Vec<(String, ServerReading)> = env.cell.read(|s| {
        s.tracked
            .nodes
            .iter()
            .filter_map(|(name, t)| {
                let id = t
                    .server_id
                    .as_ref()
                    .filter(|id| t.provider == provider.id && tracked.contains(id.as_str()))?;
                let server = servers.get(id.as_str()).map(|sv| (*sv).clone());
                let unchanged = s
                    .observed
                    .servers
                    .get(name)
                    .is_some_and(|old| old.server == server);
                (!unchanged).then(|| (name.clone(), ServerReading { at_ms: now, server }))
            })
            .collect()
    });
    if !changed.is_empty() {
        let keys: Vec<Key> = changed
            .iter()
            .map(|(name, _)| Key::ObservedServer(name.clone()))
            .collect();
        env.cell.change(&keys, |s| {
            for (name, r) in changed {
                s.observed.servers.insert(name, r);
            }
        });
    }
    // Every node gets told, changed or not: an unchanged reading still drives health.
    let names: Vec<String> = env.cell.read(|s| {
        s.tracked
            .nodes
            .iter()
            .filter(|(_, t)| t.provider == provider.id)
            .map(|(n, _)| n.clone())
            .collect()
    });
    for name in names {
        if let Some(h) = sup.node(&name) {
            h.send(NodeMsg::Observed);
        }
    }
    if let Some(fw) = provider.api.firewall() {
        let firewalls = fw.list_firewalls(&env.install_id).await?;
        let differs = env.cell.read(|s| {
            firewalls
                .iter()
                .any(|f| s.observed.firewalls.get(&f.name) != Some(f))
        });
        if differs {
            let keys: Vec<Key> = firewalls
                .iter()
                .map(|f| Key::ObservedFirewall(f.name.clone()))
                .collect();
            env.cell.change(&keys, |s| {
                for f in firewalls {
                    s.observed.firewalls.insert(f.name.clone(), f);
                }
            });
        }
    }
    if let Some(dns) = provider.api.dns() {
        let planned: Vec<String> = env.cell.read(|s| {
            s.plan
                .zones
                .iter()
                .filter(|(_, z)| z.provider == provider.id)
                .map(|(n, _)| n.clone())
                .collect()
        });
        if !planned.is_empty() {
            let zones = dns.list_zones().await?;
            let differs = env.cell.read(|s| {
                zones
                    .iter()
                    .filter(|z| planned.contains(&z.name))
                    .any(|z| s.observed.zones.get(&z.name) != Some(z))
            });
            if differs {
                let zones: Vec<_> = zones
                    .into_iter()
                    .filter(|z| planned.contains(&z.name))
                    .collect();
                let keys: Vec<Key> = zones
                    .iter()
                    .map(|z| Key::ObservedZone(z.name.clone()))
                    .collect();
                env.cell.change(&keys, |s| {
                    for z in zones {
                        s.observed.zones.insert(z.name.clone(), z);
                    }
                });
            }
        }
    }
    Ok(())
}

fn busy_on(sup: &Supervisor, provider: &str) -> bool {
    let env = sup.env();
    let names: Vec<String> = env.cell.read(|s| {
        s.tracked
            .nodes
            .iter()
            .filter(|(_, t)| t.provider == provider)
            .map(|(n, _)| n.clone())
            .collect()
    });
    // A node between states (after a reinstall's power-on, say) keeps the short
    // interval too, so its reading converges to running and its health is checked
    // again without waiting for an idle round or an apply.
    names.iter().any(|n| {
        env.board.node(n).is_some_and(|s| {
            s.operation.is_some()
                || matches!(
                    s.machine,
                    Machine::Starting
                        | Machine::Stopping
                        | Machine::Rebooting
                        | Machine::Reinstalling
                        | Machine::Provisioning
                )
        })
    })
}

/// The interval until the next reading.
pub fn next_interval(
    busy: bool,
    backing_off: bool,
    backoff_level: u32,
    t: &super::actors::Timings,
) -> Duration {
    let base = if busy { t.observe_busy } else { t.observe_idle };
    if backing_off {
        let factor = 1u32 << backoff_level.min(10);
        (base * factor).min(t.observe_max_backoff)
    } else {
        base
    }
}

/// One task per provider, ending when the supervisor is gone or on abort.
pub fn spawn(sup: &Arc<Supervisor>, provider: Arc<Connected>) -> JoinHandle<()> {
    let weak = Arc::downgrade(sup);
    tokio::spawn(async move {
        let mut backoff = 0u32;
        let mut next_catalog = Instant::now();
        loop {
            let Some(sup) = weak.upgrade() else { return };
            let timings = sup.env().timings.clone();
            if Instant::now() >= next_catalog {
                if let Err(e) = provider.catalog(true).await {
                    tracing::warn!(provider = %provider.id, %e, "catalog refresh failed");
                }
                next_catalog = Instant::now() + timings.catalog_refresh;
            }
            match observe_provider(&sup, &provider).await {
                Ok(()) => {
                    backoff = if provider.lane.should_back_off() {
                        backoff + 1
                    } else {
                        0
                    }
                }
                Err(e) => {
                    backoff += 1;
                    tracing::warn!(provider = %provider.id, %e, "observation failed");
                }
            }
            let wait = next_interval(busy_on(&sup, &provider.id), backoff > 0, backoff, &timings);
            drop(sup);
            tokio::time::sleep(wait).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::actors::Timings;

    #[test]
    fn interval_adapts() {
        let t = Timings::default();
        assert_eq!(next_interval(true, false, 0, &t), t.observe_busy);
        assert_eq!(next_interval(false, false, 0, &t), t.observe_idle);
        assert_eq!(next_interval(false, true, 1, &t), t.observe_idle * 2);
        assert_eq!(next_interval(false, true, 30, &t), t.observe_max_backoff);
    }
}
