//! Scaleway root volumes for a reinstall: the image's snapshot, a fresh root volume made
//! from it (Instance `l_ssd` or Block Storage `sbs_volume`), the swap onto the server, and
//! the cleanup of roots left behind and of a deleted server's volumes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::providers::scaleway::DISPLAY;
use crate::providers::scaleway::client::{Paging, Via};
use crate::providers::scaleway::schema::{
    self, BlockVolume, ImageEnvelope, ImageRoot, InstanceVolume, InstanceVolumeEnvelope,
    LocalImage, Server, ServerEnvelope,
};
use crate::providers::{ErrorKind, ProviderError, ProviderResult};

use super::{ScalewayApi, block, instance};

/// The tag on the root volumes a reinstall makes, naming their server.
fn root_tag(server: &str) -> String {
    format!("legion-root-of={server}")
}

/// The id of the volume a server boots from (index `0`).
pub(super) fn root_id(s: &Server) -> Option<&str> {
    s.volumes.get("0").map(|v| v.id.as_str())
}

/// Where a server's root volume lives: the Instance API (`l_ssd`, local) or Block
/// Storage (`sbs_volume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Store {
    Local,
    Block,
}

impl Store {
    pub(super) fn of(volume_type: &str) -> Option<Store> {
        match volume_type {
            "l_ssd" => Some(Store::Local),
            "sbs_volume" => Some(Store::Block),
            _ => None,
        }
    }

    pub(super) fn volume_type(self) -> &'static str {
        match self {
            Store::Local => "l_ssd",
            Store::Block => "sbs_volume",
        }
    }

    /// The Marketplace's local image type for this kind of root.
    pub(super) fn market_type(self) -> &'static str {
        match self {
            Store::Local => "instance_local",
            Store::Block => "instance_sbs",
        }
    }

    /// Whether an image's root snapshot of `volume_type` makes this kind of volume.
    pub(super) fn takes_snapshot(self, volume_type: &str) -> bool {
        match self {
            Store::Local => matches!(volume_type, "l_ssd" | "unified"),
            Store::Block => volume_type == "sbs_snapshot",
        }
    }

    pub(super) fn volume_path(self, zone: &str, id: &str) -> String {
        match self {
            Store::Local => format!("{}/volumes/{id}", instance(zone)),
            Store::Block => format!("{}/{id}", block(zone)),
        }
    }
}

impl ScalewayApi {
    /// Delete a volume of a deleted server. Scaleway detaches it asynchronously and
    /// refuses the deletion (`precondition_failed`, still in use) meanwhile: repeat,
    /// backing off, within the shutdown timeout. A refused request was not applied.
    pub(super) async fn delete_volume(&self, path: String, res: &str) -> ProviderResult<()> {
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

    /// The snapshot `image` (a Marketplace label) makes root volumes of `store` from, for
    /// a server of `commercial_type` in `zone`: the Marketplace's local image of that
    /// label, zone and volume kind, then its Instance image's `root_volume`.
    pub(super) async fn image_root(
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
    pub(super) async fn leftover_roots(
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
    pub(super) async fn create_root(
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
    pub(super) async fn wait_volume(
        &self,
        zone: &str,
        store: Store,
        id: &str,
    ) -> ProviderResult<()> {
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
    pub(super) async fn swap_root(
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
    pub(super) async fn delete_roots(
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
}
