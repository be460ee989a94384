//! The S3 adapter, one for every function: the [`Objects`] port on [`ObjectStore`] (any bucket,
//! given per call since S3 events name it), and the model bucket's artifacts by key
//! ([`S3Blobs`], the [`ModelBlobs`] port). Every read is one GetObject request builder
//! (`ObjectStore::get_object`); streamed reads are one blocking reader ([`ObjectReader`]) that
//! resumes a broken body with a ranged GET pinned to the version.

use crate::domain::batch::PartRef;
use crate::domain::objects::normalize_etag;
use crate::ports::objects::{FetchedObject, ObjectHead, ObjectVersion, Objects, ReadFailure, StoredObject};
use crate::ports::{ModelBlobs, StoreError};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use std::io::{self, Read};
use std::time::Duration;

/// Ranged GETs a read makes after the body stream breaks, before it gives up.
const READ_RETRIES: u32 = 3;

/// Retryable ([`StoreError::Unavailable`]) or permanent ([`StoreError::Rejected`]) by what the SDK says.
fn sdk_error<E>(op: &str, target: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = format!("S3 {op} {target}: {}", DisplayErrorContext(&e));
    crate::adapters::sdk_errors::classified(message, &e)
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// No such object (or version).
fn is_missing<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(code(e), Some("NoSuchKey" | "NoSuchVersion" | "NotFound"))
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// The object changed (an `If-Match` that no longer holds).
fn is_changed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    code(e) == Some("PreconditionFailed") || e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
}

fn url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

fn if_match(etag: &str) -> String {
    format!("\"{}\"", normalize_etag(etag))
}

/// The `If-Match` that pins a read of `version`: none when a version id pins it already.
fn version_if_match(version: ObjectVersion<'_>) -> Option<String> {
    match (version.version_id, version.etag) {
        (None, Some(e)) if !e.is_empty() => Some(if_match(e)),
        _ => None,
    }
}

fn content_length(n: Option<i64>) -> u64 {
    n.unwrap_or(0).max(0) as u64
}

/// S3, any bucket.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    client: Client,
}

impl ObjectStore {
    pub fn new(client: Client) -> Self {
        ObjectStore { client }
    }

    /// The one GetObject request: `version` pinned (its id, else `If-Match` on its etag), from
    /// byte `offset` on.
    fn get_object(&self, bucket: &str, key: &str, version: ObjectVersion<'_>, offset: u64) -> GetObjectFluentBuilder {
        self.client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.version_id.map(str::to_owned))
            .set_if_match(version_if_match(version))
            .set_range((offset > 0).then(|| format!("bytes={offset}-")))
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: Option<&str>,
        metadata: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .body(ByteStream::from(bytes));
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        req.send()
            .await
            .map_err(|e| sdk_error("PutObject", &url(bucket, key), e))?;
        Ok(())
    }

    /// Creates the bucket unless it exists. Returns whether it was created.
    pub async fn create_bucket_if_missing(&self, bucket: &str) -> Result<bool, StoreError> {
        let target = format!("s3://{bucket}");
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
            Err(e) => return Err(sdk_error("HeadBucket", &target, e)),
        }
        let mut req = self.client.create_bucket().bucket(bucket);
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

    /// A whole object, `NotFound` when there is none.
    async fn fetch(&self, bucket: &str, key: &str) -> Result<Vec<u8>, StoreError> {
        match self.get(bucket, key, ObjectVersion::LATEST, u64::MAX).await? {
            FetchedObject::Found(o) => Ok(o.bytes),
            FetchedObject::Missing | FetchedObject::TooLarge { .. } => Err(StoreError::NotFound(url(bucket, key))),
        }
    }
}

