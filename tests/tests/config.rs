//! The production configuration path (`aws_config_from_env`) against the local stack, and the
//! table and bucket setup being idempotent. One test in this binary, since it sets the
//! process environment.

use aws_sdk_dynamodb::types::{ProjectionType, TimeToLiveStatus};
use verdict::adapters::dynamodb::{create_table_if_missing, TABLE};
use verdict::adapters::{aws_config_from_env, dynamodb_client, s3_client, S3Blobs};
use verdict::ports::ModelBlobs;
use verdict_integration::{endpoint, unique_suffix};

#[tokio::test]
async fn config_from_env_reaches_the_local_stack_and_setup_is_idempotent() {
    let endpoint = endpoint();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_CONFIG_FILE", "/nonexistent/verdict-test-config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/verdict-test-credentials"),
    ] {
        std::env::set_var(k, v);
    }
    for k in ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN"] {
        std::env::remove_var(k);
    }
    let config = aws_config_from_env().await;
    assert_eq!(
        config.region().map(|r| r.as_ref()),
        Some("us-east-1"),
        "the default region"
    );
    assert_eq!(config.endpoint_url(), Some(endpoint.as_str()));

    // Path-style S3 (a virtual-host bucket would not resolve on 127.0.0.1).
    let bucket = format!("verdict-cfg-{}", unique_suffix());
    let blobs = S3Blobs::new(s3_client(&config), &bucket);
    assert!(blobs.create_bucket_if_missing().await.unwrap());
    assert!(!blobs.create_bucket_if_missing().await.unwrap());
    blobs.put("a/b.bin", b"verdict".to_vec()).await.unwrap();
    assert_eq!(blobs.fetch("a/b.bin").await.unwrap(), b"verdict");

    let ddb = dynamodb_client(&config);
    let table = format!("verdict-cfg-{}", unique_suffix());
    assert!(create_table_if_missing(&ddb, &table).await.unwrap());
    assert!(!create_table_if_missing(&ddb, &table).await.unwrap());
    let ttl = ddb.describe_time_to_live().table_name(&table).send().await.unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    let desc = ddb.describe_table().table_name(&table).send().await.unwrap();
    let desc = desc.table().unwrap();
    let keys: Vec<_> = desc.key_schema().iter().map(|k| k.attribute_name()).collect();
    assert_eq!(keys, [TABLE.hash_key, TABLE.range_key]);
    let gsi = &desc.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), Some("gsi1"));
    let gsi_keys: Vec<_> = gsi.key_schema().iter().map(|k| k.attribute_name()).collect();
    assert_eq!(gsi_keys, ["gsi1pk", "gsi1sk"]);
    assert_eq!(
        gsi.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::All)
    );
}
