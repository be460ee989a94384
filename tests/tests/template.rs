//! template.yaml agrees with the code and the contract:
//! - its table is the adapters' `TABLE` spec, the one `verdict bootstrap` and the tests create
//!   locally (key schema, attribute types, GSI name, keys and projection, billing mode, TTL);
//! - its api function serves exactly the routes of openapi.yaml;
//! - `cargo lambda watch`'s router (Cargo.toml) sends every path of openapi.yaml to the api.
//!
//! Each check returns the differences it finds; the tests assert there are none for the files in
//! the repository, and that a deliberately drifted copy (of the template, the spec or the
//! contract) is caught, so a check that silently passes everything would fail here.
//!
//! CloudFormation short tags (`!Ref`, `!Sub`, `!GetAtt`) come through serde_yaml as tagged values;
//! [`untag`] reads through them where a plain value is expected.

use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use verdict::adapters::dynamodb::{IndexSpec, TableSpec, TABLE};
use verdict_integration::repo_root;

const TABLE_RESOURCE: &str = "VerdictTable";
const API_FUNCTION: &str = "ApiFunction";
const API_RESOURCE: &str = "VerdictApi";
const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn read(name: &str) -> String {
    let path = repo_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse(name: &str, text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// The value under a tag (`!Ref X` → `X`), or the value itself.
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

/// Follows a path of mapping keys.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| untag(v).get(*k)).map(untag)
}

fn text(v: Option<&Value>) -> Option<String> {
    match v.map(untag)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn list(v: Option<&Value>) -> &[Value] {
    match v.map(untag) {
        Some(Value::Sequence(s)) => s,
        _ => &[],
    }
}

/// `KeySchema` as (HASH attribute, RANGE attribute).
fn key_schema(v: Option<&Value>) -> (Option<String>, Option<String>) {
    let mut hash = None;
    let mut range = None;
    for k in list(v) {
        let name = text(at(k, &["AttributeName"]));
        match text(at(k, &["KeyType"])).as_deref() {
            Some("HASH") => hash = name,
            Some("RANGE") => range = name,
            _ => {}
        }
    }
    (hash, range)
}

/// A GSI's hash key, range key and projection type.
type IndexShape = (Option<String>, Option<String>, Option<String>);

/// Every way the template's table differs from `spec`.
fn table_drift(template: &Value, spec: &TableSpec) -> Vec<String> {
    let mut drift = Vec::new();
    let Some(table) = at(template, &["Resources", TABLE_RESOURCE]) else {
        return vec![format!("template.yaml has no Resources.{TABLE_RESOURCE}")];
    };
    if text(at(table, &["Type"])).as_deref() != Some("AWS::DynamoDB::Table") {
        drift.push(format!("{TABLE_RESOURCE} is not an AWS::DynamoDB::Table"));
    }
    let props = at(table, &["Properties"]).cloned().unwrap_or(Value::Null);

    let billing = text(at(&props, &["BillingMode"]));
    if billing.as_deref() != Some(spec.billing_mode) {
        drift.push(format!(
            "BillingMode: template {billing:?}, spec {:?}",
            spec.billing_mode
        ));
    }

    let (hash, range) = key_schema(at(&props, &["KeySchema"]));
    if hash.as_deref() != Some(spec.hash_key) || range.as_deref() != Some(spec.range_key) {
        drift.push(format!(
            "KeySchema: template ({hash:?}, {range:?}), spec ({:?}, {:?})",
            spec.hash_key, spec.range_key
        ));
    }

    // Attribute definitions: exactly the spec's key attributes, each a string.
    let defined: BTreeMap<String, String> = list(at(&props, &["AttributeDefinitions"]))
        .iter()
        .map(|d| {
            (
                text(at(d, &["AttributeName"])).unwrap_or_default(),
                text(at(d, &["AttributeType"])).unwrap_or_default(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = spec
        .string_attributes
        .iter()
        .map(|a| (a.to_string(), "S".to_owned()))
        .collect();
    if defined != expected {
        drift.push(format!("AttributeDefinitions: template {defined:?}, spec {expected:?}"));
    }

    // Global secondary indexes, by name.
    let indexes: BTreeMap<String, IndexShape> = list(at(&props, &["GlobalSecondaryIndexes"]))
        .iter()
        .map(|ix| {
            let (h, r) = key_schema(at(ix, &["KeySchema"]));
            let projection = text(at(ix, &["Projection", "ProjectionType"]));
            (text(at(ix, &["IndexName"])).unwrap_or_default(), (h, r, projection))
        })
        .collect();
    let wanted: BTreeMap<String, IndexShape> = spec
        .indexes
        .iter()
        .map(|ix: &IndexSpec| {
            (
                ix.name.to_owned(),
                (
                    Some(ix.hash_key.to_owned()),
                    Some(ix.range_key.to_owned()),
                    Some(ix.projection.to_owned()),
                ),
            )
        })
        .collect();
    if indexes != wanted {
        drift.push(format!(
            "GlobalSecondaryIndexes (name: hash, range, projection): template {indexes:?}, spec {wanted:?}"
        ));
    }
    let ttl_attribute = text(at(&props, &["TimeToLiveSpecification", "AttributeName"]));
    let ttl_enabled = text(at(&props, &["TimeToLiveSpecification", "Enabled"]));
    if ttl_attribute.as_deref() != Some(spec.ttl_attribute) || ttl_enabled.as_deref() != Some("true") {
        drift.push(format!(
            "TimeToLiveSpecification: template {ttl_attribute:?} enabled {ttl_enabled:?}, spec {:?} enabled",
            spec.ttl_attribute
        ));
    }
    let stream = text(at(&props, &["StreamSpecification", "StreamViewType"]));
    if stream.as_deref() != Some(spec.stream_view_type) {
        drift.push(format!(
            "StreamSpecification: template {stream:?}, spec {:?}",
            spec.stream_view_type
        ));
    }
    drift
}

/// `METHOD /path` of every operation in the contract.
fn contract_routes(openapi: &Value) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    if let Some(Value::Mapping(paths)) = at(openapi, &["paths"]) {
        for (path, item) in paths {
            let path = text(Some(path)).unwrap_or_default();
            if let Value::Mapping(ops) = untag(item) {
                for (method, _) in ops {
                    let method = text(Some(method)).unwrap_or_default();
                    if HTTP_METHODS.contains(&method.as_str()) {
                        routes.insert(format!("{} {path}", method.to_ascii_uppercase()));
                    }
                }
            }
        }
    }
    routes
}

/// `METHOD /path` of every HttpApi event, by the function that has it; plus what is wrong
/// with any of them (another API, another payload format).
fn template_routes(template: &Value) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let mut by_function: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    if let Some(Value::Mapping(resources)) = at(template, &["Resources"]) {
        for (name, resource) in resources {
            let name = text(Some(name)).unwrap_or_default();
            let Some(Value::Mapping(events)) = at(resource, &["Properties", "Events"]) else {
                continue;
            };
            for (event, def) in events {
                if text(at(def, &["Type"])).as_deref() != Some("HttpApi") {
                    continue;
                }
                let event = text(Some(event)).unwrap_or_default();
                let method = text(at(def, &["Properties", "Method"])).unwrap_or_default();
                let path = text(at(def, &["Properties", "Path"])).unwrap_or_default();
                by_function
                    .entry(name.clone())
                    .or_default()
                    .insert(format!("{} {path}", method.to_ascii_uppercase()));
                // `ApiId: !Ref VerdictApi`: the tag is kept, so look at it before untagging.
                let api = at(def, &["Properties"]).and_then(|p| p.get("ApiId"));
                let is_ref =
                    matches!(api, Some(Value::Tagged(t)) if t.tag == "Ref" && t.value.as_str() == Some(API_RESOURCE));
                if !is_ref {
                    problems.push(format!("{name}.{event}: ApiId is not !Ref {API_RESOURCE}"));
                }
                let format = text(at(def, &["Properties", "PayloadFormatVersion"]));
                if format.as_deref() != Some("2.0") {
                    problems.push(format!("{name}.{event}: PayloadFormatVersion {format:?}, not \"2.0\""));
                }
            }
        }
    }
    (by_function, problems)
}

/// Every way the api function's HttpApi events differ from the contract's operations.
fn route_drift(template: &Value, openapi: &Value) -> Vec<String> {
    let contract = contract_routes(openapi);
    let (mut by_function, mut drift) = template_routes(template);
    if contract.is_empty() {
        drift.push("openapi.yaml has no operations under paths".into());
    }
    let served = by_function.remove(API_FUNCTION).unwrap_or_default();
    for r in contract.difference(&served) {
        drift.push(format!("{r}: in openapi.yaml, not an HttpApi event of {API_FUNCTION}"));
    }
    for r in served.difference(&contract) {
        drift.push(format!("{r}: an HttpApi event of {API_FUNCTION}, not in openapi.yaml"));
    }
    for (function, routes) in by_function {
        for r in routes {
            drift.push(format!(
                "{r}: an HttpApi event of {function}; only {API_FUNCTION} serves the API"
            ));
        }
    }
    drift
}

fn template() -> (String, Value) {
    let t = read("template.yaml");
    let v = parse("template.yaml", &t);
    (t, v)
}

fn openapi() -> (String, Value) {
    let t = read("openapi.yaml");
    let v = parse("openapi.yaml", &t);
    (t, v)
}

/// `text` with `from` replaced once; panics if `from` is not there, so a mutation never
/// silently does nothing.
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the file no longer contains {from:?}; update this test's mutation"
    );
    text.replacen(from, to, 1)
}

#[test]
fn template_table_is_the_adapters_table_spec() {
    let (_, t) = template();
    let drift = table_drift(&t, &TABLE);
    assert!(
        drift.is_empty(),
        "template.yaml and TABLE disagree:\n{}",
        drift.join("\n")
    );
}

#[test]
fn every_route_of_the_contract_is_an_event_of_the_api_function_and_back() {
    let (_, t) = template();
    let (_, o) = openapi();
    // Sanity: the parsers find what is there.
    assert!(contract_routes(&o).contains("POST /v1/transactions"));
    assert!(contract_routes(&o).contains("GET /v1/transactions/{id}"));
    assert!(template_routes(&t).0[API_FUNCTION].contains("GET /v1/health"));
    let drift = route_drift(&t, &o);
    assert!(
        drift.is_empty(),
        "template.yaml and openapi.yaml disagree:\n{}",
        drift.join("\n")
    );
}

#[test]
fn a_drifted_template_table_is_caught() {
    let (text, _) = template();
    let cases = [
        (
            "BillingMode: PAY_PER_REQUEST",
            "BillingMode: PROVISIONED",
            "BillingMode",
        ),
        (
            "        - AttributeName: pk\n          KeyType: HASH",
            "        - AttributeName: sk\n          KeyType: HASH",
            "KeySchema",
        ),
        (
            "        - AttributeName: gsi1sk\n          AttributeType: S",
            "        - AttributeName: gsi1sk\n          AttributeType: N",
            "AttributeDefinitions",
        ),
        (
            "        - AttributeName: gsi1sk\n          AttributeType: S\n",
            "",
            "AttributeDefinitions",
        ),
        ("IndexName: gsi1", "IndexName: byCustomer", "GlobalSecondaryIndexes"),
        (
            "            - AttributeName: gsi1sk\n              KeyType: RANGE",
            "            - AttributeName: sk\n              KeyType: RANGE",
            "GlobalSecondaryIndexes",
        ),
        (
            "ProjectionType: ALL",
            "ProjectionType: KEYS_ONLY",
            "GlobalSecondaryIndexes",
        ),
        (
            "        AttributeName: expires_at\n        Enabled: true",
            "        AttributeName: ttl\n        Enabled: true",
            "TimeToLiveSpecification",
        ),
        (
            "        AttributeName: expires_at\n        Enabled: true",
            "        AttributeName: expires_at\n        Enabled: false",
            "TimeToLiveSpecification",
        ),
        (
            "StreamViewType: NEW_AND_OLD_IMAGES",
            "StreamViewType: KEYS_ONLY",
            "StreamSpecification",
        ),
    ];
    for (from, to, what) in cases {
        let drifted = parse("drifted template", &mutate(&text, from, to));
        let drift = table_drift(&drifted, &TABLE);
        assert!(
            drift.iter().any(|d| d.starts_with(what)),
            "{from:?} -> {to:?} was not reported as {what} drift: {drift:?}"
        );
    }
}

#[test]
fn a_drifted_table_spec_is_caught() {
    let (_, t) = template();
    let index = TABLE.indexes[0];
    let specs = [
        TableSpec {
            billing_mode: "PROVISIONED",
            ..TABLE
        },
        TableSpec {
            hash_key: "id",
            ..TABLE
        },
        TableSpec {
            range_key: "sort",
            ..TABLE
        },
        TableSpec {
            string_attributes: &["pk", "sk", "gsi1pk"],
            ..TABLE
        },
        TableSpec {
            string_attributes: &["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk"],
            ..TABLE
        },
        TableSpec { indexes: &[], ..TABLE },
        TableSpec {
            ttl_attribute: "ttl",
            ..TABLE
        },
        TableSpec {
            stream_view_type: "NEW_IMAGE",
            ..TABLE
        },
    ];
    for spec in specs {
        assert!(
            !table_drift(&t, &spec).is_empty(),
            "{spec:?} passed against template.yaml"
        );
    }
    for ix in [
        IndexSpec { name: "gsi2", ..index },
        IndexSpec {
            hash_key: "pk",
            ..index
        },
        IndexSpec {
            range_key: "sk",
            ..index
        },
        IndexSpec {
            projection: "KEYS_ONLY",
            ..index
        },
    ] {
        // TableSpec holds 'static slices, as the real one is a constant.
        let indexes: &'static [IndexSpec] = Box::leak(Box::new([ix]));
        let spec = TableSpec { indexes, ..TABLE };
        assert!(
            !table_drift(&t, &spec).is_empty(),
            "{ix:?} passed against template.yaml"
        );
    }
}

#[test]
fn drifted_routes_are_caught() {
    let (ttext, t) = template();
    let (otext, o) = openapi();

    // A route only in the contract.
    let extra = mutate(
        &otext,
        "  /v1/health:\n",
        "  /v1/reports:\n    get:\n      summary: x\n  /v1/health:\n",
    );
    let drift = route_drift(&t, &parse("drifted openapi", &extra));
    assert!(
        drift.iter().any(|d| d.starts_with("GET /v1/reports: in openapi.yaml")),
        "{drift:?}"
    );

    // A route only in the template (the method changed).
    let changed = mutate(
        &ttext,
        "            Method: GET\n            Path: /v1/health",
        "            Method: POST\n            Path: /v1/health",
    );
    let drift = route_drift(&parse("drifted template", &changed), &o);
    assert!(
        drift.iter().any(|d| d.starts_with("POST /v1/health: an HttpApi event")),
        "{drift:?}"
    );
    assert!(
        drift.iter().any(|d| d.starts_with("GET /v1/health: in openapi.yaml")),
        "{drift:?}"
    );

    // A path parameter renamed on one side.
    let renamed = mutate(
        &ttext,
        "Path: /v1/transactions/{id}",
        "Path: /v1/transactions/{transaction_id}",
    );
    let drift = route_drift(&parse("drifted template", &renamed), &o);
    assert!(drift.iter().any(|d| d.contains("{transaction_id}")), "{drift:?}");

    // Another API, another payload format.
    let other_api = mutate(&ttext, "ApiId: !Ref VerdictApi", "ApiId: !Ref OtherApi");
    assert!(route_drift(&parse("drifted template", &other_api), &o)
        .iter()
        .any(|d| d.contains("ApiId")));
    let v1 = mutate(&ttext, "PayloadFormatVersion: '2.0'", "PayloadFormatVersion: '1.0'");
    assert!(route_drift(&parse("drifted template", &v1), &o)
        .iter()
        .any(|d| d.contains("PayloadFormatVersion")));
}

/// The `"path" = "function"` lines of `[workspace.metadata.lambda.watch.router]` in Cargo.toml.
fn watch_router(cargo_toml: &str) -> BTreeMap<String, String> {
    let mut routes = BTreeMap::new();
    let mut inside = false;
    for line in cargo_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[workspace.metadata.lambda.watch.router]";
            continue;
        }
        if let (true, Some((path, function))) = (inside, line.split_once('=')) {
            let unquote = |s: &str| s.trim().trim_matches('"').to_owned();
            routes.insert(unquote(path), unquote(function));
        }
    }
    routes
}

