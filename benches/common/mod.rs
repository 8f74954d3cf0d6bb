//! A synthetic state of `n` nodes, as a busy fleet looks: planned, tracked with a finished
//! execution, and observed.

#![allow(dead_code)]

use std::collections::BTreeMap;

use legion::engine::phases_for;
use legion::engine::state::model::{
    ClusterPlan, Execution, ExecutionKind, NodePlan, ServerReading, State, TrackedNode,
};
use legion::providers::{BootMode, LABEL_NODE, ObservedServer, ServerStatus};

pub fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

pub fn state_with_nodes(n: usize) -> State {
    let mut s = State::new("0123456789abcdef".into());
    s.plan.clusters.insert(
        "fleet".into(),
        ClusterPlan {
            dns_zone: Some("fleet.example.test".into()),
            peer_ports: vec![4413],
        },
    );
    for i in 0..n {
        let name = node_name(i);
        let uid = format!("{i:016x}");
        let region = if i.is_multiple_of(2) {
            "sim-east"
        } else {
            "sim-west"
        };
        s.plan.nodes.insert(
            name.clone(),
            NodePlan {
                uid: uid.clone(),
                cluster: "fleet".into(),
                role: "worker".into(),
                provider: "mock".into(),
                region: region.into(),
                offer: "sim-small".into(),
                image: "debian-12".into(),
                boot_mode: BootMode::Bios,
            },
        );
        let mut exec = Execution::new(i as u64 + 1, ExecutionKind::Add);
        for p in phases_for(ExecutionKind::Add) {
            exec.start_phase(*p);
            exec.finish_phase(*p);
        }
        let ipv4 = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        s.tracked.nodes.insert(
            name.clone(),
            TrackedNode {
                uid: uid.clone(),
                provider: "mock".into(),
                server_id: Some(format!("sv-{i}")),
                ipv4: Some(ipv4.clone()),
                ipv6: Some(format!("2001:db8::{i:x}")),
                region: region.into(),
                offer: "sim-small".into(),
                image: "debian-12".into(),
                host_key: Some(format!("SHA256:{uid}{uid}")),
                configured_peers: None,
                login: None,
                image_user: None,
                execution: Some(exec),
            },
        );
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_NODE.to_string(), uid);
        s.observed.servers.insert(
            name.clone(),
            ServerReading {
                at_ms: 1,
                server: Some(ObservedServer {
                    id: format!("sv-{i}"),
                    name,
                    status: ServerStatus::Running,
                    ipv4: Some(ipv4),
                    ipv6: None,
                    region: region.into(),
                    offer: "sim-small".into(),
                    image: Some("debian-12".into()),
                    labels,
                }),
            },
        );
    }
    s
}
