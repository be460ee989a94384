//! What the handler reads and writes: decisions ([`DecisionStore`]) and the model registry
//! ([`ModelRegistry`]), rules and lists ([`RulesAdmin`]), labels ([`LabelStore`]), reviews ([`ReviewStore`]) and OIDC issuers ([`IssuerStore`]), on one store.

use verdict::ports::labels::LabelStore;
use verdict::ports::oidc::IssuerStore;
use verdict::ports::registry::ModelRegistry;
use verdict::ports::reviews::ReviewStore;
use verdict::ports::rules::{RulesAdmin, TenantPolicyRead};
use verdict::ports::{DecisionStore, DecisionWindow};

/// Everything the handler reads and writes.
pub trait ApiStore:
    DecisionStore + DecisionWindow + ModelRegistry + RulesAdmin + TenantPolicyRead + LabelStore + ReviewStore + IssuerStore
{
}

impl<
        T: DecisionStore
            + DecisionWindow
            + ModelRegistry
            + RulesAdmin
            + TenantPolicyRead
            + LabelStore
            + ReviewStore
            + IssuerStore,
    > ApiStore for T
{
}
