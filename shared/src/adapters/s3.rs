//! S3 adapter: model artifacts by object key.

use crate::ports::{ModelBlobs, StoreError};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use std::fmt;

fn sdk_error<E, R>(op: &str, target: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    StoreError::Unavailable(format!("S3 {op} {target}: {}", DisplayErrorContext(&e)))
}

/// The model bucket.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Blobs {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error("PutObject", &self.url(key), e))?;
        Ok(())
    }

    /// Creates the bucket unless it exists. Returns whether it was created.
    pub async fn create_bucket_if_missing(&self) -> Result<bool, StoreError> {
        let target = format!("s3://{}", self.bucket);
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => return Err(sdk_error("HeadBucket", &target, e)),
        }
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that takes no location constraint.
        if let Some(region) = self.client.config().region().map(|r| r.as_ref().to_owned()) {
            if region != "us-east-1" {
                req = req.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(region.as_str()))
                        .build(),
                );
            }
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(false),
            Err(e) => Err(sdk_error("CreateBucket", &target, e)),
        }
    }
}

impl ModelBlobs for S3Blobs {
    async fn fetch(&self, object_key: &str) -> Result<Vec<u8>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(object_key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StoreError::NotFound(self.url(object_key)));
            }
            Err(e) => return Err(sdk_error("GetObject", &self.url(object_key), e)),
        };
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Unavailable(format!("S3 GetObject {}: reading the body: {e}", self.url(object_key)))
        })?;
        Ok(body.into_bytes().to_vec())
    }
}
