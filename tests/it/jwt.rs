//! JWT client auth over real HTTP: RS256 and ES256 tokens from keys made
//! here, every rejection answered 401 (with its reason in the request log,
//! never the token), JWKS rotation and the IdP going away over a local JWKS
//! server, per-subject limits, `user_hash`, static keys alongside, and the
//! config problems (`none`, HS* without a secret, bad JWKS sources).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::IntoResponse;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::binary::Chatgate;
use crate::support::*;

const ISS: &str = "https://idp.test/";
const AUD: &str = "chatgate";

/// A signing key of the test IdP, with its public JWK.
struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn new(kid: &str, alg: Algorithm, key: EncodingKey) -> Self {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            alg,
            key,
            jwk,
        }
    }

    /// A fresh P-256 key.
    fn es256(kid: &str) -> Self {
        use p256::elliptic_curve::Generate;
        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::SecretKey::generate();
        let der = secret.to_pkcs8_der().unwrap();
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(der.as_bytes()),
        )
    }

    /// The RSA key of the whole test run (3072-bit generation takes a while).
    fn rs256() -> &'static Signer {
        static RSA: OnceLock<Signer> = OnceLock::new();
        RSA.get_or_init(|| {
            Self::new(
                "rsa-1",
                Algorithm::RS256,
                EncodingKey::from_rsa_der(&rsa_der()),
            )
        })
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(&self.kid), claims)
    }

    fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// PKCS#1 DER of the run's RSA private key.
fn rsa_der() -> Vec<u8> {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| {
        use rsa::Generate;
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::PrivateKey::generate();
        key.to_pkcs1_der().unwrap().as_bytes().to_vec()
    })
    .clone()
}

/// The RSA public key as PKCS#1 PEM: what an HS256 confusion attack signs with.
fn rsa_public_pem() -> String {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
    let key = rsa::PrivateKey::from_pkcs1_der(&rsa_der()).unwrap();
    key.to_public_key().to_pkcs1_pem(LineEnding::LF).unwrap()
}

fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims for `sub`.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISS, "aud": AUD, "exp": now() + 300, "iat": now()})
}

fn user_hash(sub: &str) -> String {
    hex::encode(&Sha256::digest(sub.as_bytes())[..8])
}

/// `[auth.jwt.idp]` over `source` (a `jwks_file = …` or `jwks_url = …` line).
fn idp_toml(source: &str, extra: &str) -> String {
    format!(
        r#"
[auth.jwt.idp]
{source}
issuer = "{ISS}"
audience = "{AUD}"
algorithms = ["RS256", "ES256"]
{extra}
"#
    )
}

/// A JWKS file in a temporary dir, and its `jwks_file` line.
fn jwks_file(signers: &[&Signer]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(signers)).unwrap();
    let line = format!("jwks_file = \"{}\"", path.display());
    (dir, line)
}

async fn chat_as(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(token)
        .json(&json!({"messages": say("hello")}))
        .send()
        .await
        .unwrap()
}

async fn assert_unauthorized(response: reqwest::Response, case: &str) {
    assert_eq!(response.status(), 401, "{case}");
    assert_eq!(
        response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "{case}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{case}: {body}");
}

