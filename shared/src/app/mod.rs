//! Services: each use case of the functions and the CLI, generic over the traits in
//! [`crate::ports`], so they run against DynamoDB and S3 in a function and against in-memory fakes
//! in unit tests.

pub mod batch;
pub mod labels;
pub mod models;
pub mod scoring;