impl Objects for ObjectStore {
    type Reader = ObjectReader;

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectHead {
                etag: normalize_etag(out.e_tag().unwrap_or_default()),
                size: content_length(out.content_length()),
                metadata: out.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(sdk_error("HeadObject", &url(bucket, key), e)),
        }
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion<'_>,
        max_bytes: u64,
    ) -> Result<FetchedObject, StoreError> {
        let out = match self.get_object(bucket, key, version, 0).send().await {
            Ok(out) => out,
            Err(e) if is_missing(&e) || is_changed(&e) => return Ok(FetchedObject::Missing),
            Err(e) => return Err(sdk_error("GetObject", &url(bucket, key), e)),
        };
        let size = content_length(out.content_length());
        if size > max_bytes {
            return Ok(FetchedObject::TooLarge { size });
        }
        let metadata = out.metadata().cloned().unwrap_or_default();
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Unavailable(format!("S3 GetObject {}: reading the body: {e}", url(bucket, key)))
        })?;
        let bytes = body.into_bytes().to_vec();
        if bytes.len() as u64 > max_bytes {
            return Ok(FetchedObject::TooLarge {
                size: bytes.len() as u64,
            });
        }
        Ok(FetchedObject::Found(StoredObject { bytes, metadata }))
    }

    /// Call from async code (inside a tokio runtime); read the result on a blocking thread.
    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion<'_>,
        offset: u64,
    ) -> Result<Option<(ObjectReader, ReadFailure)>, StoreError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::Rejected(format!("reading {} needs a tokio runtime: {e}", url(bucket, key))))?;
        // A resumed read is pinned to what the first answer read, so a broken stream can never
        // continue in a newer upload, whatever pin (or none) the caller gave.
        let version_id = version.version_id.map(str::to_owned);
        let mut etag = version.etag.filter(|e| !e.is_empty()).map(normalize_etag);
        let (body, size) = match self.get_object(bucket, key, version, offset).send().await {
            Ok(out) => {
                let size = offset + content_length(out.content_length());
                if etag.is_none() {
                    etag = out.e_tag().filter(|e| !e.is_empty()).map(normalize_etag);
                }
                (out.body, size)
            }
            // Resuming exactly at the end of the object.
            Err(e) if offset > 0 && code(&e) == Some("InvalidRange") => (ByteStream::from_static(b""), offset),
            Err(e) if is_missing(&e) || is_changed(&e) => return Ok(None),
            Err(e) => return Err(sdk_error("GetObject", &url(bucket, key), e)),
        };
        let failure = ReadFailure::default();
        let reader = ObjectReader {
            store: self.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id,
            etag,
            size,
            handle,
            body,
            chunk: Vec::new(),
            pos: 0,
            offset,
            stalled_at: None,
            stalls: 0,
            failure: failure.clone(),
        };
        Ok(Some((reader, failure)))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        self.put_object(bucket, key, bytes, Some(content_type), metadata).await
    }

    async fn copy(&self, bucket: &str, from: &str, version_id: Option<&str>, to: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .copy_object()
            .bucket(bucket)
            .key(to)
            .copy_source(copy_source(bucket, from, version_id))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(sdk_error("CopyObject", &format!("{} to {to}", url(bucket, from)), e)),
        }
    }

    async fn delete_if_unchanged(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(version_if_match(ObjectVersion::etag(etag)))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_missing(&e) || is_changed(&e) => return Ok(false),
            Err(e) => return Err(sdk_error("HeadObject", &url(bucket, key), e)),
        }
        self.delete(bucket, key).await?;
        Ok(true)
    }

    /// In a versioned bucket: adds a delete marker. Idempotent.
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteObject", &url(bucket, key), e))?;
        Ok(())
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type);
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error("CreateMultipartUpload", &url(bucket, key), e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| {
            StoreError::Unavailable(format!("S3 CreateMultipartUpload {}: no upload id", url(bucket, key)))
        })
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        bytes: Vec<u8>,
    ) -> Result<PartRef, StoreError> {
        let out = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error("UploadPart", &format!("{} part {part_number}", url(bucket, key)), e))?;
        Ok(PartRef {
            part_number,
            etag: out.e_tag().unwrap_or_default().to_owned(),
        })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[PartRef],
    ) -> Result<bool, StoreError> {
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
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("NoSuchUpload") => Ok(false),
            Err(e) => Err(sdk_error("CompleteMultipartUpload", &url(bucket, key), e)),
        }
    }
}

