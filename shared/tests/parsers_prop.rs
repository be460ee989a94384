//! Property tests of every parser that reads outside input (the fuzzing of issue 13; cargo-fuzz
//! needs a nightly toolchain): whatever the bytes, each returns a value or an error, never panics.
//!
//! Bounded by default (proptest's 256 cases; the model importers 32, as one case validates a
//! whole model). Longer runs: `PROPTEST_CASES=100000 cargo test -p verdict --test parsers_prop`.

use proptest::prelude::*;
use serde_json::Value;
use std::io::Cursor;
use verdict::domain::decision::ScoreRequest;
use verdict::domain::io::{parse_json as parse_row, Format, TransactionReader};
use verdict::domain::json::parse_strict;
use verdict::domain::labels::{LabelReader, LabelRequest};
use verdict::domain::model_upload::{validate, UploadOptions};
use verdict::domain::review::ResolveRequest;
use verdict::domain::{Timestamp, TransactionId};

const GOOD: &str = r#"{"id":"tx-1","occurred_at":"2018-08-08T10:00:00Z","amount":12345,"currency":"EUR",
    "customer_id":"c-1","terminal_id":"t-9","ip":"203.0.113.42","email":"a@example.com","device_id":"d-1",
    "country":"FR","metadata":{"order":"42"}}"#;

const FIELDS: [&str; 12] = [
    "id",
    "occurred_at",
    "amount",
    "currency",
    "customer_id",
    "terminal_id",
    "ip",
    "device_id",
    "email",
    "country",
    "metadata",
    "label",
];

/// JSON-ish values: every type, odd numbers, and strings with control, RTL, combining and
/// astral characters, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\u{202e}\u{0301}\u{1f600}a-z0-9#:.@ -]{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("2018-08-08T10:00:00Z"),
            Just("0000-01-01T00:00:00+00:01"),
            Just("9999-12-31T23:59:59-00:01"),
            Just("NaN"),
            Just("1e400"),
            Just("::1"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_.#]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A good body with some fields replaced by arbitrary values (or removed).
fn near_good_body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (prop::sample::select(&FIELDS[..]), prop::option::of(json_value())),
        0..5,
    )
    .prop_map(|changes| {
        let mut body: Value = serde_json::from_str(GOOD).unwrap();
        for (field, value) in changes {
            match value {
                Some(v) => body[field] = v,
                None => {
                    body.as_object_mut().unwrap().remove(field);
                }
            }
        }
        body.to_string().into_bytes()
    })
}

/// A few random edits (flip, insert, delete) of `base`.
fn mutated(base: &'static [u8], max_edits: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..=max_edits).prop_map(move |edits| {
        let mut bytes = base.to_vec();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
        bytes
    })
}

fn check_score_request(body: &[u8]) {
    match ScoreRequest::parse_json(body) {
        Ok(r) => {
            // A parsed request is within the contract: it formats and re-parses to itself.
            let again = serde_json::to_vec(&r).unwrap();
            assert_eq!(ScoreRequest::parse_json(&again).unwrap(), r);
            assert!(r.inputs.amount >= 0);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(
                errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()),
                "{errors:?}"
            );
        }
    }
}

