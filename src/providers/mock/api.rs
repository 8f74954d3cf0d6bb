//! The `mock` adapter: Legion's provider surfaces over a [`MockCloud`].
//!
//! Every call goes through the provider's broker lane: reads through [`Lane::read`],
//! writes through [`Lane::write`] with a verifier that reads the simulated cloud back
//! after an ambiguous failure, deletes through [`Lane::delete`]. Verifiers and existence
//! checks call the cloud directly (the lane already runs them as reads), and never repeat
//! the write. Nothing here logs request bodies.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::agent::MockAgent;
use super::cloud::MockCloud;
use super::world::{self, Action, DISPLAY_NAME};
use crate::providers::{
    Catalog, ComputeApi, DnsApi, DomainApi, ErrorKind, FirewallApi, FirewallRule, Lane, NodeAgent,
    ObservedDomain, ObservedFirewall, ObservedServer, ObservedZone, ProviderApi, ProviderError,
    ProviderResult, RecordType, RrSet, ServerSpec, ServerStatus, SshKeyApi, StopMode, WriteOp,
};

pub struct MockApi {
    cloud: Arc<MockCloud>,
    lane: Arc<Lane>,
    agent: Arc<MockAgent>,
}

impl MockApi {
    pub fn new(cloud: Arc<MockCloud>, lane: Arc<Lane>) -> MockApi {
        MockApi {
            agent: Arc::new(MockAgent::new(cloud.clone())),
            cloud,
            lane,
        }
    }

    fn op(method: &'static str, path: impl Into<String>, res: &str) -> WriteOp {
        WriteOp::new(method, path).for_resource(Some(res.to_string()))
    }

    /// A power action, accepted after an ambiguous failure when the server shows `done`.
    async fn act(
        &self,
        id: &str,
        action: Action,
        res: &str,
        done: impl Fn(&ObservedServer) -> bool + Send + Sync,
    ) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        let (action, done) = (&action, &done);
        let path = format!("/servers/{id}/actions/{}", action.path_name());
        self.lane
            .write(
                Self::op("POST", path, res),
                move || cloud.server_action(id, action),
                Some(
                    move || async move { Ok(cloud.get_server(id).await?.filter(done).map(|_| ())) },
                ),
            )
            .await
    }
}

#[async_trait]
impl ProviderApi for MockApi {
    async fn verify(&self) -> ProviderResult<()> {
        self.lane
            .read("GET /account", || self.cloud.account())
            .await
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
    fn domains(&self) -> Option<&dyn DomainApi> {
        Some(self)
    }
    fn node_agent(&self) -> Option<Arc<dyn NodeAgent>> {
        Some(self.agent.clone())
    }
    async fn flush(&self) {
        self.cloud.flush().await;
    }
}

#[async_trait]
impl ComputeApi for MockApi {
    async fn catalog(&self) -> ProviderResult<Catalog> {
        self.lane
            .read("GET /catalog", || self.cloud.catalog())
            .await
    }

    async fn list_servers(&self, install: &str) -> ProviderResult<Vec<ObservedServer>> {
        self.lane
            .read("GET /servers", || self.cloud.list_servers(Some(install)))
            .await
    }

    async fn get_server(&self, id: &str) -> ProviderResult<Option<ObservedServer>> {
        self.lane
            .read("GET /servers/:id", || self.cloud.get_server(id))
            .await
    }

    async fn create_server(&self, spec: &ServerSpec, res: &str) -> ProviderResult<ObservedServer> {
        let cloud = &*self.cloud;
        self.lane
            .write(
                Self::op("POST", "/servers", res),
                move || cloud.create_server(spec),
                // Identity, not a blind repeat: the server with this name that carries
                // every label of the spec (the node's `legion-node` uid among them).
                Some(move || async move {
                    Ok(cloud
                        .list_servers(None)
                        .await?
                        .into_iter()
                        .find(|s| world::matches_spec(s, spec)))
                }),
            )
            .await
    }

    async fn start_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.act(id, Action::PowerOn, res, |s| {
            s.status == ServerStatus::Running
        })
        .await
    }

    async fn stop_server(&self, id: &str, mode: StopMode, res: &str) -> ProviderResult<()> {
        let action = match mode {
            StopMode::Graceful => Action::Shutdown,
            StopMode::Hard => Action::PowerOff,
        };
        self.act(id, action, res, |s| s.status == ServerStatus::Off)
            .await
    }

