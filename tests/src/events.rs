//! The events side of the local stack: the table's stream read as Lambda's event source mapping
//! would hand it to `functions/events`, a bus with a "tap" (a rule sending every `verdict.*` event
//! to an SQS queue) to see what arrived, and a small JSON Schema check for `schemas/events/`.

use crate::{repo_root, unique_suffix};
use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use verdict::adapters::eventbridge::EventBridgeBus;
use verdict::domain::events::EventKind;

/// A bus of its own (random name) and its tap queue.
pub struct Tap {
    pub bus: EventBridgeBus,
    pub bus_name: String,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl Tap {
    pub async fn new(config: &SdkConfig) -> Tap {
        let bus_name = format!("verdict-events-{}", unique_suffix());
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(config), &bus_name);
        assert!(bus.create_if_missing().await.expect("CreateEventBus"));
        let sqs = aws_sdk_sqs::Client::new(config);
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{bus_name}-tap"))
            .send()
            .await
            .expect("CreateQueue")
            .queue_url()
            .expect("a queue URL")
            .to_owned();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .expect("the queue ARN");
        bus.tap_into(&format!("{bus_name}-tap"), &arn)
            .await
            .expect("the tap rule");
        Tap {
            bus,
            bus_name,
            sqs,
            queue_url,
        }
    }

    /// Every event that arrived since the last call (the EventBridge envelope), taking them off
    /// the queue.
    pub async fn drain(&self) -> Vec<Value> {
        let mut got = Vec::new();
        let mut empty = 0;
        // moto delivers synchronously within PutEvents; two empty receives in a row end it.
        while empty < 2 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("ReceiveMessage");
            let messages = out.messages();
            if messages.is_empty() {
                empty += 1;
                continue;
            }
            for m in messages {
                got.push(serde_json::from_str(m.body().unwrap_or("null")).expect("an event envelope"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
        got
    }
}

/// Reads the table's stream from its start, shard by shard, remembering where it stopped.
pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    /// Shard id → the iterator to read next.
    positions: BTreeMap<String, Option<String>>,
}

impl StreamReader {
    pub async fn new(config: &SdkConfig, dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> StreamReader {
        let arn = verdict::adapters::dynamodb::stream_arn(dynamodb, table)
            .await
            .expect("DescribeTable")
            .expect("the table has a stream");
        StreamReader {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            arn,
            positions: BTreeMap::new(),
        }
    }

    /// The records written since the last call, as Lambda's DynamoDB event records (JSON).
    pub async fn next_records(&mut self) -> Vec<Value> {
        let described = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .send()
            .await
            .expect("DescribeStream");
        let shards: Vec<String> = described
            .stream_description()
            .map(|d| {
                d.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut records = Vec::new();
        for shard in shards {
            let iterator = match self.positions.get(&shard) {
                Some(Some(it)) => it.clone(),
                Some(None) => continue,
                None => self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.arn)
                    .shard_id(&shard)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .expect("GetShardIterator")
                    .shard_iterator()
                    .expect("an iterator")
                    .to_owned(),
            };
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(1000)
                .send()
                .await
                .expect("GetRecords");
            for r in out.records() {
                records.push(lambda_record(r, &self.arn));
            }
            self.positions
                .insert(shard, out.next_shard_iterator().map(str::to_owned));
        }
        records
    }
}

/// A Lambda DynamoDB stream event of these records, as the events function reads it (JSON).
pub fn stream_event(records: &[Value]) -> Value {
    json!({ "Records": records })
}

fn lambda_record(r: &aws_sdk_dynamodbstreams::types::Record, arn: &str) -> Value {
    let d = r.dynamodb().expect("a stream record");
    let image = |m: Option<&std::collections::HashMap<String, AttributeValue>>| -> Option<Value> {
        m.map(|m| Value::Object(m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect()))
    };
    let mut change = Map::new();
    change.insert(
        "ApproximateCreationDateTime".into(),
        json!(d.approximate_creation_date_time().map(|t| t.secs()).unwrap_or(0)),
    );
    for (name, m) in [
        ("Keys", d.keys()),
        ("NewImage", d.new_image()),
        ("OldImage", d.old_image()),
    ] {
        if let Some(v) = image(m) {
            change.insert(name.into(), v);
        }
    }
    change.insert("SequenceNumber".into(), json!(d.sequence_number()));
    change.insert("SizeBytes".into(), json!(d.size_bytes().unwrap_or(0)));
    change.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
    json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str().to_owned()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": Value::Object(change),
        "eventSourceARN": arn,
    })
}

/// DynamoDB JSON of one attribute value.
fn attribute_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<Map<_, _>>() })
        }
        AttributeValue::B(b) => {
            use base64::Engine as _;
            json!({ "B": base64::engine::general_purpose::STANDARD.encode(b.as_ref()) })
        }
        AttributeValue::Bs(v) => {
            use base64::Engine as _;
            json!({ "BS": v.iter().map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref())).collect::<Vec<_>>() })
        }
        _ => Value::Null,
    }
}

