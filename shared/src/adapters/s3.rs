//! S3 adapter: model artifacts by object key; for batch files, streaming reads, head and
//! multipart uploads.

use crate::domain::batch::{normalize_etag, PartRef};
use crate::ports::{ModelBlobs, StoreError};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

// ---------------------------------------------------------------------------------------------
// Batch files: head, streaming reads, multipart uploads.

/// What HeadObject says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Without quotes.
    pub etag: String,
    pub size: u64,
    /// User metadata, keys without `x-amz-meta-`.
    pub metadata: HashMap<String, String>,
}

/// Ranged GETs a read makes after the body stream breaks, before it gives up.
const READ_RETRIES: u32 = 3;

/// Why a streaming read gave up, kept where the caller can see it after the reader has been
/// handed to a parser that turns I/O errors into row errors.
#[derive(Debug, Clone, Default)]
pub struct ReadFailure(Arc<Mutex<Option<String>>>);

impl ReadFailure {
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    fn set(&self, reason: String) {
        if let Ok(mut g) = self.0.lock() {
            g.get_or_insert(reason);
        }
    }
}

/// An object's body as a blocking [`Read`], for a parser on a blocking thread
/// (`tokio::task::spawn_blocking`): never call it on an async worker thread. Only the bytes in
/// flight are held. A broken stream is resumed with a ranged GET pinned to the etag.
pub struct ObjectReader {
    client: Client,
    bucket: String,
    key: String,
    etag: String,
    size: u64,
    handle: tokio::runtime::Handle,
    body: ByteStream,
    chunk: Vec<u8>,
    pos: usize,
    offset: u64,
    failure: ReadFailure,
}

impl ObjectReader {
    pub fn failure(&self) -> ReadFailure {
        self.failure.clone()
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn reopen(&mut self, why: String) -> io::Result<()> {
        let mut last = why;
        for attempt in 0..READ_RETRIES {
            std::thread::sleep(Duration::from_millis(200 << attempt));
            let get = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .if_match(format!("\"{}\"", self.etag))
                .range(format!("bytes={}-", self.offset))
                .send();
            match self.handle.block_on(get) {
                Ok(out) => {
                    self.body = out.body;
                    return Ok(());
                }
                Err(e) => last = DisplayErrorContext(&e).to_string(),
            }
        }
        let reason = format!("S3 GetObject {} at byte {}: {last}", self.url(), self.offset);
        self.failure.set(reason.clone());
        Err(io::Error::other(reason))
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.chunk.len() {
                let n = (self.chunk.len() - self.pos).min(out.len());
                out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
                self.pos += n;
                self.offset += n as u64;
                return Ok(n);
            }
            if self.offset >= self.size {
                return Ok(0);
            }
            match self.handle.block_on(self.body.next()) {
                Some(Ok(bytes)) => {
                    self.chunk.clear();
                    self.chunk.extend_from_slice(&bytes);
                    self.pos = 0;
                }
                None => self.reopen(format!("the body ended at byte {} of {}", self.offset, self.size))?,
                Some(Err(e)) => self.reopen(e.to_string())?,
            }
        }
    }
}

fn code_of<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(|s| s.code())
}

impl S3Blobs {
    /// The object's etag, size and metadata; `None` if there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectHead {
                etag: normalize_etag(out.e_tag().unwrap_or_default()),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                metadata: out.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(sdk_error("HeadObject", &self.url(key), e)),
        }
    }

    /// Starts streaming the object if it still has `etag`; `None` if it is gone or has changed.
    /// Call from async code; read the result on a blocking thread.
    pub async fn open(&self, key: &str, etag: &str) -> Result<Option<ObjectReader>, StoreError> {
        let etag = normalize_etag(etag);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(format!("\"{etag}\""))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) if code_of(&e) == Some("PreconditionFailed") => return Ok(None),
            Err(e) => return Err(sdk_error("GetObject", &self.url(key), e)),
        };
        Ok(Some(ObjectReader {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            etag,
            size: out.content_length().unwrap_or(0).max(0) as u64,
            handle: tokio::runtime::Handle::current(),
            body: out.body,
            chunk: Vec::new(),
            pos: 0,
            offset: 0,
            failure: ReadFailure::default(),
        }))
    }

    pub async fn put_with(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes));
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        req.send()
            .await
            .map_err(|e| sdk_error("PutObject", &self.url(key), e))?;
        Ok(())
    }

    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type);
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error("CreateMultipartUpload", &self.url(key), e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Unavailable(format!("S3 CreateMultipartUpload {}: no upload id", self.url(key))))
    }

    /// Uploads (or replaces) one part. Every part but the last must be at least 5 MiB.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        bytes: Vec<u8>,
    ) -> Result<PartRef, StoreError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error("UploadPart", &format!("{} part {part_number}", self.url(key)), e))?;
        Ok(PartRef {
            part_number,
            etag: out.e_tag().unwrap_or_default().to_owned(),
        })
    }

    /// Completes an upload from its parts, in order. `Ok(false)` when the upload no longer
    /// exists (completed or aborted before).
    pub async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[PartRef]) -> Result<bool, StoreError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.part_number)
                            .e_tag(&p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        match self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if code_of(&e) == Some("NoSuchUpload") => Ok(false),
            Err(e) => Err(sdk_error("CompleteMultipartUpload", &self.url(key), e)),
        }
    }

    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code_of(&e) == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(sdk_error("AbortMultipartUpload", &self.url(key), e)),
        }
    }

    /// The parts S3 holds for an upload, in order (first page of up to 1,000).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartRef>, StoreError> {
        let out = self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| sdk_error("ListParts", &self.url(key), e))?;
        Ok(out
            .parts()
            .iter()
            .map(|p| PartRef {
                part_number: p.part_number().unwrap_or(0),
                etag: p.e_tag().unwrap_or_default().to_owned(),
            })
            .collect())
    }
}
