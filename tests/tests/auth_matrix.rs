//! OIDC bearer JWTs through the real handler, and the auth matrix extended to them.
//!
//! A local issuer: RSA and EC keys generated here, the JWKS served on 127.0.0.1 by the test
//! (tests/src/oidc.rs), the issuer configured in the table as `verdict oidc add` does. The
//! API-key half of the matrix (none, malformed, unknown, revoked, expired, each missing scope on
//! every route) is `every_authenticated_route_refuses_every_bad_credential` in api_handler.rs;
//! this file adds tokens and another tenant's credentials on every route, without repeating it.

use serde_json::{json, Value};
use std::time::Duration;
use verdict::domain::auth::{now_epoch, ApiKey};
use verdict::domain::oidc::IssuerConfig;
use verdict_integration::api::{ApiStack, Event, Reply, ALL_SCOPES, AUTHENTICATED};
use verdict_integration::oidc::{forged_hs256, forged_none, JwksServer, SigningKey};
use verdict_integration::unique_suffix;

const AUDIENCE: &str = "verdict-api";

struct Oidc {
    api: ApiStack,
    acme_key: ApiKey,
    issuer: String,
    rsa: SigningKey,
    ec: SigningKey,
    jwks: JwksServer,
}

impl Oidc {
    async fn new() -> Oidc {
        let api = ApiStack::new().await;
        let (acme, acme_key) = api.tenant("acme").await;
        let rsa = SigningKey::rsa("rsa-1");
        let ec = SigningKey::ec("ec-1");
        let jwks = JwksServer::start(&[&rsa, &ec]).await;
        let issuer = format!("https://idp-{}.example/", unique_suffix());
        let config = IssuerConfig::new(&issuer, &jwks.url, AUDIENCE, acme.clone(), None, None, None, None).unwrap();
        assert!(api.stack.store.put_issuer(&config, now_epoch()).await.unwrap());
        Oidc {
            api,
            acme_key,
            issuer,
            rsa,
            ec,
            jwks,
        }
    }

    /// Claims of a good token for acme with `scopes` (space-separated, as an IdP sends them).
    fn claims(&self, scopes: &str) -> Value {
        let now = now_epoch();
        json!({"iss": self.issuer, "aud": AUDIENCE, "sub": "alice@acme", "tenant": "acme",
               "iat": now - 5, "exp": now + 300, "scope": scopes})
    }

    fn all(&self) -> Value {
        self.claims(&ALL_SCOPES.replace(',', " "))
    }

    fn with(&self, key: &str, value: Value) -> Value {
        let mut c = self.all();
        c[key] = value;
        c
    }

    async fn send(&self, event: &Event, token: &str) -> Reply {
        self.api
            .send(&event.clone().authorization(&format!("Bearer {token}")))
            .await
    }
}