fn router_drift(cargo_toml: &str, openapi: &Value) -> Vec<String> {
    let router = watch_router(cargo_toml);
    let paths: BTreeSet<String> = contract_routes(openapi)
        .iter()
        .filter_map(|r| r.split_once(' ').map(|(_, p)| p.to_owned()))
        .collect();
    let mut drift = Vec::new();
    for p in &paths {
        match router.get(p).map(String::as_str) {
            Some("api") => {}
            Some(other) => drift.push(format!("{p}: routed to {other:?}, not \"api\"")),
            None => drift.push(format!("{p}: in openapi.yaml, not in the watch router")),
        }
    }
    for p in router.keys().filter(|p| !paths.contains(*p)) {
        drift.push(format!("{p}: in the watch router, not in openapi.yaml"));
    }
    drift
}

#[test]
fn the_watch_router_sends_every_contract_path_to_the_api() {
    let cargo = read("Cargo.toml");
    let (otext, o) = openapi();
    let drift = router_drift(&cargo, &o);
    assert!(
        drift.is_empty(),
        "Cargo.toml's watch router and openapi.yaml disagree:\n{}",
        drift.join("\n")
    );

    let missing = mutate(&cargo, "\"/v1/models/rollback\" = \"api\"\n", "");
    assert!(router_drift(&missing, &o)
        .iter()
        .any(|d| d.starts_with("/v1/models/rollback: in openapi.yaml")));
    let extra = mutate(
        &otext,
        "  /v1/health:\n",
        "  /v1/reports:\n    get:\n      summary: x\n  /v1/health:\n",
    );
    assert!(router_drift(&cargo, &parse("drifted openapi", &extra))
        .iter()
        .any(|d| d.starts_with("/v1/reports:")));
}

