//! No code: this crate exists for its Cargo.toml, which pins dependency features so that tests,
//! `cargo lambda watch` and the CLI share one build. See the comment there.
