//! The engine's side of `legion plan import`: gather what the checks need (each named
//! provider's module and cached catalog, the roles folder) once, build the plan the
//! document asks for ([`super::build`]), and, when nothing was refused, put it in place as
//! ONE keyed state change (one journal record of the entries that differ).

use std::collections::{BTreeSet, HashMap};

use super::{ImportMode, ImportReport, NodeEntry, PlanDiff, PlanDocument, Problem, ResolveNode};
use crate::engine::edits::{NodeContext, resolve_with};
use crate::engine::error::EngineError;
use crate::engine::plan::{NodeIntent, NodeRequest};
use crate::engine::session::Session;
use crate::engine::state::model::NodePlan;

/// Nodes resolved with each provider's context gathered once.
struct Resolver {
    /// Per provider id: its context, or why nodes cannot use it.
    contexts: HashMap<String, Result<NodeContext, EngineError>>,
    roles: Vec<String>,
}

impl ResolveNode for Resolver {
    fn resolve(
        &self,
        name: &str,
        entry: &NodeEntry,
        base: Option<&NodePlan>,
    ) -> Result<NodePlan, EngineError> {
        let ctx = match self.contexts.get(&entry.provider) {
            Some(Ok(ctx)) => ctx,
            Some(Err(why)) => return Err(EngineError::Invalid(why.to_string())),
            None => {
                return Err(EngineError::Invalid(format!(
                    "provider {:?} was not looked up",
                    entry.provider
                )));
            }
        };
        let req = NodeRequest {
            name: name.to_string(),
            provider: entry.provider.clone(),
            cluster: entry.cluster.clone(),
            role: entry.role.clone(),
            region: entry.region.clone(),
            offer: entry.offer.clone(),
            image: entry.image.clone(),
            boot_mode: entry.boot_mode,
            intent: if base.is_some() {
                NodeIntent::Set
            } else {
                NodeIntent::Add
            },
        };
        resolve_with(&req, base, ctx, &self.roles)
    }
}

impl Session {
    /// Check `doc` as a whole and, unless `dry_run`, make it the plan (`mode`). Refusals
    /// come back in the report (nothing changed), each with its place in the document.
    pub(crate) async fn import_plan(
        &self,
        doc: PlanDocument,
        mode: ImportMode,
        dry_run: bool,
    ) -> Result<ImportReport, EngineError> {
        let mut problems = Vec::new();
        let providers: BTreeSet<&String> = doc.nodes.values().map(|n| &n.provider).collect();
        let mut contexts = HashMap::new();
        for p in providers {
            let ctx = self.node_context(p, true).await;
            contexts.insert(p.clone(), ctx);
        }
        // A zone's provider is checked as `zones add` checks it.
        for (name, z) in &doc.zones {
            if let Err(e) = self
                .module(&z.provider)
                .and_then(|_| Ok(self.configured(&z.provider)?))
            {
                problems.push(Problem::at(
                    &["zones", name.as_str()],
                    Some("provider"),
                    e.to_string(),
                ));
            }
        }
        let resolver = Resolver {
            contexts,
            roles: self.roles(),
        };
        let (base, built) = self.cell.read(|s| {
            let built = super::build(&s.plan, &s.tracked, &doc, mode, &resolver);
            (s.plan.clone(), built)
        });
        let plan = match built {
            Ok(plan) if problems.is_empty() => plan,
            Ok(_) => return Ok(refused(problems)),
            Err(more) => {
                problems.extend(more);
                return Ok(refused(problems));
            }
        };
        let diff = PlanDiff::between(&base, &plan);
        if dry_run || diff.is_empty() {
            return Ok(ImportReport {
                problems,
                diff,
                applied: false,
            });
        }
        let keys = diff.keys();
        let v = self
            .cell
            .try_change(&keys, |s| {
                if s.plan != base {
                    return Err(EngineError::Refused(
                        "the plan changed while the document was being checked; run the import again"
                            .into(),
                    ));
                }
                s.plan = plan;
                Ok(())
            })?
            .1;
        self.cell
            .persist(v)
            .await
            .map_err(|e| EngineError::Persist(e.to_string()))?;
        self.supervisor.env().oplog.info(
            None,
            format!(
                "plan imported ({}): nodes {} added, {} changed, {} removed",
                match mode {
                    ImportMode::Replace => "replace",
                    ImportMode::Merge => "merge",
                },
                diff.nodes.added.len(),
                diff.nodes.changed.len(),
                diff.nodes.removed.len()
            ),
        );
        Ok(ImportReport {
            problems,
            diff,
            applied: true,
        })
    }
}

fn refused(problems: Vec<Problem>) -> ImportReport {
    ImportReport {
        problems,
        diff: PlanDiff::default(),
        applied: false,
    }
}