/// A local IdP serving a JWKS that the test can swap, count and take down.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(initial: String) -> Self {
        let body = Arc::new(Mutex::new(initial));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (b, h) = (b.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let text = b.lock().unwrap().clone();
                    // No keep-alive: once the server stops, a fetch cannot
                    // reach it through a pooled connection.
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::CONNECTION, "close"),
                        ],
                        text,
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            body,
            hits,
            task,
        }
    }

    fn serve(&self, text: String) {
        *self.body.lock().unwrap() = text;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn line(&self) -> String {
        format!("jwks_url = \"{}\"\njwks_refresh = \"1h\"", self.url)
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_accepted_and_static_keys_still_work() {
    let rsa = Signer::rs256();
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[rsa, &ec]);
    let app = spawn_app(&idp_toml(&source, "")).await;

    let r = chat_as(&app, &rsa.sign(&claims("alice"))).await;
    assert_eq!(r.status(), 200, "RS256");
    let r = chat_as(&app, &ec.sign(&claims("bob"))).await;
    assert_eq!(r.status(), 200, "ES256");
    // No `kid`: the keys whose algorithm fits are tried.
    let r = chat_as(&app, &ec.sign_as(Algorithm::ES256, None, &claims("carol"))).await;
    assert_eq!(r.status(), 200, "ES256 without kid");
    let r = app.chat(json!({"messages": say("hello")})).await;
    assert_eq!(r.status(), 200, "the static key");
    let r = chat_as(&app, "not-a-key").await;
    assert_unauthorized(r, "an unknown static key").await;
}

/// Every bad token, with the reason the request log must give.
fn bad_tokens(rsa: &Signer, ec: &Signer) -> Vec<(&'static str, String)> {
    let mut expired = claims("u");
    expired["exp"] = json!(now() - 3600);
    let mut no_exp = claims("u");
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut future = claims("u");
    future["nbf"] = json!(now() + 3600);
    let mut wrong_iss = claims("u");
    wrong_iss["iss"] = json!("https://evil.test/");
    let mut wrong_aud = claims("u");
    wrong_aud["aud"] = json!("someone-else");
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("u"))
    );
    let confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(rsa.kid.clone());
        let key = EncodingKey::from_secret(rsa_public_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims("u"), &key).unwrap()
    };
    let tampered = {
        let token = ec.sign(&claims("u"));
        let (rest, sig) = token.rsplit_once('.').unwrap();
        let mut sig: Vec<char> = sig.chars().collect();
        let mid = sig.len() / 2;
        sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
        format!("{rest}.{}", sig.into_iter().collect::<String>())
    };
    vec![
        ("expired", ec.sign(&expired)),
        ("missing_exp", ec.sign(&no_exp)),
        ("not_yet_valid", ec.sign(&future)),
        ("wrong_issuer", ec.sign(&wrong_iss)),
        ("wrong_audience", ec.sign(&wrong_aud)),
        ("algorithm_not_allowed", none),
        ("algorithm_not_allowed", confused),
        (
            "unknown_kid",
            ec.sign_as(Algorithm::ES256, Some("nobody"), &claims("u")),
        ),
        ("bad_signature", tampered),
        // RS512 with the right key, but only RS256 and ES256 are listed.
        (
            "algorithm_not_allowed",
            rsa.sign_as(Algorithm::RS512, Some(&rsa.kid), &claims("u")),
        ),
        (
            "malformed",
            "eyJhbGciOiJFUzI1NiJ9.bm90LWpzb24.c2ln".to_owned(),
        ),
    ]
}

#[tokio::test]
async fn every_bad_token_is_answered_401_unauthorized() {
    let rsa = Signer::rs256();
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[rsa, &ec]);
    let app = spawn_app(&idp_toml(&source, "")).await;
    for (reason, token) in bad_tokens(rsa, &ec) {
        assert_unauthorized(chat_as(&app, &token).await, reason).await;
    }
}

