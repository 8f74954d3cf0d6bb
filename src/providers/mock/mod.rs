//! `mock`: the simulated cloud ("Simulated cloud").
//!
//! A deterministic stand-in for a real provider, used by `legion demo` and the engine's
//! tests: seeded faults (definite failures and writes whose response is lost after they
//! were applied), latency on every call, and a world saved to `<home>/mock-cloud.json`
//! so a restarted engine finds its servers again. It is enabled only when
//! `LEGION_MOCK_NETWORK` is set, and it is never a substitute for real-provider tests.
//!
//! - `world.rs`: the resources as plain data and the operations on them;
//! - `cloud.rs`: [`MockCloud`], the provider's side: latency, faults, persistence and the
//!   out-of-band API tests and the demo use;
//! - `api.rs`: the adapter, every call through the broker lane;
//! - `agent.rs`: the simulated node agent.

mod agent;
mod api;
mod cloud;
mod world;

use std::sync::Arc;
use std::time::Duration;

pub use agent::MockAgent;
pub use api::MockApi;
pub use cloud::{DEFAULT_SEED, FILE_NAME, MockCloud};
pub use world::MockKey;

use super::{
    BootMode, Capabilities, CatalogPolicy, ConnectCtx, CredentialError, CredentialField,
    Credentials, DeploymentProfile, Descriptor, ErrorKind, OfferSelector, ProviderApi,
    ProviderError, ProviderModule, ProviderResult,
};
use crate::core::secret::Secret;
use world::DISPLAY_NAME;

/// The environment variable that enables the simulated cloud (`legion demo` sets it).
pub const ENABLE_VAR: &str = "LEGION_MOCK_NETWORK";

/// `(id, label, default, help)` of every credential field; none is secret or required.
const FIELDS: [(&str, &str, &str, &str); 5] = [
    (
        "seed",
        "Seed",
        "42",
        "Seed of the simulated faults: the same seed and calls give the same failures",
    ),
    (
        "latency_ms",
        "Latency (ms)",
        "150",
        "Delay of every call; a server create takes three times as long",
    ),
    (
        "error_rate",
        "Error rate",
        "0",
        "Probability (0 to 1) that a call fails before anything is applied",
    ),
    (
        "ambiguous_rate",
        "Ambiguous rate",
        "0",
        "Probability (0 to 1) that a write is applied and its response is lost",
    ),
    (
        "concurrency",
        "Concurrency",
        "8",
        "Requests the simulated API serves at once",
    ),
];

/// The simulated cloud's settings as given in its credentials; an absent field leaves
/// the cloud's current setting.
#[derive(Debug, Clone, Default, PartialEq)]
struct Settings {
    seed: Option<u64>,
    latency: Option<Duration>,
    error_rate: Option<f64>,
    ambiguous_rate: Option<f64>,
    concurrency: Option<usize>,
}

impl Settings {
    fn parse(creds: &Credentials) -> Result<Settings, CredentialError> {
        fn field<T: std::str::FromStr>(
            creds: &Credentials,
            id: &str,
            what: &str,
            ok: impl Fn(&T) -> bool,
        ) -> Result<Option<T>, CredentialError> {
            let Some(raw) = creds.get(id).map(|v| v.expose().trim()) else {
                return Ok(None);
            };
            match raw.parse::<T>() {
                Ok(v) if ok(&v) => Ok(Some(v)),
                _ => Err(CredentialError::Invalid {
                    provider: DISPLAY_NAME.into(),
                    field: id.into(),
                    message: format!("{id} must be {what}, not {raw:?}"),
                }),
            }
        }
        let probability = |p: &f64| (0.0..=1.0).contains(p);
        Ok(Settings {
            seed: field(creds, "seed", "a whole number", |_: &u64| true)?,
            latency: field(
                creds,
                "latency_ms",
                "a number of milliseconds",
                |_: &u64| true,
            )?
            .map(Duration::from_millis),
            error_rate: field(
                creds,
                "error_rate",
                "a probability from 0 to 1",
                probability,
            )?,
            ambiguous_rate: field(
                creds,
                "ambiguous_rate",
                "a probability from 0 to 1",
                probability,
            )?,
            concurrency: field(creds, "concurrency", "at least 1", |n: &usize| *n >= 1)?,
        })
    }

    fn apply(&self, cloud: &MockCloud) {
        if let Some(seed) = self.seed {
            cloud.set_seed(seed);
        }
        if let Some(latency) = self.latency {
            cloud.set_latency(latency);
        }
        if self.error_rate.is_some() || self.ambiguous_rate.is_some() {
            let (error, ambiguous) = cloud.fault_rates();
            cloud.set_faults(
                self.error_rate.unwrap_or(error),
                self.ambiguous_rate.unwrap_or(ambiguous),
            );
        }
        if let Some(n) = self.concurrency {
            cloud.set_concurrency(n);
        }
    }
}