    async fn reboot_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        self.act(id, Action::Reboot, res, |s| {
            s.status == ServerStatus::Running
        })
        .await
    }

    async fn reset_image(&self, id: &str, image: &str, res: &str) -> ProviderResult<()> {
        let action = Action::Rebuild {
            image: image.to_string(),
        };
        self.act(id, action, res, |s| {
            s.status == ServerStatus::Running && s.image.as_deref() == Some(image)
        })
        .await
    }

    fn can_resize(&self) -> bool {
        true
    }

    async fn resize_server(&self, id: &str, offer: &str, res: &str) -> ProviderResult<()> {
        let action = Action::ChangeType {
            offer: offer.to_string(),
        };
        self.act(id, action, res, |s| s.offer == offer).await
    }

    async fn destroy_server(&self, id: &str, res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        self.lane
            .delete(
                Self::op("DELETE", format!("/servers/{id}"), res),
                move || cloud.delete_server(id),
                move || async move { Ok(cloud.get_server(id).await?.is_some()) },
            )
            .await
    }
}

#[async_trait]
impl DnsApi for MockApi {
    async fn list_zones(&self) -> ProviderResult<Vec<ObservedZone>> {
        self.lane
            .read("GET /zones", || self.cloud.list_zones())
            .await
    }

    async fn get_zone(&self, name: &str) -> ProviderResult<Option<ObservedZone>> {
        self.lane
            .read("GET /zones?name=:name", || self.cloud.zone_named(name))
            .await
    }

    async fn create_zone(&self, name: &str, res: &str) -> ProviderResult<ObservedZone> {
        let cloud = &*self.cloud;
        self.lane
            .write(
                Self::op("POST", "/zones", res),
                move || cloud.create_zone(name),
                Some(move || cloud.zone_named(name)),
            )
            .await
    }

    async fn delete_zone(&self, id: &str, res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        self.lane
            .delete(
                Self::op("DELETE", format!("/zones/{id}"), res),
                move || cloud.delete_zone(id),
                move || async move { Ok(cloud.get_zone(id).await?.is_some()) },
            )
            .await
    }

    async fn set_rrset(&self, zone_id: &str, rrset: &RrSet, res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        let path = format!("/zones/{zone_id}/rrsets/{}/{}", rrset.name, rrset.rtype);
        self.lane
            .write(
                Self::op("PUT", path, res),
                move || cloud.set_rrset(zone_id, rrset),
                Some(move || async move {
                    let now = cloud.get_rrset(zone_id, &rrset.name, rrset.rtype).await?;
                    Ok(now.filter(|r| world::same_rrset(r, rrset)).map(|_| ()))
                }),
            )
            .await
    }

    async fn delete_rrset(
        &self,
        zone_id: &str,
        name: &str,
        rtype: RecordType,
        res: &str,
    ) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        self.lane
            .delete(
                Self::op(
                    "DELETE",
                    format!("/zones/{zone_id}/rrsets/{name}/{rtype}"),
                    res,
                ),
                move || cloud.delete_rrset(zone_id, name, rtype),
                move || async move { Ok(cloud.get_rrset(zone_id, name, rtype).await?.is_some()) },
            )
            .await
    }
}

#[async_trait]
impl FirewallApi for MockApi {
    async fn list_firewalls(&self, install: &str) -> ProviderResult<Vec<ObservedFirewall>> {
        self.lane
            .read("GET /firewalls", || {
                self.cloud.list_firewalls(Some(install))
            })
            .await
    }

    async fn create_firewall(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        rules: &[FirewallRule],
        res: &str,
    ) -> ProviderResult<ObservedFirewall> {
        let cloud = &*self.cloud;
        self.lane
            .write(
                Self::op("POST", "/firewalls", res),
                move || cloud.create_firewall(name, labels, rules),
                Some(move || async move {
                    Ok(cloud
                        .list_firewalls(None)
                        .await?
                        .into_iter()
                        .find(|f| f.name == name && world::has_labels(&f.labels, labels)))
                }),
            )
            .await
    }

