//! Scaleway IAM SSH keys: the `SshKeyApi` surface (find by name and public key, or create).

use async_trait::async_trait;
use reqwest::Method;
use serde_json::json;

use crate::providers::scaleway::DISPLAY;
use crate::providers::scaleway::client::{Paging, Via};
use crate::providers::scaleway::schema::{self, SshKey};
use crate::providers::{ErrorKind, ProviderError, ProviderResult, SshKeyApi};

use super::ScalewayApi;

const SSH_KEYS: &str = "/iam/v1alpha1/ssh-keys";

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
