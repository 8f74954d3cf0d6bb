//! `hetzner`: Hetzner Cloud (servers, firewalls, SSH keys and DNS zones).
//!
//! A hand-written client of the Hetzner Cloud API (`https://api.hetzner.cloud/v1`): the
//! base URL can be pointed at a local fake with `LEGION_HETZNER_API_URL`. Hetzner's JSON
//! never leaves this module.
//!
//! - `client.rs`: HTTP, the token, error normalization, rate-limit headers, pagination
//!   and waiting on async actions;
//! - `schema.rs`: Hetzner's shapes and their mapping into Legion's types;
//! - `api.rs`: [`HetznerApi`], the adapter surfaces, every call through the broker lane.
//!
//! Legion's nodes are x86-64: Arm server types and images are left out of the catalog.
//! Nodes are reached over SSH by the engine, so the adapter has no node agent.

mod api;
mod client;
mod schema;

use std::sync::Arc;
use std::time::Duration;

pub use api::HetznerApi;
pub use client::ClientConfig;

use super::{
    BootMode, Capabilities, CatalogPolicy, ConnectCtx, CredentialField, DeploymentProfile,
    Descriptor, Env, ErrorKind, OfferSelector, ProviderApi, ProviderError, ProviderModule,
    ProviderResult,
};

/// The provider's name in error messages ("Hetzner: server type cx22 is not available").
const DISPLAY: &str = "Hetzner";
pub const DISPLAY_NAME: &str = "Hetzner Cloud";
pub const KIND: &str = "hetzner";
pub const DEFAULT_API_URL: &str = "https://api.hetzner.cloud/v1";
/// Points the adapter at another API (a local fake in tests).
pub const API_URL_VAR: &str = "LEGION_HETZNER_API_URL";
/// The first interval between polls of a running action, in milliseconds.
pub const ACTION_POLL_VAR: &str = "LEGION_HETZNER_ACTION_POLL_MS";
/// The credential field holding the API token.
pub const TOKEN_FIELD: &str = "token";

/// The `hetzner` provider module.
#[derive(Debug, Default)]
pub struct HetznerModule;

impl HetznerModule {
    /// The client settings `connect` uses: token from the credentials, base URL and poll
    /// interval from the environment.
    pub fn client_config(
        &self,
        credentials: &super::Credentials,
        env: &Env,
    ) -> ProviderResult<ClientConfig> {
        let token = credentials
            .get(TOKEN_FIELD)
            .filter(|t| !t.expose().trim().is_empty())
            .ok_or_else(|| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::Unauthorized,
                    format!("no API token is configured (set {TOKEN_FIELD} or HCLOUD_TOKEN)"),
                )
            })?;
        let base = env
            .get(API_URL_VAR)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_API_URL);
        crate::providers::http::check_api_url(DISPLAY, API_URL_VAR, base)?;
        let mut config = ClientConfig::new(base, token.clone());
        if let Some(raw) = env.get(ACTION_POLL_VAR) {
            let ms: u64 = raw.trim().parse().map_err(|_| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::InvalidInput,
                    format!("{ACTION_POLL_VAR} must be a number of milliseconds, not {raw:?}"),
                )
            })?;
            config.action_poll = Duration::from_millis(ms.max(1));
        }
        Ok(config)
    }
}

