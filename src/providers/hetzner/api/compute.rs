//! Hetzner servers: finding one after an ambiguous create, power actions and their
//! async actions, and the `ComputeApi` surface (catalog, create, start/stop/reboot,
//! rebuild, destroy).

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::providers::hetzner::DISPLAY;
use crate::providers::hetzner::client::{Action, ActionEnvelope, Via};
use crate::providers::hetzner::schema::{
    self, CreateServer, ImageJson, Location, Server, ServerType,
};
use crate::providers::{
    Catalog, ComputeApi, ErrorKind, ObservedServer, ProviderError, ProviderResult, ServerSpec,
    ServerStatus, StopMode,
};

use super::{HetznerApi, encode_error, has_labels, install_selector, label_selector};

#[derive(Deserialize)]
struct ServerEnvelope {
    server: Server,
}

#[derive(Deserialize)]
struct CreateServerResponse {
    server: Server,
    action: Action,
    #[serde(default)]
    next_actions: Vec<Action>,
}

impl HetznerApi {
    /// `POST /servers/{id}/actions/{name}`, then wait for the action. After an ambiguous
    /// failure the write counts as done when the server shows `done`.
    pub(super) async fn server_action(
        &self,
        id: &str,
        name: &str,
        body: Option<Value>,
        res: &str,
        done: impl Fn(&ObservedServer) -> bool + Send + Sync,
    ) -> ProviderResult<()> {
        let client = &self.client;
        let path = format!("/servers/{id}/actions/{name}");
        let server_path = format!("/servers/{id}");
        let (path, server_path, body, done) = (&path, &server_path, body.as_ref(), &done);
        let action = self
            .unless_locked(|| {
                client.lane().write(
                    Self::op("POST", path.clone(), res),
                    move || async move {
                        let env: ActionEnvelope = client.send(Method::POST, path, body).await?;
                        Ok(Some(env.action))
                    },
                    Some(move || async move {
                        let now = client.get_opt::<ServerEnvelope>(server_path).await?;
                        Ok(now
                            .map(|e| schema::observed_server(e.server))
                            .filter(done)
                            .map(|_| None))
                    }),
                )
            })
            .await?;
        match action {
            Some(a) => client.wait(&a).await,
            None => Ok(()),
        }
    }

    /// The server `spec` asked for: its name and every label of the spec.
    pub(super) async fn find_server(
        &self,
        spec: &ServerSpec,
        via: Via,
    ) -> ProviderResult<Option<ObservedServer>> {
        let query = [
            ("label_selector", label_selector(&spec.labels)),
            ("name", spec.name.clone()),
        ];
        let servers: Vec<Server> = self
            .client
            .list_all("/servers", "servers", &query, via)
            .await?;
        Ok(servers
            .into_iter()
            .map(schema::observed_server)
            .find(|s| s.name == spec.name && has_labels(&s.labels, &spec.labels)))
    }

    /// Poll the server until it is off: Hetzner's `shutdown` only sends the ACPI signal.
    pub(super) async fn wait_off(&self, id: &str) -> ProviderResult<()> {
        let started = tokio::time::Instant::now();
        loop {
            match self.get_server(id).await? {
                None => return Ok(()),
                Some(s) if s.status == ServerStatus::Off => return Ok(()),
                Some(_) => {}
            }
            if started.elapsed() >= self.client.shutdown_timeout() {
                return Err(ProviderError::new(
                    DISPLAY,
                    ErrorKind::Timeout,
                    format!(
                        "server {id} did not power off within {:?} of the shutdown signal \
                         (its system may ignore ACPI; stop it hard instead)",
                        self.client.shutdown_timeout()
                    ),
                ));
            }
            tokio::time::sleep(self.client.action_poll()).await;
        }
    }
}

