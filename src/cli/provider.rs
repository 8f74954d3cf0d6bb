//! `legion provider` (list, verify, configure) and `legion catalog`: what providers Legion
//! knows, their credentials, and what they offer.
//!
//! Credential flags are built from each provider's descriptor here (there is no clap
//! definition per provider); storing and checking them is the engine's.

use clap::Subcommand;
use color_eyre::eyre::{Result, eyre};

use super::Cli;
use super::output::{clean, json, outln};
use super::session::with_link;
use crate::core::secret::Secret;
use crate::engine::{Engine, EngineConfig};
use crate::link::Link;
use crate::providers::{Credentials, Descriptor};

#[derive(Subcommand)]
pub(crate) enum ProviderCommand {
    /// Every provider enabled here, with its credential fields and capabilities.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check a configured provider's credentials with one read.
    Verify { kind: String },
    /// Store credentials for a provider. Each credential field FIELD (see `provider
    /// list`) takes `--FIELD VALUE` or `--FIELD-env VAR` (read from that environment
    /// variable); without either, the field's default variable is read when set.
    /// Secrets belong in environment variables, not in argv (shell history): a secret
    /// given directly prints a warning.
    Configure {
        kind: String,
        /// `--FIELD VALUE` / `--FIELD-env VAR` pairs, from the provider's descriptor.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "FLAGS"
        )]
        flags: Vec<String>,
    },
}

