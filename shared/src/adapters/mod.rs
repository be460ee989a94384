//! Adapters: the ports implemented on AWS and tokio. DynamoDB holds decisions, aggregates, keys,
//! the model pointer and job leases ([`dynamodb`]); S3 holds files and model artifacts ([`s3`]);
//! [`lambda`] is the Lambda glue (S3 event records, re-invoking, logging); [`label_reading`]
//! parses a label file on a blocking thread; [`runtime`] is waiting on tokio; [`batch`] is the
//! batch runner's scoring thread on tokio and its models.
//!
//! Clients are built once per process (in a function's `main`) from [`aws_config_from_env`].

pub mod batch;
pub mod dynamodb;
pub mod label_reading;
pub mod lambda;
pub mod runtime;
pub mod s3;
mod sdk_errors;

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};

pub use batch::TokioScoring;
pub use dynamodb::{DynamoStore, TableSpec, TABLE};
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
        .load()
        .await
}

pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// An S3 client; path-style addressing when a custom endpoint (moto) is configured, since
/// virtual-host buckets do not resolve on 127.0.0.1.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}