    async fn set_rules(&self, id: &str, rules: &[FirewallRule], res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        let want = world::rule_set(rules);
        let want = &want;
        self.lane
            .write(
                Self::op("PUT", format!("/firewalls/{id}/rules"), res),
                move || cloud.set_rules(id, rules),
                Some(move || async move {
                    let fw = cloud.get_firewall(id).await?;
                    Ok(fw
                        .filter(|f| &world::rule_set(&f.rules) == want)
                        .map(|_| ()))
                }),
            )
            .await
    }

    async fn attach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        self.lane
            .write(
                Self::op(
                    "POST",
                    format!("/firewalls/{id}/actions/apply_to_resources"),
                    res,
                ),
                move || cloud.attach(id, server_ids),
                Some(move || async move {
                    let fw = cloud.get_firewall(id).await?;
                    Ok(fw
                        .filter(|f| server_ids.iter().all(|s| f.applied_to.contains(s)))
                        .map(|_| ()))
                }),
            )
            .await
    }

    async fn detach(&self, id: &str, server_ids: &[String], res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        self.lane
            .write(
                Self::op(
                    "POST",
                    format!("/firewalls/{id}/actions/remove_from_resources"),
                    res,
                ),
                move || cloud.detach(id, server_ids),
                Some(move || async move {
                    let fw = cloud.get_firewall(id).await?;
                    Ok(fw
                        .filter(|f| !server_ids.iter().any(|s| f.applied_to.contains(s)))
                        .map(|_| ()))
                }),
            )
            .await
    }

    async fn delete_firewall(&self, id: &str, res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        self.lane
            .delete(
                Self::op("DELETE", format!("/firewalls/{id}"), res),
                move || cloud.delete_firewall(id),
                move || async move { Ok(cloud.get_firewall(id).await?.is_some()) },
            )
            .await
    }
}

#[async_trait]
impl SshKeyApi for MockApi {
    async fn ensure_key(&self, name: &str, public_key: &str, res: &str) -> ProviderResult<String> {
        let cloud = &*self.cloud;
        let keys = self
            .lane
            .read("GET /ssh_keys", || cloud.list_keys())
            .await?;
        if let Some(key) = keys.iter().find(|k| k.name == name) {
            if world::same_public_key(&key.public_key, public_key) {
                return Ok(key.id.clone());
            }
            return Err(ProviderError::new(
                DISPLAY_NAME,
                ErrorKind::Conflict,
                format!(
                    "an SSH key named {name:?} already exists with a different public key \
                     (rename or delete key {} in the simulated cloud)",
                    key.id
                ),
            )
            .with_code("uniqueness_error"));
        }
        self.lane
            .write(
                Self::op("POST", "/ssh_keys", res),
                move || cloud.create_key(name, public_key),
                // The key with this name and this public key exists.
                Some(move || async move {
                    Ok(cloud.list_keys().await?.into_iter().find_map(|k| {
                        (k.name == name && world::same_public_key(&k.public_key, public_key))
                            .then_some(k.id)
                    }))
                }),
            )
            .await
    }

    async fn delete_key(&self, id: &str, res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        self.lane
            .delete(
                Self::op("DELETE", format!("/ssh_keys/{id}"), res),
                move || cloud.delete_key(id),
                move || async move { Ok(cloud.get_key(id).await?.is_some()) },
            )
            .await
    }
}

#[async_trait]
impl DomainApi for MockApi {
    async fn get_domain(&self, name: &str) -> ProviderResult<Option<ObservedDomain>> {
        self.lane
            .read("GET /domains/:name", || async {
                self.cloud.get_domain(name).await.map(Some)
            })
            .await
    }

    async fn set_nameservers(&self, name: &str, ns: &[String], res: &str) -> ProviderResult<()> {
        let cloud = &*self.cloud;
        let want: std::collections::BTreeSet<&str> = ns.iter().map(String::as_str).collect();
        let want = &want;
        self.lane
            .write(
                Self::op("PUT", format!("/domains/{name}/nameservers"), res),
                move || cloud.set_nameservers(name, ns),
                Some(move || async move {
                    let d = cloud.get_domain(name).await?;
                    let now: std::collections::BTreeSet<&str> =
                        d.nameservers.iter().map(String::as_str).collect();
                    Ok((&now == want).then_some(()))
                }),
            )
            .await
    }
}