/// The events function's stream mapping: partial batch failures, retries until the records are
/// 24 h old then a destination, batches of 500 / 10 s, one batch per shard, and a filter passing
/// exactly the items it publishes (the same filter as `make dev`'s stream poller).
#[test]
fn the_events_mapping_reports_item_failures_and_passes_the_published_items() {
    let (_, t) = template();
    let m = at(&t, &["Resources", "EventsStreamMapping", "Properties"]).expect("EventsStreamMapping");
    let responses: Vec<String> = list(at(m, &["FunctionResponseTypes"]))
        .iter()
        .filter_map(|v| text(Some(v)))
        .collect();
    assert_eq!(responses, vec!["ReportBatchItemFailures".to_owned()]);
    assert_eq!(text(at(m, &["BisectBatchOnFunctionError"])).as_deref(), Some("true"));
    assert_eq!(text(at(m, &["ParallelizationFactor"])).as_deref(), Some("1"));
    // Retried until the records are 24 h old (an outage never skips them), then to the queue.
    assert_eq!(text(at(m, &["MaximumRetryAttempts"])).as_deref(), Some("-1"));
    assert_eq!(text(at(m, &["MaximumRecordAgeInSeconds"])).as_deref(), Some("86400"));
    assert!(at(m, &["DestinationConfig", "OnFailure", "Destination"]).is_some());
    assert_eq!(text(at(m, &["BatchSize"])).as_deref(), Some("500"));
    assert_eq!(text(at(m, &["MaximumBatchingWindowInSeconds"])).as_deref(), Some("10"));
    let filters = list(at(m, &["FilterCriteria", "Filters"]));
    assert_eq!(filters.len(), 1);
    let pattern: serde_json::Value = serde_json::from_str(&text(at(&filters[0], &["Pattern"])).unwrap()).unwrap();
    let sort_keys: BTreeSet<&str> = pattern["dynamodb"]["Keys"]["sk"]["S"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        sort_keys,
        verdict::adapters::dynamodb::PUBLISHED_SORT_KEYS.into_iter().collect(),
        "the filter passes exactly the items the stream decoder publishes"
    );
    // `make dev`'s stream poller stands in for this mapping: it must filter alike.
    let lib = std::fs::read_to_string(repo_root().join("scripts/lib.sh")).unwrap();
    let local = lib
        .lines()
        .find_map(|l| l.strip_prefix("STREAM_FILTER='")?.strip_suffix('\''))
        .expect("scripts/lib.sh sets STREAM_FILTER");
    let local: serde_json::Value = serde_json::from_str(local).unwrap();
    assert_eq!(
        local, pattern,
        "scripts/lib.sh's STREAM_FILTER is the template's FilterCriteria"
    );
    let view = text(at(
        &t,
        &[
            "Resources",
            TABLE_RESOURCE,
            "Properties",
            "StreamSpecification",
            "StreamViewType",
        ],
    ));
    assert_eq!(view.as_deref(), Some("NEW_AND_OLD_IMAGES"));
}

