//! `functions/events`' real handler over the `events/dynamodb/stream-*.json` samples (an
//! in-memory bus, no moto needed): each sample publishes the events it describes, each event's
//! detail validates against its schema in `schemas/events/`, and the schemas name the `source`
//! and `detail-type` the code publishes with.

use serde_json::Value;
use std::collections::BTreeMap;
use verdict::domain::events::EventKind;
use verdict::ports::in_memory::{InMemoryBus, InMemoryObjects};
use verdict_integration::events::{schema, validate};
use verdict_integration::repo_root;

fn sample(name: &str) -> Value {
    let path = repo_root().join("events/dynamodb").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn deps() -> events::Deps<InMemoryBus, InMemoryObjects> {
    events::Deps {
        bus: InMemoryBus::default(),
        objects: InMemoryObjects::default(),
        sleep: events::TokioSleep,
        data_bucket: Some("data".into()),
    }
}

/// The events a sample publishes, in order: (kind, detail).
async fn published(name: &str) -> Vec<(EventKind, Value)> {
    let deps = deps();
    let response = events::handle(&deps, sample(name)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{name}: {response:?}");
    deps.bus.published().into_iter().map(|e| (e.kind, e.detail)).collect()
}

#[tokio::test]
async fn every_sample_publishes_its_events_and_each_detail_keeps_its_schema() {
    let cases = [
        ("stream-decision.json", vec![EventKind::Decision]),
        ("stream-label.json", vec![EventKind::Label, EventKind::Label]),
        ("stream-review-resolved.json", vec![EventKind::ReviewResolution]),
        ("stream-model-activated.json", vec![EventKind::ModelActivation]),
        // The second record moves a list version only: no activation.
        ("stream-ruleset-activated.json", vec![EventKind::RulesetActivation]),
    ];
    let mut seen = BTreeMap::new();
    for (name, kinds) in cases {
        let got = published(name).await;
        assert_eq!(got.iter().map(|(k, _)| *k).collect::<Vec<_>>(), kinds, "{name}");
        for (kind, detail) in got {
            let problems = validate(&schema(kind), &detail, kind.name());
            assert!(problems.is_empty(), "{name}: {problems:?}\n{detail:#}");
            *seen.entry(kind).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), EventKind::ALL.len(), "every kind has a sample: {seen:?}");
}

#[tokio::test]
async fn the_samples_details_carry_what_was_committed() {
    let decision = &published("stream-decision.json").await[0].1;
    assert_eq!(decision["transaction_id"], "tx_2018-08-08_000123");
    assert_eq!(decision["decision"], "review");
    assert_eq!(decision["tenant"], "acme");
    assert_eq!(decision["inputs"]["amount"], 25731);

    let labels = published("stream-label.json").await;
    assert_eq!(labels[0].1["label"]["value"], "fraud");
    assert_eq!(labels[0].1["previous"], Value::Null);
    assert_eq!(labels[1].1["label"]["value"], "legit");
    assert_eq!(labels[1].1["previous"]["value"], "fraud");
    assert_ne!(
        labels[0].1["event_id"], labels[1].1["event_id"],
        "a relabel is a new event"
    );

    let review = &published("stream-review-resolved.json").await[0].1;
    assert_eq!(review["outcome"], "block");
    assert_eq!(review["lists_added"][0]["value"], "jane.doe@example.com");

    let model = &published("stream-model-activated.json").await[0].1;
    assert_eq!(
        (&model["version"], &model["previous_version"]),
        (&"a41c09e7d2b5f318".into(), &"0d93be55c1a7f402".into())
    );

    let ruleset = &published("stream-ruleset-activated.json").await[0].1;
    assert_eq!(
        (&ruleset["version"], &ruleset["previous_version"]),
        (&3.into(), &2.into())
    );
}

#[tokio::test]
async fn the_same_sample_twice_gives_the_same_event_ids() {
    let ids = |v: Vec<(EventKind, Value)>| v.into_iter().map(|(_, d)| d["event_id"].clone()).collect::<Vec<_>>();
    for name in [
        "stream-decision.json",
        "stream-label.json",
        "stream-review-resolved.json",
    ] {
        assert_eq!(ids(published(name).await), ids(published(name).await), "{name}");
    }
}

#[tokio::test]
async fn an_unreadable_record_is_skipped_and_does_not_block_the_batch() {
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/dynamodb/stream-decision.json")).unwrap(),
    )
    .unwrap();
    let mut broken = event["Records"][0].clone();
    broken["dynamodb"]["NewImage"]["decision"] = serde_json::json!({"S": "maybe"});
    broken["dynamodb"]["SequenceNumber"] = "1".into();
    event["Records"].as_array_mut().unwrap().insert(0, broken);
    let deps = deps();
    let response = events::handle(&deps, event).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        deps.bus.published().len(),
        1,
        "the readable decision is still published"
    );
}

