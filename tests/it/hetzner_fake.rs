//! Tests of the fake Hetzner Cloud API itself, over raw HTTP: auth, catalog, pagination,
//! label selectors, uniqueness, the action lifecycle, DNS, rate-limit headers and each
//! injected fault. Kept quick: actions finish after 50 ms here.

#![allow(clippy::unwrap_used)]

use legion_testkit::hetzner as hetzner_fake;

use std::time::{Duration, Instant};

use hetzner_fake::{FakeApplied, FaultKind, FaultRule, HetznerFake};
use serde_json::{Value, json};

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICRDOM2V3aX04UsRUAycWweA70X5aH/0dsVDV7rQPOjH legion@test";
const ED25519_MD5: &str = "1d:0c:36:97:6b:56:91:94:70:e7:44:57:fe:99:35:d4";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC/tLfGHZKtCMByyNVexkane2FPluvIvYVepl2QyvudRt/dftgNxV82oG4WrWt93EqrUXbQgtTDCwiupwzM/hqs59girq1+3VK5lta6uaRvF6TX0m6/Hqza9AbvPPhJtTyEkaRVgxsucN/+ZjKdkEPOvPBA5K83/OEDFHlpCZe5MQ== other";
const RSA_MD5: &str = "7e:7e:ef:f4:ee:b9:69:c9:38:91:53:4e:64:64:e6:d8";

struct Api {
    fake: HetznerFake,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn header(&self, name: &str) -> u64 {
        self.headers[name].to_str().unwrap().parse().unwrap()
    }
}

impl Api {
    async fn new() -> Self {
        let fake = HetznerFake::start_async().await;
        fake.set_action_duration(Duration::from_millis(50));
        Self {
            fake,
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Result<Reply, reqwest::Error> {
        let url = format!("{}{}", self.fake.base_url(), path);
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let token = self.fake.token();
        self.send(method, path, body, Some(&token)).await.unwrap()
    }

    async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(body)).await
    }

