//! The HTTP edge: parse the request, call the shared crate, map the result to HTTP.
