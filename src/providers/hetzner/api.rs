//! The Hetzner adapter: Legion's compute, DNS, firewall and SSH-key surfaces over the
//! Hetzner Cloud API.
//!
//! Reads go through the lane ([`Client::read`], [`Client::list_all`] with [`Via::Lane`]).
//! Every write goes through [`Lane::write`] with a verifier that reads Hetzner back after
//! an ambiguous failure and accepts only the desired final state: a server with our name
//! and labels, a key with our name and public key, a firewall with our rules. Verifiers
//! call the client directly (the lane already runs them as reads). Deletes accept 404.
//! The async action a write returns is waited on after the write, outside the lane's
//! permit, so a long create does not hold up the provider's other calls.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::DISPLAY;
use super::client::{
    Action, ActionEnvelope, ActionsEnvelope, Client, ClientConfig, Via, action_in,
};
use super::schema::{
    self, CreateServer, Firewall, ImageJson, Location, RecordJson, RrSetJson, Server, ServerType,
    SshKey, Zone,
};
use crate::providers::{
    Catalog, ComputeApi, DnsApi, ErrorKind, FirewallApi, FirewallRule, LABEL_INSTALL,
    LABEL_MANAGED, Lane, ObservedFirewall, ObservedServer, ObservedZone, ProviderApi,
    ProviderError, ProviderResult, RecordType, RrSet, ServerSpec, ServerStatus, SshKeyApi,
    StopMode, WriteOp,
};

/// Times a write rejected with `locked` (a running action on the resource) is repeated.
/// A rejected request was not applied, so repeating it is safe; creates are never
/// repeated.
const LOCKED_RETRIES: u32 = 4;

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

#[derive(Deserialize)]
struct KeyEnvelope {
    ssh_key: SshKey,
}

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

/// `k=v,k2=v2` over every label, in a stable order: Hetzner's equality selector.
pub(super) fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The selector of everything one Legion install owns.
pub(super) fn install_selector(install: &str) -> String {
    label_selector(&[(LABEL_INSTALL.to_string(), install.to_string())].into())
}

fn has_labels(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn encode_error(what: &str, e: serde_json::Error) -> ProviderError {
    ProviderError::new(
        DISPLAY,
        ErrorKind::Other,
        format!("cannot encode the {what} request: {e}"),
    )
}

pub struct HetznerApi {
    client: Client,
}

impl std::fmt::Debug for HetznerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HetznerApi")
            .field("client", &self.client)
            .finish()
    }
}

impl HetznerApi {
    /// An adapter talking to `config.base_url`, every call through `lane`.
    pub fn new(config: ClientConfig, lane: Arc<Lane>) -> ProviderResult<HetznerApi> {
        Ok(HetznerApi {
            client: Client::new(config, lane)?,
        })
    }

    fn op(method: &'static str, path: impl Into<String>, res: &str) -> WriteOp {
        WriteOp::new(method, path).for_resource(Some(res.to_string()))
    }

