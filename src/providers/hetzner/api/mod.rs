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
//!
//! This file holds the adapter type, what every surface shares (label selectors, the
//! `locked` retry, deletes) and `verify`; each surface lives in its own file: `compute`,
//! `firewall`, `dns`, `keys`.

mod compute;
mod dns;
mod firewall;
mod keys;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;

use super::DISPLAY;
use super::client::{Client, ClientConfig, action_in};
use crate::providers::{
    ComputeApi, DnsApi, ErrorKind, FirewallApi, LABEL_INSTALL, Lane, ProviderApi, ProviderError,
    ProviderResult, SshKeyApi, WriteOp,
};

/// Times a write rejected with `locked` (a running action on the resource) is repeated.
/// A rejected request was not applied, so repeating it is safe; creates are never
/// repeated.
const LOCKED_RETRIES: u32 = 4;

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
}

/// A resource answer (`{"server": {..., "status": "deleting"}}`) whose resource is on
/// its way out: the delete was accepted.
fn being_deleted(answer: &Value) -> bool {
    answer.as_object().is_some_and(|o| {
        o.values()
            .any(|r| r.get("status").and_then(Value::as_str) == Some("deleting"))
    })
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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