/// The real binary at `RUST_LOG=trace`: each refusal's request line names
/// its reason, an accepted token's line has `key_id` = the IdP and its
/// `user_hash`, and no token, signature or subject is printed anywhere.
#[tokio::test]
async fn the_request_log_names_each_reason_and_never_a_token_or_subject() {
    let rsa = Signer::rs256();
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[rsa, &ec]);
    let subject = "subject-LOGTEST-7f3a91";
    let gw = Chatgate::with_config(&idp_toml(&source, ""))
        .env("RUST_LOG", "trace")
        .spawn()
        .await;
    let client = reqwest::Client::new();
    let good = ec.sign(&claims(subject));
    let cases = bad_tokens(rsa, &ec);
    for (_, token) in cases.iter() {
        let r = client
            .post(gw.url("/api/v1/chat"))
            .bearer_auth(token)
            .json(&json!({"messages": say("hello")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        r.bytes().await.unwrap();
    }
    let r = client
        .post(gw.url("/api/v1/chat"))
        .bearer_auth(&good)
        .json(&json!({"messages": say("hello")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    let request_lines = |gw: &crate::support::binary::Running| -> Vec<Value> {
        gw.events()
            .into_iter()
            .filter(|e| e["target"] == "chatgate::request")
            .collect()
    };
    let total = cases.len() + 1;
    assert!(
        eventually(Duration::from_secs(10), || request_lines(&gw).len()
            >= total)
        .await,
        "{}",
        gw.output()
    );
    let lines = request_lines(&gw);
    let reasons: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["auth_failure"].as_str())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(reason, _)| *reason).collect();
    assert_eq!(reasons, expected);
    let ok = lines.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(ok["key_id"], "idp");
    assert_eq!(ok["user_hash"], user_hash(subject));

    let (_, output) = gw.stop().await;
    assert!(!output.contains(subject), "the subject appears in the logs");
    for token in cases.iter().map(|(_, t)| t).chain([&good]) {
        let signature = token.rsplit('.').next().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        assert!(
            !output.contains(payload.get(..20).unwrap_or(payload)),
            "a token payload was logged"
        );
        if signature.len() > 10 {
            assert!(!output.contains(signature), "a token signature was logged");
        }
    }
}

#[tokio::test]
async fn a_rotated_key_triggers_one_early_refresh_and_then_passes() {
    let a = Signer::es256("key-a");
    let b = Signer::es256("key-b");
    let c = Signer::es256("key-c");
    let idp = JwksServer::start(jwks(&[&a])).await;
    let app = spawn_app(&idp_toml(&idp.line(), "")).await;
    assert_eq!(idp.hits(), 1, "fetched once at start");
    assert_eq!(chat_as(&app, &a.sign(&claims("u"))).await.status(), 200);

    idp.serve(jwks(&[&b]));
    // Many requests at once with the new kid: they wait on one refresh.
    let token = b.sign(&claims("u"));
    let results = futures_util::future::join_all((0..8).map(|_| chat_as(&app, &token))).await;
    for r in results {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(idp.hits(), 2, "one early refresh for all of them");

    // Another unknown kid at once: the early refresh is rate-limited.
    idp.serve(jwks(&[&b, &c]));
    let r = chat_as(&app, &c.sign(&claims("u"))).await;
    assert_unauthorized(r, "a second unknown kid within the interval").await;
    assert_eq!(idp.hits(), 2, "no second early refresh");
    // The old key is gone from the set.
    assert_unauthorized(chat_as(&app, &a.sign(&claims("u"))).await, "rotated out").await;
}

#[tokio::test]
async fn when_the_idp_goes_away_the_last_good_keys_keep_working_and_a_warn_is_logged() {
    let a = Signer::es256("key-a");
    let idp = JwksServer::start(jwks(&[&a])).await;
    let gw = Chatgate::with_config(&idp_toml(&idp.line(), ""))
        .spawn()
        .await;
    let client = reqwest::Client::new();
    let send = |token: String| {
        client
            .post(gw.url("/api/v1/chat"))
            .bearer_auth(token)
            .json(&json!({"messages": say("hello")}))
            .send()
    };
    assert_eq!(send(a.sign(&claims("u"))).await.unwrap().status(), 200);
    idp.stop().await;

    // An unknown kid makes it refresh now, against the stopped IdP.
    let stranger = Signer::es256("key-x");
    assert_eq!(
        send(stranger.sign(&claims("u"))).await.unwrap().status(),
        401
    );
    let warned = || {
        gw.events().into_iter().any(|e| {
            e["level"] == "WARN"
                && e["message"] == "JWKS refresh failed; keeping the last good keys"
        })
    };
    assert!(
        eventually(Duration::from_secs(10), warned).await,
        "{}",
        gw.output()
    );
    assert_eq!(
        send(a.sign(&claims("u"))).await.unwrap().status(),
        200,
        "last good keys"
    );
    gw.stop().await;
}

#[tokio::test]
async fn each_subject_of_an_idp_has_its_own_rate_limit_bucket() {
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[&ec]);
    let app = spawn_app(&idp_toml(&source, "requests_per_minute = 1")).await;
    let alice = ec.sign(&claims("alice"));
    assert_eq!(chat_as(&app, &alice).await.status(), 200);
    let r = chat_as(&app, &alice).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "per-user rate limit exceeded, retry later"
    );
    assert_eq!(
        chat_as(&app, &ec.sign(&claims("bob"))).await.status(),
        200,
        "bob has his own bucket"
    );
    assert_eq!(
        app.chat(json!({"messages": say("hi")})).await.status(),
        200,
        "static keys are not per-user"
    );
}

#[tokio::test]
async fn per_subject_limits_are_shared_through_redis() {
    let Some(server) = crate::support::redis::RedisServer::start().await else {
        return;
    };
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[&ec]);
    let toml = idp_toml(&source, "requests_per_minute = 1");
    let one = crate::support::redis::spawn_on(&server, &toml, "deny").await;
    let two = crate::support::redis::spawn_on(&server, &toml, "deny").await;
    crate::support::redis::wait_shared(&one).await;
    crate::support::redis::wait_shared(&two).await;
    let alice = ec.sign(&claims("alice"));
    assert_eq!(chat_as(&one, &alice).await.status(), 200);
    assert_eq!(
        chat_as(&two, &alice).await.status(),
        429,
        "the other replica shares the bucket"
    );
    assert_eq!(chat_as(&two, &ec.sign(&claims("bob"))).await.status(), 200);
    let mut conn = server.connection().await;
    let key = format!("chatgate:rl:{{user:idp:{}}}", user_hash("alice"));
    let exists: bool = ::redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "{key} is in redis");
}

