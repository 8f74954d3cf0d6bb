//! The OVHcloud adapter: Legion's compute, SSH-key and DNS surfaces over the OVHcloud API
//! (`/cloud/project/{serviceName}/…` and `/domain/zone/…`).
//!
//! Reads go through the lane ([`Client::read`] with [`Via::Lane`]). Every write goes
//! through [`Lane::write`] with a verifier that reads OVHcloud back after an ambiguous
//! failure and accepts only the desired final state; verifiers call the client directly
//! ([`Via::Direct`]), because the lane already runs them as reads. Deletes accept 404.
//! The instance endpoints return no operation to wait on: the adapter polls the
//! instance's status after the write returns, outside the lane's permit.
//!
//! | write | the verifier accepts only |
//! |---|---|
//! | `POST /instance` | an instance with the spec's name carrying every label of the spec |
//! | `POST /instance/{id}/start`, `/reboot` | the instance `ACTIVE` |
//! | `POST /instance/{id}/stop` | the instance `SHUTOFF` |
//! | `POST /instance/{id}/reinstall` | the instance `ACTIVE` with the requested image |
//! | `POST /instance/{id}/resize` | the instance with the requested flavor, `ACTIVE` or `SHUTOFF` |
//! | `DELETE /instance/{id}` | the instance gone or `DELETING` (a 404 is success) |
//! | `POST /sshkey` | a key with this name and this public key |
//! | `DELETE /sshkey/{id}`, `/domain/zone/{z}/record/{id}` | gone (a 404 is success) |
//! | `POST /domain/zone/{z}/record` | a record of this subdomain, type, target and TTL |
//! | `PUT /domain/zone/{z}/record/{id}` | the record with the wanted TTL |
//! | `POST /domain/zone/{z}/refresh` | none: a refresh leaves nothing to read back |

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::DISPLAY;
use super::client::{Client, ClientConfig, Via};
use super::schema::{self, Flavor, ImageJson, Instance, Names, PriceCatalog, Record, SshKey};
use crate::providers::{
    Catalog, ComputeApi, DnsApi, ErrorKind, LABEL_INSTALL, Lane, ObservedServer, ObservedZone,
    ProviderApi, ProviderError, ProviderResult, RecordType, RrSet, ServerSpec, ServerStatus,
    SshKeyApi, StopMode, WriteOp,
};

pub struct OvhApi {
    client: Client,
    /// Flavor and image names by id, for the instance list (which gives ids only).
    names: Mutex<Names>,
}

impl std::fmt::Debug for OvhApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OvhApi")
            .field("client", &self.client)
            .finish()
    }
}