/// The `mock` provider module.
#[derive(Default)]
pub struct MockModule {
    /// A cloud the caller keeps a handle on (tests, the demo's chaos keys); without one,
    /// `connect` opens the cloud saved in the Legion home.
    cloud: Option<Arc<MockCloud>>,
}

impl MockModule {
    /// A module whose adapter talks to `cloud` instead of the one saved in the home.
    pub fn with_cloud(cloud: Arc<MockCloud>) -> MockModule {
        MockModule { cloud: Some(cloud) }
    }
}

impl ProviderModule for MockModule {
    fn kind(&self) -> &'static str {
        "mock"
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "mock".into(),
            display_name: DISPLAY_NAME.into(),
            credential_fields: FIELDS
                .iter()
                .map(|&(id, label, default, help)| CredentialField {
                    id: id.into(),
                    label: label.into(),
                    secret: false,
                    required: false,
                    env_var: None,
                    default: Some(default.into()),
                    help: help.into(),
                })
                .collect(),
            capabilities: Capabilities {
                compute: true,
                dns: true,
                firewall: true,
                domains: true,
                ssh_keys: true,
                image_reset: true,
            },
            concurrency: cloud::DEFAULT_CONCURRENCY,
        }
    }

    fn enabled(&self, env: &super::Env) -> bool {
        env.is_set(ENABLE_VAR)
    }

    fn normalize_credentials(&self, values: Credentials) -> Result<Credentials, CredentialError> {
        if let Some(unknown) = values
            .keys()
            .find(|k| !FIELDS.iter().any(|f| f.0 == k.as_str()))
        {
            return Err(CredentialError::Unknown {
                provider: DISPLAY_NAME.into(),
                field: unknown.clone(),
            });
        }
        let out: Credentials = FIELDS
            .iter()
            .map(|&(id, _, default, _)| {
                let value = values
                    .get(id)
                    .map(|v| v.expose().trim())
                    .filter(|v| !v.is_empty())
                    .unwrap_or(default);
                (id.to_string(), Secret::new(value))
            })
            .collect();
        Settings::parse(&out)?;
        Ok(out)
    }

    fn catalog_policy(&self) -> CatalogPolicy {
        CatalogPolicy {
            default_image: "debian-12".into(),
            default_region: Some("sim-east".into()),
            default_offer: OfferSelector::Preferred {
                id: "sim-small".into(),
                min_cores: 1,
                min_memory_mb: 1024,
            },
        }
    }

    fn deployment_profile(&self) -> DeploymentProfile {
        DeploymentProfile {
            default_boot_mode: BootMode::Bios,
        }
    }

    fn connect(&self, ctx: ConnectCtx) -> ProviderResult<Arc<dyn ProviderApi>> {
        let settings = Settings::parse(&ctx.credentials).map_err(|e| {
            ProviderError::new(DISPLAY_NAME, ErrorKind::InvalidInput, e.to_string())
        })?;
        let cloud = match &self.cloud {
            Some(cloud) => cloud.clone(),
            None => MockCloud::open(
                ctx.home.join(FILE_NAME),
                settings.seed.unwrap_or(DEFAULT_SEED),
            )?,
        };
        settings.apply(&cloud);
        cloud.start_autosave();
        Ok(Arc::new(MockApi::new(cloud, ctx.lane)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Env;

    fn creds(pairs: &[(&str, &str)]) -> Credentials {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn enabled_only_by_the_mock_network_variable() {
        let m = MockModule::default();
        assert!(!m.enabled(&Env::default()));
        assert!(!m.enabled(&Env::default().with(ENABLE_VAR, "0")));
        assert!(m.enabled(&Env::default().with(ENABLE_VAR, "1")));
    }

    #[test]
    fn credentials_get_defaults_and_are_checked() {
        let m = MockModule::default();
        let out = m
            .normalize_credentials(creds(&[("error_rate", " 0.25 ")]))
            .unwrap();
        assert_eq!(out["error_rate"].expose(), "0.25");
        assert_eq!(out["seed"].expose(), "42");
        assert_eq!(out["latency_ms"].expose(), "150");
        assert!(m.is_configured(&Credentials::new()));
        let bad = m.normalize_credentials(creds(&[("error_rate", "2")]));
        assert!(bad.unwrap_err().to_string().contains("error_rate"));
        let bad = m.normalize_credentials(creds(&[("token", "x")]));
        assert!(bad.unwrap_err().to_string().contains("token"));
        let desc = m.descriptor();
        assert!(
            desc.credential_fields
                .iter()
                .all(|f| !f.secret && !f.required)
        );
    }

    #[test]
    fn settings_apply_only_what_is_given() {
        let cloud = MockCloud::new(1);
        cloud.set_faults(0.5, 0.5);
        Settings::parse(&creds(&[("ambiguous_rate", "0.1"), ("latency_ms", "5")]))
            .unwrap()
            .apply(&cloud);
        assert_eq!(cloud.fault_rates(), (0.5, 0.1));
        assert_eq!(cloud.latency(), Duration::from_millis(5));
    }
}