#[derive(clap::Args)]
pub(crate) struct CatalogArgs {
    kind: String,
    /// Only offers orderable in this region.
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(cli: &Cli, command: &ProviderCommand) -> Result<()> {
    match command {
        ProviderCommand::List { json: as_json } => {
            // Descriptors need no unlock: an engine that is never unlocked has them.
            let engine = Engine::start(EngineConfig::new(cli.home()?));
            let descriptors = engine.provider_descriptors();
            if *as_json {
                return json(&descriptors);
            }
            for d in descriptors {
                outln!("{:<10} {}", d.kind, d.display_name);
                for f in d.credential_fields {
                    outln!(
                        "    {:<14} {}{}{}",
                        f.id,
                        f.label,
                        if f.secret { " (secret)" } else { "" },
                        f.env_var.map(|v| format!(" [${v}]")).unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        ProviderCommand::Verify { kind } => {
            with_link(cli, async |l: &Link| {
                Ok(l.verify_provider(kind.clone()).await?)
            })
            .await?;
            outln!("provider {kind}: credentials work");
            Ok(())
        }
        ProviderCommand::Configure { kind, flags } => {
            with_link(cli, async |l: &Link| {
                let descriptors = l.provider_descriptors();
                let Some(desc) = descriptors.iter().find(|d| &d.kind == kind) else {
                    let kinds: Vec<&str> = descriptors.iter().map(|d| d.kind.as_str()).collect();
                    return Err(eyre!(
                        "unknown or disabled provider {kind:?}; valid here: {}",
                        kinds.join(", ")
                    ));
                };
                let creds = credential_flags(desc, flags, |v| std::env::var(v).ok())?;
                Ok(l.configure_provider(kind.clone(), creds).await?)
            })
            .await?;
            outln!("provider {kind} configured");
            Ok(())
        }
    }
}

/// `--FIELD VALUE` and `--FIELD-env VAR` for each credential field of a descriptor; a
/// field given neither takes its default variable when that is set.
fn credential_flags(
    desc: &Descriptor,
    flags: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Credentials> {
    let field_ids: Vec<String> = desc
        .credential_fields
        .iter()
        .map(|f| f.id.replace('_', "-"))
        .collect();
    let usage = || {
        let forms: Vec<String> = field_ids
            .iter()
            .map(|f| format!("--{f} VALUE | --{f}-env VAR"))
            .collect();
        format!(
            "{}: valid flags are {}",
            desc.display_name,
            forms.join(", ")
        )
    };
    let mut creds = Credentials::new();
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| eyre!("unexpected {flag:?}; {}", usage()))?;
        let (name, from_env) = match name.strip_suffix("-env") {
            Some(n) => (n, true),
            None => (name, false),
        };
        let field = desc
            .credential_fields
            .iter()
            .find(|f| f.id.replace('_', "-") == name)
            .ok_or_else(|| eyre!("unknown flag {flag:?}; {}", usage()))?;
        let value = it.next().ok_or_else(|| eyre!("{flag} needs a value"))?;
        let value = if from_env {
            env(value)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| eyre!("{flag} {value}: that environment variable is not set"))?
        } else {
            if field.secret {
                eprintln!(
                    "legion: warning: --{name} is a secret and now sits in your shell history; prefer --{name}-env VAR"
                );
            }
            value.clone()
        };
        creds.insert(field.id.clone(), Secret::new(value));
    }
    for f in &desc.credential_fields {
        if !creds.contains_key(&f.id)
            && let Some(v) = f
                .env_var
                .as_deref()
                .and_then(&env)
                .filter(|v| !v.is_empty())
        {
            creds.insert(f.id.clone(), Secret::new(v));
        }
    }
    Ok(creds)
}

/// `legion catalog KIND [--region R] [--json]`: the policy's defaults marked `*`.
pub(crate) async fn catalog(cli: &Cli, args: &CatalogArgs) -> Result<()> {
    let (catalog, policy) = with_link(cli, async |l: &Link| {
        Ok(l.catalog_pair(args.kind.clone()).await?)
    })
    .await?;
    let region = args
        .region
        .clone()
        .or_else(|| policy.region(&catalog).map(String::from));
    if args.json {
        return json(&serde_json::json!({
            "catalog": &*catalog,
            "defaults": {
                "region": policy.region(&catalog),
                "image": policy.image(&catalog),
                "offer": region.as_deref().and_then(|r| policy.offer(&catalog, r)).map(|o| &o.id),
            },
        }));
    }
    let mark = |yes: bool| if yes { "*" } else { " " };
    outln!("regions (* default):");
    for r in &catalog.regions {
        let default = policy.region(&catalog) == Some(r.id.as_str());
        outln!(
            "  {} {:<14} {}{}",
            mark(default),
            clean(&r.id),
            clean(&r.name),
            if r.available { "" } else { " (unavailable)" }
        );
    }
    let default_offer = region
        .as_deref()
        .and_then(|r| policy.offer(&catalog, r))
        .map(|o| o.id.clone());
    outln!(
        "offers{}:",
        region
            .as_deref()
            .map(|r| format!(" in {}", clean(r)))
            .unwrap_or_default()
    );
    for o in catalog
        .offers
        .iter()
        .filter(|o| !o.deprecated && region.as_ref().is_none_or(|r| o.regions.contains(r)))
    {
        let price = region
            .as_ref()
            .and_then(|r| o.hourly_price.get(r))
            .map(|p| format!("{p:.4}/h"))
            .unwrap_or_default();
        outln!(
            "  {} {:<14} {:>3} cpu {:>6} MB {:>5} GB {}",
            mark(default_offer.as_deref() == Some(o.id.as_str())),
            clean(&o.id),
            o.cores,
            o.memory_mb,
            o.disk_gb,
            price
        );
    }
    outln!("images:");
    for i in catalog.images.iter().filter(|i| !i.deprecated) {
        outln!(
            "  {} {:<14} {} ({}{})",
            mark(policy.image(&catalog) == Some(i.id.as_str())),
            clean(&i.id),
            clean(&i.name),
            clean(&i.architecture),
            i.login_user
                .as_deref()
                .map(|u| format!(", logs in as {}", clean(u)))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::CredentialField;

    fn descriptor() -> Descriptor {
        let field = |id: &str, secret: bool, env_var: Option<&str>| CredentialField {
            id: id.to_string(),
            label: id.to_string(),
            secret,
            required: true,
            env_var: env_var.map(String::from),
            default: None,
            help: String::new(),
        };
        Descriptor {
            kind: "test".to_string(),
            display_name: "Test".to_string(),
            credential_fields: vec![
                field("api_token", true, Some("TEST_TOKEN")),
                field("zone", false, None),
            ],
            capabilities: Default::default(),
            concurrency: 1,
        }
    }

    #[test]
    fn credential_flags_take_values_variables_and_defaults() {
        let env = |v: &str| (v == "TEST_TOKEN" || v == "MY_ZONE").then(|| format!("${v}"));
        let flags = vec!["--zone-env".to_string(), "MY_ZONE".to_string()];
        let creds = credential_flags(&descriptor(), &flags, env).unwrap();
        assert_eq!(creds["zone"].expose(), "$MY_ZONE");
        assert_eq!(
            creds["api_token"].expose(),
            "$TEST_TOKEN",
            "the default variable"
        );
        let flags = vec!["--bogus".to_string(), "1".to_string()];
        let err = credential_flags(&descriptor(), &flags, env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--api-token VALUE | --api-token-env VAR"),
            "{err}"
        );
        let flags = vec!["--zone-env".to_string(), "UNSET".to_string()];
        let err = credential_flags(&descriptor(), &flags, env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not set"), "{err}");
    }
}