proptest! {
    #[test]
    fn the_request_parser_takes_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_score_request(&body);
    }

    #[test]
    fn the_request_parser_takes_any_json(v in json_value()) {
        check_score_request(v.to_string().as_bytes());
    }

    #[test]
    fn the_request_parser_takes_any_near_valid_body(body in near_good_body()) {
        check_score_request(&body);
    }

    #[test]
    fn the_request_parser_takes_mutated_bodies(body in mutated(GOOD.as_bytes(), 6)) {
        check_score_request(&body);
    }

    #[test]
    fn the_strict_reader_refuses_exactly_what_serde_json_refuses_or_a_duplicate(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            json_value().prop_map(|v| v.to_string().into_bytes()),
            mutated(br#"{"a":{"b":[1,{"c":"d"}]},"e":"f"}"#, 4),
        ]
    ) {
        let strict = parse_strict(&body);
        let loose = serde_json::from_slice::<Value>(&body);
        match (&strict, &loose) {
            // Equal once serde_json's fraction-free floats are read as the integers they are.
            (Ok(a), Ok(b)) => prop_assert_eq!(a, &integral(b.clone())),
            (Err(e), Ok(_)) => prop_assert!(e.message.contains("more than once") || e.message.contains("deeper"), "{e}"),
            (Ok(_), Err(e)) => prop_assert!(false, "strict accepted what serde_json refuses: {e}"),
            (Err(_), Err(_)) => {}
        }
    }

    #[test]
    fn timestamps_parse_or_refuse_any_text(raw in prop_oneof![
        "\\PC{0,40}",
        (0u32..10000, 1u32..13, 1u32..32, 0u32..24, 0u32..60, 0u32..61, -1439i32..1440).prop_map(
            |(y, mo, d, h, mi, s, off)| format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}{:02}:{:02}",
                if off < 0 { '-' } else { '+' }, off.abs() / 60, off.abs() % 60)),
    ]) {
        if let Ok(t) = Timestamp::parse("t", &raw) {
            let text = t.to_rfc3339();
            prop_assert_eq!(Timestamp::parse("t", &text).unwrap(), t);
            prop_assert!(text.len() >= 20 && text.ends_with('Z'), "{}", text);
        }
        let _ = Timestamp::parse_occurred_at(&raw);
    }

    #[test]
    fn ndjson_rows_parse_or_refuse_any_bytes(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        near_good_body(),
        mutated(GOOD.as_bytes(), 6),
    ]) {
        let _ = parse_row(&body);
    }

    #[test]
    fn transaction_files_read_any_bytes(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        mutated(b"id,occurred_at,amount,currency,customer_id,terminal_id,ip,metadata.k,label_fraud\n\
                  a,2018-04-01T10:00:00Z,5,EUR,c1,t1,::1,v,1\nb,2018-04-01T11:00:00Z,7,EUR,c1,t1,,,0\n", 8),
        mutated(format!("{}\n{}\n", GOOD.replace('\n', ""), GOOD.replace('\n', "").replace("tx-1", "tx-2"))
            .leak().as_bytes(), 8),
    ], ndjson in any::<bool>()) {
        let format = if ndjson { Format::Ndjson } else { Format::Csv };
        let rows = TransactionReader::new("f", format, Cursor::new(body)).take(1000).count();
        prop_assert!(rows <= 1000);
    }

    #[test]
    fn label_files_read_any_bytes(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        mutated(b"transaction_id,label,source,labelled_at\ntx-1,fraud,chargeback,2018-09-01T00:00:00Z\n\
                  tx-2,legit,review,2018-09-02T00:00:00Z\n", 8),
        mutated(b"{\"transaction_id\":\"tx-1\",\"label\":\"fraud\",\"labelled_at\":\"2018-09-01T00:00:00Z\"}\n", 8),
    ], ndjson in any::<bool>()) {
        let format = if ndjson { Format::Ndjson } else { Format::Csv };
        let mut reader = LabelReader::new("f", format, Cursor::new(body));
        for _ in 0..1000 {
            if reader.next_chunk(16).end {
                break;
            }
        }
    }

    #[test]
    fn label_and_resolve_bodies_parse_or_refuse_any_json(v in json_value(), raw in prop::collection::vec(any::<u8>(), 0..128)) {
        let id = TransactionId::parse("tx-1").unwrap();
        for body in [v.to_string().into_bytes(), raw] {
            let _ = LabelRequest::parse_json(&id, &body);
            let _ = ResolveRequest::parse_json(&body);
        }
    }
}

fn model_cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(32);
    ProptestConfig::with_cases(cases)
}

static LIGHTGBM: &[u8] = include_bytes!("../../fixtures/lightgbm_model.txt");
static XGBOOST: &[u8] = include_bytes!("../../fixtures/xgboost_model.json");

proptest! {
    #![proptest_config(model_cases())]

    #[test]
    fn the_lightgbm_importer_takes_mutated_models(bytes in mutated(LIGHTGBM, 8)) {
        let _ = validate("fuzz", "fuzz", &bytes, &UploadOptions::default());
    }

    #[test]
    fn the_xgboost_importer_takes_mutated_models(bytes in mutated(XGBOOST, 8)) {
        let _ = validate("fuzz", "fuzz", &bytes, &UploadOptions::default());
    }

    #[test]
    fn the_importers_take_arbitrary_bytes_after_each_formats_first_line(
        prefix in prop::sample::select(&["tree\n", "verdict-model/1 sha256:00\n", "{\"learner\":", ""][..]),
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend(tail);
        let _ = validate("fuzz", "fuzz", &bytes, &UploadOptions::default());
    }
}

#[test]
fn the_fixtures_are_valid_models_so_mutations_start_from_real_input() {
    assert!(validate("f", "f", LIGHTGBM, &UploadOptions::default()).is_ok());
    assert!(validate("f", "f", XGBOOST, &UploadOptions::default()).is_ok());
    assert!(
        ScoreRequest::parse_json(GOOD.as_bytes()).is_ok(),
        "{:?}",
        ScoreRequest::parse_json(GOOD.as_bytes())
    );
}

/// `v` with every float that has no fraction (and fits an i64) as that integer, as the strict
/// reader reads it.
fn integral(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775_808e18 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}
