//! A client that disconnects cancels the upstream call, for whole answers too
//! (streams are covered with the other stream tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;

/// Sets its flag when dropped: the upstream handler's future was cancelled.
struct OnDrop(Arc<AtomicBool>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn client_disconnect_cancels_a_pending_upstream_call() {
    let (started, cancelled) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (s, c) = (started.clone(), cancelled.clone());
    // An upstream that accepts the request and never answers.
    let upstream = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let (s, c) = (s.clone(), c.clone());
            async move {
                let _guard = OnDrop(c);
                s.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let extra = format!(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"http://{addr}/v1\"\ntimeout = \"60s\"\n[models.default]\ntargets = [\"p:m\"]\n"
    );
    let app = spawn_app(&extra).await;

    let url = app.url("/api/v1/chat");
    let client = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(KEY)
            .json(&serde_json::json!({"messages": say("hi")}))
            .send()
            .await
    });
    assert!(
        eventually(Duration::from_secs(5), || started.load(Ordering::SeqCst)).await,
        "the upstream got the call"
    );
    assert!(!cancelled.load(Ordering::SeqCst));
    client.abort(); // the client goes away
    assert!(
        eventually(Duration::from_secs(5), || cancelled.load(Ordering::SeqCst)).await,
        "the gateway dropped its upstream call when the client left"
    );
}
