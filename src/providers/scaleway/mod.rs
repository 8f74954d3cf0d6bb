//! `scaleway`: Scaleway Instances (servers, security groups, IAM SSH keys and DNS zones).
//!
//! A hand-written client of the Scaleway APIs under one base URL
//! (`https://api.scaleway.com`, or `LEGION_SCALEWAY_API_URL` for a local fake): the
//! Instance API (`/instance/v1/zones/{zone}/…`), the Marketplace (`/marketplace/v2/images`),
//! IAM (`/iam/v1alpha1/ssh-keys`), Block Storage (`/block/v1/zones/{zone}/volumes`) and
//! Domains and DNS (`/domain/v2beta1/dns-zones`). Scaleway's JSON never leaves this module.
//!
//! - `client.rs`: HTTP, the `X-Auth-Token` secret key, both forms of Scaleway's error
//!   bodies, rate-limit headers and the two pagination styles;
//! - `schema.rs`: Scaleway's shapes and their mapping into Legion's types;
//! - `api.rs`: [`ScalewayApi`], the adapter surfaces, every call through the broker lane.
//!
//! Legion's regions are Scaleway zones (`fr-par-1`); a server's Legion id is
//! `zone/uuid` because every Instance API path is zonal. Legion's labels are stored as
//! `key=value` tags. Images are Marketplace labels (`ubuntu_noble`), which the create call
//! accepts in every zone. Arm (`arm64`) commercial types are left out of the catalog.
//!
//! Capabilities: compute, DNS, firewalls (security groups), SSH keys and image reset; no
//! registrar (`domains: false`). Nodes are reached over SSH by the engine, so the adapter
//! has no node agent.
//!
//! Reinstall (`reset_image`): Scaleway Instances have no rebuild action, so the adapter
//! does the closest operation, replacing the server's root volume. It resolves the
//! image (Marketplace `GET /marketplace/v2/local-images?image_label&zone&type`, the type
//! `instance_local` or `instance_sbs` after the current root, x86-64 and compatible with
//! the commercial type) to its Instance image's `root_volume` snapshot, powers the
//! server off, makes a new volume from that snapshot (`l_ssd`: Instance
//! `POST …/volumes` with `base_snapshot`; `sbs_volume`: Block Storage
//! `POST /block/v1/zones/{zone}/volumes` with `from_snapshot` at the old size and IOPS),
//! waits for it to be `available`, swaps it in at index `0` with
//! `PATCH …/servers/{id}` (`volumes`, the other volumes kept), deletes the old root and
//! powers the server on. The server keeps its id, addresses, security group, tags and
//! other volumes. Limits: a new local root has the snapshot's size (the Instance API
//! takes the size from `base_snapshot`), so a bigger local root comes back at the
//! image's size; the volumes Legion makes carry the tag `legion-root-of=<server id>`,
//! and one left attached to nothing by an interrupted reinstall is deleted by the next;
//! a replaced original root whose deletion fails is named in the error for the operator
//! to delete. Scaleway keeps reporting the image the server was created from, so the
//! observed `image` stays unknown.

mod api;
mod client;
mod schema;

use std::sync::Arc;
use std::time::Duration;

pub use api::ScalewayApi;
pub use client::ClientConfig;

use super::{
    BootMode, Capabilities, CatalogPolicy, ConnectCtx, CredentialError, CredentialField,
    Credentials, DeploymentProfile, Descriptor, Env, ErrorKind, OfferSelector, ProviderApi,
    ProviderError, ProviderModule, ProviderResult,
};

/// The provider's name in error messages ("Scaleway: …").
const DISPLAY: &str = "Scaleway";
pub const DISPLAY_NAME: &str = "Scaleway Instances";
pub const KIND: &str = "scaleway";
pub const DEFAULT_API_URL: &str = "https://api.scaleway.com";
/// Points the adapter at another API (a local fake in tests).
pub const API_URL_VAR: &str = "LEGION_SCALEWAY_API_URL";
/// The first interval between polls of a server's state, in milliseconds.
pub const ACTION_POLL_VAR: &str = "LEGION_SCALEWAY_ACTION_POLL_MS";
/// The credential field holding the secret key.
pub const SECRET_KEY_FIELD: &str = "secret_key";
/// The credential field holding the project id.
pub const PROJECT_FIELD: &str = "project_id";
/// The credential field holding the default zone.
pub const ZONE_FIELD: &str = "zone";
/// The zone used when the credentials name none.
pub const DEFAULT_ZONE: &str = "fr-par-1";
/// The zones of Scaleway Instances: Legion's regions.
pub const ZONES: &[&str] = &[
    "fr-par-1", "fr-par-2", "fr-par-3", "nl-ams-1", "nl-ams-2", "nl-ams-3", "pl-waw-1", "pl-waw-2",
    "pl-waw-3",
];

