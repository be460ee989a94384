//! The ports' contract suites, one per port: a body of assertions that the in-memory fake
//! ([`crate::ports::in_memory`]) and the adapter (DynamoDB or S3, on moto:
//! `tests/tests/contract_*.rs`) must both pass, so the fakes the services are tested over cannot
//! drift from the real thing. Each panics on the first broken promise, like a test body.
//!
//! Compiled always, not under `cfg(test)`: the integration tests call them, and a feature only
//! they enabled would make the tests, `cargo lambda watch` and the CLI build this crate apart.

pub mod aggregates;
pub mod decisions;
pub mod events;
pub mod jobs;
pub mod labels;
pub mod objects;
pub mod registry;
pub mod reviews;
pub mod rules;

#[cfg(test)]
mod tests {
    //! Each fake against its contract, without moto.

    use super::*;
    use crate::domain::TenantId;
    use crate::ports::in_memory::{block_on, InMemoryDecisions, InMemoryJobs, InMemoryObjects, InMemoryRegistry};

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn the_aggregates_fake_keeps_the_contract() {
        block_on(aggregates::aggregate_reads(&InMemoryDecisions::default()));
    }

    #[test]
    fn the_aggregates_fake_keeps_the_seeding_contract() {
        block_on(aggregates::aggregate_seeding(&InMemoryDecisions::default()));
    }

    #[test]
    fn the_decisions_fake_keeps_the_contract() {
        let store = InMemoryDecisions::default();
        block_on(decisions::decision_store(&store, &store));
    }

    #[test]
    fn the_reviews_fake_keeps_the_contract() {
        block_on(reviews::review_rules(&InMemoryDecisions::default()));
    }

    #[test]
    fn the_decisions_fake_keeps_the_window_contract() {
        block_on(decisions::decision_window(&InMemoryDecisions::default()));
    }

    #[test]
    fn the_bus_fake_keeps_the_contract() {
        use crate::domain::events::Event;
        use crate::ports::in_memory::InMemoryBus;
        struct Tap<'a>(&'a InMemoryBus);
        impl events::Delivered for Tap<'_> {
            async fn delivered(&self) -> Vec<(String, String, serde_json::Value)> {
                let to = |e: Event| (e.kind.source().to_owned(), e.kind.detail_type().to_owned(), e.detail);
                self.0.published().into_iter().map(to).collect()
            }
        }
        let bus = InMemoryBus::default();
        block_on(events::event_bus(&bus, &Tap(&bus), "fake"));
    }

    #[test]
    fn the_jobs_fake_keeps_the_contract() {
        block_on(jobs::lease_rules(
            &InMemoryJobs::default(),
            &acme(),
            "data",
            "labels/incoming/acme",
        ));
    }

    #[test]
    fn the_labels_fake_keeps_the_contract() {
        let (store, seeded) = labels::seeded_fake(&acme());
        block_on(labels::label_rules(&store, &acme(), &seeded, &labels::unknown()));
    }

    #[test]
    fn the_registry_fake_keeps_the_contract() {
        let other = TenantId::parse("globex").unwrap();
        block_on(registry::registry_contract(
            &InMemoryRegistry::default(),
            &acme(),
            &other,
        ));
    }

    #[test]
    fn the_rules_fake_keeps_the_contract() {
        let store = InMemoryDecisions::default();
        let other = TenantId::parse("globex").unwrap();
        block_on(rules::rules_contract(&store, &store, &acme(), &other));
    }

    #[test]
    fn the_objects_fake_keeps_the_contract() {
        block_on(objects::objects_contract(
            &InMemoryObjects::default(),
            "data",
            "contract",
            objects::drain_inline,
        ));
    }
}
