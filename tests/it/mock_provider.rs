//! The simulated cloud (`mock` provider) through its adapter and the broker lane, on
//! paused tokio time: lifecycle semantics, ambiguous writes recovered without duplicates,
//! definite failures, persistence across connects, seeded determinism, and the node agent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use legion::core::oplog::{OpKind, OpLog, WriteOutcome};
use legion::core::secret::Secret;
use legion::providers::mock::{FILE_NAME, MockCloud, MockModule};
use legion::providers::{
    ConnectCtx, Credentials, Env, ErrorKind, FirewallRule, HealthReading, LABEL_INSTALL,
    LABEL_NODE, Lane, NodeConfig, NodeTarget, Protocol, ProviderApi, ProviderModule, RecordType,
    RrSet, ServerSpec, ServerStatus, StopMode,
};
use tempfile::TempDir;

const INSTALL: &str = "inst-1";

struct Rig {
    api: Arc<dyn ProviderApi>,
    lane: Arc<Lane>,
    cloud: Arc<MockCloud>,
    _home: TempDir,
}

fn creds(pairs: &[(&str, &str)]) -> Credentials {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Secret::new(*v)))
        .collect()
}

fn connect_module(
    module: &MockModule,
    home: &Path,
    credentials: Credentials,
) -> (Arc<dyn ProviderApi>, Arc<Lane>) {
    let lane = Arc::new(Lane::detached(
        "mock",
        "Simulated cloud",
        8,
        OpLog::new(1000),
    ));
    let api = module
        .connect(ConnectCtx {
            id: "mock".into(),
            credentials,
            lane: lane.clone(),
            home: home.to_path_buf(),
            env: Env::default(),
        })
        .expect("connect");
    (api, lane)
}

fn rig_with(credentials: Credentials) -> Rig {
    let home = tempfile::tempdir().expect("temp home");
    let cloud = MockCloud::new(42);
    let (api, lane) = connect_module(
        &MockModule::with_cloud(cloud.clone()),
        home.path(),
        credentials,
    );
    Rig {
        api,
        lane,
        cloud,
        _home: home,
    }
}

fn rig() -> Rig {
    rig_with(Credentials::new())
}

fn spec(name: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "debian-12".into(),
        ssh_key_id: None,
        labels: BTreeMap::from([
            (LABEL_INSTALL.to_string(), INSTALL.to_string()),
            (LABEL_NODE.to_string(), format!("uid-{name}")),
        ]),
        user_data: Some("#cloud-config\npassword: hunter2-body".into()),
    }
}