/// `schemas/events/<kind>.v1.json`.
pub fn schema(kind: EventKind) -> Value {
    let path = repo_root().join(format!("schemas/events/{}.v1.json", kind.name()));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The problems of `value` against `schema`, for the keywords the schemas use: `type`,
/// `required`, `properties`, `additionalProperties: false`, `items`, `enum`, `const`,
/// `minimum`, `maximum`, `minLength`, `maxLength`, `format: date-time` and `if`/`then`/`else`. A keyword it does
/// not know is a problem too, so a schema cannot silently outgrow the check.
pub fn validate(schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(s) = schema.as_object() else {
        return vec![format!("{at}: the schema is not an object")];
    };
    for (k, rule) in s {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "x-eventbridge" | "then" | "else" => {}
            "if" => {
                let branch = if validate(rule, value, at).is_empty() {
                    "then"
                } else {
                    "else"
                };
                if let Some(sub) = s.get(branch) {
                    problems.extend(validate(sub, value, at));
                }
            }
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !types.iter().any(|t| is_type(value, t)) {
                    problems.push(format!("{at}: {value} is not of type {types:?}"));
                }
            }
            "required" => {
                for name in rule.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if value.is_object() && value.get(name).is_none() {
                        problems.push(format!("{at}: {name} is missing"));
                    }
                }
            }
            "properties" => {
                if let (Some(props), Some(obj)) = (rule.as_object(), value.as_object()) {
                    for (name, sub) in props {
                        if let Some(v) = obj.get(name) {
                            problems.extend(validate(sub, v, &format!("{at}.{name}")));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if rule == &Value::Bool(false) {
                    let known = s.get("properties").and_then(Value::as_object);
                    for name in value.as_object().into_iter().flat_map(|o| o.keys()) {
                        if !known.is_some_and(|p| p.contains_key(name)) {
                            problems.push(format!("{at}: {name} is not in the schema"));
                        }
                    }
                }
            }
            "items" => {
                for (i, v) in value.as_array().into_iter().flatten().enumerate() {
                    problems.extend(validate(rule, v, &format!("{at}[{i}]")));
                }
            }
            "enum" => {
                if !rule.as_array().is_some_and(|a| a.contains(value)) {
                    problems.push(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "const" => {
                if rule != value {
                    problems.push(format!("{at}: {value} is not {rule}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(limit), Some(v)) = (rule.as_f64(), value.as_f64()) {
                    if (k == "minimum" && v < limit) || (k == "maximum" && v > limit) {
                        problems.push(format!("{at}: {v} is outside its {k} {limit}"));
                    }
                }
            }
            "minLength" | "maxLength" => {
                if let (Some(limit), Some(v)) = (rule.as_u64(), value.as_str()) {
                    let n = v.chars().count() as u64;
                    if (k == "minLength" && n < limit) || (k == "maxLength" && n > limit) {
                        problems.push(format!("{at}: length {n} is outside its {k} {limit}"));
                    }
                }
            }
            "format" => {
                if rule == "date-time" {
                    if let Some(v) = value.as_str() {
                        if time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).is_err() {
                            problems.push(format!("{at}: {v} is not an RFC 3339 date-time"));
                        }
                    }
                } else {
                    problems.push(format!("{at}: format {rule} is not checked"));
                }
            }
            other => problems.push(format!("{at}: keyword {other} is not checked")),
        }
    }
    problems
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}
