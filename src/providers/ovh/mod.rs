//! `ovh`: OVHcloud Public Cloud (instances, SSH keys and DNS zone records).
//!
//! A hand-written client of the OVHcloud API (`https://eu.api.ovh.com/1.0`,
//! `https://ca.api.ovh.com/1.0` or `https://api.us.ovhcloud.com/1.0`, chosen by the
//! `endpoint` credential); `LEGION_OVH_API_URL` points it at a local fake. Every request
//! is signed with the application key and secret and the consumer key; the project's
//! service name is part of the credentials. OVHcloud's JSON never leaves this module.
//!
//! - `client.rs`: HTTP, the signature and the server clock offset, error normalization;
//! - `schema.rs`: OVHcloud's shapes, their mapping into Legion's types, and the labels
//!   encoded in instance names;
//! - `api.rs`: [`OvhApi`], the adapter surfaces, every call through the broker lane.
//!
//! What is and is not managed:
//!
//! - **Labels.** The instance API has no labels, tags or metadata Legion could read back,
//!   so Legion's identity labels are written into the instance name after the node's name:
//!   `web-1@legion:cluster=prod,install=i1,managed=true,node=01HX…` (keys and values
//!   percent-encoded outside `[A-Za-z0-9._-]`). The adapter decodes it into
//!   `ObservedServer.labels` and gives the node's name back as `ObservedServer.name`;
//!   `list_servers(install)` filters on the decoded `legion-install`. Renaming an
//!   instance in the Control Panel removes it from Legion's view.
//! - **Firewalls: not managed** (`firewall: false`). The instance API exposes no security
//!   groups; OVHcloud's network firewall belongs to IP addresses, not instances. The
//!   rules Legion would apply are the operator's to set.
//! - **DNS.** Records of zones that exist in the account (`/domain/zone`), refreshed after
//!   every change. A zone comes with a domain or an order, so `create_zone` adopts an
//!   existing zone and otherwise refuses with what to do, and `delete_zone` refuses too.
//! - **Stop.** OVHcloud has one stop (a clean shutdown the platform forces after a grace
//!   period), used for graceful and hard stops alike. Reboots are soft.
//! - **Catalog.** Flavors and images are per region on OVHcloud; Legion names offers by
//!   flavor name (`b2-7`) and images by name (`Ubuntu 24.04`), and resolves the region's
//!   ids on create. Prices come from the public price list of the endpoint's subsidiary.
//!   Windows flavors and images are left out.
//!
//! Nodes are reached over SSH by the engine, so the adapter has no node agent.

mod api;
mod client;
mod schema;

use std::sync::Arc;
use std::time::Duration;

pub use api::OvhApi;
pub use client::ClientConfig;

use super::{
    BootMode, Capabilities, CatalogPolicy, ConnectCtx, CredentialError, CredentialField,
    Credentials, DeploymentProfile, Descriptor, Env, ErrorKind, OfferSelector, ProviderApi,
    ProviderError, ProviderModule, ProviderResult,
};
use crate::core::secret::Secret;

/// The provider's name in error messages ("OVHcloud: Invalid signature").
const DISPLAY: &str = "OVHcloud";
pub const DISPLAY_NAME: &str = "OVHcloud Public Cloud";
pub const KIND: &str = "ovh";
/// Points the adapter at another API (a local fake in tests).
pub const API_URL_VAR: &str = "LEGION_OVH_API_URL";
/// The first interval between polls of an instance's status, in milliseconds.
pub const POLL_VAR: &str = "LEGION_OVH_POLL_MS";

pub const ENDPOINT_FIELD: &str = "endpoint";
pub const APPLICATION_KEY_FIELD: &str = "application_key";
pub const APPLICATION_SECRET_FIELD: &str = "application_secret";
pub const CONSUMER_KEY_FIELD: &str = "consumer_key";
pub const PROJECT_FIELD: &str = "project";

/// The API endpoints by name, with the subsidiary whose prices the catalog shows.
pub const ENDPOINTS: [(&str, &str, &str); 3] = [
    ("ovh-eu", "https://eu.api.ovh.com/1.0", "FR"),
    ("ovh-ca", "https://ca.api.ovh.com/1.0", "CA"),
    ("ovh-us", "https://api.us.ovhcloud.com/1.0", "US"),
];

/// The `ovh` provider module.
#[derive(Debug, Default)]
pub struct OvhModule;

fn endpoint(name: &str) -> Option<(&'static str, &'static str)> {
    ENDPOINTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, url, sub)| (*url, *sub))
}

