//! The S3 adapter, one for every function: whole objects with their metadata, ranged streams,
//! blocking readers that resume a broken stream, puts, copies, deletes, streamed writers and
//! multipart uploads ([`ObjectStore`], the bucket given per call since S3 events name it), and
//! the model bucket's artifacts by key ([`S3Blobs`], the [`ModelBlobs`] port).

use crate::domain::batch::PartRef;
use crate::domain::objects::normalize_etag;
use crate::ports::objects::{ObjectHead, Objects, ReadFailure};
use crate::ports::{ModelBlobs, StoreError};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
pub use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

/// Parts of a streamed writer are this big (S3 needs at least 5 MiB for every part but the last).
pub const PART_BYTES: usize = 8 << 20;
/// Ranged GETs a read makes after the body stream breaks, before it gives up.
const READ_RETRIES: u32 = 3;

fn sdk_error<E, R>(op: &str, target: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    StoreError::Unavailable(format!("S3 {op} {target}: {}", DisplayErrorContext(&e)))
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

/// An object read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bytes: Vec<u8>,
    /// User metadata, keys without `x-amz-meta-`, lower case (as S3 returns them).
    pub metadata: HashMap<String, String>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// The answer to [`ObjectStore::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Found(Object),
    /// No such object, or it changed since the event (its etag no longer matches).
    Missing,
    TooLarge {
        size: u64,
    },
}

/// Which version of an object to read: the event's version id, else its etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version<'a> {
    pub version_id: Option<&'a str>,
    pub etag: Option<&'a str>,
}

