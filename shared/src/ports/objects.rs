//! Objects (S3): what the batch runner, model import and the label applier read and write, in
//! one port. The bucket is given per call, since S3 events name it. Etags are accepted with or
//! without quotes and answered without.

use crate::domain::batch::PartRef;
use crate::ports::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// What a HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Without quotes.
    pub etag: String,
    pub size: u64,
    /// User metadata, keys lower case, without `x-amz-meta-`.
    pub metadata: HashMap<String, String>,
}

/// Which version of an object to read: the event's version id, else its etag, else the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectVersion<'a> {
    pub version_id: Option<&'a str>,
    pub etag: Option<&'a str>,
}

impl<'a> ObjectVersion<'a> {
    pub const LATEST: ObjectVersion<'static> = ObjectVersion {
        version_id: None,
        etag: None,
    };

    /// The version that has `etag`.
    pub fn etag(etag: &'a str) -> Self {
        ObjectVersion {
            version_id: None,
            etag: Some(etag),
        }
    }
}

/// An object read whole, with its user metadata (keys lower case, without `x-amz-meta-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

/// The answer to [`Objects::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchedObject {
    Found(StoredObject),
    /// No such object, or not the version asked for (it was replaced since the event).
    Missing,
    /// Larger than asked for; not read.
    TooLarge {
        size: u64,
    },
}

/// Why a streaming read gave up, kept where the caller can see it after the reader has been
/// handed to a parser that turns I/O errors into row errors.
#[derive(Debug, Clone, Default)]
pub struct ReadFailure(Arc<Mutex<Option<String>>>);

impl ReadFailure {
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    /// Keeps the first reason.
    pub fn set(&self, reason: String) {
        if let Ok(mut g) = self.0.lock() {
            g.get_or_insert(reason);
        }
    }
}

pub trait Objects: Send + Sync {
    /// A blocking reader of one object version, for a parser on a blocking thread.
    type Reader: Read + Send + 'static;

    /// `None` if there is no such object.
    fn head(&self, bucket: &str, key: &str) -> impl Future<Output = Result<Option<ObjectHead>, StoreError>> + Send;

    /// Reads a whole object, refusing (unread) one larger than `max_bytes`.
    fn get(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion<'_>,
        max_bytes: u64,
    ) -> impl Future<Output = Result<FetchedObject, StoreError>> + Send;

    /// Starts reading `version` from byte `offset` (the object's size: no bytes); `None` if it
    /// is gone or is not that version. The [`ReadFailure`] says why the reader stopped early, if
    /// it did.
    fn open(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion<'_>,
        offset: u64,
    ) -> impl Future<Output = Result<Option<(Self::Reader, ReadFailure)>, StoreError>> + Send;

    /// Writes a whole object, with user metadata (keys without `x-amz-meta-`).
    fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Copies `from` (at `version_id`, else the latest), metadata included, to `to`; false when
    /// `from` does not exist.
    fn copy(
        &self,
        bucket: &str,
        from: &str,
        version_id: Option<&str>,
        to: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the object only while it still has `etag`, so a newer upload to the same key
    /// survives; whether it did.
    fn delete_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the current object, if any.
    fn delete(&self, bucket: &str, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Starts a multipart upload; returns its id.
    fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Uploads (or replaces) one part. Every part but the last must be at least 5 MiB.
    fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<PartRef, StoreError>> + Send;

    /// Completes an upload from its parts, in order. Completing it again answers `true` while
    /// the object is still its result (as S3 does); `false` when the upload no longer exists
    /// (aborted, or completed and replaced since).
    fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[PartRef],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Parts of an [`ObjectWriter`] are this big (S3 needs at least 5 MiB for every part but the last).
pub const PART_BYTES: usize = 8 << 20;

/// Streams into one object through any [`Objects`]: one put if it stays small, else a multipart
/// upload of [`PART_BYTES`] parts, so a large report stays out of memory. Call
/// [`ObjectWriter::finish`]; a dropped writer leaves an incomplete multipart upload, which the
/// bucket's lifecycle rule aborts after 7 days.
pub struct ObjectWriter<'a, O> {
    objects: &'a O,
    bucket: String,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<PartRef>,
}

impl<'a, O: Objects> ObjectWriter<'a, O> {
    pub fn new(objects: &'a O, bucket: &str, key: &str, content_type: &str) -> Self {
        ObjectWriter {
            objects,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
        }
    }

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
                    .objects
                    .create_multipart(&self.bucket, &self.key, &self.content_type, &[])
                    .await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buffer);
        let part = self
            .objects
            .upload_part(&self.bucket, &self.key, &upload_id, number, body)
            .await?;
        self.parts.push(part);
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), StoreError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = std::mem::take(&mut self.buffer);
            return self
                .objects
                .put(&self.bucket, &self.key, body, &self.content_type, &[])
                .await;
        };
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        if self
            .objects
            .complete_multipart(&self.bucket, &self.key, &upload_id, &self.parts)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Rejected(format!(
                "S3 CompleteMultipartUpload s3://{}/{}: upload {upload_id} is gone",
                self.bucket, self.key
            )))
        }
    }
}
