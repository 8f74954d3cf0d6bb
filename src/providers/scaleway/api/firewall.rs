//! Scaleway security groups as Legion firewalls: rule reads and rewrites, a server's
//! group, and the `FirewallApi` surface.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use crate::providers::scaleway::client::{Paging, Via};
use crate::providers::scaleway::schema::{
    self, SecurityGroup, SecurityGroupEnvelope, ServerEnvelope, SgRule,
};
use crate::providers::scaleway::{DISPLAY, ZONES};
use crate::providers::{
    ErrorKind, FirewallApi, FirewallRule, LABEL_INSTALL, ObservedFirewall, ProviderError,
    ProviderResult,
};

use super::{ScalewayApi, instance};

impl ScalewayApi {
    pub(super) async fn sg_rules(
        &self,
        zone: &str,
        uuid: &str,
        via: Via,
    ) -> ProviderResult<Vec<SgRule>> {
        self.client
            .list_all(
                &format!("{}/security_groups/{uuid}/rules", instance(zone)),
                "rules",
                &[],
                Paging::Instance,
                via,
            )
            .await
    }

    pub(super) async fn firewall_direct(
        &self,
        zone: &str,
        uuid: &str,
    ) -> ProviderResult<Option<ObservedFirewall>> {
        let path = format!("{}/security_groups/{uuid}", instance(zone));
        let Some(env) = self.client.get_opt::<SecurityGroupEnvelope>(&path).await? else {
            return Ok(None);
        };
        let rules = self.sg_rules(zone, uuid, Via::Direct).await?;
        Ok(Some(schema::observed_firewall(
            &env.security_group,
            &rules,
            zone,
        )))
    }

    pub(super) async fn firewall_read(
        &self,
        zone: &str,
        uuid: &str,
    ) -> ProviderResult<Option<(SecurityGroup, Vec<SgRule>)>> {
        let path = format!("{}/security_groups/{uuid}", instance(zone));
        let Some(env) = self.client.read_opt::<SecurityGroupEnvelope>(&path).await? else {
            return Ok(None);
        };
        let rules = self.sg_rules(zone, uuid, Via::Lane).await?;
        Ok(Some((env.security_group, rules)))
    }

    pub(super) async fn groups_in(
        &self,
        zone: &str,
        query: &[(&str, String)],
        via: Via,
    ) -> ProviderResult<Vec<SecurityGroup>> {
        let mut q = vec![self.project_query()];
        q.extend_from_slice(query);
        self.client
            .list_all(
                &format!("{}/security_groups", instance(zone)),
                "security_groups",
                &q,
                Paging::Instance,
                via,
            )
            .await
    }

    /// `PUT …/security_groups/{id}/rules` (after the description note), verified by the
    /// rules read back.
    pub(super) async fn put_rules(
        &self,
        zone: &str,
        uuid: &str,
        rules: &[FirewallRule],
        res: &str,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let sg_path = format!("{}/security_groups/{uuid}", instance(zone));
        let note = schema::rules_note(rules);
        let current = client
            .read_opt::<SecurityGroupEnvelope>(&sg_path)
            .await?
            .ok_or_else(|| firewall_not_found(zone, uuid))?;
        if current.security_group.description != note {
            let body = json!({ "description": note });
            let (p, body, note) = (&sg_path, &body, &note);
            client
                .lane()
                .write(
                    Self::op("PATCH", p.clone(), res),
                    move || async move {
                        let _: SecurityGroupEnvelope =
                            client.send(Method::PATCH, p, &[], Some(body)).await?;
                        Ok(())
                    },
                    Some(move || async move {
                        let now = client.get_opt::<SecurityGroupEnvelope>(p).await?;
                        Ok(now
                            .filter(|e| &e.security_group.description == note)
                            .map(|_| ()))
                    }),
                )
                .await?;
        }
        let have = self.sg_rules(zone, uuid, Via::Lane).await?;
        if schema::rules_from(&have, &note) == rules {
            return Ok(());
        }
        let path = format!("{sg_path}/rules");
        let body = json!({ "rules": schema::rules_keeping_foreign(&have, rules) });
        let want = schema::rule_set(rules);
        let (path, body, want) = (&path, &body, &want);
        client
            .lane()
            .write(
                Self::op("PUT", path.clone(), res),
                move || async move {
                    let _: Value = client.send(Method::PUT, path, &[], Some(body)).await?;
                    Ok(())
                },
                Some(move || async move {
                    let fw = self.firewall_direct(zone, uuid).await?;
                    Ok(fw
                        .filter(|f| &schema::rule_set(&f.rules) == want)
                        .map(|_| ()))
                }),
            )
            .await
    }

    /// Put a server into security group `sg` (`PATCH …/servers/{id}`), verified by the
    /// server's group read back.
    pub(super) async fn set_server_group(
        &self,
        zone: &str,
        server: &str,
        sg: &str,
        res: &str,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{}/servers/{server}", instance(zone));
        let body = json!({ "security_group": { "id": sg } });
        let (path, body) = (&path, &body);
        client
            .lane()
            .write(
                Self::op("PATCH", path.clone(), res),
                move || async move {
                    let _: ServerEnvelope =
                        client.send(Method::PATCH, path, &[], Some(body)).await?;
                    Ok(())
                },
                Some(move || async move {
                    let s = self.server_direct(zone, server).await?;
                    Ok(
                        s.filter(|s| s.security_group.as_ref().is_some_and(|g| g.id == sg))
                            .map(|_| ()),
                    )
                }),
            )
            .await
    }
}

