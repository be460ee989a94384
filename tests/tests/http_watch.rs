//! The api function over real HTTP, served by `cargo lambda watch` against moto.
//!
//! Starts watch the way `make dev` does (cargo-lambda from `.venv`), waits for /v1/health, then
//! scores, replays, reads back, pages, refuses and keeps tenants apart, all over 127.0.0.1.
//!
//! Bounded and self-cleaning:
//! - watch builds the function on the first request: after this test's own build only the api
//!   binary, since `-p api` resolves every dependency to the features the tests do (one build:
//!   workspace-hack/Cargo.toml, checked by `make one-build`); readiness is bounded by
//!   [`READY_WITHIN`], and every request has connect, read and write timeouts;
//! - watch runs under a small bash watchdog ([`GUARD`]) in its own process group. It stops watch
//!   and every process watch started (the function runs in a session of its own, so a process
//!   group kill would miss it) when the test drops its end of a pipe, when the test process is
//!   gone (even after SIGKILL, which runs no destructor), or when watch exits by itself. Ctrl-C in
//!   a terminal does not reach it; the test's exit does;
//! - watch's output goes to a log file under the target directory, printed when the test fails.
//!
//! The previous version signalled the process group with `kill -TERM -<pgid>`. The procps-ng 4.0.2
//! `kill` installed here reads a negative pid after a signal option as more options, and signals
//! `-<first digit>` instead: `kill -TERM -16561` became kill(-1, SIGTERM), every process the user
//! may signal, the test runner included; `kill -TERM -37` signalled the empty group 3, so watch
//! lived on and `Child::wait` never returned. The guard signals positive pids with bash's builtin.

use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use verdict::domain::auth::ApiKey;
use verdict_integration::api::ApiStack;
use verdict_integration::endpoint;

/// The first request builds the function under watch: the api binary only (seconds), unless the
/// dependencies' features drift apart from the tests' again (then the AWS SDK: minutes on two cores).
const READY_WITHIN: Duration = Duration::from_secs(900);
/// One request, once the function is up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The watchdog: `bash -c GUARD verdict-watch-guard TEST_PID COMMAND...`, stdin a pipe from the
/// test, stdout and stderr the log file. It ignores SIGINT and SIGHUP (a Ctrl-C aimed at the test
/// must not stop it before it has cleaned up); SIGTERM makes it clean up at once.
const GUARD: &str = r#"
set -u
trap '' INT HUP
trap 'stop_requested=1' TERM
stop_requested=0
parent="$1"
shift
"$@" </dev/null &
watch=$!
echo "[guard] cargo lambda watch is pid $watch; the test is pid $parent"

# "pid:starttime" of every descendant of $1: the start time tells a process from a later one
# that reuses its pid.
tree() {
    local child st
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        st=$(cat "/proc/$child/stat" 2>/dev/null) || continue
        st=${st##*) }
        set -- $st
        echo "$child:${20}"
        tree "$child"
    done
}
# True if "pid:starttime" $1 is still that process.
same() {
    local entry="$1" st
    st=$(cat "/proc/${entry%%:*}/stat" 2>/dev/null) || return 1
    st=${st##*) }
    set -- $st
    [ "${20:-}" = "${entry#*:}" ]
}

known=""
while :; do
    if ! kill -0 "$watch" 2>/dev/null; then
        wait "$watch"
        echo "[guard] cargo lambda watch exited by itself (status $?)"
        break
    fi
    known=$(printf '%s\n' $known $(tree "$watch") | sort -u)
    read -r -t 1 _
    rc=$?
    if [ "$rc" -le 128 ]; then
        echo "[guard] the test let go of watch: stopping it"
        break
    fi
    if ! kill -0 "$parent" 2>/dev/null; then
        echo "[guard] the test process $parent is gone: stopping watch"
        break
    fi
    if [ "$stop_requested" = 1 ]; then
        echo "[guard] SIGTERM: stopping watch"
        break
    fi
done

if kill -0 "$watch" 2>/dev/null; then
    known="$known $(tree "$watch")"
    # watch stops the function instances it started on SIGTERM.
    kill -s TERM "$watch" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$watch" 2>/dev/null || break
        sleep 0.1
    done
    kill -s KILL "$watch" 2>/dev/null
    wait "$watch" 2>/dev/null
fi
left=0
for entry in $known; do
    if same "$entry"; then
        kill -s KILL "${entry%%:*}" 2>/dev/null && left=$((left + 1))
    fi
done
echo "[guard] watch stopped; $left process(es) it had started needed SIGKILL"
"#;

/// `cargo lambda watch` under [`GUARD`]. Dropping it stops watch and everything watch started,
/// and waits (bounded) for that to be done.
struct Watch {
    guard: Child,
    lifeline: Option<ChildStdin>,
    log: PathBuf,
    port: u16,
}

/// The checkout this test runs in. `cargo test` sets CARGO_MANIFEST_DIR at run time too; the
/// compile-time value can name another checkout when several share one target directory.
fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|tests| tests.parent().map(Path::to_path_buf))
        .unwrap_or_else(verdict_integration::repo_root)
}