    async fn wait_action(&self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = self.get(&format!("/actions/{id}")).await;
            assert_eq!(r.status, 200);
            if r.body["action"]["status"] != "running" {
                return r.body["action"].clone();
            }
            assert!(Instant::now() < deadline, "action {id} never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create_server(&self, name: &str, extra: Value) -> Reply {
        let mut body = json!({ "name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1" });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.post("/servers", body).await
    }

    fn names(body: &Value, key: &str) -> Vec<String> {
        body[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn md5_and_fingerprints_match_known_values() {
    let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(hetzner_fake::md5(b"")),
        "d41d8cd98f00b204e9800998ecf8427e"
    );
    assert_eq!(
        hex(hetzner_fake::md5(b"abc")),
        "900150983cd24fb0d6963f7d28e17f72"
    );
    assert_eq!(
        hex(hetzner_fake::md5(
            b"The quick brown fox jumps over the lazy dog"
        )),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
    // Fingerprints as `ssh-keygen -l -E md5` prints them.
    assert_eq!(hetzner_fake::ssh_fingerprint(ED25519).unwrap(), ED25519_MD5);
    assert_eq!(hetzner_fake::ssh_fingerprint(RSA).unwrap(), RSA_MD5);
    assert!(hetzner_fake::ssh_fingerprint("ssh-rsa notbase64!").is_none());
    assert!(hetzner_fake::ssh_fingerprint("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICRD").is_none());
}

#[test]
fn blocking_start_serves_on_its_own_thread() {
    let fake = HetznerFake::start();
    assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    assert!(fake.base_url().ends_with("/v1"));
    let id = fake.seed_server("seeded", "cx23", "nbg1", &[("env", "prod")]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body: Value = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/servers/{id}", fake.base_url()))
            .bearer_auth(fake.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["server"]["name"], "seeded");
    assert_eq!(body["server"]["status"], "running");
    assert_eq!(body["server"]["location"]["name"], "nbg1");
    assert_eq!(body["server"]["datacenter"]["location"]["name"], "nbg1");
    assert_eq!(fake.request_count("GET", &format!("/v1/servers/{id}")), 1);
}

#[tokio::test]
async fn auth_is_required_and_checked() {
    let api = Api::new().await;
    let none = api.send("GET", "/servers", None, None).await.unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(none.code(), "unauthorized");
    assert!(none.body["error"]["message"].is_string());
    let wrong = api
        .send("GET", "/servers", None, Some("nope"))
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.code(), "unauthorized");
    let ok = api.get("/servers").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["servers"], json!([]));

    api.fake.set_token("rotated");
    assert_eq!(api.get("/servers").await.status, 200);
    let old = api
        .send("GET", "/servers", None, Some(hetzner_fake::TOKEN))
        .await
        .unwrap();
    assert_eq!(old.status, 401);

    assert_eq!(api.get("/nothing_here").await.status, 404);
    let bad_json = api
        .http
        .post(format!("{}/servers", api.fake.base_url()))
        .bearer_auth(api.fake.token())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status().as_u16(), 400);
}

#[tokio::test]
async fn catalog_has_types_prices_images_and_locations() {
    let api = Api::new().await;
    let types = api.get("/server_types").await;
    assert_eq!(types.status, 200);
    let list = types.body["server_types"].as_array().unwrap();
    assert!(list.len() >= 4);
    let cx22 = list.iter().find(|t| t["name"] == "cx22").unwrap();
    assert_eq!(cx22["deprecated"], true);
    assert!(cx22["deprecation"]["unavailable_after"].is_string());
    let cpx = list.iter().find(|t| t["name"] == "cpx22").unwrap();
    let fsn = cpx["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["location"] == "fsn1")
        .unwrap();
    assert!(fsn["price_hourly"]["net"].is_string());
    assert!(fsn["price_hourly"]["gross"].is_string());
    assert!(fsn["price_monthly"]["gross"].is_string());
    let cax = list.iter().find(|t| t["name"] == "cax11").unwrap();
    assert_eq!(cax["architecture"], "arm");
    let ash = cax["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "ash")
        .unwrap();
    assert_eq!(ash["available"], false);

    let by_name = api.get("/server_types?name=ccx13").await;
    assert_eq!(Api::names(&by_name.body, "server_types"), ["ccx13"]);

    let locations = api.get("/locations").await;
    assert_eq!(
        Api::names(&locations.body, "locations"),
        ["fsn1", "nbg1", "hel1", "ash"]
    );
    assert_eq!(locations.body["locations"][3]["network_zone"], "us-east");

    let images = api.get("/images?type=system&architecture=arm").await;
    let arm = images.body["images"].as_array().unwrap();
    assert!(!arm.is_empty());
    assert!(arm.iter().all(|i| i["architecture"] == "arm"));
    let named = api.get("/images?name=ubuntu-24.04").await;
    assert_eq!(named.body["images"].as_array().unwrap().len(), 2);
    let hidden = api.get("/images?name=ubuntu-20.04").await;
    assert_eq!(hidden.body["images"], json!([]));
    let deprecated = api
        .get("/images?name=ubuntu-20.04&include_deprecated=true")
        .await;
    assert!(deprecated.body["images"][0]["deprecated"].is_string());
    let available = api.get("/images?type=system&status=available").await;
    assert_eq!(available.body["images"].as_array().unwrap().len(), 4);
    let creating = api.get("/images?status=creating").await;
    assert_eq!(creating.body["images"], json!([]));
    let apps = api.get("/images?type=app").await;
    assert_eq!(Api::names(&apps.body, "images"), ["docker-ce"]);
}

#[tokio::test]
async fn server_create_validates_and_enforces_uniqueness() {
    let api = Api::new().await;
    let created = api
        .create_server("web-1", json!({ "labels": { "role": "web" } }))
        .await;
    assert_eq!(created.status, 201);
    let server = &created.body["server"];
    assert_eq!(server["status"], "initializing");
    assert_eq!(server["server_type"]["name"], "cx23");
    assert_eq!(server["location"]["name"], "fsn1");
    assert_eq!(server["image"]["name"], "ubuntu-24.04");
    assert_eq!(server["labels"]["role"], "web");
    assert!(server["public_net"]["ipv4"]["ip"].is_string());
    assert!(server["public_net"]["ipv6"]["ip"].is_string());
    assert!(server["created"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(created.body["action"]["command"], "create_server");
    assert_eq!(created.body["action"]["status"], "running");
    assert_eq!(created.body["next_actions"][0]["command"], "start_server");
    assert!(created.body["root_password"].is_string());

    let dup = api.create_server("web-1", json!({})).await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.code(), "uniqueness_error");
    assert_eq!(dup.body["error"]["details"]["fields"][0]["name"], "name");

    for (field, extra) in [
        ("server_type", json!({ "server_type": "cx9000" })),
        ("location", json!({ "location": "mars1" })),
        ("image", json!({ "image": "templeos" })),
        ("name", json!({ "name": "not a hostname" })),
    ] {
        let r = api.create_server("web-2", extra).await;
        assert_eq!(r.status, 422, "{field}");
        assert_eq!(r.code(), "invalid_input");
        assert_eq!(r.body["error"]["details"]["fields"][0]["name"], field);
    }

    let unavailable = api
        .create_server(
            "arm-1",
            json!({ "server_type": "cax11", "location": "ash" }),
        )
        .await;
    assert_eq!(unavailable.status, 412);
    assert_eq!(unavailable.code(), "resource_unavailable");
    let deprecated = api
        .create_server("old-1", json!({ "server_type": "cx22" }))
        .await;
    assert_eq!(deprecated.status, 412);

    // Image names resolve per architecture.
    let arm = api
        .create_server(
            "arm-2",
            json!({ "server_type": "cax11", "location": "hel1", "ssh_keys": [] }),
        )
        .await;
    assert_eq!(arm.status, 201);
    assert_eq!(arm.body["server"]["image"]["architecture"], "arm");

    // SSH keys by name; then no root password.
    api.fake.seed_ssh_key("ops", ED25519);
    let keyed = api
        .create_server("keyed", json!({ "ssh_keys": ["ops"] }))
        .await;
    assert_eq!(keyed.status, 201);
    assert!(keyed.body["root_password"].is_null());
    let missing_key = api
        .create_server("keyed-2", json!({ "ssh_keys": ["nobody"] }))
        .await;
    assert_eq!(missing_key.status, 422);

    assert_eq!(api.fake.servers().len(), 3);
    assert_eq!(api.fake.request_count("POST", "/servers"), 11);
}

#[tokio::test]
async fn server_lifecycle_follows_actions_and_locks() {
    let api = Api::new().await;
    // Long actions, advanced explicitly: nothing here depends on scheduling.
    api.fake.set_action_duration(Duration::from_secs(30));
    let created = api.create_server("life", json!({})).await;
    let id = created.body["server"]["id"].as_u64().unwrap();
    let create_action = created.body["action"]["id"].as_u64().unwrap();
    let start_action = created.body["next_actions"][0]["id"].as_u64().unwrap();

    // Locked while creating.
    let early = api
        .post(&format!("/servers/{id}/actions/poweroff"), json!({}))
        .await;
    assert_eq!(early.status, 423);
    assert_eq!(early.code(), "locked");

    let running = api.get(&format!("/actions/{create_action}")).await;
    assert_eq!(running.body["action"]["status"], "running");
    assert!(running.body["action"]["finished"].is_null());
    api.fake.finish_all_actions();
    let done = api.wait_action(create_action).await;
    assert_eq!(done["status"], "success");
    assert_eq!(done["progress"], 100);
    assert!(done["finished"].is_string());
    assert_eq!(done["resources"][0], json!({ "id": id, "type": "server" }));
    api.wait_action(start_action).await;
    assert_eq!(
        api.get(&format!("/servers/{id}")).await.body["server"]["status"],
        "running"
    );

    let off = api
        .post(&format!("/servers/{id}/actions/poweroff"), json!({}))
        .await;
    assert_eq!(off.status, 201);
    assert_eq!(off.body["action"]["command"], "stop_server");
    assert_eq!(
        api.get(&format!("/servers/{id}")).await.body["server"]["status"],
        "stopping"
    );
    api.fake.finish_all_actions();
    api.wait_action(off.body["action"]["id"].as_u64().unwrap())
        .await;
    assert_eq!(api.fake.server(id).unwrap().status, "off");

    let on = api
        .post(&format!("/servers/{id}/actions/poweron"), json!({}))
        .await;
    assert_eq!(on.body["action"]["command"], "start_server");
    assert_eq!(api.fake.server(id).unwrap().status, "starting");
    api.fake.finish_all_actions();
    assert_eq!(api.fake.server(id).unwrap().status, "running");

    for (action, command) in [
        ("reboot", "reboot_server"),
        ("reset", "reset_server"),
        ("shutdown", "shutdown_server"),
    ] {
        let r = api
            .post(&format!("/servers/{id}/actions/{action}"), json!({}))
            .await;
        assert_eq!(r.status, 201, "{action}");
        assert_eq!(r.body["action"]["command"], command);
        api.fake.finish_all_actions();
    }
    assert_eq!(api.fake.server(id).unwrap().status, "off");

    let rebuild = api
        .post(
            &format!("/servers/{id}/actions/rebuild"),
            json!({ "image": "debian-12" }),
        )
        .await;
    assert_eq!(rebuild.status, 201);
    assert_eq!(rebuild.body["action"]["command"], "rebuild_server");
    assert!(rebuild.body["root_password"].is_string());
    assert_eq!(api.fake.server(id).unwrap().status, "rebuilding");
    api.fake.finish_all_actions();
    let rebuilt = api.get(&format!("/servers/{id}")).await;
    assert_eq!(rebuilt.body["server"]["status"], "running");
    assert_eq!(rebuilt.body["server"]["image"]["name"], "debian-12");

    let deleted = api.call("DELETE", &format!("/servers/{id}"), None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["action"]["command"], "delete_server");
    assert_eq!(api.get(&format!("/servers/{id}")).await.status, 404);
    assert_eq!(
        api.call("DELETE", &format!("/servers/{id}"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn actions_can_be_listed_and_made_to_fail() {
    let api = Api::new().await;
    let id = api.fake.seed_server("s", "cx23", "fsn1", &[]);
    api.fake
        .fail_next_action("stop_server", "action_failed", "hypervisor said no");
    let off = api
        .post(&format!("/servers/{id}/actions/poweroff"), json!({}))
        .await;
    let action_id = off.body["action"]["id"].as_u64().unwrap();
    assert!(off.body["action"]["progress"].as_u64().unwrap() < 100);
    let failed = api.wait_action(action_id).await;
    assert_eq!(failed["status"], "error");
    assert_eq!(failed["error"]["code"], "action_failed");
    assert_eq!(failed["error"]["message"], "hypervisor said no");
    // Rolled back to where it was.
    assert_eq!(api.fake.server(id).unwrap().status, "running");

    let reboot = api
        .post(&format!("/servers/{id}/actions/reboot"), json!({}))
        .await;
    let reboot_id = reboot.body["action"]["id"].as_u64().unwrap();
    let listed = api
        .get(&format!("/actions?id={action_id}&id={reboot_id}"))
        .await;
    let ids: Vec<u64> = listed.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [action_id, reboot_id]);
    assert_eq!(listed.body["meta"]["pagination"]["total_entries"], 2);
    let nested = api.get(&format!("/servers/{id}/actions/{reboot_id}")).await;
    assert_eq!(nested.body["action"]["command"], "reboot_server");
    assert_eq!(api.get("/actions/1").await.status, 404);
}

#[tokio::test]
async fn pagination_meta_and_limits() {
    let api = Api::new().await;
    for i in 0..7 {
        api.fake
            .seed_server(&format!("node-{i}"), "cx23", "fsn1", &[]);
    }
    let page = api.get("/servers?per_page=3&page=2").await;
    assert_eq!(
        Api::names(&page.body, "servers"),
        ["node-3", "node-4", "node-5"]
    );
    assert_eq!(
        page.body["meta"]["pagination"],
        json!({ "page": 2, "per_page": 3, "previous_page": 1, "next_page": 3, "last_page": 3, "total_entries": 7 })
    );
    let last = api.get("/servers?per_page=3&page=3").await;
    assert_eq!(Api::names(&last.body, "servers"), ["node-6"]);
    assert!(last.body["meta"]["pagination"]["next_page"].is_null());
    let first = api.get("/servers").await;
    assert_eq!(first.body["meta"]["pagination"]["per_page"], 25);
    assert!(first.body["meta"]["pagination"]["previous_page"].is_null());
    let capped = api.get("/servers?per_page=500").await;
    assert_eq!(capped.body["meta"]["pagination"]["per_page"], 50);
    let beyond = api.get("/servers?page=9").await;
    assert_eq!(beyond.body["servers"], json!([]));
    assert_eq!(api.get("/servers?page=zero").await.status, 422);
    let by_name = api.get("/servers?name=node-4").await;
    assert_eq!(Api::names(&by_name.body, "servers"), ["node-4"]);
}

#[tokio::test]
async fn label_selectors_filter_lists() {
    let api = Api::new().await;
    api.fake
        .seed_server("a", "cx23", "fsn1", &[("env", "prod"), ("role", "web")]);
    api.fake
        .seed_server("b", "cx23", "fsn1", &[("env", "prod"), ("role", "db")]);
    api.fake.seed_server("c", "cx23", "fsn1", &[("env", "dev")]);
    api.fake.seed_server("d", "cx23", "fsn1", &[]);
    let cases: [(&str, &[&str]); 10] = [
        ("env=prod", &["a", "b"]),
        ("env==prod", &["a", "b"]),
        ("role", &["a", "b"]),
        ("!role", &["c", "d"]),
        ("env!=prod", &["c", "d"]),
        ("env=prod,role!=db", &["a"]),
        ("env,!role", &["c"]),
        ("env in (dev,prod),role=web", &["a"]),
        ("env notin (prod)", &["c", "d"]),
        ("legion.dev/node=x", &[]),
    ];
    for (selector, expected) in cases {
        let path = format!(
            "/servers?label_selector={}",
            selector
                .replace('=', "%3D")
                .replace(',', "%2C")
                .replace('!', "%21")
                .replace(' ', "+")
                .replace('/', "%2F")
        );
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{selector}");
        assert_eq!(Api::names(&r.body, "servers"), expected, "{selector}");
    }
    let bad = api.get("/servers?label_selector=env%3D%3D%3D").await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.code(), "invalid_input");
}

#[tokio::test]
async fn ssh_keys_have_fingerprints_and_unique_names_and_keys() {
    let api = Api::new().await;
    let created = api
        .post(
            "/ssh_keys",
            json!({ "name": "legion", "public_key": ED25519, "labels": { "legion.dev/install": "i1" } }),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["ssh_key"]["fingerprint"], ED25519_MD5);
    let id = created.body["ssh_key"]["id"].as_u64().unwrap();

    let same_name = api
        .post("/ssh_keys", json!({ "name": "legion", "public_key": RSA }))
        .await;
    assert_eq!(same_name.status, 409);
    assert_eq!(same_name.code(), "uniqueness_error");
    assert_eq!(
        same_name.body["error"]["details"]["fields"][0]["name"],
        "name"
    );
    let same_key = api
        .post(
            "/ssh_keys",
            json!({ "name": "other", "public_key": ED25519 }),
        )
        .await;
    assert_eq!(same_key.status, 409);
    assert_eq!(
        same_key.body["error"]["details"]["fields"][0]["name"],
        "public_key"
    );
    let garbage = api
        .post(
            "/ssh_keys",
            json!({ "name": "g", "public_key": "not a key" }),
        )
        .await;
    assert_eq!(garbage.status, 422);
    api.post("/ssh_keys", json!({ "name": "other", "public_key": RSA }))
        .await;

    let by_fp = api
        .get(&format!("/ssh_keys?fingerprint={ED25519_MD5}"))
        .await;
    assert_eq!(Api::names(&by_fp.body, "ssh_keys"), ["legion"]);
    let by_label = api
        .get("/ssh_keys?label_selector=legion.dev%2Finstall%3Di1")
        .await;
    assert_eq!(Api::names(&by_label.body, "ssh_keys"), ["legion"]);
    let by_name = api.get("/ssh_keys?name=other").await;
    assert_eq!(by_name.body["ssh_keys"][0]["fingerprint"], RSA_MD5);

    let deleted = api.call("DELETE", &format!("/ssh_keys/{id}"), None).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_null());
    assert_eq!(api.get(&format!("/ssh_keys/{id}")).await.status, 404);
    assert_eq!(api.fake.ssh_keys().len(), 1);
}

#[tokio::test]
async fn firewalls_apply_remove_and_refuse_deletion_in_use() {
    let api = Api::new().await;
    let web = api
        .fake
        .seed_server("web", "cx23", "fsn1", &[("role", "web")]);
    let db = api.fake.seed_server("db", "cx23", "fsn1", &[]);
    let rules = json!([
        { "direction": "in", "protocol": "tcp", "port": "22", "source_ips": ["0.0.0.0/0", "::/0"] },
        { "direction": "in", "protocol": "icmp", "source_ips": ["0.0.0.0/0"], "description": "ping" }
    ]);
    let created = api
        .post(
            "/firewalls",
            json!({
                "name": "legion-fw",
                "labels": { "managed-by": "legion" },
                "rules": rules,
                "apply_to": [ { "type": "server", "server": { "id": db } } ]
            }),
        )
        .await;
    assert_eq!(created.status, 201);
    let fw = created.body["firewall"]["id"].as_u64().unwrap();
    assert_eq!(created.body["firewall"]["rules"][1]["port"], Value::Null);
    assert_eq!(
        created.body["firewall"]["rules"][0]["destination_ips"],
        json!([])
    );
    let commands: Vec<&str> = created.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["set_firewall_rules", "apply_firewall"]);
    let server = api.get(&format!("/servers/{db}")).await;
    assert_eq!(
        server.body["server"]["public_net"]["firewalls"],
        json!([{ "id": fw, "status": "applied" }])
    );

    let dup = api.post("/firewalls", json!({ "name": "legion-fw" })).await;
    assert_eq!(dup.status, 409);
    let bad_rule = api
        .post(
            "/firewalls",
            json!({ "name": "bad", "rules": [ { "direction": "in", "protocol": "tcp", "source_ips": ["0.0.0.0/0"] } ] }),
        )
        .await;
    assert_eq!(bad_rule.status, 422);

    let by_selector = api
        .post(
            &format!("/firewalls/{fw}/actions/apply_to_resources"),
            json!({ "apply_to": [ { "type": "label_selector", "label_selector": { "selector": "role=web" } } ] }),
        )
        .await;
    assert_eq!(by_selector.status, 201);
    assert_eq!(by_selector.body["actions"][0]["command"], "apply_firewall");
    let again = api
        .post(
            &format!("/firewalls/{fw}/actions/apply_to_resources"),
            json!({ "apply_to": [ { "type": "server", "server": { "id": db } } ] }),
        )
        .await;
    assert_eq!(again.status, 422);
    assert_eq!(again.code(), "firewall_already_applied");
    let missing = api
        .post(
            &format!("/firewalls/{fw}/actions/apply_to_resources"),
            json!({ "apply_to": [ { "type": "server", "server": { "id": 1 } } ] }),
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "firewall_resource_not_found");

    let got = api.get(&format!("/firewalls/{fw}")).await;
    assert_eq!(
        got.body["firewall"]["applied_to"][1]["applied_to_resources"],
        json!([{ "type": "server", "server": { "id": web } }])
    );
    let listed = api
        .get("/firewalls?label_selector=managed-by%3Dlegion")
        .await;
    assert_eq!(Api::names(&listed.body, "firewalls"), ["legion-fw"]);

    let in_use = api.call("DELETE", &format!("/firewalls/{fw}"), None).await;
    assert_eq!(in_use.status, 422);
    assert_eq!(in_use.code(), "resource_in_use");

    let set = api
        .post(
            &format!("/firewalls/{fw}/actions/set_rules"),
            json!({ "rules": [] }),
        )
        .await;
    assert_eq!(set.status, 201);
    assert_eq!(set.body["actions"][0]["command"], "set_firewall_rules");
    assert_eq!(api.fake.firewalls()[0].rules.len(), 0);

    let removed = api
        .post(
            &format!("/firewalls/{fw}/actions/remove_from_resources"),
            json!({ "remove_from": [
                { "type": "server", "server": { "id": db } },
                { "type": "label_selector", "label_selector": { "selector": "role=web" } }
            ] }),
        )
        .await;
    assert_eq!(removed.status, 201);
    assert_eq!(removed.body["actions"][0]["command"], "remove_firewall");
    assert!(api.fake.firewalls()[0].applied_to.is_empty());
    assert_eq!(
        api.call("DELETE", &format!("/firewalls/{fw}"), None)
            .await
            .status,
        204
    );

    // Deleting a server detaches it.
    let fw2 = api
        .post(
            "/firewalls",
            json!({ "name": "fw2", "apply_to": [ { "type": "server", "server": { "id": web } } ] }),
        )
        .await;
    assert_eq!(
        api.fake.firewalls()[0].applied_to,
        [FakeApplied::Server(web)]
    );
    api.call("DELETE", &format!("/servers/{web}"), None).await;
    let fw2_id = fw2.body["firewall"]["id"].as_u64().unwrap();
    assert_eq!(
        api.call("DELETE", &format!("/firewalls/{fw2_id}"), None)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn dns_zones_and_rrsets() {
    let api = Api::new().await;
    let created = api
        .post(
            "/zones",
            json!({ "name": "example.com", "mode": "primary", "ttl": 3600, "labels": { "legion": "yes" } }),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["action"]["command"], "create_zone");
    assert_eq!(created.body["zone"]["record_count"], 4);
    let zone_id = created.body["zone"]["id"].as_u64().unwrap();
    assert_eq!(
        api.post(
            "/zones",
            json!({ "name": "example.com", "mode": "primary" })
        )
        .await
        .status,
        409
    );
    assert_eq!(
        api.post(
            "/zones",
            json!({ "name": "Example.COM.", "mode": "primary" })
        )
        .await
        .status,
        422
    );
    assert_eq!(
        api.get(&format!("/zones/{zone_id}")).await.body["zone"]["name"],
        "example.com"
    );
    assert_eq!(
        api.get("/zones/example.com").await.body["zone"]["id"],
        zone_id
    );
    let listed = api.get("/zones?label_selector=legion").await;
    assert_eq!(Api::names(&listed.body, "zones"), ["example.com"]);

    let rrset = api
        .post(
            "/zones/example.com/rrsets",
            json!({ "name": "www", "type": "A", "ttl": 300, "records": [ { "value": "198.51.100.1", "comment": "web" } ] }),
        )
        .await;
    assert_eq!(rrset.status, 201);
    assert_eq!(rrset.body["rrset"]["id"], "www/A");
    assert_eq!(rrset.body["rrset"]["zone"], zone_id);
    assert_eq!(rrset.body["action"]["command"], "create_rrset");
    let dup = api
        .post(
            "/zones/example.com/rrsets",
            json!({ "name": "www", "type": "A", "records": [ { "value": "198.51.100.2" } ] }),
        )
        .await;
    assert_eq!(dup.status, 409);
    for body in [
        json!({ "name": "bad", "type": "A", "records": [ { "value": "not-an-ip" } ] }),
        json!({ "name": "txt", "type": "TXT", "records": [ { "value": "unquoted" } ] }),
        json!({ "name": "www.example.com", "type": "A", "records": [ { "value": "198.51.100.1" } ] }),
        json!({ "name": "x", "type": "BOGUS", "records": [ { "value": "1" } ] }),
        json!({ "name": "y", "type": "A", "records": [] }),
    ] {
        let r = api.post("/zones/example.com/rrsets", body.clone()).await;
        assert_eq!(r.status, 422, "{body}");
        assert_eq!(r.code(), "invalid_input");
    }

    let set = api
        .post(
            "/zones/example.com/rrsets/www/A/actions/set_records",
            json!({ "records": [ { "value": "198.51.100.7" }, { "value": "198.51.100.8" } ] }),
        )
        .await;
    assert_eq!(set.status, 201);
    assert_eq!(set.body["action"]["command"], "set_rrset_records");
    let got = api.get("/zones/example.com/rrsets/www/A").await;
    assert_eq!(got.body["rrset"]["records"].as_array().unwrap().len(), 2);
    assert_eq!(got.body["rrset"]["ttl"], 300);

    let added = api
        .post(
            "/zones/example.com/rrsets/api/AAAA/actions/add_records",
            json!({ "records": [ { "value": "2001:db8::1" } ], "ttl": 600 }),
        )
        .await;
    assert_eq!(added.status, 201);
    assert_eq!(api.fake.rrsets("example.com").len(), 4);
    let removed = api
        .post(
            &format!("/zones/{zone_id}/rrsets/api/AAAA/actions/remove_records"),
            json!({ "records": [ { "value": "2001:db8::1" } ] }),
        )
        .await;
    assert_eq!(removed.status, 201);
    assert_eq!(
        api.get("/zones/example.com/rrsets/api/AAAA").await.status,
        404
    );
    let ttl = api
        .post(
            "/zones/example.com/rrsets/www/A/actions/change_ttl",
            json!({ "ttl": null }),
        )
        .await;
    assert_eq!(ttl.status, 201);
    assert!(api.get("/zones/example.com/rrsets/www/A").await.body["rrset"]["ttl"].is_null());

    let a_only = api.get("/zones/example.com/rrsets?type=A&type=NS").await;
    assert_eq!(a_only.body["rrsets"].as_array().unwrap().len(), 2);
    let www = api.get("/zones/example.com/rrsets?name=www").await;
    assert_eq!(www.body["rrsets"][0]["records"][0]["value"], "198.51.100.7");

    let del = api
        .call("DELETE", "/zones/example.com/rrsets/www/A", None)
        .await;
    assert_eq!(del.status, 201);
    assert_eq!(del.body["action"]["command"], "delete_rrset");
    let zone_del = api.call("DELETE", "/zones/example.com", None).await;
    assert_eq!(zone_del.status, 201);
    assert_eq!(zone_del.body["action"]["command"], "delete_zone");
    assert!(api.fake.zones().is_empty());
    assert_eq!(api.get("/zones/example.com").await.status, 404);

    api.post(
        "/zones",
        json!({ "name": "sec.example", "mode": "secondary" }),
    )
    .await;
    let wrong_mode = api
        .post(
            "/zones/sec.example/rrsets",
            json!({ "name": "www", "type": "A", "records": [ { "value": "198.51.100.1" } ] }),
        )
        .await;
    assert_eq!(wrong_mode.status, 422);
    assert_eq!(wrong_mode.code(), "incorrect_zone_mode");
}

#[tokio::test]
async fn rate_limit_headers_on_every_response() {
    let api = Api::new().await;
    let first = api.get("/locations").await;
    assert_eq!(first.header("RateLimit-Limit"), 3600);
    let remaining = first.header("RateLimit-Remaining");
    assert!(remaining < 3600);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(first.header("RateLimit-Reset") >= now);
    let second = api.get("/locations").await;
    assert!(second.header("RateLimit-Remaining") < remaining);
    let unauthorized = api.send("GET", "/servers", None, None).await.unwrap();
    assert!(unauthorized.headers.contains_key("ratelimit-remaining"));

    api.fake.set_rate_remaining(0);
    let limited = api.get("/locations").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.code(), "rate_limit_exceeded");
    assert_eq!(limited.header("RateLimit-Remaining"), 0);
    assert!(limited.header("RateLimit-Reset") > now);
    api.fake.set_rate_limit(3600);
    assert_eq!(api.get("/locations").await.status, 200);
}

#[tokio::test]
async fn injected_server_errors_unavailability_and_rate_limits() {
    let api = Api::new().await;
    api.fake.fail_next(2);
    assert_eq!(api.get("/servers").await.status, 500);
    let second = api.get("/servers").await;
    assert_eq!(second.status, 500);
    assert_eq!(second.code(), "server_error");
    assert_eq!(api.get("/servers").await.status, 200);

    api.fake
        .inject(FaultRule::new(FaultKind::Unavailable, 1).matching("POST", "/v1/servers"));
    assert_eq!(api.get("/servers").await.status, 200);
    let unavailable = api.create_server("x", json!({})).await;
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.code(), "unavailable");
    assert!(api.fake.servers().is_empty(), "a 503 applies nothing");
    assert_eq!(api.create_server("x", json!({})).await.status, 201);

    api.fake.rate_limit_next(1, Duration::from_secs(30));
    let limited = api.get("/servers").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.code(), "rate_limit_exceeded");
    assert_eq!(limited.header("RateLimit-Remaining"), 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(limited.header("RateLimit-Reset") >= now + 29);
    assert_eq!(api.get("/servers").await.status, 200);

    api.fake.inject(FaultRule::new(FaultKind::Timeout, 1));
    assert_eq!(api.get("/servers").await.status, 504);
    api.fake.fail_next(5);
    api.fake.clear_faults();
    assert_eq!(api.get("/servers").await.status, 200);
}

#[tokio::test]
async fn dropped_responses_after_and_before_applying() {
    let api = Api::new().await;
    api.fake.drop_response_next("POST", "/servers", 1);
    let token = api.fake.token();
    let lost = api
        .send(
            "POST",
            "/servers",
            Some(json!({ "name": "ghost", "server_type": "cx23", "image": "ubuntu-24.04" })),
            Some(&token),
        )
        .await;
    assert!(lost.is_err(), "the connection closes without a response");
    let ghost = api.fake.server_by_name("ghost").expect("the write applied");
    // The retry sees the ambiguity resolved by a uniqueness error.
    let retry = api.create_server("ghost", json!({})).await;
    assert_eq!(retry.status, 409);
    let found = api.get("/servers?name=ghost").await;
    assert_eq!(found.body["servers"][0]["id"], ghost.id);

    api.fake
        .inject(FaultRule::new(FaultKind::DropBeforeApply, 1).matching("POST", "/ssh_keys"));
    let lost = api
        .send(
            "POST",
            "/ssh_keys",
            Some(json!({ "name": "k", "public_key": ED25519 })),
            Some(&token),
        )
        .await;
    assert!(lost.is_err());
    assert!(api.fake.ssh_keys().is_empty());
    assert_eq!(api.fake.request_count("POST", "/ssh_keys"), 1);
}

#[tokio::test]
async fn latency_and_forced_locks() {
    let api = Api::new().await;
    api.fake.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    api.get("/locations").await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    api.fake.set_latency(Duration::ZERO);

    let id = api.fake.seed_server("locked", "cx23", "fsn1", &[]);
    api.fake.lock_server(id);
    let r = api
        .post(&format!("/servers/{id}/actions/reboot"), json!({}))
        .await;
    assert_eq!(r.status, 423);
    assert_eq!(r.code(), "locked");
    assert_eq!(
        api.call("DELETE", &format!("/servers/{id}"), None)
            .await
            .status,
        423
    );
    assert_eq!(
        api.get(&format!("/servers/{id}")).await.body["server"]["locked"],
        true
    );
    api.fake.unlock_server(id);
    assert_eq!(
        api.post(&format!("/servers/{id}/actions/reboot"), json!({}))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn out_of_band_changes_and_request_counts() {
    let api = Api::new().await;
    let a = api.fake.seed_server("a", "cx23", "fsn1", &[]);
    let b = api.fake.seed_server("b", "cpx22", "ash", &[]);
    assert!(api.fake.set_server_status(a, "off"));
    assert_eq!(
        api.get(&format!("/servers/{a}")).await.body["server"]["status"],
        "off"
    );
    assert!(api.fake.delete_server_out_of_band(b));
    assert_eq!(api.get(&format!("/servers/{b}")).await.status, 404);
    assert!(!api.fake.delete_server_out_of_band(b));
    assert!(api.fake.set_server_labels(a, &[("k", "v")]));
    assert_eq!(
        Api::names(&api.get("/servers?label_selector=k").await.body, "servers"),
        ["a"]
    );

    assert_eq!(api.fake.request_count("GET", &format!("/servers/{a}")), 1);
    assert_eq!(
        api.fake.request_count("GET", &format!("/v1/servers/{b}")),
        1
    );
    assert_eq!(api.fake.request_count_prefix("GET", "/servers"), 3);
    assert_eq!(api.fake.request_count("GET", "/servers"), 1);
    let log = api.fake.requests();
    assert_eq!(log.last().unwrap().query, "label_selector=k");
    api.fake.clear_requests();
    assert!(api.fake.requests().is_empty());
    assert!(api.fake.actions().is_empty());
}
