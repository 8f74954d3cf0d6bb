//! Tests of the fake OVHcloud API over raw, independently signed HTTP (signature checks,
//! the clock, both error forms, bodies refused on GET, the instance lifecycle, SSH keys,
//! DNS records and refresh, each injected fault), then of the adapter against the faults
//! the contract suite does not reach (503, 504, a request dropped before it applied,
//! latency, a failing build, an ignored shutdown, a clock that moves).

#![allow(clippy::unwrap_used)]

use legion_testkit::ovh as ovh_fake;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use legion::core::oplog::OpLog;
use legion::core::secret::Secret;
use legion::providers::ovh::{
    API_URL_VAR, APPLICATION_KEY_FIELD, APPLICATION_SECRET_FIELD, CONSUMER_KEY_FIELD,
    ENDPOINT_FIELD, OvhModule, POLL_VAR, PROJECT_FIELD,
};
use legion::providers::{
    ConnectCtx, Env, ErrorKind, LABEL_INSTALL, LABEL_NODE, Lane, ProviderApi, ProviderModule,
    ServerSpec, ServerStatus, StopMode,
};
use ovh_fake::{APPLICATION_KEY, APPLICATION_SECRET, CONSUMER_KEY, OvhFake, PROJECT};
use serde_json::{Value, json};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICRDOM2V3aX04UsRUAycWweA70X5aH/0dsVDV7rQPOjH legion";

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    /// The code of either error form.
    fn code(&self) -> &str {
        self.body["errorCode"]
            .as_str()
            .or(self.body["class"].as_str())
            .unwrap_or("")
    }
}

struct Raw {
    fake: OvhFake,
    http: reqwest::Client,
}

impl Raw {
    async fn new() -> Raw {
        let fake = OvhFake::start_async().await;
        fake.set_task_duration(Duration::from_millis(50));
        Raw {
            fake,
            http: reqwest::Client::new(),
        }
    }

    fn p(&self, rest: &str) -> String {
        format!("/cloud/project/{PROJECT}{rest}")
    }

    /// A request signed with `secret` (the right one unless a test says otherwise) at
    /// the fake's time plus `skew`; `body` is sent exactly as given.
    async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        secret: &str,
        skew: i64,
    ) -> Reply {
        let url = format!("{}{}", self.fake.base_url(), path);
        let ts = (self.fake.server_time() + skew).to_string();
        let sig = ovh_fake::expected_signature(
            secret,
            CONSUMER_KEY,
            method,
            &url,
            body.unwrap_or(""),
            &ts,
        );
        let mut req = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &url,
            )
            .header("X-Ovh-Application", APPLICATION_KEY)
            .header("X-Ovh-Consumer", CONSUMER_KEY)
            .header("X-Ovh-Timestamp", ts)
            .header("X-Ovh-Signature", sig);
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let text = body.map(|b| b.to_string());
        self.send_with(method, path, text.as_deref(), APPLICATION_SECRET, 0)
            .await
    }

    async fn wait_status(&self, id: &str, want: &str) {
        let started = Instant::now();
        loop {
            let r = self
                .send("GET", &self.p(&format!("/instance/{id}")), None)
                .await;
            if r.body["status"] == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{id} never {want}: {:?}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create(&self, name: &str) -> Value {
        let r = self
            .send(
                "POST",
                &self.p("/instance"),
                Some(json!({
                    "name": name,
                    "flavorId": ovh_fake::flavor_id("GRA11", "d2-4"),
                    "imageId": ovh_fake::image_id("GRA11", "Ubuntu 24.04"),
                    "region": "GRA11",
                    "monthlyBilling": false,
                })),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    }
}

#[tokio::test]
async fn signatures_are_checked_exactly() {
    let api = Raw::new().await;
    let ok = api.send("GET", &api.p(""), None).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["project_id"], PROJECT);
    let wrong = api
        .send_with("GET", &api.p(""), None, "not-the-secret", 0)
        .await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.code(), "INVALID_SIGNATURE");
    assert_eq!(wrong.body["message"], "Invalid signature");
    assert_eq!(wrong.body["httpCode"], "400 Bad Request");
    // The body is part of the signature: a different body under the same signature fails.
    let url = format!("{}{}", api.fake.base_url(), api.p("/sshkey"));
    let ts = api.fake.server_time().to_string();
    let signed_body = json!({"name": "k", "publicKey": KEY}).to_string();
    let sig = ovh_fake::expected_signature(
        APPLICATION_SECRET,
        CONSUMER_KEY,
        "POST",
        &url,
        &signed_body,
        &ts,
    );
    let tampered = api
        .http
        .post(&url)
        .header("X-Ovh-Application", APPLICATION_KEY)
        .header("X-Ovh-Consumer", CONSUMER_KEY)
        .header("X-Ovh-Timestamp", &ts)
        .header("X-Ovh-Signature", sig)
        .body(json!({"name": "other", "publicKey": KEY}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status().as_u16(), 400);
    assert!(api.fake.ssh_keys().is_empty());
    // Unknown keys are refused in the authentication layer's form.
    let r = api
        .http
        .get(format!("{}{}", api.fake.base_url(), api.p("")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "INVALID_KEY");
    // The signature takes the query string.
    let r = api
        .send("GET", &format!("{}?region=SBG5", api.p("/flavor")), None)
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["region"] == "SBG5")
    );
}

