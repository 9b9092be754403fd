//! Shared harness for ustack integration tests.
