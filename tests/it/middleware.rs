//! The tower stack over real HTTP: request ids, security headers (HSTS in
//! production only), CORS, and the slow-client guard.

use std::time::Duration;

use crate::support::*;
use axum::Router;
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn upstream_model(up: &Upstream) -> String {
    format!(
        "{}\n[models.default]\ntargets = [\"openai:gpt-4o-mini\"]\n",
        provider_toml("openai", "openai", up)
    )
}

async fn chat_with_id(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .header("x-request-id", id)
        .json(&json!({"messages": say("hi")}))
        .send()
        .await
        .unwrap()
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn valid_request_id_is_kept_and_sent_upstream() {
    let up = Upstream::openai().await;
    let app = spawn_app_with_env(&upstream_model(&up), &upstream_env()).await;
    let id = format!("Abc-123_x.y{}", "z".repeat(117));
    assert_eq!(id.len(), 128);
    let r = chat_with_id(&app, &id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(request_id(&r), id);
    assert_eq!(up.requests()[0].headers["x-request-id"], id.as_str());
}

#[tokio::test]
async fn invalid_request_ids_are_replaced_by_a_uuid_that_is_sent_upstream() {
    let up = Upstream::openai().await;
    let app = spawn_app_with_env(&upstream_model(&up), &upstream_env()).await;
    let too_long = "a".repeat(129);
    for (n, bad) in [too_long.as_str(), "has space", "semi;colon", "slash/id", ""]
        .into_iter()
        .enumerate()
    {
        let r = chat_with_id(&app, bad).await;
        assert_eq!(r.status(), 200);
        let id = request_id(&r);
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} became {id}");
        assert_eq!(up.requests()[n].headers["x-request-id"], id.as_str());
    }
    // Without one, a fresh UUID is made, different each time.
    let a = app.chat(json!({"messages": say("hi")})).await;
    let b = app.chat(json!({"messages": say("hi")})).await;
    assert!(uuid::Uuid::parse_str(&request_id(&a)).is_ok());
    assert_ne!(request_id(&a), request_id(&b));
}

#[tokio::test]
async fn error_request_id_equals_the_x_request_id_header() {
    let app = spawn_app("").await;
    for incoming in ["kept-id-42", "not valid!"] {
        let r = app
            .client
            .get(app.url("/nope"))
            .header("x-request-id", incoming)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let id = request_id(&r);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["request_id"], id.as_str());
        if incoming == "kept-id-42" {
            assert_eq!(id, incoming);
        } else {
            assert!(uuid::Uuid::parse_str(&id).is_ok());
        }
    }
}

fn assert_security_headers(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(
        h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
        "{what}"
    );
}

#[tokio::test]
async fn security_headers_are_on_2xx_4xx_and_5xx_without_hsts_outside_production() {
    let config = load_config("", &[]).unwrap();
    let app = spawn_config_with_routes(config, Router::new().route("/boom", get(boom))).await;
    let ok = app.chat(json!({"messages": say("hi")})).await;
    let health = app.get("/health").await;
    let not_found = app.get("/nope").await;
    let unauthorized = app.get("/api/v1/models").await;
    let panicked = app.get("/boom").await;
    for (r, status) in [
        (&ok, 200),
        (&health, 200),
        (&not_found, 404),
        (&unauthorized, 401),
        (&panicked, 500),
    ] {
        assert_eq!(r.status(), status);
        assert_security_headers(r, &status.to_string());
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "no HSTS in development ({status})"
        );
    }
}

#[tokio::test]
async fn production_adds_strict_transport_security() {
    let up = Upstream::openai().await;
    let config = load_config_profile("production", &upstream_model(&up), &upstream_env())
        .unwrap_or_else(|p| panic!("production config invalid: {p:?}"));
    let app = spawn_config(config).await;
    let ok = app.chat(json!({"messages": say("hi")})).await;
    let not_found = app.get("/nope").await;
    for (r, status) in [(&ok, 200), (&not_found, 404)] {
        assert_eq!(r.status(), status);
        assert_security_headers(r, &status.to_string());
        let hsts = r.headers()["strict-transport-security"].to_str().unwrap();
        assert!(hsts.starts_with("max-age="), "{hsts}");
    }
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/api/v1/chat"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-api-key, x-request-id",
        )
        .send()
        .await
        .unwrap()
}

const ORIGIN: &str = "https://app.example.com";

#[tokio::test]
async fn cors_preflight_from_an_allowed_origin_is_answered_without_a_key() {
    let app = spawn_app(&format!(
        "[server]\ncors_allowed_origins = [\"{ORIGIN}\"]\n"
    ))
    .await;
    let r = preflight(&app, ORIGIN).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in ["authorization", "content-type", "x-api-key", "x-request-id"] {
        assert!(allowed.contains(header), "{header} not in {allowed}");
    }
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");

    // The actual request from that origin carries the header too.
    let r = app
        .client
        .post(app.url("/api/v1/chat"))
        .header("origin", ORIGIN)
        .bearer_auth(KEY)
        .json(&json!({"messages": say("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN);
}

#[tokio::test]
async fn cors_gives_other_origins_no_allow_origin() {
    let app = spawn_app(&format!(
        "[server]\ncors_allowed_origins = [\"{ORIGIN}\"]\n"
    ))
    .await;
    let r = preflight(&app, "https://evil.example.net").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = app
        .client
        .post(app.url("/api/v1/chat"))
        .header("origin", "https://evil.example.net")
        .bearer_auth(KEY)
        .json(&json!({"messages": say("hi")}))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers() {
    let app = spawn_app("").await;
    let r = preflight(&app, ORIGIN).await;
    assert!(
        !r.status().is_success(),
        "no preflight answer: {}",
        r.status()
    );
    let cors_headers: Vec<_> = r
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors_headers.is_empty(), "{cors_headers:?}");
    let r = app
        .client
        .post(app.url("/api/v1/chat"))
        .header("origin", ORIGIN)
        .bearer_auth(KEY)
        .json(&json!({"messages": say("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !r.headers()
            .keys()
            .any(|k| k.as_str().starts_with("access-control-"))
    );
}

#[tokio::test]
async fn client_that_stalls_while_sending_headers_is_disconnected() {
    let app = spawn_app("[server]\nheader_read_timeout = \"300ms\"\n").await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    // Read until the server closes the connection (0 bytes or an error).
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection was not closed");
    // Everyone else is still served.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn client_that_connects_and_sends_nothing_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app("[server]\nheader_read_timeout = \"300ms\"\n").await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut buf = [0u8; 64];
    // Bounded wait: the server must close the silent connection well before this.
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was closed: {read:?}"
    );
}
