//! Hetzner firewalls: rule and resource changes as firewall actions, and the
//! `FirewallApi` surface.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::providers::hetzner::DISPLAY;
use crate::providers::hetzner::client::{Action, ActionsEnvelope, Via};
use crate::providers::hetzner::schema::{self, Firewall};
use crate::providers::{
    ErrorKind, FirewallApi, FirewallRule, ObservedFirewall, ProviderError, ProviderResult,
};

use super::{HetznerApi, has_labels, install_selector, label_selector};

#[derive(Deserialize)]
struct FirewallEnvelope {
    firewall: Firewall,
}

#[derive(Deserialize)]
struct CreateFirewallResponse {
    firewall: Firewall,
    #[serde(default)]
    actions: Vec<Action>,
}

impl HetznerApi {
    pub(super) async fn get_firewall_direct(
        &self,
        id: &str,
    ) -> ProviderResult<Option<ObservedFirewall>> {
        Ok(self
            .client
            .get_opt::<FirewallEnvelope>(&format!("/firewalls/{id}"))
            .await?
            .map(|e| schema::observed_firewall(e.firewall)))
    }

    /// Apply the firewall to, or remove it from, servers. Hetzner refuses the whole
    /// request when one server is already in the wanted state; then the firewall is read
    /// again and the request repeated once for the servers still to change.
    pub(super) async fn change_resources(
        &self,
        id: &str,
        server_ids: &[String],
        apply: bool,
        res: &str,
    ) -> ProviderResult<()> {
        let (action, key) = if apply {
            ("apply_to_resources", "apply_to")
        } else {
            ("remove_from_resources", "remove_from")
        };
        let settled = |f: &ObservedFirewall, s: &String| f.applied_to.contains(s) == apply;
        let mut todo: Vec<String> = server_ids.to_vec();
        for attempt in 0..2 {
            let result = self
                .resources_write(id, &todo, action, key, apply, res)
                .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt == 0
                        && matches!(
                            e.code.as_deref(),
                            Some(
                                "firewall_already_applied"
                                    | "firewall_already_removed"
                                    | "firewall_resource_not_found"
                                    | "server_already_added"
                            )
                        ) =>
                {
                    let fw = self
                        .client
                        .lane()
                        .read("GET /firewalls/:id", || self.get_firewall_direct(id))
                        .await?
                        .ok_or_else(|| {
                            ProviderError::new(
                                DISPLAY,
                                ErrorKind::NotFound,
                                format!("firewall {id} not found"),
                            )
                        })?;
                    todo.retain(|s| !settled(&fw, s));
                    if todo.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(super) async fn resources_write(
        &self,
        id: &str,
        server_ids: &[String],
        action: &str,
        key: &str,
        apply: bool,
        res: &str,
    ) -> ProviderResult<()> {
        let body = json!({ key: schema::server_resources(server_ids) });
        self.firewall_action(id, action, &body, res, |f| {
            server_ids.iter().all(|s| f.applied_to.contains(s) == apply)
        })
        .await
    }

    /// `POST /firewalls/{id}/actions/{action}` through the write wrapper, verified by
    /// `done` on the firewall read back, then wait on the actions it started.
    pub(super) async fn firewall_action(
        &self,
        id: &str,
        action: &str,
        body: &Value,
        res: &str,
        done: impl Fn(&ObservedFirewall) -> bool + Send + Sync,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("/firewalls/{id}/actions/{action}");
        let (path, done) = (&path, &done);
        let actions = self
            .unless_locked(|| {
                client.lane().write(
                    Self::op("POST", path.clone(), res),
                    move || async move {
                        let env: ActionsEnvelope =
                            client.send(Method::POST, path, Some(body)).await?;
                        Ok(env.actions)
                    },
                    Some(move || async move {
                        let fw = self.get_firewall_direct(id).await?;
                        Ok(fw.filter(|f| done(f)).map(|_| Vec::new()))
                    }),
                )
            })
            .await?;
        client.wait_all(&actions).await
    }
}

#[async_trait]
impl FirewallApi for HetznerApi {
    async fn list_firewalls(&self, install: &str) -> ProviderResult<Vec<ObservedFirewall>> {
        let fws: Vec<Firewall> = self
            .client
            .list_all(
                "/firewalls",
                "firewalls",
                &[("label_selector", install_selector(install))],
                Via::Lane,
            )
            .await?;
        Ok(fws.into_iter().map(schema::observed_firewall).collect())
    }

    async fn create_firewall(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        rules: &[FirewallRule],
        res: &str,
    ) -> ProviderResult<ObservedFirewall> {
        let client = &self.client;
        let wire: Vec<schema::RuleJson> = rules.iter().map(schema::rule_to_hetzner).collect();
        let body = json!({ "name": name, "labels": labels, "rules": wire });
        let want = schema::rule_set(rules);
        let query = [
            ("label_selector", label_selector(labels)),
            ("name", name.to_string()),
        ];
        let (body, want, query) = (&body, &want, &query);
        let (fw, actions) = client
            .lane()
            .write(
                Self::op("POST", "/firewalls", res),
                move || async move {
                    let r: CreateFirewallResponse =
                        client.send(Method::POST, "/firewalls", Some(body)).await?;
                    Ok((schema::observed_firewall(r.firewall), r.actions))
                },
                // Our name, our labels and our rules.
                Some(move || async move {
                    let fws: Vec<Firewall> = client
                        .list_all("/firewalls", "firewalls", query, Via::Direct)
                        .await?;
                    Ok(fws
                        .into_iter()
                        .map(schema::observed_firewall)
                        .find(|f| {
                            f.name == name
                                && has_labels(&f.labels, labels)
                                && &schema::rule_set(&f.rules) == want
                        })
                        .map(|f| (f, Vec::new())))
                }),
            )
            .await?;
        client.wait_all(&actions).await?;
        Ok(fw)
    }

    /// Hetzner replaces the whole list; rules Legion does not model (outbound, ESP, GRE)
    /// were put there by someone else and are sent back as they are.
    async fn set_rules(&self, id: &str, rules: &[FirewallRule], res: &str) -> ProviderResult<()> {
        let current = self
            .client
            .read_opt::<FirewallEnvelope>(&format!("/firewalls/{id}"))
            .await?;
        let mut wire: Vec<schema::RuleJson> = current
            .map(|e| schema::foreign_rules(e.firewall.rules))
            .unwrap_or_default();
        wire.extend(rules.iter().map(schema::rule_to_hetzner));
        let body = json!({ "rules": wire });
        let want = schema::rule_set(rules);
        self.firewall_action(id, "set_rules", &body, res, |f| {
            schema::rule_set(&f.rules) == want
        })
        .await
    }

    async fn attach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()> {
        if server_ids.is_empty() {
            return Ok(());
        }
        self.change_resources(id, server_ids, true, res).await
    }

    async fn detach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()> {
        if server_ids.is_empty() {
            return Ok(());
        }
        self.change_resources(id, server_ids, false, res).await
    }

    async fn delete_firewall(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.delete_at(format!("/firewalls/{id}"), res).await
    }
}