/// Every function of the workspace is a function of the template, built from its package.
#[test]
fn every_function_package_is_a_template_function() {
    let (_, t) = template();
    let root = repo_root();
    let resources = at(&t, &["Resources"])
        .and_then(|r| untag(r).as_mapping().cloned())
        .unwrap();
    let code_uris: BTreeSet<String> = resources
        .values()
        .filter(|r| text(at(r, &["Type"])).as_deref() == Some("AWS::Serverless::Function"))
        .filter_map(|r| text(at(r, &["Properties", "CodeUri"])))
        .collect();
    for entry in std::fs::read_dir(root.join("functions")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            code_uris.contains(&format!("functions/{name}")),
            "functions/{name} has no template function"
        );
    }
}

/// A stuck stream is seen long before its records age out: an alarm on the events function's
/// IteratorAge above 15 minutes.
#[test]
fn the_events_function_has_an_iterator_age_alarm() {
    let (_, t) = template();
    let resources = at(&t, &["Resources"])
        .and_then(|r| untag(r).as_mapping().cloned())
        .unwrap();
    let alarm = resources
        .values()
        .find(|r| {
            text(at(r, &["Type"])).as_deref() == Some("AWS::CloudWatch::Alarm")
                && text(at(r, &["Properties", "MetricName"])).as_deref() == Some("IteratorAge")
        })
        .expect("an IteratorAge alarm");
    let p = at(alarm, &["Properties"]).unwrap();
    assert_eq!(text(at(p, &["Namespace"])).as_deref(), Some("AWS/Lambda"));
    let dims = list(at(p, &["Dimensions"]));
    assert!(
        dims.iter()
            .any(|d| text(at(d, &["Name"])).as_deref() == Some("FunctionName")
                && text(at(d, &["Value"])).as_deref() == Some("EventsFunction")),
        "{dims:?}"
    );
    let threshold: f64 = text(at(p, &["Threshold"])).unwrap().parse().unwrap();
    assert!(threshold <= 15.0 * 60.0 * 1000.0, "milliseconds: at most 15 minutes");
    assert_eq!(
        text(at(p, &["ComparisonOperator"])).as_deref(),
        Some("GreaterThanThreshold")
    );
}