#[tokio::test]
async fn the_clock_is_served_and_enforced() {
    let api = Raw::new().await;
    api.fake.set_clock_skew(-7200);
    let r = api
        .http
        .get(format!("{}/auth/time", api.fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let t: i64 = r.json().await.unwrap();
    assert!((t - api.fake.server_time()).abs() <= 1);
    // Signed at the fake's time: fine. An hour late: refused.
    assert_eq!(api.send("GET", &api.p(""), None).await.status, 200);
    let late = api
        .send_with("GET", &api.p(""), None, APPLICATION_SECRET, 3600)
        .await;
    assert_eq!(late.status, 400);
    assert_eq!(late.code(), "QUERY_TIME_OUT");
}

#[tokio::test]
async fn a_body_on_a_get_or_delete_is_refused() {
    let api = Raw::new().await;
    let r = api.send("GET", &api.p("/instance"), Some(json!({}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "Client::BadRequest");
    let r = api
        .send("DELETE", &api.p("/sshkey/none"), Some(json!({"x": 1})))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn catalog_regions_flavors_images_and_prices() {
    let api = Raw::new().await;
    let regions = api.send("GET", &api.p("/region"), None).await;
    assert_eq!(regions.body, json!(["GRA11", "SBG5", "BHS5"]));
    let flavors = api.send("GET", &api.p("/flavor"), None).await.body;
    let d24_bhs = flavors
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "d2-4" && f["region"] == "BHS5")
        .unwrap();
    assert_eq!(d24_bhs["available"], false);
    assert_eq!(d24_bhs["planCodes"]["hourly"], "d2-4.consumption");
    let images = api
        .send("GET", &format!("{}?osType=linux", api.p("/image")), None)
        .await
        .body;
    assert!(
        images
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] == "linux")
    );
    // The price list is public (no signature needed).
    let prices: Value = api
        .http
        .get(format!(
            "{}/order/catalog/public/cloud?ovhSubsidiary=FR",
            api.fake.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        prices["addons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["planCode"] == "d2-4.consumption")
    );
}

#[tokio::test]
async fn instances_move_through_statuses_and_refuse_busy_actions() {
    let api = Raw::new().await;
    let created = api.create("web-1").await;
    assert_eq!(created["status"], "BUILD");
    assert!(created["flavorId"].is_string() && created["ipAddresses"].is_array());
    let id = created["id"].as_str().unwrap().to_string();
    // Busy while building: Nova's refusal with the task state.
    let busy = api
        .send("POST", &api.p(&format!("/instance/{id}/stop")), None)
        .await;
    assert_eq!(busy.status, 409);
    assert!(
        busy.body["message"]
            .as_str()
            .unwrap()
            .contains("task_state")
    );
    api.wait_status(&id, "ACTIVE").await;
    let detail = api
        .send("GET", &api.p(&format!("/instance/{id}")), None)
        .await;
    assert_eq!(detail.body["flavor"]["name"], "d2-4");
    assert_eq!(detail.body["image"]["name"], "Ubuntu 24.04");
    // Starting an active instance is a definite refusal (vm_state).
    let r = api
        .send("POST", &api.p(&format!("/instance/{id}/start")), None)
        .await;
    assert_eq!(r.status, 409);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("vm_state active")
    );
    let r = api
        .send("POST", &api.p(&format!("/instance/{id}/stop")), None)
        .await;
    assert_eq!(r.status, 200);
    api.wait_status(&id, "SHUTOFF").await;
    api.send("POST", &api.p(&format!("/instance/{id}/start")), None)
        .await;
    api.wait_status(&id, "ACTIVE").await;
    let r = api
        .send(
            "POST",
            &api.p(&format!("/instance/{id}/reboot")),
            Some(json!({"type": "hard"})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(api.fake.server(&id).unwrap().status, "HARD_REBOOT");
    api.wait_status(&id, "ACTIVE").await;
    let debian = ovh_fake::image_id("GRA11", "Debian 12");
    let r = api
        .send(
            "POST",
            &api.p(&format!("/instance/{id}/reinstall")),
            Some(json!({"imageId": debian})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "REBUILD");
    api.wait_status(&id, "ACTIVE").await;
    assert_eq!(api.fake.server(&id).unwrap().image_id, debian);
    let r = api
        .send("DELETE", &api.p(&format!("/instance/{id}")), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(api.fake.server(&id).unwrap().status, "DELETING");
    tokio::time::sleep(Duration::from_millis(80)).await;
    let gone = api
        .send("GET", &api.p(&format!("/instance/{id}")), None)
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.code(), "Client::NotFound");
    // An unknown flavor is refused in OVHcloud's words.
    let r = api
        .send(
            "POST",
            &api.p("/instance"),
            Some(json!({"name": "x", "flavorId": "nope", "imageId": "i", "region": "GRA11"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("flavorId"));
}

#[tokio::test]
async fn ssh_keys_use_ovh_field_names() {
    let api = Raw::new().await;
    let r = api
        .send(
            "POST",
            &api.p("/sshkey"),
            Some(json!({"name": "legion-i1", "publicKey": KEY})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["publicKey"], KEY);
    let id = r.body["id"].as_str().unwrap().to_string();
    let dup = api
        .send(
            "POST",
            &api.p("/sshkey"),
            Some(json!({"name": "legion-i1", "publicKey": KEY})),
        )
        .await;
    assert_eq!(dup.status, 409);
    let list = api.send("GET", &api.p("/sshkey"), None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(
        api.send("DELETE", &api.p(&format!("/sshkey/{id}")), None)
            .await
            .status,
        200
    );
    assert_eq!(
        api.send("DELETE", &api.p(&format!("/sshkey/{id}")), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn dns_records_change_and_wait_for_a_refresh() {
    let api = Raw::new().await;
    api.fake.seed_zone("example.net");
    let zones = api.send("GET", "/domain/zone", None).await;
    assert_eq!(zones.body, json!(["example.net"]));
    let r = api
        .send(
            "POST",
            "/domain/zone/example.net/record",
            Some(json!({"fieldType": "A", "subDomain": "web", "target": "192.0.2.1", "ttl": 300})),
        )
        .await;
    assert_eq!(r.status, 200);
    let id = r.body["id"].as_u64().unwrap();
    assert_eq!(api.fake.zone("example.net").unwrap().pending_changes, 1);
    let ids = api
        .send(
            "GET",
            "/domain/zone/example.net/record?fieldType=A&subDomain=web",
            None,
        )
        .await;
    assert_eq!(ids.body, json!([id]));
    api.send(
        "PUT",
        &format!("/domain/zone/example.net/record/{id}"),
        Some(json!({"ttl": 600})),
    )
    .await;
    let rec = api
        .send(
            "GET",
            &format!("/domain/zone/example.net/record/{id}"),
            None,
        )
        .await;
    assert_eq!(rec.body["ttl"], 600);
    assert_eq!(rec.body["fieldType"], "A");
    api.send("POST", "/domain/zone/example.net/refresh", None)
        .await;
    let z = api.fake.zone("example.net").unwrap();
    assert_eq!((z.pending_changes, z.refreshes), (0, 1));
    let missing = api.send("GET", "/domain/zone/absent.net", None).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn injected_faults() {
    let api = Raw::new().await;
    for (inject, status) in [
        (
            Box::new(|f: &OvhFake| f.fail_next(1)) as Box<dyn Fn(&OvhFake)>,
            500,
        ),
        (Box::new(|f: &OvhFake| f.unavailable_next(1)), 503),
        (Box::new(|f: &OvhFake| f.timeout_next(1)), 504),
    ] {
        inject(&api.fake);
        let r = api
            .send(
                "POST",
                &api.p("/sshkey"),
                Some(json!({"name": "k", "publicKey": KEY})),
            )
            .await;
        assert_eq!(r.status, status);
        assert!(r.code().starts_with("Server::"), "{:?}", r.body);
        assert!(api.fake.ssh_keys().is_empty(), "applied despite {status}");
    }
    api.fake.rate_limit_next(1, Duration::from_secs(3));
    let r = api.send("GET", &api.p("/region"), None).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "3");
    // Dropped after applying: no answer, but the key exists.
    api.fake.drop_response_next("POST", &api.p("/sshkey"), 1);
    let url = format!("{}{}", api.fake.base_url(), api.p("/sshkey"));
    let body = json!({"name": "after", "publicKey": KEY}).to_string();
    let ts = api.fake.server_time().to_string();
    let sig =
        ovh_fake::expected_signature(APPLICATION_SECRET, CONSUMER_KEY, "POST", &url, &body, &ts);
    let sent = api
        .http
        .post(&url)
        .header("X-Ovh-Application", APPLICATION_KEY)
        .header("X-Ovh-Consumer", CONSUMER_KEY)
        .header("X-Ovh-Timestamp", &ts)
        .header("X-Ovh-Signature", &sig)
        .body(body.clone())
        .send()
        .await;
    assert!(sent.is_err());
    assert_eq!(api.fake.ssh_keys().len(), 1);
    // Dropped before applying: no answer and nothing done.
    api.fake.drop_request_next("DELETE", &api.p("/sshkey/"), 1);
    let key = api.fake.ssh_keys()[0].id.clone();
    let path = api.p(&format!("/sshkey/{key}"));
    let url = format!("{}{}", api.fake.base_url(), path);
    let ts = api.fake.server_time().to_string();
    let sig =
        ovh_fake::expected_signature(APPLICATION_SECRET, CONSUMER_KEY, "DELETE", &url, "", &ts);
    let sent = api
        .http
        .delete(&url)
        .header("X-Ovh-Application", APPLICATION_KEY)
        .header("X-Ovh-Consumer", CONSUMER_KEY)
        .header("X-Ovh-Timestamp", &ts)
        .header("X-Ovh-Signature", &sig)
        .send()
        .await;
    assert!(sent.is_err());
    assert_eq!(api.fake.ssh_keys().len(), 1);
    // Latency on every response.
    api.fake.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    api.send("GET", &api.p("/region"), None).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    api.fake.clear_faults();
    // A forced lock refuses actions with the busy 409 until it clears.
    let id = api.create("locked").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_status(&id, "ACTIVE").await;
    api.fake.lock_server(&id);
    let r = api
        .send("POST", &api.p(&format!("/instance/{id}/stop")), None)
        .await;
    assert_eq!(r.status, 409);
    api.fake.unlock_server(&id);
    let r = api
        .send("POST", &api.p(&format!("/instance/{id}/stop")), None)
        .await;
    assert_eq!(r.status, 200);
    assert!(api.fake.request_count_prefix("POST", &api.p("/instance/")) >= 2);
    assert!(
        api.fake
            .requests()
            .iter()
            .all(|r| r.authorized || r.path.starts_with("/auth"))
    );
}

// ---- the adapter against the faults the contract suite does not reach ----

struct Adapter {
    fake: OvhFake,
    api: Arc<dyn ProviderApi>,
    lane: Arc<Lane>,
    _home: tempfile::TempDir,
}

impl Adapter {
    fn new() -> Adapter {
        let fake = OvhFake::start();
        fake.set_task_duration(Duration::from_millis(30));
        let home = tempfile::tempdir().unwrap();
        let lane = Arc::new(Lane::detached("ovh", "OVHcloud", 4, OpLog::new(1000)));
        let credentials = [
            (ENDPOINT_FIELD, "ovh-eu"),
            (APPLICATION_KEY_FIELD, APPLICATION_KEY),
            (APPLICATION_SECRET_FIELD, APPLICATION_SECRET),
            (CONSUMER_KEY_FIELD, CONSUMER_KEY),
            (PROJECT_FIELD, PROJECT),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Secret::new(v)))
        .collect();
        let api = OvhModule
            .connect(ConnectCtx {
                id: "ovh".into(),
                credentials,
                lane: lane.clone(),
                home: home.path().to_path_buf(),
                env: Env::default()
                    .with(API_URL_VAR, &fake.base_url())
                    .with(POLL_VAR, "5"),
            })
            .unwrap();
        Adapter {
            fake,
            api,
            lane,
            _home: home,
        }
    }

    fn spec(&self, name: &str) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            region: "GRA11".into(),
            offer: "d2-4".into(),
            image: "Ubuntu 24.04".into(),
            ssh_key_id: None,
            labels: BTreeMap::from([
                (LABEL_INSTALL.to_string(), "i1".to_string()),
                (LABEL_NODE.to_string(), format!("uid-{name}")),
            ]),
            user_data: None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_503_and_504_are_provider_faults_and_nothing_is_applied() {
    let a = Adapter::new();
    let compute = a.api.compute().unwrap();
    a.fake.unavailable_next(1);
    let e = compute.create_server(&a.spec("u1"), "t").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().starts_with("OVHcloud: "), "{e}");
    assert!(!e.to_string().contains("HTTP"), "{e}");
    // The timeout is answered to the lookups before the create: make it hit the create.
    a.fake.inject(
        ovh_fake::FaultRule::new(ovh_fake::FaultKind::Timeout, 1)
            .matching("POST", &a.fake.project_path()),
    );
    let e = compute.create_server(&a.spec("u1"), "t").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(a.fake.servers_named("u1").is_empty());
    compute.create_server(&a.spec("u1"), "t").await.unwrap();
    assert_eq!(a.fake.servers_named("u1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_request_dropped_before_applying_is_not_recovered_and_a_retry_creates_one() {
    let a = Adapter::new();
    let compute = a.api.compute().unwrap();
    a.fake
        .drop_request_next("POST", &format!("{}/instance", a.fake.project_path()), 1);
    let e = compute.create_server(&a.spec("d1"), "t").await.unwrap_err();
    assert!(e.is_ambiguous(), "{e:?}");
    assert!(a.fake.servers_named("d1").is_empty());
    let s = compute.create_server(&a.spec("d1"), "t").await.unwrap();
    assert_eq!(s.name, "d1");
    assert_eq!(s.node_uid(), Some("uid-d1"));
    assert_eq!(a.fake.servers_named("d1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_failing_build_and_ignored_shutdown_say_what_happened() {
    let a = Adapter::new();
    let compute = a.api.compute().unwrap();
    a.fake.fail_next_build();
    let e = compute.create_server(&a.spec("f1"), "t").await.unwrap_err();
    assert!(e.message.contains("ERROR"), "{e}");
    let s = compute.create_server(&a.spec("f2"), "t").await.unwrap();
    a.fake.set_ignore_acpi_shutdown(true);
    // Short shutdown limit for the test: the adapter polls until its limit, so bound it.
    let stop = tokio::time::timeout(
        Duration::from_secs(2),
        compute.stop_server(&s.id, StopMode::Graceful, "t"),
    )
    .await;
    // Either the adapter's own limit or the test's bound ends it; the instance is still on.
    if let Ok(result) = stop {
        assert!(result.is_err());
    }
    assert_eq!(a.fake.server(&s.id).unwrap().status, "ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_relearns_the_clock_and_survives_latency() {
    let a = Adapter::new();
    let compute = a.api.compute().unwrap();
    a.fake.set_clock_skew(-900);
    a.api.verify().await.unwrap();
    // The fake's clock jumps: the first request is refused QUERY_TIME_OUT, the adapter
    // asks /auth/time again and the request goes through.
    a.fake.set_clock_skew(1800);
    let before = a.fake.request_count("GET", "/auth/time");
    a.api.verify().await.unwrap();
    assert_eq!(a.fake.request_count("GET", "/auth/time"), before + 1);
    a.fake.set_latency(Duration::from_millis(40));
    let s = compute.create_server(&a.spec("slow"), "t").await.unwrap();
    assert_eq!(s.status, ServerStatus::Running);
    assert_eq!(a.lane.status().health.to_string(), "ok");
    // A wrong secret reads as OVHcloud's words, classified as an authorization failure.
    a.fake.set_application_secret("rotated");
    let e = a.api.verify().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(
        e.to_string(),
        "OVHcloud: Invalid signature [INVALID_SIGNATURE]"
    );
    assert!(!e.to_string().contains(APPLICATION_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_power_actions_in_the_wanted_state_send_nothing() {
    let a = Adapter::new();
    let compute = a.api.compute().unwrap();
    let s = compute.create_server(&a.spec("p1"), "t").await.unwrap();
    let actions = format!("{}/instance/{}/", a.fake.project_path(), s.id);
    compute.start_server(&s.id, "t").await.unwrap();
    assert_eq!(a.fake.request_count_prefix("POST", &actions), 0);
    compute
        .stop_server(&s.id, StopMode::Hard, "t")
        .await
        .unwrap();
    compute
        .stop_server(&s.id, StopMode::Graceful, "t")
        .await
        .unwrap();
    assert_eq!(a.fake.request_count_prefix("POST", &actions), 1, "one stop");
    assert_eq!(a.fake.server(&s.id).unwrap().status, "SHUTOFF");
    // A reinstall keeps the instance and changes its image.
    compute.start_server(&s.id, "t").await.unwrap();
    compute.reset_image(&s.id, "Debian 12", "t").await.unwrap();
    let after = compute.get_server(&s.id).await.unwrap().unwrap();
    assert_eq!(after.image.as_deref(), Some("Debian 12"));
    assert_eq!(after.status, ServerStatus::Running);
    assert_eq!(after.name, "p1");
    assert_eq!(after.offer, "d2-4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_dns_changes_are_refreshed_and_zones_are_not_invented() {
    use legion::providers::{RecordType, RrSet};
    let a = Adapter::new();
    let dns = a.api.dns().unwrap();
    let e = dns.create_zone("nowhere.example", "z").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.to_string().contains("Control Panel"), "{e}");
    a.fake.seed_zone("example.org");
    let zone = dns.get_zone("example.org").await.unwrap().unwrap();
    let txt = RrSet {
        name: "@".into(),
        rtype: RecordType::TXT,
        ttl: 3600,
        values: vec!["v=spf1 -all".into()],
    };
    dns.set_rrset(&zone.id, &txt, "z").await.unwrap();
    let z = a.fake.zone("example.org").unwrap();
    assert_eq!((z.pending_changes, z.refreshes), (0, 1));
    let rec = z.records.iter().find(|r| r.field_type == "TXT").unwrap();
    assert_eq!(rec.target, "\"v=spf1 -all\"");
    assert_eq!(rec.sub_domain, "");
    // The same set again changes nothing and refreshes nothing.
    dns.set_rrset(&zone.id, &txt, "z").await.unwrap();
    assert_eq!(a.fake.zone("example.org").unwrap().refreshes, 1);
    let read = dns.get_zone("example.org").await.unwrap().unwrap();
    assert!(read.rrsets.contains(&txt), "{:?}", read.rrsets);
    dns.delete_rrset(&zone.id, "@", RecordType::TXT, "z")
        .await
        .unwrap();
    let z = a.fake.zone("example.org").unwrap();
    assert_eq!(z.refreshes, 2);
    assert!(!z.records.iter().any(|r| r.field_type == "TXT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_sees_out_of_band_changes_and_ignores_foreign_instances() {
    let a = Adapter::new();
    let compute = a.api.compute().unwrap();
    let foreign = a.fake.seed_server("hand-made", "b2-7", "SBG5");
    let s = compute.create_server(&a.spec("o1"), "t").await.unwrap();
    let listed = compute.list_servers("i1").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].labels.get(LABEL_NODE).map(String::as_str),
        Some("uid-o1")
    );
    // Made outside Legion: seen as it is, with no labels.
    let theirs = compute.get_server(&foreign).await.unwrap().unwrap();
    assert_eq!(theirs.name, "hand-made");
    assert!(theirs.labels.is_empty());
    assert_eq!(theirs.offer, "b2-7");
    // Renamed in the Control Panel: its labels are gone, so it is no longer ours.
    assert!(a.fake.set_server_name(&s.id, "renamed"));
    assert!(compute.list_servers("i1").await.unwrap().is_empty());
    assert!(a.fake.delete_server_out_of_band(&s.id));
    assert_eq!(compute.get_server(&s.id).await.unwrap(), None);
    compute.destroy_server(&s.id, "t").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_looks_an_unknown_image_up_once() {
    let a = Adapter::new();
    let compute = a.api.compute().unwrap();
    let s = compute.create_server(&a.spec("snap"), "t").await.unwrap();
    assert!(a.fake.set_server_image(&s.id, "private-snapshot-1"));
    let flavors = format!("{}/flavor", a.fake.project_path());
    let before = a.fake.request_count("GET", &flavors);
    for _ in 0..3 {
        let listed = compute.list_servers("i1").await.unwrap();
        assert_eq!(listed[0].image.as_deref(), Some("private-snapshot-1"));
        assert_eq!(listed[0].offer, "d2-4");
    }
    assert_eq!(a.fake.request_count("GET", &flavors), before + 1);
}
