//! The Fraud Detection Handbook's transaction simulator.
