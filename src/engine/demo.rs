//! The demo's plan: a small cluster over two regions of the simulated cloud, two DNS
//! zones and a firewall set, so a newcomer sees live activity within seconds.

use super::plan::{NodeRequest, PlanEdit};
use super::state::model::{ClusterPlan, RecordPlan, RecordValue};
use super::{Engine, EngineError};
use crate::providers::{Credentials, FirewallRule, Protocol, RecordType};

pub const CLUSTER: &str = "demo";
pub const CLUSTER_ZONE: &str = "demo.legion.test";
pub const SITE_ZONE: &str = "example.test";

/// The demo roles' install script: what Legion's default install does, with the role.
const ROLE_SCRIPT: &str = r#"#!/bin/sh
set -eu
mkdir -p "$LEGION_ROOT/var/lib/legion"
cp "$LEGION_ROOT/etc/legion/node.json" "$LEGION_ROOT/var/lib/legion/identity.json"
date -u +%Y-%m-%dT%H:%M:%SZ > "$LEGION_ROOT/var/lib/legion/installed"
echo "legion demo: $LEGION_NODE installed as $LEGION_ROLE"
"#;

/// Configure the simulated cloud and plan the demo fleet (does not apply).
pub async fn seed(engine: &Engine, latency_ms: u64) -> Result<(), EngineError> {
    // The demo's roles have install scripts of their own (Legion's default install), as
    // every planned role must.
    let roles = engine.home().join("roles");
    for role in ["gateway", "worker"] {
        let script = roles.join(format!("{role}.sh"));
        if !script.exists() {
            std::fs::create_dir_all(&roles)
                .and_then(|()| std::fs::write(&script, ROLE_SCRIPT))
                .map_err(|e| EngineError::Home {
                    path: script.clone(),
                    detail: format!("writing the demo's role script: {e}"),
                })?;
        }
    }
    let mut creds = Credentials::new();
    creds.insert("latency_ms".into(), latency_ms.to_string().into());
    engine.configure_provider("mock".into(), creds).await?;
    engine
        .edit_plan(PlanEdit::UpsertCluster {
            name: CLUSTER.into(),
            cluster: ClusterPlan {
                dns_zone: Some(CLUSTER_ZONE.into()),
                peer_ports: vec![4413],
            },
        })
        .await?;
    for (i, region) in [
        "sim-east", "sim-east", "sim-east", "sim-west", "sim-west", "sim-west",
    ]
    .iter()
    .enumerate()
    {
        let role = if i.is_multiple_of(3) {
            "gateway"
        } else {
            "worker"
        };
        engine
            .upsert_node(NodeRequest {
                name: format!("{}-{}", &region[4..], i + 1),
                provider: "mock".into(),
                cluster: Some(CLUSTER.into()),
                role: Some(role.into()),
                region: Some((*region).into()),
                ..NodeRequest::default()
            })
            .await?;
    }
    for zone in [CLUSTER_ZONE, SITE_ZONE] {
        engine
            .edit_plan(PlanEdit::UpsertZone {
                name: zone.into(),
                provider: "mock".into(),
            })
            .await?;
    }
    for record in [
        RecordPlan {
            name: "www".into(),
            rtype: RecordType::A,
            ttl: 300,
            value: RecordValue::NodeAddress("east-1".into()),
        },
        RecordPlan {
            name: "@".into(),
            rtype: RecordType::TXT,
            ttl: 3600,
            value: RecordValue::Literal("v=spf1 -all".into()),
        },
    ] {
        engine
            .edit_plan(PlanEdit::UpsertRecord {
                zone: SITE_ZONE.into(),
                record,
            })
            .await?;
    }
    engine
        .edit_plan(PlanEdit::AddFirewallRule {
            cluster: CLUSTER.into(),
            rule: FirewallRule {
                protocol: Protocol::Tcp,
                port: Some("22".into()),
                sources: vec!["0.0.0.0/0".into(), "::/0".into()],
                description: "ssh".into(),
            },
        })
        .await?;
    Ok(())
}
