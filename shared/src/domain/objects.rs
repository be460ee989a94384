//! Uploaded S3 objects as the S3-triggered functions see them: one constructor from an event's
//! fields, one key decoder, one ETag normaliser.

use super::ObjectRef;

/// An event's object key is not valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object key {key:?} is not valid percent-encoding: {reason}")]
pub struct KeyEncodingError {
    /// The key as the event wrote it.
    pub key: String,
    pub reason: &'static str,
}

/// Decodes an S3 event's object key: `+` is a space and `%XX` a byte (the event's encoding).
pub fn decode_event_key(raw: &str) -> Result<String, KeyEncodingError> {
    let bad = |reason: &'static str| KeyEncodingError {
        key: raw.to_owned(),
        reason,
    };
    const BAD_ESCAPE: &str = "a % is not followed by two hex digits";
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(|| bad(BAD_ESCAPE))?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad(BAD_ESCAPE))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad(BAD_ESCAPE))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad("it decodes to bytes that are not UTF-8"))
}

/// An S3 ETag without the quotes S3 puts around it in headers (events carry it bare).
pub fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_owned()
}

/// The object an S3 ObjectCreated record names: bucket, decoded key, bare etag, size and
/// version. Built only by [`UploadedObject::from_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedObject {
    pub bucket: String,
    /// Decoded, as stored.
    pub key: String,
    /// Without quotes; empty when the event has none.
    pub etag: String,
    pub size: Option<u64>,
    /// None for an unversioned bucket (which sends none, or the string "null").
    pub version_id: Option<String>,
}

impl UploadedObject {
    /// From an event's fields. `decoded_key` is the key the event library already decoded, if
    /// it did; else `raw_key` is decoded here. A key that does not decode is an error that
    /// carries the object with the key as written.
    // The error path is rare (an S3 key S3 itself did not encode); no need to box.
    #[allow(clippy::result_large_err)]
    pub fn from_event(
        bucket: Option<&str>,
        raw_key: Option<&str>,
        decoded_key: Option<&str>,
        etag: Option<&str>,
        size: Option<i64>,
        version_id: Option<&str>,
    ) -> Result<UploadedObject, (KeyEncodingError, UploadedObject)> {
        let raw = raw_key.unwrap_or_default();
        let decoded = match decoded_key.filter(|k| !k.is_empty()) {
            Some(k) => Ok(k.to_owned()),
            None => decode_event_key(raw),
        };
        let object = |key: String| UploadedObject {
            bucket: bucket.unwrap_or_default().to_owned(),
            key,
            etag: normalize_etag(etag.unwrap_or_default()),
            size: size.and_then(|s| u64::try_from(s).ok()),
            version_id: version_id.filter(|v| !v.is_empty() && *v != "null").map(str::to_owned),
        };
        match decoded {
            Ok(key) => Ok(object(key)),
            Err(e) => Err((e, object(raw.to_owned()))),
        }
    }

    /// The job identity of this object version.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(&self.bucket, &self.key, &self.etag)
    }

    /// The etag, when the event had one.
    pub fn etag(&self) -> Option<&str> {
        Some(self.etag.as_str()).filter(|e| !e.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_decode_like_s3_encodes_them() {
        let d = |raw| decode_event_key(raw).ok();
        assert_eq!(
            d("models/incoming/acme/my+model%281%29.txt").as_deref(),
            Some("models/incoming/acme/my model(1).txt")
        );
        assert_eq!(d("a%2Bb").as_deref(), Some("a+b"));
        assert_eq!(d("%E2%82%AC").as_deref(), Some("€"));
        assert_eq!(d("a%C3%A9").as_deref(), Some("aé"));
        for bad in ["100%", "x%zz%4", "%FF", "a%2", "a%zz"] {
            assert_eq!(decode_event_key(bad).unwrap_err().key, bad);
        }
        assert_eq!(normalize_etag(" \"abc-2\""), "abc-2");
    }

    #[test]
    fn an_uploaded_object_has_a_bare_etag_and_a_decoded_key() {
        let o = UploadedObject::from_event(
            Some("b"),
            Some("batches/incoming/acme/day+1.csv"),
            None,
            Some("\"abc-2\""),
            Some(12),
            Some("null"),
        )
        .unwrap();
        assert_eq!(o.key, "batches/incoming/acme/day 1.csv");
        assert_eq!(o.etag, "abc-2");
        assert_eq!((o.size, o.version_id.as_deref()), (Some(12), None));
        assert_eq!(
            o.object_ref(),
            ObjectRef::new("b", "batches/incoming/acme/day 1.csv", "abc-2")
        );
        // The library's decoding wins; a bad raw key keeps the object with the key as written.
        let o = UploadedObject::from_event(Some("b"), Some("x%zz"), Some("x y"), None, None, Some("v1")).unwrap();
        assert_eq!(
            (o.key.as_str(), o.etag(), o.version_id.as_deref()),
            ("x y", None, Some("v1"))
        );
        let (e, kept) = UploadedObject::from_event(Some("b"), Some("x%zz"), None, None, None, None).unwrap_err();
        assert_eq!((e.key.as_str(), kept.key.as_str()), ("x%zz", "x%zz"));
    }
}