fn endpoint_names() -> String {
    ENDPOINTS
        .iter()
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl OvhModule {
    /// The client settings `connect` uses: keys, project and endpoint from the
    /// credentials, base URL override and poll interval from the environment.
    pub fn client_config(
        &self,
        credentials: &Credentials,
        env: &Env,
    ) -> ProviderResult<ClientConfig> {
        let desc = self.descriptor();
        let field = |id: &str| -> ProviderResult<String> {
            let f = desc.credential_fields.iter().find(|f| f.id == id);
            credentials
                .get(id)
                .map(|v| v.expose().trim().to_string())
                .filter(|v| !v.is_empty())
                .or_else(|| f.and_then(|f| f.default.clone()))
                .ok_or_else(|| {
                    let var = f.and_then(|f| f.env_var.clone()).unwrap_or_default();
                    ProviderError::new(
                        DISPLAY,
                        ErrorKind::Unauthorized,
                        format!("no {id} is configured (set {id} or {var})"),
                    )
                })
        };
        let endpoint_name = field(ENDPOINT_FIELD)?;
        let (default_url, subsidiary) = endpoint(&endpoint_name).ok_or_else(|| {
            ProviderError::new(
                DISPLAY,
                ErrorKind::InvalidInput,
                format!(
                    "endpoint {endpoint_name:?} is not one of {}",
                    endpoint_names()
                ),
            )
        })?;
        let base = env
            .get(API_URL_VAR)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(default_url);
        crate::providers::http::check_api_url(DISPLAY, API_URL_VAR, base)?;
        let mut config = ClientConfig::new(
            base,
            field(APPLICATION_KEY_FIELD)?,
            Secret::new(field(APPLICATION_SECRET_FIELD)?),
            Secret::new(field(CONSUMER_KEY_FIELD)?),
            field(PROJECT_FIELD)?,
        );
        config.subsidiary = subsidiary.to_string();
        if let Some(raw) = env.get(POLL_VAR) {
            let ms: u64 = raw.trim().parse().map_err(|_| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::InvalidInput,
                    format!("{POLL_VAR} must be a number of milliseconds, not {raw:?}"),
                )
            })?;
            config.poll = Duration::from_millis(ms.max(1));
        }
        Ok(config)
    }
}

impl ProviderModule for OvhModule {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn descriptor(&self) -> Descriptor {
        let field = |id: &str, label: &str, secret: bool, var: &str, help: &str| CredentialField {
            id: id.into(),
            label: label.into(),
            secret,
            required: true,
            env_var: Some(var.into()),
            default: None,
            help: help.into(),
        };
        let mut endpoint = field(
            ENDPOINT_FIELD,
            "API endpoint",
            false,
            "OVH_ENDPOINT",
            "ovh-eu, ovh-ca or ovh-us: where the account was created",
        );
        endpoint.default = Some("ovh-eu".into());
        Descriptor {
            kind: KIND.into(),
            display_name: DISPLAY_NAME.into(),
            credential_fields: vec![
                endpoint,
                field(
                    APPLICATION_KEY_FIELD,
                    "Application key",
                    false,
                    "OVH_APPLICATION_KEY",
                    "The application key of an API application (createToken page of the endpoint)",
                ),
                field(
                    APPLICATION_SECRET_FIELD,
                    "Application secret",
                    true,
                    "OVH_APPLICATION_SECRET",
                    "The application secret that came with the application key",
                ),
                field(
                    CONSUMER_KEY_FIELD,
                    "Consumer key",
                    true,
                    "OVH_CONSUMER_KEY",
                    "A consumer key granted GET/POST/PUT/DELETE on /cloud/project/* and /domain/zone/*",
                ),
                field(
                    PROJECT_FIELD,
                    "Project service name",
                    false,
                    "OVH_CLOUD_PROJECT_SERVICE",
                    "The Public Cloud project's id (serviceName), shown under the project's name",
                ),
            ],
            capabilities: Capabilities {
                compute: true,
                dns: true,
                // The instance API has no security groups: nothing to manage honestly.
                firewall: false,
                domains: false,
                ssh_keys: true,
                image_reset: true,
            },
            // OVHcloud publishes no request budget; a few at once stays polite.
            concurrency: 4,
        }
    }

    /// The default normalization plus a known endpoint.
    fn normalize_credentials(&self, values: Credentials) -> Result<Credentials, CredentialError> {
        let desc = self.descriptor();
        let out = super::normalize_fields(&desc, values)?;
        if let Some(e) = out.get(ENDPOINT_FIELD)
            && endpoint(e.expose()).is_none()
        {
            return Err(CredentialError::Invalid {
                provider: desc.display_name,
                field: ENDPOINT_FIELD.into(),
                message: format!(
                    "API endpoint {:?} is not one of {}",
                    e.expose(),
                    endpoint_names()
                ),
            });
        }
        Ok(out)
    }

