//! `/openapi.json` and `/docs`: the spec documents every route and validates
//! as OpenAPI 3.1 with real answers conforming (a Python validator in the
//! venv `CHATGATE_DOCS_PYTHON` names; `.ci/run` creates it: skipped loudly
//! without it, except under CI), Swagger UI is served from the binary under
//! its own CSP, and `docs.enabled = false` turns both off.

use crate::support::external::{required_under_ci, run};
use crate::support::*;
use serde_json::Value;

const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

fn csp(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn openapi_json_needs_no_key_and_documents_every_route_its_errors_and_security_schemes() {
    let app = spawn_app("").await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/api/v1/chat",
        "/api/v1/chat/completions",
        "/api/v1/messages",
        "/api/v1/models",
        "/api/v1/models/{id}",
        "/health",
        "/health/ready",
        "/metrics",
        "/admin/v1/config",
        "/admin/v1/reload",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is not documented");
    }
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "x-api-key");
    assert_eq!(schemes["admin_bearer"]["scheme"], "bearer");
    let error = &spec["components"]["schemas"]["ErrorBody"];
    for field in ["code", "message", "type", "param"] {
        assert!(error["properties"][field].is_object(), "error.{field}");
    }
    assert!(
        error["properties"]["code"]["pattern"]
            .as_str()
            .unwrap()
            .contains("rate_limited")
    );
    let chat = &spec["paths"]["/api/v1/chat"]["post"];
    assert!(chat["responses"]["4XX"].is_object());
    assert_eq!(chat["security"][0]["bearer"], serde_json::json!([]));
}

#[tokio::test]
async fn docs_and_its_assets_are_served_from_the_binary_under_their_own_csp_while_api_routes_keep_the_strict_one()
 {
    let app = spawn_app("").await;
    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert_eq!(csp(&page), DOCS_CSP);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // Absolute links: `/docs` (no slash) resolves `./x` to `/x`.
    assert!(!html.contains("\"./"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page points off-origin: {html}"
    );
    // Every file the page loads is ours, under the same CSP.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("/docs/") && (s.ends_with(".js") || s.ends_with(".css")))
        .collect();
    assert!(assets.len() >= 4, "{assets:?}");
    for asset in assets {
        let response = app.get(asset).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(csp(&response), DOCS_CSP, "{asset}");
    }
    let initializer = app.get("/docs/swagger-initializer.js").await;
    assert!(initializer.text().await.unwrap().contains("/openapi.json"));
    let api = app
        .client
        .get(app.url("/api/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    let strict = "default-src 'none'; frame-ancestors 'none'";
    assert_eq!(csp(&api), strict);
    assert_eq!(csp(&app.get("/openapi.json").await), strict);
}

#[tokio::test]
async fn docs_enabled_false_turns_openapi_json_and_docs_off() {
    let app = spawn_app("[docs]\nenabled = false\n").await;
    for path in ["/openapi.json", "/docs", "/docs/swagger-ui.css"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn the_spec_validates_as_openapi_3_1_and_real_answers_of_every_route_conform_to_it() {
    let Some(python) = required_under_ci(
        "CHATGATE_DOCS_PYTHON",
        "the_spec_validates_as_openapi_3_1_and_real_answers_of_every_route_conform_to_it",
        "a python with `openapi-spec-validator` installed",
    ) else {
        return;
    };
    let app = spawn_app("[models.default]\ntargets = [\"mock:echo\"]\n").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/sdk/openapi_check.py");
    run(python, script, &[&app.url(""), KEY]).await;
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_spec() {
    let Some(python) = required_under_ci(
        "CHATGATE_DOCS_PYTHON",
        "schemathesis_finds_no_server_error_and_no_answer_off_the_spec",
        "a python with `schemathesis` installed",
    ) else {
        return;
    };
    let app = spawn_app("[models.default]\ntargets = [\"mock:echo\"]\n").await;
    // schemathesis's own entry point, run by the venv's python, in a scratch
    // directory: it writes a `.schemathesis/` cache where it runs.
    let scratch = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(python)
        .current_dir(scratch.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(app.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args(["--max-examples", "20", "--workers", "2", "--seed", "1"])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        ])
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    // Generous bound: it takes well under a minute here.
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("schemathesis ran past 120 s")
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
