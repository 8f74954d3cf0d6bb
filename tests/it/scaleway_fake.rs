//! Tests of the fake Scaleway API itself, over raw HTTP: the secret key, the product
//! catalog, both pagination styles, tag filters, the server state machine and
//! `transient_state`, volumes (from snapshots, the root swap), images and local images,
//! security groups, IAM keys, DNS records, rate-limit headers
//! and each injected fault. Kept quick: transitions take 50 ms here.

#![allow(clippy::unwrap_used)]

use legion_testkit::scaleway as scaleway_fake;

use std::time::{Duration, Instant};

use scaleway_fake::{PROJECT, ScalewayFake};
use serde_json::{Value, json};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICRDOM2V3aX04UsRUAycWweA70X5aH/0dsVDV7rQPOjH legion@test";
const PAR1: &str = "/instance/v1/zones/fr-par-1";

struct Api {
    fake: ScalewayFake,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }

    fn header(&self, name: &str) -> u64 {
        self.headers[name].to_str().unwrap().parse().unwrap()
    }
}

impl Api {
    async fn new() -> Self {
        let fake = ScalewayFake::start_async().await;
        fake.set_action_duration(Duration::from_millis(50));
        Self {
            fake,
            http: reqwest::Client::new(),
        }
    }

    async fn send_as(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Result<Reply, reqwest::Error> {
        let url = format!("{}{}", self.fake.base_url(), path);
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(key) = key {
            req = req.header("X-Auth-Token", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let key = self.fake.secret_key();
        self.send_as(method, path, body, Some(&key)).await.unwrap()
    }

    async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    async fn create_server(&self, name: &str, tags: &[&str]) -> String {
        let r = self
            .call(
                "POST",
                &format!("{PAR1}/servers"),
                Some(
                    json!({ "name": name, "commercial_type": "DEV1-S", "image": "ubuntu_noble",
                             "project": PROJECT, "tags": tags }),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["server"]["state"], "stopped");
        r.body["server"]["id"].as_str().unwrap().to_string()
    }

    async fn action(&self, id: &str, action: &str) -> Reply {
        self.call(
            "POST",
            &format!("{PAR1}/servers/{id}/action"),
            Some(json!({ "action": action })),
        )
        .await
    }

    async fn state(&self, id: &str) -> String {
        let r = self.get(&format!("{PAR1}/servers/{id}")).await;
        r.body["server"]["state"].as_str().unwrap_or("").to_string()
    }

    async fn wait_state(&self, id: &str, want: &str) {
        let started = Instant::now();
        while self.state(id).await != want {
            assert!(started.elapsed() < Duration::from_secs(3), "never {want}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[test]
fn blocking_start_serves_on_its_own_thread() {
    let fake = ScalewayFake::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}{PAR1}/servers", fake.base_url()))
            .header("X-Auth-Token", fake.secret_key())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    assert_eq!(fake.request_count("GET", &format!("{PAR1}/servers")), 1);
}

#[tokio::test]
async fn the_secret_key_is_required_and_checked() {
    let api = Api::new().await;
    let path = format!("{PAR1}/servers");
    let none = api.send_as("GET", &path, None, None).await.unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(none.kind(), "denied_authentication");
    assert_eq!(none.body["reason"], "invalid_argument");
    let wrong = api.send_as("GET", &path, None, Some("nope")).await.unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body["method"], "api_key");
    assert_eq!(wrong.body["reason"], "not_found");
    assert!(!api.fake.requests()[1].authorized);
    api.fake.set_secret_key("other");
    assert_eq!(
        api.send_as("GET", &path, None, Some("other"))
            .await
            .unwrap()
            .status,
        200
    );
    let unknown_zone = api.get("/instance/v1/zones/xx-yyy-9/servers").await;
    assert_eq!(unknown_zone.kind(), "invalid_arguments");
}

#[tokio::test]
async fn the_catalog_pages_with_x_total_count() {
    let api = Api::new().await;
    let page1 = api
        .get(&format!("{PAR1}/products/servers?page=1&per_page=3"))
        .await;
    let total = page1.header("x-total-count");
    assert!(total > 3, "{total}");
    let types = page1.body["servers"].as_object().unwrap();
    assert_eq!(types.len(), 3);
    let dev1 = api
        .get(&format!("{PAR1}/products/servers?per_page=100"))
        .await;
    let dev1 = &dev1.body["servers"]["DEV1-S"];
    assert_eq!(dev1["ncpus"], 2);
    assert_eq!(dev1["ram"], 2u64 * 1024 * 1024 * 1024);
    assert_eq!(dev1["arch"], "x86_64");
    assert!(dev1["hourly_price"].as_f64().unwrap() > 0.0);
    let avail = api
        .get(&format!("{PAR1}/products/servers/availability"))
        .await;
    assert_eq!(
        avail.body["servers"]["STARDUST1-S"]["availability"],
        "shortage"
    );
    assert_eq!(avail.body["servers"]["DEV1-S"]["availability"], "available");
    // Sold only in some zones.
    let ams2 = api
        .get("/instance/v1/zones/nl-ams-2/products/servers?per_page=100")
        .await;
    assert!(ams2.body["servers"].get("STARDUST1-S").is_none());
    // Marketplace: page_size and total_count; end-of-life images only when asked.
    let images = api.get("/marketplace/v2/images?page_size=2").await;
    assert_eq!(images.body["images"].as_array().unwrap().len(), 2);
    assert_eq!(images.body["total_count"], 3);
    let all = api
        .get("/marketplace/v2/images?include_eol=true&page_size=100")
        .await;
    assert_eq!(all.body["total_count"], 4);
    assert!(
        all.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["label"] == "ubuntu_focal" && i["valid_until"].is_string())
    );
    let bad = api.get(&format!("{PAR1}/servers?per_page=101")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["details"][0]["argument_name"], "per_page");
}

#[tokio::test]
async fn server_creation_validates_in_both_error_forms() {
    let api = Api::new().await;
    let path = format!("{PAR1}/servers");
    let create = |t: &str, image: &str| json!({ "name": "x", "commercial_type": t, "image": image, "project": PROJECT });
    let r = api
        .call("POST", &path, Some(create("XL-99", "ubuntu_noble")))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.kind(), "invalid_request_error");
    assert!(
        r.body["fields"]["commercial_type"][0]
            .as_str()
            .unwrap()
            .contains("XL-99")
    );
    let r = api
        .call("POST", &path, Some(create("DEV1-S", "windows_95")))
        .await;
    assert_eq!(r.kind(), "invalid_arguments");
    assert_eq!(r.body["details"][0]["argument_name"], "image");
    let r = api
        .call("POST", &path, Some(create("STARDUST1-S", "ubuntu_noble")))
        .await;
    assert_eq!(r.status, 412);
    assert_eq!(r.kind(), "out_of_stock");
    let r = api
        .call("POST", &path, Some(create("GP1-XS", "ubuntu_noble")))
        .await;
    assert_eq!(r.kind(), "invalid_request_error");
    let r = api
        .call(
            "POST",
            &path,
            Some(json!({ "name": "x", "commercial_type": "DEV1-S", "image": "ubuntu_noble" })),
        )
        .await;
    assert_eq!(r.body["details"][0]["reason"], "required");
    assert!(api.fake.servers().is_empty());
    let missing = api
        .get(&format!("{path}/00000000-0000-0000-0000-000000000000"))
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.kind(), "not_found");
    assert_eq!(missing.body["resource"], "instance_server");
}

#[tokio::test]
async fn servers_start_stopped_and_move_through_states() {
    let api = Api::new().await;
    let id = api.create_server("web", &["legion-install=a"]).await;
    let server = api.fake.server(&id).unwrap();
    assert_eq!(server.volumes.len(), 1);
    let r = api.get(&format!("{PAR1}/servers/{id}")).await;
    assert!(r.body["server"]["public_ip"]["address"].is_string());
    assert_eq!(r.body["server"]["volumes"]["0"]["volume_type"], "l_ssd");
    assert_eq!(r.body["server"]["allowed_actions"][0], "poweron");

    let r = api.action(&id, "poweron").await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["task"]["status"], "pending");
    assert_eq!(api.state(&id).await, "starting");
    // Busy: another action is refused with transient_state.
    let busy = api.action(&id, "poweroff").await;
    assert_eq!(busy.status, 409);
    assert_eq!(busy.kind(), "transient_state");
    assert_eq!(busy.body["current_state"], "starting");
    api.wait_state(&id, "running").await;
    // Not allowed in this state.
    let again = api.action(&id, "poweron").await;
    assert_eq!(again.kind(), "invalid_request_error");
    // A running server cannot be deleted.
    let del = api
        .call("DELETE", &format!("{PAR1}/servers/{id}"), None)
        .await;
    assert_eq!(del.status, 400);
    assert!(api.action(&id, "reboot").await.status == 202);
    assert_eq!(api.state(&id).await, "running");
    api.wait_state(&id, "running").await;
    api.fake.finish_all_actions();
    assert_eq!(api.action(&id, "poweroff").await.status, 202);
    assert_eq!(api.state(&id).await, "stopping");
    api.wait_state(&id, "stopped").await;
    // Deleting keeps the volume, detached and billed, until it is deleted itself.
    let vol = api.fake.server(&id).unwrap().volumes[0].clone();
    let del = api
        .call("DELETE", &format!("{PAR1}/servers/{id}"), None)
        .await;
    assert_eq!(del.status, 204);
    assert!(api.fake.server(&id).is_none());
    assert_eq!(api.fake.volumes()[0].server, None);
    let r = api
        .call("DELETE", &format!("{PAR1}/volumes/{vol}"), None)
        .await;
    assert_eq!(r.status, 204);
    assert!(api.fake.volumes().is_empty());
    let r = api
        .call("DELETE", &format!("{PAR1}/volumes/{vol}"), None)
        .await;
    assert_eq!(r.status, 404);

    // terminate deletes a running server with its local volume.
    let id = api.create_server("t", &[]).await;
    api.action(&id, "poweron").await;
    api.wait_state(&id, "running").await;
    assert_eq!(api.action(&id, "terminate").await.status, 202);
    let started = Instant::now();
    while api.get(&format!("{PAR1}/servers/{id}")).await.status != 404 {
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(api.fake.volumes().is_empty());
}

#[tokio::test]
async fn sbs_volumes_are_deleted_through_block_storage() {
    let api = Api::new().await;
    let r = api
        .call(
            "POST",
            &format!("{PAR1}/servers"),
            Some(
                json!({ "name": "p", "commercial_type": "PLAY2-NANO", "image": "ubuntu_noble",
                         "project": PROJECT }),
            ),
        )
        .await;
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let vol = r.body["server"]["volumes"]["0"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        r.body["server"]["volumes"]["0"]["volume_type"],
        "sbs_volume"
    );
    let block = format!("/block/v1/zones/fr-par-1/volumes/{vol}");
    let in_use = api.call("DELETE", &block, None).await;
    assert_eq!(in_use.status, 412);
    assert_eq!(in_use.kind(), "precondition_failed");
    api.call("DELETE", &format!("{PAR1}/servers/{id}"), None)
        .await;
    assert_eq!(api.call("DELETE", &block, None).await.status, 204);
    assert_eq!(api.get(&block).await.status, 404);
}

#[tokio::test]
async fn lists_filter_by_tags_name_and_project() {
    let api = Api::new().await;
    api.create_server("a", &["legion-install=one", "legion-node=1"])
        .await;
    api.create_server("b", &["legion-install=two"]).await;
    api.create_server("c", &[]).await;
    let names = |r: &Reply| -> Vec<String> {
        r.body["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let one = api
        .get(&format!("{PAR1}/servers?tags=legion-install%3Done"))
        .await;
    assert_eq!(names(&one), ["a"]);
    assert_eq!(one.header("x-total-count"), 1);
    let both = api
        .get(&format!(
            "{PAR1}/servers?tags=legion-install%3Done,legion-node%3D2"
        ))
        .await;
    assert!(names(&both).is_empty());
    let by_name = api.get(&format!("{PAR1}/servers?name=b")).await;
    assert_eq!(names(&by_name), ["b"]);
    let other_project = api.get(&format!("{PAR1}/servers?project=elsewhere")).await;
    assert!(names(&other_project).is_empty());
    let paged = api.get(&format!("{PAR1}/servers?per_page=2&page=2")).await;
    assert_eq!(names(&paged).len(), 1);
    assert_eq!(paged.header("x-total-count"), 3);
    let other_zone = api.get("/instance/v1/zones/nl-ams-1/servers").await;
    assert!(names(&other_zone).is_empty());
}

#[tokio::test]
async fn security_groups_hold_rules_and_servers() {
    let api = Api::new().await;
    let server = api.create_server("s", &[]).await;
    let r = api
        .call(
            "POST",
            &format!("{PAR1}/security_groups"),
            Some(
                json!({ "name": "legion-prod", "project": PROJECT, "tags": ["legion-install=i"],
                         "description": "d", "inbound_default_policy": "drop",
                         "outbound_default_policy": "accept", "stateful": true }),
            ),
        )
        .await;
    assert_eq!(r.status, 201);
    let sg = r.body["security_group"]["id"].as_str().unwrap().to_string();
    let rules = format!("{PAR1}/security_groups/{sg}/rules");
    let rule = |port: u32, pos: u32| {
        json!({ "action": "accept", "direction": "inbound", "protocol": "TCP",
                "ip_range": "10.0.0.0/8", "dest_port_from": port, "dest_port_to": null,
                "position": pos, "editable": true })
    };
    let r = api
        .call(
            "PUT",
            &rules,
            Some(json!({ "rules": [rule(443, 2), rule(22, 1)] })),
        )
        .await;
    assert_eq!(r.status, 200);
    let listed = api.get(&rules).await;
    assert_eq!(listed.body["rules"][0]["dest_port_from"], 22);
    assert_eq!(listed.header("x-total-count"), 2);
    let bad = api
        .call(
            "PUT",
            &rules,
            Some(json!({ "rules": [{"protocol": "TCP", "direction": "in"}] })),
        )
        .await;
    assert_eq!(bad.kind(), "invalid_arguments");
    // A server has one group: attaching is a PATCH of the server.
    let r = api
        .call(
            "PATCH",
            &format!("{PAR1}/servers/{server}"),
            Some(json!({ "security_group": { "id": sg } })),
        )
        .await;
    assert_eq!(r.body["server"]["security_group"]["id"], sg.as_str());
    let g = api.get(&format!("{PAR1}/security_groups/{sg}")).await;
    assert_eq!(
        g.body["security_group"]["servers"][0]["id"],
        server.as_str()
    );
    let in_use = api
        .call("DELETE", &format!("{PAR1}/security_groups/{sg}"), None)
        .await;
    assert_eq!(in_use.status, 400);
    // The project's default group, found by its flag.
    let defaults = api
        .get(&format!(
            "{PAR1}/security_groups?project={PROJECT}&project_default=true"
        ))
        .await;
    let default = defaults.body["security_groups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        defaults.body["security_groups"].as_array().unwrap().len(),
        1
    );
    api.call(
        "PATCH",
        &format!("{PAR1}/servers/{server}"),
        Some(json!({ "security_group": { "id": default } })),
    )
    .await;
    let tagged = api
        .get(&format!("{PAR1}/security_groups?tags=legion-install%3Di"))
        .await;
    assert_eq!(tagged.body["security_groups"].as_array().unwrap().len(), 1);
    let gone = api
        .call("DELETE", &format!("{PAR1}/security_groups/{sg}"), None)
        .await;
    assert_eq!(gone.status, 204);
    let again = api.get(&format!("{PAR1}/security_groups/{sg}")).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.kind(), "unknown_resource");
}

#[tokio::test]
async fn iam_ssh_keys_page_and_refuse_duplicates() {
    let api = Api::new().await;
    let body = json!({ "name": "legion-a", "public_key": KEY, "project_id": PROJECT });
    let r = api
        .call("POST", "/iam/v1alpha1/ssh-keys", Some(body.clone()))
        .await;
    assert_eq!(r.status, 200);
    let id = r.body["id"].as_str().unwrap().to_string();
    let dup = api.call("POST", "/iam/v1alpha1/ssh-keys", Some(body)).await;
    assert_eq!(dup.status, 409);
    let bad = api
        .call(
            "POST",
            "/iam/v1alpha1/ssh-keys",
            Some(json!({ "name": "x", "public_key": "nonsense", "project_id": PROJECT })),
        )
        .await;
    assert_eq!(bad.kind(), "invalid_arguments");
    api.fake.seed_ssh_key(
        "seeded",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC/tLfGHZKt x",
    );
    let page = api
        .get(&format!(
            "/iam/v1alpha1/ssh-keys?project_id={PROJECT}&page_size=1"
        ))
        .await;
    assert_eq!(page.body["total_count"], 2);
    assert_eq!(page.body["ssh_keys"].as_array().unwrap().len(), 1);
    let named = api.get("/iam/v1alpha1/ssh-keys?name=legion-a").await;
    assert_eq!(named.body["ssh_keys"][0]["public_key"], KEY);
    let del = api
        .call("DELETE", &format!("/iam/v1alpha1/ssh-keys/{id}"), None)
        .await;
    assert_eq!(del.status, 204);
    let del = api
        .call("DELETE", &format!("/iam/v1alpha1/ssh-keys/{id}"), None)
        .await;
    assert_eq!(del.status, 404);
    assert_eq!(del.body["resource"], "ssh_key");
}

#[tokio::test]
async fn dns_zones_and_record_changes() {
    let api = Api::new().await;
    let base = "/domain/v2beta1/dns-zones";
    let r = api
        .call(
            "POST",
            base,
            Some(json!({ "domain": "example.test", "subdomain": "", "project_id": PROJECT })),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["ns"][0], "ns0.dom.scw.cloud");
    let dup = api
        .call(
            "POST",
            base,
            Some(json!({ "domain": "example.test", "subdomain": "", "project_id": PROJECT })),
        )
        .await;
    assert_eq!(dup.status, 409);
    let records = format!("{base}/example.test/records");
    let set = |values: &[&str], ttl: u32| {
        let recs: Vec<Value> = values
            .iter()
            .map(|v| json!({ "name": "web", "type": "A", "data": v, "ttl": ttl }))
            .collect();
        json!({ "changes": [ { "set": { "id_fields": { "name": "web", "type": "A" }, "records": recs } } ],
                "return_all_records": true })
    };
    let r = api
        .call("PATCH", &records, Some(set(&["192.0.2.1"], 300)))
        .await;
    assert_eq!(r.body["records"].as_array().unwrap().len(), 1);
    api.call(
        "PATCH",
        &records,
        Some(set(&["192.0.2.2", "192.0.2.3"], 600)),
    )
    .await;
    let listed = api.get(&format!("{records}?name=web&type=A")).await;
    assert_eq!(listed.body["total_count"], 2);
    assert_eq!(listed.body["records"][0]["ttl"], 600);
    let delete =
        json!({ "changes": [ { "delete": { "id_fields": { "name": "web", "type": "A" } } } ] });
    assert_eq!(
        api.call("PATCH", &records, Some(delete.clone()))
            .await
            .status,
        200
    );
    let again = api.call("PATCH", &records, Some(delete)).await;
    assert_eq!(again.status, 404);
    let zones = api.get(&format!("{base}?dns_zone=example.test")).await;
    assert_eq!(zones.body["dns_zones"][0]["domain"], "example.test");
    assert_eq!(
        api.call("DELETE", &format!("{base}/example.test"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        api.call("DELETE", &format!("{base}/example.test"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn rate_limit_headers_on_every_response() {
    let api = Api::new().await;
    let r = api.get(&format!("{PAR1}/servers")).await;
    let remaining = r.header("x-ratelimit-remaining");
    assert!(r.header("x-ratelimit-limit") >= remaining);
    assert!(r.header("x-ratelimit-reset") > 1_700_000_000);
    let unauth = api
        .send_as("GET", &format!("{PAR1}/servers"), None, None)
        .await
        .unwrap();
    assert!(unauth.headers.contains_key("x-ratelimit-remaining"));
    api.fake.set_rate_remaining(0);
    let limited = api.get(&format!("{PAR1}/servers")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("x-ratelimit-remaining"), 0);
}

#[tokio::test]
async fn injected_errors_are_not_applied() {
    let api = Api::new().await;
    let body = json!({ "name": "f", "commercial_type": "DEV1-S", "image": "ubuntu_noble",
                       "project": PROJECT });
    let path = format!("{PAR1}/servers");
    api.fake.fail_next(1);
    let r = api.call("POST", &path, Some(body.clone())).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.kind(), "internal_error");
    api.fake.unavailable_next(1);
    let r = api.call("POST", &path, Some(body.clone())).await;
    assert_eq!((r.status, r.body.clone()), (503, Value::Null));
    api.fake.timeout_next(1);
    assert_eq!(
        api.call("POST", &path, Some(body.clone())).await.status,
        504
    );
    api.fake.rate_limit_next(1, Duration::from_secs(3));
    let r = api.call("POST", &path, Some(body.clone())).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.kind(), "too_many_requests");
    let reset = r.header("x-ratelimit-reset");
    assert!(
        reset
            >= std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 2
    );
    assert!(api.fake.servers().is_empty());
    assert_eq!(api.call("POST", &path, Some(body)).await.status, 201);
    assert_eq!(api.fake.servers().len(), 1);
}

#[tokio::test]
async fn dropped_connections_before_and_after_applying() {
    let api = Api::new().await;
    let body = json!({ "name": "d", "commercial_type": "DEV1-S", "image": "ubuntu_noble",
                       "project": PROJECT });
    let path = format!("{PAR1}/servers");
    let key = api.fake.secret_key();
    api.fake.drop_request_next("POST", &path, 1);
    assert!(
        api.send_as("POST", &path, Some(body.clone()), Some(&key))
            .await
            .is_err()
    );
    assert!(api.fake.servers().is_empty());
    api.fake.drop_response_next("POST", &path, 1);
    assert!(
        api.send_as("POST", &path, Some(body), Some(&key))
            .await
            .is_err()
    );
    assert_eq!(
        api.fake.servers().len(),
        1,
        "applied, then the answer was lost"
    );
    // Other methods and paths are not affected by a matching rule.
    api.fake.drop_response_next("DELETE", &path, 1);
    assert_eq!(api.get(&path).await.status, 200);
}

#[tokio::test]
async fn latency_locks_and_failed_actions() {
    let api = Api::new().await;
    let id = api.create_server("l", &[]).await;
    api.fake.set_latency(Duration::from_millis(120));
    let started = Instant::now();
    api.get(&format!("{PAR1}/servers/{id}")).await;
    assert!(started.elapsed() >= Duration::from_millis(120));
    api.fake.clear_faults();
    api.fake.lock_server_for(&id, Duration::from_millis(150));
    let r = api.action(&id, "poweron").await;
    assert_eq!(r.kind(), "transient_state");
    tokio::time::sleep(Duration::from_millis(250)).await;
    api.fake.fail_next_action("poweron", "boot failed");
    assert_eq!(api.action(&id, "poweron").await.status, 202);
    assert_eq!(api.state(&id).await, "starting");
    api.wait_state(&id, "stopped").await;
    let s = api.fake.server(&id).unwrap();
    assert_eq!(s.state_detail, "boot failed");
}

#[tokio::test]
async fn out_of_band_changes_and_request_counts() {
    let api = Api::new().await;
    let id = api.create_server("o", &["legion-install=a"]).await;
    assert!(api.fake.set_server_state(&id, "running"));
    assert_eq!(api.state(&id).await, "running");
    assert!(api.fake.set_server_tags(&id, &["x=y"]));
    let listed = api
        .get(&format!("{PAR1}/servers?tags=legion-install%3Da"))
        .await;
    assert!(listed.body["servers"].as_array().unwrap().is_empty());
    let seeded = api
        .fake
        .seed_server("nl-ams-1", "seeded", "DEV1-M", &["k=v"]);
    assert_eq!(api.fake.server(&seeded).unwrap().state, "running");
    assert!(api.fake.delete_server_out_of_band(&id));
    assert!(!api.fake.set_server_state(&id, "running"));
    assert_eq!(
        api.fake
            .request_count_prefix("POST", &format!("{PAR1}/servers")),
        1
    );
    assert_eq!(
        api.fake
            .request_count("GET", &format!("{PAR1}/servers/{id}")),
        1
    );
    api.fake.clear_requests();
    assert!(api.fake.requests().is_empty());
}

#[tokio::test]
async fn local_images_resolve_a_label_to_the_root_snapshot() {
    let api = Api::new().await;
    let r = api
        .get("/marketplace/v2/local-images?image_label=ubuntu_noble&zone=fr-par-1&type=instance_local")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["total_count"], 1);
    let local = &r.body["local_images"][0];
    assert_eq!(local["type"], "instance_local");
    assert_eq!(local["label"], "ubuntu_noble");
    assert_eq!(local["arch"], "x86_64");
    let types: Vec<&str> = local["compatible_commercial_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"DEV1-S") && !types.contains(&"PLAY2-NANO"),
        "{types:?}"
    );
    // Block Storage images: one per architecture.
    let sbs = api
        .get(
            "/marketplace/v2/local-images?image_label=ubuntu_noble&zone=fr-par-1&type=instance_sbs",
        )
        .await;
    assert_eq!(sbs.body["total_count"], 2);
    let id = local["id"].as_str().unwrap();
    let one = api.get(&format!("/marketplace/v2/local-images/{id}")).await;
    assert_eq!(one.body["zone"], "fr-par-1");
    // The Instance image behind it names its root snapshot.
    let image = api.get(&format!("{PAR1}/images/{id}")).await;
    assert_eq!(image.status, 200, "{}", image.body);
    let root = &image.body["image"]["root_volume"];
    assert_eq!(root["volume_type"], "l_ssd");
    assert_eq!(root["size"], scaleway_fake::IMAGE_ROOT_SIZE);
    assert_eq!(
        root["id"],
        scaleway_fake::image_root_snapshot("ubuntu_noble", "fr-par-1", "l_ssd")
    );
    let sbs_id = sbs.body["local_images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["arch"] == "x86_64")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let image = api.get(&format!("{PAR1}/images/{sbs_id}")).await;
    assert_eq!(
        image.body["image"]["root_volume"]["volume_type"],
        "sbs_snapshot"
    );
    let missing = api.get(&format!("{PAR1}/images/{}", "0".repeat(36))).await;
    assert_eq!((missing.status, missing.kind()), (404, "unknown_resource"));
    // A server's root volume is made from its image's root snapshot.
    let server = api.create_server("img", &[]).await;
    let root = api.fake.root_volume(&server).unwrap();
    assert_eq!(
        root.base_snapshot.as_deref(),
        Some(scaleway_fake::image_root_snapshot("ubuntu_noble", "fr-par-1", "l_ssd").as_str())
    );
    let s = api.get(&format!("{PAR1}/servers/{server}")).await;
    assert_eq!(s.body["server"]["image"]["id"], id);
}

#[tokio::test]
async fn instance_volumes_come_from_a_snapshot_or_a_size_and_list_by_tag() {
    let api = Api::new().await;
    let snap = scaleway_fake::image_root_snapshot("ubuntu_noble", "fr-par-1", "l_ssd");
    let path = format!("{PAR1}/volumes");
    let both = api
        .call(
            "POST",
            &path,
            Some(
                json!({ "name": "x", "project": PROJECT, "volume_type": "l_ssd",
                         "size": 20_000_000_000u64, "base_snapshot": snap }),
            ),
        )
        .await;
    assert_eq!((both.status, both.kind()), (400, "invalid_arguments"));
    let unknown = api
        .call(
            "POST",
            &path,
            Some(json!({ "name": "x", "project": PROJECT, "base_snapshot": "nope" })),
        )
        .await;
    assert_eq!((unknown.status, unknown.kind()), (404, "unknown_resource"));
    let sbs = api
        .call(
            "POST",
            &path,
            Some(json!({ "project": PROJECT, "volume_type": "sbs_volume", "size": 512 })),
        )
        .await;
    assert_eq!(sbs.status, 400, "Block Storage volumes are not made here");
    let made = api
        .call(
            "POST",
            &path,
            Some(
                json!({ "name": "fresh", "project": PROJECT, "volume_type": "l_ssd",
                         "base_snapshot": snap, "tags": ["legion-root-of=s1"] }),
            ),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let v = &made.body["volume"];
    assert_eq!(
        v["size"],
        scaleway_fake::IMAGE_ROOT_SIZE,
        "the snapshot's size"
    );
    assert_eq!(v["state"], "fetching");
    assert!(v["server"].is_null());
    let id = v["id"].as_str().unwrap().to_string();
    let listed = api
        .get(&format!(
            "{path}?project={PROJECT}&tags=legion-root-of%3Ds1"
        ))
        .await;
    assert_eq!(listed.header("x-total-count"), 1);
    assert_eq!(listed.body["volumes"][0]["id"], id.as_str());
    let other = api.get(&format!("{path}?tags=legion-root-of%3Ds2")).await;
    assert_eq!(other.header("x-total-count"), 0);
    let started = Instant::now();
    while api.get(&format!("{path}/{id}")).await.body["volume"]["state"] != "available" {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "never available"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(api.fake.volumes().len(), 1);
    assert_eq!(
        api.call("DELETE", &format!("{path}/{id}"), None)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn block_volumes_come_from_a_snapshot_at_a_size_and_show_their_server() {
    let api = Api::new().await;
    let snap = scaleway_fake::image_root_snapshot("ubuntu_noble", "fr-par-1", "sbs_volume");
    let path = "/block/v1/zones/fr-par-1/volumes";
    let smaller = api
        .call(
            "POST",
            path,
            Some(json!({ "name": "x", "project_id": PROJECT,
                         "from_snapshot": { "snapshot_id": snap, "size": 1_000_000_000u64 } })),
        )
        .await;
    assert_eq!((smaller.status, smaller.kind()), (400, "invalid_arguments"));
    let neither = api
        .call(
            "POST",
            path,
            Some(json!({ "name": "x", "project_id": PROJECT })),
        )
        .await;
    assert_eq!(neither.status, 400);
    let made = api
        .call(
            "POST",
            path,
            Some(
                json!({ "name": "fresh", "project_id": PROJECT, "perf_iops": 15000,
                         "from_snapshot": { "snapshot_id": snap, "size": 20_000_000_000u64 },
                         "tags": ["legion-root-of=s1"] }),
            ),
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(made.body["status"], "creating");
    assert_eq!(made.body["size"], 20_000_000_000u64);
    assert_eq!(made.body["type"], "sbs_15k");
    assert_eq!(made.body["parent_snapshot_id"], snap.as_str());
    assert_eq!(made.body["references"], json!([]));
    let listed = api
        .get(&format!(
            "{path}?project_id={PROJECT}&tags=legion-root-of%3Ds1"
        ))
        .await;
    assert_eq!(listed.body["total_count"], 1);
    // A server's Block Storage root is referenced by the server.
    let r = api
        .call(
            "POST",
            &format!("{PAR1}/servers"),
            Some(json!({ "name": "b", "commercial_type": "PLAY2-NANO",
                         "image": "ubuntu_noble", "project": PROJECT })),
        )
        .await;
    let server = r.body["server"]["id"].as_str().unwrap();
    let root = api.fake.root_volume(server).unwrap();
    let v = api.get(&format!("{path}/{}", root.id)).await;
    assert_eq!(v.body["status"], "in_use");
    assert_eq!(
        v.body["references"][0]["product_resource_type"],
        "instance_server"
    );
    assert_eq!(v.body["references"][0]["product_resource_id"], server);
}

#[tokio::test]
async fn a_root_swap_needs_a_stopped_server_and_an_available_volume() {
    let api = Api::new().await;
    let server = api.create_server("swap", &["keep=me"]).await;
    let old = api.fake.root_volume(&server).unwrap();
    let snap = scaleway_fake::image_root_snapshot("ubuntu_jammy", "fr-par-1", "l_ssd");
    let made = api
        .call(
            "POST",
            &format!("{PAR1}/volumes"),
            Some(json!({ "name": "new-root", "project": PROJECT, "base_snapshot": snap })),
        )
        .await;
    let new = made.body["volume"]["id"].as_str().unwrap().to_string();
    let server_path = format!("{PAR1}/servers/{server}");
    let patch =
        |volumes: Value| api.call("PATCH", &server_path, Some(json!({ "volumes": volumes })));
    // Still being filled from the snapshot.
    let early = patch(json!({ "0": { "id": new, "name": "new-root" } })).await;
    assert_eq!((early.status, early.kind()), (400, "invalid_request_error"));
    api.fake.finish_all_actions();
    tokio::time::sleep(Duration::from_millis(60)).await;
    // Refused on a running server, in the Instance API's older form.
    assert_eq!(api.action(&server, "poweron").await.status, 202);
    api.wait_state(&server, "running").await;
    let running = patch(json!({ "0": { "id": new, "name": "new-root" } })).await;
    assert_eq!(running.status, 400);
    assert_eq!(running.kind(), "invalid_request_error");
    assert!(
        running.body["message"]
            .as_str()
            .unwrap()
            .contains("stopped")
    );
    assert_eq!(
        api.fake.root_volume(&server).unwrap().id,
        old.id,
        "nothing changed"
    );
    assert_eq!(api.action(&server, "poweroff").await.status, 202);
    api.wait_state(&server, "stopped").await;
    let no_root = patch(json!({ "1": { "id": new } })).await;
    assert_eq!(no_root.status, 400);
    let unknown = patch(json!({ "0": { "id": "nope" } })).await;
    assert_eq!(unknown.status, 404);
    let ok = patch(json!({ "0": { "id": new, "name": "new-root" } })).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let volumes = ok.body["server"]["volumes"].as_object().unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes["0"]["id"], new.as_str());
    assert_eq!(ok.body["server"]["tags"], json!(["keep=me"]));
    let root = api.fake.root_volume(&server).unwrap();
    assert_eq!(root.base_snapshot.as_deref(), Some(snap.as_str()));
    // The old root is detached, and can now be deleted; the new one cannot.
    let old_now = api.get(&format!("{PAR1}/volumes/{}", old.id)).await;
    assert!(old_now.body["volume"]["server"].is_null());
    let in_use = api
        .call("DELETE", &format!("{PAR1}/volumes/{new}"), None)
        .await;
    assert_eq!((in_use.status, in_use.kind()), (412, "precondition_failed"));
    let gone = api
        .call("DELETE", &format!("{PAR1}/volumes/{}", old.id), None)
        .await;
    assert_eq!(gone.status, 204);
    // A volume attached elsewhere is refused.
    let other = api.create_server("other", &[]).await;
    let taken = patch(json!({ "0": { "id": api.fake.root_volume(&other).unwrap().id } })).await;
    assert_eq!(taken.status, 400);
    assert!(
        taken.body["message"]
            .as_str()
            .unwrap()
            .contains("another server")
    );
}
