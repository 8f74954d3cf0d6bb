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
//!
//! This file holds the adapter type, what every surface shares (paths, the write op, id
//! parsing, deletes) and `verify`; each surface lives in its own file: `compute`
//! (servers, power, catalog), `volumes` (a reinstall's root volume and volume cleanup),
//! `firewall` (security groups), `dns` (Domains zones and records), `keys` (IAM SSH keys).

mod compute;
mod dns;
mod firewall;
mod keys;
mod volumes;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;

use super::client::{Client, ClientConfig};
use super::schema::{self};
use super::{DISPLAY, ZONES};
use crate::providers::{
    ComputeApi, DnsApi, ErrorKind, FirewallApi, Lane, ProviderApi, ProviderError, ProviderResult,
    SshKeyApi, WriteOp,
};

fn instance(zone: &str) -> String {
    format!("/instance/v1/zones/{zone}")
}

fn block(zone: &str) -> String {
    format!("/block/v1/zones/{zone}/volumes")
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