#[test]
fn unsafe_or_incomplete_jwt_configs_are_config_problems_in_every_profile() {
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[&ec]);
    let with_algs = |algs: &str| {
        format!(
            "[auth.jwt.idp]\n{source}\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\nalgorithms = {algs}\n"
        )
    };
    let cases = [
        (
            with_algs(r#"["none"]"#),
            "auth.jwt.idp.algorithms",
            "never accepted",
        ),
        (with_algs("[]"), "auth.jwt.idp.algorithms", "at least one"),
        (
            with_algs(r#"["HS256"]"#),
            "auth.jwt.idp.algorithms",
            "hs_secret_env",
        ),
        (
            format!(
                "{}hs_secret_env = \"UNSET_SECRET\"\n",
                with_algs(r#"["HS256"]"#)
            ),
            "auth.jwt.idp.hs_secret_env",
            "not set",
        ),
        (
            with_algs(r#"["ES512"]"#),
            "auth.jwt.idp.algorithms",
            "expected one of",
        ),
        (
            idp_toml("jwks_file = \"/nonexistent/jwks.json\"", ""),
            "auth.jwt.idp.jwks_file",
            "cannot read",
        ),
        (
            idp_toml(
                &format!("{source}\njwks_url = \"https://idp.test/jwks\""),
                "",
            ),
            "auth.jwt.idp",
            "not both",
        ),
        (idp_toml("", ""), "auth.jwt.idp", "jwks_file"),
        (
            with_algs(r#"["ES256"]"#).replace("[auth.jwt.idp]", "[auth.jwt.test]"),
            "auth.jwt.test",
            "also a client key id",
        ),
    ];
    for profile in ["development", "production"] {
        for (toml, path, words) in &cases {
            let problems = load_config_profile(profile, toml, &[]).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.path.starts_with(path) && p.message.contains(words)),
                "{profile}: expected {path}: …{words}… in {problems:?}"
            );
        }
    }
    let bad_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad_file.path(),
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
    )
    .unwrap();
    let toml = idp_toml(
        &format!("jwks_file = \"{}\"", bad_file.path().display()),
        "",
    );
    let problems = load_config(&toml, &[]).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.path == "auth.jwt.idp.jwks_file" && p.message.contains("no usable public")),
        "a JWKS with only a symmetric key: {problems:?}"
    );
    let secret = format!(
        "{}hs_secret_env = \"IDP_SECRET\"\n",
        with_algs(r#"["HS256"]"#)
    );
    assert!(
        load_config(
            &secret,
            &[("IDP_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")]
        )
        .is_ok()
    );
}

