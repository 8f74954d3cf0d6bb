//! Plan edits: what the operator wants, checked and saved. Editing never touches a cloud;
//! the only read is a provider's catalog (the cached one; read once when a session has
//! none yet), for choices left empty and to check the ones given. The checks themselves
//! are `validate`'s, shared with the forms.

use std::sync::Arc;

use super::error::EngineError;
use super::plan::{NodeIntent, NodeRequest, PlanEdit, apply_edit};
use super::session::Session;
use super::state::change::{Key, keys_of};
use super::state::model::NodePlan;
use super::validate;
use super::validate::EditError;
use crate::providers::{Catalog, Credentials, ProviderModule};

impl Session {
    /// Plan choices for a node request, checked: a configured, enabled provider, a role
    /// with an install script, and a region, offer and image from the provider's catalog.
    /// Empty choices keep the node's values (`Set`) or come from the catalog's policy.
    /// The catalog is the cached one; it is read from the provider only when this
    /// session has none yet (an engine just started is still loading it).
    pub(crate) async fn resolve_node(&self, req: &NodeRequest) -> Result<NodePlan, EngineError> {
        let existing = self.cell.read(|s| s.plan.nodes.get(&req.name).cloned());
        let base = match (req.intent, existing) {
            (NodeIntent::Add, Some(_)) => return Err(EditError::Exists(req.name.clone()).into()),
            (NodeIntent::Set, None) => {
                return Err(EngineError::NotFound(format!(
                    "no node {:?} in the plan; add it with `legion nodes add`",
                    req.name
                )));
            }
            (NodeIntent::Set, base) => base,
            _ => None,
        };
        let provider = match (&base, req.provider.as_str()) {
            (Some(b), "") => b.provider.clone(),
            (_, p) => p.to_string(),
        };
        let want = needs_catalog(req, base.as_ref());
        let ctx = self.node_context(&provider, want).await?;
        resolve_with(req, base.as_ref(), &ctx, &self.roles())
    }

    /// A provider's module, checked configured and enabled, and (`catalog`) its catalog.
    pub(crate) async fn node_context(
        &self,
        provider: &str,
        catalog: bool,
    ) -> Result<NodeContext, EngineError> {
        let module = self.module(provider)?;
        self.configured(provider)?;
        let (catalog, unread) = if catalog {
            self.node_catalog(provider).await
        } else {
            (None, None)
        };
        Ok(NodeContext {
            provider: provider.to_string(),
            module,
            catalog,
            unread,
        })
    }

    /// A provider's catalog for a node edit: the cached one, else one read (counted as
    /// the wait a face may report); `None` with the reason when it cannot be read.
    async fn node_catalog(&self, provider: &str) -> (Option<Arc<Catalog>>, Option<String>) {
        match self.supervisor.env().providers.get(provider) {
            Some(c) => match c.catalog(false).await {
                Ok(catalog) => (Some(catalog), None),
                Err(e) => (None, Some(e.to_string())),
            },
            None => (None, None),
        }
    }

