//! Plan edits: what the operator wants, checked and saved. Editing never touches a cloud;
//! the only reads are a provider's catalog, for choices left empty.

use super::error::EngineError;

use super::plan::{EditError, NodeRequest, PlanEdit, apply_edit};
use super::session::Session;
use super::state::change::{Key, keys_of};
use super::state::model::NodePlan;
use crate::providers::Credentials;

impl Session {
    /// Plan choices for a node request; empty ones come from the provider's catalog, read
    /// now when it is not cached yet (an engine just started is still loading it).
    pub(crate) async fn resolve_node(&self, req: &NodeRequest) -> Result<NodePlan, EngineError> {
        let module = self.module(&req.provider)?;
        let policy = module.catalog_policy();
        let connected = self.supervisor.env().providers.get(&req.provider);
        let mut unread = None;
        let catalog = match connected {
            Some(c) if req.region.is_none() || req.offer.is_none() || req.image.is_none() => {
                match c.catalog(false).await {
                    Ok(catalog) => Some(catalog),
                    Err(e) => {
                        unread = Some(e.to_string());
                        None
                    }
                }
            }
            Some(c) => c.cached_catalog(),
            None => None,
        };
        let region = match (&req.region, &catalog) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => policy.region(c).map(String::from).unwrap_or_default(),
            (None, None) => policy.default_region.clone().unwrap_or_default(),
        };
        if region.is_empty() {
            return Err(EngineError::Invalid(format!(
                "{}: no region given and no default; pass a region",
                module.descriptor().display_name
            )));
        }
        let offer = match (&req.offer, &catalog) {
            (Some(o), _) => o.clone(),
            (None, Some(c)) => policy
                .offer(c, &region)
                .map(|o| o.id.clone())
                .ok_or_else(|| {
                    EngineError::Invalid(format!("no offer is available in {region}"))
                })?,
            (None, None) => match &policy.default_offer {
                crate::providers::OfferSelector::Preferred { id, .. } => id.clone(),
                crate::providers::OfferSelector::Cheapest { .. } => {
                    return Err(EngineError::Invalid(match unread {
                        Some(e) => format!("the provider's catalog could not be read ({e}); pass an offer"),
                        None => "the provider is not connected, so its catalog is unknown; pass an offer".into(),
                    }));
                }
            },
        };
        let image = match (&req.image, &catalog) {
            (Some(i), _) => i.clone(),
            (None, Some(c)) => policy
                .image(c)
                .map(String::from)
                .unwrap_or(policy.default_image.clone()),
            (None, None) => policy.default_image.clone(),
        };
        let mut uid = [0u8; 8];
        getrandom::fill(&mut uid)
            .map_err(|e| EngineError::Invalid(format!("system random failed: {e}")))?;
        Ok(NodePlan {
            uid: hex::encode(uid),
            cluster: req.cluster.clone().unwrap_or_else(|| "default".into()),
            role: req.role.clone().unwrap_or_else(|| "node".into()),
            provider: req.provider.clone(),
            region,
            offer,
            image,
            boot_mode: req
                .boot_mode
                .unwrap_or(module.deployment_profile().default_boot_mode),
        })
    }

    pub(crate) async fn import_node(
        &self,
        req: super::import::ImportRequest,
    ) -> Result<super::import::ImportReport, EngineError> {
        use super::import;
        use crate::providers::manual;
        import::validate(&req)?;
        if self.cell.read(|s| s.plan.nodes.contains_key(&req.name)) {
            return Err(EngineError::Invalid(format!(
                "{} is already in the plan; pick another name or remove it first",
                req.name
            )));
        }
        if self.supervisor.env().providers.get(manual::KIND).is_none() {
            self.configure_provider(manual::KIND, Credentials::new())
                .await?;
        }
        let node = self
            .resolve_node(&NodeRequest {
                name: req.name.clone(),
                provider: manual::KIND.into(),
                cluster: req.cluster.clone(),
                role: req.role.clone(),
                ..NodeRequest::default()
            })
            .await?;
        let key = self
            .cell
            .read(|s| s.managed_key.clone())
            .ok_or_else(|| EngineError::Invalid("this state has no managed SSH key".into()))?;
        let target = crate::ssh::Target::new(req.host.trim(), req.port, req.user.clone());
        let under_root = self.ssh.settings().node_root.is_some();
        let expected = import::expected_host_key(&req)?;
        let verified = expected.is_some();
        let (seen, sudo, added, note) = {
            let target = target.clone();
            let password = req.password.clone();
            tokio::task::spawn_blocking(move || {
                import::bootstrap(
                    &target,
                    password.as_ref(),
                    &key,
                    under_root,
                    expected.as_ref(),
                )
            })
            .await
            .map_err(|e| EngineError::Invalid(format!("the SSH task stopped: {e}")))?
            .map_err(|e| EngineError::Refused(format!("importing {}: {e}", req.name)))?
        };
        let tracked = import::tracked(&node, &target, seen.as_str(), sudo);
        let name = req.name.clone();
        let keys = [
            Key::PlanNode(name.clone()),
            Key::PlanCluster(node.cluster.clone()),
            Key::TrackedNode(name.clone()),
        ];
        // In place: apply_edit checks before it changes anything, and the insert after it
        // cannot fail, so a refused import leaves the state as it was.
        let v = self
            .cell
            .try_change(&keys, |s| {
                apply_edit(
                    s,
                    PlanEdit::UpsertNode {
                        name: name.clone(),
                        node,
                    },
                )?;
                s.tracked.nodes.insert(name.clone(), tracked);
                Ok::<(), EditError>(())
            })?
            .1;
        self.cell
            .persist(v)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        let report = import::ImportReport {
            name: req.name.clone(),
            server_id: manual::server_id(&target),
            host_key: seen.to_string(),
            host_key_verified: verified,
            sudo,
            key_added: added,
            note,
        };
        self.supervisor.env().oplog.info(
            Some(format!("node/{}", req.name)),
            format!(
                "imported {} as {} (host key {}, sudo {:?}, managed key {})",
                report.server_id,
                req.name,
                report.host_key,
                sudo,
                if added { "added" } else { "already present" }
            ),
        );
        Ok(report)
    }

    pub(crate) async fn edit(&self, edit: PlanEdit) -> Result<(), EngineError> {
        if let PlanEdit::UpsertNode { node, .. } = &edit {
            self.module(&node.provider)?;
        }
        if let PlanEdit::UpsertZone { provider, .. } = &edit {
            self.module(provider)?;
        }
        // In place, no copy of the state: apply_edit checks before it changes anything.
        // The save is one journal record of what the edit touched.
        let keys = keys_of(&edit);
        let v = self.cell.try_change(&keys, |s| apply_edit(s, edit))?.1;
        self.cell
            .persist(v)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))
    }
}