#[async_trait]
impl ComputeApi for HetznerApi {
    async fn catalog(&self) -> ProviderResult<Catalog> {
        let types: Vec<ServerType> = self
            .client
            .list_all("/server_types", "server_types", &[], Via::Lane)
            .await?;
        let images: Vec<ImageJson> = self
            .client
            .list_all(
                "/images",
                "images",
                &[
                    ("type", "system".to_string()),
                    ("status", "available".to_string()),
                    ("architecture", "x86".to_string()),
                ],
                Via::Lane,
            )
            .await?;
        let locations: Vec<Location> = self
            .client
            .list_all("/locations", "locations", &[], Via::Lane)
            .await?;
        let offers = schema::offers(types);
        Ok(Catalog {
            regions: schema::regions(locations, &offers),
            images: schema::images(images),
            offers,
        })
    }

    async fn list_servers(&self, install: &str) -> ProviderResult<Vec<ObservedServer>> {
        let servers: Vec<Server> = self
            .client
            .list_all(
                "/servers",
                "servers",
                &[("label_selector", install_selector(install))],
                Via::Lane,
            )
            .await?;
        Ok(servers.into_iter().map(schema::observed_server).collect())
    }

    async fn get_server(&self, id: &str) -> ProviderResult<Option<ObservedServer>> {
        Ok(self
            .client
            .read_opt::<ServerEnvelope>(&format!("/servers/{id}"))
            .await?
            .map(|e| schema::observed_server(e.server)))
    }

    async fn create_server(&self, spec: &ServerSpec, res: &str) -> ProviderResult<ObservedServer> {
        let client = &self.client;
        let body = serde_json::to_value(CreateServer {
            name: &spec.name,
            server_type: &spec.offer,
            image: &spec.image,
            location: &spec.region,
            ssh_keys: spec.ssh_key_id.iter().map(|k| schema::key_ref(k)).collect(),
            labels: &spec.labels,
            user_data: spec.user_data.as_deref(),
            start_after_create: true,
        })
        .map_err(|e| encode_error("server", e))?;
        let body = &body;
        let (server, actions) = client
            .lane()
            .write(
                Self::op("POST", "/servers", res),
                move || async move {
                    let r: CreateServerResponse =
                        client.send(Method::POST, "/servers", Some(body)).await?;
                    let mut actions = vec![r.action];
                    actions.extend(r.next_actions);
                    Ok((schema::observed_server(r.server), actions))
                },
                // Identity, not a blind repeat: the server with this name carrying every
                // label of the spec (the node's `legion-node` uid among them).
                Some(move || async move {
                    Ok(self
                        .find_server(spec, Via::Direct)
                        .await?
                        .map(|s| (s, Vec::new())))
                }),
            )
            .await?;
        if actions.is_empty() {
            return Ok(server);
        }
        client.wait_all(&actions).await?;
        Ok(self.get_server(&server.id).await?.unwrap_or(server))
    }

    async fn start_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.server_action(id, "poweron", None, res, |s| {
            s.status == ServerStatus::Running
        })
        .await
    }

    async fn stop_server(&self, id: &str, mode: StopMode, res: &str) -> ProviderResult<()> {
        let off = |s: &ObservedServer| s.status == ServerStatus::Off;
        match mode {
            StopMode::Graceful => {
                self.server_action(id, "shutdown", None, res, off).await?;
                self.wait_off(id).await
            }
            StopMode::Hard => self.server_action(id, "poweroff", None, res, off).await,
        }
    }

    async fn reboot_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.server_action(id, "reboot", None, res, |s| {
            s.status == ServerStatus::Running
        })
        .await
    }

    async fn reset_image(&self, id: &str, image: &str, res: &str) -> ProviderResult<()> {
        let body = json!({ "image": image });
        self.server_action(id, "rebuild", Some(body), res, |s| {
            s.status == ServerStatus::Running && s.image.as_deref() == Some(image)
        })
        .await
    }

    fn can_resize(&self) -> bool {
        true
    }

    /// `change_type` on a powered-off server. `upgrade_disk: false` keeps the disk, so a
    /// later change back to a smaller type stays possible (Hetzner refuses to shrink a disk).
    async fn resize_server(&self, id: &str, offer: &str, res: &str) -> ProviderResult<()> {
        let body = json!({ "server_type": offer, "upgrade_disk": false });
        self.server_action(id, "change_type", Some(body), res, |s| s.offer == offer)
            .await
    }

    async fn destroy_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.delete_at(format!("/servers/{id}"), res).await
    }
}