/// The `scaleway` provider module.
#[derive(Debug, Default)]
pub struct ScalewayModule;

/// `fr-par-1`: two letters, three letters, a digit.
fn valid_zone(zone: &str) -> bool {
    let parts: Vec<&str> = zone.split('-').collect();
    matches!(parts.as_slice(), [a, b, n]
        if a.len() == 2 && a.chars().all(|c| c.is_ascii_lowercase())
            && b.len() == 3 && b.chars().all(|c| c.is_ascii_lowercase())
            && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

impl ScalewayModule {
    /// The client settings `connect` uses: secret key, project and zone from the
    /// credentials, base URL and poll interval from the environment.
    pub fn client_config(
        &self,
        credentials: &Credentials,
        env: &Env,
    ) -> ProviderResult<ClientConfig> {
        let field = |id: &str| {
            credentials
                .get(id)
                .map(|v| v.expose().trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let secret = credentials
            .get(SECRET_KEY_FIELD)
            .filter(|t| !t.expose().trim().is_empty())
            .ok_or_else(|| {
                ProviderError::new(
                    DISPLAY,
                    ErrorKind::Unauthorized,
                    format!(
                        "no secret key is configured (set {SECRET_KEY_FIELD} or SCW_SECRET_KEY)"
                    ),
                )
            })?;
        let project = field(PROJECT_FIELD).ok_or_else(|| {
            ProviderError::new(
                DISPLAY,
                ErrorKind::Unauthorized,
                format!(
                    "no project id is configured (set {PROJECT_FIELD} or SCW_DEFAULT_PROJECT_ID)"
                ),
            )
        })?;
        let zone = field(ZONE_FIELD).unwrap_or_else(|| DEFAULT_ZONE.to_string());
        if !valid_zone(&zone) {
            return Err(ProviderError::new(
                DISPLAY,
                ErrorKind::InvalidInput,
                format!("zone {zone:?} is not a Scaleway zone such as fr-par-1"),
            ));
        }
        let base = env
            .get(API_URL_VAR)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_API_URL);
        crate::providers::http::check_api_url(DISPLAY, API_URL_VAR, base)?;
        let mut config = ClientConfig::new(base, secret.clone(), project, zone);
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

impl ProviderModule for ScalewayModule {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: KIND.into(),
            display_name: DISPLAY_NAME.into(),
            credential_fields: vec![
                CredentialField {
                    id: SECRET_KEY_FIELD.into(),
                    label: "Secret key".into(),
                    secret: true,
                    required: true,
                    env_var: Some("SCW_SECRET_KEY".into()),
                    default: None,
                    help: "The secret key of a Scaleway API key with Instances, IAM SSH keys \
                           and Domains permissions (Console → IAM → API keys)"
                        .into(),
                },
                CredentialField {
                    id: PROJECT_FIELD.into(),
                    label: "Project ID".into(),
                    secret: false,
                    required: true,
                    env_var: Some("SCW_DEFAULT_PROJECT_ID".into()),
                    default: None,
                    help: "The project Legion's servers, keys and zones belong to".into(),
                },
                CredentialField {
                    id: ZONE_FIELD.into(),
                    label: "Default zone".into(),
                    secret: false,
                    required: false,
                    env_var: Some("SCW_DEFAULT_ZONE".into()),
                    default: Some(DEFAULT_ZONE.into()),
                    help: "The zone of security groups and API checks (fr-par-1, nl-ams-1, \
                           pl-waw-1, …)"
                        .into(),
                },
            ],
            capabilities: Capabilities {
                compute: true,
                dns: true,
                firewall: true,
                domains: false,
                ssh_keys: true,
                image_reset: true,
            },
            // Scaleway does not publish a request budget for these APIs; a few calls at
            // once keeps the per-zone listings quick without bursts.
            concurrency: 4,
        }
    }

    fn normalize_credentials(&self, values: Credentials) -> Result<Credentials, CredentialError> {
        let desc = self.descriptor();
        let out = super::normalize_fields(&desc, values)?;
        if let Some(zone) = out.get(ZONE_FIELD)
            && !valid_zone(zone.expose())
        {
            return Err(CredentialError::Invalid {
                provider: desc.display_name,
                field: ZONE_FIELD.into(),
                message: format!(
                    "Default zone {:?} is not a Scaleway zone such as fr-par-1",
                    zone.expose()
                ),
            });
        }
        Ok(out)
    }

    fn catalog_policy(&self) -> CatalogPolicy {
        CatalogPolicy {
            default_image: "ubuntu_noble".into(),
            default_region: Some(DEFAULT_ZONE.into()),
            default_offer: OfferSelector::Cheapest {
                min_cores: 2,
                min_memory_mb: 2048,
            },
        }
    }

    fn deployment_profile(&self) -> DeploymentProfile {
        // Scaleway's current images boot in UEFI mode.
        DeploymentProfile {
            default_boot_mode: BootMode::Efi,
        }
    }

    fn connect(&self, ctx: ConnectCtx) -> ProviderResult<Arc<dyn ProviderApi>> {
        let config = self.client_config(&ctx.credentials, &ctx.env)?;
        Ok(Arc::new(ScalewayApi::new(config, ctx.lane)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::secret::Secret;

    fn creds(secret: &str, project: &str) -> Credentials {
        [
            (SECRET_KEY_FIELD.to_string(), Secret::new(secret)),
            (PROJECT_FIELD.to_string(), Secret::new(project)),
        ]
        .into()
    }

    #[test]
    fn descriptor_asks_for_key_project_and_zone() {
        let m = ScalewayModule;
        let d = m.descriptor();
        assert_eq!(d.kind, "scaleway");
        let vars: Vec<_> = d
            .credential_fields
            .iter()
            .map(|f| f.env_var.as_deref().unwrap())
            .collect();
        assert_eq!(
            vars,
            [
                "SCW_SECRET_KEY",
                "SCW_DEFAULT_PROJECT_ID",
                "SCW_DEFAULT_ZONE"
            ]
        );
        assert!(d.credential_fields[0].secret && d.credential_fields[0].required);
        assert!(!d.credential_fields[2].required);
        assert!(d.capabilities.image_reset && !d.capabilities.domains);
        assert!(d.capabilities.firewall && d.capabilities.dns && d.capabilities.ssh_keys);
        assert!(m.enabled(&Env::default()));
        let n = m.normalize_credentials(creds(" s ", " p ")).unwrap();
        assert_eq!(n[SECRET_KEY_FIELD].expose(), "s");
        assert_eq!(n[ZONE_FIELD].expose(), DEFAULT_ZONE);
        assert!(m.is_configured(&n));
        let mut bad = creds("s", "p");
        bad.insert(ZONE_FIELD.into(), Secret::new("paris"));
        let e = m.normalize_credentials(bad).unwrap_err().to_string();
        assert!(e.contains("Default zone"), "{e}");
        assert!(m.normalize_credentials(Credentials::new()).is_err());
        assert_eq!(m.deployment_profile().default_boot_mode, BootMode::Efi);
    }

    #[test]
    fn config_reads_the_base_url_from_the_injected_env() {
        let m = ScalewayModule;
        let c = m.client_config(&creds("s", "p"), &Env::default()).unwrap();
        assert_eq!(c.base_url, DEFAULT_API_URL);
        assert_eq!(c.zone, DEFAULT_ZONE);
        let env = Env::default()
            .with(API_URL_VAR, "http://127.0.0.1:4010/")
            .with(ACTION_POLL_VAR, "20");
        let c = m.client_config(&creds("s", "p"), &env).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:4010");
        assert_eq!(c.action_poll, Duration::from_millis(20));
        let e = m.client_config(&Credentials::new(), &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        let bad = Env::default().with(API_URL_VAR, "ftp://x");
        assert!(m.client_config(&creds("s", "p"), &bad).is_err());
        assert!(valid_zone("nl-ams-3") && !valid_zone("fr-par") && !valid_zone("FR-PAR-1"));
    }
}
