//! The audit trail (issue 15): one JSON line per admin call, reload, canary
//! rollback, budget refusal and failed authentication, in a 0600 file;
//! a full queue is counted, never waited on.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::prometheus::series;
use crate::support::reloadable::{ADMIN_KEY, Reloadable, admin_toml};
use crate::support::*;

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_audit_event_is_one_line_in_a_file_only_its_owner_can_read() {
    let (good, bad) = (Upstream::openai().await, Upstream::openai().await);
    good.push([Reply::text("hi")]);
    bad.push([Reply::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let toml = format!(
        "{admin}[audit]\nenabled = true\npath = \"{path}\"\n\
         [auth.keys.test]\ntokens_per_day = 1\n{good}{bad}\n\
         [models.default]\ntargets = [\"good:m\"]\n\
         [models.default.canary]\ntargets = [\"bad:m\"]\npercent = 100\nsticky = \"request\"\n\
         rollback_error_rate = 0.5\nrollback_min_requests = 2\n",
        admin = admin_toml(),
        path = path.display(),
        good = Provider::openai("good", &good).max_retries(0),
        bad = Provider::openai("bad", &bad).max_retries(0),
    );
    let r = Reloadable::start(&toml).await;
    let app = &r.app;
    let no_key = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth("not-a-key")
        .json(&json!({"messages": say("x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    for _ in 0..2 {
        assert_eq!(app.chat(json!({"messages": say("x")})).await.status(), 503);
    }
    assert_eq!(app.chat(json!({"messages": say("x")})).await.status(), 200);
    assert_eq!(app.chat(json!({"messages": say("x")})).await.status(), 429);
    let (status, _) = r.reload().await;
    assert_eq!(status, 200);

    let events = [
        "auth_failed",
        "canary_rollback",
        "budget_refused",
        "reload",
        "admin",
    ];
    let all_there = eventually(Duration::from_secs(10), || {
        let got = lines(&path);
        events.iter().all(|e| got.iter().any(|l| l["event"] == *e))
    })
    .await;
    let got = lines(&path);
    assert!(all_there, "{got:#?}");
    let find = |e: &str| got.iter().find(|l| l["event"] == e).unwrap().clone();
    for line in &got {
        assert!(line["ts"].as_str().unwrap().ends_with('Z'), "{line}");
        for field in ["actor", "client_ip", "request_id", "detail"] {
            assert!(line.get(field).is_some(), "{field} in {line}");
        }
    }
    let auth = find("auth_failed");
    assert_eq!(auth["client_ip"], "127.0.0.1");
    assert_eq!(auth["detail"]["reason"], "unknown_key");
    assert!(
        !auth.to_string().contains("not-a-key"),
        "never the key: {auth}"
    );
    let rollback = find("canary_rollback");
    assert_eq!(rollback["detail"]["model"], "default");
    assert_eq!(rollback["detail"]["requests"], 2);
    let budget = find("budget_refused");
    assert_eq!(
        (budget["actor"].as_str(), budget["detail"]["scope"].as_str()),
        (Some("test"), Some("key"))
    );
    let reload = find("reload");
    assert_eq!(
        (
            reload["actor"].as_str(),
            reload["detail"]["result"].as_str()
        ),
        (Some("admin"), Some("success"))
    );
    let admin = find("admin");
    assert_eq!(admin["actor"], "ops");
    assert_eq!(admin["detail"]["what"], "POST /admin/v1/reload");
    assert_eq!(admin["detail"]["result"], 200);
    assert!(!got.iter().any(|l| l.to_string().contains(ADMIN_KEY)));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn audit_lines_that_cannot_be_queued_are_counted_and_never_block_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    // Nobody reads the FIFO yet: the writer is stuck opening it, so the queue fills.
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let toml = format!(
        "[audit]\nenabled = true\npath = \"{}\"\nqueue_capacity = 1\n",
        fifo.display()
    );
    let app = spawn_app(&toml).await;
    for _ in 0..5 {
        let r = app
            .client
            .post(app.url("/api/v1/chat"))
            .json(&json!({"messages": say("x")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let text = app.metrics().await;
    let dropped = series(&text, "chatgate_audit_dropped_total", &[]).unwrap_or(0.0);
    assert!(dropped >= 4.0, "{text}");
    // Let the stuck writer open (and finish) so the runtime can shut down.
    let reader = std::fs::File::open(&fifo).unwrap();
    drop(reader);
}