impl ProviderModule for HetznerModule {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: KIND.into(),
            display_name: DISPLAY_NAME.into(),
            credential_fields: vec![CredentialField {
                id: TOKEN_FIELD.into(),
                label: "API token".into(),
                secret: true,
                required: true,
                env_var: Some("HCLOUD_TOKEN".into()),
                default: None,
                help: "A read & write API token of the Hetzner Cloud project \
                       (Console → Security → API tokens)"
                    .into(),
            }],
            capabilities: Capabilities {
                compute: true,
                dns: true,
                firewall: true,
                domains: false,
                ssh_keys: true,
                image_reset: true,
            },
            // Hetzner allows 3600 requests an hour per project; a few at once is plenty
            // and keeps bursts (catalog pages, zone RRsets) polite.
            concurrency: 4,
        }
    }

    fn catalog_policy(&self) -> CatalogPolicy {
        CatalogPolicy {
            default_image: "ubuntu-24.04".into(),
            default_region: Some("fsn1".into()),
            default_offer: OfferSelector::Cheapest {
                min_cores: 2,
                min_memory_mb: 2048,
            },
        }
    }

    fn deployment_profile(&self) -> DeploymentProfile {
        DeploymentProfile {
            default_boot_mode: BootMode::Bios,
        }
    }

    fn connect(&self, ctx: ConnectCtx) -> ProviderResult<Arc<dyn ProviderApi>> {
        let config = self.client_config(&ctx.credentials, &ctx.env)?;
        Ok(Arc::new(HetznerApi::new(config, ctx.lane)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::secret::Secret;
    use crate::providers::{Catalog, Credentials, Offer, Region};

    fn creds(token: &str) -> Credentials {
        [(TOKEN_FIELD.to_string(), Secret::new(token))].into()
    }

    #[test]
    fn descriptor_asks_for_one_secret_token() {
        let m = HetznerModule;
        let d = m.descriptor();
        assert_eq!(d.kind, "hetzner");
        assert_eq!(d.credential_fields.len(), 1);
        let f = &d.credential_fields[0];
        assert!(f.secret && f.required);
        assert_eq!(f.env_var.as_deref(), Some("HCLOUD_TOKEN"));
        assert!(!d.capabilities.domains);
        assert!(d.capabilities.image_reset);
        assert!(m.enabled(&Env::default()));
        assert!(!m.is_configured(&Credentials::new()));
        let normalized = m.normalize_credentials(creds("  abc  ")).unwrap();
        assert_eq!(normalized[TOKEN_FIELD].expose(), "abc");
        assert!(m.is_configured(&normalized));
        assert!(m.normalize_credentials(Credentials::new()).is_err());
    }

    #[test]
    fn config_reads_the_base_url_from_the_injected_env() {
        let m = HetznerModule;
        let c = m.client_config(&creds("t"), &Env::default()).unwrap();
        assert_eq!(c.base_url, DEFAULT_API_URL);
        let env = Env::default()
            .with(API_URL_VAR, "http://127.0.0.1:4010/v1/")
            .with(ACTION_POLL_VAR, "20");
        let c = m.client_config(&creds("t"), &env).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:4010/v1");
        assert_eq!(c.action_poll, Duration::from_millis(20));
        let e = m.client_config(&Credentials::new(), &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        let bad = Env::default().with(API_URL_VAR, "ftp://x");
        assert!(m.client_config(&creds("t"), &bad).is_err());
    }

    #[test]
    fn default_offer_is_the_cheapest_fitting_one_in_the_region() {
        let offer = |id: &str, cores, mem, price: f64, deprecated| Offer {
            id: id.into(),
            name: id.into(),
            cores,
            memory_mb: mem,
            disk_gb: 40,
            hourly_price: [("fsn1".to_string(), price)].into(),
            regions: vec!["fsn1".into()],
            deprecated,
            variables: Vec::new(),
        };
        let catalog = Catalog {
            regions: vec![Region {
                id: "fsn1".into(),
                name: "Falkenstein (fsn1)".into(),
                available: true,
            }],
            offers: vec![
                offer("cx11", 1, 2048, 0.001, false),
                offer("cx22", 2, 4096, 0.006, true),
                offer("cx23", 2, 4096, 0.005, false),
                offer("cpx31", 4, 8192, 0.02, false),
            ],
            images: Vec::new(),
        };
        let policy = HetznerModule.catalog_policy();
        assert_eq!(policy.region(&catalog), Some("fsn1"));
        assert_eq!(
            policy.offer(&catalog, "fsn1").map(|o| o.id.as_str()),
            Some("cx23")
        );
    }
}
