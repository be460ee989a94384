//! Offline tools, outside the serving path: the Fraud Detection Handbook simulator and its
//! train/delay/test protocol. The CLI and the tests use them; no function does.

pub mod protocol;
pub mod rules_file;
pub mod sim;
