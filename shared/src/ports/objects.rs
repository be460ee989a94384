//! Objects (S3): what the batch runner reads and writes. The bucket is given per call, since S3
//! events name it.

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
    /// User metadata, keys without `x-amz-meta-`.
    pub metadata: HashMap<String, String>,
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

    /// Starts reading the object if it still has `etag`; `None` if it is gone or changed. The
    /// [`ReadFailure`] says why the reader stopped early, if it did.
    fn open(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> impl Future<Output = Result<Option<(Self::Reader, ReadFailure)>, StoreError>> + Send;

    fn put_with(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        metadata: &[(&str, &str)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

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

    /// Completes an upload from its parts. `false` when the upload no longer exists.
    fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[PartRef],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