#[tokio::test]
async fn a_record_that_does_not_deserialize_is_skipped_not_a_failed_invocation() {
    let mut event = sample("stream-decision.json");
    let mut odd = event["Records"][0].clone();
    // Not the shape of a stream record at all: Keys as a string.
    odd["dynamodb"]["Keys"] = "garbled".into();
    odd["dynamodb"]["SequenceNumber"] = "1".into();
    event["Records"].as_array_mut().unwrap().insert(0, odd);
    let deps = deps();
    let response = events::handle(&deps, event).await.expect("not a failed invocation");
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(deps.bus.published().len(), 1, "the readable decision is published");
}

#[tokio::test]
async fn a_record_without_a_sequence_number_fails_the_whole_batch_and_publishes_nothing() {
    let mut event = sample("stream-decision.json");
    event["Records"][0]["dynamodb"]
        .as_object_mut()
        .unwrap()
        .remove("SequenceNumber");
    let deps = deps();
    let result = events::handle(&deps, event).await;
    assert!(result.is_err(), "{result:?}");
    assert!(deps.bus.published().is_empty());
    assert!(
        deps.objects.keys("data", "archive/").is_empty(),
        "nothing archived under an empty name"
    );
}

#[tokio::test]
async fn a_300_kb_decision_is_published_shortened_and_flagged_and_keeps_its_schema() {
    let mut event = sample("stream-decision.json");
    let image = &mut event["Records"][0]["dynamodb"]["NewImage"];
    let reasons = image["reasons"]["L"].as_array_mut().expect("the sample has reasons");
    let mut big = reasons[0].clone();
    big["M"]["text"] = serde_json::json!({"S": "x".repeat(300 * 1024)});
    reasons.push(big);
    let reasons_stored = reasons.len();
    let deps = deps();
    let response = events::handle(&deps, event).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let published = deps.bus.published();
    assert_eq!(published.len(), 1);
    let detail = &published[0].detail;
    assert_eq!(detail["truncated"], true);
    assert!(detail.get("reasons").is_none() && detail.get("inputs").is_none());
    assert!(verdict::ports::events::entry_size(&published[0]) < 256 * 1024);
    assert_eq!(
        validate(&schema(EventKind::Decision), detail, "decision"),
        Vec::<String>::new()
    );
    // The archive keeps the whole decision.
    let keys = deps.objects.keys("data", "archive/");
    let lines = verdict::app::archive::read_lines(&deps.objects.object("data", &keys[0]).unwrap()).unwrap();
    assert_eq!(lines[0]["reasons"].as_array().map(Vec::len), Some(reasons_stored));
}

#[tokio::test]
async fn a_failed_entry_is_reported_by_its_sequence_number_with_what_follows() {
    let event = sample("stream-label.json");
    let seqs: Vec<String> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned())
        .collect();
    // The first label's event fails on every attempt.
    let id = published("stream-label.json").await[0].1["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deps = deps();
    deps.bus.fail_entry(&id, usize::MAX);
    let response = events::handle(&deps, event).await.unwrap();
    let reported: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(reported, seqs, "the failed record and the one after it");
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], seqs[0].as_str());
}

#[tokio::test]
async fn the_sample_decision_and_labels_are_archived_by_day() {
    let deps = deps();
    events::handle(&deps, sample("stream-decision.json")).await.unwrap();
    events::handle(&deps, sample("stream-label.json")).await.unwrap();
    let keys = deps.objects.keys("data", "archive/");
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys[0].starts_with("archive/acme/decisions/date=2018-08-08/"),
        "{keys:?}"
    );
    assert!(keys[1].starts_with("archive/acme/labels/date=2018-08-20/"), "{keys:?}");
    assert!(keys[2].starts_with("archive/acme/labels/date=2018-08-21/"), "{keys:?}");
    let lines = verdict::app::archive::read_lines(&deps.objects.object("data", &keys[0]).unwrap()).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["transaction_id"], "tx_2018-08-08_000123");
    assert_eq!(lines[0]["features"]["amount"], 257.31, "the features retraining reads");
}

