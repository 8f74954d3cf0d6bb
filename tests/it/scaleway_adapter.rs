//! The Scaleway adapter against its fake, for what the shared contract does not cover:
//! zones other than the default, pagination past one page, a failed power action, a
//! rejected secret key, tags that are not Legion's, security groups across zones, and
//! reinstall (a new root volume from the image's snapshot) with its failures.

#![allow(clippy::unwrap_used)]

use legion_testkit::scaleway as scaleway_fake;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use legion::core::oplog::OpLog;
use legion::core::secret::Secret;
use legion::providers::scaleway::{
    ACTION_POLL_VAR, API_URL_VAR, PROJECT_FIELD, SECRET_KEY_FIELD, ScalewayModule,
};
use legion::providers::{
    ConnectCtx, Env, ErrorKind, LABEL_INSTALL, LABEL_NODE, Lane, ProviderApi, ProviderModule,
    ServerSpec, ServerStatus,
};
use scaleway_fake::{FaultKind, FaultRule, ScalewayFake, image_root_snapshot};

struct Subject {
    fake: ScalewayFake,
    api: Arc<dyn ProviderApi>,
    _home: tempfile::TempDir,
}

fn connect(fake: &ScalewayFake, secret: &str) -> Arc<dyn ProviderApi> {
    let home = tempfile::tempdir().unwrap();
    ScalewayModule
        .connect(ConnectCtx {
            id: "scaleway".into(),
            credentials: [
                (SECRET_KEY_FIELD.to_string(), Secret::new(secret)),
                (PROJECT_FIELD.to_string(), Secret::new(fake.project())),
            ]
            .into(),
            lane: Arc::new(Lane::detached("scaleway", "Scaleway", 4, OpLog::new(100))),
            home: home.path().to_path_buf(),
            env: Env::default()
                .with(API_URL_VAR, &fake.base_url())
                .with(ACTION_POLL_VAR, "5"),
        })
        .unwrap()
}

impl Subject {
    async fn new() -> Subject {
        let fake = ScalewayFake::start_async().await;
        fake.set_action_duration(Duration::from_millis(20));
        let api = connect(&fake, &fake.secret_key());
        Subject {
            fake,
            api,
            _home: tempfile::tempdir().unwrap(),
        }
    }
}

