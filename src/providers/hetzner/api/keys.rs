//! Hetzner SSH keys: the `SshKeyApi` surface (find by name and public key, or create).

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::providers::hetzner::DISPLAY;
use crate::providers::hetzner::client::Via;
use crate::providers::hetzner::schema::{self, SshKey};
use crate::providers::{ErrorKind, LABEL_MANAGED, ProviderError, ProviderResult, SshKeyApi};

use super::HetznerApi;

#[derive(Deserialize)]
struct KeyEnvelope {
    ssh_key: SshKey,
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