    fn catalog_policy(&self) -> CatalogPolicy {
        CatalogPolicy {
            default_image: "Ubuntu 24.04".into(),
            default_region: Some("GRA11".into()),
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

    /// OVHcloud's Linux images log in as their distribution's user (the default image,
    /// Ubuntu, as `ubuntu`), with passwordless sudo.
    fn ssh_user(&self) -> &'static str {
        "ubuntu"
    }

    fn connect(&self, ctx: ConnectCtx) -> ProviderResult<Arc<dyn ProviderApi>> {
        let config = self.client_config(&ctx.credentials, &ctx.env)?;
        Ok(Arc::new(OvhApi::new(config, ctx.lane)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(endpoint: &str) -> Credentials {
        [
            (ENDPOINT_FIELD, endpoint),
            (APPLICATION_KEY_FIELD, " ak "),
            (APPLICATION_SECRET_FIELD, "as-secret"),
            (CONSUMER_KEY_FIELD, "ck-secret"),
            (PROJECT_FIELD, "p1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Secret::new(v)))
        .collect()
    }

    #[test]
    fn descriptor_names_the_ovh_variables_and_states_capabilities() {
        let d = OvhModule.descriptor();
        assert_eq!(d.kind, "ovh");
        let vars: Vec<_> = d
            .credential_fields
            .iter()
            .map(|f| f.env_var.clone().unwrap())
            .collect();
        assert_eq!(
            vars,
            [
                "OVH_ENDPOINT",
                "OVH_APPLICATION_KEY",
                "OVH_APPLICATION_SECRET",
                "OVH_CONSUMER_KEY",
                "OVH_CLOUD_PROJECT_SERVICE"
            ]
        );
        let secret: Vec<_> = d
            .credential_fields
            .iter()
            .filter(|f| f.secret)
            .map(|f| f.id.as_str())
            .collect();
        assert_eq!(secret, [APPLICATION_SECRET_FIELD, CONSUMER_KEY_FIELD]);
        assert!(!d.capabilities.firewall);
        assert!(d.capabilities.dns && d.capabilities.ssh_keys && d.capabilities.image_reset);
    }

    #[test]
    fn normalize_checks_the_endpoint_and_names_the_field() {
        let m = OvhModule;
        let ok = m.normalize_credentials(creds("ovh-ca")).unwrap();
        assert_eq!(ok[APPLICATION_KEY_FIELD].expose(), "ak");
        assert!(m.is_configured(&ok));
        let mut no_endpoint = creds("x");
        no_endpoint.remove(ENDPOINT_FIELD);
        let filled = m.normalize_credentials(no_endpoint).unwrap();
        assert_eq!(filled[ENDPOINT_FIELD].expose(), "ovh-eu");
        let e = m
            .normalize_credentials(creds("ovh-mars"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("API endpoint") && e.contains("ovh-eu"), "{e}");
        let mut missing = creds("ovh-eu");
        missing.remove(CONSUMER_KEY_FIELD);
        let e = m.normalize_credentials(missing).unwrap_err().to_string();
        assert!(e.contains("Consumer key is required"), "{e}");
    }

    #[test]
    fn config_picks_the_endpoint_and_honours_the_override() {
        let m = OvhModule;
        let c = m.client_config(&creds("ovh-us"), &Env::default()).unwrap();
        assert_eq!(c.base_url, "https://api.us.ovhcloud.com/1.0");
        assert_eq!(c.subsidiary, "US");
        let env = Env::default()
            .with(API_URL_VAR, "http://127.0.0.1:4010/1.0/")
            .with(POLL_VAR, "20");
        let c = m.client_config(&creds("ovh-eu"), &env).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:4010/1.0");
        assert_eq!(c.poll, Duration::from_millis(20));
        assert_eq!(c.project, "p1");
        let shown = format!("{c:?}");
        assert!(!shown.contains("as-secret") && !shown.contains("ck-secret"));
        let mut missing = creds("ovh-eu");
        missing.remove(APPLICATION_SECRET_FIELD);
        let e = m.client_config(&missing, &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(
            e.message.contains("OVH_APPLICATION_SECRET"),
            "{}",
            e.message
        );
        let bad = Env::default().with(API_URL_VAR, "ftp://x");
        assert!(m.client_config(&creds("ovh-eu"), &bad).is_err());
    }
}
