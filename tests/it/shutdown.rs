//! Graceful shutdown of the real binary: on SIGTERM or SIGINT it stops taking
//! connections, lets in-flight answers and streams finish, and exits 0.

use std::time::Duration;

use crate::support::binary::{Chatgate, Running, Signal};
use crate::support::*;
use serde_json::{Value, json};

const DRAINING: &str = "shutting down: draining in-flight requests";
/// Long enough for the signal to land while an answer is still on its way.
const SLOW: Duration = Duration::from_secs(3);

/// `default` → a slow whole answer; `streamed` → a slow stream of `words`.
async fn start(whole: &Upstream, streamed: &Upstream, words: &[String]) -> Running {
    whole.push([Reply::Delayed(
        SLOW,
        Box::new(Reply::text("the whole answer")),
    )]);
    let pause = SLOW / u32::try_from(words.len()).unwrap();
    streamed.push([Reply::SlowStream(words.to_vec(), pause)]);
    let toml = format!(
        "{}{}\n[models.default]\ntargets = [\"whole:m1\"]\n[models.streamed]\ntargets = [\"streamed:m2\"]\n",
        Provider::openai("whole", whole).timeout("20s"),
        Provider::openai("streamed", streamed).timeout("20s"),
    );
    Chatgate::with_config(&toml)
        .envs(upstream_env())
        .spawn()
        .await
}

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i} ")).collect()
}

/// Sends a whole-answer chat in the background: its status and body.
fn whole_answer(gw: &Running) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = reqwest::Client::new()
        .post(gw.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .json(&json!({"messages": say("hi")}));
    tokio::spawn(async move {
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    })
}

/// The text of a native stream's deltas, and whether it ended with `done`.
fn stream_text(body: &str) -> (String, bool) {
    let events = parse_sse(body);
    let text = delta_text(&events);
    let done = events.last().and_then(|e| e.event.as_deref()) == Some("done");
    (text, done)
}

/// Indexes of the log events with `message`.
fn positions(events: &[Value], message: &str) -> Vec<usize> {
    (0..events.len())
        .filter(|&i| events[i]["message"] == message)
        .collect()
}

#[tokio::test]
async fn sigterm_drains_an_inflight_answer_and_stream_then_exits_zero() {
    let (whole, streamed) = (Upstream::openai().await, Upstream::openai().await);
    let words = words(15);
    let mut gw = start(&whole, &streamed, &words).await;

    let answer = whole_answer(&gw);
    let mut stream = reqwest::Client::new()
        .post(gw.url("/api/v1/chat"))
        .bearer_auth(KEY)
        .json(&json!({"model": "streamed", "messages": say("hi"), "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    let mut body = String::from_utf8(first.to_vec()).unwrap();
    assert!(eventually(Duration::from_secs(10), || whole.calls() == 1).await);

    gw.signal(Signal::TERM);
    assert!(
        eventually(Duration::from_secs(10), || gw.event(DRAINING).is_some()).await,
        "no drain:\n{}",
        gw.output()
    );
    // The listener is closed before the drain is logged: no new connections.
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "a new connection was accepted while draining"
    );

    while let Some(chunk) = stream.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let (text, done) = stream_text(&body);
    assert_eq!(text, words.concat(), "the stream finished whole");
    assert!(done, "the stream ended with done: {body}");
    let (status, v) = answer.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["message"]["content"], "the whole answer");

    let exit = gw.wait().await;
    assert_eq!(exit.code(), Some(0), "{}", gw.output());
    let events = gw.events();
    assert_eq!(positions(&events, "SIGTERM received").len(), 1);
    let drained = positions(&events, DRAINING)[0];
    let requests = positions(&events, "request");
    // Each line is written when its answer ends (a stream's too, per the
    // contract): both after the drain began, so both really were in flight.
    assert_eq!(requests.len(), 2, "{}", gw.output());
    assert!(drained < requests[0] && drained < requests[1]);
    assert_eq!(events[requests[1]]["status"], 200);
    assert_eq!(positions(&events, "all connections drained").len(), 1);
}

#[tokio::test]
async fn sigint_drains_an_inflight_answer_then_exits_zero() {
    let (whole, streamed) = (Upstream::openai().await, Upstream::openai().await);
    let mut gw = start(&whole, &streamed, &words(1)).await;
    let answer = whole_answer(&gw);
    assert!(eventually(Duration::from_secs(10), || whole.calls() == 1).await);

    gw.signal(Signal::INT);
    assert!(
        eventually(Duration::from_secs(10), || gw.event(DRAINING).is_some()).await,
        "no drain:\n{}",
        gw.output()
    );
    let (status, v) = answer.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["message"]["content"], "the whole answer");

    let exit = gw.wait().await;
    assert_eq!(exit.code(), Some(0), "{}", gw.output());
    let events = gw.events();
    assert_eq!(positions(&events, "SIGINT received").len(), 1);
    let drained = positions(&events, DRAINING)[0];
    let requests = positions(&events, "request");
    assert_eq!(requests.len(), 1, "{}", gw.output());
    assert!(
        drained < requests[0],
        "the answer was in flight when the drain began"
    );
}
