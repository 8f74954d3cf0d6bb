//! Peer-list rewrites in the change set: which deployed nodes an apply reconfigures
//! because their cluster's membership changed. One pass over the plan per change set,
//! then one comparison per node (never a node against every other member).

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::state::model::{
    ExecStatus, NodePlan, State, TrackedNode, membership_id, memberships,
};

/// Per cluster, the membership an apply configures its nodes with: one pass over the
/// plan, then one comparison per node (never a node against every other).
pub(super) struct ClusterViews {
    /// Cluster to (current membership id, planned member names).
    clusters: BTreeMap<String, (String, BTreeSet<String>)>,
    /// Cluster to the members its nodes were last configured with (stored once).
    configured: BTreeMap<String, (String, BTreeSet<String>)>,
}

impl ClusterViews {
    pub(super) fn of(state: &State) -> ClusterViews {
        let current = memberships(state);
        let mut clusters: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
        for (name, p) in &state.plan.nodes {
            clusters
                .entry(p.cluster.clone())
                .or_insert_with(|| {
                    let id = membership_id(current.get(&p.cluster).unwrap_or(&BTreeMap::new()));
                    (id, BTreeSet::new())
                })
                .1
                .insert(name.clone());
        }
        let configured = state
            .tracked
            .clusters
            .iter()
            .map(|(c, t)| {
                (
                    c.clone(),
                    (t.membership.clone(), t.members.keys().cloned().collect()),
                )
            })
            .collect();
        ClusterViews {
            clusters,
            configured,
        }
    }

    /// Why a deployed node's peer list is rewritten by the next apply, if it is: its
    /// cluster's planned members or their addresses differ from what it was configured
    /// with. `membership changed: +web-4 -web-2`.
    pub(super) fn peers_change(&self, name: &str, p: &NodePlan, t: &TrackedNode) -> Option<String> {
        let done = t
            .execution
            .as_ref()
            .is_some_and(|e| e.status == ExecStatus::Succeeded);
        let configured = t.configured_membership.as_ref().filter(|_| done)?;
        let (now, planned) = self.clusters.get(&p.cluster)?;
        // The names it was configured with, when the cluster's stored membership is the
        // one it has (else only the id tells that something changed).
        let had = self
            .configured
            .get(&p.cluster)
            .filter(|(id, _)| id == configured)
            .map(|(_, names)| names);
        let (added, removed): (Vec<&String>, Vec<&String>) = match had {
            Some(had) => (
                planned.difference(had).filter(|n| *n != name).collect(),
                had.difference(planned).filter(|n| *n != name).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        if configured == now && added.is_empty() && removed.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = added.iter().map(|n| format!("+{n}")).collect();
        parts.extend(removed.iter().map(|n| format!("-{n}")));
        Some(if parts.is_empty() {
            "membership changed: member addresses".into()
        } else {
            format!("membership changed: {}", parts.join(" "))
        })
    }
}
