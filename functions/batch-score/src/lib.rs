//! S3-triggered function: parse the event, call the shared crate, map the result.
