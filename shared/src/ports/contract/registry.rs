//! The contract of [`ModelRegistry`](crate::ports::registry::ModelRegistry) and [`ModelImports`]:
//! one suite, run against [`InMemoryRegistry`](crate::ports::in_memory::InMemoryRegistry) and
//! against the DynamoDB adapter on moto, so the fake the services are tested over cannot drift
//! from the real thing.
//!
//! It panics on the first broken promise, like any test body. `tenant` and `other` must be two
//! tenants with nothing registered yet.

use crate::domain::registry::{ImportDetails, ModelRegistration, ModelStatus, Registered};
use crate::domain::{TenantId, Timestamp};
use crate::ports::registry::{ExpectedPointer, ModelImports};
use crate::ports::StoreError;
use std::collections::BTreeMap;

fn registration(version: &str, uploaded_at: &str, status: ModelStatus) -> ModelRegistration {
    ModelRegistration {
        version: version.to_owned(),
        name: format!("model-{version}"),
        sha256: format!("{version}{version}{version}{version}"),
        object_key: format!("models/active/contract/{version}.vmodel"),
        source: "lightgbm".into(),
        status,
        metrics: BTreeMap::from([("auc".to_owned(), 0.875)]),
        uploaded_at: Timestamp::parse("uploaded_at", uploaded_at).expect("a valid timestamp"),
        uploaded_by: "contract".into(),
        trees: 60,
    }
}

fn details(version: &str, reject: Option<&str>) -> ImportDetails {
    ImportDetails {
        source_key: format!("models/incoming/contract/{version}.txt"),
        source_version_id: None,
        source_etag: format!("etag-{version}"),
        source_sha256: format!("upload-{version}"),
        source_format: Some("lightgbm".into()),
        validation: reject.is_none().then(|| "built-in sample of 10 rows".to_owned()),
        reject_code: reject.map(|_| "invalid_model_file".to_owned()),
        reject_reason: reject.map(str::to_owned),
    }
}

fn versions(entries: &[crate::domain::registry::RegistryEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.model.version.as_str()).collect()
}

