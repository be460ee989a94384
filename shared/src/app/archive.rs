//! The decision archive: each committed decision and label of a stream batch as gzip NDJSON in
//! the data bucket, one object per (tenant, kind, day) group of the batch, named by the sequence
//! number of the group's first record ([`archive_key`]).
//!
//! The guarantee, precisely: every committed record is archived exactly once under the
//! deliveries the event source mapping makes (a redelivered batch, a retry from a reported
//! record, a bisected batch), without a checkpoint (Lambda's DynamoDB stream records carry no
//! shard id to key one by; docs/events.md has the argument): the same batch start gives the
//! same names, so a redelivery overwrites its own objects; the consumer
//! ([`crate::app::events::StreamConsumer`]) archives only the records before the first one it
//! reports failed, so a retry that starts at that record finds none of its records archived; and
//! an archive failure reports the whole batch, so its retry starts where it did. A shard re-read
//! from an earlier position (which at-least-once allows) starts its batches elsewhere and can
//! archive a record again: every line carries `event_id`, and readers deduplicate on it.

use crate::app::batch::NDJSON_TYPE;
use crate::domain::events::{archive_key, ArchiveKind, ArchiveLine, RecordContent, StreamRecord};
use crate::domain::TenantId;
use crate::ports::objects::Objects;
use crate::ports::StoreError;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

pub struct Archiver<'a, O> {
    pub objects: &'a O,
    pub bucket: &'a str,
}

/// One group's object, before it is written.
struct Group {
    first_sequence: String,
    ids: BTreeSet<String>,
    lines: Vec<u8>,
}

impl<O: Objects> Archiver<'_, O> {
    /// Writes the archive objects of `records`; their keys, in order.
    pub async fn archive(&self, records: &[StreamRecord]) -> Result<Vec<String>, StoreError> {
        let mut groups: BTreeMap<(TenantId, ArchiveKind, time::Date), Group> = BTreeMap::new();
        for r in records {
            let RecordContent::Publish(change) = &r.content else {
                continue;
            };
            let Some(ArchiveLine {
                kind,
                tenant,
                date,
                event_id,
                line,
            }) = change.archive_line()
            else {
                continue;
            };
            let group = groups.entry((tenant, kind, date)).or_insert_with(|| Group {
                first_sequence: r.sequence_number.clone(),
                ids: BTreeSet::new(),
                lines: Vec::new(),
            });
            // A change repeated within the batch (moto repeats some INSERTs) is archived once.
            if group.ids.insert(event_id) {
                serde_json::to_writer(&mut group.lines, &line)
                    .map_err(|e| StoreError::Rejected(format!("archive line: {e}")))?;
                group.lines.push(b'\n');
            }
        }
        let mut keys = Vec::new();
        for ((tenant, kind, date), group) in groups {
            let key = archive_key(&tenant, kind, date, &group.first_sequence);
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(&group.lines)
                .map_err(|e| StoreError::Rejected(format!("{key}: gzip: {e}")))?;
            let bytes = gz
                .finish()
                .map_err(|e| StoreError::Rejected(format!("{key}: gzip: {e}")))?;
            let count = group.ids.len().to_string();
            self.objects
                .put(self.bucket, &key, bytes, NDJSON_TYPE, &[("records", count.as_str())])
                .await?;
            keys.push(key);
        }
        Ok(keys)
    }
}

/// The lines of an archive object (gzip NDJSON), for readers and tests.
pub fn read_lines(bytes: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    use std::io::Read as _;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| format!("not gzip text: {e}"))?;
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a JSON line: {e}")))
        .collect()
}