/// The events alarms (a stuck stream, records given up into StreamFailuresQueue) notify the
/// optional AlarmTopicArn, and nobody when it is empty.
#[test]
fn the_events_alarms_notify_the_alarm_topic_when_set() {
    let (text_, t) = template();
    let topic = at(&t, &["Parameters", "AlarmTopicArn"]).expect("an AlarmTopicArn parameter");
    assert_eq!(text(at(topic, &["Default"])).as_deref(), Some(""), "optional");
    assert!(text_.contains("HasAlarmTopic: !Not [!Equals [!Ref AlarmTopicArn, '']]"));
    let failures = at(&t, &["Resources", "StreamFailuresAlarm", "Properties"]).expect("a StreamFailuresQueue alarm");
    assert_eq!(text(at(failures, &["Namespace"])).as_deref(), Some("AWS/SQS"));
    assert_eq!(
        text(at(failures, &["MetricName"])).as_deref(),
        Some("NumberOfMessagesSent")
    );
    let dims = serde_yaml::to_string(at(failures, &["Dimensions"]).unwrap()).unwrap();
    assert!(
        dims.contains("QueueName") && dims.contains("StreamFailuresQueue.QueueName"),
        "{dims}"
    );
    assert_eq!(text(at(failures, &["Threshold"])).as_deref(), Some("0"));
    assert_eq!(
        text(at(failures, &["ComparisonOperator"])).as_deref(),
        Some("GreaterThanThreshold")
    );
    for alarm in ["EventsIteratorAgeAlarm", "StreamFailuresAlarm"] {
        // `!If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]`: the topic when set.
        let actions = at(&t, &["Resources", alarm, "Properties", "AlarmActions"]).expect(alarm);
        let branches = list(Some(actions));
        assert_eq!(text(branches.first()).as_deref(), Some("HasAlarmTopic"), "{alarm}");
        let when_set = serde_yaml::to_string(branches.get(1).expect(alarm)).unwrap();
        assert!(when_set.contains("AlarmTopicArn"), "{alarm}: {when_set}");
        let otherwise = serde_yaml::to_string(branches.get(2).expect(alarm)).unwrap();
        assert!(otherwise.contains("AWS::NoValue"), "{alarm}: {otherwise}");
    }
}

