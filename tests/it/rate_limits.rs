//! Rate limits over real HTTP: per client IP and per client key (GCRA), the
//! client IP behind trusted and untrusted proxies, and bounded limiter memory.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::support::*;
use chatgate::limiter::{Bucket, Decision, MemoryLimiter, Rate};

#[tokio::test]
async fn fourth_request_from_one_ip_is_429_with_retry_after() {
    let app = spawn_app(&ip_limit(3)).await;
    for i in 0..3 {
        assert_eq!(models(&app).await.status(), 200, "request {i}");
    }
    let retry_after = assert_rate_limited(models(&app).await).await;
    assert!(
        retry_after <= 60,
        "one a minute: the next passes within a minute, got {retry_after}"
    );
    let m = app.metrics().await;
    assert_eq!(
        metric(&m, "chatgate_rate_limited_total", &[("scope", "ip")]),
        1.0
    );
    assert_eq!(
        metric(&m, "chatgate_rate_limited_total", &[("scope", "key")]),
        0.0
    );
}

#[tokio::test]
async fn health_and_metrics_are_never_rate_limited() {
    let app = spawn_app(&ip_limit(3)).await;
    for _ in 0..10 {
        assert_eq!(app.get("/health").await.status(), 200);
        assert_eq!(app.get("/health/ready").await.status(), 200);
        assert_eq!(app.get("/metrics").await.status(), 200);
    }
    // The /api/v1 bucket was untouched by all of that...
    for _ in 0..3 {
        assert_eq!(models(&app).await.status(), 200);
    }
    assert_rate_limited(models(&app).await).await;
    // ...and an exhausted bucket does not reach them.
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/metrics").await.status(), 200);
}

#[tokio::test]
async fn unauthenticated_requests_count_against_the_ip_limit() {
    let app = spawn_app(&ip_limit(3)).await;
    for _ in 0..3 {
        let r = app
            .client
            .get(app.url("/api/v1/models"))
            .bearer_auth("wrong-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_rate_limited(models(&app).await).await;
    let r = app
        .client
        .get(app.url("/api/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "a keyless flood is limited before auth");
}

#[tokio::test]
async fn key_with_requests_per_minute_gets_429_on_the_third_request() {
    let other_hash = chatgate::config::sha256_hex("other-key");
    let app = spawn_app(&format!(
        "[auth.keys.test]\nrequests_per_minute = 2\n\n[auth.keys.other]\nsha256 = \"{other_hash}\"\n"
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(models(&app).await.status(), 200);
    }
    assert_rate_limited(models(&app).await).await;

    // Another key from the same IP has its own (unlimited) budget.
    for _ in 0..5 {
        let r = app
            .client
            .get(app.url("/api/v1/models"))
            .bearer_auth("other-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let m = app.metrics().await;
    assert_eq!(
        metric(&m, "chatgate_rate_limited_total", &[("scope", "key")]),
        1.0
    );
    assert_eq!(
        metric(&m, "chatgate_rate_limited_total", &[("scope", "ip")]),
        0.0
    );
}

#[tokio::test]
async fn spoofed_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_ip_limit() {
    let app = spawn_app(&ip_limit(3)).await;
    for i in 1..=3 {
        let r = models_as(&app, KEY, Some(&format!("198.51.100.{i}"))).await;
        assert_eq!(r.status(), 200);
    }
    assert_rate_limited(models_as(&app, KEY, Some("198.51.100.99")).await).await;
    assert_rate_limited(models_as(&app, KEY, Some("203.0.113.7, 198.51.100.98")).await).await;
}

#[tokio::test]
async fn x_forwarded_for_from_a_trusted_proxy_gives_each_client_its_own_bucket() {
    let app = spawn_app(&format!(
        "{}\n[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        ip_limit(3)
    ))
    .await;
    // Ten clients behind the proxy, two requests each: 20 > one bucket's 3.
    for round in 0..2 {
        for i in 1..=10 {
            let r = models_as(&app, KEY, Some(&format!("198.51.100.{i}"))).await;
            assert_eq!(r.status(), 200, "client {i}, round {round}");
        }
    }
    // One client still has its own limit.
    assert_eq!(
        models_as(&app, KEY, Some("198.51.100.1")).await.status(),
        200
    );
    assert_rate_limited(models_as(&app, KEY, Some("198.51.100.1")).await).await;
    // The rightmost hop is the client; a spoofed left entry is ignored.
    assert_rate_limited(models_as(&app, KEY, Some("192.0.2.55, 198.51.100.1")).await).await;
}

#[tokio::test]
async fn ip_limiter_memory_returns_to_zero_after_eviction() {
    // 10 µs between refills: every bucket is full again almost at once.
    let rate = Rate::new(6_000_000, 1).unwrap();
    let limiter = MemoryLimiter::new(rate, []);
    let clients = 100_000u32;
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    for n in 0..clients {
        let ip = IpAddr::V4(Ipv4Addr::from(base + n));
        assert_eq!(limiter.check_now(Bucket::Ip(ip)), Decision::Allow);
    }
    assert_eq!(limiter.tracked_ips(), clients as usize);

    let emptied = eventually(Duration::from_secs(10), || {
        limiter.evict_idle();
        limiter.tracked_ips() == 0
    })
    .await;
    assert!(
        emptied,
        "idle buckets are dropped: {} left",
        limiter.tracked_ips()
    );
    // The limiter still works after eviction.
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(limiter.check_now(Bucket::Ip(ip)), Decision::Allow);
    assert_eq!(limiter.tracked_ips(), 1);
}
