//! The fault-injecting proxy (`tests/fault_proxy.py`, see there what it injects and emulates) in
//! front of this binary's moto, started on demand, one per [`Proxy::start`], under the same guard
//! as moto (it dies with the test binary, or when the `Proxy` is dropped).
//!
//! ```ignore
//! let proxy = Proxy::start();
//! proxy.configure(json!({"seed": 7, "rates": {"dynamodb:*": {"throttling": 0.05, "drop": 0.05}}}));
//! let faulted = proxy.clients(&stack).await; // the stack's table and bucket, through the proxy
//! // … run the code under test on faulted.store …
//! println!("{}", proxy.stats());
//! ```

use crate::{endpoint, free_port, repo_root, spawn_guarded, Guarded, Stack};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;
use verdict::adapters::{dynamodb_client, retries, s3_client, timeouts, DynamoStore, S3Blobs};

/// A running proxy.
pub struct Proxy {
    endpoint: String,
    port: u16,
    _guarded: Guarded,
}

/// Clients of a [`Stack`]'s table and bucket that go through the proxy, built as the functions
/// build theirs (the production timeouts and retries).
pub struct Faulted {
    pub config: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub store: DynamoStore,
    pub blobs: S3Blobs,
}

impl Proxy {
    /// Starts a proxy in front of moto (starting moto first if needed), with no faults
    /// configured. Panics with the proxy's log if it does not come up.
    pub fn start() -> Proxy {
        let upstream = endpoint();
        let python = repo_root().join(".venv/bin/python");
        let script = repo_root().join("tests/fault_proxy.py");
        let port = free_port().unwrap_or_else(|e| panic!("{e}"));
        let log = std::env::temp_dir().join(format!("verdict-fault-proxy-{port}.log"));
        let port_arg = port.to_string();
        let guarded = spawn_guarded(
            "fault-proxy",
            &[
                python.as_os_str(),
                script.as_os_str(),
                "--upstream".as_ref(),
                upstream.as_ref(),
                "--port".as_ref(),
                port_arg.as_ref(),
            ],
            port,
            &log,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Proxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            _guarded: guarded,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Replaces the config keys given (`seed`, `hold_ms`, `delay_ms`, `simulate_conflicts`,
    /// `key_attributes`, `rates`, `next`); returns config and stats. Panics on a refused config.
    pub fn configure(&self, changes: Value) -> Value {
        self.control("POST", "/__faults", &changes.to_string())
    }

    /// No faults from now on (conflict simulation and scripted faults off too).
    pub fn calm(&self) -> Value {
        self.configure(serde_json::json!({"rates": {}, "next": {}, "simulate_conflicts": false}))
    }

    /// `{"config": …, "stats": {"ops": {op: {requests, forwarded, faults: {kind: n}, conflicts,
    /// token_replays, in_progress}}, "max_in_flight_transactions", "token_cache"}}`.
    pub fn stats(&self) -> Value {
        self.control("GET", "/__faults", "")
    }

    /// Zeroes the stats; the config stays.
    pub fn reset_stats(&self) -> Value {
        self.control("POST", "/__faults/reset", "")
    }

    /// The faults injected, by kind, over every operation.
    pub fn faults_by_kind(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(ops) = self.stats()["stats"]["ops"].as_object() {
            for op in ops.values() {
                for (kind, n) in op["faults"].as_object().into_iter().flatten() {
                    *out.entry(kind.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
            }
        }
        out
    }

    /// One request on a fresh connection (the control endpoint is tiny; no client crate needed).
    fn control(&self, method: &str, path: &str, body: &str) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the fault proxy");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write to the fault proxy");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read the fault proxy's answer");
        let (head, payload) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let value: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "fault proxy {method} {path}: {head}\n{payload}"
        );
        value
    }

    /// The SDK configuration of a function, pointed at the proxy: its timeouts and retries
    /// ([`verdict::adapters::timeouts`], [`verdict::adapters::retries`]), dummy credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::from_static("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "verdict-tests"))
            .timeout_config(timeouts())
            .retry_config(retries())
            .load()
            .await
    }

    /// `stack`'s table and bucket through the proxy.
    pub async fn clients(&self, stack: &Stack) -> Faulted {
        let config = self.sdk_config().await;
        let dynamodb = dynamodb_client(&config);
        let s3 = s3_client(&config);
        Faulted {
            store: DynamoStore::new(dynamodb.clone(), &stack.table),
            blobs: S3Blobs::new(s3.clone(), &stack.bucket),
            config,
            dynamodb,
            s3,
        }
    }
}