#[tokio::test]
async fn a_jwks_url_that_cannot_be_fetched_at_start_is_a_config_problem() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let out = Chatgate::with_config(&idp_toml(&format!("jwks_url = \"{url}\""), ""))
        .output()
        .await;
    assert!(!out.success());
    let all = out.all();
    assert!(all.contains("invalid configuration"), "{all}");
    assert!(all.contains("auth.jwt.idp.jwks_url"), "{all}");
}

#[tokio::test]
async fn a_tokens_hmac_secret_comes_only_from_hs_secret_env() {
    let secret = "hs-secret-0123456789abcdef0123456789";
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[&ec]);
    let toml = format!(
        "[auth.jwt.idp]\n{source}\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\nalgorithms = [\"HS256\"]\nhs_secret_env = \"IDP_SECRET\"\n"
    );
    let app = spawn_app_with_env(&toml, &[("IDP_SECRET", secret)]).await;
    let good = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("u"),
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(chat_as(&app, &good).await.status(), 200);
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("u"),
        &EncodingKey::from_secret(b"another-secret-entirely-0123456789").unwrap(),
    )
    .unwrap();
    assert_unauthorized(chat_as(&app, &forged).await, "another secret").await;
    // ES256 is not listed here, though the key is in the JWKS.
    assert_unauthorized(
        chat_as(&app, &ec.sign(&claims("u"))).await,
        "unlisted ES256",
    )
    .await;
}

#[tokio::test]
async fn a_cached_token_of_a_rotated_away_key_is_refused_after_the_rotation() {
    let a = Signer::es256("key-a");
    let b = Signer::es256("key-b");
    let idp = JwksServer::start(jwks(&[&a])).await;
    let app = spawn_app(&idp_toml(&idp.line(), "")).await;
    // The same token twice: the second is answered from the verified cache.
    let token = a.sign(&claims("u"));
    assert_eq!(chat_as(&app, &token).await.status(), 200);
    assert_eq!(chat_as(&app, &token).await.status(), 200);

    // The IdP rotates `key-a` out; a token of the new key makes chatgate
    // fetch the new set.
    idp.serve(jwks(&[&b]));
    assert_eq!(chat_as(&app, &b.sign(&claims("v"))).await.status(), 200);
    assert_eq!(idp.hits(), 2, "the rotation was fetched");
    // The very same bytes as before, cached as good: refused now.
    assert_unauthorized(chat_as(&app, &token).await, "cached, key rotated out").await;
}

#[tokio::test]
async fn an_expired_cached_token_is_refused() {
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[&ec]);
    let app = spawn_app(&idp_toml(&source, "leeway = \"0s\"")).await;
    let mut short = claims("u");
    let exp = now() + 2;
    short["exp"] = json!(exp);
    let token = ec.sign(&short);
    assert_eq!(chat_as(&app, &token).await.status(), 200, "fresh");
    assert_eq!(chat_as(&app, &token).await.status(), 200, "cached");
    // Waiting on the wall clock is the point here: `exp` is in seconds.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_unauthorized(chat_as(&app, &token).await, "cached, now expired").await;
}

#[tokio::test]
async fn a_refused_token_is_not_remembered_and_a_good_one_still_passes_after_it() {
    let ec = Signer::es256("ec-1");
    let (_dir, source) = jwks_file(&[&ec]);
    let app = spawn_app(&idp_toml(&source, "")).await;
    let mut wrong = claims("u");
    wrong["aud"] = json!("someone-else");
    let refused = ec.sign(&wrong);
    for _ in 0..2 {
        assert_unauthorized(chat_as(&app, &refused).await, "wrong audience").await;
    }
    assert_eq!(chat_as(&app, &ec.sign(&claims("u"))).await.status(), 200);
    assert_unauthorized(chat_as(&app, &refused).await, "still refused").await;
}