/// The model bucket: artifacts by object key (the [`ModelBlobs`] port). Every call goes
/// through the one [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct S3Blobs {
    objects: ObjectStore,
    bucket: String,
    /// The most one fetch may take, body included (the SDK's timeouts end before the body).
    deadline: Option<std::time::Duration>,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Blobs {
            objects: ObjectStore::new(client),
            bucket: bucket.into(),
            deadline: None,
        }
    }

    /// Fetches give up (retryable) after `deadline`, reading the body included: for a caller
    /// with a deadline of its own, like the api inside Lambda's timeout.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.objects.put_object(&self.bucket, key, bytes, None, &[]).await
    }

    /// Creates the bucket unless it exists. Returns whether it was created.
    pub async fn create_bucket_if_missing(&self) -> Result<bool, StoreError> {
        self.objects.create_bucket_if_missing(&self.bucket).await
    }
}

impl ModelBlobs for S3Blobs {
    async fn fetch(&self, object_key: &str) -> Result<Vec<u8>, StoreError> {
        let fetch = self.objects.fetch(&self.bucket, object_key);
        match self.deadline {
            None => fetch.await,
            Some(d) => tokio::time::timeout(d, fetch).await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "S3 GetObject {object_key}: not read within {d:?}"
                )))
            }),
        }
    }
}

/// An object's body as a blocking [`Read`], for a parser on a blocking thread
/// (`tokio::task::spawn_blocking`): never call it on an async worker thread. Only the bytes in
/// flight are held. A broken stream is resumed with a ranged GET of the same version.
pub struct ObjectReader {
    store: ObjectStore,
    bucket: String,
    key: String,
    version_id: Option<String>,
    etag: Option<String>,
    /// The object's size; `offset` is where the next byte read is in it.
    size: u64,
    handle: tokio::runtime::Handle,
    body: ByteStream,
    chunk: Vec<u8>,
    pos: usize,
    offset: u64,
    /// Where the last break happened, and how many breaks in a row came there without a byte of
    /// progress: a body that breaks right after every reopen must end the read, not loop.
    stalled_at: Option<u64>,
    stalls: u32,
    failure: ReadFailure,
}

impl ObjectReader {
    fn reopen(&mut self, why: String) -> io::Result<()> {
        let mut last = why;
        if self.stalled_at == Some(self.offset) {
            self.stalls += 1;
        } else {
            self.stalled_at = Some(self.offset);
            self.stalls = 0;
        }
        let attempts = if self.stalls >= READ_RETRIES { 0 } else { READ_RETRIES };
        for attempt in 0..attempts {
            std::thread::sleep(Duration::from_millis(200 << attempt));
            let version = ObjectVersion {
                version_id: self.version_id.as_deref(),
                etag: self.etag.as_deref(),
            };
            let get = self
                .store
                .get_object(&self.bucket, &self.key, version, self.offset)
                .send();
            match self.handle.block_on(get) {
                Ok(out) => {
                    self.body = out.body;
                    return Ok(());
                }
                Err(e) => last = DisplayErrorContext(&e).to_string(),
            }
        }
        let reason = format!(
            "S3 GetObject {} at byte {}: {last}",
            url(&self.bucket, &self.key),
            self.offset
        );
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

/// `bucket/key[?versionId=…]` with the key percent-encoded, as CopyObject wants it.
fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut s = format!("{bucket}/");
    for &c in key.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'/') {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    if let Some(v) = version_id {
        s.push_str("?versionId=");
        s.push_str(v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(
            copy_source("b", "models/incoming/acme/a b#1.txt", None),
            "b/models/incoming/acme/a%20b%231.txt"
        );
        assert_eq!(copy_source("b", "k", Some("v1")), "b/k?versionId=v1");
    }

    #[test]
    fn if_match_quotes_a_bare_or_quoted_etag_once() {
        assert_eq!(if_match("abc-2"), "\"abc-2\"");
        assert_eq!(if_match("\"abc-2\""), "\"abc-2\"");
        assert_eq!(version_if_match(ObjectVersion::LATEST), None);
        assert_eq!(version_if_match(ObjectVersion::etag("e")).as_deref(), Some("\"e\""));
        let v = ObjectVersion {
            version_id: Some("v1"),
            etag: Some("e"),
        };
        assert_eq!(version_if_match(v), None, "a version id pins the read already");
    }
}
