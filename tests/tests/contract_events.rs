//! The event bus's contract (`verdict::ports::contract::events`) on the EventBridge adapter
//! against moto, observed through a rule → SQS tap on the same bus.

use verdict::ports::contract::events::{event_bus, Delivered};
use verdict_integration::events::Tap;
use verdict_integration::sdk_config;

struct Arrived<'a>(&'a Tap);

impl Delivered for Arrived<'_> {
    async fn delivered(&self) -> Vec<(String, String, serde_json::Value)> {
        self.0
            .drain()
            .await
            .into_iter()
            .map(|e| {
                (
                    e["source"].as_str().unwrap_or_default().to_owned(),
                    e["detail-type"].as_str().unwrap_or_default().to_owned(),
                    e["detail"].clone(),
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eventbridge_adapter_keeps_the_contract() {
    let tap = Tap::new(&sdk_config().await).await;
    event_bus(&tap.bus, &Arrived(&tap), "moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_the_bus_twice_is_fine() {
    let tap = Tap::new(&sdk_config().await).await;
    assert!(!tap.bus.create_if_missing().await.expect("CreateEventBus again"));
}
