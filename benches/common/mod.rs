//! Synthetic states, as a busy fleet looks after an apply: planned, tracked with a finished
//! execution (and, for [`fleet`], the cluster peer lists the nodes were configured with),
//! and observed.

#![allow(dead_code)]

use std::collections::BTreeMap;

use legion::engine::phases_for;
use legion::engine::state::model::{
    ClusterPlan, ClusterTracked, Execution, ExecutionKind, NodePlan, ServerReading, State,
    TrackedNode, memberships,
};
use legion::providers::{BootMode, LABEL_NODE, ObservedServer, ServerStatus};

pub fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

pub fn state_with_nodes(n: usize) -> State {
    fleet_without_peers(n, n.max(1))
}

/// Cluster `c`'s name: `fleet` for the first (so one-cluster fleets keep the old name).
pub fn cluster_name(c: usize) -> String {
    if c == 0 {
        "fleet".into()
    } else {
        format!("fleet-{c:03}")
    }
}

/// `n` nodes in clusters of `cluster_size`, tracked as after an apply: every node was
/// configured with its cluster's membership.
pub fn fleet(n: usize, cluster_size: usize) -> State {
    let mut s = fleet_without_peers(n, cluster_size);
    configure_peers(&mut s);
    s
}

/// Record, as the configure phase does, that every tracked node was configured with its
/// cluster's membership (stored once per cluster; each node keeps its id).
pub fn configure_peers(s: &mut State) {
    for (cluster, members) in memberships(s) {
        let c = ClusterTracked::new(members);
        for name in c.members.keys() {
            if let Some(t) = s.tracked.nodes.get_mut(name) {
                t.configured_membership = Some(c.membership.clone());
            }
        }
        s.tracked.clusters.insert(cluster, c);
    }
}

fn fleet_without_peers(n: usize, cluster_size: usize) -> State {
    let mut s = State::new("0123456789abcdef".into());
    let cluster_size = cluster_size.max(1);
    for c in 0..n.div_ceil(cluster_size).max(1) {
        s.plan.clusters.insert(
            cluster_name(c),
            ClusterPlan {
                dns_zone: Some(format!("{}.example.test", cluster_name(c))),
                peer_ports: vec![4413],
            },
        );
    }
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
                cluster: cluster_name(i / cluster_size),
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
                configured_membership: None,
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

/// The plan of `n` nodes in clusters of `cluster_size` on provider `mock`, nothing
/// tracked or observed yet: what an apply starts from.
pub fn planned_fleet(n: usize, cluster_size: usize) -> legion::engine::state::model::Plan {
    fleet_without_peers(n, cluster_size).plan
}