fn outcomes(lane: &Lane) -> Vec<WriteOutcome> {
    lane.oplog()
        .recent(1000, None)
        .iter()
        .filter_map(|e| match &e.kind {
            OpKind::ProviderWrite { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

fn count_calls(cloud: &MockCloud, method: &str, path: &str) -> usize {
    cloud
        .calls()
        .iter()
        .filter(|(m, p)| m == method && p == path)
        .count()
}

fn rule(port: &str) -> FirewallRule {
    FirewallRule {
        protocol: Protocol::Tcp,
        port: Some(port.into()),
        sources: vec!["0.0.0.0/0".into(), "::/0".into()],
        description: format!("port {port}"),
    }
}

#[tokio::test(start_paused = true)]
async fn catalog_and_policy_pick_small_in_east_with_debian() {
    let rig = rig();
    let module = MockModule::default();
    let catalog = rig.api.compute().unwrap().catalog().await.unwrap();
    let policy = module.catalog_policy();
    let region = policy.region(&catalog).unwrap();
    assert_eq!(region, "sim-east");
    assert_eq!(policy.image(&catalog), Some("debian-12"));
    assert_eq!(
        policy.offer(&catalog, region).map(|o| o.id.as_str()),
        Some("sim-small")
    );
    let north = catalog
        .regions
        .iter()
        .find(|r| r.id == "sim-north")
        .unwrap();
    assert!(!north.available);
    let legacy = catalog
        .offers
        .iter()
        .find(|o| o.id == "sim-legacy")
        .unwrap();
    assert!(legacy.deprecated);
    let debian11 = catalog.images.iter().find(|i| i.id == "debian-11").unwrap();
    assert!(debian11.deprecated);
    let desc = module.descriptor();
    assert_eq!(
        (desc.kind.as_str(), desc.display_name.as_str()),
        ("mock", "Simulated cloud")
    );
    assert!(desc.capabilities.compute && desc.capabilities.image_reset);
    assert_eq!(count_calls(&rig.cloud, "GET", "/catalog"), 1);
}

#[tokio::test(start_paused = true)]
async fn create_observe_act_destroy() {
    let rig = rig();
    let compute = rig.api.compute().unwrap();
    let started = tokio::time::Instant::now();
    let server = compute
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap();
    // Boot takes three times the latency (150 ms by default), in virtual time.
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(server.status, ServerStatus::Running);
    assert_eq!(server.ipv4.as_deref(), Some("198.51.100.1"));
    assert_eq!(server.ipv6.as_deref(), Some("2001:db8::1"));
    let id = server.id.clone();
    assert_eq!(id, "sv-1");

    assert_eq!(compute.get_server(&id).await.unwrap(), Some(server.clone()));
    let listed = compute.list_servers(INSTALL).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        vec!["sv-1"]
    );
    assert!(
        compute
            .list_servers("another-install")
            .await
            .unwrap()
            .is_empty()
    );

    let status = |s: Option<legion::providers::ObservedServer>| s.map(|s| s.status);
    compute
        .stop_server(&id, StopMode::Graceful, "node/web-1")
        .await
        .unwrap();
    assert_eq!(
        status(compute.get_server(&id).await.unwrap()),
        Some(ServerStatus::Off)
    );
    compute.start_server(&id, "node/web-1").await.unwrap();
    assert_eq!(
        status(compute.get_server(&id).await.unwrap()),
        Some(ServerStatus::Running)
    );
    compute.reboot_server(&id, "node/web-1").await.unwrap();
    assert_eq!(
        status(compute.get_server(&id).await.unwrap()),
        Some(ServerStatus::Running)
    );

    compute
        .stop_server(&id, StopMode::Hard, "node/web-1")
        .await
        .unwrap();
    let refused = compute.reboot_server(&id, "node/web-1").await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidInput);
    assert!(refused.message.contains("server is off"), "{refused}");

    compute
        .reset_image(&id, "ubuntu-24.04", "node/web-1")
        .await
        .unwrap();
    let after = compute.get_server(&id).await.unwrap().unwrap();
    assert_eq!(
        (after.status, after.image.as_deref()),
        (ServerStatus::Running, Some("ubuntu-24.04"))
    );
    assert_eq!(after.ipv4, server.ipv4, "a reset keeps the address");

    compute.destroy_server(&id, "node/web-1").await.unwrap();
    assert_eq!(compute.get_server(&id).await.unwrap(), None);
    compute.destroy_server(&id, "node/web-1").await.unwrap();
    let missing = compute.start_server(&id, "node/web-1").await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);

    assert_eq!(
        count_calls(&rig.cloud, "POST", "/servers/sv-1/actions/poweron"),
        2
    );
    assert_eq!(
        count_calls(&rig.cloud, "POST", "/servers/sv-1/actions/shutdown"),
        1
    );
    assert_eq!(
        count_calls(&rig.cloud, "POST", "/servers/sv-1/actions/rebuild"),
        1
    );
    assert_eq!(count_calls(&rig.cloud, "DELETE", "/servers/sv-1"), 2);
    // Request bodies (user data) never reach the operation log or the call list.
    let log = rig.lane.oplog().recent(1000, None);
    assert!(!log.is_empty());
    assert!(log.iter().all(|e| !e.message.contains("hunter2")));
    assert!(
        log.iter()
            .all(|e| e.resource.as_deref() == Some("node/web-1"))
    );
    assert!(
        rig.cloud
            .calls()
            .iter()
            .all(|(_, p)| !p.contains("hunter2"))
    );
}

#[tokio::test(start_paused = true)]
async fn lost_create_response_is_recovered_without_a_duplicate() {
    let rig = rig();
    rig.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    let server = rig
        .api
        .compute()
        .unwrap()
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap();
    assert_eq!(server.name, "web-1");
    assert_eq!(server.node_uid(), Some("uid-web-1"));
    assert_eq!(rig.cloud.create_count(), 1);
    assert_eq!(rig.cloud.servers().len(), 1);
    assert_eq!(count_calls(&rig.cloud, "POST", "/servers"), 1);
    assert_eq!(outcomes(&rig.lane), vec![WriteOutcome::Recovered]);
}

#[tokio::test(start_paused = true)]
async fn lost_delete_response_is_recovered() {
    let rig = rig();
    let compute = rig.api.compute().unwrap();
    let id = compute
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap()
        .id;
    rig.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    compute.destroy_server(&id, "node/web-1").await.unwrap();
    assert!(rig.cloud.servers().is_empty());
    assert_eq!(rig.cloud.create_count(), 1);
    assert_eq!(
        count_calls(&rig.cloud, "DELETE", &format!("/servers/{id}")),
        1
    );
    assert_eq!(
        outcomes(&rig.lane),
        vec![WriteOutcome::Ok, WriteOutcome::Recovered]
    );
}

#[tokio::test(start_paused = true)]
async fn lost_key_response_is_recovered_and_the_key_is_reused() {
    let rig = rig();
    let keys = rig.api.ssh_keys().unwrap();
    let pk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxlZ2lvbg legion";
    rig.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    let id = keys
        .ensure_key("legion-managed", pk, "provider/mock")
        .await
        .unwrap();
    let stored = rig.cloud.keys();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].id.as_str(), stored[0].name.as_str()),
        (id.as_str(), "legion-managed")
    );
    assert_eq!(outcomes(&rig.lane), vec![WriteOutcome::Recovered]);

    // Found by name and public key (a different comment is the same key): no second write.
    let again = keys
        .ensure_key(
            "legion-managed",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxlZ2lvbg",
            "provider/mock",
        )
        .await
        .unwrap();
    assert_eq!(again, id);
    assert_eq!(count_calls(&rig.cloud, "POST", "/ssh_keys"), 1);

    let clash = keys
        .ensure_key("legion-managed", "ssh-ed25519 AAAAother", "provider/mock")
        .await
        .unwrap_err();
    assert_eq!(clash.kind, ErrorKind::Conflict);
    assert!(clash.message.contains("different public key"), "{clash}");

    keys.delete_key(&id, "provider/mock").await.unwrap();
    keys.delete_key(&id, "provider/mock").await.unwrap();
    assert!(rig.cloud.keys().is_empty());
}

