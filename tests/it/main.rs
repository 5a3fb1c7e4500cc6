//! The integration tests: one binary, a small harness in `support`.

mod support;

mod build;
