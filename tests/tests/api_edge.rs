//! The edge through the real handler (docs/security.md, "The edge"): sealed page cursors,
//! percent-encoded path ids, base64 (non-UTF-8) bodies, and a panic inside the key cache's critical section.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use verdict::domain::auth::ApiKey;
use verdict::domain::TransactionId;
use verdict::ports::DecisionStore;
use verdict_integration::api::{app_over, send, ApiStack, Event, Reply, TestApp};

fn post_tx(key: &ApiKey, changes: Value) -> Event {
    let base = Event::load("post-transaction");
    let mut body = base.body_json();
    for (k, v) in changes.as_object().unwrap() {
        body[k] = v.clone();
    }
    base.without_header("idempotency-key").bearer(key).json(&body)
}

fn history(key: &ApiKey, query: &str) -> Event {
    Event::load("list-transactions").query(query).bearer(key)
}

#[track_caller]
fn assert_cursor_refused(r: &Reply, what: &str) {
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["cursor"], "{what}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_reveal_nothing_open_on_every_container_of_the_deployment_and_only_there() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme-opaque").await;
    for i in 0..3 {
        let body = json!({"id": format!("tx-{i}"), "occurred_at": format!("2018-08-08T10:0{i}:00Z"),
                          "customer_id": "cust-secret"});
        assert_eq!(api.send(&post_tx(&key, body)).await.status, 200);
    }
    let first = api.send(&history(&key, "customer=cust-secret&limit=1")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let cursor = first.body["next_cursor"].as_str().expect("a second page").to_owned();
    // Neither the cursor nor its decoded bytes name the tenant, the customer or a table key
    // (strings long enough not to turn up in random bytes by chance).
    let decoded = String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(&cursor).expect("base64url")).into_owned();
    for secret in ["acme-opaque", "cust-secret", "gsi1pk", "T#acme", "#tx-0"] {
        assert!(
            !cursor.contains(secret) && !decoded.contains(secret),
            "{secret} in {cursor}"
        );
    }
    assert!(cursor.len() <= ::api::MAX_CURSOR_LEN);

    // Another container with the deployment's key goes on where the first stopped.
    let other_container = app_over(&api.stack);
    let second = send(
        &other_container,
        &history(&key, &format!("customer=cust-secret&limit=1&cursor={cursor}")),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["items"][0]["id"], "tx-1", "{}", second.body);

    // A container with another key (a rotated secret) refuses it: a 400, not a read.
    let rotated = ::api::App::new(api.stack.store.clone(), api.stack.blobs.clone(), None);
    let r = send(
        &rotated,
        &history(&key, &format!("customer=cust-secret&limit=1&cursor={cursor}")),
    )
    .await;
    assert_cursor_refused(&r, "another key");

    // The old plain form, even pointing at the caller's own rows, is not accepted any more.
    let plain = URL_SAFE_NO_PAD.encode(
        json!({"pk": "T#acme-opaque#D#tx-1", "sk": "DECISION", "gsi1pk": "T#acme-opaque#C#cust-secret",
               "gsi1sk": "2018-08-08T10:01:00.000000000Z#tx-1"})
        .to_string(),
    );
    let mut flipped = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    flipped[20] ^= 0x01;
    for (raw, what) in [
        (plain, "a plain base64 JSON position"),
        (URL_SAFE_NO_PAD.encode(&flipped), "one bit flipped"),
        (cursor[..cursor.len() - 3].to_owned(), "truncated"),
    ] {
        let r = api
            .send(&history(&key, &format!("customer=cust-secret&cursor={raw}")))
            .await;
        assert_cursor_refused(&r, what);
    }
    // Another listing does not take it either (the rules list of the same tenant).
    let r = api
        .send(
            &Event::load("list-rules")
                .query(&format!("cursor={cursor}"))
                .bearer(&key),
        )
        .await;
    assert_cursor_refused(&r, "another listing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_encoded_id_reads_back_and_bad_encodings_are_400s_naming_the_parameter() {
    let api = ApiStack::new().await;
    let (_, key) = api.tenant("acme-paths").await;
    let r = api.send(&post_tx(&key, json!({"id": "order:1.a"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let get = |path: &str| Event::load("get-transaction").path(path).bearer(&key);
    for path in [
        "/v1/transactions/order:1.a",
        "/v1/transactions/order%3A1.a",
        "/v1/transactions/order%3a1%2Ea",
    ] {
        let r = api.send(&get(path)).await;
        assert_eq!(
            (r.status, &r.body["id"]),
            (200, &json!("order:1.a")),
            "{path}: {}",
            r.body
        );
    }
    // Decoded once: `%253A` is the text `%3A`, which the id rules refuse.
    for path in [
        "/v1/transactions/order%253A1.a",
        "/v1/transactions/order%2F1",
        "/v1/transactions/order%001",
        "/v1/transactions/%2E%2E",
        "/v1/transactions/order%3",
        "/v1/transactions/order%G1",
        "/v1/transactions/%C3%28",
    ] {
        let r = api.send(&get(path)).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), ["id"], "{path}: {}", r.body);
    }
    // The same holds on every route with a path parameter: a list's name, a ruleset's version.
    let r = api
        .send(&Event::load("get-list").path("/v1/lists/a%2F..%2Fb").bearer(&key))
        .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["name"], "{}", r.body);
    let r = api
        .send(&Event::load("get-ruleset").path("/v1/rulesets/%zz").bearer(&key))
        .await;
    r.assert_problem(400, "validation");
    assert_eq!(r.fields(), ["version"], "{}", r.body);
    // The encoded id reaches the review routes decoded too (no review: a 404, not a 400).
    let r = api
        .send(&Event::load("get-review").path("/v1/reviews/order%3A1.a").bearer(&key))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// The path is parsed before a route authenticates; a caller without a genuine credential is
/// told 401, never how its path parameter was malformed (a 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_percent_encoding_is_a_401_before_a_400_for_callers_without_a_genuine_credential() {
    let api = ApiStack::new().await;
    let (tenant, key) = api.tenant("acme-paths-auth").await;
    let expired = api
        .key(
            &tenant,
            "transactions:read",
            Some(verdict::domain::auth::now_epoch() - 10),
        )
        .await;
    let unknown = ApiKey::generate();
    for path in [
        "/v1/transactions/order%G1",
        "/v1/transactions/order%2F1",
        "/v1/rulesets/%zz",
    ] {
        let base = Event::load("get-transaction").path(path);
        for (who, event) in [
            ("no credential", base.clone().without_header("authorization")),
            ("malformed", base.clone().header("authorization", "Basic dXNlcjpwYXNz")),
            ("unknown key", base.clone().bearer(&unknown)),
            ("expired key", base.clone().bearer(&expired)),
        ] {
            let r = api.send(&event).await;
            r.assert_problem(401, "unauthenticated");
            assert!(!r.body.to_string().contains("percent"), "{path} {who}: {}", r.body);
        }
        // A genuine key gets the 400 naming the parameter.
        let r = api.send(&base.bearer(&key)).await;
        r.assert_problem(400, "validation");
    }
    // 404 and 405 still need no credential.
    let r = api
        .send(
            &Event::load("get-transaction")
                .path("/v1/nowhere")
                .without_header("authorization"),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// API Gateway delivers a body that is not UTF-8 base64-encoded with `isBase64Encoded: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base64_body_is_decoded_and_one_that_is_not_utf8_json_is_a_400_naming_body() {
    let api = ApiStack::new().await;
    let (tenant, key) = api.tenant("acme-b64").await;
    let base64_body = |e: Event, bytes: &[u8]| {
        let mut e = e.header("content-length", &bytes.len().to_string());
        e.0["body"] = json!(STANDARD.encode(bytes));
        e.0["isBase64Encoded"] = json!(true);
        e
    };
    let mut body = Event::load("post-transaction").body_json();
    body["id"] = json!("b64-ok");
    let ok = base64_body(post_tx(&key, json!({})), body.to_string().as_bytes());
    let r = api.send(&ok).await;
    assert_eq!((r.status, &r.body["id"]), (200, &json!("b64-ok")), "{}", r.body);

    let mut invalid = body.to_string().replace("b64-ok", "b64-bad").into_bytes();
    let at = invalid.windows(7).position(|w| w == b"b64-bad").unwrap();
    invalid[at + 3] = 0xff; // inside a string: not UTF-8
    for bytes in [
        invalid,
        vec![0xfe, 0xff, b'{', b'}'],
        b"{\"id\": \"\xc3\x28\"}".to_vec(),
    ] {
        let r = api.send(&base64_body(post_tx(&key, json!({})), &bytes)).await;
        r.assert_problem(400, "validation");
        assert_eq!(r.fields(), ["body"], "{}", r.body);
    }
    let stored = api
        .stack
        .store
        .decision(&tenant, &TransactionId::parse("b64-bad").unwrap())
        .await
        .unwrap();
    assert!(stored.is_none(), "nothing stored for a refused body");
}

// The probe exists only in builds with debug assertions (never a release build). It is called
// while the key cache's lock is held; it panics for one key only.
#[cfg(debug_assertions)]
static PANICKING_KEY: std::sync::OnceLock<verdict::domain::auth::KeyHash> = std::sync::OnceLock::new();

#[cfg(debug_assertions)]
fn panic_for_one_key(hash: &verdict::domain::auth::KeyHash) {
    if PANICKING_KEY.get() == Some(hash) {
        panic!("probe: a bug while the key cache is locked");
    }
}

/// The panic poisons the key cache's mutex: with a cache that did not recover (`lock().unwrap()`)
/// every later scoring request of the container would be a 500.
#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_holding_the_key_cache_lock_answers_a_500_with_the_request_id_and_the_caches_serve_on() {
    let api = ApiStack::new().await;
    let (tenant, key) = api.tenant("acme-panic").await;
    let doomed = api.key(&tenant, "transactions:write", None).await;
    PANICKING_KEY.set(doomed.hash()).expect("set once");
    let mut app: TestApp = app_over(&api.stack);
    app.set_key_cache_probe(panic_for_one_key);
    // Warm the key and model caches first.
    assert_eq!(send(&app, &post_tx(&key, json!({"id": "before"}))).await.status, 200);

    let event = post_tx(&doomed, json!({"id": "during"})).request_id("rid-panic-1");
    let (parts, body) = ::api::handle(&app, event.request()).await.into_parts();
    let body: Value = serde_json::from_slice(body.as_ref()).expect("a problem body");
    assert_eq!(parts.status, 500, "{body}");
    assert_eq!(parts.headers["content-type"], "application/problem+json");
    assert_eq!(parts.headers["x-request-id"], "rid-panic-1");
    assert_eq!(body["type"], "https://verdict.dev/problems/internal");
    assert_eq!(body["request_id"], "rid-panic-1");
    assert!(
        !body.to_string().contains("probe"),
        "the panic's message is logged, not sent: {body}"
    );

    // The same container goes on: scoring through the poisoned key cache (and the model
    // cache) and reads answer.
    let r = send(&app, &post_tx(&key, json!({"id": "after"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(
        &app,
        &Event::load("get-transaction")
            .path("/v1/transactions/after")
            .bearer(&key),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The panicked request stored nothing.
    let r = send(
        &app,
        &Event::load("get-transaction")
            .path("/v1/transactions/during")
            .bearer(&key),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
}
