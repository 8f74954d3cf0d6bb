//! The Scaleway adapter: Legion's compute, DNS, firewall and SSH-key surfaces over the
//! Instance, Marketplace, Block Storage, IAM and Domains APIs.
//!
//! Reads go through the lane ([`Client::read`], [`Client::list_all`] with [`Via::Lane`]).
//! Every write goes through [`Lane::write`] (or [`Lane::delete`]) with a verifier that
//! reads Scaleway back after an ambiguous failure and accepts only the desired final
//! state. Verifiers call the client directly (the lane already runs them as reads).
//! Deletes accept 404.
//!
//! Scaleway creates servers stopped: `create_server` creates, then powers on and polls
//! the server until `running`. Power actions (`poweron`, `poweroff`, `reboot`) go to
//! `POST …/servers/{id}/action` and are waited on by polling the server's state after
//! the write returned, outside the lane's permit. A server busy with another action is
//! refused with `transient_state` (the `Locked` kind), which the lane repeats.
//! Destroying powers the server off, deletes it, then deletes the volumes it had (a
//! deleted server leaves its volumes behind, and they are billed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Client, ClientConfig, Paging, Via};
use super::schema::{
    self, Availability, BlockVolume, DnsZone, ImageEnvelope, ImageRoot, InstanceVolume,
    InstanceVolumeEnvelope, LocalImage, MarketImage, Record, SecurityGroup, SecurityGroupEnvelope,
    Server, ServerEnvelope, ServerType, SgRule, SshKey, ZoneProducts,
};
use super::{DISPLAY, ZONES};
use crate::providers::{
    Catalog, ComputeApi, DnsApi, ErrorKind, FirewallApi, FirewallRule, LABEL_INSTALL, Lane,
    ObservedFirewall, ObservedServer, ObservedZone, ProviderApi, ProviderError, ProviderResult,
    RecordType, RrSet, ServerSpec, ServerStatus, SshKeyApi, StopMode, WriteOp,
};

const DOMAIN: &str = "/domain/v2beta1/dns-zones";
const SSH_KEYS: &str = "/iam/v1alpha1/ssh-keys";

#[derive(Deserialize)]
struct AvailabilityResponse {
    #[serde(default)]
    servers: BTreeMap<String, Availability>,
}

fn instance(zone: &str) -> String {
    format!("/instance/v1/zones/{zone}")
}

fn block(zone: &str) -> String {
    format!("/block/v1/zones/{zone}/volumes")
}

/// The tag on the root volumes a reinstall makes, naming their server.
fn root_tag(server: &str) -> String {
    format!("legion-root-of={server}")
}

/// The id of the volume a server boots from (index `0`).
fn root_id(s: &Server) -> Option<&str> {
    s.volumes.get("0").map(|v| v.id.as_str())
}

/// Where a server's root volume lives: the Instance API (`l_ssd`, local) or Block
/// Storage (`sbs_volume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Local,
    Block,
}

impl Store {
    fn of(volume_type: &str) -> Option<Store> {
        match volume_type {
            "l_ssd" => Some(Store::Local),
            "sbs_volume" => Some(Store::Block),
            _ => None,
        }
    }

    fn volume_type(self) -> &'static str {
        match self {
            Store::Local => "l_ssd",
            Store::Block => "sbs_volume",
        }
    }

    /// The Marketplace's local image type for this kind of root.
    fn market_type(self) -> &'static str {
        match self {
            Store::Local => "instance_local",
            Store::Block => "instance_sbs",
        }
    }

    /// Whether an image's root snapshot of `volume_type` makes this kind of volume.
    fn takes_snapshot(self, volume_type: &str) -> bool {
        match self {
            Store::Local => matches!(volume_type, "l_ssd" | "unified"),
            Store::Block => volume_type == "sbs_snapshot",
        }
    }

    fn volume_path(self, zone: &str, id: &str) -> String {
        match self {
            Store::Local => format!("{}/volumes/{id}", instance(zone)),
            Store::Block => format!("{}/{id}", block(zone)),
        }
    }
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unknown_zone(zone: &str) -> ProviderError {
    ProviderError::new(
        DISPLAY,
        ErrorKind::InvalidInput,
        format!(
            "{zone:?} is not a Scaleway Instances zone ({})",
            ZONES.join(", ")
        ),
    )
}

