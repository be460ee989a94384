//! The label applier's file ports on S3 and tokio: the object streamed from its checkpoint
//! and parsed on a blocking thread (gzip and the line parser are synchronous), read ahead by
//! two chunks; the reports through the S3 adapter's writer; sleeping.

use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;
use verdict::adapters::s3::{ObjectStore, ObjectWriter, Version};
use verdict::domain::labels::{open_reader, LabelChunk};
use verdict::ports::labels::{LabelChunks, LabelFiles, LabelSource, ReportWriter};
use verdict::ports::StoreError;

/// Chunks read ahead of the one being applied.
const READ_AHEAD: usize = 2;

pub struct S3LabelFiles {
    objects: ObjectStore,
}

impl S3LabelFiles {
    pub fn new(objects: ObjectStore) -> Self {
        S3LabelFiles { objects }
    }
}

/// Chunks from the reading thread; dropping this stops it at its next send.
pub struct ReadAhead {
    rx: mpsc::Receiver<LabelChunk>,
}

impl LabelChunks for ReadAhead {
    async fn next(&mut self) -> Option<LabelChunk> {
        self.rx.recv().await
    }
}

/// The errors report, in multipart parts once it is large.
pub struct S3Report(ObjectWriter);

impl ReportWriter for S3Report {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.0.write(bytes).await
    }

    async fn finish(self) -> Result<(), StoreError> {
        self.0.finish().await
    }
}

impl LabelFiles for S3LabelFiles {
    type Chunks = ReadAhead;
    type Writer = S3Report;

    async fn open(&self, source: &LabelSource<'_>) -> Result<Option<ReadAhead>, StoreError> {
        let version = Version {
            version_id: source.version_id,
            etag: Some(source.etag),
        };
        let Some(body) = self
            .objects
            .stream(source.bucket, source.key, version, source.offset)
            .await?
        else {
            return Ok(None);
        };
        let bridge = SyncIoBridge::new(Box::pin(body.into_async_read()));
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let (file, kind, resume, offset) = (
            source.file.to_owned(),
            source.kind,
            source.resume.clone(),
            source.offset,
        );
        let rows = source.chunk_rows;
        tokio::task::spawn_blocking(move || {
            let mut reader = open_reader(file, kind, bridge, &resume, offset);
            loop {
                let chunk = reader.next_chunk(rows);
                let end = chunk.end;
                if tx.blocking_send(chunk).is_err() || end {
                    return;
                }
            }
        });
        Ok(Some(ReadAhead { rx }))
    }

    fn writer(&self, bucket: &str, key: &str, content_type: &str) -> S3Report {
        S3Report(self.objects.writer(bucket, key, content_type))
    }

    async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.objects.put(bucket, key, bytes, content_type).await
    }
}