fn has_labels(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn op(method: &'static str, path: impl Into<String>, res: &str) -> WriteOp {
    WriteOp::new(method, path).for_resource(Some(res.to_string()))
}

impl OvhApi {
    /// An adapter talking to `config.base_url`, every call through `lane`.
    pub fn new(config: ClientConfig, lane: Arc<Lane>) -> ProviderResult<OvhApi> {
        Ok(OvhApi {
            client: Client::new(config, lane)?,
            names: Mutex::new(Names::default()),
        })
    }

    fn project(&self) -> String {
        format!("/cloud/project/{}", self.client.project())
    }

    fn instance_path(&self, id: &str) -> String {
        format!("{}/instance/{id}", self.project())
    }

    fn names(&self) -> Names {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn flavors(&self, region: Option<&str>, via: Via) -> ProviderResult<Vec<Flavor>> {
        let query: Vec<(&str, String)> = region
            .map(|r| ("region", r.to_string()))
            .into_iter()
            .collect();
        let flavors: Vec<Flavor> = self
            .client
            .read(&format!("{}/flavor", self.project()), &query, via)
            .await?;
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for f in &flavors {
            names.flavors.insert(f.id.clone(), f.name.clone());
        }
        Ok(flavors)
    }

    async fn images(&self, region: Option<&str>, via: Via) -> ProviderResult<Vec<ImageJson>> {
        let mut query = vec![("osType", "linux".to_string())];
        if let Some(r) = region {
            query.push(("region", r.to_string()));
        }
        let images: Vec<ImageJson> = self
            .client
            .read(&format!("{}/image", self.project()), &query, via)
            .await?;
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for i in &images {
            names.images.insert(i.id.clone(), i.name.clone());
        }
        Ok(images)
    }

    /// Every instance of the project, named (flavor and image ids resolved).
    async fn instances(&self, via: Via) -> ProviderResult<Vec<ObservedServer>> {
        let list: Vec<Instance> = self
            .client
            .read(&format!("{}/instance", self.project()), &[], via)
            .await?;
        if !list.iter().all(|i| self.names().knows(i)) {
            self.flavors(None, via).await?;
            self.images(None, via).await?;
            self.names
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .settle(&list);
        }
        let names = self.names();
        Ok(list
            .into_iter()
            .map(|i| schema::observed_server(i, &names))
            .collect())
    }

    async fn server(&self, id: &str, via: Via) -> ProviderResult<Option<ObservedServer>> {
        let names = self.names();
        Ok(self
            .client
            .read_opt::<Instance>(&self.instance_path(id), via)
            .await?
            .map(|i| schema::observed_server(i, &names)))
    }

    /// The instance `spec` asked for: its name and every label of the spec.
    async fn find_server(
        &self,
        spec: &ServerSpec,
        via: Via,
    ) -> ProviderResult<Option<ObservedServer>> {
        Ok(self
            .instances(via)
            .await?
            .into_iter()
            .find(|s| s.name == spec.name && has_labels(&s.labels, &spec.labels)))
    }

    /// Poll the instance until `done` holds, at most `limit`. An instance in `ERROR` is
    /// a failed operation; `gone_ok` says whether absence counts as done.
    async fn wait_until(
        &self,
        id: &str,
        what: &str,
        limit: std::time::Duration,
        gone_ok: bool,
        done: impl Fn(&ObservedServer) -> bool,
    ) -> ProviderResult<Option<ObservedServer>> {
        let started = tokio::time::Instant::now();
        let poll = self.client.poll();
        let mut interval = poll;
        loop {
            let raw: Option<Instance> = self
                .client
                .read_opt(&self.instance_path(id), Via::Lane)
                .await?;
            match raw {
                None if gone_ok => return Ok(None),
                None => {
                    return Err(ProviderError::new(
                        DISPLAY,
                        ErrorKind::NotFound,
                        format!("instance {id} disappeared while {what}"),
                    ));
                }
                Some(i) if i.status == "ERROR" => {
                    return Err(ProviderError::new(
                        DISPLAY,
                        ErrorKind::Other,
                        format!("instance {id} went into ERROR while {what}"),
                    )
                    .with_code("ERROR"));
                }
                Some(i) => {
                    let s = schema::observed_server(i, &self.names());
                    if done(&s) {
                        return Ok(Some(s));
                    }
                }
            }
            if started.elapsed() >= limit {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::Timeout,
                    format!("instance {id} still not done {what} after {limit:?}"),
                ));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(poll * 5);
        }
    }

    /// `POST /instance/{id}/{action}` through the write wrapper; after an ambiguous
    /// failure it counts as done when the instance shows `done`.
    async fn instance_action(
        &self,
        id: &str,
        action: &str,
        body: Option<Value>,
        res: &str,
        done: impl Fn(&ObservedServer) -> bool + Send + Sync,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{}/{action}", self.instance_path(id));
        let (path, body, done) = (&path, body.as_ref(), &done);
        client
            .lane()
            .write(
                op("POST", path.clone(), res),
                move || async move {
                    client
                        .send::<Value>(Method::POST, path, body)
                        .await
                        .map(|_| ())
                },
                Some(move || async move {
                    Ok(self
                        .server(id, Via::Direct)
                        .await?
                        .filter(|s| done(s))
                        .map(|_| ()))
                }),
            )
            .await
    }

    /// The region's flavor id of an offer name (an id is taken as it is, so OVHcloud
    /// judges it).
    async fn flavor_id(&self, offer: &str, region: &str) -> ProviderResult<String> {
        let flavors = self.flavors(Some(region), Via::Lane).await?;
        Ok(flavors
            .iter()
            .find(|f| f.region == region && (f.name == offer || f.id == offer))
            .map(|f| f.id.clone())
            .unwrap_or_else(|| offer.to_string()))
    }

    async fn image_id(&self, image: &str, region: &str) -> ProviderResult<String> {
        let images = self.images(Some(region), Via::Lane).await?;
        Ok(images
            .iter()
            .find(|i| i.region == region && (i.name == image || i.id == image))
            .map(|i| i.id.clone())
            .unwrap_or_else(|| image.to_string()))
    }

    /// The records of a zone (optionally of one subdomain and type).
    async fn records(
        &self,
        zone: &str,
        filter: Option<(&str, RecordType)>,
        via: Via,
    ) -> ProviderResult<Vec<Record>> {
        let mut query = Vec::new();
        if let Some((sub, rtype)) = filter {
            query.push(("fieldType", rtype.to_string()));
            query.push(("subDomain", schema::sub_domain(sub)));
        }
        let ids: Vec<u64> = self
            .client
            .read(&format!("/domain/zone/{zone}/record"), &query, via)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let path = format!("/domain/zone/{zone}/record/{id}");
            if let Some(r) = self.client.read_opt::<Record>(&path, via).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn observe_zone(&self, zone: &str) -> ProviderResult<Option<ObservedZone>> {
        let Some(z) = self
            .client
            .read_opt::<schema::ZoneJson>(&format!("/domain/zone/{zone}"), Via::Lane)
            .await?
        else {
            return Ok(None);
        };
        let records = self.records(&z.name, None, Via::Lane).await?;
        Ok(Some(ObservedZone {
            id: z.name.clone(),
            name: z.name,
            nameservers: z.name_servers,
            rrsets: schema::rrsets(&records),
        }))
    }

    /// `DELETE /domain/zone/{zone}/record/{id}`: 404 is success.
    async fn delete_record(&self, zone: &str, id: u64, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("/domain/zone/{zone}/record/{id}");
        let p = &path;
        client
            .lane()
            .delete(
                op("DELETE", p.clone(), res),
                move || async move {
                    client
                        .send::<Value>(Method::DELETE, p, None)
                        .await
                        .map(|_| ())
                },
                move || async move { Ok(client.get_opt::<Value>(p).await?.is_some()) },
            )
            .await
    }

    /// `POST /domain/zone/{zone}/refresh`: publishes the zone's changes.
    async fn refresh_zone(&self, zone: &str, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("/domain/zone/{zone}/refresh");
        let p = &path;
        client
            .lane()
            .write(
                op("POST", p.clone(), res),
                move || async move {
                    client
                        .send::<Value>(Method::POST, p, None)
                        .await
                        .map(|_| ())
                },
                // A refresh leaves nothing in the zone that can be read back, so an
                // ambiguous failure is reported as it is (the next change refreshes again).
                None::<fn() -> std::future::Ready<ProviderResult<Option<()>>>>,
            )
            .await
    }
}

#[async_trait]
impl ProviderApi for OvhApi {
    async fn verify(&self) -> ProviderResult<()> {
        // The project's own record proves the signature, the consumer key's rights and
        // the service name at once.
        self.client
            .read::<Value>(&self.project(), &[], Via::Lane)
            .await
            .map(|_| ())
    }
    fn compute(&self) -> Option<&dyn ComputeApi> {
        Some(self)
    }
    fn dns(&self) -> Option<&dyn DnsApi> {
        Some(self)
    }
    fn ssh_keys(&self) -> Option<&dyn SshKeyApi> {
        Some(self)
    }
}

#[async_trait]
impl ComputeApi for OvhApi {
    async fn catalog(&self) -> ProviderResult<Catalog> {
        let regions: Vec<String> = self
            .client
            .read(&format!("{}/region", self.project()), &[], Via::Lane)
            .await?;
        let flavors = self.flavors(None, Via::Lane).await?;
        let images = self.images(None, Via::Lane).await?;
        // The public price list, read unsigned: a consumer key need not be granted it.
        let prices: PriceCatalog = self
            .client
            .read_public(
                "/order/catalog/public/cloud",
                &[("ovhSubsidiary", self.client.subsidiary().to_string())],
            )
            .await?;
        let offers = schema::offers(&flavors, &schema::hourly_prices(&prices));
        Ok(Catalog {
            regions: schema::regions(&regions),
            images: schema::images(&images),
            offers,
        })
    }

    async fn list_servers(&self, install: &str) -> ProviderResult<Vec<ObservedServer>> {
        Ok(self
            .instances(Via::Lane)
            .await?
            .into_iter()
            .filter(|s| s.labels.get(LABEL_INSTALL).map(String::as_str) == Some(install))
            .collect())
    }

    async fn get_server(&self, id: &str) -> ProviderResult<Option<ObservedServer>> {
        self.server(id, Via::Lane).await
    }

    async fn create_server(&self, spec: &ServerSpec, res: &str) -> ProviderResult<ObservedServer> {
        let client = &self.client;
        let mut body = json!({
            "name": schema::encode_name(&spec.name, &spec.labels),
            "flavorId": self.flavor_id(&spec.offer, &spec.region).await?,
            "imageId": self.image_id(&spec.image, &spec.region).await?,
            "region": spec.region,
            "monthlyBilling": false,
        });
        if let Some(key) = &spec.ssh_key_id {
            body["sshKeyId"] = json!(key);
        }
        if let Some(data) = &spec.user_data {
            body["userData"] = json!(data);
        }
        let path = format!("{}/instance", self.project());
        let (path, body) = (&path, &body);
        let names = self.names();
        let names = &names;
        let created = client
            .lane()
            .write(
                op("POST", path.clone(), res),
                move || async move {
                    let i: Instance = client.send(Method::POST, path, Some(body)).await?;
                    Ok(schema::observed_server(i, names))
                },
                // Identity, not a blind repeat: the instance with this name carrying every
                // label of the spec (the node's `legion-node` uid among them).
                Some(move || async move { self.find_server(spec, Via::Direct).await }),
            )
            .await?;
        let ready = self
            .wait_until(
                &created.id,
                "being built",
                self.client.action_timeout(),
                false,
                |s| s.status == ServerStatus::Running,
            )
            .await?;
        Ok(ready.unwrap_or(created))
    }

    async fn start_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        let running = |s: &ObservedServer| s.status == ServerStatus::Running;
        // OVHcloud refuses to start a running instance (409 vm_state active).
        if self
            .server(id, Via::Lane)
            .await?
            .is_some_and(|s| running(&s))
        {
            return Ok(());
        }
        self.instance_action(id, "start", None, res, running)
            .await?;
        self.wait_until(id, "starting", self.client.action_timeout(), false, running)
            .await
            .map(|_| ())
    }

    async fn stop_server(&self, id: &str, _mode: StopMode, res: &str) -> ProviderResult<()> {
        // OVHcloud has one stop: a clean shutdown that the platform turns into a power-off
        // when the system does not comply. Graceful and hard stops are the same call.
        let off = |s: &ObservedServer| s.status == ServerStatus::Off;
        // OVHcloud refuses to stop a stopped instance (409 vm_state stopped).
        if self.server(id, Via::Lane).await?.is_some_and(|s| off(&s)) {
            return Ok(());
        }
        self.instance_action(id, "stop", None, res, off).await?;
        self.wait_until(id, "stopping", self.client.shutdown_timeout(), false, off)
            .await
            .map_err(|e| {
                if e.kind == ErrorKind::Timeout {
                    ProviderError::new(
                        DISPLAY,
                        ErrorKind::Timeout,
                        format!(
                            "instance {id} did not stop within {:?} (its system may ignore \
                             the shutdown; stop it from the OVHcloud Control Panel)",
                            self.client.shutdown_timeout()
                        ),
                    )
                } else {
                    e
                }
            })
            .map(|_| ())
    }

    async fn reboot_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        let running = |s: &ObservedServer| s.status == ServerStatus::Running;
        self.instance_action(id, "reboot", Some(json!({"type": "soft"})), res, running)
            .await?;
        self.wait_until(
            id,
            "rebooting",
            self.client.action_timeout(),
            false,
            running,
        )
        .await
        .map(|_| ())
    }

    async fn reset_image(&self, id: &str, image: &str, res: &str) -> ProviderResult<()> {
        let region = self
            .server(id, Via::Lane)
            .await?
            .map(|s| s.region)
            .ok_or_else(|| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::NotFound,
                    format!("instance {id} not found"),
                )
            })?;
        let image_id = self.image_id(image, &region).await?;
        let done = |s: &ObservedServer| {
            s.status == ServerStatus::Running
                && (s.image.as_deref() == Some(image) || s.image.as_deref() == Some(&image_id))
        };
        self.instance_action(
            id,
            "reinstall",
            Some(json!({"imageId": image_id})),
            res,
            done,
        )
        .await?;
        self.wait_until(
            id,
            "reinstalling",
            self.client.action_timeout(),
            false,
            done,
        )
        .await
        .map(|_| ())
    }

    fn can_resize(&self) -> bool {
        true
    }

    /// `POST /instance/{id}/resize` with the region's `flavorId`; OVHcloud confirms the
    /// resize itself and the instance keeps its power state (the caller stopped it).
    async fn resize_server(&self, id: &str, offer: &str, res: &str) -> ProviderResult<()> {
        let region = self
            .server(id, Via::Lane)
            .await?
            .map(|s| s.region)
            .ok_or_else(|| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::NotFound,
                    format!("instance {id} not found"),
                )
            })?;
        let flavor_id = self.flavor_id(offer, &region).await?;
        let resized = |s: &ObservedServer| s.offer == offer || s.offer == flavor_id;
        let settled = |s: &ObservedServer| {
            resized(s) && matches!(s.status, ServerStatus::Off | ServerStatus::Running)
        };
        self.instance_action(
            id,
            "resize",
            Some(json!({"flavorId": flavor_id})),
            res,
            settled,
        )
        .await?;
        self.wait_until(id, "resizing", self.client.action_timeout(), false, settled)
            .await
            .map(|_| ())
    }

    async fn destroy_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let path = self.instance_path(id);
        let p = &path;
        client
            .lane()
            .write(
                op("DELETE", p.clone(), res),
                move || async move {
                    match client.send::<Value>(Method::DELETE, p, None).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.is_not_found() => Ok(()),
                        Err(e) => Err(e),
                    }
                },
                // Gone, or on its way out.
                Some(move || async move {
                    let now = self.server(id, Via::Direct).await?;
                    let gone = now.is_none_or(|s| s.status == ServerStatus::Deleting);
                    Ok(gone.then_some(()))
                }),
            )
            .await?;
        self.wait_until(
            id,
            "being deleted",
            self.client.action_timeout(),
            true,
            |_| false,
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl SshKeyApi for OvhApi {
    async fn ensure_key(&self, name: &str, public_key: &str, res: &str) -> ProviderResult<String> {
        let client = &self.client;
        let path = format!("{}/sshkey", self.project());
        let keys: Vec<SshKey> = client.read(&path, &[], Via::Lane).await?;
        if let Some(key) = keys.iter().find(|k| k.name == name) {
            if schema::same_public_key(&key.public_key, public_key) {
                return Ok(key.id.clone());
            }
            return Err(ProviderError::new(
                DISPLAY,
                ErrorKind::Conflict,
                format!(
                    "an SSH key named {name:?} already exists in the project with a different \
                     public key (rename or delete key {} in the OVHcloud Control Panel)",
                    key.id
                ),
            ));
        }
        let body = json!({ "name": name, "publicKey": public_key });
        let (path, body) = (&path, &body);
        client
            .lane()
            .write(
                op("POST", path.clone(), res),
                move || async move {
                    let k: SshKey = client.send(Method::POST, path, Some(body)).await?;
                    Ok(k.id)
                },
                // The key with this name and this public key exists.
                Some(move || async move {
                    let keys: Vec<SshKey> = client.get(path, &[]).await?;
                    Ok(keys.into_iter().find_map(|k| {
                        (k.name == name && schema::same_public_key(&k.public_key, public_key))
                            .then_some(k.id)
                    }))
                }),
            )
            .await
    }

    async fn delete_key(&self, id: &str, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{}/sshkey/{id}", self.project());
        let p = &path;
        client
            .lane()
            .delete(
                op("DELETE", p.clone(), res),
                move || async move {
                    client
                        .send::<Value>(Method::DELETE, p, None)
                        .await
                        .map(|_| ())
                },
                move || async move { Ok(client.get_opt::<Value>(p).await?.is_some()) },
            )
            .await
    }
}

fn no_zone_orders(name: &str) -> ProviderError {
    ProviderError::new(
        DISPLAY,
        ErrorKind::Unsupported,
        format!(
            "DNS zone {name} is not in this OVHcloud account; OVHcloud zones come with a \
             domain or a DNS zone order, so order it in the OVHcloud Control Panel and \
             Legion will manage its records"
        ),
    )
}

#[async_trait]
impl DnsApi for OvhApi {
    async fn list_zones(&self) -> ProviderResult<Vec<ObservedZone>> {
        let names: Vec<String> = self.client.read("/domain/zone", &[], Via::Lane).await?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(z) = self.observe_zone(&n).await? {
                out.push(z);
            }
        }
        Ok(out)
    }

    async fn get_zone(&self, name: &str) -> ProviderResult<Option<ObservedZone>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.observe_zone(&name).await
    }

    /// OVHcloud cannot create a zone with one call: an existing zone of that name is
    /// adopted, anything else is refused with what to do.
    async fn create_zone(&self, name: &str, _res: &str) -> ProviderResult<ObservedZone> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.observe_zone(&name)
            .await?
            .ok_or_else(|| no_zone_orders(&name))
    }

    /// Zones are terminated through a confirmed order, not an API call: refused with what
    /// to do (the engine removes only its records from zones it did not create).
    async fn delete_zone(&self, id: &str, _res: &str) -> ProviderResult<()> {
        Err(ProviderError::new(
            DISPLAY,
            ErrorKind::Unsupported,
            format!(
                "OVHcloud zones cannot be deleted through the API; terminate zone {id} in the \
                 OVHcloud Control Panel if it is no longer needed"
            ),
        ))
    }

    async fn set_rrset(&self, zone_id: &str, rrset: &RrSet, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let zone = zone_id;
        let rtype = rrset.rtype;
        let sub = schema::sub_domain(&rrset.name);
        let current = self
            .records(zone, Some((&rrset.name, rtype)), Via::Lane)
            .await?;
        let mut changed = false;
        let mut kept: Vec<&str> = Vec::new();
        for r in &current {
            let value = schema::value_of(rtype, &r.target);
            let wanted = rrset.values.contains(&value) && !kept.contains(&value.as_str());
            if !wanted {
                self.delete_record(zone, r.id, res).await?;
                changed = true;
                continue;
            }
            if let Some(v) = rrset.values.iter().find(|v| **v == value) {
                kept.push(v.as_str());
            }
            if r.ttl != Some(rrset.ttl) {
                let path = format!("/domain/zone/{zone}/record/{}", r.id);
                let body = json!({ "ttl": rrset.ttl });
                let (path, body) = (&path, &body);
                let want_ttl = rrset.ttl;
                client
                    .lane()
                    .write(
                        op("PUT", path.clone(), res),
                        move || async move {
                            client
                                .send::<Value>(Method::PUT, path, Some(body))
                                .await
                                .map(|_| ())
                        },
                        Some(move || async move {
                            let now = client.get_opt::<Record>(path).await?;
                            Ok(now.filter(|r| r.ttl == Some(want_ttl)).map(|_| ()))
                        }),
                    )
                    .await?;
                changed = true;
            }
        }
        let path = format!("/domain/zone/{zone}/record");
        for value in rrset.values.iter().filter(|v| !kept.contains(&v.as_str())) {
            let target = schema::target_for(rtype, value);
            let body = json!({
                "fieldType": rtype.to_string(),
                "subDomain": sub,
                "target": target,
                "ttl": rrset.ttl,
            });
            let (path, body, sub, target) = (&path, &body, &sub, &target);
            let want_ttl = rrset.ttl;
            client
                .lane()
                .write(
                    op("POST", path.clone(), res),
                    move || async move {
                        client
                            .send::<Record>(Method::POST, path, Some(body))
                            .await
                            .map(|_| ())
                    },
                    // A record of this name, type, value and TTL exists.
                    Some(move || async move {
                        let query = [("fieldType", rtype.to_string()), ("subDomain", sub.clone())];
                        let ids: Vec<u64> = client.get(path, &query).await?;
                        for id in ids {
                            let r: Option<Record> = client.get_opt(&format!("{path}/{id}")).await?;
                            if r.is_some_and(|r| &r.target == target && r.ttl == Some(want_ttl)) {
                                return Ok(Some(()));
                            }
                        }
                        Ok(None)
                    }),
                )
                .await?;
            changed = true;
        }
        if changed {
            self.refresh_zone(zone, res).await?;
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
        let records = self
            .records(zone_id, Some((name, rtype)), Via::Lane)
            .await?;
        if records.is_empty() {
            return Ok(());
        }
        for r in &records {
            self.delete_record(zone_id, r.id, res).await?;
        }
        self.refresh_zone(zone_id, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_when_every_wanted_label_is_there() {
        let have: BTreeMap<String, String> = [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]
        .into();
        let want: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert!(has_labels(&have, &want));
        assert!(!has_labels(&want, &have));
    }
}
