//! `verdict bootstrap`: the storage a stack needs, created if missing, plus optionally a first
//! model for a tenant. Safe to run again: what exists is left as it is.
//!
//! - The table comes from the adapters' `TABLE` spec, the definition `template.yaml` declares too
//!   (tests/tests/template.rs proves they agree), with TTL on.
//! - The buckets are created empty. On AWS, `sam deploy` creates them with encryption, versioning and
//!   the TLS-only policy; this command is for the local stack and for trying things out.
//! - The EventBridge bus the events function publishes to (`--event-bus`, default
//!   `verdict-events`) and, with `--events-tap QUEUE`, an SQS queue that a rule fills with every
//!   Verdict event, so a local stack can list what arrived (docs/events.md).
//! - `--model FILE` is verified (digest, schema, trees), uploaded to
//!   `models/active/<tenant>/<version>.vmodel`, registered and activated, as model-import would.

use super::aws::{bad, block_on, parse_tenant, store_error, Aws};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use verdict::adapters::dynamodb::create_table_if_missing;
use verdict::adapters::{DynamoStore, EventBridgeBus, S3Blobs};
use verdict::domain::model::{Model, ModelSource};
use verdict::domain::policy::Thresholds;
use verdict::domain::registry::{ModelRegistration, ModelStatus};
use verdict::domain::Timestamp;

#[derive(clap::Args)]
pub struct Args {
    /// The tenant the model serves
    #[arg(long, value_name = "TENANT")]
    tenant: String,
    /// DynamoDB table to create
    #[arg(long, value_name = "NAME", env = "TABLE_NAME")]
    table: String,
    /// Bucket for model artifacts
    #[arg(long, value_name = "BUCKET", env = "MODEL_BUCKET")]
    model_bucket: String,
    /// Bucket for batch files and labels
    #[arg(long, value_name = "BUCKET", env = "DATA_BUCKET")]
    data_bucket: String,
    /// EventBridge bus the events function publishes to
    #[arg(long, value_name = "NAME", env = "EVENT_BUS_NAME", default_value = verdict::adapters::eventbridge::LOCAL_EVENT_BUS)]
    event_bus: String,
    /// Also create this SQS queue and a rule sending it every event on the bus (a local "tap")
    #[arg(long, value_name = "QUEUE")]
    events_tap: Option<String>,
    /// A model artifact (from `verdict train` or `verdict import`) to upload and activate
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// The tenant's review threshold (score from which a transaction goes to review); needs --block-threshold
    #[arg(long, value_name = "P", requires = "block_threshold")]
    review_threshold: Option<f64>,
    /// The tenant's block threshold (score from which a transaction is blocked); needs --review-threshold
    #[arg(long, value_name = "P", requires = "review_threshold")]
    block_threshold: Option<f64>,
}

/// The status and source names of the model registry (docs/dynamodb.md, "Model version").
fn source_name(s: &ModelSource) -> &'static str {
    match s {
        ModelSource::Verdict => "verdict",
        ModelSource::Lightgbm => "lightgbm",
        ModelSource::Xgboost => "xgboost",
    }
}