fn detail(r: &Reply) -> &str {
    r.body["detail"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_score_read_and_act_as_their_subject() {
    let o = Oidc::new().await;
    let post = Event::load("post-transaction");
    let rs = o.rsa.sign(&o.all());
    let r = o.send(&post, &rs).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();

    let es = o.ec.sign(&o.all());
    let get = Event::load("get-transaction").path(&format!("/v1/transactions/{id}"));
    let r = o.send(&get, &es).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], id);
    // The same decision read with the tenant's API key: the token acted for acme.
    let r = o.api.send(&get.clone().bearer(&o.acme_key)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A replay with the token is the same decision (the token path has no key item to re-read).
    let r = o.send(&post, &rs).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], id);
    assert_eq!(
        o.jwks.hits(),
        1,
        "the JWKS was fetched once and then served from the cache"
    );

    // The actor a token records is `oidc:<sha256(iss)[..8]>:<sub>`.
    let label = Event::load("label-transaction").path(&format!("/v1/transactions/{id}/label"));
    let r = o.send(&label, &es).await;
    assert!(r.status < 300, "{}", r.body);
    let r = o.api.send(&get.clone().bearer(&o.acme_key)).await;
    assert!(
        r.body.to_string().contains(&format!(
            r#""origin":"api:{}""#,
            verdict::domain::oidc::actor(&o.issuer, "alice@acme")
        )),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_a_401_naming_why_and_stores_nothing() {
    let o = Oidc::new().await;
    let now = now_epoch();
    let stranger = SigningKey::ec("ec-1");
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", o.rsa.sign(&o.with("exp", json!(now - 120))), "expired"),
        (
            "not yet valid",
            o.rsa.sign(&o.with("nbf", json!(now + 600))),
            "not valid yet",
        ),
        (
            "issued in the future",
            o.ec.sign(&o.with("iat", json!(now + 600))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            o.rsa.sign(&o.with("iss", json!("https://evil.example/"))),
            "issuer",
        ),
        (
            "wrong audience",
            o.rsa.sign(&o.with("aud", json!("another-api"))),
            "audience",
        ),
        (
            "no audience",
            {
                let mut c = o.all();
                c.as_object_mut().unwrap().remove("aud");
                o.rsa.sign(&c)
            },
            "audience",
        ),
        (
            "unknown kid",
            SigningKey::rsa("rsa-unknown").sign(&o.all()),
            "no usable key",
        ),
        ("known kid, other key", stranger.sign(&o.all()), "signature"),
        ("alg none", forged_none("rsa-1", &o.all()), "algorithm"),
        ("HS256 with the public key", forged_hs256(&o.rsa, &o.all()), "algorithm"),
        (
            "too long-lived",
            {
                // Relative to the token's own iat, so a second ticking over cannot make it fit.
                let mut c = o.all();
                c["exp"] = json!(c["iat"].as_i64().unwrap() + 3_601);
                o.rsa.sign(&c)
            },
            "longer",
        ),
        ("other tenant", o.rsa.sign(&o.with("tenant", json!("globex"))), "tenant"),
        (
            "no tenant",
            {
                let mut c = o.all();
                c.as_object_mut().unwrap().remove("tenant");
                o.rsa.sign(&c)
            },
            "tenant",
        ),
        (
            "no iat",
            {
                let mut c = o.all();
                c.as_object_mut().unwrap().remove("iat");
                o.rsa.sign(&c)
            },
            "iat",
        ),
        (
            "tampered payload",
            {
                let t = o.rsa.sign(&o.all());
                let other = o.rsa.sign(&o.with("sub", json!("mallory")));
                let p: Vec<&str> = t.split('.').collect();
                let q: Vec<&str> = other.split('.').collect();
                format!("{}.{}.{}", p[0], q[1], p[2])
            },
            "signature",
        ),
    ];
    let post = Event::load("post-transaction");
    let models = Event::load("get-active-model");
    for (name, token, why) in &cases {
        for event in [&models, &post] {
            let r = o.send(event, token).await;
            r.assert_problem(401, "unauthenticated");
            assert!(detail(&r).contains(why), "{name}: {}", r.body);
            assert!(
                r.header("www-authenticate").unwrap().contains("invalid_token"),
                "{name}"
            );
            assert!(
                !r.body.to_string().contains(token.as_str()),
                "{name}: the token is echoed"
            );
        }
    }
    let get = Event::load("get-transaction");
    let r = o.api.send(&get.bearer(&o.acme_key)).await;
    assert_eq!(r.status, 404, "no bad token stored a decision: {}", r.body);
    // Exactly one JWKS fetch for all the cases × 2 routes: the first case that needs a key
    // fetched it, and nothing fetched again, not even the unknown kid (inside the refresh window)
    // or the forged algorithms (refused before any key lookup).
    assert_eq!(o.jwks.hits(), 1, "JWKS fetches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_routes_scope_is_a_403_and_unknown_scopes_are_ignored() {
    let o = Oidc::new().await;
    let t = o.rsa.sign(&o.claims("openid profile transactions:read"));
    let r = o.send(&Event::load("post-transaction"), &t).await;
    r.assert_problem(403, "forbidden");
    assert!(detail(&r).contains("transactions:write"), "{}", r.body);
    let r = o.send(&Event::load("list-transactions"), &t).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The scopes claim as an array works too.
    let mut c = o.all();
    c["scope"] = json!(["models:read"]);
    let r = o.send(&Event::load("get-active-model"), &o.ec.sign(&c)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_on_its_unknown_kid_at_a_bounded_rate() {
    let mut o = Oidc::new().await;
    o.api.app.tokens.min_refresh = Duration::from_millis(400);
    let models = Event::load("get-active-model");
    assert_eq!(o.send(&models, &o.rsa.sign(&o.all())).await.status, 200);
    assert_eq!(o.jwks.hits(), 1);

    // The issuer rotates: rsa-2 replaces rsa-1.
    let next = SigningKey::rsa("rsa-2");
    o.jwks.publish(&[&next, &o.ec]);
    let t = next.sign(&o.all());
    // Inside the refresh window the unknown kid is a 401, and no fetch is made.
    for _ in 0..5 {
        o.send(&models, &t).await.assert_problem(401, "unauthenticated");
    }
    assert_eq!(o.jwks.hits(), 1, "no fetch inside the window");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let r = o.send(&models, &t).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(o.jwks.hits(), 2, "one refresh");
    // The retired key: unknown now, and inside the window again no fetch.
    o.send(&models, &o.rsa.sign(&o.all()))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(o.jwks.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_is_down_is_a_503_with_retry_after_never_a_500() {
    let o = Oidc::new().await;
    o.jwks.stop();
    let t = o.rsa.sign(&o.all());
    // Past ApiStack::send, which refuses every 5xx: this one is meant.
    let event = Event::load("get-active-model").authorization(&format!("Bearer {t}"));
    // The second request is inside the refresh window of the failed fetch: still the outage's
    // 503, not "unknown key" 401 for a valid token.
    for attempt in 0..2 {
        let response = ::api::handle(&o.api.app, event.request()).await;
        assert_eq!(response.status().as_u16(), 503, "request {attempt}");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["type"], "https://verdict.dev/problems/unavailable", "{body}");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "the JWKS address is logged, not sent: {body}"
        );
    }
}

/// Another tenant's credential, key or token, never reads or writes acme's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_key_or_token_never_reaches_this_tenants_data() {
    let o = Oidc::new().await;
    let r = o.api.send(&Event::load("post-transaction").bearer(&o.acme_key)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();

    let (globex, globex_key) = o.api.tenant("globex").await;
    let globex_signer = SigningKey::ec("g-1");
    let globex_jwks = JwksServer::start(&[&globex_signer]).await;
    let globex_iss = format!("https://idp-{}.example/", unique_suffix());
    let c = IssuerConfig::new(&globex_iss, &globex_jwks.url, AUDIENCE, globex, None, None, None, None).unwrap();
    assert!(o.api.stack.store.put_issuer(&c, now_epoch()).await.unwrap());
    let mut claims = o.all();
    claims["iss"] = json!(globex_iss);
    claims["tenant"] = json!("globex");
    let globex_token = globex_signer.sign(&claims);
    // Globex's issuer cannot mint acme tokens: its tenant claim must name globex.
    let mut as_acme = claims.clone();
    as_acme["tenant"] = json!("acme");
    let forged = globex_signer.sign(&as_acme);

    let get = Event::load("get-transaction").path(&format!("/v1/transactions/{id}"));
    let list = Event::load("list-transactions");
    let r = o.api.send(&get.clone().bearer(&globex_key)).await;
    r.assert_problem(404, "not-found");
    let r = o.send(&get, &globex_token).await;
    r.assert_problem(404, "not-found");
    let r = o.send(&list, &globex_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["items"], json!([]), "globex sees none of acme's history");
    o.send(&get, &forged).await.assert_problem(401, "unauthenticated");

    // A globex write with acme's transaction id is globex's own: acme's decision is unchanged.
    let before = o.api.send(&get.clone().bearer(&o.acme_key)).await.body;
    let r = o.send(&Event::load("post-transaction"), &globex_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = o.api.send(&get.clone().bearer(&o.acme_key)).await.body;
    assert_eq!(before["score"], after["score"]);
    assert_eq!(before["request_id"], after["request_id"]);
}

/// Every route × token credentials: valid (authenticated: neither 401 nor 403), expired, wrong
/// audience, missing the route's scope, another tenant's. Exact status and problem type each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_tokens_exactly() {
    let o = Oidc::new().await;
    let now = now_epoch();
    let expired = o.rsa.sign(&o.with("exp", json!(now - 120)));
    let wrong_aud = o.ec.sign(&o.with("aud", json!("another-api")));
    let other_tenant = o.rsa.sign(&o.with("tenant", json!("globex")));
    let valid = o.ec.sign(&o.all());
    for (name, scope) in AUTHENTICATED {
        let event = Event::load(name);
        for (token, why) in [
            (&expired, "expired"),
            (&wrong_aud, "audience"),
            (&other_tenant, "tenant"),
        ] {
            let r = o.send(&event, token).await;
            r.assert_problem(401, "unauthenticated");
            assert!(detail(&r).contains(why), "{name}: {}", r.body);
        }
        let others: Vec<&str> = ALL_SCOPES.split(',').filter(|s| *s != scope).collect();
        let lacking = o.rsa.sign(&o.claims(&others.join(" ")));
        let r = o.send(&event, &lacking).await;
        r.assert_problem(403, "forbidden");
        assert!(detail(&r).contains(scope), "{name}: {}", r.body);

        let r = o.send(&event, &valid).await;
        assert!(
            !matches!(r.status, 401 | 403),
            "{name}: a valid token is authenticated: {}",
            r.body
        );
    }
}
