//! Verdict's shared crate: the pure domain (transactions, features, models, reasons, metrics)
//! plus, behind port traits, the adapters that persist it.

pub mod adapters;
pub mod auth;
pub mod batch;
pub mod decision;
pub mod domain;
pub mod features;
pub mod io;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod protocol;
pub mod registry;
pub mod scoring;
pub mod sim;

pub use domain::{CustomerId, Label, Money, TerminalId, Transaction, TransactionId};
pub use features::{EntityAggregate, FeatureVector, FEATURE_COUNT};
pub use model::ModelArtifact;