/// The target directory this test binary was built in (`<target>/debug/deps/<exe>`, or with
/// `--target`, `<target>/<triple>/debug/deps/<exe>`), so the build under watch reuses it even
/// when it was chosen with `--target-dir` rather than CARGO_TARGET_DIR.
fn own_target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(3)
        .take(2)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

/// Variables `cargo test` sets for the test process that must not reach the cargo that watch
/// runs (it would take them as its own) nor the function.
fn is_cargo_test_variable(name: &str) -> bool {
    matches!(
        name,
        "CARGO"
            | "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_MANIFEST_LINKS"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
            | "CARGO_MAKEFLAGS"
            | "MAKEFLAGS"
            | "MFLAGS"
            | "OUT_DIR"
    ) || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
}

impl Watch {
    fn start(table: &str, bucket: &str) -> Watch {
        let root = repo_root();
        let venv_bin = root.join(".venv/bin");
        let cargo_lambda = venv_bin.join("cargo-lambda");
        assert!(
            cargo_lambda.exists(),
            "{} is missing: run `make venv`",
            cargo_lambda.display()
        );
        let port = free_port();
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&logs).expect("the target directory's tmp/ can be created");
        let log = logs.join(format!("http_watch-{port}.log"));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().expect("the log file handle can be cloned");

        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("verdict-watch-guard")
            .arg(std::process::id().to_string())
            .arg(&cargo_lambda)
            .args(["lambda", "watch", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string());
        // The region and dummy credentials come from [workspace.metadata.lambda.watch].
        for var in [
            format!("TABLE_NAME={table}"),
            format!("MODEL_BUCKET={bucket}"),
            format!("AWS_ENDPOINT_URL={}", endpoint()),
            format!("VERDICT_CURSOR_KEY={}", verdict_integration::api::cursor_secret()),
            "RUST_LOG=info".to_owned(),
        ] {
            cmd.arg("--env-var").arg(var);
        }
        cmd.args(["--package", "api"]);

        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_cargo_test_variable) {
                cmd.env_remove(&name);
            }
        }
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            if let Some(dir) = own_target_dir() {
                cmd.env("CARGO_TARGET_DIR", dir);
            }
        }
        let path = std::env::join_paths(
            std::iter::once(venv_bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH entries join");
        let mut guard = cmd
            .env("PATH", path)
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            // Out of the test's process group: a Ctrl-C or a group kill aimed at the test must
            // leave the guard alive to clean up.
            .process_group(0)
            .spawn()
            .expect("bash starts the watch guard");
        let lifeline = guard.stdin.take();
        Watch {
            guard,
            lifeline,
            log,
            port,
        }
    }

    /// The last lines of watch's output (and the guard's notes).
    fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- last lines of {} ---\n{}\n--- end ---",
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    /// Waits until GET /v1/health answers 200. The first request also builds the function, so
    /// each try may wait long; in between, a watch that exited or a build that failed ends the
    /// wait at once.
    fn wait_ready(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let deadline = started + READY_WITHIN;
        let mut last = String::from("no attempt yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.guard.try_wait() {
                return Err(format!("the watch guard exited ({status}); last attempt: {last}"));
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains("error: could not compile") {
                return Err("the function did not compile under watch".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match http(
                self.port,
                "GET",
                &format!("{API}/v1/health"),
                &[],
                "",
                left.min(Duration::from_secs(60)),
            ) {
                Ok(r) if r.status == 200 => return Ok(started.elapsed()),
                Ok(r) => last = format!("{} {}", r.status, r.body),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "no 200 from /v1/health within {} s; last attempt: {last}",
            READY_WITHIN.as_secs()
        ))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Closing the pipe tells the guard to stop watch and what it started.
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.guard.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    eprintln!(
                        "the watch guard did not finish within 20 s; killing it\n{}",
                        self.log_tail()
                    );
                    let _ = self.guard.kill();
                    let _ = self.guard.wait();
                    break;
                }
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

/// A response's status line and headers (names in lower case), and where its body starts.
struct Head {
    body_start: usize,
    status: u16,
    headers: Vec<(String, String)>,
}

impl Reply {
    /// The body as JSON, or as a string when it is not JSON.
    fn new(status: u16, headers: Vec<(String, String)>, body: &[u8]) -> Reply {
        Reply {
            status,
            headers,
            body: serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn problem_type(&self) -> Option<&str> {
        self.body["type"]
            .as_str()?
            .strip_prefix("https://verdict.dev/problems/")
    }
}

/// Where watch serves a function's URL; [workspace.metadata.lambda.watch.router] also serves the
/// api's routes at the root.
const API: &str = "/lambda-url/api";

/// A minimal HTTP/1.1 client for 127.0.0.1: one request per connection, every step under
/// `timeout`. The body is read by Content-Length, by chunks, or to the end of the stream, so a
/// server that keeps the connection open after the response does not stall it.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<Reply, String> {
    let fail = |what: &str, e: std::io::Error| format!("{method} {path}: {what}: {e}");
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(5))).map_err(|e| fail("connect", e))?;
    s.set_write_timeout(Some(timeout)).map_err(|e| fail("socket", e))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).map_err(|e| fail("send", e))?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut head: Option<Head> = None;
    loop {
        if let Some(h) = &head {
            if let Some(body) = complete_body(&h.headers, &raw[h.body_start..]) {
                return Ok(Reply::new(h.status, h.headers.clone(), &body));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "{method} {path}: no complete response within {} s",
                timeout.as_secs()
            ));
        }
        s.set_read_timeout(Some(left)).map_err(|e| fail("socket", e))?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "{method} {path}: no complete response within {} s",
                    timeout.as_secs()
                ))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail("receive", e)),
        };
        if n == 0 {
            // End of stream: a body without a length ends here; anything else is cut short.
            return match head {
                Some(h) if header_of(&h.headers, "content-length").is_none() && !is_chunked(&h.headers) => {
                    Ok(Reply::new(h.status, h.headers, &raw[h.body_start..]))
                }
                _ => Err(format!(
                    "{method} {path}: the connection closed mid-response after {} bytes",
                    raw.len()
                )),
            };
        }
        raw.extend_from_slice(&buf[..n]);
        if head.is_none() {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&raw[..end]).into_owned();
                let mut lines = text.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("{method} {path}: not an HTTP status line: {text:?}"))?;
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                head = Some(Head {
                    body_start: end + 4,
                    status,
                    headers,
                });
            } else if raw.len() > 64 * 1024 {
                return Err(format!("{method} {path}: no end of headers in 64 KiB"));
            }
        }
    }
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header_of(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// The body once all of it has arrived, per the headers; `None` while more is due.
fn complete_body(headers: &[(String, String)], rest: &[u8]) -> Option<Vec<u8>> {
    if is_chunked(headers) {
        return dechunk(rest);
    }
    let len: usize = header_of(headers, "content-length")?.parse().ok()?;
    (rest.len() >= len).then(|| rest[..len].to_vec())
}

/// A chunked body decoded, once its last (zero-size) chunk has arrived.
fn dechunk(mut s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = s.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&s[..eol]).ok()?;
        let size = size.split(';').next()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        s = &s[eol + 2..];
        if n == 0 {
            return Some(out);
        }
        if s.len() < n + 2 {
            return None;
        }
        out.extend_from_slice(&s[..n]);
        s = &s[n + 2..];
    }
}