fn firewall_not_found(zone: &str, uuid: &str) -> ProviderError {
    ProviderError::new(
        DISPLAY,
        ErrorKind::NotFound,
        format!("security group {zone}/{uuid} not found"),
    )
}

#[async_trait]
impl FirewallApi for ScalewayApi {
    async fn list_firewalls(&self, install: &str) -> ProviderResult<Vec<ObservedFirewall>> {
        let labels: BTreeMap<String, String> =
            [(LABEL_INSTALL.to_string(), install.to_string())].into();
        let tags = ("tags", schema::tags_from_labels(&labels).join(","));
        let (labels, tags) = (&labels, &tags);
        // The zones side by side, as for servers.
        let per_zone = futures_util::future::try_join_all(ZONES.iter().map(|zone| async move {
            let groups = self
                .groups_in(zone, std::slice::from_ref(tags), Via::Lane)
                .await?;
            let mut out = Vec::new();
            for g in groups {
                if !schema::has_labels(&schema::labels_from_tags(&g.tags), labels) {
                    continue;
                }
                let rules = self.sg_rules(zone, &g.id, Via::Lane).await?;
                out.push(schema::observed_firewall(&g, &rules, zone));
            }
            Ok::<_, ProviderError>(out)
        }))
        .await?;
        Ok(per_zone.into_iter().flatten().collect())
    }

    /// A security group in the default zone: inbound traffic dropped except by the rules,
    /// outbound accepted.
    async fn create_firewall(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        rules: &[FirewallRule],
        res: &str,
    ) -> ProviderResult<ObservedFirewall> {
        let client = &self.client;
        let zone = client.zone();
        let path = format!("{}/security_groups", instance(zone));
        let tags = schema::tags_from_labels(labels);
        let body = json!({
            "name": name,
            "project": client.project(),
            "tags": tags,
            "description": schema::rules_note(&[]),
            "inbound_default_policy": "drop",
            "outbound_default_policy": "accept",
            "stateful": true,
            "enable_default_security": true,
        });
        let query = [("name", name.to_string()), ("tags", tags.join(","))];
        let (path, body, query) = (&path, &body, &query);
        let group = client
            .lane()
            .write(
                Self::op("POST", path.clone(), res),
                move || async move {
                    let env: SecurityGroupEnvelope =
                        client.send(Method::POST, path, &[], Some(body)).await?;
                    Ok(env.security_group)
                },
                // A group with our name and our labels.
                Some(move || async move {
                    Ok(self
                        .groups_in(zone, query, Via::Direct)
                        .await?
                        .into_iter()
                        .find(|g| {
                            g.name == name
                                && schema::has_labels(&schema::labels_from_tags(&g.tags), labels)
                        }))
                }),
            )
            .await?;
        self.put_rules(zone, &group.id, rules, res).await?;
        let (sg, rules) = self
            .firewall_read(zone, &group.id)
            .await?
            .ok_or_else(|| firewall_not_found(zone, &group.id))?;
        Ok(schema::observed_firewall(&sg, &rules, zone))
    }

    async fn set_rules(&self, id: &str, rules: &[FirewallRule], res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        self.put_rules(zone, uuid, rules, res).await
    }

    /// A Scaleway server has exactly one security group: attaching moves the server into
    /// this one.
    /// One `PATCH` per server not yet in the group, side by side (the lane bounds how many
    /// at once): Scaleway has no bulk attach.
    async fn attach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        let mut servers = Vec::with_capacity(server_ids.len());
        for server in server_ids {
            let (szone, suuid) = self.locate(server)?;
            if szone != zone {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::InvalidInput,
                    format!(
                        "server {server} is in {szone} but security group {id} is in {zone}; \
                         Scaleway applies a security group only within its zone"
                    ),
                ));
            }
            servers.push(suuid);
        }
        futures_util::future::try_join_all(servers.into_iter().map(|suuid| async move {
            let now = self.server_read(zone, suuid).await?;
            let inside = now
                .as_ref()
                .and_then(|s| s.security_group.as_ref())
                .is_some_and(|g| g.id == uuid);
            if !inside {
                self.set_server_group(zone, suuid, uuid, res).await?;
            }
            Ok::<(), ProviderError>(())
        }))
        .await
        .map(drop)
    }

    /// Detaching moves the server back to the project's default security group of its
    /// zone.
    async fn detach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()> {
        if server_ids.is_empty() {
            return Ok(());
        }
        let (zone, uuid) = self.locate(id)?;
        let default = self
            .groups_in(zone, &[("project_default", "true".to_string())], Via::Lane)
            .await?
            .into_iter()
            .find(|g| g.project_default)
            .ok_or_else(|| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::NotFound,
                    format!(
                        "the project has no default security group in {zone} to move servers \
                         back to (set one in the Scaleway console)"
                    ),
                )
            })?;
        let servers = server_ids
            .iter()
            .map(|server| self.locate(server).map(|(_, suuid)| suuid))
            .collect::<ProviderResult<Vec<_>>>()?;
        let default = default.id.as_str();
        futures_util::future::try_join_all(servers.into_iter().map(|suuid| async move {
            let now = self.server_read(zone, suuid).await?;
            let inside = now
                .as_ref()
                .and_then(|s| s.security_group.as_ref())
                .is_some_and(|g| g.id == uuid);
            if inside {
                self.set_server_group(zone, suuid, default, res).await?;
            }
            Ok::<(), ProviderError>(())
        }))
        .await
        .map(drop)
    }

    async fn delete_firewall(&self, id: &str, res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        self.delete_at(
            format!("{}/security_groups/{uuid}", instance(zone)),
            Vec::new(),
            res,
        )
        .await
    }
}
