//! What `keys` and `bootstrap` share: one small runtime, the SDK configuration from the
//! environment (AWS_ENDPOINT_URL points at a local moto), and errors that say where they happened.

use anyhow::Context;
use verdict::adapters::{aws_config_from_env, dynamodb_client, s3_client};
use verdict::domain::{DomainError, TenantId};
use verdict::ports::StoreError;

/// The clients of one command, and a name for where they point, for messages.
pub struct Aws {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub target: String,
}

impl Aws {
    pub async fn from_env() -> Aws {
        let config = aws_config_from_env().await;
        let region = config.region().map(|r| r.to_string()).unwrap_or_default();
        let target = match config.endpoint_url() {
            Some(url) => format!("{url} (AWS_ENDPOINT_URL)"),
            None => format!("AWS region {region}"),
        };
        Aws {
            dynamodb: dynamodb_client(&config),
            s3: s3_client(&config),
            target,
        }
    }

    /// Fails with a message that names the table and how to create it unless it exists.
    pub async fn require_table(&self, table: &str) -> anyhow::Result<()> {
        match self.dynamodb.describe_table().table_name(table).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                anyhow::bail!(
                    "table {table:?} does not exist at {}; create it with `verdict bootstrap --table {table} …`, \
                     or name another with --table / TABLE_NAME",
                    self.target
                )
            }
            Err(e) => Err(explain(&self.target, &chain(&e))).with_context(|| format!("cannot reach table {table:?}")),
        }
    }
}

/// An error and its sources, each once, without the SDK's debug dump.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// A store error with a hint for the two usual causes: no credentials, or nothing listening.
pub fn store_error(target: &str, e: StoreError) -> anyhow::Error {
    explain(target, &e.to_string())
}

fn explain(target: &str, message: &str) -> anyhow::Error {
    let lower = message.to_ascii_lowercase();
    let hint = if lower.contains("credential") {
        "; no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any value \
         works against the local stack) or AWS_PROFILE"
    } else if lower.contains("connection refused") || lower.contains("dispatch failure") {
        "; is the endpoint up? (`make dev` starts the local one)"
    } else {
        ""
    };
    anyhow::anyhow!("{message} [at {target}]{hint}")
}

/// A single-threaded runtime: the commands make a handful of sequential calls.
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(f))
}

/// A bad argument, named by its flag.
pub fn bad(flag: &str, e: DomainError) -> anyhow::Error {
    anyhow::anyhow!("{flag}: {}", e.reason)
}

pub fn parse_tenant(raw: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(raw).map_err(|e| anyhow::anyhow!("--tenant {raw:?}: {}", e.reason))
}

/// Epoch seconds as RFC 3339, for messages.
pub fn rfc3339(epoch: i64) -> String {
    verdict::domain::Timestamp::from_unix(epoch)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|_| epoch.to_string())
}
