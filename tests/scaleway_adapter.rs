//! The Scaleway adapter against its fake, for what the shared contract does not cover:
//! zones other than the default, pagination past one page, a failed power action, a
//! rejected secret key, tags that are not Legion's, and security groups across zones.

#![allow(clippy::unwrap_used)]

#[path = "fakes/scaleway.rs"]
mod scaleway_fake;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use legion::engine::oplog::OpLog;
use legion::engine::secret::Secret;
use legion::providers::scaleway::{
    ACTION_POLL_VAR, API_URL_VAR, PROJECT_FIELD, SECRET_KEY_FIELD, ScalewayModule,
};
use legion::providers::{
    ConnectCtx, Env, ErrorKind, LABEL_INSTALL, LABEL_NODE, Lane, ProviderApi, ProviderModule,
    ServerSpec, ServerStatus,
};
use scaleway_fake::ScalewayFake;

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