pub struct ScalewayApi {
    client: Client,
}

impl std::fmt::Debug for ScalewayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalewayApi")
            .field("client", &self.client)
            .finish()
    }
}

impl ScalewayApi {
    /// An adapter talking to `config.base_url`, every call through `lane`.
    pub fn new(config: ClientConfig, lane: Arc<Lane>) -> ProviderResult<ScalewayApi> {
        Ok(ScalewayApi {
            client: Client::new(config, lane)?,
        })
    }

    fn op(method: &'static str, path: impl Into<String>, res: &str) -> WriteOp {
        WriteOp::new(method, path).for_resource(Some(res.to_string()))
    }

    /// The zone and Scaleway id of a Legion id, the zone checked.
    fn locate<'a>(&'a self, id: &'a str) -> ProviderResult<(&'a str, &'a str)> {
        let (zone, uuid) = schema::split_id(id, self.client.zone());
        if !ZONES.contains(&zone) {
            return Err(unknown_zone(zone));
        }
        Ok((zone, uuid))
    }

    fn project_query(&self) -> (&'static str, String) {
        ("project", self.client.project().to_string())
    }

    async fn server_direct(&self, zone: &str, uuid: &str) -> ProviderResult<Option<Server>> {
        Ok(self
            .client
            .get_opt::<ServerEnvelope>(&format!("{}/servers/{uuid}", instance(zone)))
            .await?
            .map(|e| e.server))
    }

    async fn server_read(&self, zone: &str, uuid: &str) -> ProviderResult<Option<Server>> {
        Ok(self
            .client
            .read_opt::<ServerEnvelope>(&format!("{}/servers/{uuid}", instance(zone)))
            .await?
            .map(|e| e.server))
    }

    /// Our servers in one zone: the `tags` filter on the server side, the labels again
    /// here.
    async fn servers_in(
        &self,
        zone: &str,
        labels: &BTreeMap<String, String>,
        name: Option<&str>,
        via: Via,
    ) -> ProviderResult<Vec<ObservedServer>> {
        let mut query = vec![
            self.project_query(),
            ("tags", schema::tags_from_labels(labels).join(",")),
        ];
        if let Some(name) = name {
            query.push(("name", name.to_string()));
        }
        let servers: Vec<Server> = self
            .client
            .list_all(
                &format!("{}/servers", instance(zone)),
                "servers",
                &query,
                Paging::Instance,
                via,
            )
            .await?;
        Ok(servers
            .into_iter()
            .map(|s| schema::observed_server(s, zone))
            .filter(|s| schema::has_labels(&s.labels, labels))
            .filter(|s| name.is_none_or(|n| s.name == n))
            .collect())
    }

    /// The server `spec` asked for: its name and every label of the spec.
    async fn find_server(
        &self,
        spec: &ServerSpec,
        via: Via,
    ) -> ProviderResult<Option<ObservedServer>> {
        Ok(self
            .servers_in(&spec.region, &spec.labels, Some(&spec.name), via)
            .await?
            .into_iter()
            .next())
    }

    /// `POST …/servers/{id}/action`. After an ambiguous failure the write counts as
    /// done when the server shows `done`. A `transient_state` refusal (another action
    /// running) is repeated by the lane.
    async fn server_action(
        &self,
        zone: &str,
        uuid: &str,
        action: &str,
        res: &str,
        done: impl Fn(&ObservedServer) -> bool + Send + Sync,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{}/servers/{uuid}/action", instance(zone));
        let body = json!({ "action": action });
        let (path, body, done) = (&path, &body, &done);
        client
            .lane()
            .write(
                Self::op("POST", path.clone(), res),
                move || async move {
                    let _task: Value = client.send(Method::POST, path, &[], Some(body)).await?;
                    Ok(())
                },
                Some(move || async move {
                    Ok(self
                        .server_direct(zone, uuid)
                        .await?
                        .map(|s| schema::observed_server(s, zone))
                        .filter(|s| done(s))
                        .map(|_| ()))
                }),
            )
            .await
    }

    /// Poll the server until `want` holds for its state, within `limit`.
    async fn wait_for(
        &self,
        zone: &str,
        uuid: &str,
        want: ServerStatus,
        limit: std::time::Duration,
    ) -> ProviderResult<()> {
        let started = tokio::time::Instant::now();
        let mut interval = self.client.action_poll();
        let mut moving = false;
        loop {
            let Some(s) = self.server_read(zone, uuid).await? else {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::NotFound,
                    format!(
                        "server {zone}/{uuid} disappeared while Legion waited for it to be {want}"
                    ),
                ));
            };
            let now = schema::server_status(&s.state);
            if now == want {
                return Ok(());
            }
            // Back at rest in another state after a transition: the action failed.
            let transitional = matches!(now, ServerStatus::Starting | ServerStatus::Stopping)
                || s.state_detail == "rebooting";
            if moving && !transitional {
                let detail = if s.state_detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.state_detail)
                };
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::Other,
                    format!(
                        "server {zone}/{uuid} went back to {} instead of becoming {want}{detail}",
                        s.state
                    ),
                ));
            }
            moving |= transitional;
            if started.elapsed() >= limit {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::Timeout,
                    format!(
                        "server {zone}/{uuid} is still {} after {limit:?} (Legion waited for {want})",
                        s.state
                    ),
                ));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(self.client.action_poll() * 5);
        }
    }

    /// Power on (unless running) and wait for `running`.
    async fn power_on(&self, zone: &str, uuid: &str, res: &str) -> ProviderResult<()> {
        self.power_to(zone, uuid, res, ServerStatus::Running).await
    }

    /// Power off (unless stopped) and wait for `stopped`; a server already gone is off.
    async fn power_off(&self, zone: &str, uuid: &str, res: &str) -> ProviderResult<()> {
        self.power_to(zone, uuid, res, ServerStatus::Off).await
    }

    /// `poweron` towards `Running`, `poweroff` towards `Off`, unless the server is there
    /// or on its way; then wait for it.
    async fn power_to(
        &self,
        zone: &str,
        uuid: &str,
        res: &str,
        want: ServerStatus,
    ) -> ProviderResult<()> {
        let (action, on_the_way, timeout) = if want == ServerStatus::Running {
            (
                "poweron",
                ServerStatus::Starting,
                self.client.action_timeout(),
            )
        } else {
            (
                "poweroff",
                ServerStatus::Stopping,
                self.client.shutdown_timeout(),
            )
        };
        let state = self.server_read(zone, uuid).await?.map(|s| s.state);
        match state.as_deref().map(schema::server_status) {
            None if want == ServerStatus::Off => return Ok(()),
            Some(s) if s == want || s == on_the_way => {}
            _ => {
                self.server_action(zone, uuid, action, res, move |s| {
                    s.status == want || s.status == on_the_way
                })
                .await?
            }
        }
        self.wait_for(zone, uuid, want, timeout).await
    }

    /// DELETE `path` through [`Lane::delete`]: 404 is success, an ambiguous failure is
    /// resolved by asking whether `path` still exists.
    async fn delete_at(
        &self,
        path: String,
        query: Vec<(&'static str, String)>,
        res: &str,
    ) -> ProviderResult<()> {
        let client = &self.client;
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
                move || async move { Ok(client.get_opt::<Value>(p).await?.is_some()) },
            )
            .await
    }

    /// Delete a volume of a deleted server. Scaleway detaches it asynchronously and
    /// refuses the deletion (`precondition_failed`, still in use) meanwhile: repeat,
    /// backing off, within the shutdown timeout. A refused request was not applied.
    async fn delete_volume(&self, path: String, res: &str) -> ProviderResult<()> {
        let started = tokio::time::Instant::now();
        let mut interval = self.client.action_poll();
        loop {
            match self.delete_at(path.clone(), Vec::new(), res).await {
                Err(e)
                    if e.code.as_deref() == Some("precondition_failed")
                        && started.elapsed() < self.client.shutdown_timeout() =>
                {
                    tokio::time::sleep(interval).await;
                    interval = (interval * 2).min(self.client.action_poll() * 10);
                }
                other => return other,
            }
        }
    }

    // ---- reinstall: a fresh root volume ----

    /// The snapshot `image` (a Marketplace label) makes root volumes of `store` from, for
    /// a server of `commercial_type` in `zone`: the Marketplace's local image of that
    /// label, zone and volume kind, then its Instance image's `root_volume`.
    async fn image_root(
        &self,
        zone: &str,
        image: &str,
        commercial_type: &str,
        store: Store,
    ) -> ProviderResult<ImageRoot> {
        let query = [
            ("image_label", image.to_string()),
            ("zone", zone.to_string()),
            ("type", store.market_type().to_string()),
        ];
        let local: Vec<LocalImage> = self
            .client
            .list_all(
                "/marketplace/v2/local-images",
                "local_images",
                &query,
                Paging::Standard,
                Via::Lane,
            )
            .await?;
        let Some(local) = schema::pick_local_image(&local, commercial_type) else {
            return Err(ProviderError::new(
                DISPLAY,
                ErrorKind::InvalidInput,
                format!(
                    "the Marketplace has no x86-64 image {image:?} for {commercial_type} \
                     servers with {} root volumes in {zone}",
                    store.volume_type()
                ),
            ));
        };
        let found = self
            .client
            .read_opt::<ImageEnvelope>(&format!("{}/images/{}", instance(zone), local.id))
            .await?;
        let root = found
            .and_then(|e| e.image.root_volume)
            .filter(|r| !r.id.is_empty() && store.takes_snapshot(&r.volume_type));
        root.ok_or_else(|| {
            ProviderError::new(
                DISPLAY,
                ErrorKind::Malformed,
                format!(
                    "image {} ({image} in {zone}) has no {} root snapshot to make a root \
                     volume from",
                    local.id,
                    store.volume_type()
                ),
            )
        })
    }

    /// Root volumes an earlier reinstall of server `uuid` made that are attached to
    /// nothing (made but never swapped in, or swapped out but not deleted): the tag
    /// finds them.
    async fn leftover_roots(
        &self,
        zone: &str,
        uuid: &str,
        store: Store,
        via: Via,
    ) -> ProviderResult<Vec<(String, String)>> {
        let tag = root_tag(uuid);
        Ok(match store {
            Store::Local => {
                let query = [self.project_query(), ("tags", tag)];
                let volumes: Vec<InstanceVolume> = self
                    .client
                    .list_all(
                        &format!("{}/volumes", instance(zone)),
                        "volumes",
                        &query,
                        Paging::Instance,
                        via,
                    )
                    .await?;
                volumes
                    .into_iter()
                    .filter(|v| v.server.is_none())
                    .map(|v| (v.id, v.name))
                    .collect()
            }
            Store::Block => {
                let query = [
                    ("project_id", self.client.project().to_string()),
                    ("tags", tag),
                ];
                let volumes: Vec<BlockVolume> = self
                    .client
                    .list_all(&block(zone), "volumes", &query, Paging::Standard, via)
                    .await?;
                volumes
                    .into_iter()
                    .filter(|v| v.server().is_none())
                    .map(|v| (v.id, v.name))
                    .collect()
            }
        })
    }

    /// A new root volume for server `uuid` from `snapshot`, tagged with the server and
    /// named `name`: an Instance `l_ssd` volume from `base_snapshot` (it takes the
    /// snapshot's size), or a Block Storage volume `from_snapshot` at `size` with
    /// `iops`. After an ambiguous failure, the volume with this name and tag is the
    /// one made.
    #[allow(clippy::too_many_arguments)]
    async fn create_root(
        &self,
        zone: &str,
        uuid: &str,
        store: Store,
        snapshot: &str,
        name: &str,
        size: Option<u64>,
        iops: Option<u32>,
        res: &str,
    ) -> ProviderResult<String> {
        let client = &self.client;
        let tags = vec![root_tag(uuid)];
        let (path, body) = match store {
            Store::Local => (
                format!("{}/volumes", instance(zone)),
                json!({
                    "name": name,
                    "project": client.project(),
                    "volume_type": "l_ssd",
                    "base_snapshot": snapshot,
                    "tags": tags,
                }),
            ),
            Store::Block => {
                let mut body = json!({
                    "name": name,
                    "project_id": client.project(),
                    "from_snapshot": { "snapshot_id": snapshot, "size": size },
                    "tags": tags,
                });
                if let Some(iops) = iops {
                    body["perf_iops"] = json!(iops);
                }
                (block(zone), body)
            }
        };
        let (path, body) = (&path, &body);
        client
            .lane()
            .write(
                Self::op("POST", path.clone(), res),
                move || async move {
                    let v: Value = client.send(Method::POST, path, &[], Some(body)).await?;
                    let made = match store {
                        Store::Local => v.get("volume").and_then(|v| v.get("id")),
                        Store::Block => v.get("id"),
                    };
                    made.and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            ProviderError::new(
                                DISPLAY,
                                ErrorKind::ResponseLost,
                                format!(
                                    "POST {path} was accepted but its response names no volume"
                                ),
                            )
                        })
                },
                // The volume with this name and this server's tag, attached to nothing.
                Some(move || async move {
                    Ok(self
                        .leftover_roots(zone, uuid, store, Via::Direct)
                        .await?
                        .into_iter()
                        .find(|(_, n)| n == name)
                        .map(|(id, _)| id))
                }),
            )
            .await
    }

    /// Poll a new volume until it is `available` (Scaleway fills it from the snapshot
    /// first), within the action timeout.
    async fn wait_volume(&self, zone: &str, store: Store, id: &str) -> ProviderResult<()> {
        let started = tokio::time::Instant::now();
        let mut interval = self.client.action_poll();
        let path = store.volume_path(zone, id);
        loop {
            let state = match store {
                Store::Local => self
                    .client
                    .read_opt::<InstanceVolumeEnvelope>(&path)
                    .await?
                    .map(|e| e.volume.state),
                Store::Block => self
                    .client
                    .read_opt::<BlockVolume>(&path)
                    .await?
                    .map(|v| v.status),
            };
            let Some(state) = state else {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::NotFound,
                    format!("the new root volume {zone}/{id} disappeared while it was made"),
                ));
            };
            match state.as_str() {
                "available" => return Ok(()),
                "error" => {
                    return Err(ProviderError::new(
                        DISPLAY,
                        ErrorKind::Other,
                        format!("Scaleway could not make the new root volume {zone}/{id}"),
                    ));
                }
                _ => {}
            }
            if started.elapsed() >= self.client.action_timeout() {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::Timeout,
                    format!(
                        "the new root volume {zone}/{id} is still {state} after {:?}",
                        self.client.action_timeout()
                    ),
                ));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(self.client.action_poll() * 5);
        }
    }

    /// `PATCH …/servers/{id}` with the server's volumes, `new_root` at index `0` (the
    /// old root is detached, the others kept), verified by the root read back.
    async fn swap_root(
        &self,
        zone: &str,
        uuid: &str,
        volumes: Value,
        new_root: &str,
        res: &str,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("{}/servers/{uuid}", instance(zone));
        let body = json!({ "volumes": volumes });
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
                    let s = self.server_direct(zone, uuid).await?;
                    Ok(s.filter(|s| root_id(s) == Some(new_root)).map(|_| ()))
                }),
            )
            .await
    }

    /// Delete root volumes of server `uuid` attached to nothing, unless the server has
    /// them (never the one it boots from).
    async fn delete_roots(
        &self,
        zone: &str,
        uuid: &str,
        store: Store,
        ids: &[String],
        res: &str,
    ) -> ProviderResult<()> {
        let server = self.server_read(zone, uuid).await?;
        for id in ids {
            if server
                .as_ref()
                .is_some_and(|s| s.volumes.values().any(|v| &v.id == id))
            {
                continue;
            }
            self.delete_volume(store.volume_path(zone, id), res)
                .await
                .map_err(|mut e| {
                    e.message = format!(
                        "{} (root volume {zone}/{id}, no longer used by server \
                         {zone}/{uuid}, is left; delete it in the Scaleway console)",
                        e.message
                    );
                    e
                })?;
        }
        Ok(())
    }

    // ---- security groups ----

    async fn sg_rules(&self, zone: &str, uuid: &str, via: Via) -> ProviderResult<Vec<SgRule>> {
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

    async fn firewall_direct(
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

    async fn firewall_read(
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

    async fn groups_in(
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
    async fn put_rules(
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
    async fn set_server_group(
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

    // ---- DNS ----

    async fn zone_records(&self, zone: &str, via: Via) -> ProviderResult<Vec<Record>> {
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

    async fn dns_zones(&self, name: Option<&str>, via: Via) -> ProviderResult<Vec<DnsZone>> {
        let mut q = vec![("project_id", self.client.project().to_string())];
        if let Some(n) = name {
            q.push(("dns_zone", n.to_string()));
        }
        self.client
            .list_all(DOMAIN, "dns_zones", &q, Paging::Standard, via)
            .await
    }

    async fn find_zone(&self, name: &str, via: Via) -> ProviderResult<Option<DnsZone>> {
        Ok(self
            .dns_zones(Some(name), via)
            .await?
            .into_iter()
            .find(|z| z.full_name() == name))
    }

    /// The values and TTL of one RRset now, `None` when it has no record.
    async fn rrset_now(
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
    async fn records_change(
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

fn firewall_not_found(zone: &str, uuid: &str) -> ProviderError {
    ProviderError::new(
        DISPLAY,
        ErrorKind::NotFound,
        format!("security group {zone}/{uuid} not found"),
    )
}

fn value_set(r: &RrSet) -> BTreeSet<&str> {
    r.values.iter().map(String::as_str).collect()
}

#[async_trait]
impl ProviderApi for ScalewayApi {
    async fn verify(&self) -> ProviderResult<()> {
        // Listing one server of the project in the default zone proves the key, its
        // permissions on Instances and the project.
        self.client
            .read::<Value>(
                &format!("{}/servers", instance(self.client.zone())),
                &[self.project_query(), ("per_page", "1".to_string())],
            )
            .await
            .map(|_| ())
    }
    fn compute(&self) -> Option<&dyn ComputeApi> {
        Some(self)
    }
    fn dns(&self) -> Option<&dyn DnsApi> {
        Some(self)
    }
    fn firewall(&self) -> Option<&dyn FirewallApi> {
        Some(self)
    }
    fn ssh_keys(&self) -> Option<&dyn SshKeyApi> {
        Some(self)
    }
}

#[async_trait]
impl ComputeApi for ScalewayApi {
    async fn catalog(&self) -> ProviderResult<Catalog> {
        // The zones side by side, as for servers.
        let zones = futures_util::future::try_join_all(ZONES.iter().map(|zone| async move {
            let base = instance(zone);
            let types: Vec<(String, ServerType)> = self
                .client
                .list_map(
                    &format!("{base}/products/servers"),
                    "servers",
                    Paging::Instance,
                )
                .await?;
            let availability: AvailabilityResponse = self
                .client
                .read(
                    &format!("{base}/products/servers/availability"),
                    &[("per_page", "100".to_string())],
                )
                .await?;
            Ok::<_, ProviderError>(ZoneProducts {
                zone: (*zone).to_string(),
                types,
                availability: availability.servers,
            })
        }))
        .await?;
        let images: Vec<MarketImage> = self
            .client
            .list_all(
                "/marketplace/v2/images",
                "images",
                &[
                    ("arch", "x86_64".to_string()),
                    ("include_eol", "false".to_string()),
                ],
                Paging::Standard,
                Via::Lane,
            )
            .await?;
        let offers = schema::offers(&zones);
        Ok(Catalog {
            regions: schema::regions(&offers),
            images: schema::images(images, &schema::rfc3339(unix_now())),
            offers,
        })
    }

    async fn list_servers(&self, install: &str) -> ProviderResult<Vec<ObservedServer>> {
        let labels: BTreeMap<String, String> =
            [(LABEL_INSTALL.to_string(), install.to_string())].into();
        // The zones side by side (the lane bounds how many at once): a round over nine
        // zones one after another took nine round trips.
        let labels = &labels;
        let per_zone = futures_util::future::try_join_all(
            ZONES
                .iter()
                .map(|zone| self.servers_in(zone, labels, None, Via::Lane)),
        )
        .await?;
        Ok(per_zone.into_iter().flatten().collect())
    }

    async fn get_server(&self, id: &str) -> ProviderResult<Option<ObservedServer>> {
        let (zone, uuid) = self.locate(id)?;
        Ok(self
            .server_read(zone, uuid)
            .await?
            .map(|s| schema::observed_server(s, zone)))
    }

    async fn create_server(&self, spec: &ServerSpec, res: &str) -> ProviderResult<ObservedServer> {
        if !ZONES.contains(&spec.region.as_str()) {
            return Err(unknown_zone(&spec.region));
        }
        if spec.user_data.is_some() {
            return Err(ProviderError::new(
                DISPLAY,
                ErrorKind::Unsupported,
                "the Scaleway adapter does not send user data (cloud-init) to new servers",
            ));
        }
        let client = &self.client;
        let zone = spec.region.as_str();
        let path = format!("{}/servers", instance(zone));
        // The project's SSH keys (IAM) are installed by Scaleway on every new server, so
        // the key is not named here.
        let body = json!({
            "name": spec.name,
            "commercial_type": spec.offer,
            "image": spec.image,
            "project": client.project(),
            "tags": schema::tags_from_labels(&spec.labels),
            "dynamic_ip_required": true,
            "routed_ip_enabled": true,
            "boot_type": "local",
        });
        let (path, body) = (&path, &body);
        let server = client
            .lane()
            .write(
                Self::op("POST", path.clone(), res),
                move || async move {
                    let env: ServerEnvelope =
                        client.send(Method::POST, path, &[], Some(body)).await?;
                    Ok(schema::observed_server(env.server, zone))
                },
                // Identity, not a blind repeat: the server with this name carrying every
                // label of the spec (the node's `legion-node` uid among them).
                Some(move || async move { self.find_server(spec, Via::Direct).await }),
            )
            .await?;
        let (_, uuid) = self.locate(&server.id)?;
        self.power_on(zone, uuid, res).await?;
        Ok(self.get_server(&server.id).await?.unwrap_or(server))
    }

    async fn start_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        self.power_on(zone, uuid, res).await
    }

    /// Scaleway has one stop, `poweroff` (the system is asked to shut down, then the
    /// server is stopped and its hypervisor slot released): both modes use it.
    async fn stop_server(&self, id: &str, _mode: StopMode, res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        self.power_off(zone, uuid, res).await
    }

    async fn reboot_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        self.server_action(zone, uuid, "reboot", res, |s| {
            s.status == ServerStatus::Running
        })
        .await?;
        self.wait_for(
            zone,
            uuid,
            ServerStatus::Running,
            self.client.action_timeout(),
        )
        .await
    }

    /// Scaleway has no rebuild action; the closest operation replaces the root volume.
    /// Stopped, the server gets a new root volume made from the image's root snapshot
    /// (same kind as the old one: `l_ssd` or Block Storage at the old size and IOPS),
    /// swapped in at index `0` of its volumes; the old root is deleted and the server
    /// powered on. Id, addresses, security group, tags and other volumes stay. Root
    /// volumes a failed earlier attempt left (tagged `legion-root-of=<server>`, attached
    /// to nothing) are deleted first.
    async fn reset_image(&self, id: &str, image: &str, res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        let not_found = || {
            ProviderError::new(
                DISPLAY,
                ErrorKind::NotFound,
                format!("server {zone}/{uuid} not found"),
            )
        };
        let server = self.server_read(zone, uuid).await?.ok_or_else(not_found)?;
        let old = server.volumes.get("0").cloned().ok_or_else(|| {
            ProviderError::new(
                DISPLAY,
                ErrorKind::Unsupported,
                format!("server {zone}/{uuid} has no root volume to replace"),
            )
        })?;
        let store = Store::of(&old.volume_type).ok_or_else(|| {
            ProviderError::new(
                DISPLAY,
                ErrorKind::Unsupported,
                format!(
                    "server {zone}/{uuid} boots from a {} volume; Legion replaces only l_ssd \
                     and sbs_volume roots",
                    old.volume_type
                ),
            )
        })?;
        let snapshot = self
            .image_root(zone, image, &server.commercial_type, store)
            .await?;
        let leftovers: Vec<String> = self
            .leftover_roots(zone, uuid, store, Via::Lane)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        self.delete_roots(zone, uuid, store, &leftovers, res)
            .await?;
        // Scaleway changes the volumes of stopped servers only.
        self.power_off(zone, uuid, res).await?;
        let server = self.server_read(zone, uuid).await?.ok_or_else(not_found)?;
        let old = match server.volumes.get("0") {
            Some(v) => v.clone(),
            None => old,
        };
        let (size, iops) = match store {
            Store::Local => (None, None),
            Store::Block => {
                let now = self
                    .client
                    .read_opt::<BlockVolume>(&store.volume_path(zone, &old.id))
                    .await?;
                (
                    now.as_ref().map(|v| v.size).filter(|s| *s > 0),
                    now.and_then(|v| v.specs).and_then(|s| s.perf_iops),
                )
            }
        };
        let name = format!("{}-root-{}", server.name, unix_millis());
        let new_root = self
            .create_root(zone, uuid, store, &snapshot.id, &name, size, iops, res)
            .await?;
        let swapped = async {
            self.wait_volume(zone, store, &new_root).await?;
            let volumes =
                schema::volumes_with_root(&server.volumes, &new_root, store.volume_type(), &name);
            self.swap_root(zone, uuid, volumes, &new_root, res).await
        }
        .await;
        if let Err(e) = swapped {
            // Not swapped in: the new volume goes, the old root stays the server's.
            let now = self.server_read(zone, uuid).await.ok().flatten();
            if now.as_ref().and_then(root_id) != Some(new_root.as_str()) {
                let _ = self
                    .delete_roots(zone, uuid, store, std::slice::from_ref(&new_root), res)
                    .await;
            }
            return Err(e);
        }
        // The server has its new root: it is powered on even when the old root cannot
        // be deleted, and that failure is reported after.
        let cleaned = self
            .delete_roots(zone, uuid, store, std::slice::from_ref(&old.id), res)
            .await;
        self.power_on(zone, uuid, res).await?;
        cleaned
    }

    async fn destroy_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        let (zone, uuid) = self.locate(id)?;
        let Some(server) = self.server_read(zone, uuid).await? else {
            return Ok(());
        };
        // Scaleway deletes only stopped servers.
        self.power_off(zone, uuid, res).await?;
        self.delete_at(
            format!("{}/servers/{uuid}", instance(zone)),
            Vec::new(),
            res,
        )
        .await?;
        for volume in server.volumes.values() {
            let path = Store::of(&volume.volume_type)
                .unwrap_or(Store::Local)
                .volume_path(zone, &volume.id);
            self.delete_volume(path, res).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SshKeyApi for ScalewayApi {
    async fn ensure_key(&self, name: &str, public_key: &str, res: &str) -> ProviderResult<String> {
        let client = &self.client;
        let project = ("project_id", client.project().to_string());
        let by_name = [project.clone(), ("name", name.to_string())];
        let keys: Vec<SshKey> = client
            .list_all(SSH_KEYS, "ssh_keys", &by_name, Paging::Standard, Via::Lane)
            .await?;
        if let Some(key) = keys.iter().find(|k| k.name == name) {
            if schema::same_public_key(&key.public_key, public_key) {
                return Ok(key.id.clone());
            }
            return Err(ProviderError::new(
                DISPLAY,
                ErrorKind::Conflict,
                format!(
                    "an SSH key named {name:?} already exists with a different public key \
                     (rename or delete key {} in the Scaleway console, IAM → SSH keys)",
                    key.id
                ),
            ));
        }
        let body = json!({
            "name": name,
            "public_key": public_key,
            "project_id": client.project(),
        });
        let (body, by_name) = (&body, &by_name);
        let created = client
            .lane()
            .write(
                Self::op("POST", SSH_KEYS, res),
                move || async move {
                    let key: SshKey = client.send(Method::POST, SSH_KEYS, &[], Some(body)).await?;
                    Ok(key.id)
                },
                // The key with this name and this public key exists.
                Some(move || async move {
                    let keys: Vec<SshKey> = client
                        .list_all(SSH_KEYS, "ssh_keys", by_name, Paging::Standard, Via::Direct)
                        .await?;
                    Ok(keys.into_iter().find_map(|k| {
                        (k.name == name && schema::same_public_key(&k.public_key, public_key))
                            .then_some(k.id)
                    }))
                }),
            )
            .await;
        match created {
            Err(e) if e.kind == ErrorKind::Conflict => {
                // Scaleway holds each public key once per project: say which key has it.
                let all: Vec<SshKey> = client
                    .list_all(
                        SSH_KEYS,
                        "ssh_keys",
                        &[project],
                        Paging::Standard,
                        Via::Lane,
                    )
                    .await?;
                match all
                    .iter()
                    .find(|k| schema::same_public_key(&k.public_key, public_key))
                {
                    Some(other) => Err(ProviderError::new(
                        DISPLAY,
                        ErrorKind::Conflict,
                        format!(
                            "this public key is already registered as SSH key {:?} (id {}); \
                             Scaleway holds each key once per project, so delete or rename \
                             that key",
                            other.name, other.id
                        ),
                    )),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn delete_key(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.delete_at(format!("{SSH_KEYS}/{id}"), Vec::new(), res)
            .await
    }
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
