//! The [`Objects`] contract: one body of assertions, run against
//! [`InMemoryObjects`](crate::ports::in_memory::InMemoryObjects) and against the S3 adapter on
//! moto, so the fake the batch runner, model import and the label applier are tested over keeps
//! what S3 does: etags on put, `If-Match` on reads and conditional deletes, missing objects, ranged
//! opens, multipart uploads. It panics on the first broken promise.

use crate::ports::objects::{FetchedObject, ObjectVersion, Objects};
use std::future::Future;
use std::io::Read;

/// Reads a reader to its end at once: what the fake's reader needs. The S3 reader blocks, so its
/// caller drains it on a blocking thread instead.
pub async fn drain_inline<R: Read>(reader: R) -> Vec<u8> {
    drain_blocking(reader)
}

/// Reads a reader to its end; panics on an error, as a test does.
pub fn drain_blocking<R: Read>(mut reader: R) -> Vec<u8> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).expect("the object reads to its end");
    bytes
}

/// Every promise, on keys under `prefix` (fresh per run) in `bucket`. `drain` reads an opened
/// object to its end.
pub async fn objects_contract<O, D, F>(objects: &O, bucket: &str, prefix: &str, drain: D)
where
    O: Objects,
    D: Fn(O::Reader) -> F,
    F: Future<Output = Vec<u8>>,
{
    let key = format!("{prefix}/a.csv");
    let copy = format!("{prefix}/copy.csv");

    // Nothing there: no head, Missing, no reader, nothing to delete or copy.
    assert_eq!(objects.head(bucket, &key).await.unwrap(), None);
    assert_eq!(
        objects.get(bucket, &key, ObjectVersion::LATEST, 1 << 20).await.unwrap(),
        FetchedObject::Missing
    );
    assert!(objects
        .open(bucket, &key, ObjectVersion::LATEST, 0)
        .await
        .unwrap()
        .is_none());
    assert!(!objects.delete_if_unchanged(bucket, &key, "e").await.unwrap());
    assert!(!objects.copy(bucket, &key, None, &copy).await.unwrap());
    objects.delete(bucket, &key).await.unwrap();

    // A put: a bare etag, the size, the user metadata with its keys in lower case.
    let first = b"id,amount\n1,2\n".to_vec();
    objects
        .put(bucket, &key, first.clone(), "text/csv", &[("Source-Etag", "x")])
        .await
        .unwrap();
    let head = objects.head(bucket, &key).await.unwrap().expect("the object is stored");
    assert!(
        !head.etag.is_empty() && !head.etag.contains('"'),
        "etag {:?}",
        head.etag
    );
    assert_eq!(head.size, first.len() as u64);
    assert_eq!(head.metadata.get("source-etag").map(String::as_str), Some("x"));

    // Whole reads: by etag, bare or quoted; refused unread when too large; Missing for another etag.
    let quoted = format!("\"{}\"", head.etag);
    for etag in [head.etag.as_str(), quoted.as_str()] {
        let FetchedObject::Found(got) = objects
            .get(bucket, &key, ObjectVersion::etag(etag), 1 << 20)
            .await
            .unwrap()
        else {
            panic!("the object with etag {etag} is found");
        };
        assert_eq!(got.bytes, first);
        assert_eq!(got.metadata.get("source-etag").map(String::as_str), Some("x"));
    }
    assert_eq!(
        objects.get(bucket, &key, ObjectVersion::LATEST, 4).await.unwrap(),
        FetchedObject::TooLarge {
            size: first.len() as u64
        }
    );
    let stale = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        objects
            .get(bucket, &key, ObjectVersion::etag(stale), 1 << 20)
            .await
            .unwrap(),
        FetchedObject::Missing
    );

    // Streamed reads: from the start, from an offset, from the end (nothing); None for another etag.
    for (offset, want) in [(0, &first[..]), (10, &b"1,2\n"[..]), (first.len() as u64, &b""[..])] {
        let (reader, _) = objects
            .open(bucket, &key, ObjectVersion::etag(&quoted), offset)
            .await
            .unwrap()
            .expect("the object opens");
        assert_eq!(drain(reader).await, want, "read from byte {offset}");
    }
    assert!(objects
        .open(bucket, &key, ObjectVersion::etag(stale), 0)
        .await
        .unwrap()
        .is_none());

    // A new upload to the key has another etag: the old one no longer reads or deletes.
    let second = b"id,amount\n3,4\n5,6\n".to_vec();
    objects
        .put(bucket, &key, second.clone(), "text/csv", &[])
        .await
        .unwrap();
    let head2 = objects.head(bucket, &key).await.unwrap().expect("replaced");
    assert_ne!(head2.etag, head.etag);
    assert!(head2.metadata.is_empty(), "a put replaces the metadata");
    assert!(objects
        .open(bucket, &key, ObjectVersion::etag(&head.etag), 0)
        .await
        .unwrap()
        .is_none());
    assert!(!objects.delete_if_unchanged(bucket, &key, &head.etag).await.unwrap());
    assert!(
        objects.head(bucket, &key).await.unwrap().is_some(),
        "the newer upload survives"
    );

    // A copy has the bytes; deleting with the current etag (quoted) deletes.
    assert!(objects.copy(bucket, &key, None, &copy).await.unwrap());
    let FetchedObject::Found(copied) = objects
        .get(bucket, &copy, ObjectVersion::LATEST, 1 << 20)
        .await
        .unwrap()
    else {
        panic!("the copy is there");
    };
    assert_eq!(copied.bytes, second);
    assert!(objects
        .delete_if_unchanged(bucket, &key, &format!("\"{}\"", head2.etag))
        .await
        .unwrap());
    assert_eq!(objects.head(bucket, &key).await.unwrap(), None);
    objects.delete(bucket, &copy).await.unwrap();
    assert_eq!(objects.head(bucket, &copy).await.unwrap(), None);

    // Multipart: the parts in order, the metadata given at the start, an etag naming the part
    // count; completing again while the object is its result is done already.
    let big = format!("{prefix}/big.csv");
    let id = objects
        .create_multipart(bucket, &big, "text/csv", &[("source-etag", "y")])
        .await
        .unwrap();
    let head_part = vec![b'a'; 5 << 20];
    let p1 = objects
        .upload_part(bucket, &big, &id, 1, head_part.clone())
        .await
        .unwrap();
    let p2 = objects
        .upload_part(bucket, &big, &id, 2, b"tail\n".to_vec())
        .await
        .unwrap();
    assert_eq!((p1.part_number, p2.part_number), (1, 2));
    assert_eq!(
        objects.head(bucket, &big).await.unwrap(),
        None,
        "nothing until completed"
    );
    let parts = [p1, p2];
    assert!(objects.complete_multipart(bucket, &big, &id, &parts).await.unwrap());
    let head = objects.head(bucket, &big).await.unwrap().expect("completed");
    assert_eq!(head.size, (5 << 20) + 5);
    assert!(head.etag.ends_with("-2"), "etag {:?}", head.etag);
    assert_eq!(head.metadata.get("source-etag").map(String::as_str), Some("y"));
    let (reader, _) = objects
        .open(bucket, &big, ObjectVersion::etag(&head.etag), 5 << 20)
        .await
        .unwrap()
        .expect("the completed object opens");
    assert_eq!(drain(reader).await, b"tail\n");
    assert!(objects.complete_multipart(bucket, &big, &id, &parts).await.unwrap());
    objects.delete(bucket, &big).await.unwrap();
}