impl Version<'_> {
    pub const LATEST: Version<'static> = Version {
        version_id: None,
        etag: None,
    };

    fn if_match(&self) -> Option<String> {
        match (self.version_id, self.etag) {
            (None, Some(e)) if !e.is_empty() => Some(if_match(e)),
            _ => None,
        }
    }
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

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads a whole object and its metadata, refusing (unread) one larger than `max_bytes`.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        version: Version<'_>,
        max_bytes: u64,
    ) -> Result<Fetched, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.version_id.map(str::to_owned))
            .set_if_match(version.if_match())
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) if is_missing(&e) || is_changed(&e) => return Ok(Fetched::Missing),
            Err(e) => return Err(sdk_error("GetObject", &url(bucket, key), e)),
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        if size > max_bytes {
            return Ok(Fetched::TooLarge { size });
        }
        let metadata = out.metadata().cloned().unwrap_or_default();
        let etag = out.e_tag().map(normalize_etag);
        let version_id = out.version_id().map(str::to_owned);
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Unavailable(format!("S3 GetObject {}: reading the body: {e}", url(bucket, key)))
        })?;
        let bytes = body.into_bytes().to_vec();
        if bytes.len() as u64 > max_bytes {
            return Ok(Fetched::TooLarge {
                size: bytes.len() as u64,
            });
        }
        Ok(Fetched::Found(Object {
            bytes,
            metadata,
            etag,
            version_id,
        }))
    }

    /// The object's bytes from `offset` on, as a stream; None when it is gone or changed.
    pub async fn stream(
        &self,
        bucket: &str,
        key: &str,
        version: Version<'_>,
        offset: u64,
    ) -> Result<Option<ByteStream>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.version_id.map(str::to_owned))
            .set_if_match(version.if_match())
            .set_range((offset > 0).then(|| format!("bytes={offset}-")))
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(out.body)),
            // Resuming exactly at the end of the object.
            Err(e) if code(&e) == Some("InvalidRange") => Ok(Some(ByteStream::from_static(b""))),
            Err(e) if is_missing(&e) || is_changed(&e) => Ok(None),
            Err(e) => Err(sdk_error("GetObject", &url(bucket, key), e)),
        }
    }

    /// The object's etag, size and metadata; `None` if there is no such object.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectHead {
                etag: normalize_etag(out.e_tag().unwrap_or_default()),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                metadata: out.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(sdk_error("HeadObject", &url(bucket, key), e)),
        }
    }

    /// Starts streaming the object if it still has `etag` as a blocking reader; `None` if it is
    /// gone or has changed. Call from async code (inside a tokio runtime); read the result on a
    /// blocking thread.
    pub async fn open(&self, bucket: &str, key: &str, etag: &str) -> Result<Option<ObjectReader>, StoreError> {
        let etag = normalize_etag(etag);
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .if_match(if_match(&etag))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing(&e) || is_changed(&e) => return Ok(None),
            Err(e) => return Err(sdk_error("GetObject", &url(bucket, key), e)),
        };
        Ok(Some(ObjectReader {
            client: self.client.clone(),
            bucket: bucket.to_owned(),
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

    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.put_object(bucket, key, bytes, Some(content_type), &[]).await
    }

    /// A put with user metadata (keys without `x-amz-meta-`).
    pub async fn put_with(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        self.put_object(bucket, key, bytes, Some(content_type), metadata).await
    }

    /// Copies an object (metadata included) within the bucket. False when the source is gone.
    pub async fn copy(&self, bucket: &str, from: &str, version_id: Option<&str>, to: &str) -> Result<bool, StoreError> {
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

    /// Deletes the object only while its current version still has `etag`, so a newer upload
    /// to the same key survives. Returns whether it deleted.
    pub async fn delete_if_unchanged(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StoreError> {
        let current = Version {
            version_id: None,
            etag: Some(etag),
        };
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(current.if_match())
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

    /// Deletes the current object (in a versioned bucket: adds a delete marker). Idempotent.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteObject", &url(bucket, key), e))?;
        Ok(())
    }

    /// A writer that streams into one object: one PutObject if it stays small, else a
    /// multipart upload of [`PART_BYTES`] parts.
    pub fn writer(&self, bucket: &str, key: &str, content_type: &str) -> ObjectWriter {
        ObjectWriter {
            store: self.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
        }
    }

    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(
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

    /// Uploads (or replaces) one part. Every part but the last must be at least 5 MiB.
    pub async fn upload_part(
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

    /// Completes an upload from its parts, in order. `Ok(false)` when the upload no longer
    /// exists (completed or aborted before).
    pub async fn complete_multipart(
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

    pub async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(sdk_error("AbortMultipartUpload", &url(bucket, key), e)),
        }
    }

    /// The parts S3 holds for an upload, in order (first page of up to 1,000).
    pub async fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<PartRef>, StoreError> {
        let out = self
            .client
            .list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| sdk_error("ListParts", &url(bucket, key), e))?;
        Ok(out
            .parts()
            .iter()
            .map(|p| PartRef {
                part_number: p.part_number().unwrap_or(0),
                etag: p.e_tag().unwrap_or_default().to_owned(),
            })
            .collect())
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
        match self.get(bucket, key, Version::LATEST, u64::MAX).await? {
            Fetched::Found(o) => Ok(o.bytes),
            Fetched::Missing | Fetched::TooLarge { .. } => Err(StoreError::NotFound(url(bucket, key))),
        }
    }
}

impl Objects for ObjectStore {
    type Reader = ObjectReader;

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        ObjectStore::head(self, bucket, key).await
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Option<(ObjectReader, ReadFailure)>, StoreError> {
        Ok(ObjectStore::open(self, bucket, key, etag).await?.map(|r| {
            let failure = r.failure();
            (r, failure)
        }))
    }

    async fn put_with(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        ObjectStore::put_with(self, bucket, key, bytes, content_type, metadata).await
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        ObjectStore::create_multipart(self, bucket, key, content_type, metadata).await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        bytes: Vec<u8>,
    ) -> Result<PartRef, StoreError> {
        ObjectStore::upload_part(self, bucket, key, upload_id, part_number, bytes).await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[PartRef],
    ) -> Result<bool, StoreError> {
        ObjectStore::complete_multipart(self, bucket, key, upload_id, parts).await
    }
}

/// The model bucket: artifacts by object key (the [`ModelBlobs`] port). Every call goes
/// through the one [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct S3Blobs {
    objects: ObjectStore,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Blobs {
            objects: ObjectStore::new(client),
            bucket: bucket.into(),
        }
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
        self.objects.fetch(&self.bucket, object_key).await
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

    fn reopen(&mut self, why: String) -> io::Result<()> {
        let mut last = why;
        for attempt in 0..READ_RETRIES {
            std::thread::sleep(Duration::from_millis(200 << attempt));
            let get = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .if_match(if_match(&self.etag))
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

/// See [`ObjectStore::writer`]. Call [`ObjectWriter::finish`]; a dropped writer leaves an
/// incomplete multipart upload, which the bucket's lifecycle rule aborts after 7 days.
pub struct ObjectWriter {
    store: ObjectStore,
    bucket: String,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<PartRef>,
}

impl ObjectWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PART_BYTES {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self) -> Result<(), StoreError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .store
                    .create_multipart(&self.bucket, &self.key, &self.content_type, &[])
                    .await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buffer);
        let part = self
            .store
            .upload_part(&self.bucket, &self.key, &upload_id, number, body)
            .await?;
        self.parts.push(part);
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), StoreError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buffer);
            return self.store.put(&self.bucket, &self.key, body, &self.content_type).await;
        };
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        if self
            .store
            .complete_multipart(&self.bucket, &self.key, &upload_id, &self.parts)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "S3 CompleteMultipartUpload {}: upload {upload_id} is gone",
                url(&self.bucket, &self.key)
            )))
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

// [`UploadObjects`]: model import's view of the model bucket, on the same adapter.

use crate::ports::registry::{FetchedObject, ObjectVersion, StoredObject, UploadObjects};

impl UploadObjects for ObjectStore {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion<'_>,
        max_bytes: u64,
    ) -> Result<FetchedObject, StoreError> {
        let version = Version {
            version_id: version.version_id,
            etag: version.etag,
        };
        Ok(match ObjectStore::get(self, bucket, key, version, max_bytes).await? {
            Fetched::Found(o) => FetchedObject::Found(StoredObject {
                bytes: o.bytes,
                metadata: o.metadata,
            }),
            Fetched::Missing => FetchedObject::Missing,
            Fetched::TooLarge { size } => FetchedObject::TooLarge { size },
        })
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        ObjectStore::put(self, bucket, key, bytes, content_type).await
    }

    async fn copy(&self, bucket: &str, from: &str, version_id: Option<&str>, to: &str) -> Result<bool, StoreError> {
        ObjectStore::copy(self, bucket, from, version_id, to).await
    }

    async fn delete_if_unchanged(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StoreError> {
        ObjectStore::delete_if_unchanged(self, bucket, key, etag).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        ObjectStore::delete(self, bucket, key).await
    }
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
        assert_eq!(Version::LATEST.if_match(), None);
        let v = Version {
            version_id: Some("v1"),
            etag: Some("e"),
        };
        assert_eq!(v.if_match(), None, "a version id pins the read already");
    }
}
