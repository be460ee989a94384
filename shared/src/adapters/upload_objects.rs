//! [`UploadObjects`] (model import's view of the model bucket) on the S3 object adapter.

use crate::adapters::model_objects::{Fetched, ObjectStore, Version};
use crate::ports::registry::{FetchedObject, ObjectVersion, StoredObject, UploadObjects};
use crate::ports::StoreError;

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