/// S3's naming rules, checked here because moto accepts names that AWS refuses.
fn check_bucket(flag: &str, name: &str) -> anyhow::Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    anyhow::ensure!(
        ok,
        "{flag} {name:?}: a bucket name is 3 to 63 lower-case letters, digits, '-' or '.', \
         starting and ending with a letter or digit"
    );
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    // Check everything local before touching the stack.
    let tenant = parse_tenant(&a.tenant)?;
    check_bucket("--model-bucket", &a.model_bucket)?;
    check_bucket("--data-bucket", &a.data_bucket)?;
    let thresholds = match (a.review_threshold, a.block_threshold) {
        (Some(review), Some(block)) => {
            Some(Thresholds::new(review, block).map_err(|e| bad("--review-threshold/--block-threshold", e))?)
        }
        _ => None,
    };
    let model = match &a.model {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let model = Model::from_bytes(&path.display().to_string(), &bytes)?;
            Some((model, bytes))
        }
        None => None,
    };

    block_on(async {
        let aws = Aws::from_env().await;
        let err = |e| store_error(&aws.target, e);
        eprintln!("bootstrap at {}", aws.target);

        let created = create_table_if_missing(&aws.dynamodb, &a.table)
            .await
            .map_err(err)
            .with_context(|| format!("cannot create table {}", a.table))?;
        eprintln!("  table {}: {}", a.table, if created { "created" } else { "exists" });

        for bucket in [&a.model_bucket, &a.data_bucket] {
            let created = S3Blobs::new(aws.s3.clone(), bucket.as_str())
                .create_bucket_if_missing()
                .await
                .map_err(err)
                .with_context(|| format!("cannot create bucket {bucket}"))?;
            eprintln!("  bucket {bucket}: {}", if created { "created" } else { "exists" });
        }

        let config = verdict::adapters::aws_config_from_env().await;
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&config), &a.event_bus);
        let created = bus
            .create_if_missing()
            .await
            .map_err(err)
            .with_context(|| format!("cannot create event bus {}", a.event_bus))?;
        eprintln!(
            "  event bus {}: {}",
            a.event_bus,
            if created { "created" } else { "exists" }
        );
        if let Some(queue) = &a.events_tap {
            let url = events_tap(&aws_sdk_sqs::Client::new(&config), &bus, queue)
                .await
                .with_context(|| format!("cannot create the events tap {queue}"))?;
            eprintln!("  events tap: every verdict.* event on {} goes to {url}", a.event_bus);
        }

        let store = DynamoStore::new(aws.dynamodb.clone(), &a.table);
        if let Some(t) = thresholds {
            store.set_thresholds(&tenant, t).await.map_err(err)?;
            eprintln!("  tenant {tenant}: review from {}, block from {}", t.review, t.block);
        }

        let Some((model, bytes)) = model else {
            return Ok(());
        };
        let version = model.version().to_owned();
        let object_key = format!("models/active/{tenant}/{version}.vmodel");
        let registered = store.model(&tenant, &version).await.map_err(err)?;
        match registered {
            // The same bytes under the same key: uploaded and registered by an earlier run.
            Some(r) if r.sha256 == model.sha256 && r.object_key == object_key => {
                eprintln!("  model {version}: already registered");
            }
            _ => {
                S3Blobs::new(aws.s3.clone(), a.model_bucket.as_str())
                    .put(&object_key, bytes)
                    .await
                    .map_err(err)?;
                let metrics: BTreeMap<String, f64> = model.artifact.metrics.clone();
                let registration = ModelRegistration {
                    version: version.clone(),
                    name: model.artifact.name.clone(),
                    sha256: model.sha256.clone(),
                    object_key: object_key.clone(),
                    source: source_name(&model.artifact.source).to_owned(),
                    status: ModelStatus::Candidate, // activation below makes it active
                    metrics,
                    uploaded_at: Timestamp::now(),
                    uploaded_by: "verdict bootstrap".to_owned(),
                    trees: u32::try_from(model.tree_count()).unwrap_or(u32::MAX),
                };
                store.register_model(&tenant, &registration).await.map_err(err)?;
                eprintln!(
                    "  model {version} ({}, {} trees): uploaded to s3://{}/{object_key} and registered",
                    model.artifact.name,
                    model.tree_count(),
                    a.model_bucket
                );
            }
        }
        let pointer = store
            .activate_model(&tenant, &version, &object_key)
            .await
            .map_err(err)
            .context("cannot activate the model")?;
        eprintln!(
            "  tenant {tenant} serves model {} (since {})",
            pointer.version,
            pointer.activated_at.to_rfc3339()
        );
        Ok(())
    })?
}

/// The local tap: an SQS queue `queue` (made unless it exists) and a rule of the same name on
/// the bus sending it every Verdict event. Local stacks only (moto delivers without a queue
/// policy), which is why SQS is the CLI's dependency, not the functions'. Returns the queue URL.
async fn events_tap(sqs: &aws_sdk_sqs::Client, bus: &EventBridgeBus, queue: &str) -> anyhow::Result<String> {
    use aws_sdk_sqs::error::DisplayErrorContext;
    use aws_sdk_sqs::types::QueueAttributeName;
    let url = sqs
        .create_queue()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("SQS CreateQueue {queue}: {}", DisplayErrorContext(&e)))?
        .queue_url()
        .context("SQS CreateQueue answered no queue URL")?
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("SQS GetQueueAttributes {queue}: {}", DisplayErrorContext(&e)))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .context("SQS GetQueueAttributes answered no QueueArn")?;
    bus.tap_into(queue, &arn).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(url)
}