/// Percent-encodes a query value (cursors are URL-safe today; this does not rely on it).
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tx(id: &str, at: &str, customer: &str, amount: i64) -> String {
    json!({"id": id, "occurred_at": at, "amount": amount, "currency": "EUR",
           "customer_id": customer, "terminal_id": "t-1"})
    .to_string()
}

/// The requests of the test, with one place to say what went wrong.
struct Client {
    port: u16,
    /// [`API`], or "" for the routes watch's router serves at the root.
    base: &'static str,
}

impl Client {
    fn call(&self, method: &str, path: &str, key: Option<&ApiKey>, content_type: Option<&str>, body: &str) -> Reply {
        let bearer = key.map(|k| format!("Bearer {}", k.expose()));
        let mut headers = Vec::new();
        if let Some(b) = &bearer {
            headers.push(("Authorization", b.as_str()));
        }
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        let reply = http(
            self.port,
            method,
            &format!("{}{path}", self.base),
            &headers,
            body,
            REQUEST_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(reply.status < 500, "{method} {path}: {} {}", reply.status, reply.body);
        assert!(
            reply.header("x-request-id").is_some(),
            "{method} {path}: no X-Request-Id"
        );
        reply
    }

    fn get(&self, path: &str, key: Option<&ApiKey>) -> Reply {
        self.call("GET", path, key, None, "")
    }

    fn post(&self, path: &str, key: &ApiKey, body: &str) -> Reply {
        self.call("POST", path, Some(key), Some("application/json"), body)
    }
}

#[test]
fn the_api_answers_over_http_under_cargo_lambda_watch() {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (st, key, other, read_only) = rt.block_on(async {
        let st = ApiStack::new().await;
        let (acme, key) = st.tenant("acme").await;
        let (_globex, other) = st.tenant("globex").await;
        let read_only = st
            .key(
                &acme,
                "transactions:read",
                Some(verdict::domain::auth::now_epoch() + 3600),
            )
            .await;
        (st, key, other, read_only)
    });
    let mut watch = Watch::start(&st.stack.table, &st.stack.bucket);
    let ready = watch.wait_ready();
    let ready = ready.unwrap_or_else(|e| panic!("{e}\n{}", watch.log_tail()));
    eprintln!("watch served /v1/health after {:.1} s", ready.as_secs_f64());

    let api = Client {
        port: watch.port,
        base: API,
    };
    let outcome = std::panic::catch_unwind(|| exercise(&api, &key, &other, &read_only));
    if let Err(panic) = outcome {
        eprintln!("{}", watch.log_tail());
        std::panic::resume_unwind(panic);
    }
    drop(watch);
    drop(st);
    drop(rt);
}

fn exercise(api: &Client, key: &ApiKey, other: &ApiKey, read_only: &ApiKey) {
    // Scoring, and the replay of the same transaction.
    let first = tx("http-1", "2018-08-08T10:00:00Z", "c-1", 50_000);
    let scored = api.post("/v1/transactions", key, &first);
    assert_eq!(scored.status, 200, "{}", scored.body);
    assert!(scored
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    assert!(["approve", "review", "block"].contains(&scored.body["decision"].as_str().unwrap()));
    assert_eq!(scored.body["id"], "http-1");
    assert_eq!(scored.body["idempotent_replay"], false);
    assert_eq!(scored.body["reasons"].as_array().unwrap().len(), 3);
    assert_eq!(scored.body["features"]["amount"], 500.0);
    let again = api.post("/v1/transactions", key, &first);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["idempotent_replay"], true);
    assert_eq!(again.body["score"], scored.body["score"]);

    // Reading back.
    let read = api.get("/v1/transactions/http-1", Some(key));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["decision"], scored.body["decision"]);
    assert_eq!(read.body["score"], scored.body["score"]);