#[tokio::test(start_paused = true)]
async fn lost_firewall_rules_response_is_recovered() {
    let rig = rig();
    let fwapi = rig.api.firewall().unwrap();
    let labels = BTreeMap::from([(LABEL_INSTALL.to_string(), INSTALL.to_string())]);
    let fw = fwapi
        .create_firewall("legion-prod", &labels, &[rule("22")], "firewall/prod")
        .await
        .unwrap();
    rig.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    let rules = vec![rule("22"), rule("443")];
    fwapi
        .set_rules(&fw.id, &rules, "firewall/prod")
        .await
        .unwrap();
    let all = rig.cloud.firewalls();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].rules, rules);
    assert_eq!(
        count_calls(&rig.cloud, "PUT", &format!("/firewalls/{}/rules", fw.id)),
        1
    );
    assert_eq!(
        outcomes(&rig.lane),
        vec![WriteOutcome::Ok, WriteOutcome::Recovered]
    );
}

#[tokio::test(start_paused = true)]
async fn ambiguous_failure_that_was_not_applied_is_not_pretended() {
    let rig = rig();
    // A timeout that never reached the cloud: the read-back finds nothing, so the
    // ambiguous error stands.
    rig.cloud.fail_next_writes(1, ErrorKind::Timeout);
    let err = rig
        .api
        .compute()
        .unwrap()
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(rig.cloud.create_count(), 0);
    assert_eq!(outcomes(&rig.lane), vec![WriteOutcome::Failed]);
}

