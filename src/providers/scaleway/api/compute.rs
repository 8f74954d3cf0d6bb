//! Scaleway servers: reading and finding them, power actions waited on by polling, and
//! the `ComputeApi` surface (catalog, create, start/stop/reboot, reinstall, destroy).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::providers::scaleway::client::{Paging, Via};
use crate::providers::scaleway::schema::{
    self, Availability, BlockVolume, MarketImage, Server, ServerEnvelope, ServerType, ZoneProducts,
};
use crate::providers::scaleway::{DISPLAY, ZONES};
use crate::providers::{
    Catalog, ComputeApi, ErrorKind, LABEL_INSTALL, ObservedServer, ProviderError, ProviderResult,
    ServerSpec, ServerStatus, StopMode,
};

use super::volumes::{Store, root_id};
use super::{ScalewayApi, instance, unknown_zone};

#[derive(Deserialize)]
struct AvailabilityResponse {
    #[serde(default)]
    servers: BTreeMap<String, Availability>,
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

impl ScalewayApi {
    pub(super) async fn server_direct(
        &self,
        zone: &str,
        uuid: &str,
    ) -> ProviderResult<Option<Server>> {
        Ok(self
            .client
            .get_opt::<ServerEnvelope>(&format!("{}/servers/{uuid}", instance(zone)))
            .await?
            .map(|e| e.server))
    }

    pub(super) async fn server_read(
        &self,
        zone: &str,
        uuid: &str,
    ) -> ProviderResult<Option<Server>> {
        Ok(self
            .client
            .read_opt::<ServerEnvelope>(&format!("{}/servers/{uuid}", instance(zone)))
            .await?
            .map(|e| e.server))
    }

    /// Our servers in one zone: the `tags` filter on the server side, the labels again
    /// here.
    pub(super) async fn servers_in(
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
    pub(super) async fn find_server(
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
    pub(super) async fn server_action(
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
    pub(super) async fn wait_for(
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
    pub(super) async fn power_on(&self, zone: &str, uuid: &str, res: &str) -> ProviderResult<()> {
        self.power_to(zone, uuid, res, ServerStatus::Running).await
    }

    /// Power off (unless stopped) and wait for `stopped`; a server already gone is off.
    pub(super) async fn power_off(&self, zone: &str, uuid: &str, res: &str) -> ProviderResult<()> {
        self.power_to(zone, uuid, res, ServerStatus::Off).await
    }

    /// `poweron` towards `Running`, `poweroff` towards `Off`, unless the server is there
    /// or on its way; then wait for it.
    pub(super) async fn power_to(
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