#[test]
fn every_schema_names_the_source_and_detail_type_the_code_publishes_with() {
    for kind in EventKind::ALL {
        let s = schema(kind);
        assert_eq!(s["x-eventbridge"]["source"], kind.source(), "{}", kind.name());
        assert_eq!(s["x-eventbridge"]["detail-type"], kind.detail_type(), "{}", kind.name());
        assert_eq!(
            s["properties"]["schema_version"]["const"],
            verdict::domain::events::SCHEMA_VERSION
        );
        for field in ["event_id", "tenant", "schema_version"] {
            assert!(
                s["required"].as_array().unwrap().iter().any(|r| r == field),
                "{} requires {field}",
                kind.name()
            );
        }
    }
}

#[test]
fn the_schema_check_catches_a_wrong_detail() {
    let s = schema(EventKind::Label);
    let good = serde_json::json!({"schema_version": 1, "event_id": "0123456789abcdef0123456789abcdef", "tenant": "acme",
        "transaction_id": "tx1", "label": {"value": "fraud", "source": "api", "labelled_at": "2026-01-01T00:00:00Z"}, "previous": null});
    assert_eq!(validate(&s, &good, "label"), Vec::<String>::new());
    for (path, bad) in [
        ("/label/value", serde_json::json!("maybe")),
        ("/label/labelled_at", serde_json::json!("yesterday")),
        ("/schema_version", serde_json::json!(2)),
        ("/event_id", serde_json::json!("short")),
        ("/extra", serde_json::json!(1)),
    ] {
        let mut v = good.clone();
        if path == "/extra" {
            v["extra"] = bad;
        } else {
            *v.pointer_mut(path).unwrap() = bad;
        }
        assert!(!validate(&s, &v, "label").is_empty(), "{path} was not caught");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("transaction_id");
    assert!(!validate(&s, &missing, "label").is_empty());
}

#[tokio::test]
async fn the_decision_schema_is_exact_on_reasons_and_takes_a_score_that_was_nan() {
    let s = schema(EventKind::Decision);
    let good = published("stream-decision.json").await[0].1.clone();
    assert_eq!(validate(&s, &good, "decision"), Vec::<String>::new());
    // What the code emits for a NaN score (JSON has no NaN).
    let raw = sample("stream-decision.json")["Records"][0].clone();
    let record = verdict::adapters::dynamodb::decode_record(&serde_json::from_value(raw).unwrap());
    let verdict::domain::events::RecordContent::Publish(verdict::domain::events::Change::Decision {
        tenant,
        mut record,
    }) = record.content
    else {
        panic!("the sample is a decision");
    };
    record.score = f64::NAN;
    let nan = verdict::domain::events::Change::Decision { tenant, record }
        .to_event()
        .detail;
    assert!(nan["score"].is_null(), "{}", nan["score"]);
    assert_eq!(validate(&s, &nan, "decision"), Vec::<String>::new());
    let mut v = good.clone();
    v["reasons"] = serde_json::json!([{"kind": "rule", "rule_id": "r1", "rule_version": 2, "action": "block", "text": "t"},
        {"kind": "model", "code": "C", "feature": "f", "value": null, "contribution": 0.5, "text": "t"}]);
    assert_eq!(validate(&s, &v, "decision"), Vec::<String>::new());
    for bad in [
        serde_json::json!([{"kind": "rule", "rule_id": "r1", "rule_version": 2, "action": "block", "text": "t", "extra": 1}]),
        serde_json::json!([{"kind": "rule", "rule_id": "r1", "action": "block", "text": "t"}]),
        serde_json::json!([{"kind": "model", "code": "C", "text": "t"}]),
    ] {
        let mut v = good.clone();
        v["reasons"] = bad.clone();
        assert!(!validate(&s, &v, "decision").is_empty(), "{bad} was not caught");
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("reasons");
    assert!(
        !validate(&s, &v, "decision").is_empty(),
        "reasons may be left out only when truncated"
    );
}
