//! End-to-end tests across microconv's crates live in `tests/tests/`.
