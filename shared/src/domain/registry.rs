//! The model registry: one registration per model version, and the activation pointer that names
//! the version serving a tenant.

use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a registered version stands. Stored as today's words (`candidate` …), so items written
/// before this type existed read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "&'static str")]
pub enum ModelStatus {
    /// Registered, never activated (or not since it was registered).
    Candidate,
    Active,
    /// Served once, replaced since.
    Retired,
    /// Refused at import; can never be activated.
    Rejected,
}

impl ModelStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelStatus::Candidate => "candidate",
            ModelStatus::Active => "active",
            ModelStatus::Retired => "retired",
            ModelStatus::Rejected => "rejected",
        }
    }

    /// The stored word. Read tolerantly: a word this version does not know (older tools wrote
    /// e.g. `registered`) is a candidate, which is what every reader made of it before, and never
    /// a reason to fail a whole registry listing.
    pub fn parse(raw: &str) -> ModelStatus {
        match raw {
            "active" => ModelStatus::Active,
            "retired" => ModelStatus::Retired,
            "rejected" => ModelStatus::Rejected,
            "candidate" => ModelStatus::Candidate,
            other => {
                tracing::warn!(status = other, "unknown model status read as candidate");
                ModelStatus::Candidate
            }
        }
    }
}

impl From<String> for ModelStatus {
    fn from(raw: String) -> Self {
        ModelStatus::parse(&raw)
    }
}

impl From<ModelStatus> for &'static str {
    fn from(s: ModelStatus) -> Self {
        s.as_str()
    }
}

impl fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRegistration {
    pub version: String,
    pub name: String,
    /// SHA-256 of the artifact bytes, hex.
    pub sha256: String,
    /// The artifact's object key in the model bucket.
    pub object_key: String,
    /// Where it came from, e.g. `upload`, `retrain`, `lightgbm`.
    pub source: String,
    pub status: ModelStatus,
    pub metrics: BTreeMap<String, f64>,
    pub uploaded_at: Timestamp,
    pub uploaded_by: String,
    pub trees: u32,
}

/// A registry item as the API shows it: the registration and, for a refused upload, why.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    pub model: ModelRegistration,
    pub reject_reason: Option<String>,
}

impl RegistryEntry {
    /// The status to show, given the pointer. The pointer is the source of truth for what
    /// serves; the stored status is only written by activations, so it can lag behind (a
    /// pointer written outside the registry, or a pointer moved back by a rollback).
    pub fn status_under(&self, pointer: Option<&ModelPointer>) -> ModelStatus {
        let m = &self.model;
        match pointer {
            Some(p) if p.version == m.version => ModelStatus::Active,
            _ if m.status == ModelStatus::Rejected => ModelStatus::Rejected,
            Some(p) if p.previous_version.as_deref() == Some(m.version.as_str()) => ModelStatus::Retired,
            // Stored as active but no longer pointed at: it served once.
            _ if matches!(m.status, ModelStatus::Active | ModelStatus::Retired) => ModelStatus::Retired,
            _ => ModelStatus::Candidate,
        }
    }
}

/// The activation pointer: which version serves a tenant, and the one it replaced (what a
/// rollback returns to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPointer {
    pub version: String,
    pub object_key: String,
    pub previous_version: Option<String>,
    pub activated_at: Timestamp,
}

/// What model import records beside a [`ModelRegistration`]: the upload it came from and, for a
/// refused upload, why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportDetails {
    /// The uploaded object (`models/incoming/…`), its S3 version and etag.
    pub source_key: String,
    pub source_version_id: Option<String>,
    pub source_etag: String,
    /// SHA-256 of the uploaded bytes (for an accepted import, the registration's `sha256` is the
    /// artifact's).
    pub source_sha256: String,
    /// `verdict`, `lightgbm` or `xgboost`, as detected.
    pub source_format: Option<String>,
    /// How the scores were checked, e.g. "reference sample of 390 rows, …".
    pub validation: Option<String>,
    pub reject_code: Option<String>,
    pub reject_reason: Option<String>,
}

/// Whether registering an import created the version or found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    New,
    /// The same bytes were registered before (e.g. one artifact uploaded under two names); the
    /// existing registration, status included, is left as it is.
    Existing(Box<ModelRegistration>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, status: ModelStatus) -> RegistryEntry {
        RegistryEntry {
            model: ModelRegistration {
                version: version.into(),
                name: "m".into(),
                sha256: "s".into(),
                object_key: format!("models/active/acme/{version}.vmodel"),
                source: "verdict".into(),
                status,
                metrics: BTreeMap::new(),
                uploaded_at: Timestamp::from_unix(0).unwrap(),
                uploaded_by: "t".into(),
                trees: 1,
            },
            reject_reason: None,
        }
    }

    fn pointer(version: &str, previous: Option<&str>) -> ModelPointer {
        ModelPointer {
            version: version.into(),
            object_key: format!("models/active/acme/{version}.vmodel"),
            previous_version: previous.map(str::to_owned),
            activated_at: Timestamp::from_unix(0).unwrap(),
        }
    }

    #[test]
    fn statuses_are_stored_as_todays_words_and_unknown_words_read_as_candidate() {
        for s in [
            ModelStatus::Candidate,
            ModelStatus::Active,
            ModelStatus::Retired,
            ModelStatus::Rejected,
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<ModelStatus>(&json).unwrap(), s);
        }
        assert_eq!(
            serde_json::from_str::<ModelStatus>("\"registered\"").unwrap(),
            ModelStatus::Candidate
        );
    }

    #[test]
    fn the_pointer_decides_the_status_shown() {
        let p = pointer("b", Some("a"));
        assert_eq!(
            entry("b", ModelStatus::Candidate).status_under(Some(&p)),
            ModelStatus::Active
        );
        assert_eq!(
            entry("a", ModelStatus::Active).status_under(Some(&p)),
            ModelStatus::Retired
        );
        assert_eq!(
            entry("a", ModelStatus::Candidate).status_under(Some(&p)),
            ModelStatus::Retired
        );
        assert_eq!(
            entry("c", ModelStatus::Active).status_under(Some(&p)),
            ModelStatus::Retired
        );
        assert_eq!(
            entry("c", ModelStatus::Candidate).status_under(Some(&p)),
            ModelStatus::Candidate
        );
        assert_eq!(
            entry("c", ModelStatus::Rejected).status_under(Some(&p)),
            ModelStatus::Rejected
        );
        assert_eq!(entry("c", ModelStatus::Active).status_under(None), ModelStatus::Retired);
        assert_eq!(
            entry("c", ModelStatus::Candidate).status_under(None),
            ModelStatus::Candidate
        );
    }
}