/// The archive's Glue tables: a partition key is never also a data column (Athena refuses
/// duplicates), and days are projected up to tomorrow (transactions may be dated 24 h ahead).
#[test]
fn the_archive_tables_partition_on_tenant_and_date_up_to_tomorrow() {
    let (_, t) = template();
    for table in ["ArchiveDecisionsTable", "ArchiveLabelsTable"] {
        let input = at(&t, &["Resources", table, "Properties", "TableInput"]).expect(table);
        let names = |path: &[&str]| -> BTreeSet<String> {
            list(at(input, path))
                .iter()
                .filter_map(|c| text(at(c, &["Name"])))
                .collect()
        };
        let keys = names(&["PartitionKeys"]);
        assert_eq!(
            keys,
            BTreeSet::from(["tenant".to_owned(), "date".to_owned()]),
            "{table}"
        );
        let columns = names(&["StorageDescriptor", "Columns"]);
        assert!(
            columns.is_disjoint(&keys),
            "{table}: {:?}",
            columns.intersection(&keys).collect::<Vec<_>>()
        );
        assert!(columns.contains("event_id"), "{table}: readers dedupe on it");
        assert_eq!(
            text(at(input, &["Parameters", "projection.date.range"])).as_deref(),
            Some("2000-01-01,NOW+1DAYS"),
            "{table}"
        );
    }
}