fn spec(name: &str, zone: &str, install: &str) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        region: zone.into(),
        offer: "DEV1-S".into(),
        image: "ubuntu_noble".into(),
        ssh_key_id: None,
        labels: BTreeMap::from([
            (LABEL_INSTALL.to_string(), install.to_string()),
            (LABEL_NODE.to_string(), format!("uid-{name}")),
        ]),
        user_data: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_live_in_any_zone_and_are_listed_from_all() {
    let s = Subject::new().await;
    let compute = s.api.compute().unwrap();
    let server = compute
        .create_server(&spec("ams", "nl-ams-1", "i"), "t")
        .await
        .unwrap();
    assert!(server.id.starts_with("nl-ams-1/"), "{}", server.id);
    assert_eq!(server.region, "nl-ams-1");
    assert_eq!(server.status, ServerStatus::Running);
    assert!(server.ipv4.is_some() && server.ipv6.is_some());
    let listed = compute.list_servers("i").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].labels[LABEL_NODE], "uid-ams");
    compute.destroy_server(&server.id, "t").await.unwrap();
    assert!(s.fake.servers().is_empty());
    assert!(s.fake.volumes().is_empty(), "no billed volume left behind");
    let err = compute
        .create_server(&spec("x", "mars-1", "i"), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_still_detaching_are_deleted_once_free() {
    let s = Subject::new().await;
    s.fake.set_volume_detach_delay(Duration::from_millis(150));
    let compute = s.api.compute().unwrap();
    let mut sbs = spec("sbs", "fr-par-1", "i");
    sbs.offer = "PLAY2-NANO".into();
    let server = compute.create_server(&sbs, "t").await.unwrap();
    assert_eq!(s.fake.volumes()[0].volume_type, "sbs_volume");
    compute.destroy_server(&server.id, "t").await.unwrap();
    assert!(s.fake.volumes().is_empty(), "{:?}", s.fake.volumes());
    assert!(
        s.fake
            .request_count_prefix("DELETE", "/block/v1/zones/fr-par-1/volumes/")
            > 1,
        "refused while detaching, then deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_past_one_page_and_ignore_foreign_tags() {
    let s = Subject::new().await;
    for i in 0..130 {
        s.fake.seed_server(
            "fr-par-1",
            &format!("n{i}"),
            "DEV1-S",
            &["legion-install=big", "team:web"],
        );
    }
    s.fake
        .seed_server("fr-par-1", "other", "DEV1-S", &["legion-install=small"]);
    let listed = s.api.compute().unwrap().list_servers("big").await.unwrap();
    assert_eq!(listed.len(), 130);
    assert!(
        listed.iter().all(|o| o.labels.len() == 1),
        "{:?}",
        listed[0].labels
    );
    assert!(
        s.fake
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/fr-par-1/servers") && r.query.contains("page=2")),
        "a second page was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_power_on_is_reported_with_scaleways_detail() {
    let s = Subject::new().await;
    s.fake.fail_next_action("poweron", "kernel panic on boot");
    let err = s
        .api
        .compute()
        .unwrap()
        .create_server(&spec("bad", "fr-par-1", "i"), "t")
        .await
        .unwrap_err();
    assert!(err.message.contains("kernel panic on boot"), "{err}");
    assert_eq!(s.fake.servers().len(), 1, "created, then refused to start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_secret_key_says_so_without_leaking_it() {
    let s = Subject::new().await;
    let api = connect(&s.fake, "wrong-secret-key-123");
    let err = api.verify().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    let text = err.to_string();
    assert!(
        text.starts_with("Scaleway: authentication is denied"),
        "{text}"
    );
    assert!(
        !text.contains("wrong-secret") && !text.contains("HTTP"),
        "{text}"
    );
    assert!(!format!("{err:?}").contains("wrong-secret"));
    s.api.verify().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_are_zonal_and_detach_returns_to_the_default() {
    let s = Subject::new().await;
    let compute = s.api.compute().unwrap();
    let fw = s.api.firewall().unwrap();
    let par = compute
        .create_server(&spec("par", "fr-par-1", "i"), "t")
        .await
        .unwrap();
    let ams = compute
        .create_server(&spec("ams", "nl-ams-1", "i"), "t")
        .await
        .unwrap();
    let labels = BTreeMap::from([(LABEL_INSTALL.to_string(), "i".to_string())]);
    let group = fw
        .create_firewall("legion-fw", &labels, &[], "f")
        .await
        .unwrap();
    assert!(group.id.starts_with("fr-par-1/"));
    let err = fw
        .attach(&group.id, std::slice::from_ref(&ams.id), "f")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("within its zone"), "{err}");
    fw.attach(&group.id, std::slice::from_ref(&par.id), "f")
        .await
        .unwrap();
    let uuid = par.id.rsplit('/').next().unwrap();
    let before = s.fake.server(uuid).unwrap().security_group;
    fw.detach(&group.id, std::slice::from_ref(&par.id), "f")
        .await
        .unwrap();
    let after = s.fake.server(uuid).unwrap().security_group;
    assert_ne!(before, after);
    // Back in the project's default group, which is not Legion's.
    assert!(s.fake.security_groups().iter().all(|g| g.id != after));
    // Detaching again changes nothing.
    fw.detach(&group.id, std::slice::from_ref(&par.id), "f")
        .await
        .unwrap();
    fw.delete_firewall(&group.id, "f").await.unwrap();
    assert!(s.fake.security_groups().is_empty());
}

/// The fake's server of a Legion id.
fn uuid(id: &str) -> &str {
    id.rsplit('/').next().unwrap()
}

/// After a reinstall to `image`: the server is running with exactly one root volume,
/// made from the image's root snapshot, and no other volume exists.
fn assert_reinstalled(fake: &ScalewayFake, server: &str, image: &str, volume_type: &str) {
    let s = fake.server(server).expect("the server is kept");
    assert_eq!(s.state, "running");
    assert_eq!(s.volumes.len(), 1, "{:?}", s.volumes);
    let root = fake.root_volume(server).unwrap();
    assert_eq!(root.volume_type, volume_type);
    assert_eq!(
        root.base_snapshot.as_deref(),
        Some(image_root_snapshot(image, &s.zone, volume_type).as_str()),
        "the root is made from {image}"
    );
    assert_eq!(root.server.as_deref(), Some(server));
    let all = fake.volumes();
    assert_eq!(all.len(), 1, "no root volume left behind: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinstall_replaces_the_root_volume_and_keeps_the_server() {
    let s = Subject::new().await;
    s.fake.set_volume_detach_delay(Duration::from_millis(60));
    let compute = s.api.compute().unwrap();
    let fw = s.api.firewall().unwrap();
    let labels = BTreeMap::from([(LABEL_INSTALL.to_string(), "i".to_string())]);
    let group = fw
        .create_firewall("legion-fw", &labels, &[], "f")
        .await
        .unwrap();
    for (name, offer, volume_type) in [
        ("local", "DEV1-S", "l_ssd"),
        ("block", "PLAY2-NANO", "sbs_volume"),
    ] {
        let mut node = spec(name, "fr-par-1", "i");
        node.offer = offer.into();
        let server = compute.create_server(&node, "t").await.unwrap();
        fw.attach(&group.id, std::slice::from_ref(&server.id), "f")
            .await
            .unwrap();
        let id = uuid(&server.id).to_string();
        let before = s.fake.server(&id).unwrap();
        let old_root = s.fake.root_volume(&id).unwrap();
        compute
            .reset_image(&server.id, "ubuntu_jammy", "t")
            .await
            .unwrap();
        let after = s.fake.server(&id).unwrap();
        assert_eq!(
            (&after.ipv4, &after.ipv6, &after.security_group, &after.tags),
            (
                &before.ipv4,
                &before.ipv6,
                &before.security_group,
                &before.tags
            ),
            "{name}: address, security group and tags kept"
        );
        let new_root = s.fake.root_volume(&id).unwrap();
        assert_ne!(new_root.id, old_root.id);
        assert!(
            s.fake.volumes().iter().all(|v| v.id != old_root.id),
            "old root deleted"
        );
        assert!(new_root.tags.contains(&format!("legion-root-of={id}")));
        if volume_type == "sbs_volume" {
            assert_eq!(
                new_root.size, old_root.size,
                "Block Storage root keeps its size"
            );
            assert_eq!(new_root.perf_iops, old_root.perf_iops);
        }
        let observed = compute.get_server(&server.id).await.unwrap().unwrap();
        assert_eq!(observed.status, ServerStatus::Running);
        assert_eq!(observed.id, server.id);
        assert_reinstalled(&s.fake, &id, "ubuntu_jammy", volume_type);
        compute.destroy_server(&server.id, "t").await.unwrap();
        assert!(
            s.fake.volumes().is_empty(),
            "{name}: the new root went with the server"
        );
    }
    // An image the Marketplace lacks is refused before the server is touched.
    let server = compute
        .create_server(&spec("bad-image", "fr-par-1", "i"), "t")
        .await
        .unwrap();
    let err = compute
        .reset_image(&server.id, "no_such_os", "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("no_such_os"), "{err}");
    assert_eq!(s.fake.server(uuid(&server.id)).unwrap().state, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_mid_reinstall_leaves_one_root_and_the_requested_image() {
    let zone = "/instance/v1/zones/fr-par-1";
    // Each write of the reinstall in turn: applied by Scaleway, its response lost. The
    // power-on is the second action (the first, the power-off, is answered).
    for (method, prefix, after) in [
        ("POST", format!("{zone}/volumes"), 0),
        ("PATCH", format!("{zone}/servers/"), 0),
        ("DELETE", format!("{zone}/volumes/"), 0),
        ("POST", format!("{zone}/servers/"), 1),
    ] {
        let s = Subject::new().await;
        let compute = s.api.compute().unwrap();
        let server = compute
            .create_server(&spec("web", "fr-par-1", "i"), "t")
            .await
            .unwrap();
        let id = uuid(&server.id).to_string();
        s.fake.clear_requests();
        s.fake.inject(
            FaultRule::new(FaultKind::DropAfterApply, 1)
                .matching(method, &prefix)
                .after(after),
        );
        compute
            .reset_image(&server.id, "debian_bookworm", "t")
            .await
            .unwrap_or_else(|e| panic!("{method} {prefix}: {e}"));
        assert_eq!(
            s.fake.pending_faults(),
            0,
            "{method} {prefix}: its response was lost"
        );
        assert_reinstalled(&s.fake, &id, "debian_bookworm", "l_ssd");
        assert_eq!(
            s.fake.request_count("POST", &format!("{zone}/volumes")),
            1,
            "{method} {prefix}: one new root, never a second"
        );
        assert_eq!(
            s.fake
                .request_count("PATCH", &format!("{zone}/servers/{id}")),
            1,
            "{method} {prefix}: one swap"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_reinstall_leaves_the_old_root_and_the_next_one_cleans_up() {
    let s = Subject::new().await;
    let zone = "/instance/v1/zones/fr-par-1";
    let compute = s.api.compute().unwrap();
    let server = compute
        .create_server(&spec("web", "fr-par-1", "i"), "t")
        .await
        .unwrap();
    let id = uuid(&server.id).to_string();
    let old_root = s.fake.root_volume(&id).unwrap();
    // The swap fails (500, not applied) and so does deleting the unused new volume.
    s.fake.inject(
        FaultRule::new(FaultKind::ServerError, 1).matching("PATCH", &format!("{zone}/servers/")),
    );
    s.fake.inject(
        FaultRule::new(FaultKind::DropBeforeApply, 1)
            .matching("DELETE", &format!("{zone}/volumes/")),
    );
    let err = compute
        .reset_image(&server.id, "ubuntu_jammy", "t")
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    assert_eq!(s.fake.pending_faults(), 0, "both faults were hit");
    assert_eq!(
        s.fake.root_volume(&id).unwrap().id,
        old_root.id,
        "the old root stays"
    );
    let leftover: Vec<_> = s
        .fake
        .volumes()
        .into_iter()
        .filter(|v| v.server.is_none())
        .collect();
    assert_eq!(leftover.len(), 1, "the new volume is left, tagged");
    assert!(leftover[0].tags.contains(&format!("legion-root-of={id}")));
    // The next reinstall deletes it first and converges.
    compute
        .reset_image(&server.id, "ubuntu_jammy", "t")
        .await
        .unwrap();
    assert_reinstalled(&s.fake, &id, "ubuntu_jammy", "l_ssd");
    assert!(s.fake.volumes().iter().all(|v| v.id != leftover[0].id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_root_that_cannot_be_deleted_is_named_and_the_server_still_runs() {
    let s = Subject::new().await;
    let zone = "/instance/v1/zones/fr-par-1";
    let compute = s.api.compute().unwrap();
    let server = compute
        .create_server(&spec("web", "fr-par-1", "i"), "t")
        .await
        .unwrap();
    let id = uuid(&server.id).to_string();
    let old_root = s.fake.root_volume(&id).unwrap();
    s.fake.inject(
        FaultRule::new(FaultKind::DropBeforeApply, 1)
            .matching("DELETE", &format!("{zone}/volumes/{}", old_root.id)),
    );
    let err = compute
        .reset_image(&server.id, "ubuntu_jammy", "t")
        .await
        .unwrap_err();
    assert_eq!(s.fake.pending_faults(), 0);
    assert!(
        err.message.contains(&old_root.id) && err.message.contains("Scaleway console"),
        "{err}"
    );
    let after = s.fake.server(&id).unwrap();
    assert_eq!(after.state, "running", "the new root boots anyway");
    let root = s.fake.root_volume(&id).unwrap();
    assert_ne!(root.id, old_root.id);
    assert_eq!(
        root.base_snapshot.as_deref(),
        Some(image_root_snapshot("ubuntu_jammy", "fr-par-1", "l_ssd").as_str())
    );
    let old_now = s.fake.volumes().into_iter().find(|v| v.id == old_root.id);
    assert!(
        old_now.is_some_and(|v| v.server.is_none()),
        "detached, left"
    );
}