#[tokio::test(start_paused = true)]
async fn definite_failure_returns_the_error_and_creates_nothing() {
    let rig = rig();
    rig.cloud.fail_next_writes(1, ErrorKind::Other);
    let err = rig
        .api
        .compute()
        .unwrap()
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Other);
    assert_eq!(err.message, "simulated failure");
    assert_eq!(rig.cloud.create_count(), 0);
    assert!(rig.cloud.servers().is_empty());
    assert_eq!(outcomes(&rig.lane), vec![WriteOutcome::Failed]);
    // Only one request: a definite failure is never followed by a read-back.
    assert_eq!(rig.cloud.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn names_are_unique_per_kind() {
    let rig = rig();
    let compute = rig.api.compute().unwrap();
    compute
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap();
    let err = compute
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(err.code.as_deref(), Some("uniqueness_error"));
    assert_eq!(rig.cloud.create_count(), 1);

    let dns = rig.api.dns().unwrap();
    dns.create_zone("example.com", "zone/example.com")
        .await
        .unwrap();
    let err = dns
        .create_zone("example.com", "zone/example.com")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(rig.cloud.zones().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_new_connect_on_the_same_home_finds_the_servers() {
    let home = tempfile::tempdir().unwrap();
    let module = MockModule::default();
    let (api, _lane) = connect_module(&module, home.path(), Credentials::new());
    let server = api
        .compute()
        .unwrap()
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap();
    api.flush().await;
    let saved = std::fs::read_to_string(home.path().join(FILE_NAME)).unwrap();
    assert!(saved.contains("web-1"), "flush wrote the world");
    drop(api);

    let (again, _lane) = connect_module(&MockModule::default(), home.path(), Credentials::new());
    let compute = again.compute().unwrap();
    let listed = compute.list_servers(INSTALL).await.unwrap();
    assert_eq!(listed, vec![server]);
    // Ids keep counting from where the previous engine stopped.
    let next = compute
        .create_server(&spec("web-2"), "node/web-2")
        .await
        .unwrap();
    assert_eq!(next.id, "sv-2");
}

async fn fault_sequence(seed: &str) -> Vec<bool> {
    let rig = rig_with(creds(&[("seed", seed), ("error_rate", "0.3")]));
    let compute = rig.api.compute().expect("compute surface");
    let mut out = Vec::new();
    for i in 0..30 {
        let name = format!("n-{i}");
        out.push(compute.create_server(&spec(&name), "node/n").await.is_ok());
        out.push(compute.catalog().await.is_ok());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_faults() {
    let first = fault_sequence("7").await;
    let second = fault_sequence("7").await;
    assert_eq!(first, second);
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");
    let failures = first.iter().filter(|ok| !**ok).count();
    assert!(
        (5..=35).contains(&failures),
        "about 30% of 60 calls fail, got {failures}"
    );
    assert_ne!(
        fault_sequence("8").await,
        first,
        "the seed decides the faults"
    );
}

#[tokio::test(start_paused = true)]
async fn dns_firewall_and_domain_round_trip() {
    let rig = rig();
    let dns = rig.api.dns().unwrap();
    let zone = dns
        .create_zone("example.com", "zone/example.com")
        .await
        .unwrap();
    assert_eq!(zone.nameservers, vec!["ns1.sim.invalid", "ns2.sim.invalid"]);
    let www = RrSet {
        name: "www".into(),
        rtype: RecordType::A,
        ttl: 300,
        values: vec!["198.51.100.1".into()],
    };
    rig.cloud.fail_next_writes(1, ErrorKind::ResponseLost);
    dns.set_rrset(&zone.id, &www, "zone/example.com")
        .await
        .unwrap();
    let mut replaced = www.clone();
    replaced.values.push("198.51.100.2".into());
    dns.set_rrset(&zone.id, &replaced, "zone/example.com")
        .await
        .unwrap();
    let seen = dns.get_zone("example.com").await.unwrap().unwrap();
    assert_eq!(seen.rrsets, vec![replaced]);
    dns.delete_rrset(&zone.id, "www", RecordType::A, "zone/example.com")
        .await
        .unwrap();
    dns.delete_rrset(&zone.id, "www", RecordType::A, "zone/example.com")
        .await
        .unwrap();
    assert!(
        dns.get_zone("example.com")
            .await
            .unwrap()
            .unwrap()
            .rrsets
            .is_empty()
    );
    dns.delete_zone(&zone.id, "zone/example.com").await.unwrap();
    dns.delete_zone(&zone.id, "zone/example.com").await.unwrap();
    assert!(dns.list_zones().await.unwrap().is_empty());

    let compute = rig.api.compute().unwrap();
    let server = compute
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap();
    let fwapi = rig.api.firewall().unwrap();
    let labels = BTreeMap::from([(LABEL_INSTALL.to_string(), INSTALL.to_string())]);
    let fw = fwapi
        .create_firewall("legion", &labels, &[rule("22")], "firewall/x")
        .await
        .unwrap();
    let ids = vec![server.id.clone()];
    fwapi.attach(&fw.id, &ids, "firewall/x").await.unwrap();
    assert_eq!(
        fwapi.list_firewalls(INSTALL).await.unwrap()[0].applied_to,
        ids
    );
    assert!(fwapi.list_firewalls("other").await.unwrap().is_empty());
    fwapi.detach(&fw.id, &ids, "firewall/x").await.unwrap();
    assert!(rig.cloud.firewalls()[0].applied_to.is_empty());
    fwapi.delete_firewall(&fw.id, "firewall/x").await.unwrap();
    assert!(rig.cloud.firewalls().is_empty());

    let domains = rig.api.domains().unwrap();
    let d = domains.get_domain("example.com").await.unwrap().unwrap();
    assert_eq!(d.nameservers, vec!["registrar.sim.invalid"]);
    let ns: Vec<String> = zone.nameservers.clone();
    domains
        .set_nameservers("example.com", &ns, "domain/example.com")
        .await
        .unwrap();
    let d = domains.get_domain("example.com").await.unwrap().unwrap();
    assert_eq!(d.nameservers, ns);
    assert!(outcomes(&rig.lane).contains(&WriteOutcome::Recovered));
}

#[tokio::test(start_paused = true)]
async fn agent_follows_the_server_and_injected_faults() {
    let rig = rig();
    let server = rig
        .api
        .compute()
        .unwrap()
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap();
    let agent = rig.api.node_agent().unwrap();
    let node = NodeTarget {
        name: "web-1".into(),
        uid: "uid-web-1".into(),
        server_id: server.id.clone(),
        address: server.ipv4.clone(),
    };
    let config = NodeConfig {
        cluster: "prod".into(),
        role: "worker".into(),
        peers: vec![],
    };
    agent.wait_reachable(&node).await.unwrap();
    assert_eq!(agent.health(&node).await, HealthReading::Healthy);

    assert!(rig.cloud.stop_out_of_band(&server.id));
    assert_eq!(
        agent.health(&node).await,
        HealthReading::Unreachable("server is off".into())
    );
    let err = agent.wait_reachable(&node).await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    assert!(agent.configure(&node, &config).await.is_err());

    rig.api
        .compute()
        .unwrap()
        .start_server(&server.id, "node/web-1")
        .await
        .unwrap();
    rig.cloud.fail_phase(&server.id, "configure", 1);
    assert_eq!(
        agent
            .configure(&node, &config)
            .await
            .map_err(|e| e.to_string()),
        Err("simulated failure in configure".into())
    );
    agent.configure(&node, &config).await.unwrap();
    agent.readiness(&node).await.unwrap();

    rig.cloud
        .set_health(&server.id, HealthReading::Degraded("disk full".into()));
    assert_eq!(
        agent.health(&node).await,
        HealthReading::Degraded("disk full".into())
    );
    rig.cloud.clear_health(&server.id);
    assert!(rig.cloud.delete_out_of_band(&server.id));
    assert_eq!(
        agent.health(&node).await,
        HealthReading::Unreachable("server not found".into())
    );
}

#[tokio::test]
async fn changes_are_saved_in_the_background() {
    let home = tempfile::tempdir().unwrap();
    let (api, _lane) = connect_module(
        &MockModule::default(),
        home.path(),
        creds(&[("latency_ms", "0")]),
    );
    api.compute()
        .unwrap()
        .create_server(&spec("web-1"), "node/web-1")
        .await
        .unwrap();
    // No flush: the debounced saver writes within ~250 ms. Wait for it, bounded.
    let path = home.path().join(FILE_NAME);
    let mut saved = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if std::fs::read_to_string(&path).is_ok_and(|s| s.contains("web-1")) {
            saved = true;
            break;
        }
    }
    assert!(saved, "the background saver wrote the new server");
}
