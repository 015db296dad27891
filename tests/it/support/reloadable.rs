//! An in-process app loaded from config files it can reload, and the admin
//! key its tests use (live reload, canaries, audit).

use chatgate::App;
use chatgate::config::{self, Environment, LoadOptions};
use serde_json::Value;

use super::*;

pub const ADMIN_KEY: &str = "admin-secret-key";

/// `[admin.keys.ops]` for [`ADMIN_KEY`].
pub fn admin_toml() -> String {
    format!(
        "[admin.keys.ops]\nsha256 = \"{}\"\n",
        config::sha256_hex(ADMIN_KEY)
    )
}

/// An in-process app loaded from files it can reload (`development.toml`
/// holds `extra`, over the test base config).
pub struct Reloadable {
    pub app: TestApp,
    pub dir: tempfile::TempDir,
}

impl Reloadable {
    pub async fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), base_toml()).unwrap();
        std::fs::write(dir.path().join("development.toml"), extra).unwrap();
        let env: Vec<(String, String)> = upstream_env()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let opts = LoadOptions {
            config_dir: dir.path().to_owned(),
            app_env: Some("development".into()),
            extra_file: None,
            env: Environment::from_pairs(env),
        };
        let config = config::load(&opts).unwrap_or_else(|p| panic!("{p:?}"));
        let app = App::build_reloadable(config, Some(opts), axum::Router::new())
            .await
            .unwrap();
        Self {
            app: serve(app).await,
            dir,
        }
    }

    pub fn write(&self, extra: &str) {
        std::fs::write(self.dir.path().join("development.toml"), extra).unwrap();
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
    }

    pub async fn reload(&self) -> (u16, Value) {
        let r = self.admin(reqwest::Method::POST, "/admin/v1/reload").await;
        (r.status().as_u16(), r.json().await.unwrap())
    }
}
