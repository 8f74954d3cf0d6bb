//! Hetzner DNS zones and RRsets (the Cloud API's zones): the `DnsApi` surface.

use std::collections::BTreeSet;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::providers::hetzner::client::{Action, ActionEnvelope, Via};
use crate::providers::hetzner::schema::{self, RecordJson, RrSetJson, Zone};
use crate::providers::{DnsApi, ObservedZone, ProviderResult, RecordType, RrSet};

use super::HetznerApi;

#[derive(Deserialize)]
struct ZoneEnvelope {
    zone: Zone,
}

#[derive(Deserialize)]
struct CreateZoneResponse {
    zone: Zone,
    #[serde(default)]
    action: Option<Action>,
}

#[derive(Deserialize)]
struct RrSetEnvelope {
    rrset: RrSetJson,
}

#[derive(Deserialize)]
struct CreateRrSetResponse {
    #[serde(default)]
    action: Option<Action>,
}

impl HetznerApi {
    pub(super) async fn zone_rrsets(
        &self,
        zone_id: u64,
        via: Via,
    ) -> ProviderResult<Vec<RrSetJson>> {
        self.client
            .list_all(&format!("/zones/{zone_id}/rrsets"), "rrsets", &[], via)
            .await
    }

    pub(super) async fn observe_zone(&self, zone: Zone) -> ProviderResult<ObservedZone> {
        let rrsets = self.zone_rrsets(zone.id, Via::Lane).await?;
        Ok(schema::observed_zone(zone, &rrsets))
    }

    /// `POST /zones/{zone}/rrsets/{name}/{type}/actions/{action}` with a verifier.
    pub(super) async fn rrset_action(
        &self,
        base: &str,
        action: &str,
        body: Value,
        res: &str,
        done: impl Fn(&RrSetJson) -> bool + Send + Sync,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{base}/actions/{action}");
        let (path, body, done) = (&path, &body, &done);
        let action = self
            .unless_locked(|| {
                client.lane().write(
                    Self::op("POST", path.clone(), res),
                    move || async move {
                        let env: ActionEnvelope =
                            client.send(Method::POST, path, Some(body)).await?;
                        Ok(Some(env.action))
                    },
                    Some(move || async move {
                        let now = client.get_opt::<RrSetEnvelope>(base).await?;
                        Ok(now.filter(|e| done(&e.rrset)).map(|_| None))
                    }),
                )
            })
            .await?;
        match action {
            Some(a) => client.wait(&a).await,
            None => Ok(()),
        }
    }
}

/// The values of a Hetzner RRset as Legion sees them (TXT unquoted), as a set.
fn value_set(r: &RrSetJson) -> BTreeSet<String> {
    schema::rrset_from(r, 0)
        .map(|r| r.values.into_iter().collect())
        .unwrap_or_default()
}

#[async_trait]
impl DnsApi for HetznerApi {
    async fn list_zones(&self) -> ProviderResult<Vec<ObservedZone>> {
        let zones: Vec<Zone> = self
            .client
            .list_all("/zones", "zones", &[], Via::Lane)
            .await?;
        let mut out = Vec::with_capacity(zones.len());
        for z in zones {
            out.push(self.observe_zone(z).await?);
        }
        Ok(out)
    }

    async fn get_zone(&self, name: &str) -> ProviderResult<Option<ObservedZone>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self
            .client
            .read_opt::<ZoneEnvelope>(&format!("/zones/{name}"))
            .await?
        {
            Some(env) => Ok(Some(self.observe_zone(env.zone).await?)),
            None => Ok(None),
        }
    }

    async fn create_zone(&self, name: &str, res: &str) -> ProviderResult<ObservedZone> {
        let client = &self.client;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let body = json!({ "name": name, "mode": "primary" });
        let path = format!("/zones/{name}");
        let (body, path) = (&body, &path);
        let (zone, action) = client
            .lane()
            .write(
                Self::op("POST", "/zones", res),
                move || async move {
                    let r: CreateZoneResponse =
                        client.send(Method::POST, "/zones", Some(body)).await?;
                    Ok((r.zone, r.action))
                },
                Some(move || async move {
                    Ok(client
                        .get_opt::<ZoneEnvelope>(path)
                        .await?
                        .map(|e| (e.zone, None)))
                }),
            )
            .await?;
        if let Some(a) = action {
            client.wait(&a).await?;
        }
        self.observe_zone(zone).await
    }

    async fn delete_zone(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.delete_at(format!("/zones/{id}"), res).await
    }

    async fn set_rrset(&self, zone_id: &str, rrset: &RrSet, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let name = schema::rrset_name(&rrset.name);
        let rtype = rrset.rtype.to_string();
        let base = format!("/zones/{zone_id}/rrsets/{name}/{rtype}");
        let records: Vec<RecordJson> = schema::records_for(rrset);
        let want_values: BTreeSet<String> = rrset.values.iter().cloned().collect();
        let want_ttl = rrset.ttl;
        let current = client.read_opt::<RrSetEnvelope>(&base).await?;
        let Some(current) = current.map(|e| e.rrset) else {
            let path = format!("/zones/{zone_id}/rrsets");
            let body = json!({ "name": name, "type": rtype, "ttl": want_ttl, "records": records });
            let (path, body, base, want_values) = (&path, &body, &base, &want_values);
            let action = client
                .lane()
                .write(
                    Self::op("POST", path.clone(), res),
                    move || async move {
                        let r: CreateRrSetResponse =
                            client.send(Method::POST, path, Some(body)).await?;
                        Ok(r.action)
                    },
                    Some(move || async move {
                        let now = client.get_opt::<RrSetEnvelope>(base).await?;
                        Ok(now
                            .filter(|e| {
                                e.rrset.ttl == Some(want_ttl) && &value_set(&e.rrset) == want_values
                            })
                            .map(|_| None))
                    }),
                )
                .await?;
            if let Some(a) = action {
                client.wait(&a).await?;
            }
            return Ok(());
        };
        if value_set(&current) != want_values {
            let want_values = &want_values;
            self.rrset_action(
                &base,
                "set_records",
                json!({ "records": records }),
                res,
                move |r| &value_set(r) == want_values,
            )
            .await?;
        }
        if current.ttl != Some(want_ttl) {
            self.rrset_action(
                &base,
                "change_ttl",
                json!({ "ttl": want_ttl }),
                res,
                move |r| r.ttl == Some(want_ttl),
            )
            .await?;
        }
        Ok(())
    }

    async fn delete_rrset(
        &self,
        zone_id: &str,
        name: &str,
        rtype: RecordType,
        res: &str,
    ) -> ProviderResult<()> {
        let name = schema::rrset_name(name);
        self.delete_at(format!("/zones/{zone_id}/rrsets/{name}/{rtype}"), res)
            .await
    }
}
