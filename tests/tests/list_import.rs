//! list-import against moto: lists created through the rules service, files uploaded to S3, the
//! real handler fed events built from events/s3/list-upload.json.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use std::collections::BTreeSet;
use verdict::adapters::dynamodb::Keys;
use verdict::adapters::ObjectStore;
use verdict::app::rules::RulesService;
use verdict::domain::list_upload::ListImportProgress;
use verdict::domain::rules::{ListKind, MAX_LIST_ENTRIES};
use verdict::domain::{JobStatus, ListName, ObjectRef, TenantId};
use verdict::ports::jobs::JobStore;
use verdict::ports::rules::RulesAdmin;
use verdict_integration::{repo_root, Stack};

use list_import::{Deps, ImportOutcome, Invocation, ListImportSummary, RecordOutcome, S3Event, Settings};

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

fn list(n: &str) -> ListName {
    ListName::parse(n).unwrap()
}

fn event(bucket: &str, key: &str, etag: &str, size: usize) -> S3Event {
    let raw = std::fs::read_to_string(repo_root().join("events/s3/list-upload.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let r = &mut v["Records"][0]["s3"];
    r["bucket"]["name"] = bucket.into();
    r["bucket"]["arn"] = format!("arn:aws:s3:::{bucket}").into();
    r["object"]["key"] = key.into();
    r["object"]["eTag"] = etag.into();
    r["object"]["size"] = size.into();
    serde_json::from_value(v).unwrap()
}

fn deps(st: &Stack) -> Deps {
    Deps {
        store: st.store.clone(),
        objects: ObjectStore::new(st.s3.clone()),
        bucket: st.bucket.clone(),
        reinvoke: None,
        settings: Settings::default(),
    }
}

async fn put(st: &Stack, key: &str, text: &str) -> S3Event {
    let out = st
        .s3
        .put_object()
        .bucket(&st.bucket)
        .key(key)
        .body(ByteStream::from(text.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
    event(&st.bucket, key, out.e_tag().unwrap().trim_matches('"'), text.len())
}

async fn run(deps: &Deps, e: &S3Event) -> RecordOutcome {
    let mut out = list_import::handle_with(deps, e.clone(), &Invocation::unbounded())
        .await
        .unwrap();
    assert_eq!(out.records.len(), 1);
    out.records.remove(0)
}

fn completed(r: &RecordOutcome) -> &ListImportSummary {
    match &r.outcome {
        ImportOutcome::Completed { summary } => summary,
        other => panic!("expected a completed file, got {other:?}"),
    }
}

fn failed(r: &RecordOutcome) -> &ListImportSummary {
    match &r.outcome {
        ImportOutcome::Failed { summary } => summary,
        other => panic!("expected a failed file, got {other:?}"),
    }
}

async fn object_text(st: &Stack, key: &str) -> Option<String> {
    let got = st.s3.get_object().bucket(&st.bucket).key(key).send().await.ok()?;
    let bytes = got.body.collect().await.unwrap().into_bytes();
    Some(String::from_utf8(bytes.to_vec()).unwrap())
}

async fn create(st: &Stack, t: &TenantId, name: &str, kind: ListKind) {
    RulesService::new(&st.store)
        .create_list(t, "vk_test", list(name), kind, String::new())
        .await
        .unwrap();
}

async fn all_values(st: &Stack, t: &TenantId, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = st
            .store
            .list_entries(t, &list(name), 1000, cursor.as_deref())
            .await
            .unwrap();
        out.extend(page.items.into_iter().map(|e| e.value));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

async fn job_status(st: &Stack, t: &TenantId, e: &S3Event) -> (JobStatus, u64, Option<String>) {
    let o = &e.records[0].s3.object;
    let object = ObjectRef::new(&st.bucket, o.key.as_deref().unwrap(), o.e_tag.as_deref().unwrap());
    let job = st
        .store
        .read_job::<ListImportProgress>(t, &object)
        .await
        .unwrap()
        .unwrap();
    (job.status, job.invocations, job.error)
}

async fn audit_of(st: &Stack, t: &TenantId, actor: &str) -> usize {
    let page = st.store.audit(t, 1000, None).await.unwrap();
    page.items
        .iter()
        .filter(|a| a.actor == actor && a.action == "list.entries.add")
        .count()
}

#[tokio::test]
async fn a_file_of_2500_values_applies_its_good_lines_and_reports_the_bad_ones_once() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    create(&st, &acme, "blocked_emails", ListKind::Email).await;
    let d = deps(&st);

    // Line 1 is the header; value i sits on line i + 2 until the extra lines.
    let mut text = String::from("value,expires_at,note\n");
    let mut line = 1;
    let mut bad = Vec::new();
    for i in 0..2500 {
        let v = if i % 100 == 3 {
            format!("  USER{i}@Example.COM ")
        } else {
            format!("user{i}@example.com")
        };
        text.push_str(&format!("{v},2030-01-01T00:00:00Z,seen in case {i}\n"));
        line += 1;
        if i == 7 {
            // A repeat in the same chunk, upper-cased.
            text.push_str("USER7@EXAMPLE.COM\n");
            line += 1;
        }
        if i == 1200 {
            text.push_str("not-an-email\n");
            line += 1;
            bad.push((line, "value"));
            text.push_str("x@y.io,next tuesday\n");
            line += 1;
            bad.push((line, "expires_at"));
            text.push_str(&format!("z@y.io,,{}\n", "n".repeat(1100)));
            line += 1;
            bad.push((line, "note"));
            text.push('\n');
            line += 1;
        }
    }
    // A repeat in a later chunk.
    text.push_str("user5@example.com,,again\n");
    let key = "lists/incoming/acme/blocked_emails.csv";
    let e = put(&st, key, &text).await;

    let r = run(&d, &e).await;
    assert!(!r.duplicate);
    let s = completed(&r).clone();
    assert_eq!(
        (s.counts.rows_read, s.counts.added, s.counts.updated, s.counts.rejected),
        (2505, 2500, 2, 3)
    );
    let meta = st
        .store
        .list_meta(&acme, &list("blocked_emails"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.entries, 2500);
    assert!(meta.version > 0);
    assert_eq!(s.counts.list_version, Some(meta.version));
    assert_eq!(s.counts.list_entries, Some(2500));
    assert_eq!(s.list.as_deref(), Some("blocked_emails"));

    // The error report names each bad line and field.
    let report = object_text(&st, "lists/results/acme/blocked_emails.errors.csv")
        .await
        .unwrap();
    let rows: Vec<&str> = report.lines().collect();
    assert_eq!(rows[0], "line,field,value,reason");
    assert_eq!(rows.len(), 4, "{report}");
    for (row, (line, field)) in rows[1..].iter().zip(&bad) {
        assert!(row.starts_with(&format!("{line},{field},")), "{row} vs {line},{field}");
    }
    assert!(rows[1].contains("not-an-email"));
    let summary: ListImportSummary = serde_json::from_str(
        &object_text(&st, "lists/results/acme/blocked_emails.summary.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary, s);

    // Listed normalised (lower-cased, trimmed), each once.
    let values = all_values(&st, &acme, "blocked_emails").await;
    assert_eq!(values.len(), 2500);
    let set: BTreeSet<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(set.len(), 2500);
    assert!(set.contains("user103@example.com") && set.contains("user7@example.com"));
    assert!(values.iter().all(|v| v == &v.to_lowercase()));

    // The audit entries are the service's, with the upload as the actor.
    let actor = format!("s3 upload s3://{}/{key}", st.bucket);
    let audited = audit_of(&st, &acme, &actor).await;
    assert!(audited >= 3, "{audited} audit entries");

    // Redelivered: the job's summary again, nothing written, no second run.
    let again = run(&d, &e).await;
    assert!(again.duplicate);
    assert_eq!(completed(&again), &s);
    let after = st
        .store
        .list_meta(&acme, &list("blocked_emails"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.version, meta.version);
    assert_eq!(audit_of(&st, &acme, &actor).await, audited);
    assert_eq!(job_status(&st, &acme, &e).await.0, JobStatus::Completed);
    assert_eq!(job_status(&st, &acme, &e).await.1, 1, "one invocation held the job");

    // The same lines under another file name are a new job: every value is updated, none added.
    let e2 = put(&st, "lists/incoming/acme/blocked_emails.txt", &text).await;
    let s2 = completed(&run(&d, &e2).await).clone();
    assert_eq!((s2.counts.added, s2.counts.updated, s2.counts.rejected), (0, 2502, 3));
    assert_eq!(s2.counts.list_entries, Some(2500));
    assert!(s2.counts.list_version.unwrap() > meta.version);
}

#[tokio::test]
async fn an_unknown_list_or_a_bad_key_is_a_recorded_failure_not_a_retry() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    let d = deps(&st);

    let e = put(&st, "lists/incoming/acme/nope.csv", "a@b.io\n").await;
    let r = run(&d, &e).await;
    let s = failed(&r);
    let why = s.stopped_early.as_deref().unwrap();
    assert!(why.contains("no list \"nope\" for tenant acme"), "{why}");
    assert_eq!(s.counts.added, 0);
    assert!(object_text(&st, "lists/results/acme/nope.summary.json").await.is_some());
    let (status, _, error) = job_status(&st, &acme, &e).await;
    assert_eq!(status, JobStatus::Failed);
    assert_eq!(error.as_deref(), Some(why));
    // A redelivery answers the failure again, without running.
    let again = run(&d, &e).await;
    assert!(again.duplicate);
    assert_eq!(failed(&again).stopped_early.as_deref(), Some(why));

    let e = put(&st, "lists/incoming/acme/emails.json", "a@b.io\n").await;
    let s = failed(&run(&d, &e).await).clone();
    assert!(s.stopped_early.unwrap().contains("unknown file type"));
    assert_eq!(s.list, None);

    // No tenant in the key: nothing to record it under; skipped, not an error.
    let e = put(&st, "lists/incoming/not a tenant/x.csv", "a@b.io\n").await;
    assert!(matches!(run(&d, &e).await.outcome, ImportOutcome::Skipped { .. }));
}

#[tokio::test]
async fn a_file_under_another_tenant_never_touches_this_tenants_list() {
    let st = Stack::new().await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    create(&st, &acme, "blocked_emails", ListKind::Email).await;
    let d = deps(&st);
    completed(
        &run(
            &d,
            &put(&st, "lists/incoming/acme/blocked_emails.csv", "a@acme.io\n").await,
        )
        .await,
    );
    let before = st
        .store
        .list_meta(&acme, &list("blocked_emails"))
        .await
        .unwrap()
        .unwrap();

    // globex has no such list: a failure, and acme's list is as it was.
    let e = put(&st, "lists/incoming/globex/blocked_emails.csv", "evil@globex.io\n").await;
    assert!(failed(&run(&d, &e).await)
        .stopped_early
        .as_deref()
        .unwrap()
        .contains("tenant globex"));
    // Its own list of the same name gets its file; acme's does not.
    create(&st, &globex, "blocked_emails", ListKind::Email).await;
    let e = put(
        &st,
        "lists/incoming/globex/blocked_emails.csv",
        "evil@globex.io\nb@globex.io\n",
    )
    .await;
    assert_eq!(completed(&run(&d, &e).await).counts.added, 2);
    assert_eq!(
        st.store
            .list_meta(&acme, &list("blocked_emails"))
            .await
            .unwrap()
            .unwrap(),
        before
    );
    assert_eq!(all_values(&st, &acme, "blocked_emails").await, ["a@acme.io"]);
    assert_eq!(
        all_values(&st, &globex, "blocked_emails").await,
        ["b@globex.io", "evil@globex.io"]
    );
}

#[tokio::test]
async fn a_file_that_would_pass_the_cap_applies_the_chunks_that_fit_then_fails() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    create(&st, &acme, "bad_ips", ListKind::Ip).await;
    // Pretend the list is nearly full: room for 1,500 more.
    let key = Keys::new(&acme).list_meta(&list("bad_ips"));
    st.dynamodb
        .update_item()
        .table_name(&st.table)
        .key("pk", AttributeValue::S(key.pk.clone()))
        .key("sk", AttributeValue::S(key.sk.clone()))
        .update_expression("SET #e = :e")
        .expression_attribute_names("#e", "entries")
        .expression_attribute_values(":e", AttributeValue::N((MAX_LIST_ENTRIES - 1_500).to_string()))
        .send()
        .await
        .unwrap();
    let d = deps(&st);
    // 2,500 addresses and one that is not; line n holds address n - 1 (no header).
    let mut text = String::new();
    for i in 0..2500u32 {
        text.push_str(&format!("10.{}.{}.{}\n", i / 65536, (i / 256) % 256, i % 256));
        if i == 1 {
            text.push_str("10.0.0.300\n");
        }
    }
    let e = put(&st, "lists/incoming/acme/bad_ips.txt", &text).await;
    let r = run(&d, &e).await;
    let s = failed(&r);
    assert_eq!((s.counts.added, s.counts.rejected), (1000, 1));
    // The first chunk is lines 1..=1001 (1,000 good and the bad one): the second starts at 1002.
    assert_eq!(s.next_line, Some(1002));
    let why = s.stopped_early.as_deref().unwrap();
    assert!(why.contains(&format!("at most {MAX_LIST_ENTRIES}")), "{why}");
    assert!(why.contains("lines 1002 onwards were not applied"), "{why}");
    let meta = st.store.list_meta(&acme, &list("bad_ips")).await.unwrap().unwrap();
    assert_eq!(meta.entries, MAX_LIST_ENTRIES as u64 - 500);
    assert_eq!(job_status(&st, &acme, &e).await.0, JobStatus::Failed);
    let report = object_text(&st, "lists/results/acme/bad_ips.errors.csv").await.unwrap();
    assert!(
        report.lines().nth(1).unwrap().starts_with("3,value,\"10.0.0.300\","),
        "{report}"
    );
}

#[tokio::test]
async fn a_run_that_stops_at_a_checkpoint_is_resumed_by_the_next_with_the_same_counts() {
    let st = Stack::new().await;
    let acme = tenant("acme");
    create(&st, &acme, "bins", ListKind::Bin).await;
    let d = deps(&st);
    let mut text = String::from("value\n");
    for i in 0..2100 {
        text.push_str(&format!("{}\n", 400_000 + i));
    }
    text.push_str("12ab56\n");
    let e = put(&st, "lists/incoming/acme/bins.csv", &text).await;
    let stop_after_one_chunk = Invocation {
        max_rows: Some(1),
        ..Invocation::unbounded()
    };
    let mut out = list_import::handle_with(&d, e.clone(), &stop_after_one_chunk)
        .await
        .unwrap();
    assert_eq!(
        out.records.remove(0).outcome,
        ImportOutcome::HandedOver {
            next_line: 1002,
            reinvoked: false
        }
    );
    assert_eq!(
        st.store.list_meta(&acme, &list("bins")).await.unwrap().unwrap().entries,
        1000
    );
    let s = completed(&run(&d, &e).await).clone();
    assert_eq!(
        (s.counts.rows_read, s.counts.added, s.counts.updated, s.counts.rejected),
        (2101, 2100, 0, 1)
    );
    assert_eq!(s.invocations, 2);
    let report = object_text(&st, "lists/results/acme/bins.errors.csv").await.unwrap();
    assert!(report.lines().nth(1).unwrap().starts_with("2102,value,"), "{report}");
}
