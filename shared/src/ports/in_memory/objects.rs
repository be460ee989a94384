//! [`Objects`] in memory: the one fake of S3 for the services' unit tests. The objects contract
//! ([`crate::ports::contract::objects`]) holds it to what the S3 adapter does on moto.
//!
//! Unversioned: a version id is ignored and the etag names the version. Etags are digests of the
//! bytes, as S3's are (a multipart object's ends in `-<parts>`).

use super::lock;
use crate::domain::batch::PartRef;
use crate::domain::objects::normalize_etag;
use crate::ports::objects::{FetchedObject, ObjectHead, ObjectVersion, Objects, ReadFailure, StoredObject};
use crate::ports::StoreError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Mutex;

#[derive(Debug, Clone)]
struct Stored {
    bytes: Vec<u8>,
    metadata: HashMap<String, String>,
    etag: String,
}

/// (bucket, key)
type Path = (String, String);

#[derive(Debug)]
struct Multipart {
    at: Path,
    metadata: HashMap<String, String>,
    parts: BTreeMap<i32, Vec<u8>>,
}

/// Buckets of objects with metadata and etags, and the multipart uploads in progress.
#[derive(Debug, Default)]
pub struct InMemoryObjects {
    objects: Mutex<BTreeMap<Path, Stored>>,
    /// By upload id.
    uploads: Mutex<HashMap<String, Multipart>>,
    /// Completed uploads: where, and the etag of the object they made.
    completed: Mutex<HashMap<String, (Path, String)>>,
    next_upload: Mutex<u64>,
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// As S3 returns user metadata: keys lower case.
fn metadata_map(metadata: &[(&str, &str)]) -> HashMap<String, String> {
    metadata
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
        .collect()
}

fn path(bucket: &str, key: &str) -> Path {
    (bucket.to_owned(), key.to_owned())
}

impl InMemoryObjects {
    /// Stores an object as an upload would; returns its etag.
    pub fn upload(&self, bucket: &str, key: &str, bytes: &[u8], metadata: &[(&str, &str)]) -> String {
        let etag = digest(bytes);
        let object = Stored {
            bytes: bytes.to_vec(),
            metadata: metadata_map(metadata),
            etag: etag.clone(),
        };
        lock(&self.objects).insert(path(bucket, key), object);
        etag
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        lock(&self.objects).get(&path(bucket, key)).map(|o| o.bytes.clone())
    }

    /// The object as text (lossy), for reports.
    pub fn text(&self, bucket: &str, key: &str) -> Option<String> {
        self.object(bucket, key)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The keys under `prefix`, in order.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        lock(&self.objects)
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Parts held by multipart uploads not completed yet.
    pub fn pending_parts(&self) -> usize {
        lock(&self.uploads).values().map(|u| u.parts.len()).sum()
    }

    /// The object at `bucket/key` if it is the version asked for (an empty etag names none).
    fn version(&self, bucket: &str, key: &str, version: ObjectVersion<'_>) -> Option<Stored> {
        let etag = version.etag.filter(|e| !e.is_empty()).map(normalize_etag);
        lock(&self.objects)
            .get(&path(bucket, key))
            .filter(|o| etag.as_ref().is_none_or(|e| *e == o.etag))
            .cloned()
    }
}

impl Objects for InMemoryObjects {
    type Reader = Cursor<Vec<u8>>;

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        Ok(lock(&self.objects).get(&path(bucket, key)).map(|o| ObjectHead {
            etag: o.etag.clone(),
            size: o.bytes.len() as u64,
            metadata: o.metadata.clone(),
        }))
    }

    async fn get(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion<'_>,
        max_bytes: u64,
    ) -> Result<FetchedObject, StoreError> {
        let Some(o) = self.version(bucket, key, version) else {
            return Ok(FetchedObject::Missing);
        };
        if o.bytes.len() as u64 > max_bytes {
            return Ok(FetchedObject::TooLarge {
                size: o.bytes.len() as u64,
            });
        }
        Ok(FetchedObject::Found(StoredObject {
            bytes: o.bytes,
            metadata: o.metadata,
        }))
    }

    async fn open(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion<'_>,
        offset: u64,
    ) -> Result<Option<(Cursor<Vec<u8>>, ReadFailure)>, StoreError> {
        Ok(self.version(bucket, key, version).map(|o| {
            let rest = o.bytes.get(offset as usize..).unwrap_or_default().to_vec();
            (Cursor::new(rest), ReadFailure::default())
        }))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        _content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        self.upload(bucket, key, &bytes, metadata);
        Ok(())
    }

    async fn copy(&self, bucket: &str, from: &str, _version_id: Option<&str>, to: &str) -> Result<bool, StoreError> {
        let mut objects = lock(&self.objects);
        let Some(o) = objects.get(&path(bucket, from)).cloned() else {
            return Ok(false);
        };
        objects.insert(path(bucket, to), o);
        Ok(true)
    }

    async fn delete_if_unchanged(&self, bucket: &str, key: &str, etag: &str) -> Result<bool, StoreError> {
        let mut objects = lock(&self.objects);
        let at = path(bucket, key);
        if objects.get(&at).is_some_and(|o| o.etag == normalize_etag(etag)) {
            objects.remove(&at);
            return Ok(true);
        }
        Ok(false)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        lock(&self.objects).remove(&path(bucket, key));
        Ok(())
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        _content_type: &str,
        metadata: &[(&str, &str)],
    ) -> Result<String, StoreError> {
        let mut next = lock(&self.next_upload);
        *next += 1;
        let id = format!("upload-{next}");
        let upload = Multipart {
            at: path(bucket, key),
            metadata: metadata_map(metadata),
            parts: BTreeMap::new(),
        };
        lock(&self.uploads).insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        bytes: Vec<u8>,
    ) -> Result<PartRef, StoreError> {
        let mut uploads = lock(&self.uploads);
        let upload = uploads
            .get_mut(upload_id)
            .filter(|u| u.at == path(bucket, key))
            .ok_or_else(|| StoreError::Rejected(format!("no multipart upload {upload_id} of s3://{bucket}/{key}")))?;
        let etag = digest(&bytes);
        upload.parts.insert(part_number, bytes);
        Ok(PartRef { part_number, etag })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[PartRef],
    ) -> Result<bool, StoreError> {
        let at = path(bucket, key);
        let mut uploads = lock(&self.uploads);
        let Some(upload) = uploads.get(upload_id).filter(|u| u.at == at) else {
            // Completed before: done while the object there is still what it made, as on S3.
            let done = lock(&self.completed).get(upload_id).cloned();
            let current = lock(&self.objects).get(&at).map(|o| o.etag.clone());
            return Ok(done.is_some_and(|(p, etag)| p == at && current == Some(etag)));
        };
        let mut bytes = Vec::new();
        let mut etags = Vec::new();
        for p in parts {
            let part = upload
                .parts
                .get(&p.part_number)
                .filter(|b| digest(b) == normalize_etag(&p.etag))
                .ok_or_else(|| {
                    StoreError::Rejected(format!("part {} of upload {upload_id} is not there", p.part_number))
                })?;
            bytes.extend_from_slice(part);
            etags.push(normalize_etag(&p.etag));
        }
        let Some(upload) = uploads.remove(upload_id) else {
            return Ok(false);
        };
        let etag = format!("{}-{}", digest(etags.concat().as_bytes()), parts.len());
        lock(&self.completed).insert(upload_id.to_owned(), (upload.at.clone(), etag.clone()));
        let object = Stored {
            bytes,
            metadata: upload.metadata,
            etag,
        };
        lock(&self.objects).insert(upload.at, object);
        Ok(true)
    }
}
