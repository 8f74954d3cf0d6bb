//! Scaleway Domains DNS zones and records: the `DnsApi` surface, one RRset at a time.

use std::collections::BTreeSet;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use crate::providers::scaleway::client::{Paging, Via};
use crate::providers::scaleway::schema::{self, DnsZone, Record};
use crate::providers::{DnsApi, ObservedZone, ProviderResult, RecordType, RrSet};

use super::ScalewayApi;

const DOMAIN: &str = "/domain/v2beta1/dns-zones";

impl ScalewayApi {
    pub(super) async fn zone_records(&self, zone: &str, via: Via) -> ProviderResult<Vec<Record>> {
        self.client
            .list_all(
                &format!("{DOMAIN}/{zone}/records"),
                "records",
                &[],
                Paging::Standard,
                via,
            )
            .await
    }

    pub(super) async fn dns_zones(
        &self,
        name: Option<&str>,
        via: Via,
    ) -> ProviderResult<Vec<DnsZone>> {
        let mut q = vec![("project_id", self.client.project().to_string())];
        if let Some(n) = name {
            q.push(("dns_zone", n.to_string()));
        }
        self.client
            .list_all(DOMAIN, "dns_zones", &q, Paging::Standard, via)
            .await
    }

    pub(super) async fn find_zone(&self, name: &str, via: Via) -> ProviderResult<Option<DnsZone>> {
        Ok(self
            .dns_zones(Some(name), via)
            .await?
            .into_iter()
            .find(|z| z.full_name() == name))
    }

    /// The values and TTL of one RRset now, `None` when it has no record.
    pub(super) async fn rrset_now(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
        via: Via,
    ) -> ProviderResult<Option<RrSet>> {
        let records = self.zone_records(zone, via).await?;
        let name = if name.is_empty() { "@" } else { name };
        Ok(schema::rrsets_from(&records)
            .into_iter()
            .find(|s| s.name == name && s.rtype == rtype))
    }

    /// `PATCH …/dns-zones/{zone}/records` with one change, verified by `done` on the
    /// RRset read back.
    pub(super) async fn records_change(
        &self,
        zone: &str,
        name: &str,
        rtype: RecordType,
        change: Value,
        res: &str,
        done: impl Fn(Option<&RrSet>) -> bool + Send + Sync,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{DOMAIN}/{zone}/records");
        let body = json!({
            "changes": [change],
            "return_all_records": false,
            "disallow_new_zone_creation": true,
        });
        let (path, body, done) = (&path, &body, &done);
        client
            .lane()
            .write(
                Self::op("PATCH", path.clone(), res),
                move || async move {
                    let _: Value = client.send(Method::PATCH, path, &[], Some(body)).await?;
                    Ok(())
                },
                Some(move || async move {
                    let now = self.rrset_now(zone, name, rtype, Via::Direct).await?;
                    Ok(done(now.as_ref()).then_some(()))
                }),
            )
            .await
    }
}

fn value_set(r: &RrSet) -> BTreeSet<&str> {
    r.values.iter().map(String::as_str).collect()
}

#[async_trait]
impl DnsApi for ScalewayApi {
    async fn list_zones(&self) -> ProviderResult<Vec<ObservedZone>> {
        let zones = self.dns_zones(None, Via::Lane).await?;
        let mut out = Vec::with_capacity(zones.len());
        for z in zones {
            let records = self.zone_records(&z.full_name(), Via::Lane).await?;
            out.push(schema::observed_zone(&z, &records));
        }
        Ok(out)
    }

    async fn get_zone(&self, name: &str) -> ProviderResult<Option<ObservedZone>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let Some(z) = self.find_zone(&name, Via::Lane).await? else {
            return Ok(None);
        };
        let records = self.zone_records(&name, Via::Lane).await?;
        Ok(Some(schema::observed_zone(&z, &records)))
    }

    /// A zone under one of the project's zones is created as its subdomain; any other
    /// name as a zone of its own.
    async fn create_zone(&self, name: &str, res: &str) -> ProviderResult<ObservedZone> {
        let client = &self.client;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let existing = self.dns_zones(None, Via::Lane).await?;
        let parent = existing
            .iter()
            .filter(|z| name.ends_with(&format!(".{}", z.full_name())))
            .max_by_key(|z| z.full_name().len());
        let (domain, subdomain) = match parent {
            Some(p) => (
                p.domain.clone(),
                name.trim_end_matches(&format!(".{}", p.domain)).to_string(),
            ),
            None => (name.clone(), String::new()),
        };
        let body = json!({
            "domain": domain,
            "subdomain": subdomain,
            "project_id": client.project(),
        });
        let (body, n) = (&body, &name);
        let zone = client
            .lane()
            .write(
                Self::op("POST", DOMAIN, res),
                move || async move {
                    let z: DnsZone = client.send(Method::POST, DOMAIN, &[], Some(body)).await?;
                    Ok(z)
                },
                Some(move || async move { self.find_zone(n, Via::Direct).await }),
            )
            .await?;
        let records = self.zone_records(&name, Via::Lane).await?;
        Ok(schema::observed_zone(&zone, &records))
    }

    async fn delete_zone(&self, id: &str, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{DOMAIN}/{id}");
        let query = vec![("project_id", client.project().to_string())];
        let (p, q) = (&path, &query);
        client
            .lane()
            .delete(
                Self::op("DELETE", p.clone(), res),
                move || async move {
                    client
                        .send::<Value>(Method::DELETE, p, q, None)
                        .await
                        .map(|_| ())
                },
                move || async move { Ok(self.find_zone(id, Via::Direct).await?.is_some()) },
            )
            .await
    }

    async fn set_rrset(&self, zone_id: &str, rrset: &RrSet, res: &str) -> ProviderResult<()> {
        let want_values = value_set(rrset);
        let want_ttl = rrset.ttl;
        let now = self
            .rrset_now(zone_id, &rrset.name, rrset.rtype, Via::Lane)
            .await?;
        if now
            .as_ref()
            .is_some_and(|n| n.ttl == want_ttl && value_set(n) == want_values)
        {
            return Ok(());
        }
        let change = json!({ "set": {
            "id_fields": { "name": schema::record_name(&rrset.name), "type": rrset.rtype.to_string() },
            "records": schema::records_for(rrset),
        }});
        let want_values = &want_values;
        self.records_change(zone_id, &rrset.name, rrset.rtype, change, res, move |now| {
            now.is_some_and(|n| n.ttl == want_ttl && &value_set(n) == want_values)
        })
        .await
    }

    async fn delete_rrset(
        &self,
        zone_id: &str,
        name: &str,
        rtype: RecordType,
        res: &str,
    ) -> ProviderResult<()> {
        if self
            .rrset_now(zone_id, name, rtype, Via::Lane)
            .await?
            .is_none()
        {
            return Ok(());
        }
        let change = json!({ "delete": {
            "id_fields": { "name": schema::record_name(name), "type": rtype.to_string() },
        }});
        match self
            .records_change(zone_id, name, rtype, change, res, |now| now.is_none())
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}