pub async fn registry_contract<R: ModelImports>(store: &R, tenant: &TenantId, other: &TenantId) {
    const A: &str = "00000000000000aa";
    const B: &str = "00000000000000bb";
    const C: &str = "00000000000000cc";
    const R: &str = "00000000000000ee";

    // Nothing yet.
    assert_eq!(store.model_pointer(tenant).await.unwrap(), None);
    assert_eq!(store.registry_entry(tenant, A).await.unwrap(), None);
    let empty = store.registry_page(tenant, 10, None).await.unwrap();
    assert!(empty.items.is_empty() && empty.next_cursor.is_none());

    // Registering: new versions, the same bytes again found as they are, other bytes refused.
    let a = registration(A, "2018-08-07T16:20:31.204Z", ModelStatus::Candidate);
    let b = registration(B, "2018-08-08T09:00:00Z", ModelStatus::Candidate);
    let c = registration(C, "2018-08-08T09:00:00Z", ModelStatus::Candidate);
    let r = registration(R, "2018-08-09T09:00:00Z", ModelStatus::Rejected);
    let why = "s3://models/incoming/contract/r.txt: not a model";
    for (m, reject) in [(&a, None), (&b, None), (&c, None), (&r, Some(why))] {
        let d = details(&m.version, reject);
        assert_eq!(store.register_import(tenant, m, &d).await.unwrap(), Registered::New);
    }
    let again = ModelRegistration {
        name: "renamed".into(),
        ..a.clone()
    };
    assert_eq!(
        store.register_import(tenant, &again, &details(A, None)).await.unwrap(),
        Registered::Existing(Box::new(a.clone())),
        "the same bytes again leave the first registration as it is"
    );
    let other_bytes = ModelRegistration {
        sha256: "f".repeat(64),
        ..a.clone()
    };
    assert!(matches!(
        store.register_import(tenant, &other_bytes, &details(A, None)).await,
        Err(StoreError::Conflict(_))
    ));

    // Reading back, with the import details and the rejection reason.
    let entry = store.registry_entry(tenant, A).await.unwrap().unwrap();
    assert_eq!((&entry.model, entry.reject_reason.as_deref()), (&a, None));
    let rejected = store.registry_entry(tenant, R).await.unwrap().unwrap();
    assert_eq!((&rejected.model, rejected.reject_reason.as_deref()), (&r, Some(why)));
    assert_eq!(
        store.import_details(tenant, R).await.unwrap(),
        Some(details(R, Some(why)))
    );
    assert_eq!(store.import_details(tenant, "0000000000000000").await.unwrap(), None);

    // Pages: newest upload first, ties by higher version, no gaps or repeats.
    let p1 = store.registry_page(tenant, 2, None).await.unwrap();
    assert_eq!(versions(&p1.items), [R, C]);
    let cursor = p1.next_cursor.expect("a second page");
    let p2 = store.registry_page(tenant, 2, Some(&cursor)).await.unwrap();
    assert_eq!(versions(&p2.items), [B, A]);
    assert_eq!(p2.next_cursor, None);
    let all = store.registry_page(tenant, 10, None).await.unwrap();
    assert_eq!((versions(&all.items), all.next_cursor), (vec![R, C, B, A], None));
    assert!(matches!(
        store.registry_page(tenant, 2, Some("bm9wZQ")).await,
        Err(StoreError::BadCursor)
    ));

    // Activation moves the pointer only from where the caller expects it.
    let p = store
        .activate(tenant, A, &a.object_key, ExpectedPointer::At(None))
        .await
        .unwrap();
    assert_eq!(
        (p.version.as_str(), p.object_key.as_str(), p.previous_version.as_deref()),
        (A, a.object_key.as_str(), None)
    );
    assert_eq!(store.model_pointer(tenant).await.unwrap(), Some(p.clone()));
    assert!(matches!(
        store
            .activate(tenant, B, &b.object_key, ExpectedPointer::At(None))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .activate(tenant, B, &b.object_key, ExpectedPointer::At(Some(C)))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.model_pointer(tenant).await.unwrap(), Some(p));
    let status = |v: &'static str| async move { store.registry_entry(tenant, v).await.unwrap().unwrap().model.status };
    assert_eq!(status(A).await, ModelStatus::Active);
    assert_eq!(status(B).await, ModelStatus::Candidate);

    let p = store
        .activate(tenant, B, &b.object_key, ExpectedPointer::At(Some(A)))
        .await
        .unwrap();
    assert_eq!((p.version.as_str(), p.previous_version.as_deref()), (B, Some(A)));
    assert_eq!(
        (status(A).await, status(B).await),
        (ModelStatus::Retired, ModelStatus::Active)
    );
    // The active version again: nothing changes, whatever the caller expected.
    let same = store
        .activate(tenant, B, &b.object_key, ExpectedPointer::At(Some(C)))
        .await
        .unwrap();
    assert_eq!(same, p);

    // Never a rejected, unknown or misnamed version; the pointer stays.
    for (version, key) in [
        (R, r.object_key.as_str()),
        ("0000000000000000", "models/active/contract/0000000000000000.vmodel"),
        (C, "models/active/contract/elsewhere.vmodel"),
    ] {
        assert!(
            matches!(
                store.activate(tenant, version, key, ExpectedPointer::Anything).await,
                Err(StoreError::NotFound(_))
            ),
            "{version} at {key}"
        );
    }
    assert_eq!(store.model_pointer(tenant).await.unwrap(), Some(p));
    assert_eq!(status(R).await, ModelStatus::Rejected);

    // Back to the previous version (a rollback), and forward again (a second rollback).
    let back = store
        .activate(tenant, A, &a.object_key, ExpectedPointer::At(Some(B)))
        .await
        .unwrap();
    assert_eq!((back.version.as_str(), back.previous_version.as_deref()), (A, Some(B)));
    let forward = store
        .activate(tenant, B, &b.object_key, ExpectedPointer::At(Some(A)))
        .await
        .unwrap();
    assert_eq!(
        (forward.version.as_str(), forward.previous_version.as_deref()),
        (B, Some(A))
    );
    assert_eq!(
        (status(A).await, status(B).await),
        (ModelStatus::Retired, ModelStatus::Active)
    );

    // Outcomes per bytes: the first one stands. (Per object, the outcome is the object's job
    // end: the job store's contract.)
    assert_eq!(store.source_outcome(tenant, "sha-1").await.unwrap(), None);
    store
        .record_source_outcome(tenant, "sha-1", r#"{"outcome":"first"}"#)
        .await
        .unwrap();
    store
        .record_source_outcome(tenant, "sha-1", r#"{"outcome":"second"}"#)
        .await
        .unwrap();
    assert_eq!(
        store.source_outcome(tenant, "sha-1").await.unwrap().as_deref(),
        Some(r#"{"outcome":"first"}"#)
    );

    // Another tenant sees none of it.
    assert_eq!(store.model_pointer(other).await.unwrap(), None);
    assert_eq!(store.registry_entry(other, A).await.unwrap(), None);
    assert!(store.registry_page(other, 10, None).await.unwrap().items.is_empty());
    assert_eq!(store.source_outcome(other, "sha-1").await.unwrap(), None);
    assert!(matches!(
        store.activate(other, A, &a.object_key, ExpectedPointer::Anything).await,
        Err(StoreError::NotFound(_))
    ));
}