    /// Repeat `write` while Hetzner answers `locked`, with a growing pause.
    async fn unless_locked<T, F, Fut>(&self, mut write: F) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ProviderResult<T>>,
    {
        let mut attempt = 0;
        loop {
            match write().await {
                Err(e) if e.kind == ErrorKind::Locked && attempt < LOCKED_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(self.client.action_poll() * (1 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// `POST /servers/{id}/actions/{name}`, then wait for the action. After an ambiguous
    /// failure the write counts as done when the server shows `done`.
    async fn server_action(
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

    /// DELETE `path`; 404 is success, an ambiguous failure is resolved by asking whether
    /// `path` still exists, and a returned action is waited on.
    async fn delete_at(&self, path: String, res: &str) -> ProviderResult<()> {
        let client = &self.client;
        let p = &path;
        let action = client
            .lane()
            .write(
                Self::op("DELETE", p.clone(), res),
                move || async move {
                    match client.send::<Value>(Method::DELETE, p, None).await {
                        Ok(v) => Ok(action_in(&v)),
                        Err(e) if e.is_not_found() => Ok(None),
                        Err(e) => Err(e),
                    }
                },
                Some(move || async move {
                    let now = client.get_opt::<Value>(p).await?;
                    let gone = now.as_ref().is_none_or(being_deleted);
                    Ok(gone.then_some(None))
                }),
            )
            .await?;
        match action {
            Some(a) => client.wait(&a).await,
            None => Ok(()),
        }
    }

    /// The server `spec` asked for: its name and every label of the spec.
    async fn find_server(
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
    async fn wait_off(&self, id: &str) -> ProviderResult<()> {
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

    async fn zone_rrsets(&self, zone_id: u64, via: Via) -> ProviderResult<Vec<RrSetJson>> {
        self.client
            .list_all(&format!("/zones/{zone_id}/rrsets"), "rrsets", &[], via)
            .await
    }

    async fn observe_zone(&self, zone: Zone) -> ProviderResult<ObservedZone> {
        let rrsets = self.zone_rrsets(zone.id, Via::Lane).await?;
        Ok(schema::observed_zone(zone, &rrsets))
    }

    async fn get_firewall_direct(&self, id: &str) -> ProviderResult<Option<ObservedFirewall>> {
        Ok(self
            .client
            .get_opt::<FirewallEnvelope>(&format!("/firewalls/{id}"))
            .await?
            .map(|e| schema::observed_firewall(e.firewall)))
    }

    /// Apply the firewall to, or remove it from, servers. Hetzner refuses the whole
    /// request when one server is already in the wanted state; then the firewall is read
    /// again and the request repeated once for the servers still to change.
    async fn change_resources(
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

    async fn resources_write(
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
    async fn firewall_action(
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

    /// `POST /zones/{zone}/rrsets/{name}/{type}/actions/{action}` with a verifier.
    async fn rrset_action(
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

/// A resource answer (`{"server": {..., "status": "deleting"}}`) whose resource is on
/// its way out: the delete was accepted.
fn being_deleted(answer: &Value) -> bool {
    answer.as_object().is_some_and(|o| {
        o.values()
            .any(|r| r.get("status").and_then(Value::as_str) == Some("deleting"))
    })
}

/// The values of a Hetzner RRset as Legion sees them (TXT unquoted), as a set.
fn value_set(r: &RrSetJson) -> BTreeSet<String> {
    schema::rrset_from(r, 0)
        .map(|r| r.values.into_iter().collect())
        .unwrap_or_default()
}

#[async_trait]
impl ProviderApi for HetznerApi {
    async fn verify(&self) -> ProviderResult<()> {
        // There is no account endpoint; listing one server proves the token and its
        // project.
        self.client
            .read::<Value>("/servers", &[("per_page", "1".to_string())])
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

    async fn destroy_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.delete_at(format!("/servers/{id}"), res).await
    }
}

#[async_trait]
impl SshKeyApi for HetznerApi {
    async fn ensure_key(&self, name: &str, public_key: &str, res: &str) -> ProviderResult<String> {
        let client = &self.client;
        let by_name = [("name", name.to_string())];
        let keys: Vec<SshKey> = client
            .list_all("/ssh_keys", "ssh_keys", &by_name, Via::Lane)
            .await?;
        if let Some(key) = keys.iter().find(|k| k.name == name) {
            if schema::same_public_key(&key.public_key, public_key) {
                return Ok(key.id.to_string());
            }
            return Err(ProviderError::new(
                DISPLAY,
                ErrorKind::Conflict,
                format!(
                    "an SSH key named {name:?} already exists with a different public key \
                     (rename or delete key {} in the Hetzner Cloud console)",
                    key.id
                ),
            )
            .with_code("uniqueness_error"));
        }
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_MANAGED.to_string(), "true".to_string());
        let body = json!({ "name": name, "public_key": public_key, "labels": labels });
        let (body, by_name) = (&body, &by_name);
        let created = client
            .lane()
            .write(
                Self::op("POST", "/ssh_keys", res),
                move || async move {
                    let env: KeyEnvelope =
                        client.send(Method::POST, "/ssh_keys", Some(body)).await?;
                    Ok(env.ssh_key.id.to_string())
                },
                // The key with this name and this public key exists.
                Some(move || async move {
                    let keys: Vec<SshKey> = client
                        .list_all("/ssh_keys", "ssh_keys", by_name, Via::Direct)
                        .await?;
                    Ok(keys.into_iter().find_map(|k| {
                        (k.name == name && schema::same_public_key(&k.public_key, public_key))
                            .then(|| k.id.to_string())
                    }))
                }),
            )
            .await;
        match created {
            Err(e) if e.kind == ErrorKind::Conflict => {
                // Hetzner keeps each public key once per project: say which key has it.
                let all: Vec<SshKey> = client
                    .list_all("/ssh_keys", "ssh_keys", &[], Via::Lane)
                    .await?;
                if let Some(k) = all
                    .iter()
                    .find(|k| k.name == name && schema::same_public_key(&k.public_key, public_key))
                {
                    return Ok(k.id.to_string());
                }
                match all
                    .iter()
                    .find(|k| schema::same_public_key(&k.public_key, public_key))
                {
                    Some(other) => Err(ProviderError::new(
                        DISPLAY,
                        ErrorKind::Conflict,
                        format!(
                            "this public key is already registered as SSH key {:?} (id {}); \
                             Hetzner holds each key once per project, so delete or rename \
                             that key",
                            other.name, other.id
                        ),
                    )
                    .with_code("uniqueness_error")),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    async fn delete_key(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.delete_at(format!("/ssh_keys/{id}"), res).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_are_stable_equality_lists() {
        let labels: BTreeMap<String, String> = [
            ("legion-node".to_string(), "uid-1".to_string()),
            ("legion-install".to_string(), "i1".to_string()),
            ("legion-managed".to_string(), "true".to_string()),
        ]
        .into();
        assert_eq!(
            label_selector(&labels),
            "legion-install=i1,legion-managed=true,legion-node=uid-1"
        );
        assert_eq!(install_selector("abc123"), "legion-install=abc123");
        assert_eq!(label_selector(&BTreeMap::new()), "");
    }

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

    #[test]
    fn a_deleting_server_counts_as_deleted() {
        assert!(being_deleted(
            &json!({"server": {"id": 1, "status": "deleting"}})
        ));
        assert!(!being_deleted(
            &json!({"server": {"id": 1, "status": "running"}})
        ));
        assert!(!being_deleted(&json!({"firewall": {"id": 1}})));
    }
}
