//! `manual`: servers the operator already has, imported over SSH ("Manual hosts").
//!
//! There is no API behind this provider. A host joins with `legion nodes import`: its
//! address, SSH port and user, and a one-time password used only to put Legion's managed
//! public key into the user's `authorized_keys` (never stored). From then on it is a node
//! like any other for the SSH phases, health, the terminal pane and the log tail.
//!
//! What the provider does and does not manage:
//! - compute: a server is the `user@host:port` it was imported as (its id); observing it
//!   is a TCP probe of the SSH port. Power actions and reinstall are refused with a
//!   sentence (Legion has no power control over a host it did not create); destroying the
//!   node forgets the host and leaves it untouched.
//! - firewall: not managed. The cluster firewall set's rules for manual hosts become
//!   operator tasks in the Firewalls view ("open tcp 4413 from 10.0.0.2/32 on web-1").
//! - DNS, domains, SSH key upload, image reset: none.
//!
//! The static catalog has one region and one offer, `host`, whose variables are the
//! import's fields (host, port, user, password).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    BootMode, Capabilities, Catalog, CatalogPolicy, ComputeApi, ConnectCtx, DeploymentProfile,
    Descriptor, ErrorKind, Image, Lane, ObservedServer, Offer, OfferSelector, OfferVariable,
    ProviderApi, ProviderError, ProviderModule, ProviderResult, Region, ServerSpec, ServerStatus,
    StopMode,
};
use crate::ssh::Target;

pub const KIND: &str = "manual";
pub const DISPLAY_NAME: &str = "Manual hosts";
/// The catalog's only region, offer and image.
pub const REGION: &str = "manual";
pub const OFFER: &str = "host";
pub const IMAGE: &str = "existing";
/// How long the observation's TCP probe of a host's SSH port may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The server id of an imported host: `user@host:port` (`user@[v6]:port`).
pub fn server_id(target: &Target) -> String {
    if target.host.contains(':') {
        format!("{}@[{}]:{}", target.user, target.host, target.port)
    } else {
        format!("{}@{}:{}", target.user, target.host, target.port)
    }
}

/// The target a server id names; `None` when it is not one of ours.
pub fn parse_server_id(id: &str) -> Option<Target> {
    let (user, rest) = id.split_once('@')?;
    let (host, port) = rest.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    (!user.is_empty() && !host.is_empty()).then(|| Target::new(host, port, user))
}

/// The static catalog: one region, one offer carrying the import's fields, one image.
pub fn catalog() -> Catalog {
    let var = |id: &str, label: &str, default: Option<&str>, secret: bool| OfferVariable {
        id: id.into(),
        label: label.into(),
        default: default.map(String::from),
        secret,
    };
    Catalog {
        regions: vec![Region {
            id: REGION.into(),
            name: "Wherever the host is".into(),
            available: true,
        }],
        offers: vec![Offer {
            id: OFFER.into(),
            name: "An existing host, imported over SSH".into(),
            cores: 1,
            memory_mb: 1024,
            disk_gb: 0,
            hourly_price: [(REGION.to_string(), 0.0)].into(),
            regions: vec![REGION.into()],
            deprecated: false,
            variables: vec![
                var("host", "Host or address", None, false),
                var("port", "SSH port", Some("22"), false),
                var(
                    "user",
                    "SSH user (root, or one with passwordless sudo)",
                    Some("root"),
                    false,
                ),
                var("password", "One-time password, never stored", None, true),
            ],
        }],
        images: vec![Image {
            id: IMAGE.into(),
            name: "The system already installed".into(),
            architecture: "any".into(),
            deprecated: false,
            login_user: None,
        }],
    }
}

#[derive(Debug, Default)]
pub struct ManualModule;

impl ProviderModule for ManualModule {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: KIND.into(),
            display_name: DISPLAY_NAME.into(),
            credential_fields: Vec::new(),
            capabilities: Capabilities {
                compute: true,
                dns: false,
                firewall: false,
                domains: false,
                ssh_keys: false,
                image_reset: false,
            },
            concurrency: 8,
        }
    }

    fn catalog_policy(&self) -> CatalogPolicy {
        CatalogPolicy {
            default_image: IMAGE.into(),
            default_region: Some(REGION.into()),
            default_offer: OfferSelector::Preferred {
                id: OFFER.into(),
                min_cores: 0,
                min_memory_mb: 0,
            },
        }
    }

    fn deployment_profile(&self) -> DeploymentProfile {
        DeploymentProfile {
            default_boot_mode: BootMode::Bios,
        }
    }

    fn connect(&self, ctx: ConnectCtx) -> ProviderResult<Arc<dyn ProviderApi>> {
        Ok(Arc::new(ManualApi { lane: ctx.lane }))
    }
}

pub struct ManualApi {
    lane: Arc<Lane>,
}

fn refuse(what: &str) -> ProviderError {
    ProviderError::new(DISPLAY_NAME, ErrorKind::Unsupported, what.to_string())
}

