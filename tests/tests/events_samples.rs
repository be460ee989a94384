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

fn sample(name: &str) -> events::StreamEvent {
    let path = repo_root().join("events/dynamodb").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn deps() -> events::Deps<InMemoryBus, InMemoryObjects> {
    events::Deps {
        bus: InMemoryBus::default(),
        objects: InMemoryObjects::default(),
        data_bucket: Some("data".into()),
    }
}

/// The events a sample publishes, in order: (kind, detail).
async fn published(name: &str) -> Vec<(EventKind, Value)> {
    let deps = deps();
    let response = events::handle(&deps, sample(name)).await;
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
    let response = events::handle(&deps, serde_json::from_value(event).unwrap()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        deps.bus.published().len(),
        1,
        "the readable decision is still published"
    );
}

#[tokio::test]
async fn a_failed_entry_is_reported_by_its_sequence_number_with_what_follows() {
    let event = sample("stream-label.json");
    let seqs: Vec<String> = event
        .records
        .iter()
        .map(|r| r.change.sequence_number.clone().unwrap())
        .collect();
    // The first label's event fails on every attempt.
    let id = published("stream-label.json").await[0].1["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deps = deps();
    deps.bus.fail_entry(&id, usize::MAX);
    let response = events::handle(&deps, event).await;
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
    events::handle(&deps, sample("stream-decision.json")).await;
    events::handle(&deps, sample("stream-label.json")).await;
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
