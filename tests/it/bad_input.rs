//! Malformed inputs: filled in by the bad-input corpus tests.
