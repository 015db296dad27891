//! A real browser for tests: chromedriver on a free port driving a headless
//! Chromium with a fresh profile. Without them the test is skipped loudly, or
//! fails when `CI` is set (.ci/run installs both).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// Chromium under chromedriver; the driver is killed when this drops.
pub struct Browser {
    pub client: Client,
    driver: Driver,
    _profile: tempfile::TempDir,
}

/// The chromedriver child, killed on drop: also when the session never starts.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Browser {
    /// A fresh headless Chromium, or `None` (after a loud message) when
    /// chromium or chromedriver is not installed and this is not CI.
    pub async fn start() -> Option<Self> {
        if !(on_path("chromium") && on_path("chromedriver")) {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!(
                    "chromium or chromedriver is not on PATH, and CI must have them (.ci/run installs them)"
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!! SKIPPED: chromium/chromedriver not on PATH; this browser test did not run. \
                 Install them (apt-get install chromium chromium-driver) to run it. !!!!!\n"
            );
            return None;
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver(driver);
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // The machine's network is closed: these stop Chromium trying.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1100,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let caps = match caps {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        // chromedriver takes a moment to listen: retry the session until a deadline.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            // Plain HTTP to a loopback driver: no TLS stack needed.
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    panic!("no WebDriver session from chromedriver on port {port}: {e}");
                }
            }
        };
        Some(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Ends the session and the driver (the browser goes with it).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        drop(self.driver);
    }
}
