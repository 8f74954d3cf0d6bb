//! What the HTTP adapters send and read (issue 14 §4): no request follows a redirect, so
//! no credential (Hetzner's bearer token, Scaleway's `X-Auth-Token`, OVH's signature and
//! consumer key) reaches another host; an endpoint override to another machine must be
//! `https://`; a response body over 16 MiB is refused while it is read.
//!
//! The servers here are raw HTTP/1.1 on loopback sockets so that each answer is exactly
//! what a hostile or misconfigured endpoint could send (a redirect, a chunked body with
//! no length).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legion::core::oplog::OpLog;
use legion::core::secret::Secret;
use legion::providers::{ConnectCtx, Env, ErrorKind, Lane, ProviderApi, ProviderModule};
use legion::providers::{hetzner, ovh, scaleway};

/// A loopback server answering every request with `answer(port)`; records the head of
/// each request it read. Runs until the test process ends (threads are cheap here).
fn serve(answer: impl Fn() -> Vec<u8> + Send + 'static) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            record.lock().unwrap().push(head);
            let _ = stream.write_all(&answer());
            let _ = stream.flush();
        }
    });
    (port, seen)
}

fn connect(module: &dyn ProviderModule, kind: &str, port: u16) -> Arc<dyn ProviderApi> {
    let secret = |v: &str| Secret::new(v);
    let (credentials, var): (Vec<(&str, Secret)>, &str) = match kind {
        "hetzner" => (
            vec![(hetzner::TOKEN_FIELD, secret("hetzner-token-SECRET"))],
            hetzner::API_URL_VAR,
        ),
        "scaleway" => (
            vec![
                (scaleway::SECRET_KEY_FIELD, secret("scw-secret-SECRET")),
                (
                    scaleway::PROJECT_FIELD,
                    secret("11111111-2222-3333-4444-555555555555"),
                ),
            ],
            scaleway::API_URL_VAR,
        ),
        _ => (
            vec![
                (ovh::APPLICATION_KEY_FIELD, secret("ovh-app-key")),
                (ovh::APPLICATION_SECRET_FIELD, secret("ovh-app-SECRET")),
                (ovh::CONSUMER_KEY_FIELD, secret("ovh-consumer-SECRET")),
                (
                    ovh::PROJECT_FIELD,
                    secret("0123456789abcdef0123456789abcdef"),
                ),
            ],
            ovh::API_URL_VAR,
        ),
    };
    let home = tempfile::tempdir().unwrap();
    module
        .connect(ConnectCtx {
            id: kind.into(),
            credentials: credentials
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            lane: Arc::new(Lane::detached(kind, kind, 4, OpLog::new(100))),
            home: home.path().to_path_buf(),
            env: Env::default().with(var, &format!("http://127.0.0.1:{port}/v1")),
        })
        .unwrap()
}

fn modules() -> [(&'static dyn ProviderModule, &'static str); 3] {
    [
        (&hetzner::HetznerModule, "hetzner"),
        (&scaleway::ScalewayModule, "scaleway"),
        (&ovh::OvhModule, "ovh"),
    ]
}

async fn get_server(api: &Arc<dyn ProviderApi>) -> legion::providers::ProviderError {
    let call = api.compute().unwrap().get_server("srv-1");
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the request did not end")
        .expect_err("the answer is refused")
}

#[tokio::test]
async fn no_adapter_follows_a_redirect_to_another_host() {
    let (catcher, caught) = serve(|| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec());
    let (port, asked) = serve(move || {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://localhost:{catcher}/stolen\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    });
    for (module, kind) in modules() {
        let api = connect(module, kind, port);
        let err = get_server(&api).await;
        assert!(
            err.message.contains("redirecting to localhost") && err.message.contains("follows no"),
            "{kind}: {err}"
        );
        assert!(!asked.lock().unwrap().is_empty(), "{kind} asked the API");
    }
    let caught = caught.lock().unwrap();
    assert!(
        caught.is_empty(),
        "the other host got requests (and headers): {caught:?}"
    );
}

#[tokio::test]
async fn a_body_over_16_mib_is_refused_as_it_is_read() {
    // Chunked, no Content-Length: only counting while reading can stop it.
    let (port, _) = serve(|| {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..17 {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    });
    for (module, kind) in modules() {
        let api = connect(module, kind, port);
        let err = get_server(&api).await;
        assert_eq!(err.kind, ErrorKind::Malformed, "{kind}: {err}");
        assert!(err.message.contains("larger than 16 MiB"), "{kind}: {err}");
    }
}

#[test]
fn an_endpoint_override_to_another_machine_must_be_https() {
    let home = tempfile::tempdir().unwrap();
    for (module, kind) in modules() {
        let var = match kind {
            "hetzner" => hetzner::API_URL_VAR,
            "scaleway" => scaleway::API_URL_VAR,
            _ => ovh::API_URL_VAR,
        };
        let ctx = |url: &str| ConnectCtx {
            id: kind.into(),
            credentials: module
                .descriptor()
                .credential_fields
                .iter()
                .map(|f| {
                    let v = match f.id.as_str() {
                        scaleway::PROJECT_FIELD => "11111111-2222-3333-4444-555555555555",
                        ovh::PROJECT_FIELD => "0123456789abcdef0123456789abcdef",
                        ovh::ENDPOINT_FIELD => "ovh-eu",
                        scaleway::ZONE_FIELD => "fr-par-1",
                        _ => "x",
                    };
                    (f.id.clone(), Secret::new(v))
                })
                .collect(),
            lane: Arc::new(Lane::detached(kind, kind, 4, OpLog::new(10))),
            home: home.path().to_path_buf(),
            env: Env::default().with(var, url),
        };
        let refused = module.connect(ctx("http://api.example.com/v1"));
        let err = refused
            .err()
            .expect("plain http to another machine refused");
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{kind}: {err}");
        assert!(
            err.message.contains("unencrypted") && err.message.contains("https://"),
            "{kind}: {err}"
        );
        for ok in [
            "https://api.example.com/v1",
            "http://127.0.0.1:9/v1",
            "http://[::1]:9/v1",
            "http://localhost:9/v1",
        ] {
            assert!(module.connect(ctx(ok)).is_ok(), "{kind}: {ok} refused");
        }
    }
}
