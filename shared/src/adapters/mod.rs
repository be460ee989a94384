//! Adapters: the ports implemented on AWS and tokio. DynamoDB holds decisions, aggregates, keys,
//! the model pointer and job leases ([`dynamodb`]); S3 holds files and model artifacts ([`s3`]);
//! [`lambda`] is the Lambda glue (S3 event records, re-invoking, logging); [`label_reading`]
//! parses a label file on a blocking thread; [`runtime`] is waiting on tokio; [`batch`] is the
//! batch runner's scoring thread on tokio and its models.
//!
//! Clients are built once per process (in a function's `main`) from [`aws_config_from_env`], with
//! the timeouts and retries of [`timeouts`], [`retries`] and [`s3_timeouts`].

pub mod batch;
pub mod dynamodb;
pub mod eventbridge;
pub mod jwks;
pub mod label_reading;
pub mod lambda;
pub mod runtime;
pub mod s3;
mod sdk_errors;

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::time::Duration;

pub use batch::TokioScoring;
pub use dynamodb::{DynamoStore, TableSpec, TABLE};
pub use eventbridge::EventBridgeBus;
pub use jwks::HttpJwks;
pub use lambda::LambdaReinvoker;
pub use runtime::TokioSleep;
pub use s3::{ObjectStore, S3Blobs};

/// The region used when neither the environment nor a profile names one (local development).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Loads the SDK configuration the standard way (environment, profile, container or instance
/// role), honouring `AWS_ENDPOINT_URL` (e.g. a local moto server), and falling back to
/// [`DEFAULT_REGION`] instead of probing the instance metadata service for a region.
pub async fn aws_config_from_env() -> SdkConfig {
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new())
        .or_else(Region::from_static(DEFAULT_REGION));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(timeouts())
        .retry_config(retries())
        .load()
        .await
}

/// Timeouts of every client but S3's (DynamoDB, Lambda). The SDK's defaults have no attempt or
/// operation timeout, so one stuck call would hold a request until the function's own timeout
/// (10 s for the api). DynamoDB answers in milliseconds: an attempt that has not answered in 1 s
/// is retried on a fresh connection; the operation gives up after 3.5 s (three attempts and
/// their backoff), leaving the api time to answer 503 within its 10 s.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(1))
        .operation_timeout(Duration::from_millis(3500))
        .build()
}

/// Retries of every client: the SDK's standard mode (throttles, 5xx, resets and timeouts; a
/// ClientRequestToken kept across attempts), 3 attempts, with a backoff that starts at 25 ms
/// instead of 1 s so a decision retried once still fits the api's 50 ms budget in the common
/// case; a caller that gets a 503 retries later with its Idempotency-Key.
pub fn retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(Duration::from_secs(1))
}

/// S3's timeouts: a part upload or a model download of tens of MiB takes seconds, so an attempt
/// gets 30 s (a streamed body's reading is not part of an attempt) and an operation 2 minutes.
pub fn s3_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(120))
        .build()
}

/// S3's timeouts inside a request (the api fetching a model on first use): the api's own
/// timeout is 10 s, so a stuck fetch must give up in time for it to answer 503.
pub fn s3_request_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(7))
        .build()
}

pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// An S3 client; path-style addressing when a custom endpoint (moto) is configured, since
/// virtual-host buckets do not resolve on 127.0.0.1.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    s3_client_with(config, s3_timeouts())
}

/// An S3 client with other timeouts ([`s3_request_timeouts`] for the api).
pub fn s3_client_with(config: &SdkConfig, timeouts: TimeoutConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .timeout_config(timeouts)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}