impl ManualApi {
    async fn probe(&self, id: &str) -> ProviderResult<Option<ObservedServer>> {
        let Some(target) = parse_server_id(id) else {
            return Ok(None);
        };
        let addr = (target.host.clone(), target.port);
        let reachable = self
            .lane
            .read("probe the SSH port", || {
                let addr = addr.clone();
                async move {
                    Ok(matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr))
                            .await,
                        Ok(Ok(_))
                    ))
                }
            })
            .await?;
        Ok(Some(ObservedServer {
            id: id.to_string(),
            name: target.host.clone(),
            // A host that does not answer may be off or cut off: Legion cannot tell.
            status: if reachable {
                ServerStatus::Running
            } else {
                ServerStatus::Unknown
            },
            ipv4: (!target.host.contains(':')).then(|| target.host.clone()),
            ipv6: target.host.contains(':').then(|| target.host.clone()),
            region: REGION.into(),
            offer: OFFER.into(),
            image: Some(IMAGE.into()),
            labels: Default::default(),
        }))
    }
}

#[async_trait]
impl ProviderApi for ManualApi {
    async fn verify(&self) -> ProviderResult<()> {
        Ok(())
    }

    fn compute(&self) -> Option<&dyn ComputeApi> {
        Some(self)
    }
}

#[async_trait]
impl ComputeApi for ManualApi {
    fn can_create(&self) -> bool {
        false
    }

    async fn catalog(&self) -> ProviderResult<Catalog> {
        Ok(catalog())
    }

    /// Manual hosts are not listed anywhere; observation reads each tracked host
    /// ([`ComputeApi::observe`]).
    async fn list_servers(&self, _install: &str) -> ProviderResult<Vec<ObservedServer>> {
        Ok(Vec::new())
    }

    async fn observe(
        &self,
        _install: &str,
        tracked: &[String],
    ) -> ProviderResult<Vec<ObservedServer>> {
        let mut out = Vec::with_capacity(tracked.len());
        for id in tracked {
            out.extend(self.probe(id).await?);
        }
        Ok(out)
    }

    async fn get_server(&self, id: &str) -> ProviderResult<Option<ObservedServer>> {
        self.probe(id).await
    }

    async fn create_server(&self, spec: &ServerSpec, _res: &str) -> ProviderResult<ObservedServer> {
        Err(refuse(&format!(
            "{} is not a host Legion knows: add existing hosts with `legion nodes import {} --host ADDRESS`",
            spec.name, spec.name
        )))
    }

    async fn start_server(&self, id: &str, _res: &str) -> ProviderResult<()> {
        Err(refuse(&format!(
            "Legion has no power control over {id}: power it on where it runs"
        )))
    }

    async fn stop_server(&self, id: &str, _mode: StopMode, _res: &str) -> ProviderResult<()> {
        Err(refuse(&format!(
            "Legion has no power control over {id}: stop it from its shell (`s`) or where it runs"
        )))
    }

    async fn reboot_server(&self, id: &str, _res: &str) -> ProviderResult<()> {
        Err(refuse(&format!(
            "Legion has no power control over {id}: reboot it from its shell (`s`)"
        )))
    }

    async fn reset_image(&self, id: &str, _image: &str, _res: &str) -> ProviderResult<()> {
        Err(refuse(&format!(
            "{id} cannot be reset to a fresh image: reinstall it where it runs, then `legion nodes retry`"
        )))
    }

    /// Forgetting a host leaves it untouched (its `authorized_keys` keeps Legion's key).
    async fn destroy_server(&self, _id: &str, _res: &str) -> ProviderResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_round_trip() {
        for t in [
            Target::new("203.0.113.5", 22, "root"),
            Target::new("host.example", 2222, "ops"),
            Target::new("2001:db8::5", 22, "root"),
        ] {
            let id = server_id(&t);
            assert_eq!(parse_server_id(&id), Some(t), "{id}");
        }
        assert_eq!(
            server_id(&Target::new("2001:db8::5", 22, "root")),
            "root@[2001:db8::5]:22"
        );
        for bad in ["", "host", "root@host", "@h:22", "root@:22", "root@h:port"] {
            assert_eq!(parse_server_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn catalog_offer_carries_the_import_fields() {
        let c = catalog();
        let offer = &c.offers[0];
        let ids: Vec<_> = offer.variables.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["host", "port", "user", "password"]);
        assert!(
            offer
                .variables
                .iter()
                .find(|v| v.id == "password")
                .unwrap()
                .secret
        );
        let policy = ManualModule.catalog_policy();
        assert_eq!(policy.offer(&c, REGION).map(|o| o.id.as_str()), Some(OFFER));
        assert_eq!(policy.image(&c), Some(IMAGE));
        let caps = ManualModule.descriptor().capabilities;
        assert!(caps.compute && !caps.firewall && !caps.image_reset && !caps.ssh_keys);
    }
}