    /// The ids of the configured (connected) providers, sorted.
    fn configured_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .supervisor
            .env()
            .providers
            .all()
            .iter()
            .map(|c| c.id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub(crate) fn configured(&self, provider: &str) -> Result<(), EditError> {
        validate::provider_configured(provider, &self.configured_ids())
    }

    /// The roles the home defines (the default and every `roles/<role>.sh`).
    pub(crate) fn roles(&self) -> Vec<String> {
        validate::roles(self.ssh.settings().roles_dir.as_deref())
    }

    /// The checks of a whole node sent as a plan edit that need more than the plan: its
    /// provider, its role and its catalog choices, each only where it differs from the
    /// planned node (a choice the catalog dropped since does not block other changes).
    async fn check_node(&self, name: &str, node: &NodePlan) -> Result<(), EngineError> {
        let module = self.module(&node.provider)?;
        self.configured(&node.provider)?;
        let existing = self.cell.read(|s| s.plan.nodes.get(name).cloned());
        let changed = |f: fn(&NodePlan) -> &String| {
            let new = f(node);
            (existing.as_ref().map(f) != Some(new)).then_some(new.as_str())
        };
        if changed(|n| &n.role).is_some() {
            validate::role(&node.role, &self.roles())?;
        }
        let asked = validate::Choices {
            region: changed(|n| &n.region),
            offer: changed(|n| &n.offer),
            image: changed(|n| &n.image),
        };
        if asked.region.is_none() && asked.offer.is_none() && asked.image.is_none() {
            return Ok(());
        }
        let display = module.descriptor().display_name;
        match self.node_catalog(&node.provider).await {
            (Some(c), _) => Ok(validate::catalog_choices(
                &display,
                &c,
                &node.region,
                asked,
            )?),
            (None, e) => Err(EngineError::Invalid(format!(
                "{display}'s catalog could not be read to check the node's region, offer and image ({}); try again when {display} answers",
                e.unwrap_or_else(|| "not connected".into())
            ))),
        }
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

    /// Apply one plan edit after the checks that need more than the plan (provider,
    /// catalog, roles); `apply_edit` makes the ones that need only the plan.
    pub(crate) async fn edit(&self, edit: PlanEdit) -> Result<(), EngineError> {
        match &edit {
            PlanEdit::UpsertNode { name, node } => self.check_node(name, node).await?,
            PlanEdit::UpsertZone { provider, .. } => {
                self.module(provider)?;
                self.configured(provider)?;
            }
            _ => {}
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

/// What resolving nodes of one provider needs, gathered once: an import of many nodes
/// reads each provider's catalog and the roles folder once, not once per node.
pub(crate) struct NodeContext {
    provider: String,
    module: Arc<dyn ProviderModule>,
    catalog: Option<Arc<Catalog>>,
    /// Why the catalog could not be read, when it could not.
    unread: Option<String>,
}

/// Whether resolving `req` against `base` reads the catalog: to fill a choice left
/// empty, or to check one that changes.
fn needs_catalog(req: &NodeRequest, base: Option<&NodePlan>) -> bool {
    let missing = |asked: &Option<String>| asked.is_none() && base.is_none();
    let changed = |asked: &Option<String>, f: fn(&NodePlan) -> &String| {
        asked
            .as_deref()
            .is_some_and(|v| base.is_none_or(|b| f(b) != v))
    };
    missing(&req.region)
        || missing(&req.offer)
        || missing(&req.image)
        || changed(&req.region, |b| &b.region)
        || changed(&req.offer, |b| &b.offer)
        || changed(&req.image, |b| &b.image)
}

/// [`Session::resolve_node`] once the planned node (`base`, for a `Set`), the provider's
/// context and the roles are known: pure but for the random uid of a new node.
pub(crate) fn resolve_with(
    req: &NodeRequest,
    base: Option<&NodePlan>,
    ctx: &NodeContext,
    roles: &[String],
) -> Result<NodePlan, EngineError> {
    let provider = ctx.provider.clone();
    let module = &ctx.module;
    let policy = module.catalog_policy();
    let display = module.descriptor().display_name;
    let kept = |f: fn(&NodePlan) -> &String| base.map(|b| f(b).clone());
    let region_in = req.region.clone().or_else(|| kept(|b| &b.region));
    let offer_in = req.offer.clone().or_else(|| kept(|b| &b.offer));
    let image_in = req.image.clone().or_else(|| kept(|b| &b.image));
    // Only what changes is checked: a value the catalog dropped since the node was
    // planned does not block changing something else.
    fn new<'a>(
        asked: &'a Option<String>,
        base: Option<&NodePlan>,
        f: fn(&NodePlan) -> &String,
    ) -> Option<&'a str> {
        asked.as_deref().filter(|v| base.is_none_or(|b| f(b) != v))
    }
    let asked = validate::Choices {
        region: new(&req.region, base, |b| &b.region),
        offer: new(&req.offer, base, |b| &b.offer),
        image: new(&req.image, base, |b| &b.image),
    };
    let check = asked.region.is_some() || asked.offer.is_some() || asked.image.is_some();
    let catalog = &ctx.catalog;
    let unread = &ctx.unread;
    let region = match (region_in, catalog) {
        (Some(r), _) => r,
        (None, Some(c)) => policy.region(c).map(String::from).unwrap_or_default(),
        (None, None) => policy.default_region.clone().unwrap_or_default(),
    };
    if region.is_empty() {
        return Err(EngineError::Invalid(format!(
            "{display}: no region given and no default; pass a region"
        )));
    }
    // The region first: the offer is filled and checked in it.
    if let Some(c) = catalog {
        validate::catalog_choices(
            &display,
            c,
            &region,
            validate::Choices {
                region: asked.region,
                ..Default::default()
            },
        )?;
    }
    let offer = match (offer_in, catalog) {
        (Some(o), _) => o,
        (None, Some(c)) => policy
            .offer(c, &region)
            .map(|o| o.id.clone())
            .ok_or_else(|| EngineError::Invalid(format!("no offer is available in {region}")))?,
        (None, None) => match &policy.default_offer {
            crate::providers::OfferSelector::Preferred { id, .. } => id.clone(),
            crate::providers::OfferSelector::Cheapest { .. } => {
                return Err(EngineError::Invalid(match unread {
                    Some(e) => {
                        format!("{display}'s catalog could not be read ({e}); pass an offer")
                    }
                    None => format!(
                        "{display} is not connected, so its catalog is unknown; pass an offer"
                    ),
                }));
            }
        },
    };
    let image = match (image_in, catalog) {
        (Some(i), _) => i,
        (None, Some(c)) => policy
            .image(c)
            .map(String::from)
            .unwrap_or(policy.default_image.clone()),
        (None, None) => policy.default_image.clone(),
    };
    match (catalog, unread) {
        (Some(c), _) => validate::catalog_choices(&display, c, &region, asked)?,
        (None, Some(e)) if check => {
            return Err(EngineError::Invalid(format!(
                "{display}'s catalog could not be read to check the node's region, offer and image ({e}); try again when {display} answers"
            )));
        }
        _ => {}
    }
    let role = req
        .role
        .clone()
        .or_else(|| kept(|b| &b.role))
        .unwrap_or_else(|| validate::DEFAULT_ROLE.into());
    if base.is_none_or(|b| b.role != role) {
        validate::role(&role, roles)?;
    }
    let uid = match base {
        Some(b) => b.uid.clone(),
        None => {
            let mut uid = [0u8; 8];
            getrandom::fill(&mut uid)
                .map_err(|e| EngineError::System(format!("system random failed: {e}")))?;
            hex::encode(uid)
        }
    };
    Ok(NodePlan {
        uid,
        cluster: req
            .cluster
            .clone()
            .or_else(|| kept(|b| &b.cluster))
            .unwrap_or_else(|| "default".into()),
        role,
        provider,
        region,
        offer,
        image,
        boot_mode: req
            .boot_mode
            .or(base.map(|b| b.boot_mode))
            .unwrap_or(module.deployment_profile().default_boot_mode),
    })
}
