//! S3 adapter for the upload-triggered functions (model-import, labels): whole objects with
//! their metadata, ranged streams, copies, deletes, puts and streamed multipart writes.
//!
//! The bucket is given per call, since S3 events name it.

use crate::ports::StoreError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
pub use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use std::collections::HashMap;
use std::fmt;

/// Multipart parts are this big (S3 needs at least 5 MiB for every part but the last).
pub const PART_BYTES: usize = 8 << 20;

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
            (None, Some(e)) if !e.is_empty() => Some(format!("\"{}\"", e.trim_matches('"'))),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ObjectStore {
    client: Client,
}

fn url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
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
            Err(e) if is_missing(&e) || code(&e) == Some("PreconditionFailed") => return Ok(Fetched::Missing),
            Err(e) => return Err(sdk_error("GetObject", &url(bucket, key), e)),
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        if size > max_bytes {
            return Ok(Fetched::TooLarge { size });
        }
        let metadata = out.metadata().cloned().unwrap_or_default();
        let etag = out.e_tag().map(|e| e.trim_matches('"').to_owned());
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
            Err(e) if is_missing(&e) || code(&e) == Some("PreconditionFailed") => Ok(None),
            Err(e) => Err(sdk_error("GetObject", &url(bucket, key), e)),
        }
    }

    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(sdk_error("HeadObject", &url(bucket, key), e)),
        }
    }

    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error("PutObject", &url(bucket, key), e))?;
        Ok(())
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
            Err(e) if is_missing(&e) || code(&e) == Some("PreconditionFailed") => return Ok(false),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => return Ok(false),
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
            client: self.client.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
        }
    }
}

/// See [`ObjectStore::writer`]. Call [`ObjectWriter::finish`]; a dropped writer leaves an
/// incomplete multipart upload, which the bucket's lifecycle rule aborts after 7 days.
pub struct ObjectWriter {
    client: Client,
    bucket: String,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
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
        let target = url(&self.bucket, &self.key);
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type(&self.content_type)
                    .send()
                    .await
                    .map_err(|e| sdk_error("CreateMultipartUpload", &target, e))?;
                let id = out
                    .upload_id()
                    .ok_or_else(|| StoreError::Unavailable(format!("S3 CreateMultipartUpload {target}: no upload id")))?
                    .to_owned();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buffer);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error("UploadPart", &target, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(), StoreError> {
        let target = url(&self.bucket, &self.key);
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| sdk_error("PutObject", &target, e))?;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("CompleteMultipartUpload", &target, e))?;
        Ok(())
    }
}

/// An S3 event's object key as stored ([`crate::domain::batch::decode_event_key`]). A key that is not
/// valid encoding is kept as written.
pub fn decode_event_key(raw: &str) -> String {
    crate::domain::batch::decode_event_key(raw).unwrap_or_else(|_| raw.to_owned())
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
    fn event_keys_decode_like_s3_encodes_them() {
        assert_eq!(
            decode_event_key("models/incoming/acme/my+model%281%29.txt"),
            "models/incoming/acme/my model(1).txt"
        );
        assert_eq!(decode_event_key("a%2Bb"), "a+b");
        assert_eq!(decode_event_key("100%"), "100%");
        assert_eq!(decode_event_key("x%zz%4"), "x%zz%4");
        assert_eq!(decode_event_key("%E2%82%AC"), "€");
        assert_eq!(decode_event_key("%FF"), "%FF");
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(
            copy_source("b", "models/incoming/acme/a b#1.txt", None),
            "b/models/incoming/acme/a%20b%231.txt"
        );
        assert_eq!(copy_source("b", "k", Some("v1")), "b/k?versionId=v1");
    }
}