/// The webhook: its rule can be narrowed to one tenant, and its secret has no dummy default
/// (a Rules assertion refuses a webhook without it).
#[test]
fn the_webhook_filters_on_a_tenant_and_needs_its_secret() {
    let (text_, t) = template();
    let secret = at(&t, &["Parameters", "WebhookAuthValue"]).unwrap();
    assert_eq!(text(at(secret, &["NoEcho"])).as_deref(), Some("true"));
    assert_eq!(text(at(secret, &["Default"])).as_deref(), Some(""), "no dummy secret");
    let rules = at(&t, &["Rules"])
        .and_then(|r| untag(r).as_mapping().cloned())
        .expect("a Rules section");
    let asserts_secret = rules
        .values()
        .any(|r| serde_yaml::to_string(r).is_ok_and(|y| y.contains("WebhookUrl") && y.contains("WebhookAuthValue")));
    assert!(asserts_secret, "a rule refuses a webhook URL without its secret");
    assert!(at(&t, &["Parameters", "WebhookTenant"]).is_some());
    let rule = at(&t, &["Resources", "WebhookRule", "Properties", "EventPattern"]).unwrap();
    let pattern = serde_yaml::to_string(rule).unwrap();
    assert!(
        pattern.contains("HasWebhookTenant") && pattern.contains("WebhookTenant"),
        "{pattern}"
    );
    assert!(pattern.contains("detail") && pattern.contains("tenant"), "{pattern}");
    assert!(text_.contains("HasWebhookTenant: !Not [!Equals [!Ref WebhookTenant, '']]"));
}