    // Pagination: five decisions for c-1, two per page, newest first, each once.
    for i in 2..=5 {
        let r = api.post(
            "/v1/transactions",
            key,
            &tx(
                &format!("http-{i}"),
                &format!("2018-08-08T10:0{i}:00Z"),
                "c-1",
                1_000 * i,
            ),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=4 {
        let path = match &cursor {
            None => "/v1/transactions?customer=c-1&limit=2".to_owned(),
            Some(c) => format!("/v1/transactions?customer=c-1&limit=2&cursor={}", query_value(c)),
        };
        let r = api.get(&path, Some(key));
        assert_eq!(r.status, 200, "{}", r.body);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 2, "page {page}: {}", r.body);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match &r.body["next_cursor"] {
            Value::String(c) => cursor = Some(c.clone()),
            Value::Null => {
                cursor = None;
                break;
            }
            other => panic!("next_cursor {other}"),
        }
    }
    assert!(cursor.is_none(), "more than 3 pages for 5 decisions at 2 a page");
    assert_eq!(seen, ["http-5", "http-4", "http-3", "http-2", "http-1"]);

    // Refusals keep their problem types over HTTP.
    let none = api.get("/v1/transactions/http-1", None);
    assert_eq!(
        (none.status, none.problem_type()),
        (401, Some("unauthenticated")),
        "{}",
        none.body
    );
    let bogus = http(
        api.port,
        "GET",
        &format!("{API}/v1/transactions/http-1"),
        &[("Authorization", "Bearer vk_test_not_a_real_key")],
        "",
        REQUEST_TIMEOUT,
    )
    .unwrap();
    assert_eq!(
        (bogus.status, bogus.problem_type()),
        (401, Some("unauthenticated")),
        "{}",
        bogus.body
    );
    let scope = api.post(
        "/v1/transactions",
        read_only,
        &tx("http-ro", "2018-08-08T11:00:00Z", "c-1", 100),
    );
    assert_eq!(
        (scope.status, scope.problem_type()),
        (403, Some("forbidden")),
        "{}",
        scope.body
    );
    let text = api.call("POST", "/v1/transactions", Some(key), Some("text/plain"), "x");
    assert_eq!(
        (text.status, text.problem_type()),
        (415, Some("unsupported-media-type")),
        "{}",
        text.body
    );
    let bad = api.post("/v1/transactions", key, r#"{"id":"x"}"#);
    assert_eq!(
        (bad.status, bad.problem_type()),
        (400, Some("validation")),
        "{}",
        bad.body
    );
    assert!(
        bad.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "amount"),
        "{}",
        bad.body
    );
    assert_eq!(
        api.get("/v1/transactions/http-ro", Some(key)).status,
        404,
        "a refused write stored nothing"
    );

    // Tenants are apart: another tenant neither reads acme's decision nor its history, and the
    // same transaction id is its own, scored afresh rather than replayed.
    let theirs = api.get("/v1/transactions/http-1", Some(other));
    assert_eq!(
        (theirs.status, theirs.problem_type()),
        (404, Some("not-found")),
        "{}",
        theirs.body
    );
    let history = api.get("/v1/transactions?customer=c-1", Some(other));
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.body["items"], json!([]));
    let own = api.post(
        "/v1/transactions",
        other,
        &tx("http-1", "2018-08-09T09:00:00Z", "c-1", 700),
    );
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body["idempotent_replay"], false, "{}", own.body);
    assert_eq!(own.body["features"]["amount"], 7.0);
    let still = api.get("/v1/transactions/http-1", Some(key));
    assert_eq!(
        still.body["score"], scored.body["score"],
        "acme's decision is untouched"
    );
    assert_eq!(still.body["features"]["amount"], 500.0);

    let spec = api.get("/v1/openapi.json", None);
    assert_eq!(spec.status, 200);
    assert!(spec.body["paths"]["/v1/transactions"].is_object());

    // Rules and lists over HTTP: a list, a rule using it, a ruleset published and activated
    // (paths with {name} and {version}), then a payment the rule blocks.
    let list = api.post("/v1/lists", key, r#"{"name":"blocked_emails","kind":"email"}"#);
    assert_eq!(list.status, 201, "{}", list.body);
    let added = api.post(
        "/v1/lists/blocked_emails/entries",
        key,
        r#"{"entries":[{"value":"Fraud@Example.com"}]}"#,
    );
    assert_eq!((added.status, &added.body["added"]), (200, &json!(1)), "{}", added.body);
    let rule = api.post(
        "/v1/rules",
        key,
        r#"{"id":"blocked_email","name":"Blocked email","expression":"has(tx.email) && in_list(tx.email, 'blocked_emails')","action":"block"}"#,
    );
    assert_eq!(rule.status, 201, "{}", rule.body);
    let set = api.post("/v1/rulesets", key, r#"{"rules":[{"id":"blocked_email"}]}"#);
    assert_eq!(set.status, 201, "{}", set.body);
    let v = set.body["version"].as_u64().unwrap();
    let published = api.post(&format!("/v1/rulesets/{v}/publish"), key, "");
    assert_eq!(published.status, 200, "{}", published.body);
    let active = api.post(&format!("/v1/rulesets/{v}/activate"), key, "{}");
    assert_eq!(active.status, 200, "{}", active.body);
    let mut body: Value = serde_json::from_str(&tx("http-rule", "2018-08-08T12:00:00Z", "c-9", 500)).unwrap();
    body["email"] = json!("fraud@example.com");
    let ruled = api.post("/v1/transactions", key, &body.to_string());
    assert_eq!(ruled.status, 200, "{}", ruled.body);
    assert_eq!(ruled.body["decision"], "block", "{}", ruled.body);
    assert_eq!(ruled.body["reasons"][0]["rule_id"], "blocked_email", "{}", ruled.body);
    let entries = api.get("/v1/lists/blocked_emails/entries?limit=10", Some(key));
    assert_eq!(
        entries.body["items"][0]["value"], "fraud@example.com",
        "{}",
        entries.body
    );

    // The same function at the root, through [workspace.metadata.lambda.watch.router], which
    // fills in the {id} path parameter as API Gateway does.
    let root = Client {
        port: api.port,
        base: "",
    };
    let read = root.get("/v1/transactions/http-1", Some(key));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["score"], scored.body["score"]);
    assert_eq!(root.get("/v1/health", None).status, 200);
}
