//! The event bus's contract: [`crate::ports::in_memory::InMemoryBus`] and the EventBridge
//! adapter on moto (`tests/tests/contract_events.rs`, observed through a rule → SQS tap).

use crate::domain::events::{Event, EventKind};
use crate::domain::TenantId;
use crate::ports::events::{entry_size, EntryOutcome, EventBus, MAX_ENTRIES_PER_CALL, MAX_REQUEST_BYTES};
use crate::ports::StoreError;
use serde_json::json;
use std::future::Future;

/// What arrived on the bus: `(source, detail-type, detail)` of each delivered event.
pub trait Delivered {
    fn delivered(&self) -> impl Future<Output = Vec<(String, String, serde_json::Value)>>;
}

fn event(kind: EventKind, id: &str) -> Event {
    Event {
        kind,
        event_id: id.to_owned(),
        tenant: TenantId::parse("acme").unwrap(),
        detail: json!({"schema_version": 1, "event_id": id, "tenant": "acme", "n": 1}),
    }
}

pub async fn event_bus<B: EventBus, D: Delivered>(bus: &B, tap: &D, prefix: &str) {
    // Nothing sent, nothing delivered.
    assert_eq!(bus.put_events(&[]).await.expect("empty call"), vec![]);

    // More than a call takes is refused before anything is sent.
    let too_many: Vec<Event> = (0..=MAX_ENTRIES_PER_CALL)
        .map(|i| event(EventKind::Decision, &format!("{prefix}-big-{i}")))
        .collect();
    match bus.put_events(&too_many).await {
        Err(StoreError::Rejected(_)) => {}
        other => panic!("11 entries must be refused, got {other:?}"),
    }

    // More bytes than a call takes (EventBridge's count) is refused before anything is sent.
    let heavy: Vec<Event> = (0..2)
        .map(|i| {
            let mut e = event(EventKind::Decision, &format!("{prefix}-big-heavy-{i}"));
            e.detail["pad"] = json!("x".repeat(MAX_REQUEST_BYTES / 2));
            e
        })
        .collect();
    assert!(heavy.iter().map(entry_size).sum::<usize>() > MAX_REQUEST_BYTES);
    match bus.put_events(&heavy).await {
        Err(StoreError::Rejected(_)) => {}
        other => panic!("a call over {MAX_REQUEST_BYTES} bytes must be refused, got {other:?}"),
    }

    // One outcome per entry, in order; each delivered once with its source, type and detail.
    let sent = vec![
        event(EventKind::Decision, &format!("{prefix}-a")),
        event(EventKind::Label, &format!("{prefix}-b")),
        event(EventKind::ModelActivation, &format!("{prefix}-c")),
    ];
    let outcomes = bus.put_events(&sent).await.expect("PutEvents");
    assert_eq!(outcomes, vec![EntryOutcome::Published; 3]);
    let full: Vec<Event> = (0..MAX_ENTRIES_PER_CALL)
        .map(|i| event(EventKind::RulesetActivation, &format!("{prefix}-full-{i}")))
        .collect();
    assert_eq!(
        bus.put_events(&full).await.expect("a full call"),
        vec![EntryOutcome::Published; MAX_ENTRIES_PER_CALL]
    );

    let got = tap.delivered().await;
    for e in sent.iter().chain(&full) {
        let matching: Vec<_> = got
            .iter()
            .filter(|(_, _, d)| d["event_id"] == e.event_id.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "{} delivered once: {got:?}", e.event_id);
        let (source, detail_type, detail) = matching[0];
        assert_eq!(source, e.kind.source());
        assert_eq!(detail_type, e.kind.detail_type());
        assert_eq!(detail, &e.detail);
    }
    assert!(
        !got.iter()
            .any(|(_, _, d)| d["event_id"].as_str().is_some_and(|id| id.contains("-big-"))),
        "nothing of a refused call is delivered"
    );
}
